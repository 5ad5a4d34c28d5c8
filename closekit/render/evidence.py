"""What a trace shows about one socket: the walk its states took, each step tied to the segment or call behind it.

The diagrams light what happened from this evidence only (segments, calls, counters), never from a
scenario's name, so a student's own scenario is drawn as faithfully as a built-in one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from closekit import tcp
from closekit.trace import Segment, StateChange, Syscall, Trace
from closekit.transcript import conn_at


@dataclass(frozen=True)
class LitStep:
    """One state of a side's explained path: the event chosen by evidence and when it happened (s, relative)."""

    state: str
    event: str | None
    inferred: bool
    t: float | None


def origin(trace: Trace) -> float:
    """Time zero of a trace's drawings: its first event."""
    return trace.events[0].t if trace.events else 0.0


def own_syscalls(trace: Trace, socket: str) -> list[Syscall]:
    """Calls made on `socket` (an endpoint), by whichever process: a forked child acts on its parent's."""
    return [e for e in trace.syscalls() if trace.endpoint_of(e.side) == socket]


def linger_zero_before(trace: Trace, socket: str, t: float) -> bool:
    """Had this socket's owner set SO_LINGER {on, 0} (the last SO_LINGER call before `t`)?"""
    lingers = [
        e
        for e in own_syscalls(trace, socket)
        if e.call == "setsockopt" and e.args.get("option") == "SO_LINGER" and e.t <= t and not e.failed
    ]
    return bool(lingers) and bool(lingers[-1].args.get("l_onoff")) and lingers[-1].args.get("l_linger") == 0


def linger_seconds_before(trace: Trace, socket: str, t: float) -> int:
    """l_linger of the last SO_LINGER {on, n} before `t` (0 when lingering is off)."""
    lingers = [e for e in own_syscalls(trace, socket) if e.call == "setsockopt" and e.args.get("option") == "SO_LINGER"]
    lingers = [e for e in lingers if e.t <= t and not e.failed]
    if not lingers or not lingers[-1].args.get("l_onoff"):
        return 0
    return int(lingers[-1].args.get("l_linger", 0))


def unread_bytes(trace: Trace, call: Syscall) -> int:
    """Bytes the peer's segments had brought to the caller's connection by the time of `call`, minus
    the bytes its socket had read: by sequence number, so a retransmission counts once, and only
    what arrived (a segment the wire dropped, or one still in flight, brought nothing)."""
    sock = trace.endpoint_of(call.side)
    peer = "server" if sock == "client" else "client"
    conn = conn_at(trace, call.t)
    began = min((s.t for s in trace.segments(flags="SYN") if s.conn == conn), default=float("-inf"))
    ends = [
        s.seq + s.len
        for s in trace.segments(src=peer)
        if s.conn == conn and s.len > 0 and s.arrived is not None and s.arrived <= call.t
    ]
    reads = [e for e in own_syscalls(trace, sock) if e.call == "recv" and began <= e.t < call.t]
    read = sum(e.result for e in reads if isinstance(e.result, int) and e.result > 0)
    return max(0, (max(ends) - 1 if ends else 0) - read)


def _first(segments: Iterable[Segment], flag: str, start: float, end: float) -> Segment | None:
    """The first segment sent with `flag` in [start, end] (by when it left)."""
    return next((s for s in segments if s.has(flag) and start <= s.t <= end), None)


def _first_in(segments: Iterable[Segment], flag: str, start: float, end: float) -> Segment | None:
    """The first segment received with `flag` in [start, end], by when it arrived: a segment the wire
    dropped was never received."""
    return next((s for s in segments if s.has(flag) and s.arrived is not None and start <= s.arrived <= end), None)


def _states(trace: Trace, side: str, conn: int) -> list[StateChange]:
    observed = [e for e in trace.events if isinstance(e, StateChange) and e.side == side and e.conn == conn]
    return [e for i, e in enumerate(observed) if i == 0 or e.state != observed[i - 1].state]


