"""Write the scenario: the student builds a Scenario, the checker runs it and asks the trace for a property.

A Requirement is a sentence and a pure test of a Trace that returns None when it holds, else what
was seen instead; so the message a student reads names what the kernel did, not a hidden answer.

A verdict rests on what the lab observed itself (the segments on the wire, the states sock_diag
reported) or on the calls of processes that ran no code of the student's. A process that ran a
function (a call() step) may have rewritten the code that records its calls, so a requirement that
reads a process's calls says it cannot judge when that process's records are marked forgeable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import closekit
from closekit import query as q
from closekit.claims import NEEDS, STATES, SYSCALLS, observed
from closekit.errors import CloseKitError, NotHereError
from closekit.exercises.results import Result, pending
from closekit.lang import text, word
from closekit.scenario import Scenario
from closekit.steps import Call, Step, iter_steps
from closekit.trace import StateChange, Trace


@dataclass(frozen=True)
class Requirement:
    """A property of a trace: `test(trace)` is None when it holds, else a description of what was seen.

    `needs` is what the test must see (closekit.claims.NEEDS: "syscalls", "states", "segments",
    "counters"); a test reads segments and counters where the mode recorded them and the sockets'
    states otherwise, so most requirements need only calls and states, which every mode sees.
    `reads`: the processes whose own records of their calls the test reads."""

    text: str
    test: Callable[[Trace], str | None]
    needs: frozenset[str] = frozenset({SYSCALLS, STATES})
    reads: tuple[str, ...] = ()

    def judge(self, trace: Trace) -> tuple[bool | None, str]:
        """(holds, what was seen); holds is None where the mode does not observe what the test needs:
        nothing is said about what nobody could see. Calls reported by a process that ran code of its
        own are no evidence: the requirement is not met."""
        missing = [n for n in self.needs if n not in observed(trace)]
        if missing:
            return None, text("checks.not_seen", mode=trace.mode, missing=", ".join(NEEDS[n] for n in missing))
        forged = next((side for side in self.reads if any(c.forgeable for c in trace.syscalls(side))), None)
        if forged is not None:
            return False, text("checks.forgeable", side=word("side", forged))
        seen = self.test(trace)
        return seen is None, text("checks.holds") if seen is None else seen


def _closes(trace: Trace, side: str) -> list[Any]:
    return [c for c in q.calls(trace, side, "close") if not c.failed]


def close_aborts(side: str = "client") -> Requirement:
    """`side`'s close() aborts an established connection: it sends an RST, no FIN (the kernel's
    abort: SO_LINGER {1, 0}, or unread data). A close() that sends nothing because another process
    still holds the socket, or because there was no connection yet, does not count."""

    def test(trace: Trace) -> str | None:
        closes = _closes(trace, side)
        if not closes:
            return text("checks.never_closed_ok", side=word("side", side))
        c = closes[0]
        endpoint = trace.endpoint_of(c.side)
        state = q.state_before(trace, endpoint, c.t, q.conn_of(trace, c))
        if state in (None, "SYN_SENT", "CLOSED", "LISTEN"):
            return text("checks.no_connection", side=word("side", side), state=state or "?")
        sent = q.ended_with(trace, c)
        if sent == "FIN":
            return text("checks.sent_fin", side=word("side", side))
        if sent == "nothing":
            holders = [f.result for f in q.calls_on(trace, endpoint, "fork") if f.t < c.t and isinstance(f.result, str)]
            if holders:
                return text("checks.still_held", side=word("side", side), holders=", ".join(holders))
            return text("checks.sent_nothing", side=word("side", side), state=state)
        return None

    return Requirement(text("checks.aborts", side=word("side", side)), test, reads=(side,))


def close_blocks(side: str = "client", low: float = 0.8, high: float = 1.5) -> Requirement:
    """One of `side`'s close() calls sleeps between `low` and `high` seconds until its SO_LINGER time
    runs out: its FIN still unacknowledged when it returns (the socket still in FIN_WAIT_1)."""

    def test(trace: Trace) -> str | None:
        closes = q.calls(trace, side, "close")
        if not closes:
            return text("checks.never_closed", side=word("side", side))
        c = max(closes, key=lambda x: x.waited)
        if not low <= c.waited <= high or not q.slept(c):
            return text("checks.close_took", side=word("side", side), seconds=c.waited)
        lg = q.linger_at(trace, trace.endpoint_of(c.side), c.t)
        if lg is None or not lg.on or lg.seconds == 0:
            return text("checks.no_linger_time", side=word("side", side))
        state = q.state_at(trace, trace.endpoint_of(c.side), q.end(c), q.conn_of(trace, c))
        if state != "FIN_WAIT_1" or c.waited < 0.95 * lg.seconds:
            return text("checks.acked_first", side=word("side", side), state=state or "?", linger=lg.seconds)
        return None

    requirement = text("checks.close_blocks", side=word("side", side), low=low, high=high)
    return Requirement(requirement, test, reads=(side,))


def receives_all(side: str, nbytes: int) -> Requirement:
    """`side` reads exactly `nbytes` and no read fails."""

    def test(trace: Trace) -> str | None:
        got, error = q.received(trace, side), q.recv_error(trace, side)
        if got == nbytes and error is None:
            return None
        then = text("words.then", error=error) if error else ""
        return text("checks.received", side=word("side", side), got=got, total=nbytes) + then

    words = text("checks.receives_all", side=word("side", side), total=nbytes)
    return Requirement(words, test, frozenset({SYSCALLS}), reads=(side,))


_ABORTABLE = ("SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSING")


def no_rst() -> Requirement:
    """Nobody sends an RST: none on the wire, or, where segments were not captured, no socket that
    went straight to CLOSED from a state only an RST leaves that way."""

    def test(trace: Trace) -> str | None:
        if trace.captured:
            rst = q.first(trace, "RST")
            return None if rst is None else text("checks.sent_rst", side=word("side", rst.src))
        for side in ("client", "server"):
            for conn in {e.conn for e in trace.events if isinstance(e, StateChange) and e.side == side and e.conn}:
                path = trace.states(side, conn)
                for before, after in itertools.pairwise(path):
                    if after == "CLOSED" and before in _ABORTABLE:
                        return text("checks.reset_state", side=word("side", side), state=before)
        return None

    return Requirement(text("checks.no_rst"), test)


def knows_delivery(side: str = "client") -> Requirement:
    """`side` learns that its peer has read everything before it closes: shutdown(SHUT_WR), then
    reads until the peer's end of stream (which the peer sends once it has read to the end), then
    close(). A close() that happens to lose nothing, but tells `side` nothing, does not count."""

    def test(trace: Trace) -> str | None:
        sh = next((c for c in q.calls(trace, side, "shutdown") if c.args.get("how") in ("SHUT_WR", "SHUT_RDWR")), None)
        if sh is None:
            return text("checks.no_shutdown", side=word("side", side))
        reads = [c for c in q.calls(trace, side) if c.call == "recv" and c.t >= q.end(sh) and not c.errno]
        eof = next((c for c in reads if c.result == 0 or c.args.get("until") == "EOF"), None)
        if eof is None:
            return text("checks.no_eof", side=word("side", side))
        closes = [c for c in _closes(trace, side) if c.t >= q.end(eof)]
        early = [c for c in _closes(trace, side) if c.t < q.end(eof)]
        if early or not closes:
            return text("checks.closed_early", side=word("side", side))
        peer = q.peer(trace.endpoint_of(side))
        loop = q.call(trace, peer, q.READ_TO_EOF)
        ended = next((c for c in q.calls_on(trace, peer) if c.call in ("close", "shutdown") and c.t < q.end(eof)), None)
        if loop is None or ended is None or ended.t < q.end(loop):
            return text("checks.peer_not_done", peer=word("side", peer))
        return None

    return Requirement(text("checks.knows", side=word("side", side)), test, frozenset({SYSCALLS}))


def all_of(*requirements: Requirement) -> Requirement:
    """Every one of `requirements` holds."""

    def test(trace: Trace) -> str | None:
        seen = [what for held, what in (r.judge(trace) for r in requirements) if not held]
        return text("checks.separator").join(seen) or None

    joined = text("checks.and").join(r.text for r in requirements)
    reads = tuple(dict.fromkeys(side for r in requirements for side in r.reads))
    return Requirement(joined, test, frozenset().union(*(r.needs for r in requirements)), reads)


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
        except NotHereError as e:  # this machine's lab lacks what the scenario needs: kept, not failed
            return pending(text("scenario.saved", seen=e), self.points, None)
        except CloseKitError as e:
            return Result(False, text("scenario.did_not_run", error=e), self.points)
        judged = [(r, *r.judge(trace)) for r in self.requirements]
        unseen = [seen for _r, holds, seen in judged if holds is None]
        if unseen:  # not marked wrong for what this machine cannot see: kept, to be graded where the lab runs
            return pending(text("scenario.saved", seen=text("checks.separator").join(unseen)), self.points, trace)
        passed = all(holds for _r, holds, _seen in judged)
        lines = [
            f"{'✔' if holds else '✘'} " + (r.text if holds else text("scenario.unmet", requirement=r.text, seen=seen))
            for r, holds, seen in judged
        ]
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
