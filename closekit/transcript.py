"""A trace as a packetdrill-like transcript: plain text for terminals, an HTML table for notebooks.

One list of rows feeds every form (`rows`), so the text, the HTML table and the clock-free `story`
tell the same things in the same order:

- a call that blocked is shown where it starts ("close() …") and again where it returns, with its
  result and how long it took, so the segments sent while it waited sit between the two. "Blocked"
  means longer than the scheduler's noise (`wait_threshold`): 20 ms on a link without delay (a
  loaded machine stretches a loopback call to a few ms; the shortest wait the network causes there
  is the 40 ms delayed-ACK timer), 1.8 one-way delays on a delayed one (accept() waits one flight,
  connect() a round trip); a call during which a whole
  bulk transfer went by blocked too (a read loop), however fast the machine moved the bytes. Calls
  that never wait for the network (fork, setsockopt, sleep …) are never split;
- a segment's window is shown only where it carries the story: a zero window, and the window that
  reopens it; a long run of plain data/ACK segments is one row saying how many, how many bytes and
  the sequence range;
- a segment the wire did not simply deliver says so (dropped, held, a duplicate it injected, held
  back by a rule: then how long it took to arrive), and so does a retransmission;
- with more than one connection (a second connect() on the same 4-tuple) every segment and state
  says which one: #1, #2 in the order of their first SYN; the server's listening socket is named;
- the header names the kernel, the mode, the link (delay, rules) and any setting the scenario
  changed.

Clock readings appear only in the time column (`<td class="t">` in HTML, the line start in text),
and durations as `12.3 ms` / `1.02 s`; a duration compared across runs is a category
(`category`: "at once", "after ≈ 40 ms", "after ≈ 1 s"), the same buckets tests/nbval.cfg maps
printed durations to. The clock-free forms (`story`, a picture's words) also leave out what the
scheduler decides in a bulk transfer: how many segments and ACKs it took, a window's size.
"""

from __future__ import annotations

import bisect
import html
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from closekit.lang import pad, scenario_words, text, word
from closekit.link import ms_words, rate_words
from closekit.query import result_text
from closekit.trace import Event, Segment, Signal, StateChange, Syscall, Trace, Wait

LOOPBACK_NOISE = 0.02  # without a delay on the link, a call this long waited for something
FUNCTION_WAIT = 0.1  # a scenario's own function that took this long waited (a lingering close inside it)
WAIT_DELAYS = (
    1.8  # with one, a call this many one-way delays long: more than a flight and its jitter, under a round trip
)
NEVER_WAITS = frozenset({"sleep", "fork", "exit", "setsockopt", "getsockopt", "fcntl", "listen"})
RUN = 6  # this many plain data/ACK segments in a row are collapsed into one row
SETUP_CALLS = ("listen", "connect", "accept")

# Duration categories: (upper bound in seconds, label). Each bound sits between two waits the course
# shows, as measured on a 2-core machine under load, where the wire's relay adds up to ~6 ms to a
# flight. A duration never falls below its floor (a 10 ms link never delivers in under 10 ms), so a
# bound may sit just under a floor and far above what comes before it:
# - 9.5 ms: a 5 ms link's flights (5-11 ms) | a 10 ms link's (10-16 ms seen);
# - 18 ms: those flights | a 20 ms round trip (connect() on the 10 ms link: 21-23 ms idle; two
#   flights of up to 16 ms each under load);
# - 36 ms: a round trip | the delayed ACK of a FIN (40-47 ms; its timer is 40 ms at the least);
# - 57 ms: the delayed ACK alone (linger-ack, fin-delayed-ack: 40-47 ms idle, a few more under load) |
#   the delayed ACK plus the timing link's 20 ms round trip (return-linger's close, which waits for
#   the FIN to cross the link, the peer's timer, and the ACK to cross back: 60 ms at the least, 61-67
#   ms seen). Each has its own word, so the round trip the link was added to show stays in the story;
# - 90 ms and up: a 200 ms RTO, a 0.3 s busy peer, a 1 s and a 5 s linger, far apart.
CATEGORIES = (
    (0.003, "under 3 ms"),
    (0.0095, "≈ 5 ms"),
    (0.018, "≈ 10 ms"),
    (0.036, "≈ 20 ms"),
    (0.057, "≈ 40 ms"),
    (0.090, "≈ 60 ms"),
    (0.150, "≈ 0.1 s"),
    (0.250, "≈ 0.2 s"),
    (0.400, "≈ 0.3 s"),
    (0.700, "≈ 0.5 s"),
    (1.500, "≈ 1 s"),
    (3.000, "≈ 2 s"),
    (7.500, "≈ 5 s"),
    (15.00, "≈ 10 s"),
    (float("inf"), "over 15 s"),
)
BLOCKED = CATEGORIES[0][0]  # shorter than this is "at once" (the first duration category)
_BOUNDS = [bound for bound, _ in CATEGORIES]


def format_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else format_ms(seconds)


def approx(seconds: float) -> str:
    """A duration as its category's label: "under 3 ms", "≈ 40 ms", "≈ 1 s"."""
    label = CATEGORIES[bisect.bisect_right(_BOUNDS, seconds)][1]
    return text("transcript.under", limit=label[len("under ") :]) if label.startswith("under ") else label


def category(seconds: float) -> str:
    """How long something took, as words that are the same on every run: "at once" or "after ≈ 1 s"."""
    return text("transcript.at_once") if seconds < BLOCKED else text("transcript.after", duration=approx(seconds))


def _took(e: Syscall, exact: bool) -> str:
    """The clock's duration, or the category of the part the kernel or the network decided."""
    return text("transcript.after", duration=format_duration(e.duration)) if exact else category(e.waited)


# ---- one event as words ----------------------------------------------------------------------------
def _args(e: Syscall) -> str:
    if e.call == "recv" and e.args.get("until") == "EOF":
        return "…until EOF"
    if e.call == "setsockopt" and e.args.get("option") == "SO_LINGER":
        return f"SO_LINGER, {{onoff={e.args.get('l_onoff')}, linger={e.args.get('l_linger')}}}"
    bare = ("how", "option", "function")
    return ", ".join(str(v) if k in bare else f"{k}={v}" for k, v in e.args.items() if k != "timeout")


