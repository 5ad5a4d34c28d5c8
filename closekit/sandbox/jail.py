"""Where an experiment's processes live, and how they all end together.

In the namespace modes the helper starts one reaper: the first process (init) of a PID namespace
of its own, in a mount namespace whose root is the private root (closekit.sandbox.rootfs). For
each experiment the reaper forks one process per endpoint into that endpoint's network namespace;
every process an experiment makes is its descendant, or is reparented to it, so it reaps them
all and none stays a zombie. Each endpoint process then drops what it may not keep: it takes an
IPC namespace of its own, becomes nobody when the lab runs as root, enters a user namespace of
its own (so it holds no capability over the namespaces the lab configures and may make no more
of its own, and the kernel counts its processes for RLIMIT_NPROC), gives up its capabilities
and takes its resource limits. One that ran only the lab's own code may serve the next
experiment: it waits, idle, on a control channel the helper holds, and the helper hands it the
next experiment there, without the reaper.

Sandboxed code starts with nothing of the notebook's: the helper was exec'd with an environment of
its own (closekit.sandbox.client.helper_environment), so no process forked from it has the
notebook's environment block; its descriptors are the lab's channel and 0, 1, 2 on /dev/null (not
the notebook's terminal or log file); the helper's session has no controlling terminal, and each
endpoint process joins a session keyring of its own (the notebook's keys are out of reach, and
what it adds there goes with it) and is not dumpable (no other process of the experiment may trace
it or read its memory, unless it runs code that makes itself so).

Ending an experiment is the reaper's kill(-1, SIGKILL), which as a PID namespace's init reaches
every process in the namespace, whatever session or process group it made for itself; the reaper
answers once it has reaped them all. It is not dumpable, so nothing in an experiment can ptrace
it, and as a namespace's init it ignores every signal sent from inside. Should it ever not
answer, the helper kills it, and the kernel kills everything in its namespace with it. When the
helper goes, the reaper's channel closes and it exits, ending the namespace the same way.

Without namespaces (modes host and host-nocapture) the reaper is a child subreaper on the host
and ending an experiment kills its tree of descendants; that is weaker (see the README).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import os
import platform
import resource
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from closekit.errors import text
from closekit.sandbox import rootfs
from closekit.sandbox.cpu import pin
from closekit.sandbox.namespace import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    NOBODY,
    setns,
    unshare,
)

PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 4, 38, 36
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "armv7l": 311, "i686": 288, "ppc64le": 271, "s390x": 280}
CLEAR_TIMEOUT = 2.0  # seconds the reaper may take to end an experiment before it is killed itself
PARK_TIMEOUT = 0.5  # seconds an endpoint process may take to close an experiment and go idle
BURY_TIMEOUT = 0.5  # seconds the reaper may take to say that an idle endpoint process it reaped has ended
# An endpoint process retires after REUSE experiments, or sooner once it has spent this share of its CPU-time
# limit (which counts every experiment it served): a fresh pair costs about 14 ms of CPU here (close-default: 0.07 ms
# a run when they retired after 200).
REUSE = 5000
RETIRE_AT = 0.25
MAX_MESSAGE = 256 * 1024
ENDPOINTS = ("client", "server")
IDLE = b'{"idle": true}'  # what an endpoint process says on its control channel once it has gone idle

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """What an experiment may use. Memory, CPU time and file size are per process; processes are
    counted per endpoint (RLIMIT_NPROC in the endpoint's own user namespace; when the lab runs as
    root its experiments run as nobody, so that the limit applies to them too)."""

    processes: int = 16  # per endpoint
    memory: int = 256 * 1024 * 1024  # bytes of address space per process
    cpu_seconds: int = 60
    file_size: int = 4 * 1024 * 1024  # the largest file a process may write
    scratch: int = 16 * 1024 * 1024  # bytes of the private /tmp
    open_files: int = 64

    def describe(self) -> str:
        return (
            f"{self.processes} processes per endpoint, {self.memory >> 20} MiB of memory, {self.cpu_seconds} s of "
            f"CPU and {self.open_files} open files per process, files of at most {self.file_size >> 20} MiB in a "
            f"private /tmp of {self.scratch >> 20} MiB"
        )


@dataclass(frozen=True)
class JailSpec:
    """How to build experiments' processes."""

    private: bool  # the namespace modes: PID, mount, IPC and user namespaces; False: the host
    netns: dict[str, int | None]  # endpoint -> fd of the network namespace it joins (None: stay)
    as_nobody: bool  # the lab runs as root: experiments run as uid/gid 65534
    binds: tuple[str, ...] = ()  # what the private root shows, read-only
    limits: Limits = Limits()


