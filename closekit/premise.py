"""What a scenario needs to have happened before its lesson starts, and whether it did.

A lesson such as "close() with data queued behind a shut window returns at once" means something
only if, when the close() began, the peer's window *was* shut and data *was* queued. Whether it
was depends on the kernel: Linux 6.1 charges more memory per queued segment than 6.18, so a send
buffer that holds the scenario's bytes on one kernel is full before them on another, and a
blocking send() then sleeps for room an acknowledgement would make — and with the window shut,
none comes. So a scenario declares its premises (closekit.library.PREMISES), sets itself up so
they hold on every kernel the course supports, and every verdict drawn from its trace first
checks that they did: a premise that did not hold is reported as such, never as a verdict.

A premise is a pure function of a Trace, like a claim's check: (True, evidence) it held,
(False, evidence) it did not, (None, why) this mode cannot see it (no capture), which does not
stop the verdict.

    >>> from closekit import premise
    >>> [r.line() for r in premise.check(closekit.run("close-full-window"))]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from closekit.trace import Syscall, Trace

__all__ = ["Premise", "Result", "check", "data_queued", "declared", "failed", "sent_all", "window_shut"]

Check = Callable[[Trace], tuple[bool | None, str]]


@dataclass(frozen=True)
class Premise:
    """One thing a scenario needs: an id, what must hold (in words), and how to read it off a trace."""

    id: str
    text: str
    check: Check

    def judge(self, trace: Trace) -> Result:
        holds, evidence = self.check(trace)
        return Result(self, holds, evidence)


@dataclass(frozen=True)
class Result:
    premise: Premise
    holds: bool | None  # None: this mode cannot see it
    evidence: str

    def line(self) -> str:
        said = {True: "holds", False: "did not hold", None: "cannot be seen here"}[self.holds]
        return f"premise {self.premise.id}: {said} — {self.evidence}"

    def to_dict(self) -> dict[str, object]:
        return {"id": self.premise.id, "premise": self.premise.text, "holds": self.holds, "evidence": self.evidence}


def declared(scenario: str) -> tuple[Premise, ...]:
    """The premises the built-in scenario `scenario` declares (none for your own)."""
    from closekit.library import PREMISES

    return PREMISES.get(scenario, ())


def check(trace: Trace) -> list[Result]:
    """Each premise of the trace's scenario, judged on the trace."""
    return [p.judge(trace) for p in declared(trace.scenario)]


def failed(trace: Trace) -> list[Result]:
    """The premises of the trace's scenario that did not hold in it."""
    return [r for r in check(trace) if r.holds is False]


# ---- the premises the built-in scenarios need ------------------------------------------------------
def _filling_send(trace: Trace, side: str, nbytes: int) -> Syscall | None:
    return next((c for c in trace.syscalls(side, "send") if c.args.get("nbytes") == nbytes), None)


def _next_call(trace: Trace, side: str, after: Syscall) -> Syscall | None:
    """The first call `side`'s processes made after `after` returned: where the lesson starts."""
    endpoint = trace.endpoint_of(side)
    done = after.t + after.duration
    return next((c for c in trace.syscalls() if trace.endpoint_of(c.side) == endpoint and c.t >= done), None)


def _call_words(c: Syscall) -> str:
    option = c.args.get("option") or c.args.get("how") or ""
    return f"{c.side}'s {c.call}({option})"


def sent_all(side: str, nbytes: int) -> Premise:
    """`side`'s send() of `nbytes` returned them all: its send buffer took every byte."""

    def check(trace: Trace) -> tuple[bool | None, str]:
        c = _filling_send(trace, side, nbytes)
        if c is None:
            return False, f"{side} made no send() of {nbytes:,} bytes"
        took = c.result if isinstance(c.result, int) else 0
        said = f"= -1 {c.errno}" if c.errno and not took else f"= {took:,}" + (f", then {c.errno}" if c.errno else "")
        return took == nbytes and not c.errno, f"send({nbytes:,}) {said}"

    return Premise(f"{side}-sent-all", f"{side}'s send() of {nbytes:,} bytes returns them all", check)


def window_shut(receiver: str, sender: str, nbytes: int) -> Premise:
    """`receiver` advertised a zero window before `sender`'s next call after its send of `nbytes`."""

    def check(trace: Trace) -> tuple[bool | None, str]:
        if trace.mode == "host-nocapture":
            return None, "the segments were not captured in this mode"
        c = _filling_send(trace, sender, nbytes)
        start = _next_call(trace, sender, c) if c is not None else None
        if start is None:
            return False, f"{sender} made no call after its send() of {nbytes:,} bytes"
        windows = [s.win for s in trace.segments(src=receiver) if s.t < start.t and not s.has("SYN")]
        shut = bool(windows) and windows[-1] == 0
        last = f"win {windows[-1]:,}" if windows else "no segment"
        return shut, f"{receiver}'s last segment before {_call_words(start)} advertised {last}"

    return Premise(
        f"{receiver}-window-shut",
        f"{receiver}'s receive window is shut (it advertised 0) when {sender}'s next call begins",
        check,
    )


def data_queued(sender: str, nbytes: int) -> Premise:
    """Some of `sender`'s `nbytes` were still in its send buffer, unsent, when its next call began."""

    def check(trace: Trace) -> tuple[bool | None, str]:
        if trace.mode == "host-nocapture":
            return None, "the segments were not captured in this mode"
        c = _filling_send(trace, sender, nbytes)
        start = _next_call(trace, sender, c) if c is not None else None
        if c is None or start is None:
            return False, f"{sender} made no call after a send() of {nbytes:,} bytes"
        accepted = c.result if isinstance(c.result, int) else 0
        endpoint = trace.endpoint_of(sender)
        left = max((s.seq + s.len - 1 for s in trace.segments(src=endpoint) if s.len and s.t < start.t), default=0)
        queued = max(accepted - left, 0)
        return queued > 0, f"{queued:,} of the {accepted:,} bytes were not sent yet when {_call_words(start)} began"

    return Premise(
        f"{sender}-data-queued",
        f"{sender}'s send buffer still holds unsent data when its next call begins",
        check,
    )
