"""The outcome of a teardown, read from a trace: bytes each side received, resets, TIME_WAIT, blocking closes.

A pure function of the Trace, so the same words describe a recipe, a scenario or a student's code.
"""

from __future__ import annotations

from dataclasses import dataclass

from closekit import query as q
from closekit.lang import text, word
from closekit.query import received, recv_error
from closekit.trace import Trace

__all__ = ["Outcome", "outcome", "received", "recv_error"]


@dataclass(frozen=True)
class Outcome:
    """What a teardown achieved, in the terms the course uses."""

    received: dict[str, int]  # bytes each side's recv() calls returned (counting those before an error)
    recv_errors: dict[str, str]  # the errno of the first failing recv() per side
    rst_from: tuple[str, ...]  # endpoints that sent an RST
    time_wait: tuple[str, ...]  # endpoints that ended in TIME_WAIT
    close_seconds: dict[str, float]  # the longest close() per side
    captured: bool = True

    def line(self) -> str:
        """One sentence: 'server received 1,000,000 bytes; no RST; TIME_WAIT on the client'."""

        def sides(names: tuple[str, ...]) -> str:
            return text("outcome.sides_and").join(word("side", s) for s in names)

        parts = []
        for side, n in self.received.items():
            error = self.recv_errors.get(side)
            then = text("words.then", error=error) if error else ""
            parts.append(text("outcome.received", side=word("side", side), count=n) + then)
        if self.captured and self.rst_from:
            parts.append(text("outcome.rst_from", sides=sides(self.rst_from)))
        elif self.captured:
            parts.append(text("outcome.no_rst"))
        if self.time_wait:
            parts.append(text("outcome.time_wait", sides=sides(self.time_wait)))
        else:
            parts.append(text("outcome.no_time_wait"))
        slow = [
            text("outcome.blocked", side=word("side", side), seconds=seconds)
            for side, seconds in self.close_seconds.items()
            if seconds >= 0.1
        ]
        return text("outcome.separator").join(parts + slow)


def outcome(trace: Trace) -> Outcome:
    """Summarise what the teardown in `trace` did."""
    sides = [s for s in ("client", "server") if s in trace.sides] + [
        s for s in trace.sides if s not in ("client", "server")
    ]
    reading = [s for s in sides if trace.syscalls(s, "recv")]
    errors = {s: e for s in reading if (e := recv_error(trace, s))}
    closes: dict[str, float] = {}
    for c in q.calls(trace, None, "close"):
        closes[c.side] = max(closes.get(c.side, 0.0), c.waited)
    return Outcome(
        received={s: received(trace, s) for s in reading},
        recv_errors=errors,
        rst_from=tuple(s for s in ("client", "server") if q.first(trace, "RST", s) is not None),
        time_wait=tuple(s for s in ("client", "server") if "TIME_WAIT" in trace.states(s)),
        close_seconds=closes,
        captured=trace.captured,
    )
