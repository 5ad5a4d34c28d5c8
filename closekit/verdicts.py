"""Time-free views of a trace for notebooks: what happened, in order, without clocks or ports.

A notebook's stored outputs are compared by nbval on every CI run, so they may only contain what
the kernel does the same way every time: calls and their results, segments with relative
sequence numbers, states. Durations appear only as coarse categories ("at once", "≈ 1.0 s").
"""

from __future__ import annotations

from closekit.claims import Verdict, by_section, duration, judge
from closekit.trace import Trace
from closekit.transcript import story

__all__ = ["duration", "section_verdicts", "story"]


def section_verdicts(section: str, trace: Trace) -> list[Verdict]:
    """Judge every claim of `section` whose scenario is the one `trace` ran."""
    return [judge(c, trace) for c in by_section(section) if c.scenario_name == trace.scenario]
