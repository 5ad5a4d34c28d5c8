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

from closekit import lang
from closekit import query as q
from closekit.lang import claim_words, text, word
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

    def line(self, with_kernel: bool = True, width: int | None = None) -> str:
        """One printable line: section, id, outcome (naming the kernel), evidence. With `width`, wrapped
        to that many columns with an indent (a notebook's printed output does not wrap by itself)."""
        said = f"[{self.claim.section}] {self.claim.id}: {self.outcome(with_kernel)}"
        if self.holds is not None or self.why:
            said += f" — {self.evidence}"
        return said if width is None else "\n    ".join(lang.wrap(said, width - 4))

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
    return text("ev.yes") if b else text("ev.no")


def _r(c: Syscall | None) -> str:
    return q.result_text(c)


def _ret(c: Syscall) -> str:
    """What a call returned, as a value: '0', '-1 with EWOULDBLOCK'."""
    return text("ev.returned_error", errno=c.errno) if c.errno else str(c.result)


def _bytes(n: int) -> str:
    return text("ev.one_byte") if n == 1 else text("ev.bytes", count=n)


def _side(name: str) -> str:
    return word("side", name)


def _bits(c: Syscall | None) -> str:
    return "|".join(sorted(q.epoll_bits(c), key=_BIT_ORDER.index)) if q.epoll_bits(c) else text("ev.no_bits")


_BIT_ORDER = ("EPOLLIN", "EPOLLPRI", "EPOLLOUT", "EPOLLRDHUP", "EPOLLERR", "EPOLLHUP")


def _linger_words(lg: q.Linger | None) -> str:
    return text("ev.no_linger") if lg is None else f"SO_LINGER {lg}"


def _on(lg: q.Linger | None, zero: bool) -> bool:
    """SO_LINGER was on with l_linger 0 (zero=True) or with a positive time (zero=False)."""
    return lg is not None and lg.on and ((lg.seconds == 0) == zero)


def _path(states: Sequence[str]) -> str:
    return " → ".join(states) or text("ev.no_states")


def _states_after(t: Trace, side: str, when: float, conn: int = 1) -> list[str]:
    return [e.state for e in q.state_changes(t, side, conn) if e.t >= when]


def _fin_after_all_data(t: Trace, src: str, fin: Segment | None) -> bool:
    """The FIN sits after every byte `src` sent on its connection (it may carry the last of them)."""
    if fin is None:
        return False
    data_end = max((s.seq + s.len for s in q.segments(t, src, data=True, conn=fin.conn)), default=1)
    return fin.seq + fin.len >= data_end


def _acked_by(t: Trace, fin: Segment | None, when: float) -> bool:
    """Had the ACK of `fin` arrived back by `when`?"""
    ack = q.ack_of(t, fin, resent=True) if fin is not None else None
    return ack is not None and ack.arrived is not None and ack.arrived <= when


def _ran_out(t: Trace, c: Syscall, lg: q.Linger | None) -> bool:
    """Did close() `c` sleep out the whole linger time with its FIN unacknowledged?"""
    if not _on(lg, zero=False) or not q.slept(c):
        return False
    fin = q.first(t, "FIN", t.endpoint_of(c.side), after=c.t, conn=q.conn_of(t, c))
    return not _acked_by(t, fin, q.end(c)) and c.waited >= 0.95 * lg.seconds  # type: ignore[union-attr]


def _how_long(c: Syscall) -> str:
    """'at once' for a call that never went to sleep, else 'after blocking 1.02 s'."""
    return text("ev.blocked_for", took=took(c.waited)) if q.slept(c) else text("ev.at_once")


def _times(n: int) -> str:
    return text("ev.once") if n == 1 else text("ev.times", count=n)


def _no_call(side: str, what: str) -> tuple[bool, str]:
    return False, text("ev.no_call", side=_side(side), what=what)


def _counted(t: Trace) -> bool:
    return COUNTERS in observed(t)


def _aborts(t: Trace) -> str:
    """'; abort counters: TCPAbortOnData +1' where the mode records counters, else ''."""
    if not _counted(t):
        return ""
    moved = q.moved(t)
    return text("ev.aborts", counters=", ".join(f"{k} +{v}" for k, v in moved.items()) or text("ev.none_moved"))


def _abort_by(t: Trace, name: str) -> bool:
    """The kernel counted this abort, and no other kind (True where the mode records no counters:
    the other witnesses decide alone)."""
    if not _counted(t):
        return True
    moved = q.moved(t, "TCPAbortOnClose", "TCPAbortOnData")
    return set(moved) == {name}


def _active_rst(t: Trace, c: Syscall) -> Segment | None:
    """The RST call `c` itself sent (an active reset, R.: the kernel ended the connection in the call)."""
    return next((s for s in q.sent_by_call(t, c, "RST") if q.reset_kind(s) == "active"), None)


def _recv_after(t: Trace, side: str, seg: Segment | None) -> Syscall | None:
    """`side`'s first recv() that returned after `seg` arrived (one blocked across it included)."""
    if seg is None or seg.arrived is None:
        return None
    return next((x for x in q.calls(t, side, "recv") if q.end(x) > seg.arrived), None)