# How the reaper runs endpoints: prepare(scenario dict, addresses dict) once per experiment, in the
# reaper; then, in each endpoint process, run(prepared, process, channel, children).
@dataclass(frozen=True)
class Launcher:
    prepare: Callable[[dict[str, Any], dict[str, str]], Any]
    run: Callable[[Any, str, socket.socket, dict[str, socket.socket]], None]


class Jail:
    """The helper's handle on its reaper."""

    def __init__(self, spec: JailSpec, launcher: Launcher) -> None:
        self.spec = spec
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        first = os.fork()
        if first == 0:
            _guard(lambda: _first(spec, launcher, theirs, pid_w), _reporter(theirs, "failed"))
        theirs.close()
        os.close(pid_w)
        try:
            data = os.read(pid_r, 32)
        finally:
            os.close(pid_r)
            os.waitpid(first, 0)
        if not data:
            report = self._read(block=False) or {}
            self._channel.close()
            raise OSError(
                0, f"the lab's reaper could not be started: {str(report.get('failed', 'no reason given'))[:500]}"
            )
        self.pid = int(data)
        self.ended: dict[str, str] = {}  # process -> how it ended, this experiment
        self.idle: dict[str, socket.socket] = {}  # endpoint -> the control channel of its idle process
        self.running: dict[str, socket.socket] = {}  # endpoint -> that of this experiment's process
        self._ready = self._expect("ready")

    def fileno(self) -> int:
        return self._channel.fileno()

    def launch(
        self, scenario: dict[str, Any], addresses: dict[str, str], channels: dict[str, socket.socket], cpu: int | None
    ) -> None:
        """Start the experiment's endpoint processes, on `cpu` (closekit.sandbox.cpu); `channels` hold each
        process's end, by name. An idle endpoint is handed its channel directly; the others the reaper forks.
        Not waited for: a process reads its channel once it runs, and the reaper's word that it could not
        start them comes with its other reports (take)."""
        self.take()  # (what the reaper said of the last experiment's processes is not this one's)
        self.ended = {}
        wake = json.dumps({"scenario": scenario, "addresses": addresses, "cpu": cpu}).encode()
        forks: list[str] = []
        for endpoint in ENDPOINTS:
            kids = [n for n in channels if n not in ENDPOINTS and _owner(scenario, n) == endpoint]
            if kids or not self._wake(endpoint, wake, channels[endpoint]):
                forks += [endpoint, *kids]
        if not forks:
            return
        controls = {}
        for endpoint in ENDPOINTS:
            if endpoint in forks:
                self.running[endpoint], controls[endpoint] = socket.socketpair(
                    socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
                )
        message = json.dumps(
            {"op": "start", "scenario": scenario, "addresses": addresses, "processes": forks,
             "controls": list(controls), "cpu": cpu}
        )  # fmt: skip
        try:
            fds = [channels[n].fileno() for n in forks] + [c.fileno() for c in controls.values()]
            socket.send_fds(self._channel, [message.encode()], fds)
        finally:
            for theirs in controls.values():
                theirs.close()

    def _wake(self, endpoint: str, wake: bytes, channel: socket.socket) -> bool:
        """Hand an idle endpoint process the experiment and its channel; False if none is idle (or it has gone)."""
        control = self.idle.pop(endpoint, None)
        if control is None:
            return False
        try:
            socket.send_fds(control, [wake], [channel.fileno()])
        except OSError:  # it died since its last experiment (killed from outside)
            control.close()
            self._bury(endpoint)
            return False
        self.running[endpoint] = control
        return True

    def _bury(self, endpoint: str) -> None:
        """Take in the reaper's word that an idle endpoint process has ended, so that it is not taken for that
        of this experiment's process of the same name."""
        deadline = time.monotonic() + BURY_TIMEOUT
        while endpoint not in self.ended:
            report = self._read(block=True, timeout=max(0.0, deadline - time.monotonic()))
            if report is None:
                break
            if report.get("failed"):
                raise OSError(0, str(report["failed"])[:500])
            self._note(report)
        self.ended.pop(endpoint, None)

    def take(self) -> None:
        """Take in what the reaper reported (non-blocking): processes that ended; OSError if it could not
        start the experiment's processes."""
        while True:
            report = self._read(block=False)
            if report is None:
                return
            if report.get("failed"):
                raise OSError(0, str(report["failed"])[:500])
            self._note(report)

    def clear(self, reuse: bool = False) -> None:
        """End the experiment's processes; back when all are reaped. With `reuse` (it ran only the lab's own
        code and ended cleanly) its two endpoints may instead go idle, if both say so at once, for the next
        experiment: that takes no word with the reaper. Otherwise the reaper ends them, and the idle ones."""
        if reuse and self._park():
            return
        try:
            self._channel.send(b'{"op": "clear"}')
            self._expect("cleared", timeout=CLEAR_TIMEOUT)
        except OSError:
            self.close()
            raise
        finally:
            self._forget()

    def _park(self) -> bool:
        """Wait for the experiment's two endpoints to say they are idle; True if both did in time."""
        if len(self.running) != 2:
            return False
        deadline = time.monotonic() + PARK_TIMEOUT
        for control in self.running.values():
            ready, _, _ = select.select([control], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or control.recv(64) != IDLE:
                return False
        self.idle, self.running = self.running, {}
        return True

    def _forget(self) -> None:
        """Let go of the endpoint processes' control channels (they have been ended)."""
        for control in (*self.running.values(), *self.idle.values()):
            control.close()
        self.running.clear()
        self.idle.clear()

    def close(self) -> None:
        """Kill the reaper; in a PID namespace the kernel kills every process in it too."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if not self.spec.private:
                kill_tree(self.pid)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0
        self._forget()
        self._channel.close()

    def _expect(self, what: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            report = self._read(block=True, timeout=timeout)
            if report is None:
                raise OSError(0, f"the lab's reaper did not answer ({what})")
            if report.get("failed"):
                raise OSError(0, str(report["failed"])[:500])
            if report.get(what):
                return report
            self._note(report)

    def _note(self, report: dict[str, Any]) -> None:
        status = report.get("status")
        if isinstance(report.get("ended"), str) and isinstance(status, int) and not isinstance(status, bool):
            self.ended[report["ended"]] = describe_exit(status)  # worded here, in the notebook's language

    def _read(self, block: bool, timeout: float = 0.0) -> dict[str, Any] | None:
        ready, _, _ = select.select([self._channel], [], [], timeout if block else 0)
        if not ready:
            return None
        data = self._channel.recv(MAX_MESSAGE)
        if not data:
            return None
        try:
            report = json.loads(data)
        except ValueError:
            return None
        return report if isinstance(report, dict) else None


# ---- the reaper ---------------------------------------------------------------------------------
def _first(spec: JailSpec, launcher: Launcher, channel: socket.socket, pid_w: int) -> None:
    """The helper's child: make the PID namespace, fork the reaper into it, say its pid, go."""
    keep_only({channel.fileno(), pid_w, *(fd for fd in spec.netns.values() if fd is not None)})
    if spec.private:
        unshare(CLONE_NEWPID)
    reaper = os.fork()
    if reaper == 0:
        os.close(pid_w)
        _guard(lambda: _reaper(spec, launcher, channel), _reporter(channel, "failed"))
    os.write(pid_w, str(reaper).encode())


def _reaper(spec: JailSpec, launcher: Launcher, channel: socket.socket) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)  # as a PID namespace's init it then ignores them from inside
    _prctl(PR_SET_DUMPABLE, 0)
    os.setsid()  # no controlling terminal, whoever started the helper
    os.environ.clear()  # what experiments see in os.environ (the block itself is the helper's, made afresh)
    os.environ.update({"HOME": "/tmp", "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp", "LANG": "C.UTF-8"})
    if spec.private:
        unshare(CLONE_NEWNS)
        rootfs.build(spec.binds, spec.limits.scratch)
    else:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    reaper = _Reaper(spec, launcher, channel)
    reaper.say({"ready": True})
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        reaper.reap()
        for fd, _event in poller.poll():
            if fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
            else:
                reaper.serve()


