"""Hand-built traces of what the wire will show (a one-way delay, drops, holds, duplicates, a delayed
ACK, a close() blocked for a second), for tests of the pictures and transcripts that need no live run."""

from __future__ import annotations

from closekit.trace import Segment, StateChange, Syscall, Trace

D = 0.010  # one-way delay of the wire


def seg(t: float, src: str, flags: tuple[str, ...], seq: int, ack: int, length: int = 0, win: int = 65535,
        fate: str = "delivered", delay: float = D) -> Segment:  # fmt: skip
    arrived = None if fate in ("dropped", "held") else t + delay
    return Segment(t=t, src=src, flags=flags, seq=seq, ack=ack, len=length, win=win, arrived=arrived, fate=fate)


def call(t: float, side: str, name: str, result: object = 0, duration: float = 0.00002, errno: str | None = None,
         **args: object) -> Syscall:  # fmt: skip
    return Syscall(t=t, side=side, call=name, args=dict(args), result=result, errno=errno, duration=duration)


def state(t: float, side: str, name: str) -> StateChange:
    return StateChange(t=t, side=side, state=name)


def lingering_close(
    close_duration: float = 1.02,
    fin_fate: str = "dropped",
    flip: bool = False,
    kernel: str = "6.18.44-test-build",
    jitter: float = 0.0,
) -> Trace:
    """SO_LINGER {on, 1}; the client's FIN is dropped by the wire, retransmitted after 0.2 s and
    acknowledged 40 ms late (delayed ACK); close() blocks `close_duration`. `flip` sends the RST the
    other way, for tests that must see a changed arrow fail; `kernel` and `jitter` (seconds added to
    every clock reading, a few per cent to every duration) make the same run on another machine."""
    ack_t = 0.2356 + D + 0.040
    events = [
        call(0.001, "server", "listen", backlog=1),
        call(0.002, "client", "connect", duration=0.0201),
        seg(0.002, "client", ("SYN",), 0, 0),
        seg(0.012, "server", ("SYN", "ACK"), 0, 1),
        seg(0.022, "client", ("ACK",), 1, 1),
        state(0.0222, "client", "ESTABLISHED"),
        state(0.0322, "server", "ESTABLISHED"),
        call(0.033, "server", "accept"),
        call(0.034, "client", "setsockopt", option="SO_LINGER", l_onoff=1, l_linger=1),
        call(0.035, "client", "send", result=1000, nbytes=1000),
        seg(0.0351, "client", ("PSH", "ACK"), 1, 1, 1000),
        call(0.0352, "client", "close", duration=close_duration),
        seg(0.0353, "client", ("FIN", "ACK"), 1001, 1, fate=fin_fate),
        state(0.0354, "client", "FIN_WAIT_1"),
        seg(0.0452, "server", ("ACK",), 1, 1001),
        seg(0.2356, "client", ("FIN", "ACK"), 1001, 1),
        seg(0.2356, "client", ("FIN", "ACK"), 1001, 1, fate="duplicate", delay=0.012),
        seg(ack_t, "server", ("ACK",), 1, 1002),
        state(ack_t + D, "client", "FIN_WAIT_2"),
        state(ack_t + 0.0001, "server", "CLOSE_WAIT"),
        call(1.3, "server", "close"),
        seg(1.3001, "server" if not flip else "client", ("RST", "ACK"), 1, 1002),
        state(1.3002, "server", "CLOSED"),
        state(1.3102, "client", "CLOSED"),
    ]
    events.sort(key=lambda e: e.t)
    if jitter:
        events = [_shifted(e, jitter) for e in events]
    return Trace(
        scenario="wire-linger",
        kernel=kernel,
        mode="netns",
        counters={},
        events=tuple(events),
        description="hand-built: a dropped FIN, a delayed ACK and a lingering close()",
        link={"delay": D, "rate": None, "rules": [{"text": "drop the client's first FIN"}]},
        settings={"sysctls": {"net.ipv4.tcp_fin_timeout": 5}},
        processes={"client": "client", "server": "server"},
    )


def _shifted(e, jitter: float):
    from dataclasses import replace

    changes = {"t": e.t + jitter}
    if isinstance(e, Syscall):
        changes["duration"] = e.duration * (1 + jitter)
    if isinstance(e, Segment) and e.arrived is not None:
        changes["arrived"] = e.arrived + jitter + (e.arrived - e.t) * jitter
    return replace(e, **changes)
