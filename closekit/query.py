"""One way to ask a trace: who called what, when, what went on the wire meanwhile, and what answered it.

The claims ledger, the exercises and the diagrams all read traces; they ask through these functions
so that "the server's first close()", "the ACK of that FIN" or "the call that was blocked when this
segment arrived" mean the same thing everywhere. Every function is a pure function of the Trace.

Times are the trace's clock (seconds). A *window* is `start <= t < end`, either bound left open with
None. A segment is placed in time by when it left its sender (`t`); `arrived` is when the wire
handed it over (the same on a link without delay).

    >>> from closekit import query as q
    >>> close = q.call(trace, "server", "close")
    >>> q.segments(trace, src="server", after=close)          # what the server sent after it
    >>> q.ack_of(trace, q.first(trace, "FIN", src="client"))  # the server's ACK of the client's FIN
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from closekit.lang import text
from closekit.trace import Segment, Signal, StateChange, Syscall, Trace

__all__ = [
    "Linger",
    "ack_of",
    "after_call",
    "answered",
    "answered_during",
    "blocked_at",
    "call",
    "calls",
    "calls_after",
    "calls_on",
    "conn_of",
    "during",
    "end",
    "ended_with",
    "epoll_bits",
    "first",
    "first_flag",
    "flags_text",
    "linger_at",
    "moved",
    "origin",
    "peer",
    "read_by",
    "received",
    "recv_error",
    "reset_kind",
    "result_text",
    "segments",
    "sent_by_call",
    "sent_total",
    "seq_end",
    "signals_after",
    "signals_of",
    "slept",
    "state_at",
    "state_before",
    "state_changes",
    "state_found",
    "unread_at",
    "unsent_after",
    "went_to",
]

READ_TO_EOF = "read_to_eof"


def peer(endpoint: str) -> str:
    """The other endpoint: 'server' for 'client' and back."""
    return "server" if endpoint == "client" else "client"


def origin(trace: Trace) -> float:
    """Time zero of a trace's drawings and evidence: its first event."""
    return trace.events[0].t if trace.events else 0.0


# ---- calls ----------------------------------------------------------------------------------------
def _is_loop(c: Syscall) -> bool:
    return c.call == "recv" and c.args.get("until") == "EOF"


def calls(trace: Trace, side: str | None = None, name: str | None = None, *, listener: bool = False) -> list[Syscall]:
    """`side`'s calls named `name`, in order. "recv" is one recv(); "read_to_eof" is the read loop the
    trace records as recv(until=EOF); "close" does not count closing a listening socket unless
    `listener`."""
    if name == READ_TO_EOF:
        return [c for c in trace.syscalls(side, "recv") if _is_loop(c)]
    found = trace.syscalls(side, name)
    if name == "recv":
        return [c for c in found if not _is_loop(c)]
    if name == "close" and not listener:
        return [c for c in found if c.args.get("socket") != "listener"]
    return found


def calls_on(trace: Trace, endpoint: str, name: str | None = None) -> list[Syscall]:
    """Calls made on `endpoint`'s socket by whichever process holds it (a forked child acts on its
    parent's), named `name` as in `calls`."""
    return [c for c in calls(trace, None, name) if trace.endpoint_of(c.side) == endpoint]


def call(trace: Trace, side: str, name: str, index: int = 0) -> Syscall | None:
    """The `index`-th (from 0; -1 for the last) of `side`'s `name` calls, or None if there is no such call."""
    found = calls(trace, side, name)
    return found[index] if -len(found) <= index < len(found) else None


def end(c: Syscall) -> float:
    """When a call returned."""
    return c.t + c.duration


def calls_after(trace: Trace, side: str | None, after: Syscall | float, name: str | None = None) -> list[Syscall]:
    """`side`'s calls (any side's with None) whose result came after `after` (a call: after it
    returned): those that started after it, and those blocked across it (a recv() waiting when the
    RST came, which that RST woke)."""
    when = end(after) if isinstance(after, Syscall) else after
    return [c for c in calls(trace, side, name) if end(c) > when and c is not after]