class _Reaper:
    """What the reaper does for the helper: start an experiment's endpoints, reap, clear.

    An experiment that ran only the lab's own code (no function of a student's, no fork or exit)
    and ended cleanly leaves its two endpoint processes idle rather than killed: they close every
    descriptor of the experiment and wait on their control channel, which the helper holds, for the
    next one; that saves forking and isolating two processes (most of an experiment's CPU), and the
    reaper hears nothing of it. Anything else ends with kill(-1).
    """

    def __init__(self, spec: JailSpec, launcher: Launcher, channel: socket.socket) -> None:
        self.spec, self.launcher, self.channel = spec, launcher, channel
        self.endpoints: dict[int, str] = {}  # pid -> endpoint, of the endpoint processes alive

    def say(self, report: dict[str, Any]) -> None:
        try:
            self.channel.send(json.dumps(report).encode())
        except OSError:
            self.leave()

    def leave(self) -> None:
        """The helper has gone: end everything and go."""
        self.kill_all()
        os._exit(0)

    def serve(self) -> None:
        message, fds, _flags, _address = socket.recv_fds(self.channel, MAX_MESSAGE, 32)
        if not message:
            self.leave()
        request = json.loads(message)
        if request.get("op") == "clear":
            self.kill_all()
            self.say({"cleared": True})
            if self.spec.private:
                rootfs.empty_scratch()
        elif request.get("op") == "start":
            try:
                self.start(request, fds)
            except Exception as e:  # tell the helper (it does not wait to hear they started); keep serving
                self.say({"failed": f"the experiment's processes could not be started: {type(e).__name__}: {e}"})
        for fd in fds:
            os.close(fd)

    def start(self, request: dict[str, Any], fds: list[int]) -> None:
        """Fork the endpoints named in `controls`, each with its channel, its control channel and its children's
        channels (fds: those of `processes`, then those of `controls`)."""
        processes = request["processes"]
        channels = {name: socket.socket(fileno=fd) for name, fd in zip(processes, fds)}
        controls = {name: socket.socket(fileno=fd) for name, fd in zip(request["controls"], fds[len(processes) :])}
        try:
            pin(request.get("cpu"))  # the endpoints forked here inherit it
            prepared = self.launcher.prepare(request["scenario"], request["addresses"])
            gc.freeze()  # what exists now is never scanned in the endpoints: fewer copy-on-write pages
            for endpoint, control in controls.items():
                kids = {
                    n: c
                    for n, c in channels.items()
                    if n not in ENDPOINTS and _owner(request["scenario"], n) == endpoint
                }
                self.endpoints[self._fork(endpoint, prepared, channels[endpoint], kids, control)] = endpoint
        finally:
            for s in (*channels.values(), *controls.values()):
                s.detach()  # serve() closes the fds, once

    def _fork(self, endpoint: str, prepared: Any, mine: socket.socket, kids: dict, control: socket.socket) -> int:
        target = self.spec.netns.get(endpoint)
        if target is not None:
            setns(target, CLONE_NEWNET)
        keep = {mine.fileno(), control.fileno(), *(s.fileno() for s in kids.values())}
        pid = os.fork()
        if pid == 0:
            _guard(lambda: self._endpoint(endpoint, prepared, mine, kids, control, keep), _crash_reporter(mine))
        return pid

    def _endpoint(
        self, endpoint: str, prepared: Any, mine: socket.socket, kids: dict, control: socket.socket, keep: set[int]
    ) -> None:
        """An endpoint process: isolated once, then one experiment after another while it is reused."""
        signal.set_wakeup_fd(-1)  # the reaper's, whose descriptor is not ours to write into
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        keep_only(keep)
        isolate(self.spec)
        top = self.spec.limits.open_files - 1  # the highest descriptor the process may hold
        control, mine = _pin(control, top), _pin(mine, top - 1)
        kids = {name: _pin(s, top - 2 - i) for i, (name, s) in enumerate(kids.items())}
        for served in range(1, REUSE + 1):
            self.launcher.run(prepared, endpoint, mine, kids)  # returns when the helper closes its channel
            if served == REUSE or time.process_time() >= self.spec.limits.cpu_seconds * RETIRE_AT:
                return  # retire: the reaper forks a fresh one for the next experiment
            keep_only({control.fileno()})  # every descriptor of that experiment goes
            control.send(IDLE)
            message, fds, _flags, _address = socket.recv_fds(control, MAX_MESSAGE, 1)
            if not message or not fds:
                return
            request = json.loads(message)
            pin(request.get("cpu"))
            prepared = self.launcher.prepare(request["scenario"], request["addresses"])
            mine, kids = _pin(socket.socket(fileno=fds[0]), top - 1), {}

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = self.endpoints.pop(pid, None)
            if name is not None:
                self.say({"ended": name, "status": status})

    def kill_all(self) -> None:
        """Every process of the experiment (and the idle ones): SIGKILL, then reap until none is left."""
        if self.spec.private:
            try:
                os.kill(-1, signal.SIGKILL)  # from a PID namespace's init: everything in the namespace
            except ProcessLookupError:
                pass
        else:
            kill_tree(os.getpid(), include_self=False)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        self.endpoints.clear()


