"""Write the scenario: the student builds a Scenario, the checker runs it and asks the trace for a property.

A Requirement is a sentence and a pure test of a Trace that returns None when it holds, else what
was seen instead; so the message a student reads names what the kernel did, not a hidden answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import closekit
from closekit import query as q
from closekit.errors import CloseKitError
from closekit.exercises.results import Result
from closekit.scenario import Call, Scenario, Step
from closekit.trace import Trace


@dataclass(frozen=True)
class Requirement:
    """A property of a trace: `test(trace)` is None when it holds, else a description of what was seen."""

    text: str
    test: Callable[[Trace], str | None]
    needs_capture: bool = True

    def judge(self, trace: Trace) -> tuple[bool, str]:
        """(holds, what was seen), refusing to say "holds" about segments nobody could see."""
        if self.needs_capture and not trace.captured:
            return False, f"cannot be checked in mode {trace.mode}: the segments were not captured"
        seen = self.test(trace)
        return seen is None, "it holds" if seen is None else seen


def _closes(trace: Trace, side: str) -> list[Any]:
    return [c for c in q.calls(trace, side, "close") if not c.failed]


def close_sends_no_fin(side: str = "client") -> Requirement:
    """`side` calls close() and its TCP sends no FIN at all (an abortive close)."""

    def test(trace: Trace) -> str | None:
        if not _closes(trace, side):
            return f"the {side} never called close() (successfully)"
        fin = q.first(trace, "FIN", side)
        if fin is not None:
            return f"the {side} sent a FIN ({fin.tcpdump_flags} {fin.seq}:{fin.seq + fin.len}({fin.len}))"
        return None

    return Requirement(f"the {side} calls close() and sends no FIN at all", test)


def close_blocks(side: str = "client", low: float = 0.8, high: float = 1.5) -> Requirement:
    """One of `side`'s close() calls blocks between `low` and `high` seconds."""

    def test(trace: Trace) -> str | None:
        closes = q.calls(trace, side, "close")
        if not closes:
            return f"the {side} never called close()"
        longest = max(c.duration for c in closes)
        if low <= longest <= high:
            return None
        return f"the {side}'s close() returned after {longest:.2f} s"

    return Requirement(f"the {side}'s close() blocks between {low} and {high} s", test, needs_capture=False)


def receives_all(side: str, nbytes: int) -> Requirement:
    """`side` reads exactly `nbytes` and no read fails."""

    def test(trace: Trace) -> str | None:
        got, error = q.received(trace, side), q.recv_error(trace, side)
        if got == nbytes and error is None:
            return None
        return f"the {side} received {got:,} of {nbytes:,} bytes" + (f", then {error}" if error else "")

    return Requirement(f"the {side} receives all {nbytes:,} bytes", test, needs_capture=False)


def no_rst() -> Requirement:
    """Nobody sends an RST."""

    def test(trace: Trace) -> str | None:
        rst = q.first(trace, "RST")
        return None if rst is None else f"the {rst.src} sent an RST"

    return Requirement("no RST is sent", test)


def all_of(*requirements: Requirement) -> Requirement:
    """Every one of `requirements` holds."""

    def test(trace: Trace) -> str | None:
        seen = [r.judge(trace)[1] for r in requirements if not r.judge(trace)[0]]
        return "; ".join(seen) or None

    return Requirement(" and ".join(r.text for r in requirements), test, any(r.needs_capture for r in requirements))


class WriteScenario:
    """A task: write a scenario whose live trace has every property in `requirements`.

    `check()` takes a closekit.Scenario or just its steps; own functions (`steps.call`) are refused
    unless `allow_calls`, so that a property is shown by the socket calls the chapter teaches.
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
        return self._result or Result(False, "not checked yet: write your scenario, then call .check(it)", self.points)

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
            return Result(False, f"your scenario did not run to its end: {e}", self.points)
        lines, passed = [], True
        for r in self.requirements:
            holds, seen = r.judge(trace)
            passed &= holds
            lines.append(f"{'✔' if holds else '✘'} {r.text}" + ("" if holds else f": {seen}"))
        see = f" See {self.section}." if self.section and not passed else ""
        head = "Your scenario does it." if passed else "Not yet."
        return Result(passed, f"{head}{see}\n" + "\n".join(lines), self.points, trace)

    def _scenario(self, scenario: Any) -> Scenario | Result:
        def fail(message: str) -> Result:
            return Result(False, message, self.points)

        if scenario is None:
            return fail("not answered yet: build your scenario (or its steps), then check it")
        if isinstance(scenario, str):
            return fail(
                f"{scenario!r} is a name; this task wants your own scenario: a closekit.Scenario or a tuple "
                "of steps from closekit.steps"
            )
        if isinstance(scenario, Step):
            scenario = (scenario,)
        if isinstance(scenario, list | tuple):
            if not scenario:
                return fail("your scenario has no steps yet: give at least one step from closekit.steps")
            try:
                scenario = Scenario("yours", self.task, steps=tuple(scenario))
            except CloseKitError as e:
                return fail(f"that scenario cannot run: {e}")
        if not isinstance(scenario, Scenario):
            return fail(
                f"expected a closekit.Scenario or a tuple of steps from closekit.steps, not {type(scenario).__name__}"
            )
        if not self.allow_calls and any(isinstance(s, Call) for s in scenario.steps):
            return fail("this task is about the socket calls the chapter teaches: call() steps are not allowed here")
        return scenario