def conn_of(trace: Trace, c: Syscall) -> int:
    """The connection call `c` acted on: the one its endpoint's latest connect() (client) or accept()
    (server) before it opened or handed out. Without states or segments (or before any such call): 1."""
    endpoint = trace.endpoint_of(c.side)
    opener = "connect" if endpoint == "client" else "accept"
    opened = [o for o in calls_on(trace, endpoint, opener) if o.t <= c.t and (opener == "connect" or not o.failed)]
    conns = sorted({e.conn for e in trace.events if isinstance(e, (Segment, StateChange)) and e.conn > 0}) or [1]
    return conns[min(len(opened), len(conns)) - 1] if opened else conns[0]


BLOCKED = 0.003  # a call shorter than this (less its wait for a CPU) returned at once, whatever it did


def slept(c: Syscall) -> bool:
    """Did call `c` block: go to sleep in the kernel (for the network, a timer, buffer room) for a
    measurable time? A call that only lost the CPU on a busy machine did not (`waited` leaves that
    out); a trace that did not record sleeping (`slept` None) is read by the time alone."""
    return c.slept is not False and c.waited >= BLOCKED


def blocked_at(trace: Trace, when: float, side: str | None = None) -> Syscall | None:
    """The call (of `side`, or of anyone) that had started and not yet returned at time `when`."""
    for c in trace.syscalls(side):
        if c.t < when < end(c):
            return c
    return None


def signals_after(trace: Trace, side: str, after: Syscall | float) -> list[str]:
    """Signals delivered to `side` after `after` (a call: from its start, since a signal is raised by it)."""
    when = after.t if isinstance(after, Syscall) else after
    return [e.signal for e in trace.events if isinstance(e, Signal) and e.side == side and e.t >= when]


def signals_of(trace: Trace, c: Syscall | None) -> list[str]:
    """Signals call `c` raised: those delivered to its process from its start until that process's
    next call."""
    if c is None:
        return []
    nxt = min((o.t for o in trace.syscalls(c.side) if o.t > c.t), default=float("inf"))
    return [e.signal for e in trace.events if isinstance(e, Signal) and e.side == c.side and c.t <= e.t < nxt]


def epoll_bits(c: Syscall | None) -> frozenset[str]:
    """The event bits an epoll_wait() reported (empty for none, or for another call)."""
    if c is None or c.call != "epoll_wait" or not isinstance(c.result, list):
        return frozenset()
    return frozenset(c.result)


def received(trace: Trace, side: str) -> int:
    """Bytes `side`'s recv() calls returned, counting what a failing read loop got before its error."""
    return sum(c.result for c in trace.syscalls(side, "recv") if isinstance(c.result, int) and c.result > 0)


def read_by(trace: Trace, endpoint: str, after: float, before: float | None = None) -> dict[str, int]:
    """Bytes each process of `endpoint` read with calls that returned after `after` (a recv() blocked
    across it included: what it brought) and, with `before`, by then: which process read, a forked
    child included."""
    got: dict[str, int] = {}
    for c in calls_on(trace, endpoint):
        if c.call != "recv" or end(c) <= after or (before is not None and end(c) > before):
            continue
        if isinstance(c.result, int) and c.result > 0:
            got[c.side] = got.get(c.side, 0) + c.result
    return got


def sent_total(trace: Trace, side: str) -> int:
    """Bytes `side`'s send() calls handed to the kernel (counting what a failing send moved first)."""
    return sum(c.result for c in trace.syscalls(side, "send") if isinstance(c.result, int) and c.result > 0)


def unread_at(trace: Trace, endpoint: str, when: float, conn: int = 1) -> int:
    """Bytes that had arrived at `endpoint`'s socket of connection `conn` from its peer by `when` and
    that none of its processes had read by then: what sat in its receive queue. By sequence number,
    so a retransmission counts once; reads count from the connection's first SYN on."""
    arrived = [s.seq + s.len for s in trace.segments(src=peer(endpoint)) if s.len and s.conn == conn
               and s.arrived is not None and s.arrived <= when]  # fmt: skip
    began = min((s.t for s in trace.segments(flags="SYN") if s.conn == conn), default=float("-inf"))
    got = sum(
        c.result
        for c in calls_on(trace, endpoint)
        if c.call == "recv" and began <= c.t and end(c) <= when and isinstance(c.result, int) and c.result > 0
    )
    return max(0, max(arrived, default=1) - 1 - got)


