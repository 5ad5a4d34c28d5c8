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


class TimeLimitError(ExperimentError):
    """A scenario ran past its time limit (time the machine kept the lab from the CPU not counted, up to
    the limit again): the lab stopped it; says which lines were still running."""


class ProcessEndedError(ExperimentError):
    """A process of the experiment ended (exited, or was killed) while it still had lines to run."""


class SandboxUnavailableError(CloseKitError, RuntimeError):
    """The requested sandbox mode is not possible on this machine."""


class TraceFormatError(CloseKitError, ValueError):
    """Trace data (JSON from a file or from the lab's helper) that does not follow the trace schema."""


class ExerciseError(CloseKitError, ValueError):
    """An exercise was used the wrong way (unknown choice, changed prediction …): says what is expected."""


class NotHereError(ScenarioError):
    """A scenario needs what this machine's lab mode cannot give (the lab's wire, settings of its own)."""


class ProtocolError(ExperimentError):
    """A process of the lab sent something that is not a message of the lab's protocol (JSON of a fixed
    schema, within a size limit): code in an experiment wrote to the lab's channel."""


class ParentGone(ExperimentError):
    """The lab's helper found its parent gone (a notebook kernel restarted) while an experiment ran."""


class LimitReached(CloseKitError):
    """Inside an endpoint process: a resource limit of the sandbox stopped the step. Reported by name
    (closekit.sandbox.protocol.LIMITS), with the scenario's function that hit it and, for a result
    too long, its length; the helper words it in the notebook's language."""

    def __init__(self, limit: str, function: str | None = None, length: int | None = None) -> None:
        super().__init__(limit)
        self.limit, self.function, self.length = limit, function, length


class UsageError(CloseKitError):
    """A `closekit` command line that cannot be carried out as given (checked before anything runs)."""


class EditionDriftError(CloseKitError, ValueError):
    """A translated chapter's code cells no longer pair up one to one with its original's (cells were
    added or removed): a translator has to write the words for them (closekit.book.editions.sync_code)."""


class BuildError(CloseKitError, RuntimeError):
    """The book could not be built: Sphinx failed, or the output folder is not one the build may overwrite."""


class LanguageError(CloseKitError, ValueError):
    """A language closekit does not speak (CLOSEKIT_LANG, --lang): names the languages it does."""


class MessageError(CloseKitError, KeyError):
    """A message the current language's catalog (closekit/lang/*.toml) lacks: a gap in a translation."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def text(key: str, /, **fields: object) -> str:
    """The message `key` of closekit/lang's catalogs in the course's language (closekit.lang.text),
    imported when it is first called: a refusal is worded as it is raised, so importing closekit, or
    building a scenario, reads no catalog."""
    from closekit.lang import text as worded

    return worded(key, **fields)
