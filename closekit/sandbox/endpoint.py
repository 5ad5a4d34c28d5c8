"""One process of an experiment: it runs its lines of the scenario as the program it stands for.

The helper hands it its lines up to the next sync point in one command; it runs them one after
another, each as soon as the previous one returned, and answers after each with JSON records of
the syscalls it made (call, arguments, result or errno, start, duration) and the signals the
kernel delivered meanwhile. What each line does is its row in closekit.steps (`perform`), which
calls the methods here. It runs inside the experiment's sandbox, and so does any code a scenario
hands it: the helper trusts nothing it says beyond the schema in closekit.sandbox.protocol.
"""

from __future__ import annotations

import errno as errno_names
import fcntl
import math
import os
import resource
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from closekit import records
from closekit import steps as sc
from closekit.errors import LimitReached, ProtocolError
from closekit.records import MAX_TEXT
from closekit.sandbox.protocol import recv_message, send_message
from closekit.scenario import Scenario

EPOLL_BITS = (
    ("EPOLLIN", select.EPOLLIN), ("EPOLLPRI", select.EPOLLPRI), ("EPOLLOUT", select.EPOLLOUT),
    ("EPOLLRDHUP", select.EPOLLRDHUP), ("EPOLLERR", select.EPOLLERR), ("EPOLLHUP", select.EPOLLHUP),
)  # fmt: skip
SHUT = {"SHUT_RD": socket.SHUT_RD, "SHUT_WR": socket.SHUT_WR, "SHUT_RDWR": socket.SHUT_RDWR}
TCP_USER_TIMEOUT, TCP_LINGER2 = 18, 8
OPTIONS = {
    "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, TCP_USER_TIMEOUT),
    "TCP_CORK": (socket.IPPROTO_TCP, socket.TCP_CORK),
    "TCP_NODELAY": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
    "TCP_QUICKACK": (socket.IPPROTO_TCP, socket.TCP_QUICKACK),
    "TCP_LINGER2": (socket.IPPROTO_TCP, TCP_LINGER2),
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "SO_RCVBUF": (socket.SOL_SOCKET, socket.SO_RCVBUF),
    "SO_SNDBUF": (socket.SOL_SOCKET, socket.SO_SNDBUF),
    "SO_ERROR": (socket.SOL_SOCKET, socket.SO_ERROR),
}
IOCTLS = {"SIOCINQ": 0x541B, "SIOCOUTQ": 0x5411, "SIOCOUTQNSD": 0x894B}
CHUNK = 65536
_PAYLOAD = bytes(range(256)) * (CHUNK // 256)


@dataclass(frozen=True)
class Addresses:
    """Where the server listens and the client connects from."""

    server: str
    client: str


class Endpoint:
    """The state of one process: its name, its sockets, and what it has recorded for the step."""

    def __init__(
        self,
        process: str,
        scenario: Scenario,
        channel: socket.socket,
        children: dict[str, socket.socket],
        addresses: Addresses,
    ) -> None:
        self.process = process
        self.scenario = scenario
        self.channel = channel
        self.children = children
        self.addresses = addresses
        self.sock: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.last_local: tuple[str, int] | None = None
        self.records: list[dict[str, Any]] = []
        self.pending_signals: list[str] = []
        self.port = 0  # the server's listening port, as the helper last said
        self.ready_at: float | None = None  # when its program would make its next call (None: in the set-up)

    # ---- the loop ------------------------------------------------------------------------
    def serve(self) -> None:
        """Do what the helper asks until it closes the channel (the experiment is over)."""
        signal.signal(signal.SIGPIPE, self._on_signal)
        while True:
            try:
                message = recv_message(self.channel, "helper")
            except (OSError, ProtocolError):
                return
            if not isinstance(message, dict) or message.get("op") == "quit":
                return
            if isinstance(message.get("port"), int):
                self.port = message["port"]
            self.next_command(message.get("since"))
            jobs = self._jobs(message)
            for i, job in enumerate(jobs):
                self.records = []
                if message.get("announce") is True and i == len(jobs) - 1:
                    self._send({"kind": "started"})  # the helper may now take this process asleep as blocked
                try:
                    job()
                    reply: dict[str, Any] = {"kind": "done", "records": self.records}
                except LimitReached as e:
                    reply = {"kind": "limit", "limit": e.limit, "function": e.function, "length": e.length}
                except Exception as e:  # report, never die silently: the helper turns it into an error
                    reply = {"kind": "crash", "message": f"{type(e).__name__}: {e}"}
                self._send(reply)

    def _send(self, reply: dict[str, Any]) -> None:
        try:
            send_message(self.channel, reply)
        except (OSError, ProtocolError):
            os._exit(0)

    def _jobs(self, message: dict[str, Any]) -> list[Any]:
        """What a command asks, one reply each: a set-up call, or the lines handed over, in order."""
        op = message.get("op")
        if op == "listen":
            return [self._listen]
        if op == "socket":
            return [lambda: setattr(self, "sock", self._socket())]
        if op == "connect":
            return [self.connect]
        if op == "accept":
            return [self.accept]
        if op == "run":
            return [self._performer(self._line(path)) for path in message["lines"]]
        raise ValueError(f"unknown command {op!r}")

    def _performer(self, step: sc.Step) -> Any:
        return lambda: step.perform(self)

    def _line(self, path: list[int]) -> sc.Step:
        step = self.scenario.steps[path[0]]
        return step.steps[path[1]] if isinstance(step, sc.AtOnce) else step

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending_signals.append(signal.Signals(signum).name)

    # ---- recording -----------------------------------------------------------------------
    def next_command(self, since: Any) -> None:
        """A command from the helper. Its first line would follow the previous line's return, or the end
        of the lab's wait if later: `since`, when the lab saw what ended it (None: a set-up command)."""
        if not isinstance(since, float):
            self.ready_at = None
        elif self.ready_at is None or since > self.ready_at:
            self.ready_at = since

    def record(self, call: str, args: dict[str, Any], fn: Any) -> Any:
        """Make one call, record it as a syscall event, and return its result (None on error).

        Its `delayed`: how long after the program would have made it (at once) it did: after a line of the
        same command, since that line returned (the wait for a CPU, a page read from disk, the lab's own
        recording); after the lab's wait, since that wait ended (the lab's lateness in handing the line
        over too); None in the set-up."""
        start = time.monotonic()
        switches, queued = _voluntary_switches(), _schedstat.run_delay()
        delayed = None if self.ready_at is None else max(start - self.ready_at, 0.0)
        result: Any = None
        err: str | None = None
        try:
            result = fn()
        except OSError as e:
            err = errno_names.errorcode.get(e.errno or 0, "EIO")
            result = getattr(e, "partial", -1)
        end = time.monotonic()
        if self.ready_at is not None:
            self.ready_at = end
        slept = _voluntary_switches() > switches  # before reading /proc again, which is no part of the call
        after = _schedstat.run_delay()
        waited_for_cpu = None if queued is None or after is None else min(max(after - queued, 0.0), end - start)
        self.records.append(records.syscall(t=start, call=call, args=args, result=result, errno=err,
                                            duration=end - start, slept=slept, queued=waited_for_cpu,
                                            delayed=delayed))  # fmt: skip
        for name in self.pending_signals:
            self.records.append(records.signal(end, name))
        self.pending_signals.clear()
        return None if err else result

    # ---- set-up --------------------------------------------------------------------------
    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        opts = self.scenario.options
        endpoint = self.scenario.endpoint_of(self.process)
        for name, option in (("rcvbuf", socket.SO_RCVBUF), ("sndbuf", socket.SO_SNDBUF)):
            value = getattr(opts, f"{endpoint}_{name}", None)
            if value is not None:
                self.record("setsockopt", {"option": f"SO_{name.upper()}", "value": value},
                            lambda o=option, v=value: s.setsockopt(socket.SOL_SOCKET, o, v) or 0)  # fmt: skip
        return s

    def _listen(self) -> None:
        s = self._socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.addresses.server, 0))
        self.record("listen", {"backlog": 8}, lambda: s.listen(8) or 0)
        self.listener = s
        self.records.append(records.port("listener", s.getsockname()[1]))

    def connect(self) -> None:
        s = self.sock
        if s is None or s.fileno() < 0:  # a new connection after the last one closed: the same local port
            s = self.sock = self._socket()
            if self.last_local is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(self.last_local)
        if s.getsockname()[1] == 0:
            s.bind((self.addresses.client, 0))
        self.record("connect", {}, lambda: s.connect((self.addresses.server, self.port)) or 0)
        self.last_local = s.getsockname()
        self.records.append(records.port("connection", self.last_local[1]))

    def accept(self) -> None:
        assert self.listener is not None
        accepted = self.record("accept", {}, lambda: self.listener.accept()[0])  # type: ignore[union-attr]
        if accepted is not None:
            self.sock = accepted
            self.records[-1]["result"] = accepted.fileno()

    # ---- what the steps' rows call (closekit.steps, perform) -------------------------------------
    def send_all(self, nbytes: int) -> int:
        return _send_all(self.sock, nbytes)  # type: ignore[arg-type]

    def read_to_eof(self) -> int:
        return _read_to_eof(self.sock)  # type: ignore[arg-type]

    def close(self, listener: bool) -> int:
        """close(2) on the descriptor itself: socket.close() would hide what close returns."""
        sock = self.listener if listener else self.sock
        os.close(sock.detach())  # type: ignore[union-attr]
        return 0

    def shutdown(self, how: str) -> int:
        self.sock.shutdown(SHUT[how])  # type: ignore[union-attr]
        return 0

    def linger(self, on: int, seconds: int) -> int:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", on, seconds))  # type: ignore[union-attr]
        return 0

    @staticmethod
    def sleep(seconds: float) -> int:
        time.sleep(seconds)
        return 0

    def epoll_bits(self) -> list[str]:
        return _epoll_bits(self.sock)  # type: ignore[arg-type]

    def setsockopt(self, option: str, value: int) -> int:
        level, name = OPTIONS[option]
        self.sock.setsockopt(level, name, value)  # type: ignore[union-attr]
        return 0

    def getsockopt(self, option: str) -> int | str:
        return _getsockopt(self.sock, option)  # type: ignore[arg-type]

    def ioctl(self, request: str) -> int:
        return _ioctl(self.sock, request)  # type: ignore[arg-type]

    def exit(self) -> None:
        """The process ends without closing anything: its last word is the exit itself."""
        exited = records.syscall(t=time.monotonic(), call="exit", args={"status": 0}, result=None, errno=None,
                                 duration=0.0, slept=False, queued=0.0, delayed=None)  # fmt: skip
        self.records.append(exited)
        self._send({"kind": "done", "records": self.records})
        os._exit(0)

    def call(self, step: sc.Call) -> None:
        limits = _ForkWatch()
        value = self.record("call", {"function": step.function}, lambda: _run_function(step, self.sock, limits))
        if limits.refused:
            raise LimitReached("processes", step.function)
        if isinstance(value, _Limit):
            self.records.pop()
            raise LimitReached(value.limit, step.function, value.length)

    def fork(self, child: str) -> None:
        channel = self.children.pop(child)
        pid = self.record("fork", {}, os.fork)
        if pid == 0:  # the child: same sockets, its own channel
            self.process, self.channel = child, channel
            self.records = []
            self._send({"kind": "hello"})
            self.serve()
            os._exit(0)
        channel.close()
        if self.records[-1]["errno"] == "EAGAIN":
            raise LimitReached("fork")
        self.records[-1]["result"] = child