def _result(e: Syscall) -> str:
    return "" if e.result is None and not e.errno else " " + result_text(e)


def call_text(e: Syscall) -> str:
    """`close()`, `setsockopt(SO_LINGER, {onoff=1, linger=1})`: the call as made, without its result."""
    return f"{e.call}({_args(e)})"


def wait_threshold(trace: Trace) -> float:
    """How long a call must last to count as blocked in this trace: above the scheduler's noise, and
    on a delayed link above a one-way delay and its jitter (a call that waited for the peer waited a
    round trip)."""
    delay = link_delay(trace)
    return LOOPBACK_NOISE if delay <= 0 else max(BLOCKED, WAIT_DELAYS * delay)


def link_delay(trace: Trace) -> float:
    """The link's one-way delay in seconds (0 without a wire, or on one without delay)."""
    return float((trace.link or {}).get("delay") or 0.0)


def blocked(e: Syscall, threshold: float = LOOPBACK_NOISE, woken: bool = False) -> bool:
    """Did the call wait for something? One that slept in the kernel and was woken by a segment
    (`woken`: data, an ACK, buffer room) did, however briefly; so did one that slept longer than
    `threshold` (a timer: see `wait_threshold`). One that never slept did not, however long a busy
    machine kept it from the CPU, nor one that slept a moment for nothing the network brought (a
    lock). Traces recorded before `slept` was kept go by `threshold` alone."""
    if e.call in NEVER_WAITS:
        return False
    if e.call == "connect" and woken:
        return True  # a blocking connect() returns only once its SYN-ACK came, whether or not it slept for it
    if e.slept is False:
        return False
    if e.call == "call":  # a function of the scenario's: whatever it waited for, only a long wait is told
        return e.waited >= FUNCTION_WAIT
    return (e.slept is True and woken) or e.waited >= threshold


def describe_syscall(e: Syscall, exact_times: bool = True, threshold: float = LOOPBACK_NOISE) -> str:
    """`close() = 0`, `recv(…until EOF) = 4096, then ECONNRESET`, and for a call that blocked how long
    (`[returned after 1.02 s]`, or with `exact_times=False` its category, `[returned after ≈ 1 s]`)."""
    said = call_text(e) + _result(e)
    if blocked(e, threshold):
        said += "  " + text("transcript.returned", took=_took(e, exact_times))
    return said


def describe_segment(e: Segment, window: bool | None = None, exact: bool = True) -> str:
    """tcpdump/packetdrill notation: `F. 7:7(0) ack 1`; the window only if `window` (default: when 0).

    A window other than 0 is a number of bytes the receiver's buffer bookkeeping decides; clock-free
    forms (`exact=False`) say only that it is open again (`win >0`)."""
    ack = f" ack {e.ack}" if "ACK" in e.flags else ""
    show = e.win == 0 if window is None else window
    win = f" win {e.win if exact or e.win == 0 else '>0'}" if show else ""
    return f"{e.tcpdump_flags or '-'} {e.seq}:{e.seq + e.len}({e.len}){ack}{win}"


# ---- connections -------------------------------------------------------------------------------
def connections(trace: Trace) -> list[int]:
    """The connections of a trace (1, 2 …: a second connect() on the same 4-tuple), not the listener."""
    seen = {e.conn for e in trace.events if isinstance(e, (Segment, StateChange)) and e.conn > 0}
    return sorted(seen) or [1]


def conn_tag(conn: int) -> str:
    """How a connection is named where a trace has several: #1, #2."""
    return f"#{conn}"


def conn_at(trace: Trace, t: float) -> int:
    """The connection that held the 4-tuple at time `t`: the latest one whose first SYN had left by then."""
    firsts: dict[int, float] = {}
    for s in trace.segments():
        if s.has("SYN") and s.fate != "duplicate":
            firsts.setdefault(s.conn, s.t)
    return max((c for c, start in firsts.items() if start <= t), default=1)


FATES = ("gated", "dropped", "held", "duplicate")  # what the wire did that a transcript says in words


def _fate_words(fate: str) -> str:
    if fate == "gated":
        return text("transcript.fate_gated")
    if fate == "dropped":
        return text("transcript.fate_dropped")
    return text("transcript.fate_held") if fate == "held" else text("transcript.fate_duplicate")


def flight_shown(e: Segment) -> bool:
    """Is the time a segment took to arrive worth saying? Only when a rule of the scenario held it
    back (the header says the link's one-way delay once): whether a flight took a few ms more than
    the delay is the machine's doing (the relay adds some under load), not the lesson's."""
    return e.arrived is not None and e.fate in ("delayed", "released")


def fate_text(e: Segment, exact: bool = True, into: int | None = None) -> str:
    """What the wire did with a segment, if worth saying: `[dropped by the wire]`, `[held back by the
    wire, arrives after 0.20 s]`.

    `into` is the connection a duplicate reached, when that is not the connection it was copied from
    (an old segment replayed into a new one)."""
    if e.fate in FATES and (e.fate != "duplicate" or e.arrived is None):
        return f"[{_fate_words(e.fate)}]"
    words = []
    if e.fate == "duplicate":
        if into is not None and into != e.conn:
            words.append(text("transcript.copied_into", conn=conn_tag(e.conn), into=conn_tag(into)))
        else:
            words.append(text("transcript.fate_duplicate"))
    if flight_shown(e):
        flight = e.arrived - e.t  # type: ignore[operator]
        words.append(text("transcript.held_back", took=format_duration(flight) if exact else approx(flight)))
    return f"[{text('transcript.comma').join(words)}]" if words else ""


