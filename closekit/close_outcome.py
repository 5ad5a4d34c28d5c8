"""Which branch of the kernel's close path a close() took, judged from a trace's evidence only.

What the closing socket sent after the call (FIN, RST or nothing), the bytes it had not read, the
SO_LINGER option it had set, forked holders of the descriptor and the MIB counter deltas decide;
`closekit.render.kernel` lights the branch in its drawing of the path (which it also explains).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from closekit import query as q
from closekit.errors import CloseKitError
from closekit.trace import Segment, Syscall, Trace
from closekit.transcript import approx, conn_at, format_ms, wait_threshold

__all__ = ["Branch", "CloseOutcome", "close_outcome"]

Branch = Literal["shared", "listener", "unread", "linger-zero", "fin", "no-fin", "failed", "unobserved", "none"]


@dataclass(frozen=True)
class CloseOutcome:
    """Which branch of the kernel's close path one close() call took, and the evidence for it.

    `evidence` gives clock readings ("RST sent by server 0.1 ms after close()"); `words` says the
    same with durations as categories ("at once"), for outputs compared on every run.
    """

    side: str
    branch: Branch
    lingered: bool  # SO_LINGER on with l_linger > 0: close() went to sleep in sk_stream_wait_close
    evidence: tuple[str, ...]
    shutdown: str | None = None  # how of the socket's last shutdown() before the close, if any
    words: tuple[str, ...] = ()
    shutdowns: tuple[str, ...] = ()  # how of every shutdown() of the socket before the close, in order


def close_outcome(trace: Trace, close_index: int = 0, side: str | None = None) -> CloseOutcome | None:
    """The branch the `close_index`-th close() (of `side`, or of anyone) took; None if there is no close().

    Raises CloseKitError when `close_index` or `side` pick no close() although the trace has some.
    """
    closes = q.calls(trace, side, "close", listener=True)
    if not closes:
        if side is None and close_index == 0:
            return None
        everyone = [e.side for e in q.calls(trace, None, "close", listener=True)]
        raise CloseKitError(
            f"no close() #{close_index} by {side or 'anyone'} in {trace.scenario!r}; "
            f"its close() calls, in order, are by: {', '.join(everyone) or 'nobody'}"
        )
    if not -len(closes) <= close_index < len(closes):
        raise CloseKitError(
            f"close_index {close_index} is out of range: {trace.scenario!r} has {len(closes)} close() "
            f"call(s) by {side or 'anyone'} (index 0 to {len(closes) - 1})"
        )
    call = closes[close_index]
    position = next(i for i, e in enumerate(trace.events) if e is call)
    exact, words = _judge(trace, position, call, exact=True), _judge(trace, position, call, exact=False)
    return CloseOutcome(exact.side, exact.branch, exact.lingered, exact.evidence, exact.shutdown, words.evidence,
                        exact.shutdowns)  # fmt: skip


def _judge(trace: Trace, position: int, call: Syscall, exact: bool) -> CloseOutcome:
    def after(seconds: float) -> str:
        if exact:
            return f"{format_ms(seconds)} after"
        return "at once after" if seconds < wait_threshold(trace) else f"{approx(seconds)} after"

    sock = trace.endpoint_of(call.side)
    peer = q.peer(sock)
    events = trace.events
    own = [(i, e) for i, e in enumerate(events) if isinstance(e, Syscall) and trace.endpoint_of(e.side) == sock]
    later = [i for i, e in own if i > position and e.call in ("close", "shutdown")]
    end = later[0] if later else len(events)
    window = [(i, e) for i, e in enumerate(events) if position < i < end and isinstance(e, Segment)]
    lines = [f"close() by {call.side}" + (f" at {format_ms(call.t - q.origin(trace))}" if exact else "")]
    hows = tuple(str(e.args.get("how")) for i, e in own if i < position and e.call == "shutdown" and not e.failed)
    how = hows[-1] if hows else None
    lg = q.linger_at(trace, sock, call.t)
    linger, zero = (lg.timeout, lg.abortive) if lg is not None else (0, False)
    if call.failed:
        return CloseOutcome(call.side, "failed", False, (*lines, f"close() failed with {call.errno}"), how,
                            shutdowns=hows)  # fmt: skip
    if call.args.get("socket") == "listener":
        return _judge_listener(trace, call, window, lines, after)

    # What this socket sent after the call: a RST counts as the close's only if no data from the
    # peer arrived first (data after close() draws a RST of its own, TcpExt:TCPAbortOnData).
    fin = next((e for _, e in window if e.src == sock and e.has("FIN")), None)
    rst = None
    for _, e in window:
        if e.src == peer and e.len > 0:
            break
        if e.src == sock and e.has("RST"):
            rst = e
            break
    first = min((s for s in (fin, rst) if s is not None), key=lambda s: s.t, default=None)
    reset = [e for e in events[:position] if isinstance(e, Segment) and e.has("RST")]
    unread = 0 if reset else q.unread_at(trace, sock, call.t, conn_at(trace, call.t))
    counters = {name: trace.counter(name) for name in ("TcpExt:TCPAbortOnClose", "TcpExt:TCPAbortOnData")}
    counted = "; ".join(f"{name} +{value}" for name, value in counters.items() if value)
    holders = _other_holders(trace, position, call.side)

    if unread:
        lines.append(f"{unread} bytes from {peer} arrived that {sock} had not read")
    if zero:
        lines.append("SO_LINGER {on, 0} set before close()")
    elif linger:
        lines.append(f"SO_LINGER {{on, {linger}}} set before close()")
    if hows:
        lines.append(", then ".join(f"shutdown({h})" for h in hows) + " called before close()")

    branch: Branch
    if first is not None and first is rst:
        lines.append(f"RST sent by {sock} {after(rst.t - call.t)} close()" + (f"; {counted}" if counted else ""))
        closed_by_unread = unread > 0 or (not zero and counters["TcpExt:TCPAbortOnClose"] > 0)
        branch = "unread" if closed_by_unread else "linger-zero"
    elif first is not None:
        lines.append(f"FIN sent by {sock} {after(fin.t - call.t)} close()")
        if holders is None and any(e.call == "fork" for i, e in own if i < position):
            lines.append("this was the last holder of the socket")
        branch = "fin"
    elif not trace.captured:
        lines.append("segments were not captured here: the branch is judged from counters and options")
        if holders:
            branch = "shared"
        elif counters["TcpExt:TCPAbortOnClose"]:
            branch = "unread"
        elif zero and counters["TcpExt:TCPAbortOnData"]:
            branch = "linger-zero"
        else:
            branch = "unobserved"
    elif holders:
        until = f" until {holders}'s close()" if later else ""
        lines.append(f"nothing sent by {sock}{until}: {holders} (forked) still holds the descriptor")
        branch = "shared"
    else:
        lines.append(f"nothing sent by {sock} after close(): " + _already_over(trace, call, sock, exact))
        branch = "no-fin"

    lingered = branch == "fin" and linger > 0
    if lingered and fin is not None:
        returned = q.end(call)
        ack = q.ack_of(trace, fin, delivered=True, resent=True)
        acked = ack is not None and ack.arrived <= returned  # type: ignore[operator]
        why = (
            "after the peer acknowledged data and FIN"
            if acked
            else "when l_linger ran out, its FIN still unacknowledged"
            + (" (not even sent yet)" if fin.t > returned else "")
        )
        waited = format_ms(call.duration) if exact else approx(call.waited)
        lines.append(f"close() waited {waited} in sk_stream_wait_close and returned {call.result} {why}")
    return CloseOutcome(call.side, branch, lingered, tuple(lines), how, shutdowns=hows)


def _judge_listener(
    trace: Trace, call: Syscall, window: list[tuple[int, Segment]], lines: list[str], after: Callable[[float], str]
) -> CloseOutcome:
    """A listening socket's close(): the resets it sent to the connections it never handed to accept()."""
    sock = trace.endpoint_of(call.side)
    rsts = [e for _, e in window if e.src == sock and e.has("RST")]
    lines = [*lines, "the listening socket closed"]
    if rsts:
        lines.append(f"RST sent by {sock} {after(rsts[0].t - call.t)} close(), to {len(rsts)} queued connection(s)")
    elif trace.captured:
        lines.append("nothing sent: no connection waited in its accept queue")
    else:
        lines.append("segments were not captured here: what it reset is not known")
    return CloseOutcome(call.side, "listener", False, tuple(lines))


def _already_over(trace: Trace, call: Syscall, sock: str, exact: bool) -> str:
    """Why a close() with nothing to send had nothing to send: the FIN or RST seen before it."""
    before = [e for e in trace.segments() if e.t <= call.t and (e.has("RST") or (e.src == sock and e.has("FIN")))]
    if not before:
        return "no FIN needed in its state"
    last = before[-1]
    what = "connection already reset by" if last.has("RST") else "FIN already sent by"
    return f"{what} {last.src}" + (f" at {format_ms(last.t - q.origin(trace))}" if exact else "")


def _other_holders(trace: Trace, position: int, side: str) -> str | None:
    """Another process that still held this socket's descriptor at the close (forked, not yet closed)."""
    sock = trace.endpoint_of(side)
    holders = [sock]
    gone: set[str] = set()
    for e in trace.events[:position]:
        if not isinstance(e, Syscall) or trace.endpoint_of(e.side) != sock or e.failed:
            continue
        if e.call == "fork" and isinstance(e.result, str):
            holders.append(e.result)
        elif e.call in ("close", "exit"):
            gone.add(e.side)
    others = [h for h in holders if h != side and h not in gone]
    return ", ".join(others) if others and len(holders) > 1 else None