def recv_error(trace: Trace, side: str) -> str | None:
    """The errno of `side`'s first failing recv(), if one failed."""
    return next((c.errno for c in trace.syscalls(side, "recv") if c.errno), None)


# ---- segments -------------------------------------------------------------------------------------
def _bound(when: Syscall | float | None, returned: bool) -> float | None:
    if isinstance(when, Syscall):
        return end(when) if returned else when.t
    return when


def segments(
    trace: Trace,
    src: str | None = None,
    flags: str | Iterable[str] | None = None,
    *,
    after: Syscall | float | None = None,
    before: Syscall | float | None = None,
    until: float | None = None,
    data: bool | None = None,
    conn: int | None = None,
    arrived: bool = False,
) -> list[Segment]:
    """Segments from `src` carrying every flag in `flags`, that left in the window from `after` (a
    call: from its start) up to `before` (a call: up to its start) or up to and including `until`;
    `data` True keeps only segments with payload, False only those without; `conn` one connection.
    With `arrived`, a segment is placed by when it arrived, and one the wire never delivered is left out."""
    start, stop = _bound(after, returned=False), _bound(before, returned=False)
    found = []
    for s in trace.segments(src, flags):
        t = s.arrived if arrived else s.t
        if t is None or (start is not None and t < start) or (stop is not None and t >= stop):
            continue
        if (until is None or t <= until) and (data is None or bool(s.len) == data) and (conn is None or s.conn == conn):
            found.append(s)
    return found


def first(
    trace: Trace,
    flags: str | Iterable[str] | None,
    src: str | None = None,
    *,
    after: Syscall | float | None = None,
    before: Syscall | float | None = None,
    until: float | None = None,
    conn: int | None = None,
    arrived: bool = False,
) -> Segment | None:
    """The first segment from `src` with `flags` in the window (see `segments`), or None."""
    found = segments(trace, src, flags, after=after, before=before, until=until, conn=conn, arrived=arrived)
    return found[0] if found else None


def during(trace: Trace, c: Syscall, src: str | None = None, flags: str | Iterable[str] | None = None) -> list[Segment]:
    """Segments that left while call `c` ran (from its start until it returned)."""
    return segments(trace, src, flags, after=c.t, before=end(c))


def answered_during(trace: Trace, c: Syscall) -> list[Segment]:
    """Segments from the other endpoint that arrived while call `c` ran: what it could have been
    waiting for. A call that returned with none did not wait on its peer."""
    src = peer(trace.endpoint_of(c.side))
    return [s for s in trace.segments(src=src) if s.arrived is not None and c.t <= s.arrived < end(c)]


STAMP_SLACK = 0.0005  # a segment's send time and a call's clock are read apart; they agree this closely


def sent_by_call(trace: Trace, c: Syscall, flags: str | Iterable[str] | None = None) -> list[Segment]:
    """Segments with `flags` that `c`'s endpoint sent on `c`'s connection while `c` ran: what the call
    itself put on the wire (a close() that sends its FIN or RST does so before it returns)."""
    src, conn = trace.endpoint_of(c.side), conn_of(trace, c)
    return [s for s in trace.segments(src, flags) if s.conn == conn and c.t <= s.t <= end(c) + STAMP_SLACK]


def reset_kind(s: Segment) -> str:
    """How an RST came about: "active" (R., the kernel ended the connection itself: tcp_send_active_reset()
    sets ACK) or "reply" (R without ACK: tcp_v4_send_reset() answering a segment, seq = its ack)."""
    return "active" if s.has("ACK") else "reply"


def answered(trace: Trace, rst: Segment) -> Segment | None:
    """The segment a reply RST answered: the last one from its receiver, on its connection, that had
    arrived when the RST left and whose ack the RST's seq repeats; None for an active RST."""
    if not rst.has("RST") or reset_kind(rst) != "reply":
        return None
    found = [s for s in trace.segments(rst.dst) if s.conn == rst.conn and s.arrived is not None
             and s.arrived <= rst.t + STAMP_SLACK and s.ack == rst.seq]  # fmt: skip
    return found[-1] if found else None


def after_call(trace: Trace, side: str, name: str, src: str) -> list[Segment]:
    """What `src` sent from `side`'s first `name` call until the next call anyone made: the segments
    that call itself caused."""
    c = call(trace, side, name)
    if c is None:
        return []
    nxt = min((o.t for o in trace.syscalls() if o.t > c.t), default=None)
    return segments(trace, src, after=c, before=nxt)