def windows_shown(segments: Iterable[Segment]) -> set[int]:
    """ids of the segments whose window carries the story: a zero window, and the next one from the
    same side (the window reopening)."""
    shown: set[int] = set()
    last_zero: dict[tuple[str, int], bool] = {}
    for s in segments:
        key = (s.src, s.conn)
        if s.win == 0 or last_zero.get(key):
            shown.add(id(s))
        last_zero[key] = s.win == 0
    return shown


def plain(e: Event, shown: set[int] | frozenset[int] = frozenset()) -> bool:
    """A data or pure-ACK segment the wire delivered as sent, whose window is not part of the story
    (`shown`: see `windows_shown`; a zero window always is)."""
    return (
        isinstance(e, Segment)
        and not {"SYN", "FIN", "RST"} & set(e.flags)
        and e.fate == "delivered"
        and e.win != 0
        and id(e) not in shown
    )


def runs(
    events: Iterable[Event], shown: set[int] | frozenset[int] = frozenset(), gather: bool = False
) -> list[list[Event]]:
    """Events grouped: a run of `RUN` or more consecutive plain segments is one group, anything else
    stands alone (a zero window, and the segment that reopens it, break a run: see `plan`).

    With `gather` (the clock-free forms), a call, its return or a state does not break a run: it is
    told after it (where in a bulk transfer a call happened to start follows how fast the machine
    moved the bytes). A sync point does: it orders what the scenario's lines do."""
    groups: list[list[Event]] = []
    pending: list[Event] = []
    held: list[Event] = []  # non-segment events met inside a run (gather)

    def flush() -> None:
        if len(pending) >= RUN:
            groups.append(list(pending))
            groups.extend([e] for e in held)
        else:
            groups.extend([e] for e in sorted(pending + held, key=lambda e: order[id(e)]))
        pending.clear()
        held.clear()

    order: dict[int, int] = {}
    for e in events:
        order[id(e)] = len(order)
        if plain(e, shown):
            pending.append(e)
        elif gather and pending and not isinstance(e, Segment | Wait):
            held.append(e)
        else:
            flush()
            groups.append([e])
    flush()
    return groups


def run_summary(segments: list[Segment], exact: bool = True) -> list[str]:
    """A collapsed run in words: how many segments, then one line per direction.

    Clock-free (`exact=False`) it says what every run of the experiment shares: the bytes and the
    sequence range each direction carried, not how many segments and ACKs the kernel cut them into
    nor how far the ACKs had got when the run ended (both follow the scheduler)."""
    lines = [text("transcript.run_count", count=len(segments)) if exact else text("transcript.run")]
    for src in dict.fromkeys(s.src for s in segments):
        mine = [s for s in segments if s.src == src]
        carrying = [s for s in mine if s.len]
        arrow = f"{word('side', src)} → {word('side', mine[0].dst)}"
        if carrying:  # by sequence number: a retransmitted byte is one byte
            first, last = min(s.seq for s in carrying), max(s.seq + s.len for s in carrying)
            count = text("transcript.carrying", count=len(carrying)) if exact else ""
            lines.append(
                text("transcript.run_bytes", arrow=arrow, count=count, bytes=last - first, first=first, last=last)
            )
        elif exact:
            lines.append(text("transcript.run_acks", arrow=arrow, count=len(mine), ack=mine[-1].ack))
        else:
            lines.append(text("transcript.run_acks_only", arrow=arrow))
    return lines


# ---- what a trace's forms share: groups, waits, the set-up ---------------------------------------
@dataclass(frozen=True)
class Plan:
    """How every form of one trace groups and words it: the event groups (`runs`), the segments whose
    window is shown, the calls that blocked (id → True when a whole bulk transfer went by while the
    call waited: its duration then follows how fast this machine moves bytes), and whether segments
    and states need a connection number."""

    groups: list[list[Event]]
    windows: set[int]
    waits: dict[int, bool]
    several: bool
    resent: set[int]


def plan(trace: Trace, clock_free: bool = False) -> Plan:
    """`clock_free`: for the forms compared across runs, without the ACKs a bulk transfer's scheduling
    decides (`scheduled_acks`)."""
    windows = windows_shown(trace.segments())
    groups = runs(trace.events, windows)
    if clock_free:
        quiet = scheduled_acks(trace, windows, groups) | repeated_acks(trace) | trace.redundant()
        quiet |= window_probes(trace)
        groups = runs([e for e in trace.events if id(e) not in quiet], windows, gather=True)
    spans = [(g[0].t, g[-1].t) for g in groups if len(g) > 1]
    threshold = wait_threshold(trace)
    waits: dict[int, bool] = {}
    for e in trace.syscalls():
        if e.call in NEVER_WAITS:
            continue
        end = e.t + e.duration
        transfer = any(e.t <= start and stop <= end for start, stop in spans)
        woken = may_have_waited(e) and waker(trace, e) is not None
        if transfer or blocked(e, threshold, woken=woken):
            waits[id(e)] = transfer
    return Plan(groups, windows, waits, len(connections(trace)) > 1, retransmissions(trace))


def scheduled_acks(trace: Trace, windows: set[int], groups: list[list[Event]]) -> set[int]:
    """ids of the pure ACKs of data on a connection that carried a bulk transfer, or filled a window:
    how many of them a receiver sends, and whether one leaves before or after the sender's last
    segment, follows when the reader and the delayed-ACK timer ran. An ACK of a SYN or a FIN, a zero window, the window
    that reopens it and anything the wire did not simply deliver are kept: they carry the lesson."""
    bulk = {g[0].conn for g in groups if len(g) > 1 and isinstance(g[0], Segment)}
    bulk |= {s.conn for s in trace.segments() if s.win == 0 and s.flags == ("ACK",)}  # a window shut by data
    fin_end = {(s.src, s.conn): s.seq + s.len + 1 for s in trace.segments(flags="FIN")}
    peer = {"client": "server", "server": "client"}
    return {
        id(s)
        for s in trace.segments()
        if s.conn in bulk
        and s.flags == ("ACK",)
        and not s.len
        and s.fate == "delivered"
        and id(s) not in windows
        and 1 < s.ack < fin_end.get((peer[s.src], s.conn), s.ack + 1)
    }


