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


def _first(segments: Iterable[Segment], flag: str, start: float, end: float) -> Segment | None:
    return next((s for s in segments if s.has(flag) and start <= s.t <= end), None)


def lit_path(trace: Trace, side: str) -> list[LitStep]:
    """The side's observed states with the passed-through ones filled in, each with its event and time.

    Between two observed states the cheapest walk of `closekit.tcp` whose every step has evidence
    in the trace is taken (CLOSE_WAIT -> CLOSED is a reset when this side sent no FIN); with no
    such walk, the cheapest. Raises ValueError if the path is not a legal walk at all.
    """
    observed = [e for e in trace.events if isinstance(e, StateChange) and e.side == side]
    observed = [e for i, e in enumerate(observed) if i == 0 or e.state != observed[i - 1].state]
    check = tcp.check_path([e.state for e in observed])
    if not check.legal:
        raise ValueError(check.reason)
    if not observed:
        return []
    t0 = origin(trace)
    lit = [LitStep(observed[0].state, None, False, observed[0].t - t0)]
    for before, after in itertools.pairwise(observed):
        options = []
        for walk in tcp.walks(before.state, after.state):
            cursor, chosen = before.t, []
            for step in tcp.walk_steps(walk):
                event, when = _choose(trace, side, step, cursor, after.t)
                chosen.append((step, event, when))
                cursor = when if when is not None else cursor
            options.append(chosen)
        best = next((o for o in options if all(when is not None for _, _, when in o)), options[0])
        for step, event, when in best:
            if when is None and not step.inferred:
                when = after.t
            lit.append(LitStep(step.state, event, step.inferred, None if when is None else when - t0))
    return lit


def _choose(trace: Trace, side: str, step: tcp.Step, start: float, end: float) -> tuple[str | None, float | None]:
    """Which of the step's candidate events the evidence in [start, end] supports, and its time."""
    sock = trace.endpoint_of(side)
    peer = "server" if sock == "client" else "client"
    mine, theirs = trace.segments(src=sock), trace.segments(src=peer)
    candidates = set(step.events)
    calls = [e for e in own_syscalls(trace, sock) if start <= e.t <= end and e.call in ("close", "shutdown")]
    own_rst, peer_rst = _first(mine, "RST", start, end), _first(theirs, "RST", start, end)

    if candidates & tcp.ABORTIVE and (own_rst or peer_rst):
        if own_rst and (candidates - {tcp.RCV_RST}) & tcp.ABORTIVE:
            closes = [c for c in calls if c.call == "close" and c.t <= own_rst.t]
            if closes and tcp.CLOSE_LINGER_ZERO in candidates and linger_zero_before(trace, sock, closes[-1].t):
                return tcp.CLOSE_LINGER_ZERO, own_rst.t
            if closes and tcp.CLOSE_UNREAD in candidates:
                return tcp.CLOSE_UNREAD, own_rst.t
            if tcp.RCV_DATA_AFTER_SHUTDOWN in candidates:
                return tcp.RCV_DATA_AFTER_SHUTDOWN, own_rst.t
        if peer_rst and tcp.RCV_RST in candidates:
            return tcp.RCV_RST, peer_rst.t
    orderly = [e for e in step.events if e not in tcp.ABORTIVE]
    if not orderly:
        return (step.events[0] if step.events else None), None
    if set(orderly) >= {tcp.CLOSE, tcp.SHUTDOWN_WR}:
        event = tcp.SHUTDOWN_WR if calls and calls[-1].call == "shutdown" else tcp.CLOSE
        fin = _first(mine, "FIN", start, end)
        return event, fin.t if fin else (calls[-1].t if calls else None)
    event = orderly[0]
    if event in (tcp.RCV_FIN, tcp.RCV_FIN_ACK):
        fin = _first(theirs, "FIN", start, end)
        return event, fin.t if fin else None
    if event == tcp.RCV_ACK_OF_FIN:
        fins = [s for s in mine if s.has("FIN") and s.t <= end]
        if fins:
            fin_end = fins[-1].seq + fins[-1].len + 1
            ack = next((s for s in theirs if s.t >= fins[-1].t and s.has("ACK") and s.ack >= fin_end), None)
            return event, ack.t if ack else None
    return event, None