def seq_end(s: Segment) -> int:
    """The sequence number just after `s`: its payload, and one more for a SYN or a FIN."""
    return s.seq + s.len + (1 if s.has("SYN") or s.has("FIN") else 0)


def ack_of(trace: Trace, s: Segment, delivered: bool = False, resent: bool = False) -> Segment | None:
    """The first segment of the other endpoint (same connection) that acknowledges all of `s`, sent
    after `s` arrived there; None if it was never acknowledged (or `s` never arrived). `delivered`:
    the first such that arrived back. `resent`: `s` arrived when its first copy did (itself or a
    later retransmission of it), so the ACK of a retransmission of a dropped `s` counts."""
    copies = [s]
    if resent:
        copies += [r for r in trace.segments(src=s.src) if r.t >= s.t and r is not s and r.conn == s.conn
                   and r.seq == s.seq and seq_end(r) == seq_end(s)]  # fmt: skip
    arrived = min((r.arrived for r in copies if r.arrived is not None), default=None)
    if arrived is None:
        return None
    for a in trace.segments(src=s.dst, flags="ACK"):
        if a.conn == s.conn and a.t >= arrived and a.ack >= seq_end(s) and not a.has("RST"):
            if delivered and a.arrived is None:
                continue
            return a
    return None


def unsent_after(trace: Trace, src: str, when: Syscall | float) -> int:
    """Bytes `src` sent for the first time after `when` (a call: after it returned): data that was
    still queued in its send buffer then (retransmissions do not count)."""
    t = _bound(when, returned=True)
    sent_before = max((s.seq + s.len for s in trace.segments(src=src) if s.t < t and s.len), default=1)  # type: ignore[operator]
    later = [s.seq + s.len for s in trace.segments(src=src) if s.t >= t and s.len]  # type: ignore[operator]
    return max(0, max(later, default=sent_before) - sent_before)


def first_flag(segs: Sequence[Segment]) -> str:
    """ "RST" or "FIN" (whichever of them comes first in `segs`), else "nothing"."""
    for s in segs:
        if s.has("RST"):
            return "RST"
        if s.has("FIN"):
            return "FIN"
    return "nothing"


def flags_text(segs: Sequence[Segment]) -> str:
    """Segments as tcpdump flags ("F., ."), or "nothing"."""
    return ", ".join(s.tcpdump_flags for s in segs) or text("query.nothing")


# ---- states and options ---------------------------------------------------------------------------
def state_changes(trace: Trace, side: str, conn: int = 1) -> list[StateChange]:
    """The states `side`'s socket of connection `conn` went through, with their times."""
    return [e for e in trace.events if isinstance(e, StateChange) and e.side == side and e.conn == conn]


def state_at(trace: Trace, side: str, when: float, conn: int = 1) -> str | None:
    """The last state recorded for `side`'s socket at or before `when` (None before the first)."""
    state = None
    for e in state_changes(trace, side, conn):
        if e.t > when:
            break
        state = e.state
    return state


def state_before(trace: Trace, side: str, when: float, conn: int = 1) -> str | None:
    """The state `side`'s socket was in just before `when`: what a segment arriving at `when`, or a call
    starting then, found (the lab dates a state by the segment or call that caused it, so a change at
    `when` is that segment's or call's doing)."""
    state = None
    for e in state_changes(trace, side, conn):
        if e.t >= when:
            break
        state = e.state
    return state


def went_to(trace: Trace, c: Syscall, state: str | None = None) -> StateChange | None:
    """The state call `c` took its socket to (`state`, or the first it reached): recorded after `c`
    began and before its endpoint's next call. The lab reads a socket's state after each call
    returns, so a state no segment dated is recorded just after the call that caused it."""
    endpoint, conn = trace.endpoint_of(c.side), conn_of(trace, c)
    nxt = next((o.t for o in calls_on(trace, endpoint) if o.t > c.t and o is not c), None)
    for e in state_changes(trace, endpoint, conn):
        if c.t <= e.t and (nxt is None or e.t < nxt) and (state is None or e.state == state):
            return e
    return None