def repeated_acks(trace: Trace) -> set[int]:
    """ids of the pure ACKs that say again what their sender's previous segment said (same numbers,
    a zero window again) with nothing from the other side in between: whether a receiver repeats
    itself once more follows its timers and when a retransmission happened to reach it."""
    last: dict[int, Segment] = {}
    out: set[int] = set()
    for s in trace.segments():
        before = last.get(s.conn)
        if (
            before is not None
            and before.src == s.src
            and s.flags == before.flags == ("ACK",)
            and not s.len
            and not before.len
            and s.fate == "delivered"
            and (s.seq, s.ack, s.win == 0) == (before.seq, before.ack, before.win == 0)
        ):
            out.add(id(s))
        last[s.conn] = s
    return out


def window_probes(trace: Trace) -> set[int]:
    """ids of the zero-window probes (an empty segment one byte behind what its sender has sent) and
    of the zero windows announced again in answer to them: how many a sender's persist timer sends
    before the window opens follows how the timer and the reader were scheduled."""
    sent: dict[tuple[str, int], int] = {}  # per direction: the highest sequence number sent
    probes: set[int] = set()
    for s in trace.segments():
        key = (s.src, s.conn)
        end = s.seq + s.len + s.has("SYN") + s.has("FIN")
        if s.flags == ("ACK",) and not s.len and key in sent and s.seq < sent[key]:
            probes.add(id(s))
        sent[key] = max(sent.get(key, 0), end)
    answered_probe = {id(a) for a, _probe in _answers_to(trace, probes)}
    return probes | answered_probe


def _answers_to(trace: Trace, probes: set[int]) -> list[tuple[Segment, Segment]]:
    """(answer, probe) for each zero window its receiver announced right after a probe arrived."""
    out = []
    last: dict[str, Segment] = {}  # receiver -> the last probe that reached it
    for s in sorted(trace.segments(), key=lambda s: s.t):
        if id(s) in probes and s.arrived is not None:
            last[s.dst] = s
        elif s.flags == ("ACK",) and s.win == 0 and s.src in last and s.t - last[s.src].arrived <= QUICK:  # type: ignore[operator]
            out.append((s, last.pop(s.src)))
    return out


def retransmissions(trace: Trace) -> set[int]:
    """ids of the segments that send again sequence space their sender had sent before (a SYN, a FIN
    or data below the highest sequence number it had reached): retransmissions. What the wire itself
    injected is not one."""
    reached: dict[tuple[str, int], int] = {}
    out: set[int] = set()
    for s in trace.segments():
        room = s.len + s.has("SYN") + s.has("FIN")
        if s.fate == "duplicate" or not room:
            continue
        key = (s.src, s.conn)
        if key in reached and s.seq < reached[key]:
            out.add(id(s))
        reached[key] = max(reached.get(key, 0), s.seq + room)
    return out


# An ACK its kernel sends this soon after a segment arrived answers that segment: at once, or at the
# next tick of the kernel's clock (a FIN after no data is acknowledged then), well before the 40 ms
# delayed-ACK timer (TCP_DELACK_MIN), whose ACKs are a lesson of their own.
QUICK = 0.02
# How far after the arrival of a segment its effects are told in the clock-free order: the state it
# brought, then its receiver's prompt answer, then the call it woke (the answer's own arrival, and
# what that brought, come after it).
_BROUGHT, _ENDED, _ANSWER, _WOKEN = 0.2e-7, 0.3e-7, 0.4e-7, 0.5e-7


def may_have_waited(e: Syscall) -> bool:
    """A segment may have ended the call: it slept, or it is a blocking connect(), which returns only once
    its SYN-ACK came whether or not it slept for it (a busy machine may take the CPU from it between its
    SYN and its sleep: the SYN-ACK then comes first)."""
    return bool(e.slept) or e.call == "connect"


WAKEABLE = frozenset({"connect", "accept", "recv", "send", "close", "shutdown", "epoll_wait"})  # calls a segment ends


def waker(trace: Trace, e: Syscall) -> Segment | None:
    """The segment whose arrival ended a call that slept, by what the call waits for: connect() the
    SYN-ACK, recv() the first data, FIN or RST, close() or shutdown() the ACK of its FIN (or an RST),
    accept() the handshake's last ACK; another call the last segment to reach it while it waited.
    None if none did: a timer ended it, or it waited for nothing the network brought."""
    endpoint, end = trace.endpoint_of(e.side), e.t + e.duration
    came = [s for s in trace.segments() if s.dst == endpoint and s.arrived is not None and e.t <= s.arrived <= end]
    came.sort(key=lambda s: s.arrived)  # type: ignore[arg-type, return-value]
    wanted = {
        "connect": lambda s: s.has("SYN") and s.has("ACK"),
        "recv": lambda s: s.len or s.has("FIN") or s.has("RST"),
        "accept": lambda s: s.has("ACK") and not s.has("SYN") and not s.has("RST") and not s.len,
        "close": lambda s: s.has("RST") or _acks_fin(trace, s),
        "shutdown": lambda s: s.has("RST") or _acks_fin(trace, s),
    }.get(e.call)
    if wanted is None:
        return came[-1] if came else None
    return next((s for s in came if wanted(s)), None)


def _acks_fin(trace: Trace, s: Segment) -> bool:
    """Does `s` acknowledge a FIN its receiver sent before it?"""
    fins = [f.seq for f in trace.segments(src=s.dst, flags="FIN") if f.conn == s.conn and f.t <= s.t]
    return s.has("ACK") and bool(fins) and s.ack >= min(fins) + 1