def _pin(sock: socket.socket, fd: int) -> socket.socket:
    """The same socket at descriptor `fd` (at the top of what the process may hold), so the lab's own
    descriptors sit out of the way and an experiment's sockets get the same numbers (accept() = 4)
    in a fresh process and a reused one."""
    os.dup2(sock.fileno(), fd, inheritable=True)
    sock.close()
    return socket.socket(fileno=fd)


def _owner(scenario: dict[str, Any], process: str) -> str:
    """The endpoint a forked process belongs to: that of the process that forked it."""
    owners = {"client": "client", "server": "server"}
    for step in _steps(scenario["steps"]):
        if step.get("step") == "fork":
            owners[step["child"]] = owners.get(step["side"], "client")
    return owners.get(process, "client")


def _steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat = []
    for s in steps:
        flat.extend(s["steps"] if s.get("step") == "at_once" else [s])
    return flat


# ---- an endpoint process's isolation ----------------------------------------------------------
def isolate(spec: JailSpec) -> None:
    """Drop what an endpoint process may not keep, then take its limits."""
    if spec.private:
        unshare(CLONE_NEWIPC)  # its own System V IPC: nothing it makes outlives it
    if spec.as_nobody:  # never root: RLIMIT_NPROC does not apply to root, and root reads everything
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    _new_session_keyring()
    if spec.private:
        unshare(CLONE_NEWUSER)  # no capability over the lab's namespaces; its own process count
        _no_more_namespaces()
        _drop_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    limits = spec.limits
    for kind, value in (
        (resource.RLIMIT_AS, limits.memory),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_size),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(kind, (value, value))
    os.chdir("/tmp" if spec.private else "/")  # on the host, not the notebook's folder
    _prctl(PR_SET_DUMPABLE, 0)  # changing identity may have reset it to the system's suid_dumpable


