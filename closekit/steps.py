"""The steps of a scenario: one class per kind, and each class is that kind's whole row.

A row says how the step is checked before anything runs (`check`, `advance`), how an endpoint
process performs it (`perform`, for the calls a program makes), and, for the lab's own steps,
when a sync point is met (`met`), what it was waiting for when it timed out (`waited_for`) and
which sockets the lab must look at to know (`looks`). Adding a step is adding one class here.

Write scenarios with the lower-case names, as in a scenario script:

    from closekit.steps import send, wait_recv_queue, close, recv
    steps = [send("client", 6), wait_recv_queue("server", 6), close("server"), recv("client")]

How lines run (closekit.scenario says it in full): each process runs its own lines in order, the
next as soon as its previous one returned; a sync point, release() or at_once() holds every line
after it until it is met.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from closekit import tcp
from closekit.errors import ScenarioError, text

if TYPE_CHECKING:
    from closekit.scenario import Scenario

SHUTDOWN_HOWS = ("SHUT_RD", "SHUT_WR", "SHUT_RDWR")
SEGMENT_FLAGS = ("SYN", "ACK", "FIN", "RST", "PSH", "URG")
ENDPOINTS = ("client", "server")
# Socket options a scenario may set or read, with the range of values a setsockopt may give.
SETSOCKOPT = {
    "TCP_USER_TIMEOUT": (0, 600_000),  # ms
    "TCP_CORK": (0, 1),
    "TCP_NODELAY": (0, 1),
    "TCP_QUICKACK": (0, 1),
    "TCP_LINGER2": (-1, 600),  # s; the FIN_WAIT_2 time of this socket
    "SO_KEEPALIVE": (0, 1),
    "SO_RCVBUF": (1, 16 * 1024 * 1024),
    "SO_SNDBUF": (1, 16 * 1024 * 1024),
}
GETSOCKOPT = ("SO_ERROR", "TCP_USER_TIMEOUT", "TCP_LINGER2", "SO_RCVBUF", "SO_SNDBUF", "TCP_CORK")
IOCTLS = ("SIOCINQ", "SIOCOUTQ", "SIOCOUTQNSD")
MAX_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 30.0
MAX_SOURCE = 20_000  # characters of a call() function's code
ZERO_WINDOW = "zero-window probe"

_QUIET_DEFAULTS = ("listener", "onoff")  # shown only when given


# ---- what validation knows of a process, and what a sync point is judged on ---------------------
@dataclass
class Holder:
    """What validation knows about one process as the scenario's lines go by."""

    endpoint: str
    conn: str  # "none", "unconnected", "connected", "closed"
    listener: bool = False
    exited: bool = False
    connects: int = 0
    lines: int = 0  # lines it runs (sync points and the lab's steps not counted)


class Where:
    """The line of a scenario a refusal is about: "step 3 of 'mine', send('client', nbytes=0)", and
    within an at_once line the part meant. Worded in the course's language only when a refusal that
    names it is raised: validating a scenario that is right words nothing."""

    __slots__ = ("number", "part", "scenario", "step")

    def __init__(self, number: int, scenario: str, step: Step | None = None, part: Step | None = None) -> None:
        self.number, self.scenario, self.step, self.part = number, scenario, step, part

    def of(self, step: Step) -> Where:
        """This line, naming its step."""
        return Where(self.number, self.scenario, step)

    def within(self, part: Step) -> Where:
        """This at_once line's part `part`."""
        return Where(self.number, self.scenario, self.step, part)

    def __str__(self) -> str:
        where = text("refusal.where_step", number=self.number, scenario=repr(self.scenario))
        if self.step is not None:
            where = text("refusal.where_line", where=where, line=self.step.describe())
        if self.part is not None:
            where = text("refusal.where_part", where=where, part=self.part.describe())
        return where

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@dataclass(frozen=True)
class SocketView:
    """One socket as last seen: its state (None before it was ever seen), queues and pending timer."""

    state: str | None = None
    rqueue: int = 0
    wqueue: int = 0
    timer: str | None = None


