"""The lab's helper process: it lives in its own user namespace and runs experiments on request.

Started by closekit.sandbox.client with pipes on stdin/stdout, which carry length-prefixed JSON
frames (closekit.sandbox.protocol) and nothing else. It chooses its mode once, answers
{"ready": info}, then runs one scenario per request, validating the scenario again before
anything runs. It exits when its parent goes away (its request pipe closes); the experiment
running then ends with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any, BinaryIO

from closekit.errors import CloseKitError, ExperimentError, ParentGone, ProtocolError
from closekit.lang import LANGUAGES, use
from closekit.sandbox.protocol import read_frame, write_frame
from closekit.sandbox.workspace import SANDBOX_ENV, Workspace
from closekit.scenario import Scenario

PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
# What code run in an experiment may import without reading the disk: the private root may hide
# the Python installation from the experiment's user (nobody, when the lab runs as root).
PRELOADED = ("array", "collections", "errno", "fcntl", "functools", "io", "itertools", "json", "math", "random",
             "select", "signal", "socket", "struct", "threading", "time")  # fmt: skip


def main() -> None:
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)  # what escapes an experiment's init comes here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt stops
    requests, replies = sys.stdin.fileno(), sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply pipe
    for name in PRELOADED:
        __import__(name)
    try:
        workspace = Workspace.open(os.environ.get(SANDBOX_ENV))
    except (CloseKitError, OSError) as e:
        write_frame(replies, {"ok": False, "error": "SandboxUnavailableError", "message": str(e)})
        return
    # In the host modes experiments run as the user: none of them may trace the helper or read its memory.
    # (Not before: a process not dumpable may not write its own user namespace's maps.)
    libc.prctl(PR_SET_DUMPABLE, 0)
    write_frame(replies, {"ready": workspace.info()})
    unclean: Exception | None = None  # cleaning up after the last experiment failed: the next request says so
    while True:
        try:
            request = read_frame(requests, "notebook")
        except (EOFError, ProtocolError):
            return
        try:
            reply = handle(workspace, request, requests) if unclean is None else _unclean(unclean)
        except ParentGone:
            return  # nobody to answer; the experiment's processes are already stopped
        try:
            _answer(replies, reply)
        except BrokenPipeError:
            return
        try:
            unclean = None
            workspace.finish()  # the trace is on its way: clean up while the notebook reads it
        except Exception as e:
            unclean = e


def _answer(replies: BinaryIO, reply: dict[str, Any]) -> None:
    """Send a reply; one too large to send is replaced by an error saying so."""
    try:
        write_frame(replies, reply)
    except ProtocolError as e:
        write_frame(replies, _error(ExperimentError(f"the experiment's trace could not be sent: {e}")))


def handle(workspace: Workspace, request: Any, requests: int) -> dict[str, Any]:
    if not isinstance(request, dict) or request.get("op") not in ("run", "stats"):
        return _error(ExperimentError("the lab's helper got a request it does not know"))
    if request["op"] == "stats":
        return {"ok": True, "stats": workspace.stats()}
    try:
        with use(request.get("lang", LANGUAGES[0])):  # the notebook's: a run's errors are worded in it
            scenario = Scenario.remembered(request.get("scenario"))
            trace = workspace.run(scenario, parent=requests, cpu=request.get("cpu"))
    except ParentGone:
        raise
    except CloseKitError as e:
        return _error(e)
    except Exception as e:  # a bug of the lab's own: say so plainly, keep serving
        return _error(ExperimentError(f"the lab failed unexpectedly ({type(e).__name__}: {e})"))
    return {"ok": True, "trace": trace.to_dict(raw=True)}


def _unclean(e: Exception) -> dict[str, Any]:
    return _error(ExperimentError(f"the lab failed to clean up after the last experiment ({type(e).__name__}: {e}); "
                                  "run this one again"))  # fmt: skip


def _error(e: CloseKitError) -> dict[str, Any]:
    return {"ok": False, "error": type(e).__name__, "message": str(e)}


if __name__ == "__main__":
    main()