def _new_session_keyring() -> None:
    """Join a new, empty session keyring: the one inherited is the notebook's (keys its user added,
    readable and writable by this process). Where keyctl() is refused outright (ENOSYS, a seccomp
    filter's EPERM), code in the experiment cannot use keys either."""
    number = KEYCTL.get(platform.machine())
    if number is None:
        raise OSError(0, f"keyctl: unknown system call number on {platform.machine()}")
    if _libc.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EPERM):
            raise OSError(err, f"keyctl(KEYCTL_JOIN_SESSION_KEYRING): {os.strerror(err)}")


def _no_more_namespaces() -> None:
    """In the endpoint's own user namespace: no further user namespace, hence, once its capabilities
    are dropped, no namespace of any kind (no tmpfs of its own to fill memory with, no network
    namespace to slip its sockets into)."""
    try:
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError:
        pass


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """Give up every capability (those a new user namespace grants its creator inside it)."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


# ---- processes ---------------------------------------------------------------------------------
def describe_exit(status: int) -> str:
    """'exited with status 0', 'was killed by SIGXCPU (its CPU time limit)' … (a wait status)"""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        if signum == signal.SIGXCPU:
            return text("run.exit.cpu_limit", signal=name)
        if signum == signal.SIGXFSZ:
            return text("run.exit.file_limit", signal=name)
        return text("run.exit.signal", signal=name)
    return text("run.exit.status", status=os.WEXITSTATUS(status))


def _guard(body: Callable[[], None], report: Callable[[str], None]) -> None:
    """Run a forked process's body; whatever happens, the process ends here and never returns. A
    failure is told to the helper over the process's channel (stderr is /dev/null)."""
    try:
        body()
    except BaseException as e:
        try:
            report(f"{type(e).__name__}: {e}"[:2000])
        except OSError:
            pass
        os._exit(70)
    os._exit(0)


def _reporter(channel: socket.socket, key: str) -> Callable[[str], None]:
    return lambda message: channel.send(json.dumps({key: message}).encode())


def _crash_reporter(channel: socket.socket) -> Callable[[str], None]:
    """An endpoint's failure outside a step (its isolation), as the crash reply the orchestrator reads."""
    return lambda message: channel.send(json.dumps({"kind": "crash", "message": f"the lab: {message}"}).encode())


def _prctl(option: int, value: int) -> None:
    _libc.prctl(option, value, 0, 0, 0)


def keep_only(fds: set[int]) -> None:
    """Close every descriptor but `fds`; stdin, stdout and stderr become /dev/null.

    A forked process must not hold the helper's pipes or sockets: a pipe end left open here would
    hide the helper's death, a TUN descriptor would let it write onto the wire. Nor the notebook's
    stderr, which the helper inherited: on a terminal, code in an experiment could read what the
    user types and change the terminal; on a log file, truncate and rewrite it.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    low = 3
    for fd in sorted(fds):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)
    for fd in fds:
        os.set_inheritable(fd, True)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree (children lists from /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def kill_tree(pid: int, include_self: bool = True) -> None:
    """SIGKILL a process and everything below it, again until nothing is left (a fork may race)."""
    for _ in range(100):
        below = descendants(pid)
        if not below:
            break
        for child in below:
            _kill(child)
    if include_self:
        _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
