"""The claims ledger: every checkable statement of the source document, put to the running kernel.

Each Claim says what the document (or the BSD-era table it copies from UNIX Network Programming)
states, in our words, names the experiment that tests it and holds a check that reads the Trace.
Claims are phrased *as the book says*: where Linux behaves otherwise the verdict says the claim does
not hold, and ``linux_text`` explains what Linux does instead, citing the kernel function.

    >>> from closekit import claims
    >>> verdicts = claims.verify()          # runs each scenario once
    >>> print(claims.table(verdicts))

Checks are pure functions of a Trace and their evidence sentences never contain times, ports or
versions, so a notebook that prints them gives the same output on every run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from closekit.lang import claim_words, text
from closekit.scenario import Scenario
from closekit.trace import Segment, Syscall, Trace
from closekit.transcript import duration_category

__all__ = [
    "CLAIMS",
    "Claim",
    "Verdict",
    "by_section",
    "duration",
    "get",
    "judge",
    "table",
    "to_json",
    "verdicts_html",
    "verify",
]

Check = Callable[[Trace], tuple[bool, str]]


# ---- the ledger's types -------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One statement of the document, the experiment that tests it and how to read the result."""

    id: str
    section: str
    text: str
    scenario: str | Scenario
    predicate: Callable[[Trace], bool] = field(repr=False)
    linux_text: str | None = None
    evidence: Callable[[Trace], str] = field(default=lambda trace: "", repr=False)

    @property
    def scenario_name(self) -> str:
        return self.scenario if isinstance(self.scenario, str) else self.scenario.name


@dataclass(frozen=True)
class Verdict:
    """What the kernel said about one claim; `evidence` is a short sentence read off the trace."""

    claim: Claim
    holds: bool
    evidence: str
    kernel: str = field(default="", compare=False)
    mode: str = field(default="netns", compare=False)

    @property
    def linux(self) -> str:
        """'Linux 6.18' from a release string such as '6.18.44-generic'."""
        return (
            "Linux " + ".".join(self.kernel.split("-")[0].split(".")[:2])
            if self.kernel
            else text("verdict.this_kernel")
        )

    def outcome(self, with_kernel: bool = True) -> str:
        """'holds'; 'differs on Linux X.Y' where the ledger explains what Linux does instead;
        'does not hold on …' for a failure nobody expected (a bug, or a kernel worth a lesson)."""
        where = self.linux if with_kernel else text("verdict.this_kernel")
        if self.holds:
            return text("verdict.holds")
        return text("verdict.differs" if self.claim.linux_text else "verdict.does_not_hold", kernel=where)

    def line(self, with_kernel: bool = True) -> str:
        """One printable line: id, outcome (naming the kernel it was checked on), evidence."""
        return f"[{self.claim.section}] {self.claim.id}: {self.outcome(with_kernel)} — {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        says, linux = claim_words(self.claim)
        return {
            "id": self.claim.id,
            "section": self.claim.section,
            "claim": says,
            "scenario": self.claim.scenario_name,
            "holds": self.holds,
            "evidence": self.evidence,
            "linux": linux,
            "kernel": self.kernel,
            "mode": self.mode,
        }


# ---- small readers of a trace, so each check is a few lines ---------------------------------------
def _calls(t: Trace, side: str, call: str) -> list[Syscall]:
    return t.syscalls(side, call)


def _call(t: Trace, side: str, call: str, index: int = 0) -> Syscall | None:
    """The index-th `call` of `side`; "read_to_eof" is the recv loop the trace records as recv(until=EOF)."""
    if call == "read_to_eof":
        found = [c for c in _calls(t, side, "recv") if c.args.get("until") == "EOF"]
    else:
        found = [c for c in _calls(t, side, call) if not (call == "recv" and c.args.get("until") == "EOF")]
    return found[index] if -len(found) <= index < len(found) else None


def _result(c: Syscall | None) -> str:
    """'= 0', '= -1 ECONNRESET', '= 127574 then ECONNRESET' — how a transcript shows a call's outcome."""
    if c is None:
        return "was not made"
    if c.errno and isinstance(c.result, int) and c.result > 0:
        return f"= {c.result} bytes, then {c.errno}"
    if c.errno:
        return f"= -1 {c.errno}"
    return f"= {c.result}"


def _end(c: Syscall) -> float:
    return c.t + c.duration


_wait = duration = duration_category


def _flags(segs: Sequence[Segment]) -> str:
    return ", ".join(s.tcpdump_flags for s in segs) or "nothing"


def _after(t: Trace, when: float, src: str) -> list[Segment]:
    return [s for s in t.segments(src=src) if s.t > when]


def _before(t: Trace, when: float, src: str) -> list[Segment]:
    return [s for s in t.segments(src=src) if s.t <= when]


def _epoll(c: Syscall | None) -> set[str]:
    return set(c.result) if c is not None and isinstance(c.result, list) else set()


def _bits(c: Syscall | None) -> str:
    return "|".join(c.result) if c is not None and c.result else "nothing"


def _acks_fin(t: Trace, fin: Segment) -> Segment | None:
    """The peer's first segment acknowledging `fin` (its sequence number + 1)."""
    for s in t.segments(src=fin.dst, flags="ACK"):
        if s.t >= fin.t and s.ack >= fin.seq + fin.len + 1:
            return s
    return None


