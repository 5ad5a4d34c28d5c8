"""One endpoint of an experiment: a forked process that makes the scenario's socket calls.

It owns one TCP socket and does what the orchestrator asks over its channel, one step at a
time, answering with the syscalls it made (call, arguments, result or errno, start, duration)
and any signals the kernel delivered while it made them.
"""

from __future__ import annotations

import ctypes
import errno as errno_names
import os
import resource
import select
import signal
import socket
import struct
import time
import traceback
from typing import Any

from closekit import scenario as sc
from closekit.sandbox.channel import recv_message, send_message

PR_SET_PDEATHSIG = 1
LISTEN_ADDRESS = "127.0.0.1"
EPOLL_BITS = (
    ("EPOLLIN", select.EPOLLIN), ("EPOLLPRI", select.EPOLLPRI), ("EPOLLOUT", select.EPOLLOUT),
    ("EPOLLRDHUP", select.EPOLLRDHUP), ("EPOLLERR", select.EPOLLERR), ("EPOLLHUP", select.EPOLLHUP),
)  # fmt: skip
SHUT = {"SHUT_RD": socket.SHUT_RD, "SHUT_WR": socket.SHUT_WR, "SHUT_RDWR": socket.SHUT_RDWR}
CHUNK = 65536
MEMORY_LIMIT = 1 << 30  # bytes of address space an endpoint (and code it runs) may use
_PAYLOAD = bytes(range(256)) * (CHUNK // 256)


def die_with_parent(parent: int) -> None:
    """Be killed when `parent` dies; if it died before we asked, go now (the prctl race).

    In a PID namespace of our own the parent is outside it and getppid() says 0; there the
    namespace's reaper ends us when the helper goes.
    """
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() not in (parent, 0):
        os._exit(0)


def keep_only(fds: set[int]) -> None:
    """Close every descriptor but `fds`; stdin and stdout become /dev/null (stderr is kept).

    A forked process must not hold the helper's pipes or sockets: a pipe end left open here
    would hide the helper's death from its parent, a packet socket would keep a namespace alive.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    for fd in _open_fds():
        if fd > 2 and fd not in fds:
            try:
                os.close(fd)
            except OSError:
                pass


class Endpoint:
    """The state of one side's process: its name, its socket, and what it has recorded."""

    def __init__(self, side: str, scenario: sc.Scenario, channel: socket.socket) -> None:
        self.side = side
        self.scenario = scenario
        self.channel = channel
        self.sock: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.records: list[dict[str, Any]] = []
        self.pending_signals: list[str] = []
        self.children: dict[str, socket.socket] = {}

    # ---- the loop ------------------------------------------------------------------------
    def serve(self) -> None:
        signal.signal(signal.SIGPIPE, self._on_signal)
        while True:
            message = recv_message(self.channel)
            if message is None or message[0] == "quit":
                os._exit(0)
            try:
                reply: tuple = ("done", self.handle(message))
            except Exception:  # report, never die silently: the orchestrator turns it into an error
                reply = ("crash", traceback.format_exc())
            send_message(self.channel, reply)

    def handle(self, message: tuple) -> list[dict[str, Any]]:
        self.records = []
        command, argument = message
        if command == "listen":
            self._listen()
        elif command == "connect":
            self._connect(argument)
        elif command == "accept":
            self._accept()
        else:
            self._step(self.scenario.steps[argument])
        return self.records

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending_signals.append(signal.Signals(signum).name)

    # ---- recording -----------------------------------------------------------------------
    def record(self, call: str, args: dict[str, Any], fn: Any) -> Any:
        """Make one call, record it as a syscall event, and return its result (None on error)."""
        start = time.time()
        result: Any = None
        err: str | None = None
        try:
            result = fn()
        except OSError as e:
            err = errno_names.errorcode.get(e.errno or 0, str(e.errno))
            result = getattr(e, "partial", -1)
        end = time.time()
        self.records.append(
            {"kind": "syscall", "t": start, "call": call, "args": args, "result": result,
             "errno": err, "duration": end - start}
        )  # fmt: skip
        for name in self.pending_signals:
            self.records.append({"kind": "signal", "t": end, "signal": name})
        self.pending_signals.clear()
        return None if err else result

    # ---- set-up --------------------------------------------------------------------------
    def _apply_options(self, s: socket.socket) -> None:
        opts = self.scenario.options
        for name, option in (("rcvbuf", socket.SO_RCVBUF), ("sndbuf", socket.SO_SNDBUF)):
            value = getattr(opts, f"{self.side}_{name}", None)
            if value is not None:
                self.record("setsockopt", {"option": f"SO_{name.upper()}", "value": value},
                            lambda o=option, v=value: s.setsockopt(socket.SOL_SOCKET, o, v) or 0)  # fmt: skip

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._apply_options(s)
        s.bind((LISTEN_ADDRESS, 0))
        self.record("listen", {"backlog": 1}, lambda: s.listen(1) or 0)
        self.listener = s
        self.records.append({"kind": "port", "port": s.getsockname()[1]})

    def _connect(self, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._apply_options(s)
        self.record("connect", {}, lambda: s.connect((LISTEN_ADDRESS, port)) or 0)
        self.sock = s
        self.records.append({"kind": "port", "port": s.getsockname()[1]})

    def _accept(self) -> None:
        assert self.listener is not None
        conn = self.record("accept", {}, lambda: self.listener.accept()[0])  # type: ignore[union-attr]
        self.listener.close()
        self.sock = conn
        if self.sock is not None:
            self.records[-1]["result"] = 0

    # ---- steps ---------------------------------------------------------------------------
    def _step(self, step: sc.Step) -> None:
        s = self.sock
        if isinstance(step, sc.Send):
            self.record("send", {"nbytes": step.nbytes}, lambda: _send_all(s, step.nbytes))
        elif isinstance(step, sc.Recv):
            self.record("recv", {"nbytes": step.nbytes}, lambda: len(s.recv(step.nbytes)))
        elif isinstance(step, sc.ReadToEof):
            self.record("recv", {"until": "EOF"}, lambda: _read_to_eof(s))
        elif isinstance(step, sc.Close):
            self.record("close", {}, self._close)
        elif isinstance(step, sc.Shutdown):
            self.record("shutdown", {"how": step.how}, lambda: s.shutdown(SHUT[step.how]) or 0)
        elif isinstance(step, sc.Linger):
            on, seconds = (0, 0) if step.seconds is None else (1, step.seconds)
            value = struct.pack("ii", on, seconds)
            self.record("setsockopt", {"option": "SO_LINGER", "l_onoff": on, "l_linger": seconds},
                        lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, value) or 0)  # fmt: skip
        elif isinstance(step, sc.Nonblocking):
            self.record("fcntl", {"cmd": "F_SETFL", "flags": "O_NONBLOCK"}, lambda: s.setblocking(False) or 0)
        elif isinstance(step, sc.Sleep):
            self.record("sleep", {"seconds": step.seconds}, lambda: time.sleep(step.seconds) or 0)
        elif isinstance(step, sc.Epoll):
            self.record("epoll_wait", {"timeout": 0}, lambda: _epoll_bits(s))
        elif isinstance(step, sc.Call):
            self.record("call", {"function": step.function}, lambda: _call(step, s))
        elif isinstance(step, sc.Fork):
            self._fork(step.child)
        elif isinstance(step, sc.Exit):
            self.records.append({"kind": "syscall", "t": time.time(), "call": "exit", "args": {"status": 0},
                                 "result": None, "errno": None, "duration": 0.0})  # fmt: skip
            send_message(self.channel, ("done", self.records))
            os._exit(0)
        else:
            raise TypeError(f"{self.side} cannot run {step.describe()}")

    def _close(self) -> int:
        assert self.sock is not None
        fd = self.sock.detach()  # os.close shows what close(2) returns; socket.close hides ECONNRESET
        self.sock = None
        os.close(fd)
        return 0

    def _fork(self, child: str) -> None:
        channel = self.children.pop(child)
        pid = self.record("fork", {}, os.fork)
        if pid == 0:  # the child: same socket, its own channel
            signal.alarm(int(self.scenario.time_limit) + 5)
            self.side, self.channel = child, channel
            self.records = []
            send_message(channel, ("hello", os.getpid()))
            self.serve()
        channel.close()
        self.records[-1]["result"] = child


def _send_all(s: socket.socket, nbytes: int) -> int:
    sent = 0
    while sent < nbytes:
        try:
            sent += s.send(_PAYLOAD[: min(CHUNK, nbytes - sent)])
        except OSError as e:
            e.partial = sent  # type: ignore[attr-defined]
            raise
    return sent


def _read_to_eof(s: socket.socket) -> int:
    total = 0
    while True:
        try:
            n = len(s.recv(CHUNK))
        except OSError as e:
            e.partial = total  # type: ignore[attr-defined]
            raise
        if n == 0:
            return total
        total += n


def _call(step: sc.Call, s: socket.socket | None) -> Any:
    """Run a scenario's own function; any exception other than OSError becomes its result."""
    namespace: dict[str, Any] = {"__name__": "closekit_call"}
    try:
        exec(compile(step.source, f"<{step.function}>", "exec"), namespace)
        value = namespace[step.function](s)
    except OSError:
        raise
    except BaseException as e:  # SystemExit, MemoryError, anything: report it, keep the process
        return f"raised {type(e).__name__}: {e}"
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(value)


def _epoll_bits(s: socket.socket) -> list[str]:
    with select.epoll() as ep:
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLPRI)
        ready = ep.poll(0)
    bits = ready[0][1] if ready else 0
    return [name for name, bit in EPOLL_BITS if bits & bit]


def start_endpoint(side: str, scenario: sc.Scenario, channel: socket.socket, children: dict[str, socket.socket]) -> int:
    """Fork the process for `side`; returns its pid. It keeps only its channels and stderr."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        die_with_parent(parent)
        os.setpgid(0, 0)  # a process group of its own, so whatever it forks is stopped with it
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        signal.alarm(int(scenario.time_limit) + 5)  # an endpoint never outlives its experiment for long
        keep_only({channel.fileno(), *(c.fileno() for c in children.values())})
        endpoint = Endpoint(side, scenario, channel)
        endpoint.children = children
        endpoint.serve()
    finally:
        os._exit(70)


def _open_fds() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/fd")]
