"""The claims ledger: every checkable statement of the source document, put to the running kernel.

A Claim is data: the section of the document it comes from, what it says (in our words), the
built-in scenario that tests it, a check, what the check needs to see (segments, counters, states,
the calls, the lab's wire), the chapter that shows it, and a *counter-scenario*: another built-in
experiment on which the check must fail, so that a check that cannot fail is caught by the tests.

A check is a pure function of a Trace returning (holds, evidence); the evidence sentence is built
only from what the trace recorded (results, bytes, segments, states, durations), never typed in.
Claims are phrased *as the document says* (or UNIX Network Programming, or socket(7), whose words
it repeats). Where Linux does otherwise the verdict is "differs" and `linux_text` says what Linux
does, citing the kernel function.

A verdict is "cannot be judged here" when the trace's mode does not observe what the claim needs
(the counters in mode host, the segments in host-nocapture): the kernel is not blamed for what the
lab could not see. Nor is it blamed for a run that is no evidence: a scenario that could not run
here ("could not run here: …"), one whose premise did not hold (closekit.premise: the window was
not shut, no data was queued), or a run that did not do what the claim needs (a check returns
holds None: the call it asks about was not made). A verdict on a trace recorded on another machine
says so.

    >>> from closekit import claims
    >>> verdicts = claims.verify()          # runs each scenario once
    >>> print(claims.table(verdicts))

Durations in evidence are printed as the transcripts print them ("65.0 ms", "1.02 s"); the
notebooks' output comparison reads them by category (tests/nbval.cfg).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from closekit import query as q
from closekit.lang import claim_words, text
from closekit.trace import Segment, Syscall, Trace
from closekit.transcript import format_duration

__all__ = [
    "CLAIMS",
    "COUNTERS",
    "NEEDS",
    "SEGMENTS",
    "STATES",
    "SYSCALLS",
    "WIRE",
    "Claim",
    "Verdict",
    "by_section",
    "duration",
    "get",
    "judge",
    "observed",
    "summary",
    "table",
    "to_json",
    "verdicts_html",
    "verify",
]

Check = Callable[[Trace], tuple[bool | None, str]]  # None: the run did not do what the claim needs

# ---- what a check needs to see ---------------------------------------------------------------------
SYSCALLS, STATES, SEGMENTS, COUNTERS, WIRE = "syscalls", "states", "segments", "counters", "wire"
NEEDS = {
    SYSCALLS: "the calls and their results",
    STATES: "the sockets' TCP states",
    SEGMENTS: "the segments on the wire",
    COUNTERS: "the kernel's TCP counters",
    WIRE: "the lab's wire (its delay, its rules)",
}
_SEEN = {
    "netns": frozenset(NEEDS),
    "netns-loopback": frozenset({SYSCALLS, STATES, SEGMENTS, COUNTERS}),
    "host": frozenset({SYSCALLS, STATES, SEGMENTS}),
    "host-nocapture": frozenset({SYSCALLS, STATES}),
}


def observed(trace: Trace) -> frozenset[str]:
    """What the trace's mode observed (a trace recorded in mode netns observed everything)."""
    return _SEEN.get(trace.mode, frozenset({SYSCALLS}))


def duration(seconds: float) -> str:
    """A duration as transcripts print it: "0.4 ms", "65.0 ms", "1.02 s"."""
    return format_duration(seconds)


took = duration


# ---- the ledger's types -------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One statement of the document, the experiment that tests it, and how to read the result."""

    id: str
    section: str
    text: str
    scenario: str
    check: Check = field(repr=False)
    needs: frozenset[str] = frozenset({SYSCALLS})
    counter: str = ""
    chapter: str = ""
    linux_text: str | None = None

    @property
    def scenario_name(self) -> str:
        return self.scenario

    @property
    def statement(self) -> str:
        """What the claim says, in the course's language (`text` is the English original)."""
        return claim_words(self)[0]

    @property
    def linux(self) -> str | None:
        """What Linux does instead, in the course's language (`linux_text`: the English original)."""
        return claim_words(self)[1]

    def missing_in(self, trace: Trace) -> list[str]:
        """What this claim needs that `trace` did not observe (of NEEDS; empty: it can be judged)."""
        seen = observed(trace)
        return [n for n in NEEDS if n in self.needs and n not in seen]


# Why a verdict has no answer (holds None) other than what the mode cannot see: the words, its status.
NOT_RUN, PREMISE, NOT_EVIDENCE = "not-run", "premise", "not-evidence"
_UNJUDGED = {NOT_RUN: "could not run here", PREMISE: "premise did not hold", NOT_EVIDENCE: "not evidence"}


@dataclass(frozen=True)
class Verdict:
    """What the kernel said about one claim. `holds` is None when it cannot be judged from the trace:
    the mode did not observe what the claim needs, or (`why`) the scenario could not run, a premise
    did not hold, or the run did not do what the claim needs; `evidence` is a sentence read off the
    trace (or the error). `premises`: how the scenario's premises fared (closekit.premise.Result)."""

    claim: Claim
    holds: bool | None
    evidence: str
    kernel: str = field(default="", compare=False)
    mode: str = field(default="netns", compare=False)
    recorded: bool = field(default=False, compare=False)
    why: str = ""  # "" or NOT_RUN, PREMISE, NOT_EVIDENCE (only with holds None)
    premises: tuple[Any, ...] = field(default=(), compare=False)

    @property
    def judged(self) -> bool:
        return self.holds is not None

    @property
    def linux(self) -> str:
        """'Linux 6.18' from a release string such as '6.18.44-generic'."""
        return (
            "Linux " + ".".join(self.kernel.split("-")[0].split(".")[:2])
            if self.kernel
            else text("verdict.this_kernel")
        )

    @property
    def status(self) -> str:
        """'holds', 'differs' (Linux does otherwise, as `linux_text` explains), 'does not hold' (a
        failure nobody expected: a bug, or a kernel worth a lesson), 'cannot be judged' (this mode does
        not see it), or no evidence: 'could not run here', 'premise did not hold', 'not evidence'."""
        if self.holds is None:
            return _UNJUDGED.get(self.why, "cannot be judged")
        if self.holds:
            return "holds"
        return "differs" if self.claim.linux_text else "does not hold"

    def outcome(self, with_kernel: bool = True) -> str:
        """'holds'; 'differs on Linux X.Y' where the ledger explains what Linux does instead; 'does not
        hold on …' for a failure nobody expected (a bug, or a kernel worth a lesson); 'cannot be judged
        here (mode …, without …)'. A verdict read off a recorded trace says so."""
        if self.holds is None:
            if self.why == NOT_RUN:
                return text("verdict.not_run")
            if self.why == PREMISE:
                return text("verdict.premise_failed")
            if self.why == NOT_EVIDENCE:
                return text("verdict.not_evidence")
            return text("verdict.cannot_judge", mode=self.mode, missing=self.evidence)
        where = self.linux if with_kernel else text("verdict.this_kernel")
        if self.holds:
            said = text("verdict.holds")
        else:
            said = text("verdict.differs" if self.claim.linux_text else "verdict.does_not_hold", kernel=where)
        return said + (text("verdict.from_recording") if self.recorded else "")

    def line(self, with_kernel: bool = True) -> str:
        """One printable line: section, id, outcome (naming the kernel), evidence."""
        if self.holds is None and not self.why:
            return f"[{self.claim.section}] {self.claim.id}: {self.outcome(with_kernel)}"
        return f"[{self.claim.section}] {self.claim.id}: {self.outcome(with_kernel)} — {self.evidence}"

    def _repr_html_(self) -> str:
        return verdicts_html([self])

    def __str__(self) -> str:
        return self.line()

    def to_dict(self) -> dict[str, Any]:
        says, linux = claim_words(self.claim)
        return {
            "id": self.claim.id,
            "section": self.claim.section,
            "claim": says,
            "scenario": self.claim.scenario,
            "counter_scenario": self.claim.counter,
            "needs": sorted(self.claim.needs),
            "chapter": self.claim.chapter,
            "status": self.status,
            "holds": self.holds,
            "evidence": self.evidence,
            "linux": linux,
            "kernel": self.kernel,
            "mode": self.mode,
            "recorded": self.recorded,
            "premises": [r.to_dict() for r in self.premises],
        }


# ---- small words ------------------------------------------------------------------------------------
def _yes(b: object) -> str:
    return "yes" if b else "no"


def _r(c: Syscall | None) -> str:
    return q.result_text(c)


def _ret(c: Syscall) -> str:
    """What a call returned, as a value: '0', '-1 with EWOULDBLOCK'."""
    return f"-1 with {c.errno}" if c.errno else str(c.result)


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def _bits(c: Syscall | None) -> str:
    return "|".join(sorted(q.epoll_bits(c), key=_BIT_ORDER.index)) if q.epoll_bits(c) else "nothing"


_BIT_ORDER = ("EPOLLIN", "EPOLLPRI", "EPOLLOUT", "EPOLLRDHUP", "EPOLLERR", "EPOLLHUP")


def _linger_words(lg: q.Linger | None) -> str:
    return "no SO_LINGER (the default)" if lg is None else f"SO_LINGER {lg}"


def _on(lg: q.Linger | None, zero: bool) -> bool:
    """SO_LINGER was on with l_linger 0 (zero=True) or with a positive time (zero=False)."""
    return lg is not None and lg.on and ((lg.seconds == 0) == zero)


def _states_after(t: Trace, side: str, when: float, conn: int = 1) -> list[str]:
    return [e.state for e in q.state_changes(t, side, conn) if e.t >= when]


def _fin_after_all_data(t: Trace, src: str, fin: Segment | None) -> bool:
    """The FIN sits after every byte `src` sent (it may carry the last of them)."""
    if fin is None:
        return False
    data_end = max((s.seq + s.len for s in q.segments(t, src, data=True, conn=fin.conn)), default=1)
    return fin.seq + fin.len >= data_end


def _ran_out(t: Trace, c: Syscall, lg: q.Linger | None) -> tuple[bool, Segment | None]:
    """Did close() `c` wait out the whole linger time with its FIN unacknowledged? (and that ACK)"""
    fin = q.first(t, "FIN", t.endpoint_of(c.side), after=c.t)
    ack = q.ack_of(t, fin) if fin is not None else None
    unacked = ack is None or ack.arrived is None or ack.arrived > q.end(c)
    return bool(lg is not None and lg.on and lg.seconds > 0 and unacked and c.waited >= 0.95 * lg.seconds), ack


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _no_call(side: str, what: str) -> tuple[bool, str]:
    return False, f"the {side} made no {what}"