def _yes(b: bool) -> str:
    return "yes" if b else "no"


# ---- the checks, one per claim --------------------------------------------------------------------
def _close_returns_at_once(t: Trace) -> tuple[bool, str]:
    c, r = _call(t, "client", "close"), _call(t, "server", "read_to_eof")
    fin = t.first("FIN", src="client")
    ok = c is not None and c.result == 0 and c.duration < 0.01 and fin is not None and not t.sent("client", "RST")
    got = r.result if r is not None else None
    return ok and got == 1000, (
        f"client close() {_result(c)} {_wait(c.duration) if c else ''}; then the client's TCP sent its data "
        f"and a FIN ({_yes(fin is not None)}); the server later read {got} bytes"
    )


def _close_shared_no_fin(t: Trace) -> tuple[bool, str]:
    parent, child = _call(t, "server", "close"), _call(t, "server-child", "close")
    if parent is None or child is None:
        return False, "the scenario did not close both descriptors"
    early = [s for s in _after(t, parent.t, "server") if s.t < child.t]
    ev = _call(t, "client", "epoll_wait", 0)
    ok = not any(s.has("FIN") or s.has("RST") for s in early) and "EPOLLRDHUP" not in _epoll(ev)
    return ok, (f"after the parent's close() the server sent {_flags(early)}; the client's epoll saw {_bits(ev)}")


def _close_last_ref_fin(t: Trace) -> tuple[bool, str]:
    child = _call(t, "server-child", "close")
    fin = t.first("FIN", src="server")
    r = _call(t, "client", "recv")
    ok = child is not None and fin is not None and fin.t >= child.t and r is not None and r.result == 0
    return ok, f"the FIN left only with the last close() (the child's): {_yes(ok)}; client recv() {_result(r)} (EOF)"


def _close_child_keeps_open(t: Trace) -> tuple[bool, str]:
    child, parent = _call(t, "server-child", "close"), _call(t, "server", "close")
    if child is None or parent is None:
        return False, "the scenario did not close both descriptors"
    fin = t.first("FIN", src="server")
    r = _call(t, "client", "recv")
    ok = fin is not None and fin.t >= parent.t and r is not None and r.result == 1
    return ok, (
        f"after the child's close() the parent still sent 1 byte (client recv() {_result(r)}); "
        f"the FIN waited for the parent's close(): {_yes(ok)}"
    )


def _shutdown_ignores_refcount(t: Trace) -> tuple[bool, str]:
    sh = _call(t, "server", "shutdown")
    fin = t.first("FIN", src="server")
    r = _call(t, "client", "recv")
    child_close = _call(t, "server-child", "close")
    ok = (
        sh is not None
        and fin is not None
        and (child_close is None or fin.t < child_close.t)
        and r is not None
        and r.result == 0
    )
    return ok, (
        f"with the child still holding the socket, shutdown(SHUT_WR) sent a FIN: {_yes(fin is not None)}; "
        f"client recv() {_result(r)} (EOF)"
    )


def _shut_wr_no_more_writes(t: Trace) -> tuple[bool, str]:
    s = _call(t, "server-child", "send")
    sig = t.signals("server-child")
    ok = s is not None and s.errno == "EPIPE" and "SIGPIPE" in sig
    return ok, f"a send() after shutdown(SHUT_WR) {_result(s)}, signal {', '.join(sig) or 'none'}"


def _shutdown_wr_half_close(t: Trace) -> tuple[bool, str]:
    fin = t.first("FIN", src="client")
    s_send = _call(t, "server", "send")
    c_recv = _call(t, "client", "recv", 0)
    s_recv = _call(t, "server", "recv")
    ok = fin is not None and s_recv is not None and s_recv.result == 0 and c_recv is not None and c_recv.result == 5
    return ok, (
        f"client sent FIN; server recv() {_result(s_recv)} (EOF); server send() {_result(s_send)} "
        f"and the half-closed client recv() {_result(c_recv)}"
    )


def _shut_rd_later_data_discarded(t: Trace) -> tuple[bool, str]:
    second = _call(t, "client", "recv", 1)
    rst = t.sent("client", "RST")
    discarded = second is not None and second.result in (0, None)
    return discarded, (
        f"after SHUT_RD the server sent 5 bytes, the client's TCP acknowledged them (RST: {_yes(rst)}) "
        f"and recv() {_result(second)}"
    )


def _shut_rd_read_returns_zero(t: Trace) -> tuple[bool, str]:
    first = _call(t, "client", "recv", 0)
    ok = first is not None and first.result == 0 and first.duration < 0.1
    return (
        ok,
        f"on an empty, blocking socket, recv() after SHUT_RD {_result(first)} {_wait(first.duration) if first else ''}",
    )


def _shut_rd_queued_discarded(t: Trace) -> tuple[bool, str]:
    r = _call(t, "client", "recv")
    s = _call(t, "client", "send")
    discarded = r is not None and r.result in (0, None)
    return discarded, (
        f"5 bytes were queued before SHUT_RD; recv() afterwards {_result(r)}; the client's send() {_result(s)}"
    )


def _shut_rd_can_send(t: Trace) -> tuple[bool, str]:
    s, r = _call(t, "client", "send"), _call(t, "server", "recv")
    ok = s is not None and s.result == 3 and r is not None and r.result == 3
    return ok, f"after SHUT_RD the client's send() {_result(s)} and the server's recv() {_result(r)}"