def lit_path(trace: Trace, side: str, conn: int = 1) -> list[LitStep]:
    """The states of `side`'s socket of connection `conn` with the passed-through ones filled in, each
    with its event and time; conn 0 is the server's listening socket, a socket of its own (the
    connection's socket is born from it in SYN_RECEIVED: see `listener_origin`).

    A path that starts in SYN_SENT (or LISTEN) starts with the connect() (or listen()) that put it there.
    Between two observed states the cheapest walk of `closekit.tcp` whose every step has evidence
    in the trace is taken (CLOSE_WAIT -> CLOSED is a reset when this side sent no FIN); with no
    such walk, the cheapest. Raises ValueError if the path is not a legal walk at all.
    """
    observed = _states(trace, side, conn)
    check = tcp.check_path([e.state for e in observed])
    if not check.legal:
        raise ValueError(check.reason)
    if not observed:
        return []
    t0 = origin(trace)
    opener = {tcp.SYN_SENT: ("connect", tcp.ACTIVE_OPEN), tcp.LISTEN: ("listen", tcp.PASSIVE_OPEN)}
    call, event = opener.get(observed[0].state, ("", ""))
    opened = _call_before(trace, side, call, observed[0]) if call else None
    if opened is not None:  # the socket was CLOSED until this call
        syn = _first([s for s in trace.segments(src=trace.endpoint_of(side)) if s.conn == conn], "SYN", opened.t,
                     observed[0].t)  # fmt: skip
        lit = [
            LitStep(tcp.CLOSED, None, False, opened.t - t0),
            LitStep(observed[0].state, event, False, (syn.t if syn else opened.t) - t0),
        ]
    else:
        lit = [LitStep(observed[0].state, None, False, observed[0].t - t0)]
    for before, after in itertools.pairwise(observed):
        options = []
        for walk in tcp.walks(before.state, after.state):
            cursor, chosen = before.t, []
            for step in tcp.walk_steps(walk):
                event, when = _choose(trace, side, conn, step, cursor, after.t)
                chosen.append((step, event, when))
                cursor = when if when is not None else cursor
            options.append(chosen)
        best = next((o for o in options if all(when is not None for _, _, when in o)), options[0])
        for step, event, when in best:
            if when is None and not step.inferred:
                when = after.t
            lit.append(LitStep(step.state, event, step.inferred, None if when is None else when - t0))
    return lit


def _call_before(trace: Trace, side: str, call: str, first: StateChange) -> Syscall | None:
    """The connect() or listen() that put a socket in its first state: the side's last one begun by then."""
    calls = [e for e in own_syscalls(trace, trace.endpoint_of(side)) if e.call == call and e.t <= first.t]
    return calls[-1] if calls else None


def listener_origin(trace: Trace, side: str, conn: int = 1) -> float | None:
    """When the connection's socket was born from the listening socket (seconds from the trace's
    start: its SYN's arrival, else its first state), or None if this socket was not: its path does
    not start in SYN_RECEIVED, or the side has no listening socket in the trace."""
    observed = _states(trace, side, conn)
    if conn == 0 or not observed or observed[0].state != tcp.SYN_RECEIVED:
        return None
    if not any(isinstance(e, StateChange) and e.side == side and e.conn == 0 for e in trace.events):
        return None
    peer = "server" if trace.endpoint_of(side) == "client" else "client"
    syns = [s for s in trace.segments(src=peer) if s.conn == conn and s.flags == ("SYN",) and s.arrived is not None]
    born = syns[0].arrived if syns and syns[0].arrived <= observed[0].t else observed[0].t  # type: ignore[operator]
    return born - origin(trace)