@dataclass(frozen=True)
class Moment:
    """What the lab knows when it checks a sync point."""

    sockets: Mapping[tuple[str, int], SocketView] = field(default_factory=dict)  # (endpoint, conn); 0: listener
    current: int = 1  # the newest connection's number (1 before any)
    in_flight: int = 0  # packets on the wire, not yet handed over
    returned: frozenset[str] = frozenset()  # processes that returned from every line before the sync point
    blocked: frozenset[str] = frozenset()  # processes asleep in the kernel in their last line before it
    segments: tuple[tuple[str, frozenset[str], int], ...] = ()  # (src, flags, window) sent since the last one

    def view(self, endpoint: str, listener: bool = False) -> SocketView:
        return self.sockets.get((endpoint, 0 if listener else self.current), UNSEEN)


UNSEEN = SocketView()  # a socket not seen yet


def peer_of(endpoint: str) -> str:
    return "server" if endpoint == "client" else "client"


@functools.cache
def _columns(cls: type) -> tuple[tuple[str, bool, Any], ...]:
    """(name, shown only when given, default) of each field of a kind of step, read once per kind."""
    return tuple((f.name, f.name in _QUIET_DEFAULTS, f.default) for f in fields(cls))


# ---- the base row --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One line of a scenario, done by the process `side` (or, for the lab's steps, about it)."""

    side: str
    name: ClassVar[str] = ""  # as it appears in scenarios, errors and JSON
    needs_socket: ClassVar[bool] = True  # the process must hold an open socket
    lab: ClassVar[bool] = False  # done by the lab, not by a process: it holds the lines after it
    connection_only: ClassVar[bool] = False  # its calls act on the process's connection, never its listener

    @property
    def call(self) -> str:
        return self.name

    def acts_on_listener(self) -> bool:
        """Its calls may change the listening socket (the lab looks at it after the line returns)."""
        return not self.connection_only

    def describe(self) -> str:
        args = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name, quiet, default in _columns(type(self))
            if name not in ("side", "source") and not (quiet and getattr(self, name) == default)
        )
        return f"{self.name}({self.side!r}{', ' + args if args else ''})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.name}
        for name, _quiet, _default in _columns(type(self)):
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        return data

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        """Refuse arguments that cannot be right, naming what is allowed."""

    def advance(self, where: Where, holder: Holder, holders: dict[str, Holder]) -> None:
        """Move the process's sockets on as the step would."""

    def perform(self, ep: Any) -> None:
        """Make the step's calls in an endpoint process (closekit.sandbox.endpoint.Endpoint)."""
        raise TypeError(f"{self.describe()} is done by the lab, not by a process")


@dataclass(frozen=True)
class SyncPoint(Step):
    """A condition the kernel can be asked about; the lines after it wait until it holds."""

    needs_socket: ClassVar[bool] = False
    lab: ClassVar[bool] = True

    def met(self, m: Moment, endpoint: str) -> bool:
        raise NotImplementedError

    def waited_for(self, m: Moment, endpoint: str) -> str:
        """'waited for X, but Y': what a sync point that timed out was waiting for, and what was seen."""
        raise NotImplementedError

    def looks(self, endpoint: str, current: int) -> tuple[tuple[str, int], ...]:
        """The sockets to look at again before judging (queues move without a state change)."""
        return ()


# ---- the calls a program makes -------------------------------------------------------------------
@dataclass(frozen=True)
class Send(Step):
    """send() `nbytes` bytes, blocking until the kernel has taken them all (or an error)."""

    nbytes: int = 1
    name: ClassVar[str] = "send"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        check_int("nbytes", self.nbytes, 1, MAX_BYTES, where=where)

    def perform(self, ep: Any) -> None:
        ep.record("send", {"nbytes": self.nbytes}, lambda: ep.send_all(self.nbytes))


@dataclass(frozen=True)
class Recv(Step):
    """One recv() of at most `nbytes`: returns what was there, 0 at end of stream, or an errno."""

    nbytes: int = 65536
    name: ClassVar[str] = "recv"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        check_int("nbytes", self.nbytes, 1, MAX_BYTES, where=where)

    def perform(self, ep: Any) -> None:
        ep.record("recv", {"nbytes": self.nbytes}, lambda: len(ep.sock.recv(self.nbytes)))


