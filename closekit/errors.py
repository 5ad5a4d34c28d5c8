"""The one exception hierarchy of closekit: every message says what was wrong and what is allowed."""


class CloseKitError(Exception):
    """Base class of every error closekit raises on purpose."""


class ScenarioError(CloseKitError, ValueError):
    """A scenario (or one of its steps) is invalid; raised before anything runs."""


class UnknownScenarioError(ScenarioError, KeyError):
    """A built-in scenario name that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class SyncTimeoutError(CloseKitError, TimeoutError):
    """A sync point was not met in time: says what was awaited and what was seen."""


class ExperimentError(CloseKitError, RuntimeError):
    """An experiment could not run to its end (helper died, time limit, sandbox failure)."""


class SandboxUnavailableError(CloseKitError, RuntimeError):
    """The requested sandbox mode is not possible on this machine."""


class TraceFormatError(CloseKitError, ValueError):
    """Trace data (JSON from a file or from the lab's helper) that does not follow the trace schema."""


class NotHereError(ScenarioError):
    """A scenario needs what this machine's lab mode cannot give (the lab's wire, settings of its own)."""
