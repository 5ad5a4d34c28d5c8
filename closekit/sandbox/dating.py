"""Each socket's states, dated by what caused them, not by when the lab happened to look.

The lab sees a socket's state when it looks (after a packet, a reply, a timer); the state began
earlier, at its cause, and a state that lasted less than the lab took to look again may not have
been seen at all (a reader holding its socket locked takes a FIN from the backlog only when it lets
go, and may close() at once: the lab then finds LAST_ACK, never CLOSE_WAIT). TCP's table
(closekit.tcp) says which events lead from one state to the next, and each event has a witness in
the trace:
- a call of the application (close, shutdown, connect, listen): the state begins inside the call,
  at its start — FIN_WAIT_1 before the FIN the close() sends, CLOSED before an abort's RST;
- a segment from the peer (its SYN, the ACK of a FIN, a FIN, an RST, data after a SHUT_RD): the
  state begins as it arrives;
- a timer (TIME_WAIT's end, an orphan's FIN_WAIT_2 timeout, retransmissions run out): no witness;
  the state begins when the lab, looking at the timer's deadline, finds it.
Between two states the lab saw, the path is the cheapest walk of the table whose every step has a
witness, in order, before the second was seen; the states on the way are put in, dated by theirs.
Where no walk is witnessed, the state keeps the time of the look that found it.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from closekit import tcp
from closekit.trace import Segment, StateChange, Syscall

MAX_STEPS = 4  # transitions a walk between two seen states may take
_CALLS = {
    tcp.ACTIVE_OPEN: ("connect",),
    tcp.PASSIVE_OPEN: ("listen",),
    tcp.CLOSE: ("close", "exit", "call"),
    tcp.CLOSE_UNREAD: ("close", "exit", "call"),
    tcp.CLOSE_LINGER_ZERO: ("close", "exit", "call"),
    tcp.SHUTDOWN_WR: ("shutdown", "call"),
    tcp.LISTENER_CLOSED: ("close", "exit", "call"),
}
_TIMERS = frozenset({tcp.TIMEOUT_2MSL, tcp.RETRIES_RUN_OUT, tcp.FIN_WAIT_2_TIMEOUT})
# a state seen first, with nothing observed before it: the events that make it
_FIRST = {
    tcp.SYN_SENT: (tcp.ACTIVE_OPEN,),
    tcp.LISTEN: (tcp.PASSIVE_OPEN,),
    tcp.SYN_RECEIVED: (tcp.RCV_SYN,),
    tcp.ESTABLISHED: (tcp.RCV_SYN_ACK, tcp.RCV_ACK_OF_SYN),
}


@dataclass(frozen=True)
class Observation:
    """A look at `seen` (monotonic time) found `endpoint`'s socket of connection `conn` (0: the
    listener) in a new `state`."""

    order: int
    endpoint: str
    conn: int
    state: str
    seen: float


class _Witnesses:
    """The trace's calls and segments, and the same sorted the ways the searches below ask for them."""

    def __init__(self, calls: list[tuple[str, Syscall]], segments: list[Segment]) -> None:
        self.calls = calls  # (endpoint, call)
        self.segments = segments
        self.calls_of: dict[str, list[Syscall]] = {}  # endpoint -> its processes' calls
        for endpoint, c in calls:
            self.calls_of.setdefault(endpoint, []).append(c)
        self.arriving: dict[str, list[Segment]] = {}  # endpoint -> the segments that reached it
        self.fins: dict[tuple[str, int], list[Segment]] = {}  # (sender, connection) -> its FIN segments
        for s in segments:
            if s.arrived is not None:
                self.arriving.setdefault(s.dst, []).append(s)
            if "FIN" in s.flags:
                self.fins.setdefault((s.src, s.conn), []).append(s)