def _voluntary_switches() -> int:
    """How often this thread has gone to sleep: a call that waited (for data, an ACK, buffer room)
    slept in the kernel; one that only lost the CPU to other work on a busy machine did not."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


class _Schedstat:
    """This thread's /proc/thread-self/schedstat, read before and after every call.

    Where the scenario runs none of its own functions, the file is opened once per process and kept
    just below the lab's own descriptors (`keep_at`), so each reading is one pread rather than an open,
    a read and a close. The lab's own lines hold a handful of descriptors, far below it, so the numbers
    and the count of the experiment's descriptors are as they were. A scenario's function may use or
    count every descriptor (EMFILE is a lesson): then the file is opened for each reading and closed at
    once, as the lowest free descriptor, holding nothing across a call."""

    def __init__(self) -> None:
        self.keep_at = -1  # where the file is kept (-1: opened for each reading)
        self.held = False  # this process put it there
        self.inherited = False  # what is there is a parent's copy (this process was forked since)
        os.register_at_fork(after_in_child=self._forked)

    def reset(self, keep_at: int) -> None:
        """A new experiment: the last one's descriptors are closed."""
        self.keep_at, self.held, self.inherited = keep_at, False, False

    def _forked(self) -> None:
        self.held, self.inherited = False, self.held

    def run_delay(self) -> float | None:
        """Seconds this thread has spent runnable but waiting for a CPU (the scheduler's run_delay);
        None where the kernel does not keep it. On a busy machine a call that was woken by an ACK may
        wait tens of milliseconds more before it runs and returns."""
        try:
            if self.keep_at >= 0 and not self.held:
                self._keep()
            if self.keep_at < 0:
                with open(SCHEDSTAT, "rb") as f:
                    data = f.read()
            else:
                data = os.pread(self.keep_at, 256, 0)
            return int(data.split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return None

    def _keep(self) -> None:
        if not self.inherited:  # its place must be free (a forked child's holds its parent's copy, replaced here)
            try:
                fcntl.fcntl(self.keep_at, fcntl.F_GETFD)
            except OSError:
                pass
            else:
                self.keep_at = -1  # taken: read it the other way
                return
        fd = os.open(SCHEDSTAT, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.dup2(fd, self.keep_at, inheritable=False)
        finally:
            os.close(fd)
        self.held, self.inherited = True, False


SCHEDSTAT = "/proc/thread-self/schedstat"
_schedstat = _Schedstat()


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


def _getsockopt(s: socket.socket, option: str) -> int | str:
    level, name = OPTIONS[option]
    value = s.getsockopt(level, name)
    if option == "SO_ERROR":
        return errno_names.errorcode.get(value, str(value)) if value else 0
    return value


def _ioctl(s: socket.socket, request: str) -> int:
    data = fcntl.ioctl(s.fileno(), IOCTLS[request], struct.pack("i", 0))
    return struct.unpack("i", data)[0]


class _ForkWatch:
    """Notices a fork() the process limit refused while a scenario's function runs."""

    def __init__(self) -> None:
        self.refused = False


@dataclass(frozen=True)
class _Limit:
    limit: str  # its name in closekit.sandbox.protocol.LIMITS
    length: int | None = None


def _run_function(step: sc.Call, s: socket.socket | None, watch: _ForkWatch) -> Any:
    """Run a scenario's own function; any exception other than OSError becomes its result."""
    namespace: dict[str, Any] = {"__name__": "closekit_call"}
    real_fork = os.fork

    def fork() -> int:
        try:
            return real_fork()
        except BlockingIOError:
            watch.refused = True
            raise

    os.fork = fork
    try:
        exec(compile(step.source, f"<{step.function}>", "exec"), namespace)
        value = namespace[step.function](s)
    except MemoryError:
        return _Limit("memory")
    except OSError as e:
        if e.errno == errno_names.ENOSPC:
            return _Limit("tmp")
        if e.errno == errno_names.EFBIG:
            return _Limit("file_size")
        raise
    except BaseException as e:  # SystemExit, anything: report it, keep the process
        return f"raised {type(e).__name__}: {_text(e)}"
    finally:
        os.fork = real_fork
    return _plain(value, step.function)


def _plain(value: Any, function: str) -> Any:
    """The function's result as a number, a str, a bool or None; anything else by its repr."""
    if isinstance(value, bool) or value is None:
        return bool(value) if value is not None else None
    if type(value) is int or type(value) is float:
        return value if not (isinstance(value, float) and not math.isfinite(value)) else repr(value)
    text = str.__str__(value) if isinstance(value, str) else _text(value, limit=None)
    if len(text) > MAX_TEXT:
        return _Limit("result_size", len(text))
    return text


def _text(value: Any, limit: int | None = 300) -> str:
    try:
        text = str(value) if isinstance(value, BaseException) else repr(value)
    except BaseException:  # a repr that raises is the function's own business
        text = f"<{type(value).__name__} object>"
    if not isinstance(text, str):
        text = f"<{type(value).__name__} object>"
    return text if limit is None else text[:limit]


def _epoll_bits(s: socket.socket) -> list[str]:
    with select.epoll() as ep:
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLPRI)
        ready = ep.poll(0)
    bits = ready[0][1] if ready else 0
    return [name for name, bit in EPOLL_BITS if bits & bit]


def prepare(scenario: dict[str, Any], addresses: dict[str, str]) -> tuple[Scenario, Addresses]:
    """What the lab's reaper makes of an experiment's data (once, before it forks the endpoints), and an
    endpoint process it keeps idle, for the next experiment. Only a process that ran nothing but the
    lab's own code is kept, so nothing has touched the scenario it remembers."""
    return Scenario.remembered(scenario), Addresses(**addresses)


def run(prepared: tuple[Scenario, Addresses], process: str, channel: socket.socket, children: dict) -> None:
    """One experiment of an endpoint process; returns, with every socket it made closed, when the
    helper ends it (so the process can serve the next experiment)."""
    scenario, addresses = prepared
    endpoint = Endpoint(process, scenario, channel, children, addresses)
    own_code = any(isinstance(s, sc.Call) for s in sc.iter_steps(scenario.steps))
    _schedstat.reset(-1 if own_code else min(s.fileno() for s in (channel, *children.values())) - 1)
    try:
        endpoint.serve()
    finally:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the handler held the endpoint: let it go
        for s in (endpoint.sock, endpoint.listener, endpoint.channel, *endpoint.children.values()):
            if s is not None:
                s.close()