@dataclass(frozen=True)
class ReadToEof(Step):
    """recv() in a loop until it returns 0 or fails; the result is the total byte count."""

    name: ClassVar[str] = "read_to_eof"
    connection_only: ClassVar[bool] = True

    def perform(self, ep: Any) -> None:
        ep.record("recv", {"until": "EOF"}, ep.read_to_eof)


@dataclass(frozen=True)
class Close(Step):
    """close() this process's descriptor of the connection (or, with listener=True, of the listening socket)."""

    listener: bool = False
    name: ClassVar[str] = "close"

    def acts_on_listener(self) -> bool:
        return self.listener

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if not isinstance(self.listener, bool):
            raise ScenarioError(text("refusal.close_listener", where=where))

    def advance(self, where: Where, holder: Holder, holders: dict[str, Holder]) -> None:
        if self.listener:
            holder.listener = False
        else:
            holder.conn = "closed"

    def perform(self, ep: Any) -> None:
        args = {"socket": "listener"} if self.listener else {}
        ep.record("close", args, lambda: ep.close(self.listener))


@dataclass(frozen=True)
class Shutdown(Step):
    """shutdown(how) with how one of SHUT_RD, SHUT_WR, SHUT_RDWR."""

    how: str = "SHUT_WR"
    name: ClassVar[str] = "shutdown"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if self.how not in SHUTDOWN_HOWS:
            allowed = ", ".join(SHUTDOWN_HOWS)
            raise ScenarioError(text("refusal.shutdown_how", where=where, how=repr(self.how), allowed=allowed))

    def perform(self, ep: Any) -> None:
        ep.record("shutdown", {"how": self.how}, lambda: ep.shutdown(self.how))


@dataclass(frozen=True)
class Linger(Step):
    """setsockopt(SO_LINGER): `seconds` None turns lingering off, 0 aborts, > 0 waits that long.

    `onoff=0` with seconds set sends {l_onoff = 0, l_linger = seconds}: the kernel must ignore it.
    """

    seconds: int | None = 0
    onoff: int | None = None
    name: ClassVar[str] = "linger"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if self.seconds is not None:
            check_int("seconds", self.seconds, 0, int(MAX_SECONDS), where=where)
        if self.onoff not in (None, 0, 1) or (self.onoff is not None and self.seconds is None):
            raise ScenarioError(text("refusal.linger_onoff", where=where))

    def perform(self, ep: Any) -> None:
        on, seconds = (0, 0) if self.seconds is None else ((1 if self.onoff is None else self.onoff), self.seconds)
        ep.record("setsockopt", {"option": "SO_LINGER", "l_onoff": on, "l_linger": seconds},
                  lambda: ep.linger(on, seconds))  # fmt: skip


@dataclass(frozen=True)
class Nonblocking(Step):
    """fcntl(O_NONBLOCK) on this process's descriptor."""

    name: ClassVar[str] = "nonblocking"
    connection_only: ClassVar[bool] = True

    def perform(self, ep: Any) -> None:
        ep.record("fcntl", {"cmd": "F_SETFL", "flags": "O_NONBLOCK"}, lambda: ep.sock.setblocking(False) or 0)


@dataclass(frozen=True)
class Sleep(Step):
    """The process is busy for `seconds` (only where the delay is the lesson)."""

    seconds: float = 0.1
    name: ClassVar[str] = "sleep"
    connection_only: ClassVar[bool] = True
    needs_socket: ClassVar[bool] = False

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        check_number("seconds", self.seconds, 0.0, MAX_SECONDS, where=where)
        if self.seconds >= scenario.time_limit:
            seconds, limit = f"{self.seconds:g}", f"{scenario.time_limit:g}"
            raise ScenarioError(text("refusal.sleep_limit", where=where, seconds=seconds, limit=limit))

    def perform(self, ep: Any) -> None:
        ep.record("sleep", {"seconds": self.seconds}, lambda: ep.sleep(self.seconds))


@dataclass(frozen=True)
class Fork(Step):
    """fork(): a new process `child` shares this process's descriptors."""

    child: str = "server-child"
    name: ClassVar[str] = "fork"

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if not isinstance(self.child, str) or not self.child or self.child in ENDPOINTS or len(self.child) > 40:
            raise ScenarioError(text("refusal.fork_child", where=where))

    def advance(self, where: Where, holder: Holder, holders: dict[str, Holder]) -> None:
        if self.child in holders:
            raise ScenarioError(text("refusal.fork_exists", where=where, child=repr(self.child)))
        holders[self.child] = Holder(holder.endpoint, holder.conn, listener=holder.listener)

    def perform(self, ep: Any) -> None:
        ep.fork(self.child)


