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
from closekit.lang import text, word
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
            return text("outcome_words.after", took=format_ms(seconds))
        if seconds < wait_threshold(trace):
            return text("outcome_words.at_once_after")
        return text("outcome_words.after", took=approx(seconds))

    sock = trace.endpoint_of(call.side)
    peer = q.peer(sock)
    events = trace.events
    own = [(i, e) for i, e in enumerate(events) if isinstance(e, Syscall) and trace.endpoint_of(e.side) == sock]
    later = [i for i, e in own if i > position and e.call in ("close", "shutdown")]
    end = later[0] if later else len(events)
    window = [(i, e) for i, e in enumerate(events) if position < i < end and isinstance(e, Segment)]
    at = text("outcome_words.at", at=format_ms(call.t - q.origin(trace))) if exact else ""
    lines = [text("outcome_words.close_by", side=word("side", call.side), at=at)]
    hows = tuple(str(e.args.get("how")) for i, e in own if i < position and e.call == "shutdown" and not e.failed)
    how = hows[-1] if hows else None
    lg = q.linger_at(trace, sock, call.t)
    linger, zero = (lg.timeout, lg.abortive) if lg is not None else (0, False)
    if call.failed:
        failed = text("outcome_words.failed", errno=call.errno)
        return CloseOutcome(call.side, "failed", False, (*lines, failed), how,
                            shutdowns=hows)  # fmt: skip
    if call.args.get("socket") == "listener":
        return _judge_listener(trace, call, window, lines, after)

    # What this socket sent: the FIN may leave after the call (behind queued data); an RST is the
    # close's only if the call itself sent it as an active reset (R.): one that answers data arriving
    # later is the orphan's reply (TcpExt:TCPAbortOnData), not this branch.
    fin = next((e for _, e in window if e.src == sock and e.has("FIN")), None)
    rst = next((e for e in q.sent_by_call(trace, call, "RST") if q.reset_kind(e) == "active"), None)
    first = min((s for s in (fin, rst) if s is not None), key=lambda s: s.t, default=None)
    reset = [e for e in events[:position] if isinstance(e, Segment) and e.has("RST")]
    if reset:
        unread = 0
    elif trace.captured:
        unread = q.unread_at(trace, sock, call.t, conn_at(trace, call.t))
    else:  # no segments: what the peer's send() calls handed over before the close, less what was read
        sent = sum(c.result for c in q.calls_on(trace, peer, "send") if q.end(c) <= call.t and c.result > 0)
        unread = max(0, sent - sum(q.read_by(trace, sock, 0.0, call.t).values()))
    counters = {name: trace.counter(name) for name in ("TcpExt:TCPAbortOnClose", "TcpExt:TCPAbortOnData")}
    counted = "; ".join(f"{name} +{value}" for name, value in counters.items() if value)
    holders = _other_holders(trace, position, call.side)

    if unread:
        lines.append(text("outcome_words.unread", count=unread, peer=word("side", peer), sock=word("side", sock)))
    if zero:
        lines.append(text("outcome_words.linger", linger=0))
    elif linger:
        lines.append(text("outcome_words.linger", linger=linger))
    if hows:
        shut = text("outcome_words.then").join(f"shutdown({h})" for h in hows)
        lines.append(text("outcome_words.shutdown_before", shutdowns=shut))

    branch: Branch
    side_word = word("side", sock)
    if first is not None and first is rst:
        more = text("transcript.semicolon") + counted if counted else ""
        lines.append(text("outcome_words.rst_sent", sock=side_word, after=after(rst.t - call.t), counted=more))
        closed_by_unread = unread > 0 or (not zero and counters["TcpExt:TCPAbortOnClose"] > 0)
        branch = "unread" if closed_by_unread else "linger-zero"
    elif first is not None:
        lines.append(text("outcome_words.fin_sent", sock=side_word, after=after(fin.t - call.t)))
        if holders is None and any(e.call == "fork" for i, e in own if i < position):
            lines.append(text("outcome_words.last_holder"))
        branch = "fin"
    elif not trace.captured:
        lines.append(text("outcome_words.not_captured"))
        went = q.went_to(trace, call)
        if holders:
            branch = "shared"
        elif (
            went is not None
            and went.state == "CLOSED"
            and q.state_before(trace, sock, call.t) not in ("SYN_SENT", None)
        ):
            branch = "unread" if unread else "linger-zero" if zero else "unobserved"
        elif went is not None and went.state in ("FIN_WAIT_1", "LAST_ACK"):
            branch = "fin"
        else:
            branch = "unobserved"
    elif holders:
        until = text("outcome_words.until", holders=holders) if later else ""
        lines.append(text("outcome_words.shared", sock=side_word, until=until, holders=holders))
        branch = "shared"
    else:
        over = _already_over(trace, call, sock, exact)
        lines.append(text("outcome_words.nothing_sent", sock=side_word, why=over))
        branch = "no-fin"

    lingered = branch == "fin" and linger > 0
    if lingered and fin is not None:
        returned = q.end(call)
        ack = q.ack_of(trace, fin, delivered=True, resent=True)
        acked = ack is not None and ack.arrived <= returned  # type: ignore[operator]
        if acked:
            why = text("outcome_words.after_ack")
        else:
            why = text("outcome_words.ran_out", unsent=text("outcome_words.not_sent") if fin.t > returned else "")
        waited = format_ms(call.duration) if exact else approx(call.waited)
        lines.append(text("outcome_words.waited", waited=waited, result=call.result, why=why))
    return CloseOutcome(call.side, branch, lingered, tuple(lines), how, shutdowns=hows)


def _judge_listener(
    trace: Trace, call: Syscall, window: list[tuple[int, Segment]], lines: list[str], after: Callable[[float], str]
) -> CloseOutcome:
    """A listening socket's close(): the resets it sent to the connections it never handed to accept()."""
    sock = trace.endpoint_of(call.side)
    rsts = [e for _, e in window if e.src == sock and e.has("RST")]
    lines = [*lines, text("outcome_words.listener_closed")]
    if rsts:
        lines.append(text("outcome_words.listener_rst", sock=word("side", sock), after=after(rsts[0].t - call.t),
                          count=len(rsts)))  # fmt: skip
    elif trace.captured:
        lines.append(text("outcome_words.listener_empty"))
    else:
        lines.append(text("outcome_words.listener_unseen"))
    return CloseOutcome(call.side, "listener", False, tuple(lines))


def _already_over(trace: Trace, call: Syscall, sock: str, exact: bool) -> str:
    """Why a close() with nothing to send had nothing to send: the FIN or RST seen before it."""
    before = [e for e in trace.segments() if e.t <= call.t and (e.has("RST") or (e.src == sock and e.has("FIN")))]
    if not before:
        return text("outcome_words.no_fin_needed")
    last = before[-1]
    at = text("outcome_words.at", at=format_ms(last.t - q.origin(trace))) if exact else ""
    if last.has("RST"):
        return text("outcome_words.already_reset", side=word("side", last.src), at=at)
    return text("outcome_words.already_fin", side=word("side", last.src), at=at)


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