def date_states(
    observed: Iterable[Observation], calls: list[tuple[str, Syscall]], segments: list[Segment], t0: float
) -> list[tuple[int, StateChange]]:
    """(order, StateChange) for each observation, and for each state it passed on the way there,
    each dated by its cause (relative to t0)."""
    w = _Witnesses(calls, segments)
    previous: dict[tuple[str, int], tuple[str, float]] = {}  # socket -> (state, when it began)
    dated = []
    for o in observed:
        key = (o.endpoint, o.conn)
        before, began = previous.get(key, (None, float("-inf")))
        for state, t in _path(o, before, began, o.seen - t0, w):
            dated.append((o.order, StateChange(t=t, side=o.endpoint, state=state, conn=o.conn)))
            began = t
        previous[key] = (o.state, began)
    return dated


def _path(o: Observation, before: str | None, began: float, seen: float, w: _Witnesses) -> list[tuple[str, float]]:
    """The states from `before` (excluded) to `o.state` (included), each with its date."""
    if before is None:
        made = [_witness(e, o, o.state, None, began, seen, w, latest=True) for e in _FIRST.get(o.state, ())]
        found = [x[0] for x in made if x is not None]
        return [(o.state, max(found) if found else seen)]
    for walk in _walks(before, o.state):
        dates: list[float] = []
        t = began
        for i, (a, b) in enumerate(itertools.pairwise(walk)):
            events = tcp.events_between(a, b)
            found = [x for e in events if (x := _witness(e, o, b, a, t, seen, w)) is not None]
            last = i == len(walk) - 2
            if found:  # a witness that must be this step's cause before one that only may be (a function)
                sure = [when for when, certain in found if certain]
                t = min(sure or [when for when, _certain in found])
            elif last and (any(e in _TIMERS for e in events) or len(walk) == 2):
                t = seen  # a timer's doing, or no witness for the one step the lab saw: when it was seen
            else:
                break
            dates.append(t)
        else:
            return list(zip(walk[1:], dates, strict=True))
    return [(o.state, seen)]


@functools.cache
def _walks(source: str, target: str) -> tuple[tuple[str, ...], ...]:
    """Walks of the table from `source` to `target` without repeated states, cheapest first (each step
    costs 1, an abort or a timer's giving up 10), at most MAX_STEPS long."""
    found: list[tuple[int, int, list[str]]] = []
    queue: list[tuple[int, int, list[str]]] = [(0, 0, [source])]
    order = 0
    while queue:
        cost, _n, walk = heapq.heappop(queue)
        if walk[-1] == target and len(walk) > 1:
            found.append((cost, len(found), walk))
            continue
        if len(walk) > MAX_STEPS:
            continue
        for t in tcp.transitions_from(walk[-1]):
            if t.target not in walk or t.target == target:
                order += 1
                step = 10 if t.abortive or t.gives_up else 1
                heapq.heappush(queue, (cost + step, order, [*walk, t.target]))
    unique: list[tuple[str, ...]] = []
    for _cost, _n, walk in sorted(found):
        if tuple(walk) not in unique:
            unique.append(tuple(walk))
    return tuple(unique)


def _witness(
    event: str, o: Observation, state: str, before: str | None, low: float, high: float, w: _Witnesses,
    latest: bool = False,
) -> tuple[float, bool] | None:  # fmt: skip
    """When `event` happened to `o`'s socket in (low, high], by its witness: the first such arrival
    or call (the last, with `latest`: the call that made a socket seen for the first time); and
    whether that witness must be the cause (False: a function or an exit, which only may be)."""
    certain = True
    if event in _CALLS:
        calls = _calls(event, o, low, high, w)
        found = [c.t for c in calls]
        certain = any(c.call not in ("exit", "call") for c in calls)
        if not found:
            sent = _sent_with(event, o, state, low, high, w)
            return None if sent is None else (sent, True)
    else:
        arriving = w.arriving.get(o.endpoint, ())  # (arrived is never None there)
        found = [s.arrived for s in arriving if low < s.arrived <= high and _arrival(event, s, o, before, w)]  # type: ignore[operator]
    if not found:
        return None
    return (max(found) if latest else min(found)), certain  # type: ignore[type-var]