_ENDING = {"FIN_WAIT_1": "FIN", "LAST_ACK": "FIN", "CLOSING": "FIN", "FIN_WAIT_2": "FIN", "TIME_WAIT": "FIN"}


def ended_with(trace: Trace, c: Syscall, until: float | None = None) -> str:
    """What call `c` put on the wire to end its connection: "FIN", "RST" or "nothing". From the
    segments its endpoint sent from the call on (until `until`, default the next call anyone made);
    where segments were not captured, from the state the call took its socket to: a FIN moves an
    open socket to FIN_WAIT_1 or LAST_ACK, an abort straight to CLOSED."""
    if trace.mode != "host-nocapture":
        nxt = until if until is not None else min((o.t for o in trace.syscalls() if o.t > c.t), default=None)
        conn = conn_of(trace, c)
        return first_flag(
            [s for s in segments(trace, trace.endpoint_of(c.side), after=c, before=nxt) if s.conn == conn]
        )
    before = state_at(trace, trace.endpoint_of(c.side), c.t, conn_of(trace, c))
    after = went_to(trace, c)
    if after is None or before in (None, "SYN_SENT", "CLOSED", "LISTEN"):
        return "nothing"
    return "RST" if after.state == "CLOSED" else _ENDING.get(after.state, "nothing")


def state_found(trace: Trace, s: Segment) -> str | None:
    """The state `s`'s receiver was in when `s` reached it. For an RST answering a segment, the state
    before that segment left: on a link without delay the whole exchange happens at once and the lab
    may date the state the RST brought at the segment that drew it."""
    if s.arrived is None:
        return None
    cause = answered(trace, s)
    when = min(s.arrived, cause.t) if cause is not None else s.arrived
    return state_before(trace, s.dst, when, s.conn)


@dataclass(frozen=True)
class Linger:
    """The SO_LINGER a socket had: `on` (l_onoff != 0) and `seconds` (l_linger)."""

    on: bool
    seconds: int

    def __str__(self) -> str:
        return f"{{l_onoff={int(self.on)}, l_linger={self.seconds}}}"

    @property
    def abortive(self) -> bool:
        """On with l_linger 0: close() resets the connection instead of sending a FIN."""
        return self.on and self.seconds == 0

    @property
    def timeout(self) -> int:
        """How long close() may sleep for the ACK of its FIN: l_linger when on, else 0."""
        return self.seconds if self.on else 0


def linger_at(trace: Trace, endpoint: str, when: float) -> Linger | None:
    """The last SO_LINGER set on `endpoint`'s socket (by whichever of its processes) before `when`;
    None if none was set (the default: off)."""
    found = [
        c
        for c in trace.syscalls(call="setsockopt")
        if c.args.get("option") == "SO_LINGER"
        and trace.endpoint_of(c.side) == endpoint
        and c.t <= when
        and not c.failed
    ]
    if not found:
        return None
    last = found[-1]
    return Linger(bool(last.args.get("l_onoff")), int(last.args.get("l_linger", 0)))


ABORTS = ("TCPAbortOnClose", "TCPAbortOnData", "TCPAbortOnLinger", "TCPAbortOnTimeout", "TCPAbortOnMemory")


def moved(trace: Trace, *names: str) -> dict[str, int]:
    """The TcpExt counters among `names` (default: the abort counters) that moved, by short name: the
    kernel's own count of the branch it took (TCPAbortOnClose: close() with unread data;
    TCPAbortOnData: SO_LINGER {1, 0}, or data reaching a socket that reads no more)."""
    return {n: trace.counter(f"TcpExt:{n}") for n in names or ABORTS if trace.counter(f"TcpExt:{n}")}


# ---- words ----------------------------------------------------------------------------------------
def result_text(c: Syscall | None) -> str:
    """How a transcript shows a call's outcome: '= 0', '= -1 ECONNRESET', '= 4344, then ECONNRESET'."""
    if c is None:
        return text("query.not_made")
    if c.call == "epoll_wait" and not c.errno:
        return "= " + ("|".join(c.result) if c.result else text("query.nothing_ready"))
    if c.errno and isinstance(c.result, int) and c.result > 0:  # a send/recv loop moved bytes, then failed
        return text("query.then", result=c.result, errno=c.errno)
    if c.errno:
        return f"= -1 {c.errno}"
    return f"= {c.result}"