@dataclass(frozen=True)
class Exit(Step):
    """The process exits without calling close(): the kernel drops its descriptors."""

    name: ClassVar[str] = "exit"
    needs_socket: ClassVar[bool] = False

    def advance(self, where: Where, holder: Holder, holders: dict[str, Holder]) -> None:
        holder.exited, holder.conn, holder.listener = True, "closed", False

    def perform(self, ep: Any) -> None:
        ep.exit()


@dataclass(frozen=True)
class Epoll(Step):
    """epoll_wait() with timeout 0 on this process's socket: the result is the ready event bits."""

    name: ClassVar[str] = "epoll"
    connection_only: ClassVar[bool] = True

    def perform(self, ep: Any) -> None:
        ep.record("epoll_wait", {"timeout": 0}, ep.epoll_bits)


@dataclass(frozen=True)
class Connect(Step):
    """connect() the client to the server. A second connect() (after close) makes a new socket bound
    to the same local port, so the new connection has the old one's 4-tuple."""

    name: ClassVar[str] = "connect"
    needs_socket: ClassVar[bool] = False

    def advance(self, where: Where, holder: Holder, holders: dict[str, Holder]) -> None:
        if self.side != "client":
            raise ScenarioError(text("refusal.connect_side", where=where))
        if holder.conn not in ("unconnected", "closed"):
            raise ScenarioError(text("refusal.connect_again", where=where))
        holder.connects += 1
        if holder.connects > 4:
            raise ScenarioError(text("refusal.connect_most", where=where, most=4))
        holder.conn = "connected"

    def perform(self, ep: Any) -> None:
        ep.connect()


@dataclass(frozen=True)
class Accept(Step):
    """accept() the next connection from the server's listening socket."""

    name: ClassVar[str] = "accept"
    needs_socket: ClassVar[bool] = False

    def advance(self, where: Where, holder: Holder, holders: dict[str, Holder]) -> None:
        if self.side != "server" or not holder.listener:
            raise ScenarioError(text("refusal.accept_side", where=where))
        if holder.conn == "connected":
            raise ScenarioError(text("refusal.accept_again", where=where))
        holder.conn = "connected"

    def perform(self, ep: Any) -> None:
        ep.accept()


@dataclass(frozen=True)
class Setsockopt(Step):
    """setsockopt(option, value) on this process's socket, e.g. TCP_USER_TIMEOUT in milliseconds."""

    option: str = "TCP_USER_TIMEOUT"
    value: int = 0
    name: ClassVar[str] = "setsockopt"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if not isinstance(self.option, str) or self.option not in SETSOCKOPT:
            raise ScenarioError(
                text("refusal.option", where=where, option=f"{self.option!r:.60}", allowed=", ".join(SETSOCKOPT))
            )
        check_int("value", self.value, *SETSOCKOPT[self.option], where=where)

    def perform(self, ep: Any) -> None:
        ep.record("setsockopt", {"option": self.option, "value": self.value},
                  lambda: ep.setsockopt(self.option, self.value))  # fmt: skip


@dataclass(frozen=True)
class Getsockopt(Step):
    """getsockopt(option): SO_ERROR gives the pending error's name (or 0), others a number."""

    option: str = "SO_ERROR"
    name: ClassVar[str] = "getsockopt"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if not isinstance(self.option, str) or self.option not in GETSOCKOPT:
            raise ScenarioError(
                text("refusal.option", where=where, option=f"{self.option!r:.60}", allowed=", ".join(GETSOCKOPT))
            )

    def perform(self, ep: Any) -> None:
        ep.record("getsockopt", {"option": self.option}, lambda: ep.getsockopt(self.option))