def _arrival(event: str, s: Segment, o: Observation, before: str | None, w: _Witnesses) -> bool:
    """Is `s` a segment that reached `o`'s socket and can be `event`?"""
    if s.dst != o.endpoint or s.arrived is None or (o.conn and s.conn != o.conn):
        return False
    flags = set(s.flags)
    if event == tcp.RCV_SYN:
        return flags >= {"SYN"} and "ACK" not in flags
    if event == tcp.RCV_SYN_ACK:
        return flags >= {"SYN", "ACK"}
    if event == tcp.RCV_ACK_OF_SYN:
        return "ACK" in flags and "SYN" not in flags
    if event == tcp.RCV_FIN:
        return "FIN" in flags
    if event in (tcp.RCV_FIN_ACK, tcp.RCV_ACK_OF_FIN):
        fins = [f.seq for f in w.fins.get((o.endpoint, s.conn), ()) if f.t < s.t]
        acked = "ACK" in flags and bool(fins) and s.ack >= max(fins) + 1
        return acked and ("FIN" in flags) == (event == tcp.RCV_FIN_ACK)
    if event == tcp.RCV_RST:
        return "RST" in flags
    if event == tcp.RCV_DATA_AFTER_SHUTDOWN:  # data that came after the reading half was shut
        shut = [c.t for c in w.calls_of.get(o.endpoint, ()) if _shuts_reading(c)]
        return s.len > 0 and bool(shut) and s.arrived > min(shut)  # type: ignore[operator]
    return False


def _shuts_reading(c: Syscall) -> bool:
    return (c.call == "shutdown" and c.args.get("how") in ("SHUT_RD", "SHUT_RDWR")) or c.call in ("close", "exit")


def _calls(event: str, o: Observation, low: float, high: float, w: _Witnesses) -> list[Syscall]:
    """The calls of `o.endpoint`'s processes in (low, high] that can have caused `event` on this socket:
    a shutdown that shuts the sending half; a close() of the right socket (the listener's for a
    listener) by the last process still holding it; a connect or listen; an exit or a function."""
    names = _CALLS[event]
    mine = w.calls_of.get(o.endpoint, [])
    found = []
    for c in mine:
        if c.call not in names or not low < c.t <= high:
            continue
        if c.call == "shutdown" and c.args.get("how") == "SHUT_RD":
            continue
        if c.call == "close":
            on_listener = c.args.get("socket") == "listener"
            if on_listener != (o.conn == 0 or event == tcp.LISTENER_CLOSED):
                continue
            if not on_listener and _others_hold(c, mine):
                continue
        found.append(c)
    plain = [c for c in found if c.call not in ("exit", "call")]
    return plain or found  # a function or an exit only where no call the lab knows could have done it


def _others_hold(close: Syscall, mine: list[Syscall]) -> bool:
    """Another process of the endpoint still held the connection when `close` ran: it was forked
    before and had neither closed it nor exited (so this close() only dropped a reference)."""
    born = {c.result: c.t for c in mine if c.call == "fork" and isinstance(c.result, str)}
    for c in mine:
        born.setdefault(c.side, float("-inf"))
    for process, since in born.items():
        if process == close.side or since >= close.t:
            continue
        gone = any(
            c.side == process and c.t < close.t and (c.call == "exit" or (c.call == "close" and not c.args))
            for c in mine
        )
        if not gone:
            return True
    return False


def _sent_with(event: str, o: Observation, state: str, low: float, high: float, w: _Witnesses) -> float | None:
    """A cause the lab did not see as a call (a child's close inside a function): the segment the
    transition sends, if it left in the window, dates it."""
    sends = next((t.sends for t in tcp.TRANSITIONS.values() if t.event == event and t.target == state), "")
    flag = sends.split(",")[0]
    if not flag:
        return None
    found = [s.t for s in w.segments if s.src == o.endpoint and s.conn == o.conn and s.has(flag) and low < s.t <= high]
    return min(found) if found else None
