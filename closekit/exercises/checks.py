"""Write the scenario: the student builds a Scenario, the checker runs it and asks the trace for a property.

A Requirement is a sentence and a pure test of a Trace that returns None when it holds, else what
was seen instead; so the message a student reads names what the kernel did, not a hidden answer.

A verdict rests on what the lab observed itself (the segments on the wire, the states sock_diag
reported) or on the calls of processes that ran no code of the student's. A process that ran a
function (a call() step) may have rewritten the code that records its calls, so a requirement that
reads a process's calls says it cannot judge when that process's records are marked forgeable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import closekit
from closekit import query as q
from closekit.errors import CloseKitError
from closekit.exercises.results import Result
from closekit.lang import text, word
from closekit.scenario import Scenario
from closekit.steps import Call, Step, iter_steps
from closekit.trace import Trace


@dataclass(frozen=True)
class Requirement:
    """A property of a trace: `test(trace)` is None when it holds, else a description of what was seen.
    `reads`: the processes whose own records of their calls the test reads."""

    text: str
    test: Callable[[Trace], str | None]
    needs_capture: bool = True
    reads: tuple[str, ...] = ()

    def judge(self, trace: Trace) -> tuple[bool, str]:
        """(holds, what was seen), refusing to say "holds" about segments nobody could see, or on calls
        reported by a process that ran code of its own."""
        if self.needs_capture and not trace.captured:
            return False, text("checks.not_captured", mode=trace.mode)
        forged = next((side for side in self.reads if any(c.forgeable for c in trace.syscalls(side))), None)
        if forged is not None:
            return False, text("checks.forgeable", side=word("side", forged))
        seen = self.test(trace)
        return seen is None, text("checks.holds") if seen is None else seen


def _closes(trace: Trace, side: str) -> list[Any]:
    return [c for c in q.calls(trace, side, "close") if not c.failed]


def close_sends_no_fin(side: str = "client") -> Requirement:
    """`side` calls close() and its TCP sends no FIN at all (an abortive close)."""

    def test(trace: Trace) -> str | None:
        if not _closes(trace, side):
            return text("checks.never_closed_ok", side=word("side", side))
        fin = q.first(trace, "FIN", side)
        if fin is not None:
            segment = f"{fin.tcpdump_flags} {fin.seq}:{fin.seq + fin.len}({fin.len})"
            return text("checks.sent_fin", side=word("side", side), segment=segment)
        return None

    return Requirement(text("checks.no_fin", side=word("side", side)), test, reads=(side,))


def close_blocks(side: str = "client", low: float = 0.8, high: float = 1.5) -> Requirement:
    """One of `side`'s close() calls blocks between `low` and `high` seconds."""

    def test(trace: Trace) -> str | None:
        closes = q.calls(trace, side, "close")
        if not closes:
            return text("checks.never_closed", side=word("side", side))
        longest = max(c.waited for c in closes)
        if low <= longest <= high:
            return None
        return text("checks.close_took", side=word("side", side), seconds=longest)

    requirement = text("checks.close_blocks", side=word("side", side), low=low, high=high)
    return Requirement(requirement, test, needs_capture=False, reads=(side,))


def receives_all(side: str, nbytes: int) -> Requirement:
    """`side` reads exactly `nbytes` and no read fails."""

    def test(trace: Trace) -> str | None:
        got, error = q.received(trace, side), q.recv_error(trace, side)
        if got == nbytes and error is None:
            return None
        then = text("words.then", error=error) if error else ""
        return text("checks.received", side=word("side", side), got=got, total=nbytes) + then

    words = text("checks.receives_all", side=word("side", side), total=nbytes)
    return Requirement(words, test, needs_capture=False, reads=(side,))


def no_rst() -> Requirement:
    """Nobody sends an RST."""

    def test(trace: Trace) -> str | None:
        rst = q.first(trace, "RST")
        return None if rst is None else text("checks.sent_rst", side=word("side", rst.src))

    return Requirement(text("checks.no_rst"), test)


def all_of(*requirements: Requirement) -> Requirement:
    """Every one of `requirements` holds."""

    def test(trace: Trace) -> str | None:
        seen = [r.judge(trace)[1] for r in requirements if not r.judge(trace)[0]]
        return text("checks.separator").join(seen) or None

    joined = text("checks.and").join(r.text for r in requirements)
    reads = tuple(dict.fromkeys(side for r in requirements for side in r.reads))
    return Requirement(joined, test, any(r.needs_capture for r in requirements), reads)


class WriteScenario:
    """A task: write a scenario whose live trace has every property in `requirements`.

    `check()` takes a closekit.Scenario or just its steps; own functions (`steps.call`), at the top
    or inside at_once(), are refused unless `allow_calls`, so that a property is shown by the socket
    calls the chapter teaches (and never by a function that rewrote how calls are recorded).
    """

    def __init__(
        self,
        task: str,
        requirements: Iterable[Requirement],
        section: str = "",
        points: float = 1.0,
        allow_calls: bool = False,
    ) -> None:
        self.task = task
        self.requirements = tuple(requirements)
        self.section = section
        self.points = float(points)
        self.allow_calls = allow_calls
        self._result: Result | None = None

    @property
    def result(self) -> Result:
        """The result of the last check (a not-passed result before any)."""
        return self._result or Result(False, text("scenario.not_checked"), self.points)

    def check(self, scenario: Scenario | Iterable[Step] | None) -> Result:
        """Run `scenario` on the live kernel and check every requirement against its trace."""
        self._result = self._check(scenario)
        return self._result

    def _check(self, scenario: Any) -> Result:
        built = self._scenario(scenario)
        if isinstance(built, Result):
            return built
        try:
            trace = closekit.run(built)
        except CloseKitError as e:
            return Result(False, text("scenario.did_not_run", error=e), self.points)
        lines, passed = [], True
        for r in self.requirements:
            holds, seen = r.judge(trace)
            passed &= holds
            said = r.text if holds else text("scenario.unmet", requirement=r.text, seen=seen)
            lines.append(f"{'✔' if holds else '✘'} {said}")
        see = text("predict.see", section=self.section) if self.section and not passed else ""
        head = text("scenario.done") if passed else text("scenario.not_yet")
        return Result(passed, f"{head}{see}\n" + "\n".join(lines), self.points, trace)

    def _scenario(self, scenario: Any) -> Scenario | Result:
        def fail(message: str) -> Result:
            return Result(False, message, self.points)

        if scenario is None:
            return fail(text("scenario.not_answered"))
        if isinstance(scenario, str):
            return fail(text("scenario.a_name", name=repr(scenario)))
        if isinstance(scenario, Step):
            scenario = (scenario,)
        if isinstance(scenario, list | tuple):
            if not scenario:
                return fail(text("scenario.no_steps"))
            try:
                scenario = Scenario("yours", self.task, steps=tuple(scenario))
            except CloseKitError as e:
                return fail(text("scenario.cannot_run", error=e))
        if not isinstance(scenario, Scenario):
            return fail(text("scenario.wrong_type", type=type(scenario).__name__))
        if not self.allow_calls and any(isinstance(s, Call) for s in iter_steps(scenario.steps)):
            return fail(text("scenario.no_calls"))
        return scenario