# ---- section 1: close() ---------------------------------------------------------------------------
def _close_returns_at_once(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    meanwhile = q.answered_during(t, c)
    queued = q.unsent_after(t, "client", c)
    fin = q.first(t, "FIN", "client", after=c)
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    delivered = r is not None and r.result == sent and r.errno is None
    ok = c.result == 0 and not meanwhile and queued > 0 and _fin_after_all_data(t, "client", fin) and delivered
    return ok, (
        f"close() {_r(c)} after {took(c.waited)}, with "
        + (
            f"{len(meanwhile)} segments from the server arriving while it ran"
            if meanwhile
            else "nothing from the server arriving meanwhile"
        )
        + f"; {queued} bytes were still queued then, and the client's TCP sent them afterwards, its FIN after the "
        "last one: "
        f"{_yes(_fin_after_all_data(t, 'client', fin))}; the server read {r.result if r else 0} of {sent} bytes, "
        f"then {r.errno if r is not None and r.errno else 'end of stream'}"
    )


def _fork(t: Trace, side: str) -> tuple[Syscall | None, str | None]:
    f = q.call(t, side, "fork")
    return f, (f.result if f is not None and isinstance(f.result, str) else None)


def _close_shared_no_fin(t: Trace) -> tuple[bool, str]:
    f, child = _fork(t, "server")
    if f is None or child is None:
        return False, "the server did not fork: nobody else held the socket"
    parent, child_close = q.call(t, "server", "close"), q.call(t, child, "close")
    if parent is None or child_close is None or parent.t > child_close.t:
        return False, "the parent did not close its descriptor while the child still held one"
    sent = [s for s in q.segments(t, "server", after=f, before=child_close) if s.has("FIN") or s.has("RST")]
    watched = [e for e in q.calls(t, "client", "epoll_wait") if parent.t < e.t < child_close.t]
    ok = parent.result == 0 and not sent and all("EPOLLRDHUP" not in q.epoll_bits(e) for e in watched)
    return ok, (
        f"the parent's close() {_r(parent)}; until the child's close() the server sent "
        f"{q.flags_text(sent) if sent else 'no FIN and no RST'}; "
        + (
            f"the client's epoll saw {', '.join(_bits(e) for e in watched)}"
            if watched
            else "the client's epoll was not asked"
        )
    )


def _close_last_reference_fin(t: Trace) -> tuple[bool, str]:
    holders = q.calls_on(t, "server", "close")
    if not holders:
        return _no_call("server", "close()")
    last = max(holders, key=lambda c: c.t)
    fin = q.first(t, "FIN", "server")
    r = next((c for c in q.calls(t, "client", "recv") if fin is not None and q.end(c) > fin.t), None)
    ok = fin is not None and fin.t >= last.t and len(holders) > 1 and r is not None and r.result == 0
    if fin is None:
        when = "never"
    elif fin.t >= last.t:
        when = f"after the last close() (by {last.side})"
    else:
        when = "before the last close()"
    return ok, (
        f"{len(holders)} descriptors of the server's socket were closed; the FIN left {when}; "
        f"the client's recv() then {_r(r)}"
    )


def _close_child_keeps_open(t: Trace) -> tuple[bool, str]:
    _f, child = _fork(t, "server")
    if child is None:
        return False, "the server did not fork"
    child_close, parent_close = q.call(t, child, "close"), q.call(t, "server", "close")
    if child_close is None or parent_close is None or child_close.t > parent_close.t:
        return False, "the child did not close its descriptor before the parent"
    later = q.segments(t, "server", data=True, after=child_close, before=parent_close)
    fin = q.first(t, "FIN", "server")
    r = q.received(t, "client")
    ok = bool(later) and fin is not None and fin.t >= parent_close.t and r > 0
    return ok, (
        f"after the child's close() the connection stayed open: the parent still sent "
        f"{_bytes(sum(s.len for s in later))} and the client received {r}; the FIN waited for the parent's close(): "
        f"{_yes(fin is not None and fin.t >= parent_close.t)}"
    )


def _runs_out_of_descriptors(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "call")
    if c is None:
        return _no_call("server", "call")
    ok = c.errno == "EMFILE"
    if ok:
        return ok, (
            f"the parent held {c.result} more descriptors for the connection, then the kernel refused the next "
            f"one: {c.errno} (the process's descriptor limit)"
        )
    return ok, f"{c.args.get('function', 'the call')}() {_r(c)}: the kernel never refused a descriptor"


# ---- section 2: shutdown() -----------------------------------------------------------------------
def _shutdowns(t: Trace, endpoint: str, *hows: str) -> list[Syscall]:
    return [c for c in q.calls_on(t, endpoint, "shutdown") if c.args.get("how") in hows]


def _shutdown_ignores_refcount(t: Trace) -> tuple[bool | None, str]:
    f, child = _fork(t, "server")
    shs = _shutdowns(t, "server", "SHUT_WR", "SHUT_RDWR")
    if f is None or child is None or not shs:
        return False, "no shutdown() while a forked process also held the socket"
    sh = shs[0]
    r = next((c for c in q.calls(t, "client", "recv") if q.end(c) > sh.t), None)
    if r is None:
        return None, "the client made no recv() that returned after the server's shutdown()"
    first_close = min((c.t for c in q.calls_on(t, "server", "close")), default=None)
    # The FIN the shutdown made: any from the server after the fork and before a close() can only be
    # it. It is not compared with the call's start, which another clock timed than the segment's.
    fin = q.first(t, "FIN", "server", after=f, before=first_close)
    ok = fin is not None and r.result == 0
    return ok, (
        f"while both processes still held the socket, {sh.side}'s shutdown({sh.args.get('how')}) sent a FIN: "
        f"{_yes(fin)}; the client's recv() {_r(r)}"
    )


def _shut_wr_half_close(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_WR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_WR)")
    sh = shs[0]
    queued = q.unsent_after(t, "client", sh)
    fin = q.first(t, "FIN", "client", after=sh)
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    back = next((c for c in q.calls(t, "server", "send") if r is not None and c.t > r.t), None)
    got = next((c for c in q.calls(t, "client", "recv") if back is not None and q.end(c) > back.t), None)
    ok = (
        queued > 0
        and _fin_after_all_data(t, "client", fin)
        and r is not None
        and r.result == sent
        and r.errno is None
        and back is not None
        and got is not None
        and got.result == back.result
    )
    return ok, (
        f"{queued} bytes were still queued at shutdown(SHUT_WR); they left first, then the FIN: "
        f"{_yes(_fin_after_all_data(t, 'client', fin))}; the server read {r.result if r else 0} of {sent} bytes "
        f"and end of stream; its send() afterwards {_r(back)} and the half-closed client's recv() {_r(got)}"
    )


def _shut_wr_no_more_writes(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "server", "SHUT_WR", "SHUT_RDWR") or _shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")
    if not shs:
        return False, "nobody called shutdown(SHUT_WR)"
    sh = shs[0]
    endpoint = t.endpoint_of(sh.side)
    w = next((c for c in q.calls_on(t, endpoint, "send") if q.end(c) > q.end(sh)), None)
    if w is None:
        return False, "nobody wrote to the socket after its shutdown(SHUT_WR)"
    sig = q.signals_of(t, w)
    ok = w.errno == "EPIPE" and "SIGPIPE" in sig
    who = "the same process" if w.side == sh.side else f"another process ({w.side})"
    return ok, f"after {sh.side}'s shutdown(SHUT_WR), a send() by {who} {_r(w)}, signal {', '.join(sig) or 'none'}"


def _read_shut(t: Trace, side: str = "client") -> Syscall | None:
    shs = [c for c in q.calls(t, side, "shutdown") if c.args.get("how") in ("SHUT_RD", "SHUT_RDWR")]
    return shs[0] if shs else None


def _shut_rd_later_data_discarded(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    data = next((s for s in q.segments(t, "server", data=True, after=sh)), None)
    if data is None:
        return False, "the server sent nothing after the client's SHUT_RD"
    ack = q.ack_of(t, data)
    r = next((c for c in q.calls(t, "client", "recv") if data.arrived is not None and q.end(c) > data.arrived), None)
    dropped = r is not None and (r.result == 0 or r.errno is not None)
    return ack is not None and dropped, (
        f"after SHUT_RD the server sent {data.len} bytes; the client's TCP acknowledged them: {_yes(ack)}; "
        f"the client's next recv() {_r(r)}"
    )


def _shut_rd_queued_discarded(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    queued = q.unread_at(t, "client", sh.t)
    r = next(iter(q.calls_after(t, "client", sh, "recv")), None)
    dropped = r is not None and (r.result == 0 or r.errno is not None)
    return queued > 0 and dropped, (
        f"{queued} bytes were waiting unread at SHUT_RD; the recv() after it {_r(r)}"
        if queued
        else "nothing was waiting unread at SHUT_RD"
    )


def _shut_rd_can_send(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    s = next(iter(q.calls_after(t, "client", sh, "send")), None)
    r = next((c for c in q.calls(t, "server", "recv") if s is not None and q.end(c) > s.t), None)
    ok = s is not None and s.errno is None and r is not None and r.result == s.result
    return ok, f"after shutdown({sh.args.get('how')}) the client's send() {_r(s)} and the server's recv() {_r(r)}"


def _shut_rd_read_returns_zero(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    r = next(iter(q.calls_after(t, "client", sh, "recv")), None)
    if r is None:
        return _no_call("client", "recv() after SHUT_RD")
    blocking = not q.calls(t, "client", "fcntl")
    empty = q.unread_at(t, "client", r.t) == 0
    meanwhile = q.segments(t, "server", after=r.t, before=q.end(r))
    ok = blocking and empty and r.result == 0 and not meanwhile
    return ok, (
        f"on a {'blocking' if blocking else 'non-blocking'} socket with {'nothing' if empty else 'data'} queued, "
        f"recv() after SHUT_RD {_r(r)} after {took(r.waited)}, nothing having arrived meanwhile: "
        f"{_yes(not meanwhile)}"
    )


def _shut_rd_still_readable(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    data = next(iter(q.segments(t, "server", data=True, after=sh)), None)
    if data is None or data.arrived is None:
        return False, "nothing arrived from the server after SHUT_RD"
    r = next((c for c in q.calls(t, "client", "recv") if q.end(c) > data.arrived), None)
    ok = r is not None and isinstance(r.result, int) and r.result > 0 and r.errno is None
    return ok, f"the server sent {data.len} bytes after the client's SHUT_RD; a recv() afterwards {_r(r)}"


def _data_after_read_shut_draws_rst(t: Trace, hows: tuple[str, ...]) -> tuple[bool, str]:
    shs = [c for c in q.calls(t, "client", "shutdown") if c.args.get("how") in ("SHUT_RD", "SHUT_RDWR")]
    wr = [c for c in q.calls(t, "client", "shutdown") if c.args.get("how") in ("SHUT_WR", "SHUT_RDWR")]
    done = [c.args.get("how") for c in q.calls(t, "client", "shutdown")]
    if not shs or not wr or tuple(done) != hows:
        return False, f"the client's shutdowns were {', '.join(done) or 'none'}, not {' then '.join(hows)}"
    last = max(shs[0].t, wr[0].t)
    data = next(iter(q.segments(t, "server", data=True, after=last)), None)
    if data is None or data.arrived is None:
        return False, "the server sent no data after the client had shut both halves"
    rst = q.first(t, "RST", "client", after=data.arrived)
    nxt = next(
        (c for c in q.calls(t, "server", "send") if rst is not None and rst.arrived and q.end(c) > rst.arrived), None
    )
    sig = q.signals_of(t, nxt)
    ok = rst is not None and nxt is not None and nxt.errno == "EPIPE" and "SIGPIPE" in sig
    return ok, (
        f"the server's {data.len} bytes after the client's {' + '.join(hows)} were answered with RST: {_yes(rst)}; "
        f"the server's next send() {_r(nxt)}, signal {', '.join(sig) or 'none'}"
    )


def _shut_wr_then_rd_rst(t: Trace) -> tuple[bool, str]:
    return _data_after_read_shut_draws_rst(t, ("SHUT_WR", "SHUT_RD"))


def _shut_rdwr_data_rst(t: Trace) -> tuple[bool, str]:
    return _data_after_read_shut_draws_rst(t, ("SHUT_RDWR",))


def _shut_rdwr(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_RDWR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_RDWR)")
    sh = shs[0]
    fin = q.first(t, "FIN", "client", after=sh)
    r = next(iter(q.calls_after(t, "client", sh, "recv")), None)
    s = next(iter(q.calls_after(t, "client", sh, "send")), None)
    c = next(iter(q.calls_after(t, "client", sh, "close")), None)
    ok = (
        fin is not None
        and r is not None
        and r.result == 0
        and s is not None
        and s.errno == "EPIPE"
        and c is not None
        and c.result == 0
    )
    return ok, (
        f"shutdown(SHUT_RDWR) sent a FIN: {_yes(fin)}; then recv() {_r(r)}, send() {_r(s)}; "
        f"the descriptor stayed open until close() {_r(c)}"
    )


# ---- section 3.1: SO_LINGER -------------------------------------------------------------------------
def _linger_zero_rst(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    after = q.segments(t, "client", after=c)
    rst = q.first(t, "RST", "client", after=c)
    r = next(
        (x for x in q.calls(t, "server", "recv") if rst is not None and rst.arrived and q.end(x) > rst.arrived), None
    )
    ok = (
        _on(lg, zero=True)
        and rst is not None
        and q.first_flag(after) == "RST"
        and r is not None
        and r.errno == "ECONNRESET"
    )
    return ok, (
        f"{_linger_words(lg)}; close() {_r(c)} and the client sent {q.flags_text(after)}; "
        f"the server's recv() {_r(r) if r else 'was not asked after an RST' if rst is None else _r(r)}"
    )


def _rst_no_response(t: Trace) -> tuple[bool, str]:
    rst = q.first(t, "RST", "client")
    if rst is None or rst.arrived is None:
        return False, "the client sent no RST"
    answer = q.segments(t, "server", after=rst.arrived)
    return not answer, f"after the client's RST arrived the server's TCP sent {q.flags_text(answer)}"


def _linger_zero_no_time_wait(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    path = _states_after(t, "client", c.t)
    ok = _on(lg, zero=True) and bool(path) and path[-1] == "CLOSED" and "TIME_WAIT" not in path
    return ok, f"{_linger_words(lg)}; after close() the client's socket went {' → '.join(path) or 'nowhere recorded'}"


def _linger_zero_discards(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    sent = q.sent_total(t, "client")
    on_wire = max((s.seq + s.len for s in q.segments(t, "client", data=True, before=c)), default=1) - 1
    later = q.segments(t, "client", data=True, after=c)
    rst = q.first(t, "RST", "client", after=c)
    r = q.call(t, "server", q.READ_TO_EOF)
    path = _states_after(t, "client", c.t)
    ok = (
        _on(lg, zero=True)
        and rst is not None
        and not later
        and r is not None
        and r.result < sent
        and r.errno == "ECONNRESET"
        and "TIME_WAIT" not in path
    )
    return ok, (
        f"{_linger_words(lg)}; at close() {sent - on_wire} of {sent} bytes had not yet left; after it the client "
        f"sent {q.flags_text(q.segments(t, 'client', after=c))}; the server read {r.result if r else 0} of {sent} "
        f"bytes, then {r.errno if r is not None and r.errno else 'end of stream'}; client states after close(): "
        f"{' → '.join(path)}"
    )


def _linger_positive_four_way(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    fin = q.first(t, "FIN", "client", after=c.t)
    ack = q.ack_of(t, fin) if fin else None
    in_time = ack is not None and ack.arrived is not None and ack.arrived <= q.end(c)
    rst = t.segments(flags="RST")
    ok = (
        _on(lg, zero=False)
        and c.result == 0
        and in_time
        and q.first(t, "FIN", "server") is not None
        and not rst
        and t.final_state("client") == "TIME_WAIT"
    )
    return ok, (
        f"{_linger_words(lg)}; close() {_r(c)} after {took(c.waited)}, its FIN acknowledged before it returned: "
        f"{_yes(in_time)}; a FIN from each side: {_yes(fin and q.first(t, 'FIN', 'server'))}, RST: {_yes(rst)}; "
        f"the client ended in {t.final_state('client')}"
    )


def _linger_timeout_rst(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    ran_out, _ack = _ran_out(t, c, lg)
    rst = q.first(t, "RST", "client", after=c.t)
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    lost = r is not None and r.result < sent
    return ran_out and rst is not None and lost, (
        f"{_linger_words(lg)}; close() {_r(c)} after {took(c.waited)}, the linger time having run out with its "
        f"FIN unacknowledged: {_yes(ran_out)}; an RST followed: {_yes(rst)}; the server later read "
        f"{r.result if r else 0} of {sent} bytes"
    )


def _fin_sender_time_wait(t: Trace) -> tuple[bool, str]:
    firsts = {side: q.first(t, "FIN", side) for side in ("client", "server")}
    delivered = {side: next((f for f in q.segments(t, side, "FIN") if not f.lost), None) for side in firsts}
    active = []
    for side, fin in firsts.items():
        other = delivered[q.peer(side)]
        if fin is not None and (other is None or fin.t < other.arrived):  # type: ignore[operator]
            active.append(side)
    if not active:
        return False, "nobody sent a FIN"
    judged = [s for s in active if q.first(t, "RST", s) is None]
    ends = {s: t.final_state(s) for s in active}
    ok = bool(judged) and all(ends[s] == "TIME_WAIT" for s in judged)
    words = "; ".join(
        f"the {s} sent a FIN before it had the other's and ended in {ends[s]}"
        + (" (it also sent an RST)" if s not in judged else "")
        for s in active
    )
    return ok, words


def _duplicate(t: Trace) -> Segment | None:
    return next((s for s in t.segments() if s.fate == "duplicate"), None)


def _old_duplicate_reaches(t: Trace) -> tuple[bool, str]:
    dup = _duplicate(t)
    syn2 = q.first(t, "SYN", "client", conn=2)
    rst1 = q.first(t, "RST", "client", conn=1)
    path1 = t.states("client", conn=1)
    if syn2 is None:
        return False, "there was no second connection"
    ok = (
        rst1 is not None
        and "TIME_WAIT" not in path1
        and dup is not None
        and dup.conn == 1
        and dup.arrived is not None
        and dup.arrived > syn2.t
    )
    return ok, (
        f"connection 1 ended with the client's RST (client states {' → '.join(path1)}); connection 2 on the same "
        f"addresses and ports began right after it; a copy of connection 1's "
        f"segment {dup.seq if dup else '?'}:{dup.seq + dup.len if dup else '?'} arrived during it: "
        f"{_yes(dup is not None and dup.arrived is not None and dup.arrived > syn2.t)}"
    )


def _old_duplicate_delivered(t: Trace) -> tuple[bool, str]:
    dup = _duplicate(t)
    if dup is None or dup.arrived is None:
        return False, "no old duplicate arrived"
    r = next((c for c in q.calls(t, "server", "recv") if q.end(c) > dup.arrived), None)
    ok = r is not None and r.result == dup.len and r.errno is None
    paws = f"; the kernel counted it in PAWSEstab +{t.counter('TcpExt:PAWSEstab')}" if COUNTERS in observed(t) else ""
    return ok, (
        f"the copy of {dup.len} old bytes reached the new connection; the server's recv() afterwards {_r(r)}{paws}"
    )


def _linger_off_ignored(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    after = q.segments(t, "client", after=c)
    meanwhile = q.answered_during(t, c)
    path = _states_after(t, "client", c.t)
    ok = lg is not None and not lg.on and not meanwhile and q.first_flag(after) == "FIN" and "TIME_WAIT" in path
    return ok, (
        f"{_linger_words(lg)}; close() {_r(c)} after {took(c.waited)} and the client sent {q.flags_text(after)}; "
        f"its states after close(): {' → '.join(path)}"
    )


def _time_wait_answers_resent_fin(t: Trace) -> tuple[bool, str]:
    fins = q.segments(t, "server", "FIN")
    if len(fins) < 2 or fins[1].arrived is None:
        return False, f"the server sent its FIN {_times(len(fins))}: nothing was resent"
    lost = [s for s in q.segments(t, "client", after=fins[0].t, before=fins[1].t) if s.lost]
    state = q.state_before(t, "client", fins[1].arrived)
    again = q.ack_of(t, fins[1])
    closed = next((e for e in q.state_changes(t, "server") if e.state == "CLOSED" and e.t >= fins[1].t), None)
    ok = bool(lost) and state == "TIME_WAIT" and again is not None and not again.lost and closed is not None
    return ok, (
        f"the client's ACK of the server's FIN was lost on the wire: {_yes(lost)}; the server resent its FIN "
        f"{took(fins[1].t - fins[0].t)} later; it found the client in {state} and was acknowledged again: "
        f"{_yes(again)}; the server then reached CLOSED: {_yes(closed)}"
    )


def _simultaneous_close(t: Trace) -> tuple[bool, str]:
    cf, sf = q.first(t, "FIN", "client"), q.first(t, "FIN", "server")
    if cf is None or sf is None or cf.arrived is None or sf.arrived is None:
        return False, "the two sides did not both send a FIN"
    crossed = cf.t < sf.arrived and sf.t < cf.arrived
    paths = {side: t.states(side) for side in ("client", "server")}
    ok = crossed and all("CLOSING" in p and p[-1] == "TIME_WAIT" for p in paths.values())
    return ok, (
        f"each FIN left before the other's arrived: {_yes(crossed)}; client "
        f"{' → '.join(_states_after(t, 'client', cf.t))}; server {' → '.join(_states_after(t, 'server', sf.t))}"
    )


# ---- sections 3.2.x: when close() returns --------------------------------------------------------------
def _return_default(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    read = q.call(t, "server", q.READ_TO_EOF)
    if c is None or read is None:
        return False, "the client's close() or the server's read is missing"
    lg = q.linger_at(t, "client", c.t)
    fin = q.first(t, "FIN", "client", after=c.t)
    ack = q.ack_of(t, fin) if fin else None
    before_ack = ack is not None and ack.arrived is not None and q.end(c) < ack.arrived
    before_read = q.end(c) < read.t
    ok = c.result == 0 and before_ack and before_read
    return ok, (
        f"{_linger_words(lg)}; close() {_r(c)} after {took(c.waited)}, before the ACK of its FIN came back: "
        f"{_yes(before_ack)}"
        + f"; the busy server read the {read.result} bytes after close() had returned: {_yes(before_read)}"
    )


def _orphan_gives_up(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    fins = q.segments(t, "client", "FIN", after=c.t)
    acked = [f for f in fins if q.ack_of(t, f) is not None and q.ack_of(t, f).arrived is not None]  # type: ignore[union-attr]
    closed = next((e for e in q.state_changes(t, "client") if e.t >= c.t and e.state == "CLOSED"), None)
    told = q.calls_after(t, "client", c)
    ok = c.result == 0 and len(fins) >= 2 and not acked and closed is not None and not q.first(t, "RST", "client")
    counter = f" (TCPAbortOnTimeout +{t.counter('TcpExt:TCPAbortOnTimeout')})" if COUNTERS in observed(t) else ""
    return ok, (
        f"close() {_r(c)} after {took(c.waited)}; then the kernel sent the FIN {_times(len(fins))}, "
        f"{'none' if not acked else len(acked)} acknowledged, and "
        + (f"dropped the connection {_gave_up(t, c, closed.t)}{counter}" if closed else f"kept the connection{counter}")
        + f"; the application, with no descriptor left, {'was told nothing' if not told else 'made more calls'}"
    )


def _gave_up(t: Trace, c: Syscall, when: float) -> str:
    """When an orphan was dropped, in terms of the TCP_USER_TIMEOUT the trace shows it was given."""
    uto = next(
        (x for x in q.calls(t, t.endpoint_of(c.side), "setsockopt") if x.args.get("option") == "TCP_USER_TIMEOUT"), None
    )
    if uto is None:
        return f"{took(when - q.end(c))} after close() had returned"
    ms = uto.args.get("value", 0)
    past = when - q.end(c) >= ms / 1000
    return f"once the TCP_USER_TIMEOUT it had been given ({ms} ms) had run out: {_yes(past)}"


def _returns_after_ack(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    read = q.call(t, "server", q.READ_TO_EOF)
    if c is None or read is None:
        return False, "the client's close() or the server's read is missing"
    lg = q.linger_at(t, "client", c.t)
    fin = q.first(t, "FIN", "client", after=c.t)
    ack = q.ack_of(t, fin) if fin else None
    if fin is None or fin.arrived is None or ack is None or ack.arrived is None:
        return False, f"{_linger_words(lg)}; close() {_r(c)}; its FIN was never acknowledged"
    nxt = next((s.arrived for s in q.segments(t, "server", after=ack.t) if s is not ack and s.arrived), None)
    limit = min(x for x in (nxt, read.t) if x is not None)
    waited = ack.arrived <= q.end(c) < limit
    ok = _on(lg, zero=False) and c.result == 0 and waited and q.end(c) < read.t
    delay = t.link.get("delay") or 0.0
    trips = f"two trips over the {took(delay)} link" if delay else "the FIN's and the ACK's trips"
    return ok, (
        f"{_linger_words(lg)}; close() {_r(c)} once the ACK of its FIN had arrived, before anything else came from "
        f"the server: {_yes(waited)}; it waited for {trips} and for the server's TCP, "
        f"which answered the FIN {took(ack.t - fin.arrived)} after it arrived; the server application read "
        f"{'only after close() had returned' if q.end(c) < read.t else 'before close() returned'}"
    )


def _fin_ack_delayed(t: Trace) -> tuple[bool, str]:
    fin = q.first(t, "FIN", "client")
    if fin is None or fin.arrived is None:
        return False, "the client sent no FIN"
    data = sum(s.len for s in q.segments(t, "client", data=True, before=fin.t))
    ack = q.ack_of(t, fin)
    if ack is None:
        return False, "the client's FIN was never acknowledged"
    wait = ack.t - fin.arrived
    ok = data > 0 and wait >= 0.035
    return (
        ok,
        f"after {data} bytes had flowed, the server's TCP acknowledged the client's FIN {took(wait)} after it arrived",
    )


def _linger_timeout_ewouldblock(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    ran_out, _ack = _ran_out(t, c, lg)
    ok = ran_out and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, (
        f"{_linger_words(lg)}; close() blocked {took(c.waited)}, "
        + (
            "until the linger time ran out with its FIN unacknowledged, "
            if ran_out
            else "and returned before the linger time ran out, "
        )
        + f"and returned {_ret(c)}"
    )


def _linger_nonblocking(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    nonblocking = any(f.args.get("flags") == "O_NONBLOCK" for f in q.calls(t, "client", "fcntl") if f.t < c.t)
    fin = q.first(t, "FIN", "client", after=c.t)
    ack = q.ack_of(t, fin) if fin else None
    pending = ack is None or ack.arrived is None or ack.arrived > q.end(c)
    at_once = lg is not None and c.waited < lg.seconds / 2
    ok = nonblocking and _on(lg, zero=False) and pending and at_once and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, (
        f"{_linger_words(lg)} on a {'non-blocking' if nonblocking else 'blocking'} socket with data "
        f"{'still unacknowledged' if pending else 'acknowledged'}: close() {_r(c)} after {took(c.waited)}"
    )


def _shutdown_read_waits(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_WR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_WR)")
    sh = shs[0]
    r = next(iter(q.calls_after(t, "client", sh, "recv")), None)
    sread, sclose = q.call(t, "server", q.READ_TO_EOF), q.call(t, "server", "close")
    sfin = q.first(t, "FIN", "server")
    if r is None or sread is None or sclose is None or sfin is None or sfin.arrived is None:
        return False, "the client's read, or the server's read, close or FIN is missing"
    busy = sum(c.duration for c in q.calls(t, "server", "sleep"))
    ok = r.result == 0 and r.t < sread.t and q.end(r) >= sfin.arrived and q.end(sread) <= sclose.t <= sfin.t
    return ok, (
        f"the client's recv() after shutdown(SHUT_WR) blocked {took(r.waited)} and {_r(r)} once the server's FIN "
        f"had arrived: {_yes(q.end(r) >= sfin.arrived)}; meanwhile the server was busy {took(busy)}, read "
        f"{sread.result} bytes and closed: {_yes(ok)}"
    )


# ---- section 4.1: the kernel's close path -------------------------------------------------------------
def _close_before_ack(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    fin = q.first(t, "FIN", "client", after=c.t)
    ack = q.ack_of(t, fin) if fin else None
    later = fin is not None and fin.t > q.end(c)
    ok = c.result == 0 and later and ack is not None and ack.arrived is not None and ack.arrived > q.end(c)
    return ok, (
        f"close() {_r(c)} after {took(c.waited)}; its FIN left "
        + ("only after close() had returned" if later and fin else "while close() ran" if fin else "never")
        + (f", and was acknowledged after that: {_yes(ack.arrived > q.end(c))}" if ack and ack.arrived else "")
    )


def _fin_wait_1_while_queued(t: Trace) -> tuple[bool, str]:
    call = q.call(t, "client", "close") or next(iter(_shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")), None)
    if call is None:
        return _no_call("client", "close() or shutdown()")
    fw1 = next((e for e in q.state_changes(t, "client") if e.state == "FIN_WAIT_1" and e.t >= call.t), None)
    if fw1 is None:
        return False, f"after {call.call}() no FIN_WAIT_1 was recorded"
    queued = q.unsent_after(t, "client", fw1.t)
    fin = q.first(t, "FIN", "client", after=call.t)
    ok = queued > 0 and _fin_after_all_data(t, "client", fin)
    return ok, (
        f"right after {call.call}() the client's socket was in FIN_WAIT_1 with {queued} bytes still to leave; its "
        f"FIN followed the last of them: {_yes(_fin_after_all_data(t, 'client', fin))}"
    )


def _fin_lost(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    fins = q.segments(t, "client", "FIN", after=c.t)
    if not fins or not fins[0].lost or len(fins) < 2:
        return False, f"close() {_r(c)}; its FIN was {'lost' if fins and fins[0].lost else 'not lost'} on the wire"
    ack = q.ack_of(t, fins[1])
    left = next((e for e in q.state_changes(t, "client") if e.t > c.t and e.state != "FIN_WAIT_1"), None)
    waited = left is not None and ack is not None and ack.arrived is not None and left.t >= ack.arrived
    ok = c.result == 0 and ack is not None and waited
    return ok, (
        f"close() {_r(c)} after {took(c.waited)}; its FIN was lost on the wire and the kernel resent it "
        f"{took(fins[1].t - fins[0].t)} later; the client stayed in FIN_WAIT_1 until that one was acknowledged: "
        f"{_yes(waited)}"
    )


def _close_in_syn_sent(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    state = q.state_before(t, "client", c.t)  # what the call found (a state it brought is dated at its start)
    after = q.segments(t, "client", after=c)
    end_state = t.final_state("client")
    ok = state == "SYN_SENT" and not after and end_state == "CLOSED"
    return (
        ok,
        f"close() {_r(c)} in {state}; the client then sent {q.flags_text(after)} and its socket ended {end_state}",
    )


def _listener_close_resets(t: Trace) -> tuple[bool, str]:
    lc = next((c for c in t.syscalls("server", "close") if c.args.get("socket") == "listener"), None)
    if lc is None:
        return _no_call("server", "close() of its listening socket")
    accepted = [c for c in q.calls(t, "server", "accept") if c.t < lc.t]
    rst = q.first(t, "RST", "server", after=lc)
    r = next(
        (c for c in q.calls(t, "client", "recv") if rst is not None and rst.arrived and q.end(c) > rst.arrived), None
    )
    ok = not accepted and rst is not None and r is not None and r.errno == "ECONNRESET"
    return ok, (
        f"the server closed its listening socket with {'no connection' if accepted else 'a connection'} still "
        f"waiting to be accepted; it sent {q.flags_text(q.segments(t, 'server', after=lc))} to that connection; the "
        f"client's recv() {_r(r)}"
    )


def _reset_before_accept(t: Trace) -> tuple[bool, str]:
    rst = q.first(t, "RST", "client")
    if rst is None or rst.arrived is None:
        return False, "the client sent no RST"
    a = next((c for c in q.calls(t, "server", "accept") if q.end(c) > rst.arrived), None)
    r = next(iter(q.calls_after(t, "server", a, "recv")), None) if a is not None else None
    ok = a is not None and a.errno is None and r is not None and r.errno == "ECONNRESET"
    took_it = "failed: " + _r(a) if a is not None and a.errno else "returned the connection" if a else "was not called"
    return ok, f"the client's RST arrived before accept(); accept() then {took_it}, and the first recv() {_r(r)}"


def _close_unread_rst(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    unread = q.unread_at(t, "server", c.t)
    after = q.segments(t, "server", after=c)
    rst = q.first(t, "RST", "server", after=c)
    r = next(
        (x for x in q.calls(t, "client", "recv") if rst is not None and rst.arrived and q.end(x) > rst.arrived), None
    )
    ok = unread > 0 and q.first_flag(after) == "RST" and r is not None and r.errno == "ECONNRESET"
    counter = f"; TCPAbortOnClose +{t.counter('TcpExt:TCPAbortOnClose')}" if COUNTERS in observed(t) else ""
    return ok, (
        f"the server's close() with {unread} bytes unread sent {q.flags_text(after)}; the client's recv() "
        f"{_r(r)}{counter}"
    )


def _close_unread_epoll(t: Trace) -> tuple[bool, str]:
    rst = q.first(t, "RST", "server")
    if rst is None or rst.arrived is None:
        return False, "the server sent no RST"
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > rst.arrived), None)
    r = next((c for c in q.calls(t, "client", "recv") if q.end(c) > rst.arrived), None)
    ok = {"EPOLLIN", "EPOLLRDHUP", "EPOLLHUP"} <= q.epoll_bits(ev) and r is not None and r.errno == "ECONNRESET"
    return ok, f"after the RST the client's epoll_wait() {_r(ev)}, all in one call; then recv() {_r(r)}"


def _abort_path_order(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    lg = q.linger_at(t, "server", c.t)
    unread = q.unread_at(t, "server", c.t)
    on_close, on_data = t.counter("TcpExt:TCPAbortOnClose"), t.counter("TcpExt:TCPAbortOnData")
    ok = _on(lg, zero=True) and unread > 0 and on_close == 1 and on_data == 0
    return ok, (
        f"{_linger_words(lg)} and {unread} bytes unread at close(): TCPAbortOnClose +{on_close}, "
        f"TCPAbortOnData +{on_data}"
    )


def _peer_fin(t: Trace, closer: str = "server") -> Segment | None:
    return q.first(t, "FIN", closer)


def _fin_epoll(t: Trace) -> tuple[bool, str]:
    fin = _peer_fin(t)
    if fin is None or fin.arrived is None:
        return False, "no FIN from the server arrived"
    rst = q.first(t, "RST", None, after=fin.t)
    before = rst.arrived if rst is not None else None
    ev = next(
        (c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > fin.arrived and (before is None or c.t < before)),
        None,
    )
    bits = q.epoll_bits(ev)
    ok = {"EPOLLIN", "EPOLLRDHUP"} <= bits and not {"EPOLLERR", "EPOLLHUP"} & bits
    return ok, f"after the server's FIN arrived the client's epoll_wait() {_r(ev)}"


def _epoll_level_triggered(t: Trace) -> tuple[bool, str]:
    fin = _peer_fin(t)
    if fin is None or fin.arrived is None:
        return False, "no FIN from the server arrived"
    stop = min(
        [c.t for c in q.calls(t, "client") if c.call in ("recv", "send") and q.end(c) > fin.arrived]
        + [s.arrived for s in q.segments(t, None, "RST") if s.arrived is not None],
        default=None,
    )
    evs = [c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > fin.arrived and (stop is None or c.t < stop)]
    ok = len(evs) >= 2 and all({"EPOLLIN", "EPOLLRDHUP"} <= q.epoll_bits(e) for e in evs)
    return ok, (
        f"without reading, the client asked epoll_wait() {len(evs)} times after the FIN: "
        + "; ".join(_bits(e) for e in evs)
    )


def _write_after_fin(t: Trace) -> tuple[bool, str]:
    fin = q.first(t, "FIN", None)
    if fin is None or fin.arrived is None:
        return False, "nobody sent a FIN"
    closer, writer = fin.src, fin.dst
    how = next((c for c in t.syscalls() if t.endpoint_of(c.side) == closer and c.call in ("close", "shutdown")), None)
    s = next((c for c in q.calls(t, writer, "send") if q.end(c) > fin.arrived), None)
    if s is None:
        return False, f"the {writer} wrote nothing after the {closer}'s FIN"
    data = next(iter(q.segments(t, writer, data=True, after=s.t)), None)
    state = q.state_before(t, closer, data.arrived) if data is not None and data.arrived is not None else None
    rst = q.first(t, "RST", closer, after=data.arrived) if data is not None and data.arrived is not None else None
    ok = how is not None and how.call == "close" and s.errno is None and state == "FIN_WAIT_2" and rst is not None
    return ok, (
        f"the {closer} had called {how.call if how else '?'}(); the {writer}'s first send() after its FIN {_r(s)}; "
        f"the data reached the {closer} in {state or '?'} and was answered with an RST: {_yes(rst)}"
    )


def _rst_arrival(t: Trace, at: str = "client") -> Segment | None:
    rst = q.first(t, "RST", q.peer(at))
    return rst if rst is not None and rst.arrived is not None else None


def _epoll_after_rst(t: Trace) -> tuple[bool, str]:
    rst = _rst_arrival(t)
    if rst is None:
        return False, "no RST reached the client"
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > rst.arrived), None)  # type: ignore[operator]
    ok = {"EPOLLERR", "EPOLLHUP"} <= q.epoll_bits(ev)
    return ok, f"after the RST the client's epoll_wait() {_r(ev)}"


def _epoll_err_so_error(t: Trace) -> tuple[bool, str]:
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if "EPOLLERR" in q.epoll_bits(c)), None)
    if ev is None:
        return False, "epoll never reported EPOLLERR"
    g = next((c for c in q.calls_after(t, "client", ev, "getsockopt") if c.args.get("option") == "SO_ERROR"), None)
    if g is None:
        return False, "epoll reported EPOLLERR, but SO_ERROR was never read"
    ev2 = next(iter(q.calls_after(t, "client", g, "epoll_wait")), None)
    error = g.result if isinstance(g.result, str) else None
    ok = error is not None and ev2 is not None and "EPOLLERR" not in q.epoll_bits(ev2)
    meaning = f" ({os.strerror(_errno(error))})" if error and _errno(error) else ""
    return ok, (f"epoll_wait() {_r(ev)}; getsockopt(SO_ERROR) {_r(g)}{meaning}; the next epoll_wait() {_r(ev2)}")


def _errno(name: str | None) -> int:
    import errno

    return getattr(errno, name, 0) if name else 0


def _rst_in_close_wait(t: Trace) -> tuple[bool, str]:
    rst = _rst_arrival(t)
    if rst is None:
        return False, "no RST reached the client"
    state = q.state_before(t, "client", rst.arrived)  # type: ignore[arg-type]
    s = next((c for c in q.calls(t, "client", "send") if q.end(c) > rst.arrived), None)  # type: ignore[operator]
    ok = state == "CLOSE_WAIT" and s is not None and s.errno == "EPIPE"
    return ok, f"the RST reached the client in {state}; the client's next send() {_r(s)}"


def _second_write_sigpipe(t: Trace) -> tuple[bool, str]:
    rst = _rst_arrival(t)
    if rst is None:
        return False, "no RST reached the client"
    s = next((c for c in q.calls(t, "client", "send") if q.end(c) > rst.arrived), None)  # type: ignore[operator]
    sig = q.signals_of(t, s)
    ok = s is not None and s.errno == "EPIPE" and "SIGPIPE" in sig
    return ok, f"the client's first send() after the RST {_r(s)}, signal {', '.join(sig) or 'none'}"


def _ending(t: Trace, conn: int) -> tuple[Segment | None, Syscall | None, Syscall | None, Syscall | None]:
    """How the server ended connection `conn` (its FIN or RST, the call before it) and what the client
    saw next (its first epoll_wait and recv after that segment arrived)."""
    end_seg = next((s for s in q.segments(t, "server", conn=conn) if s.has("FIN") or s.has("RST")), None)
    if end_seg is None or end_seg.arrived is None:
        return None, None, None, None
    cause = next(
        (c for c in reversed(t.syscalls("server")) if c.call in ("close", "shutdown") and c.t <= end_seg.t), None
    )
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > end_seg.arrived), None)
    r = next((c for c in q.calls(t, "client", "recv") if q.end(c) > end_seg.arrived), None)
    return end_seg, cause, ev, r


def _peer_cannot_tell(t: Trace) -> tuple[bool, str]:
    first, second = _ending(t, 1), _ending(t, 2)
    if first[0] is None or second[0] is None:
        return False, "the trace does not hold two connections the server ended"
    words = []
    for seg, cause, ev, r in (first, second):
        how = f"{cause.call}({cause.args.get('how', '')})" if cause else "?"
        words.append(
            f"after {how} the client got {seg.tcpdump_flags if seg else '?'}, epoll {_bits(ev)}, recv() {_r(r)}"
        )
    (s1, c1, e1, r1), (s2, c2, e2, r2) = first, second
    same = (
        s1 is not None
        and s2 is not None
        and s1.flags == s2.flags
        and q.epoll_bits(e1) == q.epoll_bits(e2)
        and r1 is not None
        and r2 is not None
        and (r1.result, r1.errno) == (r2.result, r2.errno)
    )
    different_calls = c1 is not None and c2 is not None and (c1.call, c1.args) != (c2.call, c2.args)
    ok = same and different_calls and s1 is not None and s1.has("FIN")
    return ok, f"connection 1: {words[0]}; connection 2: {words[1]}; the same: {_yes(same)}"


def _shut_wr_unread_no_rst(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_WR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_WR)")
    sh = shs[0]
    unread = q.unread_at(t, "client", sh.t)
    after = q.segments(t, "client", after=sh)
    r = next(iter(q.calls_after(t, "client", sh, "recv")), None)
    ok = unread > 0 and q.first_flag(after) == "FIN" and r is not None and r.result == unread
    return ok, (
        f"with {unread} bytes unread, shutdown(SHUT_WR) sent {q.flags_text(after)}; the bytes stayed readable: "
        f"recv() {_r(r)}"
    )


# ---- section 5: shutdown vs close ------------------------------------------------------------------------
def _million_lost(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    r = q.call(t, "server", q.READ_TO_EOF)
    if c is None or r is None:
        return False, "A's close() or B's read is missing"
    unread = q.unread_at(t, "client", c.t)
    rst = q.first(t, "RST", "client", after=c)
    sent = q.sent_total(t, "client")
    ok = unread > 0 and rst is not None and r.result < sent and r.errno == "ECONNRESET"
    counter = f" (TCPAbortOnClose +{t.counter('TcpExt:TCPAbortOnClose')})" if COUNTERS in observed(t) else ""
    return ok, (
        f"A's send() {_r(q.call(t, 'client', 'send'))}; its close() with {unread} bytes of B's unread sent an RST: "
        f"{_yes(rst)}{counter}; B read {r.result} of {sent} bytes, then {r.errno or 'end of stream'}"
    )


def _million_fixed(t: Trace) -> tuple[bool, str]:
    sh = next(iter(_shutdowns(t, "client", "SHUT_WR")), None)
    a = q.call(t, "client", q.READ_TO_EOF)
    b = q.call(t, "server", q.READ_TO_EOF)
    c = q.call(t, "client", "close")
    sent = q.sent_total(t, "client")
    rst = t.segments(flags="RST")
    ok = (
        sh is not None
        and a is not None
        and a.errno is None
        and b is not None
        and b.result == sent
        and b.errno is None
        and c is not None
        and c.t >= q.end(a)
        and not rst
    )
    return ok, (
        f"A: send() {_r(q.call(t, 'client', 'send'))}, shutdown(SHUT_WR) {_r(sh)}, read to end of stream {_r(a)}, "
        f"close() {_r(c)}; B read {b.result if b else 0} of {sent} bytes, then "
        f"{b.errno if b is not None and b.errno else 'end of stream'}; RST on the wire: {_yes(rst)}"
    )


def _million_linger(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    r = q.call(t, "server", q.READ_TO_EOF)
    if c is None or r is None:
        return False, "A's close() or B's read is missing"
    lg = q.linger_at(t, "client", c.t)
    unread = q.unread_at(t, "client", c.t)
    rst = q.first(t, "RST", "client", after=c)
    sent = q.sent_total(t, "client")
    ok = _on(lg, zero=False) and unread > 0 and rst is not None and r.result < sent and r.errno == "ECONNRESET"
    return ok, (
        f"A set {_linger_words(lg)}; its close() with {unread} bytes of B's unread returned {_ret(c)} after "
        f"{took(c.waited)} and sent an RST: {_yes(rst)}; B read {r.result} of {sent} bytes, then "
        f"{r.errno or 'end of stream'}"
    )


def _million_read_linger(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    greeting = sum(x.result for x in q.calls(t, "client", "recv") if x.t < c.t and isinstance(x.result, int))
    unread = q.unread_at(t, "client", c.t)
    sent = q.sent_total(t, "client")
    read_by_then = sum(
        x.result
        for x in t.syscalls("server", "recv")
        if q.end(x) <= q.end(c) and isinstance(x.result, int) and x.result > 0
    )
    acked = (
        max(
            (
                s.ack
                for s in q.segments(t, "server")
                if s.arrived is not None and s.arrived <= q.end(c) and s.has("ACK")
            ),
            default=1,
        )
        - 1
    )
    b = q.call(t, "server", q.READ_TO_EOF)
    ok = greeting > 0 and unread == 0 and _on(lg, zero=False) and c.result == 0 and read_by_then < sent
    return ok, (
        f"A read {greeting} bytes (B's greeting), set {_linger_words(lg)}, and close() {_r(c)} after "
        f"{took(c.waited)}; at that moment B's kernel had acknowledged {min(acked, sent)} of {sent} bytes and B's "
        f"application had read {read_by_then}; B went on to read {b.result if b else 0}"
    )


def _exit_lingers_in_background(t: Trace) -> tuple[bool, str]:
    e = q.call(t, "client", "call")
    if e is None:
        return _no_call("client", "exit of the socket's last holder")
    lg = q.linger_at(t, "client", e.t)
    queued = q.unsent_after(t, "client", e.t)
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    fin = q.first(t, "FIN", "client", after=e.t)
    quick = lg is not None and e.waited < lg.seconds / 2
    delivered = r is not None and r.result == sent and r.errno is None and fin is not None
    ok = _on(lg, zero=False) and quick and queued > 0 and delivered
    return ok, (
        f"{_linger_words(lg)}; the socket's last holder ended ({e.args.get('function')}) "
        + ("within a tenth of the linger time" if lg and e.waited < lg.seconds / 10 else f"after {took(e.waited)}")
        + f", with {queued} bytes still queued; the kernel sent them afterwards: the server read "
        f"{r.result if r else 0} of {sent}, then the FIN: {_yes(fin)}"
    )


def _shutdown_linger(t: Trace) -> tuple[Syscall | None, q.Linger | None, int, Segment | None]:
    sh = next(iter(_shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")), None)
    if sh is None:
        return None, None, 0, None
    fin = q.first(t, "FIN", "client", after=sh.t)
    return sh, q.linger_at(t, "client", sh.t), q.unsent_after(t, "client", sh.t), q.ack_of(t, fin) if fin else None


def _shutdown_words(sh: Syscall, lg: q.Linger | None, queued: int, ack: Segment | None) -> str:
    when = (
        "; the ACK of its FIN arrived only after it had returned"
        if ack is not None and ack.arrived is not None and ack.arrived > q.end(sh)
        else "; its FIN was acknowledged while it ran"
        if ack is not None
        else "; its FIN was never acknowledged"
    )
    how = sh.args.get("how")
    return f"{_linger_words(lg)}; shutdown({how}) {_r(sh)} after {took(sh.waited)}, with {queued} bytes queued{when}"


def _shutdown_lingers(t: Trace) -> tuple[bool, str]:
    sh, lg, queued, ack = _shutdown_linger(t)
    if sh is None:
        return _no_call("client", "shutdown()")
    waited = (ack is not None and ack.arrived is not None and q.end(sh) >= ack.arrived) or (
        lg is not None and sh.waited >= 0.95 * lg.seconds
    )
    return _on(lg, zero=False) and queued > 0 and waited, _shutdown_words(sh, lg, queued, ack)


def _linger_no_effect_on_shutdown(t: Trace) -> tuple[bool, str]:
    sh, lg, queued, ack = _shutdown_linger(t)
    if sh is None:
        return _no_call("client", "shutdown()")
    returned_first = ack is None or ack.arrived is None or q.end(sh) < ack.arrived
    ok = _on(lg, zero=False) and queued > 0 and returned_first and sh.waited < lg.seconds / 2  # type: ignore[union-attr]
    return ok, _shutdown_words(sh, lg, queued, ack)


# ---- section 6: the summary table ---------------------------------------------------------------------------
def _table_close_default(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    lg = q.linger_at(t, "server", c.t)
    unread = q.unread_at(t, "server", c.t)
    after = q.segments(t, "server", after=c)
    ok = (lg is None or not lg.on) and unread > 0 and q.first_flag(after) == "FIN"
    return ok, f"{_linger_words(lg)}; close() with {unread} bytes in the receive buffer sent {q.flags_text(after)}"


def _table_linger_positive(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    ran_out, _ack = _ran_out(t, c, lg)
    queued = q.unsent_after(t, "client", c)
    r = q.call(t, "server", q.READ_TO_EOF)
    ok = ran_out and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, (
        f"{_linger_words(lg)}; {queued} bytes still queued at close(), which blocked {took(c.waited)} "
        + ("(the linger time ran out first) " if ran_out else "")
        + f"and returned {_ret(c)}; the data and FIN were sent all the same (the server read "
        f"{r.result if r else 0} of {q.sent_total(t, 'client')})"
    )


# ---- the ledger ---------------------------------------------------------------------------------
_ORPHAN = (
    "inet_release() (net/ipv4/af_inet.c) passes the linger time to tcp_close(); __tcp_close() (net/ipv4/tcp.c) "
    "queues the FIN (tcp_close_state(), tcp_send_fin()) and then only sleeps in sk_stream_wait_close() for up "
    "to that time. When the time is up it carries on like a default close: close() returns 0 and the socket, "
    "now an orphan, keeps sending its data and FIN. No RST, no EWOULDBLOCK: that is the BSD behaviour UNP "
    "describes."
)
_SHUT_RD = (
    "tcp_shutdown() (net/ipv4/tcp.c) acts only on SEND_SHUTDOWN; for SHUT_RD inet_shutdown() (net/ipv4/af_inet.c) "
    "just sets RCV_SHUTDOWN and wakes readers. Nothing is purged: tcp_recvmsg_locked() still hands out whatever "
    "is queued, and incoming data is still queued by tcp_data_queue(); only a read on an empty queue returns 0 at "
    "once instead of blocking."
)
_S1, _S2, _S3, _S4, _S5, _S6, _S7 = (
    "01-close.ipynb",
    "02-shutdown.ipynb",
    "03-so-linger.ipynb",
    "04-when-close-returns.ipynb",
    "05-kernel-close-path.ipynb",
    "06-shutdown-vs-close.ipynb",
    "07-summary.ipynb",
)
C, S, T, N, W = SYSCALLS, SEGMENTS, STATES, COUNTERS, WIRE


def _claim(
    id: str,
    section: str,
    text: str,
    scenario: str,
    check: Check,
    needs: Iterable[str],
    counter: str,
    chapter: str,
    linux_text: str | None = None,
) -> Claim:
    return Claim(id, section, text, scenario, check, frozenset(needs), counter, chapter, linux_text)


CLAIMS: tuple[Claim, ...] = (
    # 1. close
    _claim("close-returns-at-once", "1",
           "By default close() returns to the caller at once; the kernel then sends whatever is still queued, "
           "followed by the normal FIN exchange.",
           "close-full-window", _close_returns_at_once, (C, S), "linger-timeout", _S1),
    _claim("close-shared-no-fin", "1",
           "When a parent closes a connected socket it shares with a forked child, only the descriptor's reference "
           "count drops; no termination sequence starts.",
           "close-shared", _close_shared_no_fin, (C, S), "shutdown-shared", _S1),
    _claim("close-last-reference-fin", "1",
           "The close() that drops the last reference starts the normal termination: a FIN goes out.",
           "close-shared", _close_last_reference_fin, (C, S), "shutdown-shared", _S1),
    _claim("close-child-keeps-open", "1",
           "If the parent keeps its copy, the child's close() cannot end the connection: the count goes from 2 to 1 "
           "and stays there.",
           "close-shared-child", _close_child_keeps_open, (C, S), "close-shared", _S1),
    _claim("parent-runs-out-of-descriptors", "1",
           "A parent that never closes the descriptors accept() gives it eventually runs out of descriptors.",
           "descriptors-never-closed", _runs_out_of_descriptors, (C,), "descriptors-closed", _S1),
    # 2. shutdown
    _claim("shutdown-ignores-refcount", "2",
           "shutdown() starts TCP's termination whatever the descriptor's reference count.",
           "shutdown-shared", _shutdown_ignores_refcount, (C, S), "close-shared", _S2),
    _claim("shut-wr-half-close", "2",
           "SHUT_WR is a half-close: the data still queued is sent, then a FIN; the peer can still send, and we "
           "can still read.",
           "shutdown-wr-queued", _shut_wr_half_close, (C, S), "close-full-window", _S2),
    _claim("shut-wr-no-more-writes", "2",
           "After SHUT_WR no process can write to the socket any more (a write raises SIGPIPE), whoever holds it.",
           "shutdown-shared", _shut_wr_no_more_writes, (C,), "close-shared-child", _S2),
    _claim("shut-rd-discards-later-data", "2",
           "After SHUT_RD, data arriving from the peer is acknowledged by TCP and then silently discarded.",
           "shutdown-rd", _shut_rd_later_data_discarded, (C, S), "shutdown-wr", _S2, _SHUT_RD),
    _claim("shut-rd-discards-queued-data", "2",
           "SHUT_RD discards the data already waiting in the socket's receive buffer.",
           "shutdown-rd-queued", _shut_rd_queued_discarded, (C, S), "shutdown-rd", _S2, _SHUT_RD),
    _claim("shut-rd-can-still-send", "2",
           "After SHUT_RD the process can still send on the socket; the send buffer is untouched.",
           "shutdown-rd-queued", _shut_rd_can_send, (C,), "shutdown-rdwr", _S2),
    _claim("shut-rdwr-both-halves", "2",
           "SHUT_RDWR shuts both halves (a FIN goes out, reads return end of stream, writes fail) but the "
           "descriptor stays open until close().",
           "shutdown-rdwr", _shut_rdwr, (C, S), "shutdown-wr", _S2),
    _claim("shut-rdwr-data-draws-rst", "2",
           "After SHUT_RDWR, data that still arrives from the peer is answered with an RST, and the peer's next "
           "write fails (EPIPE, SIGPIPE).",
           "shutdown-rdwr-peer-sends", _shut_rdwr_data_rst, (C, S), "shutdown-wr", _S2),
    # 3.1 SO_LINGER
    _claim("linger-zero-rst", "3.1",
           "With SO_LINGER {on, 0}, close() aborts: an RST goes out instead of a FIN and the peer's read fails with "
           "'connection reset by peer'.",
           "linger-zero", _linger_zero_rst, (C, S), "linger-off-ignored", _S3),
    _claim("rst-gets-no-response", "3.1",
           "An RST draws no response at all from the other end: it is not acknowledged.",
           "linger-zero", _rst_no_response, (S,), "close-default", _S3),
    _claim("linger-zero-no-time-wait", "3.1",
           "After an abortive close the closing side skips TIME_WAIT and goes straight to CLOSED.",
           "linger-zero", _linger_zero_no_time_wait, (C, T), "linger-off-ignored", _S3),
    _claim("linger-zero-discards-send-buffer", "3.1",
           "Once the RST is sent, every byte still queued for sending is thrown away.",
           "linger-zero-queued", _linger_zero_discards, (C, S, T), "close-full-window", _S3),
    _claim("linger-off-ignores-linger-time", "3.1",
           "With l_onoff = 0 the value of l_linger is ignored: close() behaves as by default.",
           "linger-off-ignored", _linger_off_ignored, (C, S, T), "linger-zero", _S3),
    _claim("linger-positive-four-way", "3.1",
           "With SO_LINGER {on, n > 0}, if everything is sent and acknowledged in time, the connection closes with "
           "the normal FIN exchange and close() succeeds.",
           "linger-ack", _linger_positive_four_way, (C, S, T), "linger-timeout", _S3),
    _claim("linger-timeout-rst", "3.1",
           "With SO_LINGER {on, n > 0}, if the linger time runs out with data unacknowledged, the connection is "
           "aborted like {on, 0}: RST, and the unsent data is discarded.",
           "linger-timeout", _linger_timeout_rst, (C, S), "linger-ack", _S4, _ORPHAN),
    _claim("active-closer-time-wait", "3.1",
           "The side that sends the first FIN always ends in TIME_WAIT (unless it ends the connection with an RST).",
           "time-wait", _fin_sender_time_wait, (S, T), "silent-peer", _S3),
    _claim("time-wait-answers-resent-fin", "3.1",
           "The side in TIME_WAIT is still there when it is needed: if its last ACK is lost, it acknowledges the "
           "peer's resent FIN again.",
           "last-ack-lost", _time_wait_answers_resent_fin, (S, T, W), "time-wait", _S3),
    _claim("simultaneous-close-both-time-wait", "3.1",
           "When both sides close at once, both sent the first FIN: both pass through CLOSING and both end in "
           "TIME_WAIT.",
           "simultaneous-close", _simultaneous_close, (S, T, W), "time-wait", _S3),
    _claim("old-duplicate-reaches-new-connection", "3.1",
           "Skipping TIME_WAIT has a price: a new incarnation of the connection (same addresses and ports) can "
           "start at once, and an old duplicate segment of the aborted one can reach it.",
           "old-duplicate", _old_duplicate_reaches, (S, T, W), "close-default", _S3),
    _claim("old-duplicate-delivered", "3.1",
           "Such an old duplicate is delivered to the new incarnation as if it were its data.",
           "old-duplicate", _old_duplicate_delivered, (C, S, W), "close-default", _S3,
           "Linux uses TCP timestamps (RFC 7323) by default: the old segment carries an older timestamp than the "
           "new connection has seen, and tcp_validate_incoming() (net/ipv4/tcp_input.c) drops it with "
           "tcp_paws_discard(), counting TcpExt:PAWSEstab, and answers with a duplicate ACK. PAWS is what makes "
           "the risk small on Linux; without timestamps, or once a sequence number happens to fit the new "
           "window, the risk is real."),
    # 3.2 when close returns
    _claim("return-default-before-read", "3.2.1",
           "By default the client's close() returns at once, before the busy server has read the data, before it "
           "is even known that the data arrived.",
           "return-default", _return_default, (C, S, W), "return-linger", _S4),
    _claim("orphan-gives-up-silently", "3.2.1",
           "After a default close() the application never learns what became of its data: if the peer stops "
           "answering, the kernel keeps trying alone, then gives up without telling anyone.",
           "silent-peer", _orphan_gives_up, (C, S, T, W), "close-default", _S4),
    _claim("return-linger-after-ack", "3.2.2",
           "With a positive linger time, close() returns only when the server's TCP has acknowledged the data and "
           "the FIN (about one round trip, plus however long that TCP waits before acknowledging), which says "
           "nothing about whether the server application has read them.",
           "return-linger", _returns_after_ack, (C, S, W), "return-default", _S4),
    _claim("fin-ack-delayed", "3.2.2",
           "(Linux) Once data has flowed, the receiving TCP does not acknowledge a FIN at once: it waits for its "
           "delayed-ACK timer (at least 40 ms), so an ACK-bound close() waits a round trip plus that.",
           "fin-delayed-ack", _fin_ack_delayed, (S,), "time-wait", _S4),
    _claim("linger-timeout-ewouldblock", "3.2.2",
           "If the linger time runs out before the data and FIN are acknowledged, close() returns -1 with errno "
           "EWOULDBLOCK.",
           "linger-timeout", _linger_timeout_ewouldblock, (C, S), "linger-ack", _S4, _ORPHAN),
    _claim("linger-nonblocking-ewouldblock", "3.2.2",
           "(UNP) On a non-blocking socket with a positive linger time, close() does not wait: it returns "
           "EWOULDBLOCK at once if data is still unacknowledged.",
           "linger-nonblocking", _linger_nonblocking, (C, S), "linger-timeout", _S4,
           "inet_release() (net/ipv4/af_inet.c) takes the linger time from SO_LINGER alone and never looks at "
           "O_NONBLOCK, so a non-blocking close() sleeps in sk_stream_wait_close() just like a blocking one, then "
           "returns 0."),
    _claim("return-shutdown-read", "3.2.3",
           "shutdown(SHUT_WR) followed by read() returns only when the peer application has read the data and "
           "closed: the read sees the peer's FIN.",
           "return-shutdown-read", _shutdown_read_waits, (C, S), "return-linger", _S4),
    # 4.1 the kernel's close path
    _claim("close-before-fin-acked", "4.1",
           "A successful close() only means the FIN is queued; whether the peer received it is unknown.",
           "close-full-window", _close_before_ack, (C, S), "linger-ack", _S5),
    _claim("fin-wait-1-before-data-leaves", "4.1",
           "close() moves the socket to FIN_WAIT_1 first; the queued data is sent after that, and the FIN last.",
           "close-full-window", _fin_wait_1_while_queued, (C, S, T), "close-default", _S5),
    _claim("close-success-fin-may-be-lost", "4.1",
           "A successful close() only hands the FIN to the kernel: if it is lost, the kernel resends it, and the "
           "socket stays in FIN_WAIT_1 until it is acknowledged.",
           "fin-lost", _fin_lost, (C, S, T, W), "close-default", _S3),
    _claim("close-in-syn-sent-sends-nothing", "4.1",
           "(Linux) close() while connect() is still in SYN_SENT sends nothing, neither FIN nor RST: the socket just "
           "goes.",
           "close-syn-sent", _close_in_syn_sent, (C, S, T, W), "close-default", _S5),
    _claim("listener-close-resets-queue", "4.1",
           "(Linux) Closing a listening socket resets the connections still waiting in its accept queue.",
           "listener-close-queued", _listener_close_resets, (C, S), "close-unread", _S5),
    _claim("reset-before-accept-still-accepted", "4.1",
           "(Linux) A connection reset before accept() is still handed out by accept(); its first read reports the "
           "reset.",
           "rst-before-accept", _reset_before_accept, (C, S), "listener-close-queued", _S5),
    _claim("close-unread-rst", "4.1",
           "Closing with unread data in the receive buffer skips the FIN exchange: the kernel sends an RST and the "
           "peer reads 'connection reset by peer' (RFC 1122 4.2.2.13, RFC 2525 2.17).",
           "close-unread", _close_unread_rst, (C, S), "close-default", _S5),
    _claim("close-unread-peer-epoll", "4.1",
           "The peer of such a reset sees ECONNRESET, and epoll reports EPOLLHUP, EPOLLRDHUP and EPOLLIN at once.",
           "close-unread-epoll", _close_unread_epoll, (C, S), "close-shared", _S5),
    _claim("close-unread-before-linger-zero", "4.1",
           "(Linux) With unread data and SO_LINGER {on, 0} both present, the unread-data abort is the one taken.",
           "close-unread-linger-zero", _abort_path_order, (C, S, N), "linger-zero", _S5),
    _claim("fin-epoll-in-rdhup", "4.1",
           "Receiving a FIN sets RCV_SHUTDOWN: epoll reports EPOLLIN and EPOLLRDHUP.",
           "write-after-peer-close", _fin_epoll, (C, S), "close-unread-epoll", _S5),
    _claim("fin-epoll-level-triggered", "4.1",
           "Level-triggered epoll keeps reporting EPOLLIN and EPOLLRDHUP after a FIN, every time it is asked.",
           "epoll-after-fin", _epoll_level_triggered, (C, S), "write-after-peer-close", _S5),
    _claim("write-after-fin-draws-rst", "4.1",
           "Writing to a peer that has closed still succeeds once; the peer, in FIN_WAIT_2, answers the data with an "
           "RST.",
           "write-after-peer-close", _write_after_fin, (C, S, T), "shutdown-wr", _S5),
    _claim("epoll-err-hup-after-rst", "4.1",
           "After that RST, epoll reports EPOLLERR and EPOLLHUP.",
           "write-after-peer-close", _epoll_after_rst, (C, S), "close-shared", _S5),
    _claim("epoll-err-carries-so-error", "4.1",
           "EPOLLERR reports a pending socket error (here 'Broken pipe'): getsockopt(SO_ERROR) reads it, and "
           "reading it clears it.",
           "epoll-after-fin", _epoll_err_so_error, (C,), "write-after-peer-close", _S5),
    _claim("rst-in-close-wait-epipe", "4.1",
           "(Linux) An RST that arrives in CLOSE_WAIT leaves the error EPIPE, not ECONNRESET: the next write fails "
           "with EPIPE.",
           "write-after-peer-close", _rst_in_close_wait, (C, S, T), "send-after-rst-established", _S5),
    _claim("second-write-sigpipe", "4.1",
           "The write after the RST raises SIGPIPE (EPIPE).",
           "write-after-peer-close", _second_write_sigpipe, (C, S), "send-after-rst-established", _S5),
    _claim("peer-cannot-tell-close-from-shutdown", "4.1",
           "The peer cannot tell a close() from a shutdown(SHUT_WR): both arrive as a FIN.",
           "close-vs-shutdown-peer", _peer_cannot_tell, (C, S), "close-vs-abort-peer", _S5),
    # 4.2 shutdown
    _claim("shut-wr-unread-no-rst", "4.2",
           "Unlike close(), shutdown(SHUT_WR) with unread data in the receive buffer sends a FIN, not an RST.",
           "shutdown-wr-unread", _shut_wr_unread_no_rst, (C, S), "close-unread", _S5),
    _claim("shut-rd-read-returns-zero", "4.2",
           "After SHUT_RD a read on an empty buffer returns 0 immediately, even on a blocking socket.",
           "shutdown-rd", _shut_rd_read_returns_zero, (C, S), "shutdown-wr", _S2),
    _claim("shut-rd-still-readable", "4.2",
           "(Linux, as the document's section 4.2 says) SHUT_RD alone changes nothing for data: what the peer "
           "sends afterwards can still be read.",
           "shutdown-rd", _shut_rd_still_readable, (C, S), "shutdown-rdwr-peer-sends", _S2),
    _claim("shut-wr-then-rd-rst", "4.2",
           "After SHUT_WR and then SHUT_RD the socket is fully shut: data from the peer draws an RST, and the peer's "
           "next write raises SIGPIPE.",
           "shutdown-wr-rd", _shut_wr_then_rd_rst, (C, S), "shutdown-wr", _S2),
    # 5. shutdown vs close
    _claim("million-bytes-lost", "5",
           "Program A writes 1,000,000 bytes and closes without reading B's greeting: B may get fewer bytes or an "
           "error, because closing with unread data sends an RST (RFC 1122 4.2.2.13).",
           "million-bytes", _million_lost, (C, S), "million-bytes-fixed", _S6),
    _claim("million-bytes-linger-no-help", "5",
           "Setting SO_LINGER does not save the million bytes: with the greeting unread, close() still resets the "
           "connection.",
           "million-bytes-linger", _million_linger, (C, S), "million-bytes-fixed", _S6),
    _claim("million-bytes-read-linger-not-enough", "5",
           "Reading the greeting first and lingering is still not enough: close() can succeed while B's application "
           "has not read the data.",
           "million-bytes-read-linger", _million_read_linger, (C, S), "million-bytes-fixed", _S6),
    _claim("million-bytes-fixed", "5",
           "send(), shutdown(SHUT_WR), read() until 0, then close(): every byte arrives.",
           "million-bytes-fixed", _million_fixed, (C, S), "million-bytes", _S6),
    _claim("exit-lingers-in-background", "5",
           "(socket(7)) When the socket is closed as part of exit(), it always lingers in the background: the exit "
           "does not wait, and the kernel still sends the data.",
           "exit-with-linger", _exit_lingers_in_background, (C, S), "close-in-child-with-linger", _S6),
    _claim("shutdown-lingers", "5",
           "(socket(7), as quoted) With SO_LINGER on, shutdown() too does not return until the queued data is sent "
           "or the linger time runs out.",
           "linger-shutdown", _shutdown_lingers, (C, S), "linger-timeout", _S6,
           "tcp_shutdown() (net/ipv4/tcp.c) only moves the state and calls tcp_send_fin(); it never waits. Only "
           "close() lingers, in __tcp_close() via sk_stream_wait_close()."),
    _claim("linger-no-effect-on-shutdown", "5",
           "SO_LINGER has no effect on shutdown().",
           "linger-shutdown", _linger_no_effect_on_shutdown, (C, S), "linger-timeout", _S6),
    # 6. the summary table (UNP's BSD rows)
    _claim("table-close-default-fin", "6",
           "close() with l_onoff = 0: the send buffer is sent, then the normal FIN exchange; whatever is in the "
           "receive buffer is discarded.",
           "close-unread", _table_close_default, (C, S), "close-default", _S7,
           "__tcp_close() (net/ipv4/tcp.c) counts the unread bytes it purges; if there were any it sends an RST "
           "with tcp_send_active_reset() instead of a FIN (counter TCPAbortOnClose), as RFC 2525 2.17 recommends. "
           "With an empty receive buffer the row holds (see close-returns-at-once)."),
    _claim("table-linger-zero", "6",
           "close() with l_onoff = 1, l_linger = 0: RST to the peer, state CLOSED with no TIME_WAIT, the send buffer "
           "discarded.",
           "linger-zero-queued", _linger_zero_discards, (C, S, T), "close-full-window", _S7),
    _claim("table-linger-positive", "6",
           "close() with l_onoff = 1, l_linger > 0: the send buffer is sent, then FIN; if the linger time runs out "
           "before the connection is closed, close() returns EWOULDBLOCK.",
           "linger-timeout", _table_linger_positive, (C, S), "linger-ack", _S7, _ORPHAN),
)  # fmt: skip


# ---- running and reporting ----------------------------------------------------------------------
def get(claim_id: str) -> Claim:
    """The claim called `claim_id` (a KeyError lists the ids)."""
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"no claim {claim_id!r}; the ids are: {', '.join(c.id for c in CLAIMS)}")


def by_section(section: str, claims: Iterable[Claim] = CLAIMS) -> list[Claim]:
    """Claims of one section of the document; '3' also gives '3.1', '3.2.2' …"""
    return [c for c in claims if c.section == section or c.section.startswith(section + ".")]


def judge(claim: Claim | str, trace: Trace) -> Verdict:
    """Judge one claim on a trace you already have (a notebook runs the scenario and then asks).

    If the trace's mode did not observe what the claim needs, the verdict says it cannot be judged
    and names what is missing, rather than blaming the kernel."""
    if isinstance(claim, str):
        claim = get(claim)
    from closekit import premise

    recorded = bool(trace.recorded)
    missing = claim.missing_in(trace)
    if missing:
        return Verdict(claim, None, text("verdict.and").join(_need_words(n) for n in missing), trace.kernel,
                       trace.mode, recorded)  # fmt: skip
    premises = tuple(premise.check(trace))
    broken = [r for r in premises if r.holds is False]
    if broken:
        evidence = "; ".join(f"{r.premise.text}: no ({r.evidence})" for r in broken)
        return Verdict(claim, None, evidence, trace.kernel, trace.mode, recorded, PREMISE, premises)
    holds, evidence = claim.check(trace)
    why = NOT_EVIDENCE if holds is None else ""
    return Verdict(claim, None if holds is None else bool(holds), evidence, trace.kernel, trace.mode, recorded, why,
                   premises)  # fmt: skip


def not_run(claim: Claim, error: Exception) -> Verdict:
    """The verdict of a claim whose scenario could not run here: no evidence, and the error says why
    (with what the experiment needed, where it declares premises)."""
    from closekit import premise

    needs = [p.text for p in premise.declared(claim.scenario)]
    said = str(error) + (f" (the experiment needs: {'; '.join(needs)})" if needs else "")
    return Verdict(claim, None, said, os.uname().release, "", False, NOT_RUN)


def _need_words(need: str) -> str:
    """What a need is, in the reader's language."""
    if need == SEGMENTS:
        return text("verdict.need_segments")
    if need == COUNTERS:
        return text("verdict.need_counters")
    if need == STATES:
        return text("verdict.need_states")
    if need == WIRE:
        return text("verdict.need_wire")
    return text("verdict.need_syscalls")


def verify(claims: Iterable[Claim] = CLAIMS, run: Callable[[str], Trace] | None = None) -> list[Verdict]:
    """Run each claim's scenario once (claims sharing a scenario share its trace) and judge every claim;
    a scenario that fails gives its claims the verdict "could not run here", naming the error."""
    if run is None:
        import closekit

        run = closekit.run
    from closekit.errors import CloseKitError

    traces: dict[str, Trace | CloseKitError] = {}
    verdicts = []
    for claim in claims:
        if claim.scenario not in traces:
            try:
                traces[claim.scenario] = run(claim.scenario)
            except CloseKitError as e:  # this scenario's claims say so; the others are still judged
                traces[claim.scenario] = e
        got = traces[claim.scenario]
        verdicts.append(not_run(claim, got) if isinstance(got, CloseKitError) else judge(claim, got))
    return verdicts


def summary(verdicts: Sequence[Verdict]) -> str:
    """'63 claims: 54 hold, 9 differ on Linux 6.18' (and how many do not hold, cannot be judged here,
    or were judged from recordings)."""
    statuses = ("holds", "differs", "does not hold", "cannot be judged", *_UNJUDGED.values())
    count = {s: sum(v.status == s for v in verdicts) for s in statuses}
    where = verdicts[0].linux if verdicts else text("verdict.this_kernel")
    line = text("verdict.summary", total=len(verdicts), holds=count["holds"], differs=count["differs"], kernel=where)
    if count["does not hold"]:
        line += text("verdict.summary_not_hold", count=count["does not hold"])
    if count["cannot be judged"]:
        line += text("verdict.summary_not_judged", count=count["cannot be judged"], mode=_mode(verdicts))
    if count["could not run here"]:
        line += text("verdict.summary_not_run", count=count["could not run here"])
    if count["premise did not hold"]:
        line += text("verdict.summary_premise", count=count["premise did not hold"])
    if count["not evidence"]:
        line += text("verdict.summary_not_evidence", count=count["not evidence"])
    recorded = sum(v.recorded for v in verdicts)
    if recorded:
        line += text("verdict.summary_recorded", count=recorded)
    return line


def table(verdicts: Sequence[Verdict], with_kernel: bool = True, width: int = 100) -> str:
    """A plain-text table: section, claim id, outcome, evidence; footnotes say what Linux does instead."""
    import textwrap

    rows = [(v.claim.section, v.claim.id, v.outcome(with_kernel)) for v in verdicts]
    w_sec = max([3, *(len(r[0]) for r in rows)])
    w_id = max([5, *(len(r[1]) for r in rows)])
    lines = []
    if with_kernel and verdicts:
        lines.append(text("verdict.title", kernel=verdicts[0].linux, mode=_mode(verdicts)))
    lines.append(f"{text('verdict.section'):<{w_sec}}  {text('verdict.claim'):<{w_id}}  {text('verdict.verdict')}")
    lines.append("-" * (w_sec + w_id + 17))
    notes = []
    for v, (sec, cid, outcome) in zip(verdicts, rows, strict=True):
        lines.append(f"{sec:<{w_sec}}  {cid:<{w_id}}  {outcome}")
        if v.judged or v.why:
            for part in textwrap.wrap(v.evidence, width - w_sec - 4):
                lines.append(f"{'':<{w_sec}}    {part}")
        if v.holds is False and v.claim.linux_text:
            notes.append(v)
    if verdicts:
        lines.append("")
        lines.append(summary(verdicts))
    if notes:
        lines.append("")
        lines.append(text("verdict.linux_differs"))
        for v in notes:
            says, linux = claim_words(v.claim)
            lines.append(f"- {v.claim.id}: {says}")
            lines.extend("    " + part for part in textwrap.wrap(str(linux), width - 4))
    return "\n".join(lines)


_COLOURS = {
    "holds": "#2e7d32",
    "differs": "#c62828",
    "does not hold": "#c62828",
    "cannot be judged": "#8a6d00",
    **dict.fromkeys(_UNJUDGED.values(), "#8a6d00"),
}


def verdicts_html(verdicts: Sequence[Verdict], with_kernel: bool = True) -> str:
    """An HTML table for a notebook: section, the document's words, verdict on this kernel, evidence."""
    esc = html.escape
    rows = []
    for v in verdicts:
        colour = _COLOURS[v.status]
        says, instead = claim_words(v.claim)
        linux = f"<br><em>{text('verdict.linux')}</em> {esc(instead)}" if instead and v.holds is False else ""
        evidence = esc(v.evidence) if v.judged or v.why else ""
        rows.append(
            f"<tr><td>{esc(v.claim.section)}</td><td>{esc(says)}</td>"
            f'<td style="color:{colour};font-weight:bold">{esc(v.outcome(with_kernel))}</td>'
            f"<td>{evidence}{linux}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("§", text("verdict.says"), text("verdict.verdict"), text("verdict.evidence"))
    )
    return f'<table class="closekit-claims"><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table>"


def _mode(verdicts: Sequence[Verdict]) -> str:
    """The mode the experiments ran in (a scenario that could not run has none)."""
    return next((v.mode for v in verdicts if v.mode), "")


def to_json(verdicts: Sequence[Verdict], indent: int | None = 2) -> str:
    """The verdicts as JSON (kernel and mode included: a record of what ran where)."""
    return json.dumps(
        {
            "kernel": verdicts[0].kernel if verdicts else "",
            "mode": _mode(verdicts),
            "holds": sum(v.holds is True for v in verdicts),
            "differs": sum(v.status == "differs" for v in verdicts),
            "cannot_be_judged": sum(v.holds is None for v in verdicts),
            "could_not_run": sum(v.why == NOT_RUN for v in verdicts),
            "premise_failed": sum(v.why == PREMISE for v in verdicts),
            "not_evidence": sum(v.why == NOT_EVIDENCE for v in verdicts),
            "total": len(verdicts),
            "verdicts": [v.to_dict() for v in verdicts],
        },
        indent=indent,
        ensure_ascii=False,
    )