def _shut_wr_then_rd_rst(t: Trace) -> tuple[bool, str]:
    sh_rd = next((c for c in _calls(t, "client", "shutdown") if c.args.get("how") == "SHUT_RD"), None)
    rst = t.first("RST", src="client")
    sends = _calls(t, "server", "send")
    last = sends[-1] if sends else None
    sig = t.signals("server")
    ok = (
        sh_rd is not None
        and rst is not None
        and rst.t > sh_rd.t
        and last is not None
        and last.errno == "EPIPE"
        and "SIGPIPE" in sig
    )
    return ok, (
        f"data arriving after SHUT_WR + SHUT_RD was answered with RST by the client: {_yes(rst is not None)}; "
        f"the server's next send() {_result(last)}, signal {', '.join(sig) or 'none'}"
    )


def _shut_rdwr(t: Trace) -> tuple[bool, str]:
    fin = t.first("FIN", src="client")
    r, s, c = _call(t, "client", "recv"), _call(t, "client", "send"), _call(t, "client", "close")
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
        f"SHUT_RDWR sent a FIN: {_yes(fin is not None)}; then recv() {_result(r)}, send() {_result(s)}; "
        f"the descriptor stayed open until close() {_result(c)}"
    )


def _linger_zero_rst(t: Trace) -> tuple[bool, str]:
    r = _call(t, "server", "recv", -1)
    ok = t.sent("client", "RST") and not t.sent("client", "FIN") and r is not None and r.errno == "ECONNRESET"
    return ok, (
        f"client close() sent {_flags(t.segments(src='client', flags='RST') or t.segments(src='client', flags='FIN'))}"
        f" (FIN: {_yes(t.sent('client', 'FIN'))}); server recv() {_result(r)}"
    )


def _rst_no_response(t: Trace) -> tuple[bool, str]:
    rst = t.first("RST", src="client")
    if rst is None:
        return False, "no RST was sent"
    answer = _after(t, rst.t, "server")
    return not answer, f"after the client's RST the server's TCP sent {_flags(answer)}"


def _linger_zero_no_time_wait(t: Trace) -> tuple[bool, str]:
    path = t.states("client")
    ok = "TIME_WAIT" not in path and t.final_state("client") == "CLOSED"
    return ok, f"client states: {' → '.join(path)}"


def _linger_zero_discards(t: Trace) -> tuple[bool, str]:
    r = _call(t, "server", "read_to_eof")
    got = r.result if r is not None else None
    ok = t.sent("client", "RST") and isinstance(got, int) and got < 20000 and r is not None and r.errno == "ECONNRESET"
    path = t.states("client")
    return ok and "TIME_WAIT" not in path, (
        f"20000 bytes sent, close() with {{on, 0}} sent RST: {_yes(t.sent('client', 'RST'))}; "
        f"the server read {got} of 20000 ({r.errno if r and r.errno else 'no error'}); "
        f"client states: {' → '.join(path)}"
    )


def _fin_sender_time_wait(t: Trace) -> tuple[bool, str]:
    fin = t.first("FIN")
    first = fin.src if fin else None
    ok = first is not None and t.final_state(first) == "TIME_WAIT" and t.final_state(fin.dst) == "CLOSED"
    return ok, (
        f"the {first} sent the first FIN and ended in {t.final_state(first) if first else '?'}; "
        f"the other side ended in {t.final_state(fin.dst) if fin else '?'}"
    )


