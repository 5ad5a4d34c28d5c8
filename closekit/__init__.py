"""closekit: live experiments on how a TCP connection is torn down, drawn from what the kernel did.

>>> import closekit
>>> trace = closekit.run("close-unread")
>>> trace.first("RST").src
'server'
"""

from __future__ import annotations

import importlib

from closekit.errors import (
    CloseKitError,
    ExperimentError,
    NotHereError,
    SandboxUnavailableError,
    ScenarioError,
    SyncTimeoutError,
    UnknownScenarioError,
)

TYPE_CHECKING = False  # (not typing's: importing typing would cost more than all of this module)
if TYPE_CHECKING:
    from typing import Any

    from closekit.sandbox.client import Lab
    from closekit.scenario import Options, Scenario
    from closekit.trace import Segment, StateChange, Syscall, Trace

__all__ = [
    "CloseKitError",
    "ExperimentError",
    "NotHereError",
    "Options",
    "SandboxUnavailableError",
    "Scenario",
    "ScenarioError",
    "Segment",
    "StateChange",
    "SyncTimeoutError",
    "Syscall",
    "Trace",
    "UnknownScenarioError",
    "get",
    "lab",
    "run",
    "scenarios",
]  # fmt: skip
__version__ = "0.1.0"
# Loaded on first use (PEP 562), so that `import closekit` stays light: building the step and event
# classes is most of what importing them costs, and the first experiment's helper takes longer anyway.
_LAZY = {"Options": "closekit.scenario", "Scenario": "closekit.scenario", "Segment": "closekit.trace",
         "StateChange": "closekit.trace", "Syscall": "closekit.trace", "Trace": "closekit.trace"}  # fmt: skip
_SUBMODULES = ("link", "scenario", "settings", "steps", "tcp", "trace")  # attributes of closekit as before


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"closekit.{name}")
    else:
        raise AttributeError(f"module 'closekit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


def run(scenario: str | Scenario, lab: Lab | None = None) -> Trace:
    """Run a built-in scenario (by name) or your own Scenario on the real kernel; returns its Trace.

    A built-in scenario this machine cannot run (it needs the lab's wire, and the lab runs in a
    fallback mode) gives the trace recorded when the course was built, marked as such
    (`trace.recorded`); your own scenario is refused with NotHereError, saying what is missing.
    """
    from closekit.sandbox.client import default_lab

    lab = lab or default_lab()
    if isinstance(scenario, str):
        lab.start()  # a first experiment's helper boots while the scenario is looked up
        scenario = get(scenario)
        missing = scenario.missing_words(lab.mode)
        if missing:
            from closekit.errors import text
            from closekit.recorded import load

            recorded = load(scenario.name, text("run.recorded_why", missing=missing, mode=lab.mode))
            if recorded is not None:
                return recorded
    else:
        from closekit.scenario import Scenario

        if not isinstance(scenario, Scenario):
            raise ScenarioError(f"run() takes a scenario name or a closekit.Scenario, not {type(scenario).__name__}")
    return lab.run(scenario)


def get(name: str) -> Scenario:
    """The built-in scenario called `name`."""
    from closekit.library import get as library_get

    return library_get(name)


def scenarios() -> dict[str, Scenario]:
    """Every built-in scenario, by name, in the course's order."""
    from closekit.library import SCENARIOS

    return dict(SCENARIOS)


def lab() -> Lab:
    """The process-wide Lab (its `mode` says how experiments run here)."""
    from closekit.sandbox.client import default_lab

    return default_lab()