@dataclass(frozen=True)
class Ioctl(Step):
    """ioctl(request): SIOCINQ (unread bytes), SIOCOUTQ (unacknowledged bytes), SIOCOUTQNSD (unsent)."""

    request: str = "SIOCINQ"
    name: ClassVar[str] = "ioctl"
    connection_only: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if not isinstance(self.request, str) or self.request not in IOCTLS:
            raise ScenarioError(
                text("refusal.ioctl_request", where=where, request=f"{self.request!r:.60}", allowed=", ".join(IOCTLS))
            )

    def perform(self, ep: Any) -> None:
        ep.record("ioctl", {"request": self.request}, lambda: ep.ioctl(self.request))


@dataclass(frozen=True)
class Call(Step):
    """Your own function, `function(sock)`, run on this process's socket in the sandbox.

    `source` holds the function's code (closekit.steps.call takes it from a function). The
    result is what it returns; an exception is recorded as "raised Type: message" (an OSError
    also by its errno name).
    """

    source: str = ""
    function: str = ""
    name: ClassVar[str] = "call"

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        """The code must parse and define `function` taking the socket as its one required argument."""
        if not isinstance(self.source, str) or not isinstance(self.function, str) or not self.function.isidentifier():
            raise ScenarioError(text("refusal.call_function", where=where))
        if len(self.source) > MAX_SOURCE:
            raise ScenarioError(text("refusal.call_long", where=where, length=len(self.source), most=MAX_SOURCE))
        try:
            tree = ast.parse(self.source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise ScenarioError(text("refusal.call_parse", where=where, error=getattr(e, "msg", e))) from None
        found = [
            n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == self.function
        ]
        if not found or isinstance(found[0], ast.AsyncFunctionDef):
            raise ScenarioError(text("refusal.call_missing", where=where, function=repr(self.function)))
        arguments = found[0].args
        required = len(arguments.posonlyargs) + len(arguments.args) - len(arguments.defaults)
        if required != 1 and not (required == 0 and arguments.vararg):
            raise ScenarioError(text("refusal.call_arguments", where=where, function=self.function, required=required))

    def perform(self, ep: Any) -> None:
        ep.call(self)


# ---- the lab's steps -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Release(Step):
    """The wire hands over the segments from `side` that a hold or copy rule kept back."""

    name: ClassVar[str] = "release"
    needs_socket: ClassVar[bool] = False
    lab: ClassVar[bool] = True

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if self.side not in ENDPOINTS:
            raise ScenarioError(text("refusal.release_side", where=where))
        if not any(r.action in ("hold", "copy") and r.src == self.side for r in scenario.link.rules):
            raise ScenarioError(text("refusal.release_rule", where=where, side=self.side))


@dataclass(frozen=True)
class AtOnce(Step):
    """Steps of different processes that happen together as far as TCP can tell. On the lab's wire
    they run one after another, in the order given, while the wire holds everything they send until
    all have returned, so their segments cross (and the transcript reads the same every run); with
    no wire they are started together."""

    steps: tuple[Step, ...] = ()
    name: ClassVar[str] = "at_once"
    needs_socket: ClassVar[bool] = False
    lab: ClassVar[bool] = True

    def describe(self) -> str:
        return "at_once(" + ", ".join(s.describe() for s in self.steps) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "side": self.side, "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class WaitRecvQueue(SyncPoint):
    """Sync point: `side`'s socket holds at least `nbytes` unread bytes, or as many as it can take
    (its peer has more to send, but the window is closed: the peer's zero-window probe timer runs)."""

    nbytes: int = 1
    name: ClassVar[str] = "wait_recv_queue"

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        check_int("nbytes", self.nbytes, 0, MAX_BYTES, where=where)

    def met(self, m: Moment, endpoint: str) -> bool:
        return m.view(endpoint).rqueue >= self.nbytes or window_closed(m, endpoint)

    def waited_for(self, m: Moment, endpoint: str) -> str:
        return text("run.waited.unread", nbytes=self.nbytes, side=self.side, held=m.view(endpoint).rqueue)

    def looks(self, endpoint: str, current: int) -> tuple[tuple[str, int], ...]:
        return ((endpoint, current), (peer_of(endpoint), current))


@dataclass(frozen=True)
class WaitState(SyncPoint):
    """Sync point: `side`'s socket (its listening socket with listener=True) is in `state`
    (CLOSED once the kernel has freed it)."""

    state: str = "ESTABLISHED"
    listener: bool = False
    name: ClassVar[str] = "wait_state"

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if self.state not in tcp.STATES:
            raise ScenarioError(
                text("refusal.state_unknown", where=where, state=f"{self.state!r:.40}", allowed=", ".join(tcp.STATES))
            )
        if not isinstance(self.listener, bool) or (self.listener and holder.endpoint != "server"):
            raise ScenarioError(text("refusal.state_listener", where=where))

    def met(self, m: Moment, endpoint: str) -> bool:
        return m.view(endpoint, self.listener).state == self.state

    def waited_for(self, m: Moment, endpoint: str) -> str:
        seen = m.view(endpoint, self.listener).state
        return text("run.waited.state_listener" if self.listener else "run.waited.state",
                    side=self.side, state=self.state, seen=seen)  # fmt: skip

    def looks(self, endpoint: str, current: int) -> tuple[tuple[str, int], ...]:
        return ((endpoint, 0 if self.listener else current),)


@dataclass(frozen=True)
class WaitSegment(SyncPoint):
    """Sync point: a segment from `side` carrying `flags` (and window `win`, if given) was sent since
    the last sync point."""

    flags: tuple[str, ...] = ("FIN",)
    win: int | None = None
    name: ClassVar[str] = "wait_segment"

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if self.side not in ENDPOINTS:
            raise ScenarioError(text("refusal.segment_side", where=where))
        flags = self.flags
        if not isinstance(flags, tuple) or not flags or any(f not in SEGMENT_FLAGS for f in flags):
            raise ScenarioError(text("refusal.segment_flags", where=where, allowed=", ".join(SEGMENT_FLAGS)))
        if self.win is not None:
            check_int("win", self.win, 0, 1 << 30, where=where)

    def met(self, m: Moment, endpoint: str) -> bool:
        wanted = set(self.flags)
        return any(
            src == self.side and wanted <= flags and (self.win is None or win == self.win)
            for src, flags, win in m.segments
        )

    def waited_for(self, m: Moment, endpoint: str) -> str:
        seen = ", ".join(f"{src} {'+'.join(sorted(flags))}" for src, flags, _win in m.segments)
        seen = seen or text("run.waited.no_segments")
        flags = "+".join(self.flags)
        if self.win is None:
            return text("run.waited.segment", side=self.side, flags=flags, seen=seen)
        return text("run.waited.segment_window", side=self.side, flags=flags, win=self.win, seen=seen)


@dataclass(frozen=True)
class WaitAcked(SyncPoint):
    """Sync point: the peer's TCP has acknowledged everything `side`'s socket sent, FIN included (its
    send queue is empty). After a FIN this waits for the peer's ACK, delayed by its timer or not."""

    name: ClassVar[str] = "wait_acked"

    def check(self, where: Where, scenario: Scenario, holder: Holder) -> None:
        if self.side not in ENDPOINTS:
            raise ScenarioError(text("refusal.acked_side", where=where))

    def met(self, m: Moment, endpoint: str) -> bool:
        view = m.view(endpoint)
        return view.state is not None and view.wqueue == 0 and m.in_flight == 0

    def waited_for(self, m: Moment, endpoint: str) -> str:
        return text("run.waited.acked", side=self.side, unacked=m.view(endpoint).wqueue)

    def looks(self, endpoint: str, current: int) -> tuple[tuple[str, int], ...]:
        return ((endpoint, current),)


@dataclass(frozen=True)
class WaitDone(SyncPoint):
    """Sync point: `side` has returned from every line it was given before this one (a call that
    blocks, such as a lingering close(), does not hold the other processes: this joins it)."""

    name: ClassVar[str] = "wait_done"

    def met(self, m: Moment, endpoint: str) -> bool:
        return self.side in m.returned

    def waited_for(self, m: Moment, endpoint: str) -> str:
        return text("run.waited.done", side=self.side)


@dataclass(frozen=True)
class WaitBlocked(SyncPoint):
    """Sync point: `side` sleeps in the kernel in its last line before this one: blocked in a call
    that waits (a recv() for data, a lingering close() for an ACK), so that what the lines after
    this one do is what wakes it."""

    name: ClassVar[str] = "wait_blocked"

    def met(self, m: Moment, endpoint: str) -> bool:
        return self.side in m.blocked

    def waited_for(self, m: Moment, endpoint: str) -> str:
        returned = self.side in m.returned
        return text("run.waited.blocked_returned" if returned else "run.waited.blocked_running", side=self.side)


def window_closed(m: Moment, receiver: str) -> bool:
    """The receiver holds unread data and its peer, with data left to send, waits for the window."""
    me, peer = m.view(receiver), m.view(peer_of(receiver))
    return me.rqueue > 0 and peer.wqueue > 0 and peer.timer == ZERO_WINDOW and m.in_flight == 0


_KINDS = (Send, Recv, ReadToEof, Close, Shutdown, Linger, Nonblocking, Sleep, Fork, Exit, Epoll, Connect, Accept,
          Setsockopt, Getsockopt, Ioctl, Call, Release, AtOnce, WaitRecvQueue, WaitState, WaitSegment, WaitAcked,
          WaitDone, WaitBlocked)  # fmt: skip
STEP_TYPES: dict[str, type[Step]] = {cls.name: cls for cls in _KINDS}


def iter_steps(steps: tuple[Step, ...]) -> list[Step]:
    """Every step, with the parts of at_once steps in place of them."""
    flat: list[Step] = []
    for s in steps:
        flat.extend(s.steps if isinstance(s, AtOnce) else (s,))
    return flat


# ---- checking numbers ----------------------------------------------------------------------------
def check_int(name: str, value: Any, low: int, high: int, where: object = None) -> None:
    """Refuse `value` unless it is a whole number from `low` to `high`; `name` is the field, of the
    line `where` (a Where), if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        what = _field(name, where)
        raise ScenarioError(text("refusal.whole", what=what, low=low, high=high, value=f"{value!r:.60}"))
    if not low <= value <= high:
        raise ScenarioError(text("refusal.range", what=_field(name, where), value=value, low=low, high=high))


def check_number(name: str, value: Any, low: float, high: float, where: object = None) -> None:
    """Refuse `value` unless it is a number of seconds from `low` to `high` (see check_int)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        what = _field(name, where)
        raise ScenarioError(text("refusal.number", what=what, low=low, high=high, value=f"{value!r:.60}"))
    if not low <= value <= high:
        raise ScenarioError(text("refusal.range_seconds", what=_field(name, where), value=value, low=low, high=high))


def _field(name: str, where: object) -> str:
    return name if where is None else text("refusal.field", where=where, name=name)


# ---- the names a scenario script uses ------------------------------------------------------------
def call(side: str, function: Callable) -> Call:
    """A step that runs `function(sock)` on `side`'s socket, in the sandbox (its source is sent)."""
    if not callable(function) or not hasattr(function, "__code__"):
        raise ScenarioError(text("refusal.call_def", type=type(function).__name__))
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        raise ScenarioError(text("refusal.call_source", function=function.__name__)) from None
    return Call(side, source=source, function=function.__name__)


def at_once(*steps: Step) -> AtOnce:
    """These steps (of different processes) together, e.g. both sides close at the same time: on the
    lab's wire their segments cross (see AtOnce)."""
    return AtOnce("*", steps=tuple(steps))


send, recv, read_to_eof, close, shutdown, linger = Send, Recv, ReadToEof, Close, Shutdown, Linger
nonblocking, sleep, fork, exit, epoll, connect, accept = Nonblocking, Sleep, Fork, Exit, Epoll, Connect, Accept
setsockopt, getsockopt, ioctl, release = Setsockopt, Getsockopt, Ioctl, Release
wait_recv_queue, wait_state, wait_segment, wait_acked, wait_done, wait_blocked = (
    WaitRecvQueue, WaitState, WaitSegment, WaitAcked, WaitDone, WaitBlocked,
)  # fmt: skip

__all__ = [
    "accept", "at_once", "call", "close", "connect", "epoll", "exit", "fork", "getsockopt", "ioctl",
    "linger", "nonblocking", "read_to_eof", "recv", "release", "send", "setsockopt", "shutdown",
    "sleep", "wait_acked", "wait_blocked", "wait_done", "wait_recv_queue", "wait_segment", "wait_state",
]  # fmt: skip
