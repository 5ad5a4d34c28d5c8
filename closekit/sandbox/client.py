"""The parent's side of the lab: one warm helper process per Python process, started lazily.

Requests are serialised by a lock, so threads may share the lab. If a request is interrupted
(Ctrl-C, a notebook's interrupt) the helper is killed with everything it started, and the next
request starts a new one.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from closekit import errors
from closekit.sandbox.channel import read_frame, write_frame
from closekit.scenario import Scenario
from closekit.trace import Trace

SANDBOX_ENV = "CLOSEKIT_SANDBOX"


class Lab:
    """A handle on the helper process; `run` sends it a scenario and returns the Trace."""

    def __init__(self, sandbox: str | None = None) -> None:
        self.sandbox = sandbox
        self.info: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        with self._lock:
            self._ensure_started()
        return self.info["mode"]

    def run(self, scenario: Scenario) -> Trace:
        with self._lock:
            self._ensure_started()
            return self._ask(("run", scenario))

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._ensure_started()
            return self._ask(("stats", None))

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # ---- the helper process --------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._stop()
        env = dict(os.environ)
        if self.sandbox is not None:
            env[SANDBOX_ENV] = self.sandbox
        self._process = subprocess.Popen(
            [sys.executable, "-m", "closekit.sandbox.helper"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
            start_new_session=True,  # a Ctrl-C meant for the notebook is handled here, not in it
        )  # fmt: skip
        self.info = self._receive()

    def _ask(self, request: tuple) -> Any:
        assert self._process is not None and self._process.stdin is not None
        try:
            write_frame(self._process.stdin, request)
        except BrokenPipeError:
            self._stop()
            raise errors.ExperimentError("the lab's helper process had died; run the experiment again") from None
        return self._receive()

    def _receive(self) -> Any:
        assert self._process is not None and self._process.stdout is not None
        try:
            reply = read_frame(self._process.stdout.fileno())
        except EOFError:
            code = self._process.poll()
            self._stop()
            raise errors.ExperimentError(
                f"the lab's helper process died (exit status {code}); the next experiment starts a new one"
            ) from None
        except BaseException:  # KeyboardInterrupt mid-experiment: leave nothing behind
            self._stop()
            raise
        if reply[0] == "error":
            _name, message = reply[1], reply[2]
            self._raise(_name, message)
        return reply[1]

    @staticmethod
    def _raise(name: str, message: str) -> None:
        cls = getattr(errors, name, errors.ExperimentError)
        if not (isinstance(cls, type) and issubclass(cls, errors.CloseKitError)):
            cls = errors.ExperimentError
        raise cls(message)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)  # its endpoints die with it (PDEATHSIG)
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


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
