"""What a trace shows about one socket: the walk its states took, each step tied to the segment or call behind it.

The diagrams light what happened from this evidence only (segments, calls, counters), never from a
scenario's name, so a student's own scenario is drawn as faithfully as a built-in one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from closekit import query as q
from closekit import tcp
from closekit.trace import StateChange, Syscall, Trace


@dataclass(frozen=True)
class LitStep:
    """One state of a side's explained path: the event chosen by evidence and when it happened (s, relative)."""

    state: str
    event: str | None
    inferred: bool
    t: float | None


def _observed(trace: Trace, side: str, conn: int) -> list[StateChange]:
    """The socket's recorded states, a state repeated in a row counted once."""
    changes = q.state_changes(trace, side, conn)
    return [e for i, e in enumerate(changes) if i == 0 or e.state != changes[i - 1].state]


def lit_path(trace: Trace, side: str, conn: int = 1) -> list[LitStep]:
    """The states of `side`'s socket of connection `conn` with the passed-through ones filled in, each
    with its event and time; conn 0 is the server's listening socket, a socket of its own (the
    connection's socket is born from it in SYN_RECEIVED: see `listener_origin`).

    A path that starts in SYN_SENT (or LISTEN) starts with the connect() (or listen()) that put it there.
    Between two observed states the cheapest walk of `closekit.tcp` whose every step has evidence
    in the trace is taken (CLOSE_WAIT -> CLOSED is a reset when this side sent no FIN); with no
    such walk, the cheapest. Raises ValueError if the path is not a legal walk at all.
    """
    observed = _observed(trace, side, conn)
    check = tcp.check_path([e.state for e in observed])
    if not check.legal:
        raise ValueError(check.reason)
    if not observed:
        return []
    t0 = q.origin(trace)
    opener = {tcp.SYN_SENT: ("connect", tcp.ACTIVE_OPEN), tcp.LISTEN: ("listen", tcp.PASSIVE_OPEN)}
    call, event = opener.get(observed[0].state, ("", ""))
    opened = _call_before(trace, side, call, observed[0]) if call else None
    if opened is not None:  # the socket was CLOSED until this call
        syn = q.first(trace, "SYN", trace.endpoint_of(side), after=opened.t, until=observed[0].t, conn=conn)
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
    calls = [e for e in q.calls_on(trace, trace.endpoint_of(side), call) if e.t <= first.t]
    return calls[-1] if calls else None


def listener_origin(trace: Trace, side: str, conn: int = 1) -> float | None:
    """When the connection's socket was born from the listening socket (seconds from the trace's
    start: its SYN's arrival, else its first state), or None if this socket was not: its path does
    not start in SYN_RECEIVED, or the side has no listening socket in the trace."""
    observed = _observed(trace, side, conn)
    if conn == 0 or not observed or observed[0].state != tcp.SYN_RECEIVED:
        return None
    if not q.state_changes(trace, side, 0):
        return None
    peer = q.peer(trace.endpoint_of(side))
    syns = [s for s in q.segments(trace, peer, "SYN", conn=conn, arrived=True) if s.flags == ("SYN",)]
    born = syns[0].arrived if syns and syns[0].arrived <= observed[0].t else observed[0].t  # type: ignore[operator]
    return born - q.origin(trace)


def _choose(
    trace: Trace, side: str, conn: int, step: tcp.Step, start: float, end: float
) -> tuple[str | None, float | None]:
    """Which of the step's candidate events the evidence in [start, end] supports, and its time."""
    sock = trace.endpoint_of(side)
    peer = q.peer(sock)
    candidates = set(step.events)
    calls = [e for e in q.calls_on(trace, sock) if start <= e.t <= end and e.call in ("close", "shutdown")]
    # a state a call brings is dated at the call's start: what the call sent follows, while it runs
    sent_until = max([end, *(q.end(c) for c in calls if c.t == end)])
    own_rst = q.first(trace, "RST", sock, after=start, until=sent_until, conn=conn)
    peer_rst = q.first(trace, "RST", peer, after=start, until=end, conn=conn, arrived=True)

    if candidates & tcp.ABORTIVE and (own_rst or peer_rst):
        if own_rst and (candidates - {tcp.RCV_RST}) & tcp.ABORTIVE:
            closes = [c for c in calls if c.call == "close" and c.t <= own_rst.t]
            last = closes[-1] if closes else None
            if last and tcp.LISTENER_CLOSED in candidates and last.args.get("socket") == "listener":
                return tcp.LISTENER_CLOSED, own_rst.t
            # __tcp_close looks at unread data first, at SO_LINGER {on, 0} only without any
            unread = last is not None and (
                q.unread_at(trace, sock, last.t, conn) > 0 or trace.counter("TcpExt:TCPAbortOnClose") > 0
            )
            if last and tcp.CLOSE_UNREAD in candidates and unread:
                return tcp.CLOSE_UNREAD, own_rst.t
            if last and tcp.CLOSE_LINGER_ZERO in candidates and _abortive(q.linger_at(trace, sock, last.t)):
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
        if last and tcp.CLOSE_LINGER_ZERO in candidates and _abortive(q.linger_at(trace, sock, last.t)):
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
        fin = q.first(trace, "FIN", sock, after=start, until=sent_until, conn=conn)
        return event, fin.t if fin else (calls[-1].t if calls else None)
    event = orderly[0]
    if event in (tcp.RCV_FIN, tcp.RCV_FIN_ACK):
        fin = q.first(trace, "FIN", peer, after=start, until=end, conn=conn, arrived=True)
        return event, fin.arrived if fin else None
    if event == tcp.RCV_SYN_ACK:
        synack = q.first(trace, ("SYN", "ACK"), peer, after=start, until=end, conn=conn, arrived=True)
        return event, synack.arrived if synack else None
    if event == tcp.RCV_ACK_OF_FIN:
        fin = q.first(trace, "FIN", sock, until=end, conn=conn)
        ack = q.ack_of(trace, fin, delivered=True, resent=True) if fin is not None else None
        if ack is not None and ack.arrived <= end:  # type: ignore[operator]
            return event, ack.arrived
        if gave_up and trace.captured:  # the FIN was never acknowledged: retries ran out
            return gave_up[0], None
    return event, None


def _abortive(lg: q.Linger | None) -> bool:
    return lg is not None and lg.abortive