# ---- section 1: close() ---------------------------------------------------------------------------
def _close_returns_at_once(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    queued = q.unsent_after(t, "client", c)
    fin = q.first(t, "FIN", "client", after=c, conn=q.conn_of(t, c))
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    delivered = r is not None and r.result == sent and r.errno is None
    default = lg is None or not lg.on
    ok = c.result == 0 and default and not q.slept(c) and queued > 0 and _fin_after_all_data(t, "client", fin)
    return ok and delivered, text(
        "ev.close_returns_at_once",
        linger=_linger_words(lg),
        result=_r(c),
        how=_how_long(c),
        queued=queued,
        fin_last=_yes(_fin_after_all_data(t, "client", fin)),
        read=r.result if r else 0,
        sent=sent,
        end=r.errno if r is not None and r.errno else text("ev.eof"),
    )


def _fork(t: Trace, side: str) -> tuple[Syscall | None, str | None]:
    f = q.call(t, side, "fork")
    return f, (f.result if f is not None and isinstance(f.result, str) else None)


def _ends(t: Trace, c: Syscall) -> list[Segment]:
    """The FIN or RST call `c` sent on its connection."""
    return [s for s in q.sent_by_call(t, c) if s.has("FIN") or s.has("RST")]


def _close_shared_no_fin(t: Trace) -> tuple[bool, str]:
    f, child = _fork(t, "server")
    if f is None or child is None:
        return False, text("ev.no_fork")
    parent, child_close = q.call(t, "server", "close"), q.call(t, child, "close")
    if parent is None or child_close is None or parent.t > child_close.t:
        return False, text("ev.parent_not_first")
    conn = q.conn_of(t, parent)
    open_then = q.state_before(t, "server", parent.t, conn) == "ESTABLISHED"
    sent = [
        s for s in q.segments(t, "server", after=parent, before=child_close, conn=conn) if s.has("FIN") or s.has("RST")
    ]
    moved = [e.state for e in q.state_changes(t, "server", conn) if parent.t <= e.t < child_close.t]
    watched = [e for e in q.calls(t, "client", "epoll_wait") if parent.t < e.t < child_close.t]
    quiet = not sent and not moved and all("EPOLLRDHUP" not in q.epoll_bits(e) for e in watched)
    return parent.result == 0 and open_then and quiet, text(
        "ev.close_shared_no_fin",
        state=q.state_before(t, "server", parent.t, conn) or "?",
        result=_r(parent),
        sent=q.flags_text(sent) if sent else text("ev.no_fin_no_rst"),
        states=_path(moved) if moved else text("ev.stayed", state=q.state_before(t, "server", parent.t, conn) or "?"),
        epoll=", ".join(_bits(e) for e in watched) if watched else text("ev.not_asked"),
    )


def _close_last_reference_fin(t: Trace) -> tuple[bool, str]:
    _f, child = _fork(t, "server")
    holders = q.calls_on(t, "server", "close")
    if child is None or len(holders) < 2:
        return False, text("ev.no_fork")
    last = max(holders, key=lambda c: c.t)
    fin = next((s for s in q.sent_by_call(t, last, "FIN")), None)
    earlier = [s for c in holders if c is not last for s in _ends(t, c)]
    r = _recv_after(t, "client", fin)
    ok = fin is not None and not earlier and r is not None and r.result == 0 and r.errno is None
    return ok, text(
        "ev.close_last_reference_fin",
        count=len(holders),
        earlier=q.flags_text(earlier),
        last=last.side,
        fin=_yes(fin),
        recv=_r(r),
    )


def _close_child_keeps_open(t: Trace) -> tuple[bool, str]:
    _f, child = _fork(t, "server")
    if child is None:
        return False, text("ev.no_fork")
    child_close, parent_close = q.call(t, child, "close"), q.call(t, "server", "close")
    if child_close is None or parent_close is None or child_close.t > parent_close.t:
        return False, text("ev.child_not_first")
    conn = q.conn_of(t, parent_close)
    later = q.segments(t, "server", data=True, after=child_close, before=parent_close, conn=conn)
    got = sum(q.read_by(t, "client", child_close.t).values())
    fin = next(iter(q.sent_by_call(t, parent_close, "FIN")), None)
    ok = not _ends(t, child_close) and bool(later) and got > 0 and fin is not None
    return ok, text(
        "ev.close_child_keeps_open",
        child_sent=q.flags_text(_ends(t, child_close)),
        sent=_bytes(sum(s.len for s in later)),
        got=got,
        fin=_yes(fin),
    )


def _runs_out_of_descriptors(t: Trace) -> tuple[bool, str]:
    held = q.call(t, "server", "call")
    if held is None:
        return _no_call("server", "call")
    refused = next((c for c in q.calls_after(t, "server", held) if c.errno == "EMFILE"), None)
    closed = next(iter(q.calls_after(t, "server", held, "close")), None)
    if held.errno != "EMFILE" or refused is None or closed is None:
        return False, text("ev.never_refused", function=held.args.get("function", "call"), result=_r(held))
    ended = [e.state for e in q.state_changes(t, "client", q.conn_of(t, closed)) if e.t >= closed.t]
    ok = closed.result == 0 and "CLOSE_WAIT" not in ended
    return ok, text(
        "ev.runs_out_of_descriptors",
        count=held.result,
        errno=held.errno,
        call=refused.call,
        refused=_r(refused),
        closed=_r(closed),
        client=text("ev.went", path=_path(ended)) if ended else text("ev.client_unmoved"),
        theirs=_yes(ok),
    )


# ---- section 2: shutdown() -----------------------------------------------------------------------
def _shutdowns(t: Trace, endpoint: str, *hows: str) -> list[Syscall]:
    return [c for c in q.calls_on(t, endpoint, "shutdown") if c.args.get("how") in hows]


def _shutdown_ignores_refcount(t: Trace) -> tuple[bool | None, str]:
    _f, child = _fork(t, "server")
    shs = _shutdowns(t, "server", "SHUT_WR", "SHUT_RDWR")
    if child is None or not shs:
        return False, text("ev.no_shared_shutdown")
    sh = shs[0]
    let_go = [c for c in q.calls_on(t, "server") if c.call in ("close", "exit") and c.t < sh.t]
    fin = next(iter(q.sent_by_call(t, sh, "FIN")), None)
    r = _recv_after(t, "client", fin)
    if fin is not None and not any(q.end(c) > sh.t for c in q.calls(t, "client", "recv")):
        return None, text("ev.no_recv_after_shutdown", side=sh.side)  # the run did not ask
    ok = not let_go and fin is not None and r is not None and r.result == 0
    holders = text("ev.both_held") if not let_go else text("ev.let_go", who=", ".join(c.side for c in let_go))
    return ok, text(
        "ev.shutdown_ignores_refcount", holders=holders, side=sh.side, how=sh.args.get("how"), fin=_yes(fin), recv=_r(r)
    )


def _shut_wr_half_close(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_WR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_WR)")
    sh = shs[0]
    queued = q.unsent_after(t, "client", sh)
    fin = q.first(t, "FIN", "client", after=sh, conn=q.conn_of(t, sh))
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
    return ok, text(
        "ev.shut_wr_half_close",
        queued=queued,
        fin_last=_yes(_fin_after_all_data(t, "client", fin)),
        read=r.result if r else 0,
        sent=sent,
        back=_r(back),
        got=_r(got),
    )


def _shut_wr_no_more_writes(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "server", "SHUT_WR", "SHUT_RDWR") or _shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")
    if not shs:
        return False, text("ev.no_shut_wr")
    sh = shs[0]
    endpoint = t.endpoint_of(sh.side)
    w = next((c for c in q.calls_on(t, endpoint, "send") if c.t >= q.end(sh) and c.side != sh.side), None)
    if w is None:
        return False, text("ev.no_other_writer", side=sh.side)
    rst = q.first(t, "RST", q.peer(endpoint), before=w.t, arrived=True)
    sig = q.signals_of(t, w)
    ok = w.errno == "EPIPE" and "SIGPIPE" in sig and rst is None
    return ok, text(
        "ev.shut_wr_no_more_writes",
        side=sh.side,
        writer=w.side,
        result=_r(w),
        signal=", ".join(sig) or text("ev.no_signal"),
        rst=_yes(rst),
    )


def _read_shut(t: Trace) -> Syscall | None:
    return next(iter(_shutdowns(t, "client", "SHUT_RD", "SHUT_RDWR")), None)


def _readers(t: Trace, after: float, before: float | None = None) -> str:
    got = q.read_by(t, "client", after, before)
    return ", ".join(f"{side} {n}" for side, n in got.items()) or text("ev.nobody")


def _shut_rd_later_data_discarded(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    data = next(iter(q.segments(t, "server", data=True, after=sh, conn=q.conn_of(t, sh))), None)
    if data is None or data.arrived is None:
        return False, text("ev.nothing_after_shut_rd")
    ack = q.ack_of(t, data)
    tried = next((c for c in q.calls_on(t, "client", "recv") if q.end(c) > data.arrived), None)
    got = sum(q.read_by(t, "client", data.arrived).values())
    ok = ack is not None and tried is not None and got == 0
    return ok, text(
        "ev.shut_rd_later_data",
        count=data.len,
        acked=_yes(ack),
        readers=_readers(t, data.arrived),
        first=tried.side if tried else "?",
        result=_r(tried),
    )


def _shut_rd_queued_discarded(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    queued = q.unread_at(t, "client", sh.t, q.conn_of(t, sh))
    more = next(iter(q.segments(t, "server", data=True, after=sh, arrived=True)), None)
    cut = more.arrived if more is not None else None
    tried = [c for c in q.calls_on(t, "client", "recv") if c.t >= q.end(sh) and (cut is None or q.end(c) <= cut)]
    got = sum(q.read_by(t, "client", q.end(sh), cut).values())
    ok = queued > 0 and bool(tried) and got == 0
    if not queued:
        return False, text("ev.nothing_queued_at_shut_rd")
    return ok, text(
        "ev.shut_rd_queued", queued=queued, readers=_readers(t, q.end(sh), cut), result=_r(tried[0] if tried else None)
    )


def _shut_rd_can_send(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    s = next(iter(q.calls_after(t, "client", sh, "send")), None)
    r = next((c for c in q.calls(t, "server", "recv") if s is not None and q.end(c) > s.t), None)
    ok = s is not None and s.errno is None and r is not None and r.result == s.result
    return ok, text("ev.shut_rd_can_send", how=sh.args.get("how"), send=_r(s), recv=_r(r))


def _shut_rd_read_returns_zero(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    r = next(iter(q.calls_after(t, sh.side, sh, "recv")), None)
    if r is None:
        return _no_call("client", "recv() after SHUT_RD")
    blocking = not any(c.args.get("flags") == "O_NONBLOCK" for c in q.calls_on(t, "client", "fcntl") if c.t < r.t)
    empty = q.unread_at(t, "client", r.t, q.conn_of(t, r)) == 0
    ok = blocking and empty and r.result == 0 and r.errno is None and not q.slept(r)
    return ok, text(
        "ev.shut_rd_read_returns_zero",
        blocking=text("ev.blocking") if blocking else text("ev.non_blocking"),
        queued=text("ev.nothing") if empty else text("ev.data"),
        result=_r(r),
        how=_how_long(r),
    )


def _shut_rd_still_readable(t: Trace) -> tuple[bool, str]:
    sh = _read_shut(t)
    if sh is None:
        return _no_call("client", "shutdown(SHUT_RD)")
    data = next(iter(q.segments(t, "server", data=True, after=sh, conn=q.conn_of(t, sh))), None)
    if data is None or data.arrived is None:
        return False, text("ev.nothing_after_shut_rd")
    got = sum(q.read_by(t, "client", data.arrived).values())
    return got >= data.len, text("ev.shut_rd_still_readable", count=data.len, readers=_readers(t, data.arrived))


def _data_after_read_shut_draws_rst(t: Trace, hows: tuple[str, ...]) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_RD", "SHUT_RDWR")
    wr = _shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")
    done = [c.args.get("how") for c in q.calls_on(t, "client", "shutdown")]
    if not shs or not wr or tuple(done) != hows:
        return False, text("ev.shutdowns_were", done=", ".join(done) or text("ev.none"), wanted=" → ".join(hows))
    last = max(shs[0].t, wr[0].t)
    data = next(iter(q.segments(t, "server", data=True, after=last, conn=q.conn_of(t, shs[0]))), None)
    if data is None or data.arrived is None:
        return False, text("ev.no_data_after_shut")
    rst = q.first(t, "RST", "client", after=data.arrived, conn=data.conn)
    answering = rst is not None and q.answered(t, rst) is data
    nxt = next(
        (c for c in q.calls(t, "server", "send") if rst is not None and rst.arrived and c.t >= rst.arrived), None
    )
    sig = q.signals_of(t, nxt)
    ok = answering and _abort_by(t, "TCPAbortOnData") and nxt is not None and nxt.errno == "EPIPE" and "SIGPIPE" in sig
    return ok, text(
        "ev.data_after_read_shut",
        count=data.len,
        hows=" + ".join(hows),
        rst=_yes(answering),
        aborts=_aborts(t),
        send=_r(nxt),
        signal=", ".join(sig) or text("ev.no_signal"),
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
    fin = next(iter(q.sent_by_call(t, sh, "FIN")), None)
    r = next(iter(q.calls_after(t, sh.side, sh, "recv")), None)
    s = next(iter(q.calls_after(t, sh.side, sh, "send")), None)
    c = next(iter(q.calls_after(t, sh.side, sh, "close")), None)
    ok = (
        fin is not None
        and r is not None
        and r.result == 0
        and not q.slept(r)
        and s is not None
        and s.errno == "EPIPE"
        and c is not None
        and c.result == 0
    )
    return ok, text("ev.shut_rdwr", fin=_yes(fin), recv=_r(r), how=_how_long(r) if r else "", send=_r(s), close=_r(c))


# ---- section 3.1: SO_LINGER -------------------------------------------------------------------------
def _linger_zero_rst(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    unread = q.unread_at(t, "client", c.t, q.conn_of(t, c))
    rst = _active_rst(t, c)
    fin = next(iter(q.sent_by_call(t, c, "FIN")), None)
    r = _recv_after(t, "server", rst)
    ok = (
        _on(lg, zero=True)
        and unread == 0
        and rst is not None
        and fin is None
        and _abort_by(t, "TCPAbortOnData")
        and r is not None
        and r.errno == "ECONNRESET"
    )
    return ok, text(
        "ev.linger_zero_rst",
        linger=_linger_words(lg),
        unread=unread,
        result=_r(c),
        sent=q.flags_text(_ends(t, c)),
        aborts=_aborts(t),
        recv=_r(r),
    )


def _rst_no_response(t: Trace) -> tuple[bool, str]:
    rst = q.first(t, "RST", "client")
    if rst is None or rst.arrived is None:
        return False, text("ev.no_rst_from", side=_side("client"))
    found = q.state_found(t, rst)
    ended = next((e for e in q.state_changes(t, "server", rst.conn) if e.t >= rst.arrived), None)
    answer = q.segments(t, "server", after=rst.arrived, conn=rst.conn)
    ok = found not in (None, "CLOSED") and ended is not None and ended.state == "CLOSED" and not answer
    return ok, text(
        "ev.rst_no_response", found=found or "?", then=ended.state if ended else "?", sent=q.flags_text(answer)
    )


def _linger_zero_no_time_wait(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    conn = q.conn_of(t, c)
    path = _states_after(t, "client", c.t, conn)
    first = next((e for e in q.state_changes(t, "client", conn) if e.t >= c.t), None)
    in_call = first is not None and first is q.went_to(t, c, "CLOSED")
    ok = _on(lg, zero=True) and in_call and "TIME_WAIT" not in path
    return ok, text("ev.linger_zero_no_time_wait", linger=_linger_words(lg), path=_path(path), in_call=_yes(in_call))


def _linger_zero_discards(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    conn = q.conn_of(t, c)
    sent = q.sent_total(t, "client")
    rst = _active_rst(t, c)
    later = q.segments(t, "client", data=True, after=c, conn=conn)
    r = q.call(t, "server", q.READ_TO_EOF)
    path = _states_after(t, "client", c.t, conn)
    ok = (
        _on(lg, zero=True)
        and rst is not None
        and not later
        and r is not None
        and r.result < sent
        and r.errno == "ECONNRESET"
        and "TIME_WAIT" not in path
    )
    unsent = sent - max((s.seq + s.len for s in q.segments(t, "client", data=True, before=c, conn=conn)), default=1) + 1
    return ok and unsent > 0, text(
        "ev.linger_zero_discards",
        linger=_linger_words(lg),
        unsent=unsent,
        sent=sent,
        after=q.flags_text(q.segments(t, "client", after=c, conn=conn)),
        read=r.result if r else 0,
        end=r.errno if r is not None and r.errno else text("ev.eof"),
        path=_path(path),
    )


def _linger_off_ignored(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    conn = q.conn_of(t, c)
    after = q.segments(t, "client", after=c, conn=conn)
    path = _states_after(t, "client", c.t, conn)
    ok = lg is not None and not lg.on and not q.slept(c) and q.first_flag(after) == "FIN" and "TIME_WAIT" in path
    return ok, text(
        "ev.linger_off_ignored",
        linger=_linger_words(lg),
        result=_r(c),
        how=_how_long(c),
        sent=q.flags_text(after),
        path=_path(path),
    )


def _linger_positive_four_way(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    conn = q.conn_of(t, c)
    fin = q.first(t, "FIN", "client", after=c.t, conn=conn)
    in_time = _acked_by(t, fin, q.end(c))
    server_fin = q.first(t, "FIN", "server", conn=conn)
    rst = q.segments(t, None, "RST", conn=conn)
    end = t.final_state("client", conn)
    ok = _on(lg, zero=False) and c.result == 0 and in_time and server_fin is not None and not rst and end == "TIME_WAIT"
    return ok, text(
        "ev.linger_positive_four_way",
        linger=_linger_words(lg),
        result=_r(c),
        how=_how_long(c),
        in_time=_yes(in_time),
        fins=_yes(fin and server_fin),
        rst=_yes(rst),
        end=end or "?",
    )


def _linger_timeout_rst(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    ran_out = _ran_out(t, c, lg)
    conn = q.conn_of(t, c)
    rst = q.first(t, "RST", "client", after=c.t, conn=conn)
    at_expiry = rst is not None and q.reset_kind(rst) == "active" and abs(rst.t - q.end(c)) <= 0.05
    answered = q.answered(t, rst) if rst is not None else None
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    lost = r is not None and r.result < sent
    return ran_out and at_expiry and lost, text(
        "ev.linger_timeout_rst",
        linger=_linger_words(lg),
        result=_r(c),
        how=_how_long(c),
        ran_out=_yes(ran_out),
        rst=_yes(at_expiry),
        why=text("ev.rst_answered", count=answered.len) if answered is not None else "",
        read=r.result if r else 0,
        sent=sent,
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
        return False, text("ev.nobody_fin")
    own_rst = {s for s in active if q.first(t, "RST", s) is not None}
    judged = [s for s in active if s not in own_rst]
    ends = {s: t.final_state(s) for s in active}
    ok = bool(judged) and all(ends[s] == "TIME_WAIT" for s in judged)
    words = text("ev.separator").join(
        text(
            "ev.first_fin",
            side=_side(s),
            end=ends[s] or "?",
            rst=text("ev.own_rst") if s in own_rst else "",
            reset=text("ev.peer_rst") if q.first(t, "RST", q.peer(s)) is not None else "",
        )
        for s in active
    )
    return ok, words


def _duplicate(t: Trace) -> Segment | None:
    return next((s for s in t.segments() if s.fate == "duplicate"), None)


def _old_duplicate_reaches(t: Trace) -> tuple[bool, str]:
    dup = _duplicate(t)
    syn2 = q.first(t, "SYN", "client", conn=2)
    if syn2 is None:
        return False, text("ev.no_second_connection")
    first_close = next((c for c in q.calls(t, "client", "close") if q.conn_of(t, c) == 1), None)
    rst1 = _active_rst(t, first_close) if first_close is not None else None
    path1 = t.states("client", conn=1)
    during = dup is not None and dup.conn == 1 and dup.arrived is not None and dup.arrived > syn2.t
    ok = rst1 is not None and "TIME_WAIT" not in path1 and during
    return ok, text(
        "ev.old_duplicate_reaches",
        rst=_yes(rst1),
        path=_path(path1),
        seq=f"{dup.seq}:{dup.seq + dup.len}" if dup else "?",
        during=_yes(during),
    )


def _old_duplicate_delivered(t: Trace) -> tuple[bool, str]:
    dup = _duplicate(t)
    if dup is None or dup.arrived is None:
        return False, text("ev.no_duplicate")
    r = next((c for c in q.calls(t, "server", "recv") if q.end(c) > dup.arrived), None)
    fresh = [s for s in q.segments(t, "client", data=True, conn=2) if s.arrived is not None and r is not None
             and s.arrived <= q.end(r)]  # fmt: skip
    reached = max((s.seq + s.len for s in fresh), default=1)
    reply = next((s for s in q.segments(t, "server", "ACK", conn=2) if s.t >= dup.arrived), None)
    taken = reply is not None and reply.ack > reached and not fresh
    ok = r is not None and r.result == dup.len and r.errno is None and taken
    paws = text("ev.paws", count=t.counter("TcpExt:PAWSEstab")) if _counted(t) else ""
    return ok, text(
        "ev.old_duplicate_delivered",
        count=dup.len,
        ack=f"ack {reply.ack}" if reply else "?",
        taken=_yes(taken),
        fresh=_bytes(sum(s.len for s in fresh)),
        recv=_r(r),
        paws=paws,
    )


def _time_wait_answers_resent_fin(t: Trace) -> tuple[bool, str]:
    fins = q.segments(t, "server", "FIN")
    if len(fins) < 2 or fins[1].arrived is None:
        return False, text("ev.fin_not_resent", times=_times(len(fins)))
    conn = fins[1].conn
    lost = [s for s in q.segments(t, "client", after=fins[0].t, before=fins[1].t, conn=conn) if s.lost]
    state = q.state_found(t, fins[1])
    again = q.ack_of(t, fins[1])
    closed = next((e for e in q.state_changes(t, "server", conn) if e.state == "CLOSED" and e.t >= fins[1].t), None)
    ok = bool(lost) and state == "TIME_WAIT" and again is not None and not again.lost and closed is not None
    return ok, text(
        "ev.time_wait_answers",
        lost=_yes(lost),
        after=took(fins[1].t - fins[0].t),
        state=state or "?",
        again=_yes(again),
        closed=_yes(closed),
    )


def _simultaneous_close(t: Trace) -> tuple[bool, str]:
    cf, sf = q.first(t, "FIN", "client"), q.first(t, "FIN", "server")
    if cf is None or sf is None or cf.arrived is None or sf.arrived is None:
        return False, text("ev.not_both_fin")
    crossed = cf.t < sf.arrived and sf.t < cf.arrived
    paths = {side: t.states(side, cf.conn) for side in ("client", "server")}
    ok = crossed and all("CLOSING" in p and p[-1] == "TIME_WAIT" for p in paths.values())
    return ok, text(
        "ev.simultaneous_close",
        crossed=_yes(crossed),
        client=_path(_states_after(t, "client", cf.t, cf.conn)),
        server=_path(_states_after(t, "server", sf.t, sf.conn)),
    )


# ---- sections 3.2.x: when close() returns --------------------------------------------------------------
def _return_default(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    read = q.call(t, "server", q.READ_TO_EOF)
    if c is None or read is None:
        return False, text("ev.close_or_read_missing")
    lg = q.linger_at(t, "client", c.t)
    conn = q.conn_of(t, c)
    fin = q.first(t, "FIN", "client", after=c.t, conn=conn)
    meanwhile = q.answered_during(t, c)
    before_ack = fin is not None and not _acked_by(t, fin, q.end(c))
    before_read = q.end(c) < read.t
    ok = c.result == 0 and (lg is None or not lg.on) and not q.slept(c) and not meanwhile and before_ack
    return ok and before_read, text(
        "ev.return_default",
        linger=_linger_words(lg),
        result=_r(c),
        how=_how_long(c),
        meanwhile=_yes(not meanwhile),
        before_ack=_yes(before_ack),
        count=read.result,
        before_read=_yes(before_read),
    )


def _orphan_gives_up(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    conn = q.conn_of(t, c)
    fins = q.segments(t, "client", "FIN", after=c.t, conn=conn)
    acked = [f for f in fins if q.ack_of(t, f) is not None and q.ack_of(t, f).arrived is not None]  # type: ignore[union-attr]
    closed = next((e for e in q.state_changes(t, "client", conn) if e.t >= c.t and e.state == "CLOSED"), None)
    rst = q.segments(t, None, "RST", conn=conn)
    told = q.calls_after(t, "client", c)
    timer = not _counted(t) or q.moved(t, "TCPAbortOnTimeout") != {}
    ok = c.result == 0 and not q.slept(c) and len(fins) >= 2 and not acked and closed is not None and not rst
    ending = (
        text("ev.dropped", when=_gave_up(t, c, closed.t), aborts=_aborts(t))
        if closed
        else text("ev.kept", aborts=_aborts(t))
    )
    return ok and timer and not told, text(
        "ev.orphan_gives_up",
        result=_r(c),
        how=_how_long(c),
        times=_times(len(fins)),
        acked=len(acked),
        ending=ending,
        rst=_yes(rst),
        told=text("ev.told_nothing") if not told else text("ev.more_calls"),
    )


def _gave_up(t: Trace, c: Syscall, when: float) -> str:
    """When an orphan was dropped, in terms of the TCP_USER_TIMEOUT the trace shows it was given."""
    uto = next(
        (x for x in q.calls(t, t.endpoint_of(c.side), "setsockopt") if x.args.get("option") == "TCP_USER_TIMEOUT"), None
    )
    if uto is None:
        return text("ev.after_close", took=took(when - q.end(c)))
    ms = uto.args.get("value", 0)
    return text("ev.user_timeout", ms=ms, past=_yes(when - q.end(c) >= ms / 1000))


def _returns_after_ack(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    read = q.call(t, "server", q.READ_TO_EOF)
    if c is None or read is None:
        return False, text("ev.close_or_read_missing")
    lg = q.linger_at(t, "client", c.t)
    fin = q.first(t, "FIN", "client", after=c.t, conn=q.conn_of(t, c))
    ack = q.ack_of(t, fin) if fin else None
    if fin is None or fin.arrived is None or ack is None or ack.arrived is None:
        return False, text("ev.fin_never_acked", linger=_linger_words(lg), result=_r(c))
    nxt = next((s.arrived for s in q.segments(t, "server", after=ack.t) if s is not ack and s.arrived), None)
    limit = min(x for x in (nxt, read.t) if x is not None)
    waited = q.slept(c) and ack.arrived <= q.end(c) < limit
    ok = _on(lg, zero=False) and c.result == 0 and waited and q.end(c) < read.t
    delay = t.link.get("delay") or 0.0
    trips = text("ev.two_trips", delay=took(delay)) if delay else text("ev.fin_and_ack_trips")
    return ok, text(
        "ev.returns_after_ack",
        linger=_linger_words(lg),
        result=_r(c),
        waited=_yes(waited),
        trips=trips,
        held=took(ack.t - fin.arrived),
        read=text("ev.read_after_return") if q.end(c) < read.t else text("ev.read_before_return"),
    )


def _fin_ack_delayed(t: Trace) -> tuple[bool, str]:
    fin = q.first(t, "FIN", "client")
    if fin is None or fin.arrived is None:
        return False, text("ev.no_fin_from", side=_side("client"))
    data = sum(s.len for s in q.segments(t, "client", data=True, before=fin.t, conn=fin.conn) if not s.lost)
    ack = q.ack_of(t, fin)
    if ack is None:
        return False, text("ev.fin_unacked")
    wait = ack.t - fin.arrived
    alone = not ack.len and not ack.has("FIN")
    timer = not _counted(t) or t.counter("TcpExt:DelayedACKs") > 0
    ok = data > 0 and wait >= 0.035 and alone and timer
    counted = text("ev.delayed_acks", count=t.counter("TcpExt:DelayedACKs")) if _counted(t) else ""
    return ok, text(
        "ev.fin_ack_delayed",
        count=data,
        took=took(wait),
        alone=text("ev.pure_ack") if alone else text("ev.riding_ack", flags=ack.tcpdump_flags),
        counted=counted,
    )


def _linger_timeout_ewouldblock(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    ran_out = _ran_out(t, c, lg)
    ok = ran_out and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, text(
        "ev.linger_timeout_ewouldblock",
        linger=_linger_words(lg),
        how=_how_long(c),
        why=text("ev.ran_out") if ran_out else text("ev.returned_first"),
        value=_ret(c),
    )


def _linger_nonblocking(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    nonblocking = any(f.args.get("flags") == "O_NONBLOCK" for f in q.calls_on(t, "client", "fcntl") if f.t < c.t)
    fin = q.first(t, "FIN", "client", after=c.t, conn=q.conn_of(t, c))
    pending = not _acked_by(t, fin, q.end(c))
    ok = nonblocking and _on(lg, zero=False) and pending and not q.slept(c) and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, text(
        "ev.linger_nonblocking",
        linger=_linger_words(lg),
        blocking=text("ev.non_blocking") if nonblocking else text("ev.blocking"),
        pending=text("ev.unacked") if pending else text("ev.acked"),
        result=_r(c),
        how=_how_long(c),
    )


def _shutdown_read_waits(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_WR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_WR)")
    sh = shs[0]
    r = next(iter(q.calls_after(t, sh.side, sh, "recv")), None)
    sread, sclose = q.call(t, "server", q.READ_TO_EOF), q.call(t, "server", "close")
    sfin = next(iter(q.sent_by_call(t, sclose, "FIN")), None) if sclose is not None else None
    if r is None or sread is None or sclose is None or sfin is None or sfin.arrived is None:
        return False, text("ev.read_close_or_fin_missing")
    busy = sum(c.duration for c in q.calls(t, "server", "sleep"))
    woke = q.slept(r) and r.t < sread.t and q.end(r) >= sfin.arrived
    ok = r.result == 0 and woke and q.end(sread) <= sclose.t
    return ok, text(
        "ev.shutdown_read_waits",
        how=_how_long(r),
        result=_r(r),
        woke=_yes(woke),
        busy=took(busy),
        count=sread.result,
        closed=_yes(q.end(sread) <= sclose.t),
    )


# ---- section 4.1: the kernel's close path -------------------------------------------------------------
def _close_before_ack(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    fin = q.first(t, "FIN", "client", after=c.t, conn=q.conn_of(t, c))
    ack = q.ack_of(t, fin) if fin else None
    later = fin is not None and fin.t > q.end(c)
    ok = c.result == 0 and not q.slept(c) and later and ack is not None and ack.arrived is not None
    ok = ok and ack.arrived > q.end(c)  # type: ignore[union-attr]
    when = text("ev.fin_after_return") if later else text("ev.fin_in_call") if fin else text("ev.never")
    acked = text("ev.acked_after", acked=_yes(ack.arrived > q.end(c))) if ack and ack.arrived else ""
    return ok, text("ev.close_before_ack", result=_r(c), how=_how_long(c), when=when, acked=acked)


def _fin_wait_1_while_queued(t: Trace) -> tuple[bool, str]:
    call = q.call(t, "client", "close") or next(iter(_shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")), None)
    if call is None:
        return _no_call("client", "close() / shutdown()")
    conn = q.conn_of(t, call)
    fw1 = next((e for e in q.state_changes(t, "client", conn) if e.state == "FIN_WAIT_1" and e.t >= call.t), None)
    if fw1 is None:
        return False, text("ev.no_fin_wait_1", call=call.call)
    in_call = q.went_to(t, call, "FIN_WAIT_1") is fw1
    queued = q.unsent_after(t, "client", fw1.t)
    fin = q.first(t, "FIN", "client", after=call.t, conn=conn)
    ok = in_call and queued > 0 and _fin_after_all_data(t, "client", fin)
    return ok, text(
        "ev.fin_wait_1_while_queued",
        call=call.call,
        in_call=_yes(in_call),
        queued=queued,
        fin_last=_yes(_fin_after_all_data(t, "client", fin)),
    )


def _fin_lost(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    conn = q.conn_of(t, c)
    fins = q.segments(t, "client", "FIN", after=c.t, conn=conn)
    if not fins or not fins[0].lost or len(fins) < 2 or fins[1].seq != fins[0].seq:
        lost = text("ev.lost") if fins and fins[0].lost else text("ev.not_lost")
        return False, text("ev.fin_was", result=_r(c), lost=lost)
    ack = q.ack_of(t, fins[1])
    left = next((e for e in q.state_changes(t, "client", conn) if e.t > c.t and e.state != "FIN_WAIT_1"), None)
    waited = left is not None and ack is not None and ack.arrived is not None and left.t >= ack.arrived
    ok = c.result == 0 and not q.slept(c) and ack is not None and waited
    return ok, text(
        "ev.fin_lost", result=_r(c), how=_how_long(c), after=took(fins[1].t - fins[0].t), waited=_yes(waited)
    )


def _close_in_syn_sent(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    conn = q.conn_of(t, c)
    state = q.state_before(t, "client", c.t, conn)  # what the call found (a state it brought is dated at its start)
    after = q.segments(t, "client", after=c, conn=conn)
    end_state = t.final_state("client", conn)
    ok = state == "SYN_SENT" and not after and end_state == "CLOSED"
    return ok, text("ev.close_in_syn_sent", result=_r(c), state=state or "?", sent=q.flags_text(after), end=end_state)


def _listener_close_resets(t: Trace) -> tuple[bool, str]:
    lc = next((c for c in t.syscalls("server", "close") if c.args.get("socket") == "listener"), None)
    if lc is None:
        return _no_call("server", "close(listener)")
    accepted = [c for c in q.calls(t, "server", "accept") if c.t < lc.t and not c.failed]
    rsts = [s for s in q.segments(t, "server", "RST") if lc.t <= s.t <= q.end(lc) + q.STAMP_SLACK]
    r = _recv_after(t, "client", rsts[0] if rsts else None)
    ok = not accepted and bool(rsts) and r is not None and r.errno == "ECONNRESET"
    return ok, text(
        "ev.listener_close_resets",
        waiting=text("ev.not_accepted") if not accepted else text("ev.accepted"),
        sent=q.flags_text(rsts),
        recv=_r(r),
    )


def _reset_before_accept(t: Trace) -> tuple[bool, str]:
    rst = q.first(t, "RST", "client")
    if rst is None or rst.arrived is None:
        return False, text("ev.no_rst_from", side=_side("client"))
    a = next((c for c in q.calls(t, "server", "accept") if q.end(c) > rst.arrived), None)
    same = a is not None and a.errno is None and q.conn_of(t, a) == rst.conn
    r = next(iter(q.calls_after(t, "server", a, "recv")), None) if a is not None else None
    ok = same and r is not None and r.errno == "ECONNRESET"
    took_it = (
        text("ev.accept_failed", result=_r(a))
        if a is not None and a.errno
        else text("ev.accept_returned", same=_yes(same))
        if a
        else text("ev.not_called")
    )
    return ok, text("ev.reset_before_accept", accept=took_it, recv=_r(r))


def _unread_reset(t: Trace, c: Syscall) -> tuple[int, Segment | None, bool]:
    """What a close() with unread data shows: the bytes unread on its connection, the RST the call
    itself sent, and whether the kernel counted the unread-data abort (TCPAbortOnClose, and not the
    SO_LINGER one) where it counts."""
    return (
        q.unread_at(t, t.endpoint_of(c.side), c.t, q.conn_of(t, c)),
        _active_rst(t, c),
        _abort_by(t, "TCPAbortOnClose"),
    )


def _close_unread_rst(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    unread, rst, counted = _unread_reset(t, c)
    r = _recv_after(t, "client", rst)
    ok = unread > 0 and rst is not None and counted and r is not None and r.errno == "ECONNRESET"
    return ok, text("ev.close_unread_rst", unread=unread, sent=q.flags_text(_ends(t, c)), recv=_r(r), aborts=_aborts(t))


def _close_unread_epoll(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    unread, rst, counted = _unread_reset(t, c)
    if rst is None or rst.arrived is None:
        return False, text("ev.close_sent", unread=unread, sent=q.flags_text(_ends(t, c)))
    ev = next((x for x in q.calls(t, "client", "epoll_wait") if q.end(x) > rst.arrived), None)
    r = _recv_after(t, "client", rst)
    bits = {"EPOLLIN", "EPOLLRDHUP", "EPOLLHUP"} <= q.epoll_bits(ev)
    ok = unread > 0 and counted and bits and r is not None and r.errno == "ECONNRESET"
    return ok, text("ev.close_unread_epoll", unread=unread, aborts=_aborts(t), epoll=_r(ev), recv=_r(r))


def _abort_path_order(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    lg = q.linger_at(t, "server", c.t)
    unread, rst, _counted_it = _unread_reset(t, c)
    on_close, on_data = t.counter("TcpExt:TCPAbortOnClose"), t.counter("TcpExt:TCPAbortOnData")
    ok = _on(lg, zero=True) and unread > 0 and rst is not None and on_close == 1 and on_data == 0
    return ok, text(
        "ev.abort_path_order",
        linger=_linger_words(lg),
        unread=unread,
        rst=_yes(rst),
        on_close=on_close,
        on_data=on_data,
    )


def _fin_epoll(t: Trace) -> tuple[bool, str]:
    fin = q.first(t, "FIN", "server")
    if fin is None or fin.arrived is None:
        return False, text("ev.no_fin_from", side=_side("server"))
    rst = q.first(t, "RST", None, after=fin.t, conn=fin.conn)
    before = rst.arrived if rst is not None else None
    ev = next(
        (c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > fin.arrived and (before is None or c.t < before)),
        None,
    )
    bits = q.epoll_bits(ev)
    unread = q.unread_at(t, "client", ev.t, fin.conn) if ev is not None else 0
    ok = {"EPOLLIN", "EPOLLRDHUP"} <= bits and not {"EPOLLERR", "EPOLLHUP"} & bits and unread == 0
    return ok, text("ev.fin_epoll", epoll=_r(ev), unread=unread)


def _epoll_level_triggered(t: Trace) -> tuple[bool, str]:
    fin = q.first(t, "FIN", "server")
    if fin is None or fin.arrived is None:
        return False, text("ev.no_fin_from", side=_side("server"))
    stop = min(
        [c.t for c in q.calls(t, "client") if c.call in ("recv", "send") and q.end(c) > fin.arrived]
        + [s.arrived for s in q.segments(t, None, "RST") if s.arrived is not None],
        default=None,
    )
    evs = [c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > fin.arrived and (stop is None or c.t < stop)]
    ok = len(evs) >= 2 and all({"EPOLLIN", "EPOLLRDHUP"} <= q.epoll_bits(e) for e in evs)
    return ok, text("ev.epoll_level_triggered", count=len(evs), bits="; ".join(_bits(e) for e in evs))


def _write_after_fin(t: Trace) -> tuple[bool, str]:
    fin = q.first(t, "FIN", None)
    if fin is None or fin.arrived is None:
        return False, text("ev.nobody_fin")
    closer, writer = fin.src, fin.dst
    how = next(
        (c for c in q.calls_on(t, closer) if c.call in ("close", "shutdown") and fin in q.sent_by_call(t, c)), None
    )
    s = next((c for c in q.calls(t, writer, "send") if c.t >= fin.arrived), None)
    if s is None:
        return False, text("ev.wrote_nothing", writer=_side(writer), closer=_side(closer))
    data = next(iter(q.segments(t, writer, data=True, after=s.t, conn=fin.conn)), None)
    rst = q.first(t, "RST", closer, after=data.arrived, conn=fin.conn) if data and data.arrived is not None else None
    answering = rst is not None and q.answered(t, rst) is data
    state = q.state_found(t, data) if data is not None else None
    ok = how is not None and how.call == "close" and s.errno is None and state == "FIN_WAIT_2" and answering
    return ok, text(
        "ev.write_after_fin",
        closer=_side(closer),
        call=how.call if how else "?",
        writer=_side(writer),
        send=_r(s),
        state=state or "?",
        rst=_yes(answering),
        aborts=_aborts(t),
    )


def _rst_arrival(t: Trace, at: str = "client") -> Segment | None:
    rst = q.first(t, "RST", q.peer(at))
    return rst if rst is not None and rst.arrived is not None else None


def _epoll_after_rst(t: Trace) -> tuple[bool, str]:
    rst = _rst_arrival(t)
    if rst is None:
        return False, text("ev.no_rst_reached", side=_side("client"))
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > rst.arrived), None)  # type: ignore[operator]
    ok = {"EPOLLERR", "EPOLLHUP"} <= q.epoll_bits(ev)
    return ok, text("ev.epoll_after_rst", epoll=_r(ev))


def _epoll_err_so_error(t: Trace) -> tuple[bool, str]:
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if "EPOLLERR" in q.epoll_bits(c)), None)
    if ev is None:
        return False, text("ev.no_epollerr")
    g = next((c for c in q.calls_after(t, "client", ev, "getsockopt") if c.args.get("option") == "SO_ERROR"), None)
    if g is None:
        return False, text("ev.so_error_unread")
    ev2 = next(iter(q.calls_after(t, "client", g, "epoll_wait")), None)
    error = g.result if isinstance(g.result, str) else None
    ok = error is not None and ev2 is not None and "EPOLLERR" not in q.epoll_bits(ev2)
    meaning = f" ({os.strerror(_errno(error))})" if error and _errno(error) else ""
    return ok, text("ev.epoll_err_so_error", epoll=_r(ev), so_error=_r(g), meaning=meaning, next=_r(ev2))


def _errno(name: str | None) -> int:
    import errno

    return getattr(errno, name, 0) if name else 0


def _rst_in_close_wait(t: Trace) -> tuple[bool, str]:
    rst = _rst_arrival(t)
    if rst is None:
        return False, text("ev.no_rst_reached", side=_side("client"))
    state = q.state_found(t, rst)
    s = next((c for c in q.calls(t, "client", "send") if c.t >= rst.arrived), None)  # type: ignore[operator]
    ok = state == "CLOSE_WAIT" and s is not None and s.errno == "EPIPE"
    return ok, text("ev.rst_in_close_wait", state=state or "?", send=_r(s))


def _second_write_sigpipe(t: Trace) -> tuple[bool, str]:
    rst = _rst_arrival(t)
    if rst is None:
        return False, text("ev.no_rst_reached", side=_side("client"))
    s = next((c for c in q.calls(t, "client", "send") if c.t >= rst.arrived), None)  # type: ignore[operator]
    sig = q.signals_of(t, s)
    ok = s is not None and s.errno == "EPIPE" and "SIGPIPE" in sig
    return ok, text("ev.second_write_sigpipe", send=_r(s), signal=", ".join(sig) or text("ev.no_signal"))


def _ending(t: Trace, conn: int) -> tuple[Segment | None, Syscall | None, Syscall | None, Syscall | None]:
    """How the server ended connection `conn` (its FIN or RST, the call that sent it) and what the
    client saw next (its first epoll_wait and recv after that segment arrived)."""
    end_seg = next((s for s in q.segments(t, "server", conn=conn) if s.has("FIN") or s.has("RST")), None)
    if end_seg is None or end_seg.arrived is None:
        return None, None, None, None
    cause = next(
        (c for c in q.calls_on(t, "server") if c.call in ("close", "shutdown") and end_seg in q.sent_by_call(t, c)),
        None,
    )
    ev = next((c for c in q.calls(t, "client", "epoll_wait") if q.end(c) > end_seg.arrived), None)
    r = _recv_after(t, "client", end_seg)
    return end_seg, cause, ev, r


def _peer_cannot_tell(t: Trace) -> tuple[bool, str]:
    first, second = _ending(t, 1), _ending(t, 2)
    if first[0] is None or second[0] is None:
        return False, text("ev.not_two_endings")
    words = []
    for seg, cause, ev, r in (first, second):
        how = f"{cause.call}({cause.args.get('how', '')})" if cause else "?"
        words.append(text("ev.ending", how=how, flags=seg.tcpdump_flags if seg else "?", epoll=_bits(ev), recv=_r(r)))
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
    return ok, text("ev.peer_cannot_tell", first=words[0], second=words[1], same=_yes(same))


def _shut_wr_unread_no_rst(t: Trace) -> tuple[bool, str]:
    shs = _shutdowns(t, "client", "SHUT_WR")
    if not shs:
        return _no_call("client", "shutdown(SHUT_WR)")
    sh = shs[0]
    conn = q.conn_of(t, sh)
    unread = q.unread_at(t, "client", sh.t, conn)
    sent = _ends(t, sh)
    rst = q.segments(t, "client", "RST", after=sh, conn=conn)
    r = next(iter(q.calls_after(t, sh.side, sh, "recv")), None)
    ok = unread > 0 and q.first_flag(sent) == "FIN" and not rst and r is not None and r.result == unread
    return ok, text("ev.shut_wr_unread_no_rst", unread=unread, sent=q.flags_text(sent), rst=_yes(rst), recv=_r(r))


# ---- section 5: shutdown vs close ------------------------------------------------------------------------
def _million_lost(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    r = q.call(t, "server", q.READ_TO_EOF)
    if c is None or r is None:
        return False, text("ev.million_missing")
    unread, rst, counted = _unread_reset(t, c)
    sent = q.sent_total(t, "client")
    ok = unread > 0 and rst is not None and counted and r.result < sent and r.errno == "ECONNRESET"
    return ok, text(
        "ev.million_lost",
        send=_r(q.call(t, "client", "send")),
        unread=unread,
        rst=_yes(rst),
        aborts=_aborts(t),
        read=r.result,
        sent=sent,
        end=r.errno or text("ev.eof"),
    )


def _million_fixed(t: Trace) -> tuple[bool, str]:
    sh = next(iter(_shutdowns(t, "client", "SHUT_WR")), None)
    a = q.call(t, "client", q.READ_TO_EOF)
    b = q.call(t, "server", q.READ_TO_EOF)
    c = q.call(t, "client", "close")
    sent = q.sent_total(t, "client")
    rst = t.segments(flags="RST")
    fin = next(iter(q.sent_by_call(t, sh, "FIN")), None) if sh is not None else None
    fin_ok = fin is not None or (sh is not None and q.unsent_after(t, "client", sh) > 0)  # queued data: FIN after it
    ok = (
        sh is not None
        and fin_ok
        and a is not None
        and a.t >= q.end(sh)
        and a.errno is None
        and b is not None
        and b.result == sent
        and b.errno is None
        and c is not None
        and c.t >= q.end(a)
        and not rst
    )
    return ok, text(
        "ev.million_fixed",
        send=_r(q.call(t, "client", "send")),
        shutdown=_r(sh),
        read=_r(a),
        close=_r(c),
        got=b.result if b else 0,
        sent=sent,
        end=b.errno if b is not None and b.errno else text("ev.eof"),
        rst=_yes(rst),
    )


def _million_linger(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    r = q.call(t, "server", q.READ_TO_EOF)
    if c is None or r is None:
        return False, text("ev.million_missing")
    lg = q.linger_at(t, "client", c.t)
    unread, rst, counted = _unread_reset(t, c)
    sent = q.sent_total(t, "client")
    ok = _on(lg, zero=False) and unread > 0 and rst is not None and counted and r.result < sent
    return ok and r.errno == "ECONNRESET", text(
        "ev.million_linger",
        linger=_linger_words(lg),
        unread=unread,
        value=_ret(c),
        how=_how_long(c),
        rst=_yes(rst),
        aborts=_aborts(t),
        read=r.result,
        sent=sent,
        end=r.errno or text("ev.eof"),
    )


def _million_read_linger(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    greeting = sum(x.result for x in q.calls(t, c.side, "recv") if x.t < c.t and isinstance(x.result, int))
    unread = q.unread_at(t, "client", c.t, q.conn_of(t, c))
    sent = q.sent_total(t, "client")
    read_by_then = sum(q.read_by(t, "server", 0.0, q.end(c)).values())
    fin = q.first(t, "FIN", "client", after=c.t, conn=q.conn_of(t, c))
    acked_fin = _acked_by(t, fin, q.end(c))
    acked = max((s.ack for s in q.segments(t, "server", "ACK") if s.arrived is not None and s.arrived <= q.end(c)),
                default=1) - 1  # fmt: skip
    b = q.call(t, "server", q.READ_TO_EOF)
    ok = greeting > 0 and unread == 0 and _on(lg, zero=False) and c.result == 0 and q.slept(c) and read_by_then < sent
    return ok, text(
        "ev.million_read_linger",
        greeting=greeting,
        linger=_linger_words(lg),
        result=_r(c),
        how=_how_long(c),
        acked_fin=_yes(acked_fin),
        acked=min(acked, sent),
        sent=sent,
        read=read_by_then,
        later=b.result if b else 0,
    )


def _exit_lingers_in_background(t: Trace) -> tuple[bool, str]:
    e = q.call(t, "client", "call")
    if e is None:
        return _no_call("client", "call")
    lg = q.linger_at(t, "client", e.t)
    conn = q.conn_of(t, e)
    queued = q.unsent_after(t, "client", e.t)
    released = q.went_to(t, e, "FIN_WAIT_1")
    in_call = released is not None
    by_call = [c for c in q.calls_on(t, "client") if c.call in ("close", "shutdown") and c.t <= (released or e).t]
    r = q.call(t, "server", q.READ_TO_EOF)
    sent = q.sent_total(t, "client")
    fin = q.first(t, "FIN", "client", after=e.t, conn=conn)
    # the exit did not wait for the linger: it returned before half of it (a lingering close returns at its end,
    # or once the data is sent) with data still queued; the words say "within a tenth" where it was that quick
    early = lg is not None and e.waited < lg.seconds / 2
    quick = lg is not None and e.waited < lg.seconds / 10
    delivered = r is not None and r.result == sent and r.errno is None and fin is not None
    ok = _on(lg, zero=False) and in_call and not by_call and early and queued > 0 and delivered
    return ok, text(
        "ev.exit_lingers",
        linger=_linger_words(lg),
        function=e.args.get("function"),
        released=_yes(in_call),
        closed=", ".join(f"{c.side}: {c.call}()" for c in by_call) or text("ev.nobody"),
        how=text("ev.tenth") if quick else text("ev.after", took=took(e.waited)),
        queued=queued,
        read=r.result if r else 0,
        sent=sent,
        fin=_yes(fin),
    )


def _shutdown_linger(t: Trace) -> tuple[Syscall | None, q.Linger | None, int, Segment | None]:
    sh = next(iter(_shutdowns(t, "client", "SHUT_WR", "SHUT_RDWR")), None)
    if sh is None:
        return None, None, 0, None
    fin = q.first(t, "FIN", "client", after=sh.t, conn=q.conn_of(t, sh))
    return sh, q.linger_at(t, "client", sh.t), q.unsent_after(t, "client", sh.t), q.ack_of(t, fin) if fin else None


def _shutdown_words(sh: Syscall, lg: q.Linger | None, queued: int, ack: Segment | None) -> str:
    if ack is not None and ack.arrived is not None and ack.arrived > q.end(sh):
        when = text("ev.ack_after_return")
    elif ack is not None:
        when = text("ev.ack_while_running")
    else:
        when = text("ev.fin_never_acked_short")
    how = sh.args.get("how")
    return text(
        "ev.shutdown_linger", linger=_linger_words(lg), how=how, result=_r(sh), took=_how_long(sh), queued=queued,
        when=when,
    )  # fmt: skip


def _shutdown_lingers(t: Trace) -> tuple[bool, str]:
    sh, lg, queued, ack = _shutdown_linger(t)
    if sh is None:
        return _no_call("client", "shutdown()")
    waited = q.slept(sh) and (
        (ack is not None and ack.arrived is not None and q.end(sh) >= ack.arrived)
        or (lg is not None and sh.waited >= 0.95 * lg.seconds)
    )
    return _on(lg, zero=False) and queued > 0 and waited, _shutdown_words(sh, lg, queued, ack)


def _linger_no_effect_on_shutdown(t: Trace) -> tuple[bool, str]:
    sh, lg, queued, ack = _shutdown_linger(t)
    if sh is None:
        return _no_call("client", "shutdown()")
    returned_first = ack is None or ack.arrived is None or q.end(sh) < ack.arrived
    ok = _on(lg, zero=False) and queued > 0 and returned_first and not q.slept(sh)
    return ok, _shutdown_words(sh, lg, queued, ack)


# ---- section 6: the summary table ---------------------------------------------------------------------------
def _table_close_default(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "server", "close")
    if c is None:
        return _no_call("server", "close()")
    lg = q.linger_at(t, "server", c.t)
    unread = q.unread_at(t, "server", c.t, q.conn_of(t, c))
    sent = _ends(t, c)
    ok = (lg is None or not lg.on) and unread > 0 and q.first_flag(sent) == "FIN"
    return ok, text("ev.table_close_default", linger=_linger_words(lg), unread=unread, sent=q.flags_text(sent))


def _table_linger_positive(t: Trace) -> tuple[bool, str]:
    c = q.call(t, "client", "close")
    if c is None:
        return _no_call("client", "close()")
    lg = q.linger_at(t, "client", c.t)
    ran_out = _ran_out(t, c, lg)
    queued = q.unsent_after(t, "client", c)
    r = q.call(t, "server", q.READ_TO_EOF)
    ok = ran_out and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, text(
        "ev.table_linger_positive",
        linger=_linger_words(lg),
        queued=queued,
        how=_how_long(c),
        ran_out=text("ev.ran_out_first") if ran_out else "",
        value=_ret(c),
        read=r.result if r else 0,
        sent=q.sent_total(t, "client"),
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
           "descriptors-never-closed", _runs_out_of_descriptors, (C, T), "descriptors-closed", _S1),
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
           "The side that sends the first FIN always ends in TIME_WAIT, unless it ends the connection with an RST "
           "instead of a FIN.",
           "peer-resets-fin-wait", _fin_sender_time_wait, (S, T), "silent-peer", _S3,
           "An RST from the peer ends the connection whatever this side sent: in FIN_WAIT_1, FIN_WAIT_2 or CLOSING, "
           "tcp_validate_incoming() (net/ipv4/tcp_input.c) accepts an in-window RST and tcp_reset() calls "
           "tcp_done(), so the socket goes to CLOSED with no TIME_WAIT, as RFC 9293 (3.10.7.4) asks of every TCP. "
           "The first FIN's sender ends in TIME_WAIT only when the connection ends with the normal exchange (the "
           "scenario time-wait)."),
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
           "Linux refuses the copy twice over. With TCP timestamps (RFC 7323, on by default) it carries an older "
           "timestamp than the new connection has seen: tcp_validate_incoming() (net/ipv4/tcp_input.c) drops it as "
           "a PAWS failure (TcpExt:PAWSEstab) and answers with a duplicate ACK. Without timestamps "
           "(net.ipv4.tcp_timestamps=0) the sequence check drops it: the new connection's initial sequence number "
           "comes from secure_tcp_seq() (net/core/secure_seq.c), a hash of the addresses plus a clock that has "
           "moved on since the old connection began, so the old bytes fall before the new receive window "
           "(tcp_sequence()). An old duplicate is delivered only if its sequence numbers happen to fit the new "
           "window."),
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
    """Run each claim's scenario once (claims sharing a scenario share its trace; a missed sync point gets
    a second run, see _attempt) and judge every claim; a scenario that fails gives its claims the verdict
    "could not run here", naming the error. Without `run`, the scenarios run in the default lab and, on a
    machine of more than one CPU where the lab has network namespaces of its own, in up to AT_ONCE - 1
    more labs beside it (closed at the end): most of a ledger's time is the kernel's timers. (In a host
    mode the experiments share the machine's loopback and its ports with every other program: one at a
    time there.)"""
    claims = list(claims)
    names = list(dict.fromkeys(claim.scenario for claim in claims))
    traces = _side_by_side(names) if run is None and _cpus() > 1 and _own_network() else _one_by_one(names, run)
    return [not_run(c, got) if isinstance(got := traces[c.scenario], Exception) else judge(c, got) for c in claims]


AT_ONCE = 3  # labs running a ledger's scenarios at a time
# The ledger's scenarios that wait about a second on the kernel's timers (a linger running out, a silent peer):
# started first, so that the short ones fill in beside them (tests/test_claims.py keeps the list whole).
SLOW_SCENARIOS = ("silent-peer", "million-bytes-read-linger", "linger-timeout", "linger-nonblocking")


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _own_network() -> bool:
    """The default lab runs its experiments in network namespaces of their own (modes netns*)."""
    from closekit.sandbox.client import default_lab

    return default_lab().mode.startswith("netns")


def _attempt(run: Callable[[str], Trace], name: str, tries: int = 2) -> Trace | Exception:
    """The scenario's trace, or the closekit error that kept it from running here. A sync point not met in
    time gets `tries` runs in all: a machine busy with other work, or a CPU emulated in a VM whose clock
    runs at the host's pace, can miss a deadline the kernel would meet; one the kernel never meets is
    missed every time."""
    from closekit.errors import CloseKitError, SyncTimeoutError

    try:
        return run(name)
    except SyncTimeoutError as e:
        return _attempt(run, name, tries - 1) if tries > 1 else e
    except CloseKitError as e:  # this scenario's claims say so; the others are still judged
        return e


def _one_by_one(names: list[str], run: Callable[[str], Trace] | None) -> dict[str, Trace | Exception]:
    if run is None:
        import closekit

        run = closekit.run
    return {name: _attempt(run, name) for name in names}


def _side_by_side(names: list[str]) -> dict[str, Trace | Exception]:
    """Each scenario run once (the slow ones first), by up to AT_ONCE labs each taking the next one left:
    the default lab and fresh labs of its sandbox. Each thread runs in a copy of the caller's context
    (the language the traces' words are in)."""
    import contextvars
    import threading

    import closekit
    from closekit.sandbox.client import Lab, default_lab

    names = sorted(names, key=lambda name: name not in SLOW_SCENARIOS)  # stable: the others keep their order
    main = default_lab()
    labs = [main, *(Lab(main.sandbox) for _ in range(min(AT_ONCE, len(names)) - 1))]
    left = iter(names)
    taking = threading.Lock()
    stop = threading.Event()  # the caller was interrupted, or a thread failed: take no more
    traces: dict[str, Trace | Exception] = {}
    failed: list[BaseException] = []

    def work(lab: Lab) -> None:
        try:
            while not stop.is_set():
                with taking:
                    name = next(left, None)
                if name is None:
                    return
                traces[name] = _attempt(lambda n: closekit.run(n, lab=lab), name)
        except BaseException as e:  # not a closekit error: raised in the caller's thread below
            failed.append(e)
            stop.set()

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, lab), daemon=True) for lab in labs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        for lab in labs[1:]:
            lab.close()
    if failed:
        raise failed[0]
    return traces


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
    """A plain-text table: section, claim id and outcome, then what the claim says and the evidence, in the
    reader's language; footnotes say what Linux does instead. Columns are aligned by display width (a
    Chinese character takes two columns) and long sentences wrap, Chinese ones between characters."""
    rows = [(v.claim.section, v.claim.id, v.outcome(with_kernel)) for v in verdicts]
    w_sec = max([lang.width(text("verdict.section")), *(lang.width(r[0]) for r in rows)])
    w_id = max([lang.width(text("verdict.claim")), *(lang.width(r[1]) for r in rows)])
    lines = []
    if with_kernel and verdicts:
        lines.append(text("verdict.title", kernel=verdicts[0].linux, mode=_mode(verdicts)))
    head = "  ".join(
        (lang.pad(text("verdict.section"), w_sec), lang.pad(text("verdict.claim"), w_id), text("verdict.verdict"))
    )
    lines.append(head)
    lines.append("-" * min(width, max(lang.width(head), w_sec + w_id + 17)))
    notes = []
    indent = " " * (w_sec + 4)
    for v, (sec, cid, outcome) in zip(verdicts, rows, strict=True):
        lines.append(f"{lang.pad(sec, w_sec)}  {lang.pad(cid, w_id)}  {outcome}")
        lines.extend(indent + part for part in lang.wrap(v.claim.statement, width - len(indent)))
        if v.judged or v.why:
            parts = lang.wrap(v.evidence, width - len(indent) - 2)
            lines.extend(indent + ("» " if i == 0 else "  ") + part for i, part in enumerate(parts))
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
            lines.extend(lang.wrap(f"- {v.claim.id}: {says}", width))
            lines.extend("    " + part for part in lang.wrap(str(linux), width - 4))
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
