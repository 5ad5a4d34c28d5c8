"""Traces of the built-in scenarios that need the lab's wire or settings of their own, recorded on a
machine that has them, for the machines that do not (Binder, Docker: no user namespaces, no TUN).

closekit.run(name) returns one of these where the lab cannot run `name`, marked as recorded
(`Trace.recorded` says on which kernel, when, and why it was not run live), so a chapter still
shows the real experiment and says plainly that it is not from this machine. The tests run every
recorded scenario live and compare: a recording the kernel would no longer give fails the suite.

    python -m closekit.recorded          # re-record them (needs mode netns)
"""

from __future__ import annotations

import datetime
import json
from importlib import resources
from pathlib import Path

from closekit.errors import text
from closekit.scenario import Scenario
from closekit.trace import Trace

DIRECTORY = Path(__file__).parent


def recordable(scenario: Scenario) -> bool:
    """A built-in scenario some mode cannot run."""
    return any(scenario.missing_in(mode) for mode in ("netns-loopback", "host", "host-nocapture"))


def load(name: str, why: str) -> Trace | None:
    """The recorded trace of built-in scenario `name`, marked with `why` it is not live; None if none."""
    try:
        stored = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    data = json.loads(stored)
    date = data.pop("recorded_on")
    trace = Trace.from_dict(data)
    object.__setattr__(trace, "recorded", text("run.recorded", kernel=trace.kernel, date=date, why=why))
    return trace


def record() -> list[Path]:
    """Run every recordable built-in scenario live and store its trace (without packet bytes)."""
    import closekit

    written = []
    for name, scenario in closekit.scenarios().items():
        if not recordable(scenario):
            continue
        trace = closekit.run(name)
        if trace.mode != "netns":
            raise SystemExit(f"recording needs mode netns; this machine runs mode {trace.mode}")
        data = trace.to_dict()
        data["recorded_on"] = datetime.date.today().isoformat()  # (the kernel is the trace's own)
        path = DIRECTORY / f"{name}.json"
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written
