"""The lab's helper process: lives in its own user + network namespace and runs experiments.

Started by closekit.sandbox.client with pipes on stdin/stdout. It decides the mode once, answers
("ready", info), then runs one scenario per request. In netns mode every experiment gets a
fresh network namespace, prepared (loopback up, packet socket open) while the helper waits for
the next request, so a request does not pay for it. It exits when its parent goes away.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

from closekit.errors import CloseKitError
from closekit.sandbox.channel import read_frame, write_frame
from closekit.sandbox.endpoint import die_with_parent, keep_only
from closekit.sandbox.namespace import (
    configure_namespace,
    enter_pid_namespace,
    enter_user_namespace,
    new_network_namespace,
)
from closekit.sandbox.orchestrator import Environment, ParentGone, reap_children, run_scenario

PR_SET_CHILD_SUBREAPER = 36
FORCED_MODES = ("netns", "host", "host-nocapture")


def choose_mode(forced: str | None) -> tuple[str, list[str]]:
    """Enter the best sandbox this machine allows; returns the mode and why better ones failed."""
    why: list[str] = []
    if forced not in (None, "", "netns", "auto") and forced not in FORCED_MODES:
        raise CloseKitError(f"CLOSEKIT_SANDBOX={forced!r} is not one of auto, {', '.join(FORCED_MODES)}")
    if forced in (None, "", "auto", "netns"):
        try:
            enter_user_namespace()
            configure_namespace()
            return "netns", why
        except OSError as e:
            if forced == "netns":
                raise CloseKitError(f"CLOSEKIT_SANDBOX=netns, but this machine refuses user namespaces: {e}") from e
            why.append(f"no user+network namespace ({e.strerror or e})")
    if forced != "host-nocapture":
        try:
            from closekit.sandbox.capture import Capture

            Capture().close()
            return "host", why
        except OSError as e:
            if forced == "host":
                raise CloseKitError(f"CLOSEKIT_SANDBOX=host, but packet capture is refused: {e}") from e
            why.append(f"no packet capture ({e.strerror or e})")
    return "host-nocapture", why


def unobserved_in(mode: str) -> tuple[str, ...]:
    if mode == "netns":
        return ()
    missing = ["TCP MIB counters (shared with the whole host)"]
    if mode == "host-nocapture":
        missing.insert(0, "segments on the wire (no packet capture)")
    return tuple(missing)


def prepare(mode: str, kernel: str, fresh_namespace: bool, parent: int) -> Environment:
    from closekit.sandbox.capture import Capture
    from closekit.sandbox.diag import Diag

    if fresh_namespace:
        new_network_namespace()
    capture = Capture() if mode != "host-nocapture" else None
    return Environment(
        mode=mode, kernel=kernel, diag=Diag(), capture=capture, unobserved=unobserved_in(mode), parent=parent
    )


class Closer:
    """A child process that closes packet sockets for the helper.

    Closing a packet socket waits for an RCU grace period (~8 ms). The helper hands each old
    capture's descriptor to this process and drops its own copy at once, so the wait happens
    here, beside the next experiment instead of before it.
    """

    def __init__(self) -> None:
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # EOF when we go
        parent = os.getpid()
        if os.fork() == 0:
            die_with_parent(parent)
            keep_only({theirs.fileno()})
            while True:
                message, fds, _flags, _address = socket.recv_fds(theirs, 1, 64)
                if not message:
                    os._exit(0)
                for fd in fds:
                    os.close(fd)
        theirs.close()

    def retire(self, env: Environment) -> None:
        env.diag.close()
        if env.capture is not None:
            socket.send_fds(self._channel, [b"c"], [env.capture.fileno()])
            env.capture.close()


def main() -> None:
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt stops
    requests, replies = sys.stdin.fileno(), sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply pipe
    kernel = os.uname().release
    try:
        mode, why = choose_mode(os.environ.get("CLOSEKIT_SANDBOX"))
        if mode == "netns":
            enter_pid_namespace()  # the descriptor it returns lives as long as the helper
        env = prepare(mode, kernel, fresh_namespace=False, parent=requests)
    except CloseKitError as e:
        write_frame(replies, ("error", type(e).__name__, str(e)))
        return
    write_frame(replies, ("ready", {"mode": mode, "kernel": kernel, "why": why, "pid": os.getpid()}))
    closer = Closer()
    while True:
        try:
            request = read_frame(requests)
        except EOFError:
            return
        kind, payload = request
        if kind == "stats":
            write_frame(replies, ("ok", _stats()))
            continue
        try:
            write_frame(replies, ("ok", run_scenario(payload, env)))
        except ParentGone:
            return  # nobody to answer; the experiment's processes are already stopped
        except CloseKitError as e:
            write_frame(replies, ("error", type(e).__name__, str(e)))
        reap_children()
        if mode == "netns":  # the next experiment gets a new namespace, made now while we wait
            closer.retire(env)
            env = prepare(mode, kernel, fresh_namespace=True, parent=requests)


def _stats() -> dict[str, int]:
    """Counts a leak test compares: this helper's open fds and child processes."""
    reap_children()
    children = 0
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            children += len(f.read().split())
    return {"fds": len(os.listdir("/proc/self/fd")), "children": children}


if __name__ == "__main__":
    main()