def _linger_ack_four_way(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    ok = (
        c is not None
        and c.result == 0
        and t.sent("client", "FIN")
        and t.sent("server", "FIN")
        and not t.sent("client", "RST")
        and not t.sent("server", "RST")
        and t.final_state("client") == "TIME_WAIT"
    )
    return ok, (
        f"close() {_result(c)}; FIN from each side, RST from none: {_yes(ok)}; "
        f"client ended in {t.final_state('client')}"
    )


def _returns_after_ack(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    fin = t.first("FIN", src="client")
    ack = _acks_fin(t, fin) if fin else None
    read = _call(t, "server", "read_to_eof")
    if c is None or ack is None or read is None:
        return False, "the close, the FIN or its ACK is missing"
    waited = ack.t <= _end(c) + 0.005  # the ACK may come at once or 40 ms later (delayed ACK)
    before_read = _end(c) <= read.t
    return waited and before_read and c.result == 0, (
        f"close() {_result(c)}, returning once the server's TCP had acknowledged the FIN: {_yes(waited)}; "
        f"before the server application read anything: {_yes(before_read)}"
    )


def _return_default(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    read = _call(t, "server", "read_to_eof")
    if c is None or read is None:
        return False, "the close or the server's read is missing"
    before = _end(c) < read.t
    ok = c.result == 0 and c.duration < 0.1 and before
    return ok, (
        f"close() {_result(c)} {_wait(c.duration)}, before the busy server read the data: {_yes(before)} "
        f"(it read {read.result} bytes later)"
    )


def _shutdown_read_waits(t: Trace) -> tuple[bool, str]:
    r = _call(t, "client", "recv")
    sc = _call(t, "server", "close")
    sr = _call(t, "server", "read_to_eof")
    if r is None or sc is None or sr is None:
        return False, "the client's read or the server's read/close is missing"
    ok = r.result == 0 and _end(r) >= sc.t and _end(r) >= _end(sr)
    return ok, (
        f"client recv() after shutdown(SHUT_WR) {_result(r)} {_wait(r.duration)}, once the server had read "
        f"{sr.result} bytes and closed: {_yes(ok)}"
    )


def _close_before_ack(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    fin = t.first("FIN", src="client")
    r = _call(t, "server", "read_to_eof")
    if c is None or fin is None or r is None:
        return False, "the close, its FIN or the server's read is missing"
    later = fin.t > _end(c)
    ok = c.result == 0 and c.duration < 0.1 and later and r.result == 20000
    return ok, (
        f"with the peer's window shut, close() {_result(c)} {_wait(c.duration)}; its FIN left only later, "
        f"when the server read ({_yes(later)}); the server read {r.result} of 20000 bytes"
    )


def _close_unread_rst(t: Trace) -> tuple[bool, str]:
    r = _call(t, "client", "recv", -1)
    ok = (
        t.sent("server", "RST")
        and not t.sent("server", "FIN")
        and r is not None
        and r.errno == "ECONNRESET"
        and t.counter("TcpExt:TCPAbortOnClose") == 1
    )
    return ok, (
        f"server close() with 6 bytes unread sent {_flags(t.segments(src='server', flags='RST'))} "
        f"(FIN: {_yes(t.sent('server', 'FIN'))}); client recv() {_result(r)}; "
        f"TCPAbortOnClose +{t.counter('TcpExt:TCPAbortOnClose')}"
    )


def _close_unread_epoll(t: Trace) -> tuple[bool, str]:
    ev = _call(t, "client", "epoll_wait")
    r = _call(t, "client", "recv")
    ok = {"EPOLLIN", "EPOLLRDHUP", "EPOLLHUP"} <= _epoll(ev) and r is not None and r.errno == "ECONNRESET"
    return ok, f"after the RST the client's epoll saw {_bits(ev)}; recv() {_result(r)}"


def _abort_path_order(t: Trace) -> tuple[bool, str]:
    on_close, on_data = t.counter("TcpExt:TCPAbortOnClose"), t.counter("TcpExt:TCPAbortOnData")
    return on_close == 1 and on_data == 0, (
        f"TCPAbortOnClose +{on_close}, TCPAbortOnData +{on_data}: the unread-data path was taken first"
        if on_close
        else f"TCPAbortOnClose +{on_close}, TCPAbortOnData +{on_data}"
    )


def _fin_epoll(t: Trace) -> tuple[bool, str]:
    ev = _call(t, "client", "epoll_wait", 0)
    ok = {"EPOLLIN", "EPOLLRDHUP"} <= _epoll(ev) and "EPOLLERR" not in _epoll(ev)
    return ok, f"after the server's FIN the client's epoll saw {_bits(ev)}"


def _write_after_fin(t: Trace) -> tuple[bool, str]:
    s = _call(t, "client", "send", 0)
    rst = t.first("RST", src="server")
    ok = s is not None and s.result == 10 and rst is not None and rst.t >= s.t
    return ok, f"the first send() {_result(s)}; the server (in FIN_WAIT_2) answered with RST: {_yes(rst is not None)}"


def _epoll_after_rst(t: Trace) -> tuple[bool, str]:
    ev = _call(t, "client", "epoll_wait", 1)
    ok = {"EPOLLERR", "EPOLLHUP"} <= _epoll(ev)
    return ok, f"after that RST the client's epoll saw {_bits(ev)}"


def _second_write_sigpipe(t: Trace) -> tuple[bool, str]:
    s = _call(t, "client", "send", 1)
    sig = t.signals("client")
    ok = s is not None and s.errno == "EPIPE" and "SIGPIPE" in sig
    return ok, f"the second send() {_result(s)}, signal {', '.join(sig) or 'none'}"


def _peer_cannot_tell(t: Trace) -> tuple[bool, str]:
    ev = _call(t, "server", "epoll_wait")
    r = _call(t, "server", "recv")
    ok = _epoll(ev) == {"EPOLLIN", "EPOLLOUT", "EPOLLRDHUP"} and r is not None and r.result == 0
    return ok, (
        f"after the client's shutdown(SHUT_WR) the server's epoll saw {_bits(ev)} and recv() {_result(r)}, "
        "exactly what a close() produces"
    )


def _shut_wr_unread_no_rst(t: Trace) -> tuple[bool, str]:
    ok = t.sent("client", "FIN") and not t.sent("client", "RST")
    r = _call(t, "client", "recv")
    return ok, (
        f"with 5 bytes unread, shutdown(SHUT_WR) sent FIN: {_yes(t.sent('client', 'FIN'))}, "
        f"RST: {_yes(t.sent('client', 'RST'))}; the bytes were still readable (recv() {_result(r)})"
    )


def _million_bytes_lost(t: Trace) -> tuple[bool, str]:
    r = _call(t, "server", "read_to_eof")
    got = r.result if r is not None else None
    ok = (
        t.sent("client", "RST")
        and isinstance(got, int)
        and got < 1_000_000
        and t.counter("TcpExt:TCPAbortOnClose") >= 1
    )
    return ok, (
        f"program A's close() with the greeting unread sent RST: {_yes(t.sent('client', 'RST'))} "
        f"(TCPAbortOnClose +{t.counter('TcpExt:TCPAbortOnClose')}); program B read {got} of 1000000 bytes, "
        f"then {r.errno if r is not None and r.errno else 'EOF'}"
    )


def _million_bytes_fixed(t: Trace) -> tuple[bool, str]:
    r = _call(t, "server", "read_to_eof")
    a = _call(t, "client", "read_to_eof")
    ok = r is not None and r.result == 1_000_000 and a is not None and a.result == 13 and not t.segments(flags="RST")
    return ok, (
        f"program B read {r.result if r else None} bytes to EOF; program A read {a.result if a else None} "
        f"bytes (the greeting) then EOF; RST on the wire: {_yes(bool(t.segments(flags='RST')))}"
    )


def _linger_timeout_ewouldblock(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    ok = c is not None and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, f"close() {_result(c)} {_wait(c.duration) if c else ''} (linger time 1 s)"


def _linger_timeout_rst(t: Trace) -> tuple[bool, str]:
    r = _call(t, "server", "read_to_eof")
    rst = t.sent("client", "RST")
    return rst and r is not None and (r.result or 0) < 20000, (
        f"when the linger time ran out the client sent RST: {_yes(rst)}; "
        f"the server later read {r.result if r else None} of 20000 bytes; "
        f"client states: {' → '.join(t.states('client'))}"
    )


def _linger_nonblocking(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    ok = c is not None and c.errno in ("EWOULDBLOCK", "EAGAIN") and c.duration < 0.1
    return ok, f"close() on the non-blocking socket {_result(c)} {_wait(c.duration) if c else ''}"


def _exit_lingers_in_background(t: Trace) -> tuple[bool, str]:
    e = _call(t, "client", "exit")
    r = _call(t, "server", "read_to_eof")
    ok = e is not None and e.duration < 0.1 and r is not None and r.result == 20000 and t.sent("client", "FIN")
    return ok, (
        f"exit() with SO_LINGER {{on, 1}} returned {_wait(e.duration) if e else '?'}; afterwards the kernel "
        f"still delivered the queued data (server read {r.result if r else None} of 20000) and a FIN"
    )


def _shutdown_lingers(t: Trace) -> tuple[bool, str]:
    s = _call(t, "client", "shutdown")
    fin = t.first("FIN", src="client")
    ack = _acks_fin(t, fin) if fin else None
    if s is None or ack is None:
        return False, "the shutdown or the ACK of its FIN is missing"
    waited = _end(s) >= ack.t
    return waited, (
        f"shutdown(SHUT_WR) with SO_LINGER {{on, 1}} {_result(s)} {_wait(s.duration)}; "
        f"it waited for the ACK of the queued data and FIN: {_yes(waited)}"
    )


def _linger_no_effect_on_shutdown(t: Trace) -> tuple[bool, str]:
    held, text = _shutdown_lingers(t)
    return not held and "missing" not in text, text


def _table_close_default(t: Trace) -> tuple[bool, str]:
    ok = t.sent("server", "FIN") and not t.sent("server", "RST")
    return ok, (
        f"server close() with 6 bytes unread: FIN {_yes(t.sent('server', 'FIN'))}, "
        f"RST {_yes(t.sent('server', 'RST'))}; client recv() {_result(_call(t, 'client', 'recv'))}"
    )


def _table_linger_positive(t: Trace) -> tuple[bool, str]:
    c = _call(t, "client", "close")
    r = _call(t, "server", "read_to_eof")
    ok = c is not None and c.errno in ("EWOULDBLOCK", "EAGAIN")
    return ok, (
        f"linger time (1 s) ran out before the connection closed; close() {_result(c)}; "
        f"the data and FIN left later anyway (server read {r.result if r else None} of 20000)"
    )


# ---- the ledger ---------------------------------------------------------------------------------
_ORPHAN = (
    "net/ipv4/af_inet.c inet_release() passes sk_lingertime to tcp_close(); __tcp_close() "
    "(net/ipv4/tcp.c) queues the FIN with tcp_close_state()/tcp_send_fin(), then only calls "
    "sk_stream_wait_close() for up to that time. When the time is up it carries on exactly like a "
    "default close: the socket becomes an orphan that keeps sending its data and FIN, close() returns 0. "
    "No RST, no EWOULDBLOCK (that is the BSD behaviour UNP describes)."
)


def _claim(
    id: str, section: str, text: str, scenario: str | Scenario, check: Check, linux_text: str | None = None
) -> Claim:
    return Claim(
        id=id,
        section=section,
        text=text,
        scenario=scenario,
        predicate=lambda trace: check(trace)[0],
        linux_text=linux_text,
        evidence=lambda trace: check(trace)[1],
    )


CLAIMS: tuple[Claim, ...] = (
    # 1. close
    _claim(
        "close-returns-at-once",
        "1",
        "By default close() returns to the caller at once; the kernel then sends whatever is still queued, "
        "followed by the normal FIN exchange.",
        "return-default",
        _close_returns_at_once,
    ),
    _claim(
        "close-shared-no-fin",
        "1",
        "When a parent closes a connected socket it shares with a forked child, only the descriptor's reference "
        "count drops; no termination sequence starts.",
        "close-shared",
        _close_shared_no_fin,
    ),
    _claim(
        "close-last-reference-fin",
        "1",
        "The close() that drops the last reference starts the normal termination: a FIN goes out.",
        "close-shared",
        _close_last_ref_fin,
    ),
    _claim(
        "close-child-keeps-open",
        "1",
        "If the parent never closes its copy, the child's close() cannot end the connection: the count goes "
        "from 2 to 1 and stays there.",
        "close-shared-child",
        _close_child_keeps_open,
    ),
    # 2. shutdown
    _claim(
        "shutdown-ignores-refcount",
        "2",
        "shutdown() starts TCP's termination whatever the descriptor's reference count.",
        "shutdown-shared",
        _shutdown_ignores_refcount,
    ),
    _claim(
        "shut-wr-half-close",
        "2",
        "SHUT_WR is a half-close: queued data is sent, then a FIN; the peer can still send and we can still read.",
        "shutdown-wr",
        _shutdown_wr_half_close,
    ),
    _claim(
        "shut-wr-no-more-writes",
        "2",
        "After SHUT_WR no process can write to the socket any more (a write raises SIGPIPE), whoever holds it.",
        "shutdown-shared",
        _shut_wr_no_more_writes,
    ),
    _claim(
        "shut-rd-discards-later-data",
        "2",
        "After SHUT_RD, data arriving from the peer is acknowledged by TCP and then silently discarded.",
        "shutdown-rd",
        _shut_rd_later_data_discarded,
        "Linux's tcp_shutdown() (net/ipv4/tcp.c) acts only on SEND_SHUTDOWN; SHUT_RD just sets RCV_SHUTDOWN in "
        "sk_shutdown. Incoming data is still queued by tcp_data_queue() and tcp_recvmsg_locked() hands it out; "
        "only a read on an empty queue returns 0 at once instead of blocking.",
    ),
    _claim(
        "shut-rd-discards-queued-data",
        "2",
        "SHUT_RD discards the data already waiting in the socket's receive buffer.",
        "shutdown-rd-queued",
        _shut_rd_queued_discarded,
        "Nothing is purged on Linux: inet_shutdown() sets RCV_SHUTDOWN and wakes readers, and the queued bytes "
        "stay readable (tcp_recvmsg_locked() copies queued data before it looks at RCV_SHUTDOWN).",
    ),
    _claim(
        "shut-rd-can-still-send",
        "6",
        "After SHUT_RD the process can still send on the socket; the send buffer is untouched.",
        "shutdown-rd-queued",
        _shut_rd_can_send,
    ),
    _claim(
        "shut-rd-read-returns-zero",
        "4.2",
        "After SHUT_RD a read on an empty buffer returns 0 immediately, even on a blocking socket.",
        "shutdown-rd",
        _shut_rd_read_returns_zero,
    ),
    _claim(
        "shut-wr-then-rd-rst",
        "4.2",
        "After SHUT_WR and then SHUT_RD the socket is fully shut: data from the peer draws an RST, and the peer's "
        "next write raises SIGPIPE.",
        "shutdown-wr-rd",
        _shut_wr_then_rd_rst,
    ),
    _claim(
        "shut-rdwr-both-halves",
        "2",
        "SHUT_RDWR shuts both halves (a FIN goes out, reads return EOF, writes fail) but the descriptor stays "
        "open until close().",
        "shutdown-rdwr",
        _shut_rdwr,
    ),
    # 3.1 SO_LINGER
    _claim(
        "linger-zero-rst",
        "3.1",
        "With SO_LINGER {on, 0}, close() aborts: an RST goes out instead of a FIN and the peer's read fails with "
        "'connection reset by peer'.",
        "linger-zero",
        _linger_zero_rst,
    ),
    _claim(
        "rst-gets-no-response",
        "3.1",
        "An RST draws no response at all from the other end: it is not acknowledged.",
        "linger-zero",
        _rst_no_response,
    ),
    _claim(
        "linger-zero-no-time-wait",
        "3.1",
        "After an abortive close the closing side skips TIME_WAIT and goes straight to CLOSED.",
        "linger-zero",
        _linger_zero_no_time_wait,
    ),
    _claim(
        "linger-zero-discards-send-buffer",
        "3.1",
        "Once the RST is sent, every byte still queued for sending is thrown away.",
        "linger-zero-queued",
        _linger_zero_discards,
    ),
    _claim(
        "linger-positive-four-way",
        "3.1",
        "With SO_LINGER {on, n > 0}, if everything is sent and acknowledged in time, the connection closes with "
        "the normal FIN exchange and close() succeeds.",
        "linger-ack",
        _linger_ack_four_way,
    ),
    _claim(
        "linger-timeout-rst",
        "3.1",
        "With SO_LINGER {on, n > 0}, if the linger time runs out with data unacknowledged, the connection is "
        "aborted like {on, 0}: RST, and the unsent data is discarded.",
        "linger-timeout",
        _linger_timeout_rst,
        _ORPHAN,
    ),
    _claim(
        "active-closer-time-wait",
        "5",
        "The side that sends the first FIN always ends in TIME_WAIT (unless it ends the connection with an RST).",
        "time-wait",
        _fin_sender_time_wait,
    ),
    # 3.2 when close returns
    _claim(
        "return-default-before-read",
        "3.2.1",
        "By default the client's close() returns at once, possibly before the busy server has read the data.",
        "return-default",
        _return_default,
    ),
    _claim(
        "return-linger-after-ack",
        "3.2.2",
        "With a positive linger time, close() returns only when the server's TCP has acknowledged the data and "
        "the FIN, which says nothing about whether the server application has read them.",
        "return-linger",
        _returns_after_ack,
    ),
    _claim(
        "linger-timeout-ewouldblock",
        "3.2.2",
        "If the linger time runs out before the data and FIN are acknowledged, close() returns -1 with errno "
        "EWOULDBLOCK.",
        "linger-timeout",
        _linger_timeout_ewouldblock,
        _ORPHAN,
    ),
    _claim(
        "linger-nonblocking-ewouldblock",
        "3.2.2",
        "(UNP) On a non-blocking socket with a positive linger time, close() does not wait: it returns "
        "EWOULDBLOCK at once if data is still unacknowledged.",
        "linger-nonblocking",
        _linger_nonblocking,
        "inet_release() (net/ipv4/af_inet.c) takes the linger time from SO_LINGER alone and never looks at "
        "O_NONBLOCK, so a non-blocking close() sleeps in sk_stream_wait_close() just like a blocking one, "
        "then returns 0.",
    ),
    _claim(
        "return-shutdown-read",
        "3.2.3",
        "shutdown(SHUT_WR) followed by read() returns only when the peer application has read the data and "
        "closed: the read sees the peer's FIN.",
        "return-shutdown-read",
        _shutdown_read_waits,
    ),
    # 4.1 the kernel's close path
    _claim(
        "close-before-fin-acked",
        "4.1",
        "A successful close() only means the FIN is queued; whether the peer received it is unknown.",
        "close-full-window",
        _close_before_ack,
    ),
    _claim(
        "close-unread-rst",
        "4.1",
        "Closing with unread data in the receive buffer skips the FIN exchange: the kernel sends an RST and the "
        "peer reads 'connection reset by peer' (RFC 1122 4.2.2.13, RFC 2525 2.17).",
        "close-unread",
        _close_unread_rst,
    ),
    _claim(
        "close-unread-peer-epoll",
        "4.1",
        "The peer of such a reset sees ECONNRESET, and epoll reports EPOLLHUP, EPOLLRDHUP and EPOLLIN at once.",
        "close-unread-epoll",
        _close_unread_epoll,
    ),
    _claim(
        "close-unread-before-linger-zero",
        "4.1",
        "(Linux) With unread data and SO_LINGER {on, 0} both present, the unread-data abort is the one taken.",
        "close-unread-linger-zero",
        _abort_path_order,
    ),
    _claim(
        "fin-epoll-in-rdhup",
        "4.1",
        "Receiving a FIN sets RCV_SHUTDOWN: epoll reports EPOLLIN and EPOLLRDHUP.",
        "write-after-peer-close",
        _fin_epoll,
    ),
    _claim(
        "write-after-fin-draws-rst",
        "4.1",
        "Writing to a peer that has closed still succeeds once; the peer, in FIN_WAIT_2, answers the data with an RST.",
        "write-after-peer-close",
        _write_after_fin,
    ),
    _claim(
        "epoll-err-hup-after-rst",
        "4.1",
        "After that RST, epoll reports EPOLLERR and EPOLLHUP.",
        "write-after-peer-close",
        _epoll_after_rst,
    ),
    _claim(
        "second-write-sigpipe",
        "4.1",
        "A second write after the RST raises SIGPIPE (EPIPE).",
        "write-after-peer-close",
        _second_write_sigpipe,
    ),
    _claim(
        "peer-cannot-tell-close-from-shutdown",
        "4.1",
        "The peer cannot tell a close() from a shutdown(SHUT_WR): both arrive as a FIN.",
        "shutdown-wr-unread",
        _peer_cannot_tell,
    ),
    # 4.2 shutdown
    _claim(
        "shut-wr-unread-no-rst",
        "4.2",
        "Unlike close(), shutdown(SHUT_WR) with unread data in the receive buffer sends a FIN, not an RST.",
        "shutdown-wr-unread",
        _shut_wr_unread_no_rst,
    ),
    # 5. shutdown vs close
    _claim(
        "million-bytes-lost",
        "5",
        "Program A writes 1,000,000 bytes and closes without reading B's greeting: B may get fewer bytes or an "
        "error, because closing with unread data sends an RST (RFC 1122 4.2.2.13).",
        "million-bytes",
        _million_bytes_lost,
    ),
    _claim(
        "million-bytes-fixed",
        "5",
        "send(), shutdown(SHUT_WR), read() until 0, then close(): every byte arrives.",
        "million-bytes-fixed",
        _million_bytes_fixed,
    ),
    _claim(
        "exit-lingers-in-background",
        "5",
        "(socket(7)) When the socket is closed by exit(), it always lingers in the background: exit does not "
        "wait, the kernel still delivers the data.",
        "linger-exit",
        _exit_lingers_in_background,
    ),
    _claim(
        "shutdown-lingers",
        "5",
        "(socket(7), as quoted) With SO_LINGER on, shutdown() too does not return until the queued data is sent "
        "or the linger time runs out.",
        "linger-shutdown",
        _shutdown_lingers,
        "tcp_shutdown() (net/ipv4/tcp.c) only moves the state and calls tcp_send_fin(); it never waits. Only "
        "close() lingers, in __tcp_close() via sk_stream_wait_close().",
    ),
    _claim(
        "linger-no-effect-on-shutdown",
        "5",
        "SO_LINGER has no effect on shutdown().",
        "linger-shutdown",
        _linger_no_effect_on_shutdown,
    ),
    # 6. the summary table (UNP's BSD rows)
    _claim(
        "table-close-default-fin",
        "6",
        "close() with l_onoff = 0: the send buffer is sent, then the normal FIN exchange; whatever is in the "
        "receive buffer is discarded.",
        "close-unread",
        _table_close_default,
        "__tcp_close() (net/ipv4/tcp.c) counts the unread bytes it purges; if there were any it sends an RST "
        "with tcp_send_active_reset() instead of a FIN (counter TCPAbortOnClose), as RFC 2525 2.17 recommends. "
        "With an empty receive buffer the row holds (see close-returns-at-once).",
    ),
    _claim(
        "table-linger-zero",
        "6",
        "close() with l_onoff = 1, l_linger = 0: RST to the peer, state CLOSED with no TIME_WAIT, both buffers "
        "discarded.",
        "linger-zero-queued",
        _linger_zero_discards,
    ),
    _claim(
        "table-linger-positive",
        "6",
        "close() with l_onoff = 1, l_linger > 0: the send buffer is sent, then FIN; if the linger time runs out "
        "before the connection is closed, close() returns EWOULDBLOCK.",
        "linger-timeout",
        _table_linger_positive,
        _ORPHAN,
    ),
)


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
    """Judge one claim on a trace you already have (a notebook runs the scenario and then asks)."""
    if isinstance(claim, str):
        claim = get(claim)
    return Verdict(claim, bool(claim.predicate(trace)), claim.evidence(trace), trace.kernel, trace.mode)


def verify(claims: Iterable[Claim] = CLAIMS, run: Callable[[str | Scenario], Trace] | None = None) -> list[Verdict]:
    """Run each claim's scenario once (claims sharing a scenario share its trace) and judge every claim."""
    if run is None:
        import closekit

        run = closekit.run
    traces: dict[str, Trace] = {}
    verdicts = []
    for claim in claims:
        name = claim.scenario_name
        if name not in traces:
            traces[name] = run(claim.scenario)
        verdicts.append(judge(claim, traces[name]))
    return verdicts


def table(verdicts: Sequence[Verdict], with_kernel: bool = True, width: int = 100) -> str:
    """A plain-text table: section, claim id, outcome, evidence; footnotes say what Linux does instead."""
    import textwrap

    rows = [(v.claim.section, v.claim.id, v.outcome(with_kernel)) for v in verdicts]
    w_sec = max([3, *(len(r[0]) for r in rows)])
    w_id = max([5, *(len(r[1]) for r in rows)])
    lines = []
    if with_kernel and verdicts:
        lines.append(text("verdict.title", kernel=verdicts[0].linux, mode=verdicts[0].mode))
    lines.append(f"{text('verdict.section'):<{w_sec}}  {text('verdict.claim'):<{w_id}}  {text('verdict.verdict')}")
    lines.append("-" * (w_sec + w_id + 17))
    notes = []
    for v, (sec, cid, outcome) in zip(verdicts, rows):
        lines.append(f"{sec:<{w_sec}}  {cid:<{w_id}}  {outcome}")
        for part in textwrap.wrap(v.evidence, width - w_sec - 4):
            lines.append(f"{'':<{w_sec}}    {part}")
        if not v.holds and v.claim.linux_text:
            notes.append(v)
    if notes:
        lines.append("")
        lines.append(text("verdict.linux_differs"))
        for v in notes:
            says, linux = claim_words(v.claim)
            lines.append(f"- {v.claim.id}: {says}")
            lines.extend("    " + part for part in textwrap.wrap(str(linux), width - 4))
    return "\n".join(lines)


def verdicts_html(verdicts: Sequence[Verdict], with_kernel: bool = True) -> str:
    """An HTML table for a notebook: section, the document's words, verdict on this kernel, evidence."""
    esc = html.escape
    rows = []
    for v in verdicts:
        colour = "#2e7d32" if v.holds else "#c62828"
        says, instead = claim_words(v.claim)
        linux = f"<br><em>{text('verdict.linux')}</em> {esc(instead)}" if instead and not v.holds else ""
        rows.append(
            f"<tr><td>{esc(v.claim.section)}</td><td>{esc(says)}</td>"
            f'<td style="color:{colour};font-weight:bold">{esc(v.outcome(with_kernel))}</td>'
            f"<td>{esc(v.evidence)}{linux}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("§", text("verdict.says"), text("verdict.verdict"), text("verdict.evidence"))
    )
    return f'<table class="closekit-claims"><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table>"


def to_json(verdicts: Sequence[Verdict], indent: int | None = 2) -> str:
    """The verdicts as JSON (kernel and mode included: a record of what ran where)."""
    return json.dumps(
        {
            "kernel": verdicts[0].kernel if verdicts else "",
            "mode": verdicts[0].mode if verdicts else "",
            "holds": sum(v.holds for v in verdicts),
            "total": len(verdicts),
            "verdicts": [v.to_dict() for v in verdicts],
        },
        indent=indent,
        ensure_ascii=False,
    )