def acknowledging(trace: Trace) -> list[tuple[Segment, Segment]]:
    """Each pure ACK that acknowledges exactly the last segment to have reached its sender, one that carried
    something (data, a FIN, a SYN), with that segment: (the ACK, what it acknowledges), in the ACKs' order."""
    arrivals: dict[str, list[Segment]] = {}  # receiver -> what reached it, in order of arrival
    for s in trace.segments():
        if s.arrived is not None:
            arrivals.setdefault(s.dst, []).append(s)
    for listed in arrivals.values():
        listed.sort(key=lambda s: s.arrived)  # type: ignore[arg-type, return-value]
    times = {dst: [s.arrived for s in listed] for dst, listed in arrivals.items()}
    pairs = []
    for s in trace.segments():
        if s.flags != ("ACK",) or s.len or s.src not in times:
            continue
        i = bisect.bisect_right(times[s.src], s.t) - 1  # type: ignore[arg-type]
        if i < 0:
            continue
        last = arrivals[s.src][i]
        carried = last.len or last.has("FIN") or last.has("SYN")
        if carried and last.conn == s.conn and last.seq + last.len + last.has("FIN") + last.has("SYN") == s.ack:
            pairs.append((s, last))
    return pairs


def answered(trace: Trace) -> dict[int, Segment]:
    """id of each pure ACK a kernel sent in answer to the segment that had just arrived (`acknowledging`
    it, within QUICK) -> that segment. A segment gets one answer, the first: a later ACK of the same byte
    is another cause's (a timer, a read that opened the window), however soon a busy machine made it follow."""
    out: dict[int, Segment] = {}
    taken: set[int] = set()  # id of each segment answered so far
    for s, last in acknowledging(trace):
        if id(last) not in taken and s.t <= last.arrived + QUICK:  # type: ignore[operator]
            out[id(s)] = last
            taken.add(id(last))
    return out


@dataclass(frozen=True)
class Told:
    """When the clock-free forms tell each event (`causal_times`): by id, where it differs from the clock."""

    at: dict[int, float]  # events: a segment's leaving, a state, a woken call's return
    arrivals: dict[int, float]  # segments: their arrival

    def time(self, e: Event) -> float:
        return self.at.get(id(e), e.t)

    def arrival(self, s: Segment) -> float | None:
        return self.arrivals.get(id(s), s.arrived)

    def returned(self, e: Syscall) -> float:
        return self.at.get(id(e), e.t + e.duration)


def causal_times(trace: Trace) -> Told:
    """When each event is told in the clock-free forms.

    Across two processes and two kernels, which of two unrelated events comes first is the
    scheduler's call: a woken reader may run before its kernel has sent the ACK of what woke it,
    and the peer's next call may start before that ACK leaves; an ACK of a FIN after no data waits
    for the next tick of the kernel's clock. So the kernel's prompt answer to a segment is told right
    after that segment arrived, what a segment brought (a state) right after it arrived, and a call
    it woke after both (when it ran again is the scheduler's call too); a segment arrives after the
    link's own delay (the microseconds or, on a busy machine, milliseconds the relay took to pass it
    on are the lab's), but never before a call it woke began; everything else by its clock."""
    answers = answered(trace)
    delay = link_delay(trace)
    ended = {id(e): (e, woke) for e in trace.syscalls() if (woke := _told_after(trace, e)) is not None}
    # A relay a busy machine held up may pass a segment on after a call that waits for it has begun (accept()
    # for the handshake's last ACK, begun 12 ms after that ACK left on a 10 ms link): it arrived after that.
    began: dict[int, float] = {}
    for e, woke in ended.values():
        if may_have_waited(e) and woke.arrived >= e.t:  # type: ignore[operator]
            began[id(woke)] = max(began.get(id(woke), -math.inf), e.t)
    at: dict[int, float] = {}
    arrivals: dict[int, float] = {}
    by_clock: dict[tuple[str, int, float], float] = {}  # (receiver, conn, clock arrival) -> told arrival
    for s in trace.segments():
        cause = answers.get(id(s))
        if cause is not None and cause.arrived is not None:
            at[id(s)] = arrivals.get(id(cause), cause.arrived) + _ANSWER
        if s.arrived is not None:  # after the link's flight (what the relay added is the lab's), or
            flight = delay if s.fate == "delivered" else s.arrived - s.t  # what a rule held it back
            arrivals[id(s)] = max(at.get(id(s), s.t) + flight, began.get(id(s), -math.inf))
            by_clock.setdefault((s.dst, s.conn, s.arrived), arrivals[id(s)])
    for e in trace.events:
        if isinstance(e, StateChange):
            arrived = by_clock.get((e.side, e.conn, e.t))
            if arrived is not None:
                at[id(e)] = arrived + _BROUGHT
    for e, woke in ended.values():
        after = _ENDED if _read_to_eof(e) else _WOKEN  # before the ACK of that FIN: see ended_by
        at[id(e)] = arrivals.get(id(woke), woke.arrived) + after  # type: ignore[operator]
    return Told(at, arrivals)


def _told_after(trace: Trace, e: Syscall) -> Segment | None:
    """The segment a call's return is told right after: for a call that slept, what ended it; for a read
    loop that reached the end of the stream, the FIN that came while it ran, slept or not (a busy
    machine's reader, behind its sender, finds each segment already queued and never sleeps)."""
    if may_have_waited(e):
        return ended_by(trace, e)
    fin = ended_by(trace, e) if _read_to_eof(e) else None
    return fin if fin is not None and fin.has("FIN") and fin.arrived >= e.t else None  # type: ignore[operator]


def _read_to_eof(e: Syscall) -> bool:
    return e.call == "recv" and e.args.get("until") == "EOF" and not e.errno


def ended_by(trace: Trace, e: Syscall) -> Segment | None:
    """What ended a call that slept: for a read loop that reached the end of the stream the FIN that
    ended it (whether its kernel acknowledged that FIN inside the loop or by its timer just after is
    the scheduler's call), for another call its `waker`."""
    if _read_to_eof(e):
        endpoint, end = trace.endpoint_of(e.side), e.t + e.duration
        fins = [s for s in trace.segments(flags="FIN") if s.dst == endpoint and s.arrived is not None]
        ended = [s for s in fins if s.arrived <= end]  # type: ignore[operator]
        if ended:
            return max(ended, key=lambda s: s.arrived)  # type: ignore[arg-type, return-value]
    return waker(trace, e)