def _choose(
    trace: Trace, side: str, conn: int, step: tcp.Step, start: float, end: float
) -> tuple[str | None, float | None]:
    """Which of the step's candidate events the evidence in [start, end] supports, and its time."""
    sock = trace.endpoint_of(side)
    peer = "server" if sock == "client" else "client"
    mine = [s for s in trace.segments(src=sock) if s.conn == conn]
    theirs = [s for s in trace.segments(src=peer) if s.conn == conn]
    candidates = set(step.events)
    calls = [e for e in own_syscalls(trace, sock) if start <= e.t <= end and e.call in ("close", "shutdown")]
    own_rst, peer_rst = _first(mine, "RST", start, end), _first_in(theirs, "RST", start, end)

    if candidates & tcp.ABORTIVE and (own_rst or peer_rst):
        if own_rst and (candidates - {tcp.RCV_RST}) & tcp.ABORTIVE:
            closes = [c for c in calls if c.call == "close" and c.t <= own_rst.t]
            last = closes[-1] if closes else None
            if last and tcp.LISTENER_CLOSED in candidates and last.args.get("socket") == "listener":
                return tcp.LISTENER_CLOSED, own_rst.t
            # __tcp_close looks at unread data first, at SO_LINGER {on, 0} only without any
            unread = last is not None and (unread_bytes(trace, last) > 0 or trace.counter("TcpExt:TCPAbortOnClose") > 0)
            if last and tcp.CLOSE_UNREAD in candidates and unread:
                return tcp.CLOSE_UNREAD, own_rst.t
            if last and tcp.CLOSE_LINGER_ZERO in candidates and linger_zero_before(trace, sock, last.t):
                return tcp.CLOSE_LINGER_ZERO, own_rst.t
            if last and tcp.CLOSE_UNREAD in candidates and last.args.get("socket") != "listener":
                return tcp.CLOSE_UNREAD, own_rst.t
            if tcp.RCV_DATA_AFTER_SHUTDOWN in candidates:
                return tcp.RCV_DATA_AFTER_SHUTDOWN, own_rst.t
        if peer_rst and tcp.RCV_RST in candidates:
            return tcp.RCV_RST, peer_rst.arrived
    if not trace.captured and candidates & tcp.ABORTIVE:  # no segments seen: the socket's own close() tells
        closes = [c for c in calls if c.call == "close"]
        last = closes[-1] if closes else None
        if last and tcp.LISTENER_CLOSED in candidates and last.args.get("socket") == "listener":
            return tcp.LISTENER_CLOSED, last.t
        if last and tcp.CLOSE_LINGER_ZERO in candidates and linger_zero_before(trace, sock, last.t):
            return tcp.CLOSE_LINGER_ZERO, last.t
        if last and tcp.CLOSE_UNREAD in candidates and last.args.get("socket") != "listener":
            return tcp.CLOSE_UNREAD, last.t
    gave_up = [e for e in step.events if e in tcp.GIVE_UP]
    orderly = [e for e in step.events if e not in tcp.ABORTIVE and e not in tcp.GIVE_UP]
    if not orderly:
        if gave_up and trace.captured:  # no RST either way: the socket gave up on an unanswering peer
            return gave_up[0], None
        return (step.events[0] if step.events else None), None
    if set(orderly) >= {tcp.CLOSE, tcp.SHUTDOWN_WR}:
        event = tcp.SHUTDOWN_WR if calls and calls[-1].call == "shutdown" else tcp.CLOSE
        fin = _first(mine, "FIN", start, end)
        return event, fin.t if fin else (calls[-1].t if calls else None)
    event = orderly[0]
    if event in (tcp.RCV_FIN, tcp.RCV_FIN_ACK):
        fin = _first_in(theirs, "FIN", start, end)
        return event, fin.arrived if fin else None
    if event == tcp.RCV_SYN_ACK:
        synack = next((s for s in theirs if s.has("SYN") and s.has("ACK") and s.arrived is not None
                       and start <= s.arrived <= end), None)  # fmt: skip
        return event, synack.arrived if synack else None
    if event == tcp.RCV_ACK_OF_FIN:
        fins = [s for s in mine if s.has("FIN") and s.t <= end]
        if fins:
            fin_end = fins[-1].seq + fins[-1].len + 1
            ack = next((s for s in theirs if s.arrived is not None and fins[0].t <= s.arrived <= end
                        and s.has("ACK") and s.ack >= fin_end), None)  # fmt: skip
            if ack is not None:
                return event, ack.arrived
        if gave_up and trace.captured:  # the FIN was never acknowledged: retries ran out
            return gave_up[0], None
    return event, None
