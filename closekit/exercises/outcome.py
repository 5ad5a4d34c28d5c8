"""The outcome of a teardown, read from a trace: bytes each side received, resets, TIME_WAIT, blocking closes.

A pure function of the Trace, so the same words describe a recipe, a scenario or a student's code.
"""

from __future__ import annotations

from dataclasses import dataclass

from closekit import query as q
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
        parts = []
        for side, n in self.received.items():
            error = self.recv_errors.get(side)
            parts.append(f"{side} received {n:,} bytes" + (f", then {error}" if error else ""))
        if self.captured:
            parts.append(f"RST from the {' and the '.join(self.rst_from)}" if self.rst_from else "no RST")
        parts.append(f"TIME_WAIT on the {' and the '.join(self.time_wait)}" if self.time_wait else "no TIME_WAIT")
        slow = [f"{side}'s close() blocked ≈ {s:.1f} s" for side, s in self.close_seconds.items() if s >= 0.1]
        return "; ".join(parts + slow)


def outcome(trace: Trace) -> Outcome:
    """Summarise what the teardown in `trace` did."""
    sides = [s for s in ("client", "server") if s in trace.sides] + [
        s for s in trace.sides if s not in ("client", "server")
    ]
    reading = [s for s in sides if trace.syscalls(s, "recv")]
    errors = {s: e for s in reading if (e := recv_error(trace, s))}
    closes: dict[str, float] = {}
    for c in q.calls(trace, None, "close"):
        closes[c.side] = max(closes.get(c.side, 0.0), c.duration)
    return Outcome(
        received={s: received(trace, s) for s in reading},
        recv_errors=errors,
        rst_from=tuple(s for s in ("client", "server") if q.first(trace, "RST", s) is not None),
        time_wait=tuple(s for s in ("client", "server") if "TIME_WAIT" in trace.states(s)),
        close_seconds=closes,
        captured=trace.captured,
    )