def returned_at(trace: Trace, e: Syscall, told: Told | None = None) -> float:
    """When a call's return is told in the clock-free forms: after what ended it (`ended_by`) and what
    that segment brought (`causal_times`); a call no segment ended, when it returned."""
    return (causal_times(trace) if told is None else told).returned(e)


READS = frozenset({"recv", "accept", "connect"})  # calls whose wait is for the peer: told by what came


def returned_text(trace: Trace, e: Syscall, exact: bool, transfer: bool) -> str:
    """`[returned after 54.7 ms]`; clock-free, for a read what ended its wait (`[returned when the FIN
    arrived]`: how long the peer took is the peer's story, told in its own lines), for a call that
    waited for the network's own timers (a lingering close()) its duration's category, and for a
    call that waited out a bulk transfer `[returned after the transfer]`."""
    if exact:
        return text("transcript.returned", took=_took(e, exact))
    if transfer:
        return text("transcript.after_transfer")
    woke = ended_by(trace, e)
    if e.call in READS and woke is not None:
        return text("transcript.returned_when", what=arrival_words(e, woke))
    return text("transcript.returned", took=_took(e, exact))


def duration_said_otherwise(trace: Trace, slack: float) -> Syscall | None:
    """The first call whose clock-free words name a duration (its category) that would read otherwise
    had the call waited `slack` less: where the lab was that late, those words may be its doing."""
    near = [e for e in trace.syscalls() if _moves(e.waited, slack)]
    if not near:
        return None
    waits = plan(trace, clock_free=True).waits
    for e in near:
        if waits.get(id(e)) is False and not (e.call in READS and ended_by(trace, e) is not None):
            return e  # said to have waited, not through a transfer, and not by what woke it
    return None


def _moves(seconds: float, slack: float) -> bool:
    return bisect.bisect_right(_BOUNDS, seconds) != bisect.bisect_right(_BOUNDS, max(seconds - slack, 0.0))


def arrival_words(e: Syscall, s: Segment) -> str:
    """What reached a waiting call, in words: the FIN, an RST, data, the SYN-ACK, an ACK."""
    if s.has("RST"):
        return text("transcript.came_rst")
    if s.has("SYN"):
        return text("transcript.came_syn_ack") if s.has("ACK") else text("transcript.came_syn")
    if s.has("FIN"):
        return text("transcript.came_fin") if not s.len else text("transcript.came_data_fin")
    if s.len:
        return text("transcript.came_data")
    return text("transcript.came_ack")


def in_setup(trace: Trace, e: Event) -> bool:
    """Is `e` part of the connection set-up: before the scenario's first step began (`setup_until`)?

    A trace recorded before `setup_until` existed has its set-up guessed: listen/connect/accept, SYNs,
    ESTABLISHED, and the pure ACKs before the first other call."""
    if trace.setup_until is not None:
        return e.t < trace.setup_until
    return _guessed_setup(trace, e)


def _guessed_setup(trace: Trace, e: Event) -> bool:
    first = next((c.t for c in trace.syscalls() if c.call not in (*SETUP_CALLS, "setsockopt")), None)
    if isinstance(e, Syscall):
        return e.call in SETUP_CALLS
    if isinstance(e, StateChange):
        return e.state == "ESTABLISHED" or e.conn == 0
    if isinstance(e, Segment):
        return e.has("SYN") or ((first is None or e.t < first) and e.flags == ("ACK",) and not e.len)
    return False


# ---- rows: what every form shows ----------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One line of a transcript: when, who, a marker and the words; `css` says how HTML colours it.

    Markers: ' ' a call, '…' a call that blocks (it returns in a later row), '=' its return, '>' a
    segment, '»' a collapsed run of segments, '~' a state, '!' a signal, '|' a sync point of the
    scenario met (the lines after it start).
    """

    t: float
    who: str
    marker: str
    text: str
    css: str
    event: Event | None = None


def rows(trace: Trace, exact: bool = True) -> list[Row]:
    """The trace as rows in time order; durations exact, or as categories with `exact=False` (which
    also leaves out what the scheduler decides: see `run_summary`, `describe_segment`, `scheduled_acks`)."""
    p = plan(trace, clock_free=not exact)
    told = Told({}, {}) if exact else causal_times(trace)
    out: list[Row] = []
    returns: list[Row] = []
    for group in p.groups:
        e = group[0]
        if len(group) > 1:
            segments = [s for s in group if isinstance(s, Segment)]
            tag = f"{conn_tag(segments[0].conn)} " if p.several else ""
            said = tag + "\n".join(run_summary(segments, exact))
            out.append(Row(e.t, "client ⇄ server", "»", said, "bulk", e))
        elif isinstance(e, Syscall) and id(e) in p.waits:
            out.append(Row(e.t, e.side, "…", f"{call_text(e)} …", "call", e))
            said = f"{call_text(e)}{_result(e)}  {returned_text(trace, e, exact, p.waits[id(e)])}"
            at = e.t + e.duration if exact else returned_at(trace, e, told)
            returns.append(Row(at, e.side, "=", said, "err" if e.errno else "ret", e))
        elif isinstance(e, Syscall):
            out.append(Row(e.t, e.side, " ", call_text(e) + _result(e), "err" if e.errno else "call", e))
        elif isinstance(e, Segment):
            said = segment_text(trace, e, p, exact)
            out.append(Row(told.time(e), f"{e.src} > {e.dst}", ">", said, _segment_css(e), e))
        elif isinstance(e, StateChange):
            out.append(
                Row(told.time(e), e.side, "~", text("transcript.state", state=state_text(e, p.several)), "st", e)
            )
        elif isinstance(e, Signal):
            out.append(Row(e.t, e.side, "!", text("transcript.signal", signal=e.signal), "err", e))
        elif isinstance(e, Wait):
            out.append(Row(e.t, "scenario", "|", text("transcript.wait", step=e.step), "wait", e))
    # A return goes after everything that happened by then: stable sort, returns last among equals.
    # (Clock-free, rows are told in the order of `causal_times`; their time column is not shown.)
    return sorted(out + returns, key=lambda row: row.t)


def segment_text(trace: Trace, e: Segment, p: Plan, exact: bool = True) -> str:
    """A segment's row: `#2 F. 1:1(0) ack 1  [arrives after 10.2 ms]`."""
    said = (f"{conn_tag(e.conn)} " if p.several else "") + describe_segment(e, id(e) in p.windows, exact)
    into = conn_at(trace, e.t) if e.fate == "duplicate" else None
    fate = fate_text(e, exact, into)
    if id(e) in p.resent:
        resent = text("transcript.retransmitted")
        fate = f"[{resent}" + (f"{text('transcript.comma')}{fate[1:]}" if fate else "]")
    return said + (f"  {fate}" if fate else "")


