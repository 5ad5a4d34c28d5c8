"""The notebook's side of the lab: one warm helper process per Python process, started lazily.

Requests are serialised by a lock, so threads may share the lab. Everything the helper answers is
a JSON frame, and a trace is rebuilt with Trace.from_dict, which checks every field: nothing the
helper (or an experiment behind it) sends is executed. If a request is interrupted (Ctrl-C, a
notebook's interrupt) the helper is killed with everything it started, and the next request
starts a new one.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

from closekit import errors
from closekit.errors import ProtocolError
from closekit.sandbox.protocol import read_frame, write_frame

if TYPE_CHECKING:
    from closekit.scenario import Scenario
    from closekit.trace import Trace

SANDBOX_ENV = "CLOSEKIT_SANDBOX"
# A directory: where set, every trace a process gets is added to PID.jsonl there, a JSON line each. The test
# suite sets it, to show beside a notebook's cell whose output differed the timed run behind it (tests/conftest.py).
RUN_LOG_ENV = "CLOSEKIT_RUN_LOG"


class Lab:
    """A handle on the helper process; `run` sends it a scenario and returns the Trace."""

    def __init__(self, sandbox: str | None = None) -> None:
        self.sandbox = sandbox
        self.info: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False  # the helper running has said it is ready
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        with self._lock:
            self._ensure_started()
        return self.info["mode"]

    def start(self) -> None:
        """Start the helper if none is running, without waiting for it: it boots while the caller works."""
        with self._lock:
            if self._process is None or (self._ready and self._process.poll() is not None):
                self._spawn()

    def run(self, scenario: Scenario) -> Trace:
        from closekit.lang import current
        from closekit.sandbox.cpu import one_cpu
        from closekit.scenario import Scenario
        from closekit.trace import Trace

        if not isinstance(scenario, Scenario):
            raise errors.ScenarioError(f"Lab.run() takes a closekit.Scenario, not {type(scenario).__name__}")
        data = Scenario.remembered(scenario.to_dict()).to_dict()  # checked, whatever was done to the object
        with self._lock:
            self._ensure_started()
            with one_cpu(None) as cpu:  # the helper runs the experiment on it too: closekit.sandbox.cpu
                reply = self._ask({"op": "run", "scenario": data, "lang": current(), "cpu": cpu})
        if not isinstance(reply.get("trace"), dict):
            raise errors.ExperimentError("the lab's helper answered without a trace")
        trace = Trace.from_dict(reply["trace"])
        log = os.environ.get(RUN_LOG_ENV)
        if log:
            _log_run(log, reply["trace"])
        return trace

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._ensure_started()
            stats = self._ask({"op": "stats"}).get("stats")
        if not isinstance(stats, dict) or not all(isinstance(v, int) for v in stats.values()):
            raise errors.ExperimentError("the lab's helper answered stats that are not counts")
        return stats

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # ---- the helper process --------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._process is None or (self._ready and self._process.poll() is not None):
            self._spawn()  # none yet, or it died since the last request: start afresh, quietly
        if not self._ready:
            self._await_ready()

    def _spawn(self) -> None:
        self._stop()
        self._ready = False
        self._process = subprocess.Popen(
            [sys.executable, "-P", "-s", "-m", "closekit.sandbox.helper"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, cwd="/",
            env=helper_environment(self.sandbox or os.environ.get(SANDBOX_ENV)),
            start_new_session=True,  # a Ctrl-C meant for the notebook is handled here, not in it
        )  # fmt: skip

    def _await_ready(self) -> None:
        try:
            ready = self._ask()  # its first word, unasked
        except errors.CloseKitError:
            self._stop()  # (it said why it cannot run; the next request starts afresh)
            raise
        info = ready.get("ready")
        if not isinstance(info, dict) or not isinstance(info.get("mode"), str):
            self._stop()
            raise errors.SandboxUnavailableError("the lab's helper did not say it was ready")
        self.info = info
        self._ready = True

    def _ask(self, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send `request` (if any) and take the helper's answer. Interrupted anywhere in between (Ctrl-C),
        the helper is stopped: a request half written, or an answer left unread, would put it out of step
        with the next request, which would get this one's answer."""
        assert self._process is not None and self._process.stdin is not None and self._process.stdout is not None
        try:
            if request is not None:
                write_frame(self._process.stdin, request)
            reply = read_frame(self._process.stdout.fileno())
        except BrokenPipeError:
            code = self._ended()
            raise errors.ExperimentError(
                f"the lab's helper process had ended ({code}); run the experiment again to start a new one"
            ) from None
        except EOFError:
            code = self._ended()
            raise errors.ExperimentError(
                f"the lab's helper process ended ({code}); the next experiment starts a new one"
            ) from None
        except ProtocolError as e:
            self._stop()
            raise errors.ExperimentError(str(e)) from None
        except BaseException:  # KeyboardInterrupt mid-experiment: leave nothing behind
            self._stop()
            raise
        if not isinstance(reply, dict):
            self._stop()
            raise errors.ExperimentError("the lab's helper answered something that is not a message")
        if reply.get("ok") is False:
            self._raise(reply.get("error"), reply.get("message"))
        return reply

    def _ended(self) -> str:
        """How the helper ended (it is reaped here, so the status is known, never 'None')."""
        process = self._process
        self._stop()
        if process is None or process.returncode is None:
            return "status unknown"
        code = process.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

    @staticmethod
    def _raise(name: Any, message: Any) -> None:
        cls = getattr(errors, name, errors.ExperimentError) if isinstance(name, str) else errors.ExperimentError
        if not (isinstance(cls, type) and issubclass(cls, errors.CloseKitError)):
            cls = errors.ExperimentError
        raise cls(str(message)[:4000] if message is not None else "the lab reported an error without a message")

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)  # its experiments end with it (their init's pipe closes)
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def _log_run(directory: str, trace: dict[str, Any]) -> None:
    """Add the trace to DIRECTORY/PID.jsonl (RUN_LOG_ENV). A log that cannot be written is left out: it is
    no part of the experiment."""
    import json

    try:
        with open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(trace) + "\n")
    except OSError:
        pass


def helper_environment(sandbox: str | None) -> dict[str, str]:
    """The helper's whole environment, made afresh rather than copied from the notebook's.

    Every process of an experiment is forked from the helper, and a forked process keeps its
    ancestor's environment block (what /proc/self/environ shows once a process makes itself dumpable,
    whatever os.environ says): the helper is exec'd with this block so that the notebook's variables
    (JUPYTERHUB_API_TOKEN, an instructor's cloud credentials under autograde) are in none of them.
    """
    import closekit

    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.path.dirname(os.path.dirname(closekit.__file__)),
    }
    if sandbox is not None:
        env[SANDBOX_ENV] = sandbox
    return env


_default: Lab | None = None
_default_lock = threading.Lock()


def default_lab() -> Lab:
    """The process-wide lab (one warm helper), created on first use and stopped at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Lab()
            atexit.register(_default.close)
        return _default