def _segment_css(e: Segment) -> str:
    css = "rst" if e.has("RST") else "fin" if e.has("FIN") else "syn" if e.has("SYN") else "seg"
    if e.fate != "delivered":
        css += " lost" if e.lost else " dup"
    return css


def one_line(words: str) -> str:
    """A row's words on one line (a collapsed run has one line per direction in HTML)."""
    return words.replace("\n", text("transcript.semicolon"))


def state_text(e: StateChange, several: bool = False) -> str:
    """`FIN_WAIT_1`, `LISTEN (listening socket)`, and `FIN_WAIT_1 (#2)` where there are several connections."""
    if e.conn == 0:
        return text("transcript.listening", state=e.state)
    return f"{e.state} ({conn_tag(e.conn)})" if several else e.state


# ---- the header --------------------------------------------------------------------------------
def link_text(trace: Trace) -> str:
    """The link between the endpoints in the reader's words, from what the trace records (its delay,
    rate and rules; its stored English `text` only where those are missing)."""
    link = trace.link or {}
    if not link:
        return text("transcript.link", link=text("transcript.loopback"))
    known = ("delay", "rate", "rules", "text")
    if not any(k in link for k in known[:3]) and isinstance(link.get("text"), str) and link["text"]:
        return text("transcript.link", link=link["text"])
    parts = []
    delay = link.get("delay")
    if delay:
        parts.append(text("transcript.one_way", delay=ms_words(float(delay))))
    if link.get("rate"):
        parts.append(str(link["rate"]) if not isinstance(link["rate"], int) else rate_words(link["rate"]))
    parts += [_rule_text(r) for r in link.get("rules") or []]
    extra = {k: v for k, v in link.items() if k not in known and v not in (None, "", [], {})}
    parts.extend(f"{k} {v}" for k, v in extra.items())
    return text("transcript.link", link=text("transcript.semicolon").join(parts) or text("transcript.no_delay"))


def _rule_text(rule: Any) -> str:
    """A rule of the link in words, from its fields (closekit.link.Rule.describe says the same in English)."""
    if not isinstance(rule, dict) or "action" not in rule:
        return str(rule.get("text", rule)) if isinstance(rule, dict) else str(rule)
    flags, without, data = rule.get("flags") or [], rule.get("without") or [], rule.get("data")
    what = "+".join(flags) if flags else text("transcript.rule_segment")
    if without:
        what = text("transcript.rule_without", what=what, without="/".join(without))
    if data is True:
        what = text("transcript.rule_data", what=what) if flags else text("transcript.rule_data_segment")
    elif data is False:
        what = text("transcript.rule_no_data", what=what)
    nth, count = int(rule.get("nth", 1)), rule.get("count", 1)
    if count is None:
        which = text("transcript.rule_every_from" if nth > 1 else "transcript.rule_every", what=what, nth=_ordinal(nth))
    elif count == 1:
        which = text("transcript.rule_the", what=what, nth=_ordinal(nth))
    else:
        which = text("transcript.rule_some", what=what, nth=_ordinal(nth), count=count)
    which = text("transcript.rule_from", which=which, src=word("side", str(rule.get("src"))))
    seconds = float(rule.get("seconds") or 0.0)
    if rule["action"] == "delay":
        return text("transcript.rule_delay", which=which, ms=ms_words(seconds))
    if rule["action"] == "duplicate":
        later = text("transcript.rule_copy_later", ms=ms_words(seconds)) if seconds else ""
        return text("transcript.rule_duplicate", which=which, later=later)
    if rule["action"] == "drop":
        return text("transcript.rule_drop", which=which)
    if rule["action"] == "hold":
        return text("transcript.rule_hold", which=which)
    return text("transcript.rule_copy", which=which)


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd … in the reader's words."""
    last = 0 if 10 <= n % 100 <= 20 else n % 10
    if last == 1:
        return text("transcript.ordinal_one", n=n)
    if last == 2:
        return text("transcript.ordinal_two", n=n)
    return text("transcript.ordinal_few", n=n) if last == 3 else text("transcript.ordinal_other", n=n)


def settings_text(trace: Trace) -> str:
    """Settings the scenario changed from the kernel's defaults, or '' when it changed none."""
    parts = []
    for group, values in (trace.settings or {}).items():
        if isinstance(values, dict):
            if values:
                parts.append(f"{group}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        elif values not in (None, "", [], {}):
            parts.append(f"{group}: {values}")
    return text("transcript.settings", settings=text("transcript.semicolon").join(parts)) if parts else ""


def header_lines(trace: Trace, kernel: bool = True) -> list[str]:
    """Title, then kernel · mode · link, then the changed settings (if any), then the connections if
    there are several."""
    described = scenario_words(trace.scenario, trace.description)
    title = f"{trace.scenario}: {described}" if trace.description else trace.scenario
    where = [text("transcript.kernel", kernel=trace.kernel)] if kernel else []
    where += [text("transcript.mode", mode=trace.mode), link_text(trace)]
    lines = [title, " · ".join(where)]
    settings = settings_text(trace)
    if settings:
        lines.append(settings)
    if trace.disturbed:
        lines.append(text("transcript.disturbed", disturbed=trace.disturbed))
    conns = connections(trace)
    if len(conns) > 1:
        tags = ", ".join(conn_tag(c) for c in conns)
        lines.append(text("transcript.connections", count=len(conns), tags=tags))
    return lines


COUNTED = ("netns", "netns-loopback")  # modes with a network namespace of their own: counters are this experiment's


def counters_line(trace: Trace) -> str:
    if trace.mode not in COUNTED:
        return text("transcript.counters", counters=text("transcript.not_recorded"))
    shown = ", ".join(f"{k} {v:+d}" for k, v in trace.counters.items())
    return text("transcript.counters", counters=shown or text("transcript.none_moved"))


def notice(trace: Trace) -> str:
    """What a reader must know before trusting the trace as this machine's (Trace.notice), in the
    reader's language: a fallback mode, or that it was recorded elsewhere."""
    if trace.recorded:
        return text("transcript.recorded", recorded=trace.recorded)
    if trace.mode == "netns-loopback":
        return text("transcript.notice_netns_loopback")
    if trace.mode == "host":
        return text("transcript.notice_host")
    return text("transcript.notice_host_nocapture") if trace.mode == "host-nocapture" else ""


def who(name: str) -> str:
    """A transcript's "who" column in the reader's words: the endpoints translated ("client > server"),
    a forked process by its name as the scenario gave it ("server-child")."""
    return re.sub(r"(?<![-\w])(client|server)(?![-\w])", lambda m: word("side", m.group(1)), name)


# ---- the three forms ---------------------------------------------------------------------------
def text_transcript(trace: Trace) -> str:
    """The whole trace with times, as `closekit run` prints it."""
    lines = header_lines(trace)
    if notice(trace):
        lines.append(text("transcript.note", notice=notice(trace)))
    for row in rows(trace):
        lines.append(f"{format_ms(row.t):>10}  {pad(who(row.who), 17)} {row.marker} {one_line(row.text)}")
    lines.append(counters_line(trace))
    return "\n".join(lines)


def story(trace: Trace, handshake: bool = False, acks: bool = True) -> str:
    """The trace without clocks, for outputs compared on every run: what happened, in order.

    Leaves out the connection set-up, everything before the scenario's first step (`in_setup`:
    listen, connect, accept, the handshake and the states it passes through), unless `handshake`;
    socket options set before it stay, since they shape what follows (a small buffer, a linger).
    A scenario that connects as one of its steps keeps that connect() and its SYNs. With `acks`
    False, pure ACKs are left out too. Durations are categories ("[returned after ≈ 1 s]").
    """
    lines = []
    for row in rows(trace, exact=False):
        e = row.event
        option = isinstance(e, Syscall) and e.call == "setsockopt"
        if not handshake and e is not None and in_setup(trace, e) and not option:
            continue
        if not acks and isinstance(e, Segment) and row.marker == ">" and e.flags == ("ACK",) and not e.len:
            continue
        lines.append(f"{pad(who(row.who), 17)} {row.marker} {one_line(row.text)}")
    return "\n".join(lines)


# Inline styles only: JupyterLab's sanitizer drops <style> elements from untrusted outputs (a fresh
# clone) but keeps style attributes, so the table looks the same trusted or not.
_CELL = "padding:1px 8px;font-family:monospace;text-align:left;white-space:pre;vertical-align:top"
_COLOURS = {
    "seg": "color:#555",
    "syn": "color:#2e7d32",
    "rst": "color:#b00;font-weight:bold",
    "fin": "color:#05a;font-weight:bold",
    "st": "color:#070",
    "wait": "color:#777;font-style:italic",
    "err": "color:#b00",
    "bulk": "color:#555;font-style:italic",
    "ret": "",
    "call": "",
}


def _style(css: str) -> str:
    first, *rest = css.split()
    extra = ";text-decoration:line-through" if "lost" in rest else ";font-style:italic" if "dup" in rest else ""
    return _CELL + ";" + _COLOURS.get(first, "") + extra


def html_transcript(trace: Trace) -> str:
    """Three columns, client | wire | server, so who did what reads at a glance; plain sanitized HTML
    (no scripts, no <style>), so it renders in untrusted notebooks too."""
    out = []
    for row in rows(trace):
        css = row.css
        said = html.escape(row.text)
        cell = f'<td class="{css}" style="{_style(css)}">'
        if row.marker == "|":
            # the scenario's line, not one side's: across the three columns, wrapped if it must be
            cells = f'<td colspan="3" class="{css}" style="{_style(css)};white-space:pre-wrap">{said}</td>'
        elif row.marker in (">", "»"):
            e = row.event
            arrow = "→" if isinstance(e, Segment) and e.src == "client" else "←" if row.marker == ">" else "⇄"
            cells = f"<td></td>{cell}{arrow} {said} {arrow}</td><td></td>"
        else:
            side = trace.endpoint_of(row.who)
            prefix = "" if row.who in ("client", "server") else f"[{html.escape(row.who)}] "
            filled = f"{cell}{prefix}{said}</td>"
            cells = f"{filled}<td></td><td></td>" if side == "client" else f"<td></td><td></td>{filled}"
        out.append(f'<tr><td class="t" style="{_CELL};color:#777">{format_ms(row.t)}</td>{cells}</tr>')
    head = header_lines(trace)
    warning = (
        f'<div style="background:#fff3cd;border:1px solid #d39e00;padding:6px;margin:4px 0">⚠ '
        f"{html.escape(notice(trace))}</div>"
        if notice(trace)
        else ""
    )
    th = f'style="{_CELL};font-weight:bold"'
    heads = (text("transcript.time"), word("side", "client"), text("transcript.wire"), word("side", "server"))
    return (
        f'<div class="ck-transcript"><b>{html.escape(head[0])}</b><br>'
        f"<small>{'<br>'.join(html.escape(line) for line in head[1:])}</small>{warning}"
        f'<table class="ck-t"><tr>{"".join(f"<th {th}>{html.escape(h)}</th>" for h in heads)}</tr>'
        f"{''.join(out)}</table><small>{html.escape(counters_line(trace))}</small></div>"
    )
