"""Scenarios: packetdrill-like timelines of steps for two endpoints, ordered by sync points.

A scenario always starts the same way: the server listens on 127.0.0.1, the client connects and
the server accepts (options such as buffer sizes are applied before that). Then its steps run
in order. A step on one side waits for that side's previous step to finish; a step marked
``background=True`` is started and the timeline moves on (use it for calls that block, such
as a lingering close()), and ``wait_done(side)`` joins it again. ``wait_*`` steps are sync
points: they wait for a condition the kernel can be asked about, never for a guessed time.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, fields
from typing import Any

from closekit.errors import ScenarioError

SHUTDOWN_HOWS = ("SHUT_RD", "SHUT_WR", "SHUT_RDWR")
TCP_STATES = (
    "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT",
    "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
)  # fmt: skip
SEGMENT_FLAGS = ("SYN", "ACK", "FIN", "RST", "PSH", "URG")
BASE_SIDES = ("client", "server")
MAX_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 30.0
MAX_STEPS = 200


@dataclass(frozen=True)
class Step:
    """One line of a scenario, done by `side`."""

    side: str
    background: bool = field(default=False, kw_only=True)

    @property
    def call(self) -> str:
        """The name of this step as it appears in scenarios and errors."""
        return _STEP_NAMES[type(self)]

    def describe(self) -> str:
        args = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("side", "background", "source")
        )
        bg = ", background=True" if self.background else ""
        return f"{self.call}({self.side!r}{', ' + args if args else ''}{bg})"


@dataclass(frozen=True)
class Send(Step):
    """send() `nbytes` bytes, blocking until the kernel has taken them all (or an error)."""

    nbytes: int = 1


@dataclass(frozen=True)
class Recv(Step):
    """One recv() of at most `nbytes`: returns what was there, 0 at end of stream, or an errno."""

    nbytes: int = 65536


@dataclass(frozen=True)
class ReadToEof(Step):
    """recv() in a loop until it returns 0 or fails; the result is the total byte count."""


@dataclass(frozen=True)
class Close(Step):
    """close() this side's descriptor."""


@dataclass(frozen=True)
class Shutdown(Step):
    """shutdown(how) with how one of SHUT_RD, SHUT_WR, SHUT_RDWR."""

    how: str = "SHUT_WR"


@dataclass(frozen=True)
class Linger(Step):
    """setsockopt(SO_LINGER): `seconds` None turns lingering off, 0 aborts, > 0 waits that long."""

    seconds: int | None = 0


@dataclass(frozen=True)
class Nonblocking(Step):
    """fcntl(O_NONBLOCK) on this side's descriptor."""


@dataclass(frozen=True)
class Sleep(Step):
    """The process is busy for `seconds` (only where the delay is the lesson)."""

    seconds: float = 0.1


@dataclass(frozen=True)
class Fork(Step):
    """fork(): a new process `child` shares this side's connected descriptor."""

    child: str = "server-child"


@dataclass(frozen=True)
class Exit(Step):
    """The process exits without calling close(): the kernel drops its descriptors."""


@dataclass(frozen=True)
class Epoll(Step):
    """epoll_wait() with timeout 0 on this side's socket: the result is the ready event bits."""


@dataclass(frozen=True)
class Call(Step):
    """Your own function, `function(sock)`, run on this side's connected socket in the sandbox.

    `source` holds the function's code (closekit.steps.call takes it from a function). The
    result is what it returns; an exception is recorded as "raised Type: message" (an OSError
    also by its errno name).
    """

    source: str = ""
    function: str = ""


@dataclass(frozen=True)
class WaitRecvQueue(Step):
    """Sync point: `side`'s socket holds at least `nbytes` unread bytes, or as many as its receive
    buffer can hold (its peer has more to send but nothing has moved: the window is closed)."""

    nbytes: int = 1


@dataclass(frozen=True)
class WaitState(Step):
    """Sync point: `side`'s socket is in `state` (CLOSED once the kernel has freed it)."""

    state: str = "ESTABLISHED"


@dataclass(frozen=True)
class WaitSegment(Step):
    """Sync point: a segment from `side` carrying `flags` (and window `win`, if given) was seen."""

    flags: tuple[str, ...] = ("FIN",)
    win: int | None = None


@dataclass(frozen=True)
class WaitDone(Step):
    """Sync point: `side` has finished the step it was running in the background."""


_STEP_NAMES: dict[type, str] = {
    Send: "send", Recv: "recv", ReadToEof: "read_to_eof", Close: "close", Shutdown: "shutdown",
    Linger: "linger", Nonblocking: "nonblocking", Sleep: "sleep", Fork: "fork", Exit: "exit",
    Epoll: "epoll", Call: "call", WaitRecvQueue: "wait_recv_queue", WaitState: "wait_state",
    WaitSegment: "wait_segment", WaitDone: "wait_done",
}  # fmt: skip
SYNC_STEPS = (WaitRecvQueue, WaitState, WaitSegment, WaitDone)
STEP_TYPES: dict[str, type[Step]] = {name: cls for cls, name in _STEP_NAMES.items()}


@dataclass(frozen=True)
class Options:
    """Socket options applied before the connection is made (recorded as setsockopt calls)."""

    server_rcvbuf: int | None = None
    client_sndbuf: int | None = None
    server_sndbuf: int | None = None
    client_rcvbuf: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A named, described timeline; `section` names the part of the source document it backs."""

    name: str
    description: str
    steps: tuple[Step, ...]
    section: str = ""
    options: Options = Options()
    sync_timeout: float = 3.0
    time_limit: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        validate(self)

    @property
    def sides(self) -> list[str]:
        names = list(BASE_SIDES)
        for s in self.steps:
            if isinstance(s, Fork):
                names.append(s.child)
        return names

    def script(self) -> str:
        """The scenario as packetdrill-like lines, one step a line."""
        return "\n".join(s.describe() for s in self.steps)


def validate(scenario: Scenario) -> None:
    """Reject what can be known to be wrong before anything runs, naming the step."""
    if not isinstance(scenario.name, str) or not scenario.name:
        raise ScenarioError("a scenario needs a non-empty name (a str)")
    if not isinstance(scenario.steps, tuple) or not scenario.steps:
        raise ScenarioError(f"scenario {scenario.name!r} has no steps: give at least one step")
    if len(scenario.steps) > MAX_STEPS:
        raise ScenarioError(f"scenario {scenario.name!r} has {len(scenario.steps)} steps; at most {MAX_STEPS}")
    _check_number("sync_timeout", scenario.sync_timeout, 0.01, MAX_SECONDS)
    _check_number("time_limit", scenario.time_limit, 0.1, 60.0)
    for name in ("server_rcvbuf", "client_sndbuf", "server_sndbuf", "client_rcvbuf"):
        value = getattr(scenario.options, name)
        if value is not None:
            _check_int(name, value, 1, MAX_BYTES)
    alive = {"client": True, "server": True}  # has a descriptor
    exited: set[str] = set()
    busy: set[str] = set()
    for i, step in enumerate(scenario.steps, 1):
        where = f"step {i} of {scenario.name!r}"
        if not isinstance(step, Step):
            raise ScenarioError(
                f"{where} is {step!r}, not a step; build steps with closekit.steps ({', '.join(STEP_TYPES)})"
            )
        where = f"{where}, {step.describe()}"
        if not isinstance(step.side, str) or step.side not in alive:
            raise ScenarioError(
                f"{where}: unknown side {step.side!r}; the sides so far are {sorted(alive)} (fork() adds a child side)"
            )
        if step.side in exited and not isinstance(step, (WaitState, WaitSegment, WaitRecvQueue)):
            raise ScenarioError(f"{where}: side {step.side!r} has already exited")
        if not isinstance(step.background, bool):
            raise ScenarioError(f"{where}: background must be True or False")
        _check_step(step, where, scenario.sides)
        if step.background and isinstance(step, SYNC_STEPS):
            raise ScenarioError(f"{where}: a sync point cannot run in the background")
        needs_fd = not isinstance(step, (Sleep, Exit, *SYNC_STEPS))
        if needs_fd and not alive[step.side]:
            raise ScenarioError(
                f"{where}: {step.side!r} has already closed its descriptor; after close() only "
                "sleep, exit and wait_* steps are allowed on that side"
            )
        if isinstance(step, WaitDone):
            if step.side not in busy:
                raise ScenarioError(
                    f"{where}: nothing runs in the background on {step.side!r}, so this would wait "
                    "forever; mark the step to wait for with background=True"
                )
            busy.discard(step.side)
        elif step.background:
            busy.add(step.side)
        if isinstance(step, Close):
            alive[step.side] = False
        elif isinstance(step, Exit):
            alive[step.side] = False
            exited.add(step.side)
        elif isinstance(step, Fork):
            if step.child in alive:
                raise ScenarioError(f"{where}: a side called {step.child!r} already exists")
            alive[step.child] = True


def _check_step(step: Step, where: str, sides: list[str]) -> None:
    if isinstance(step, Call):
        _check_call(step, where)
    elif isinstance(step, (Send, Recv, WaitRecvQueue)):
        _check_int(f"{where}: nbytes", step.nbytes, 0 if isinstance(step, WaitRecvQueue) else 1, MAX_BYTES)
    elif isinstance(step, Shutdown):
        if step.how not in SHUTDOWN_HOWS:
            raise ScenarioError(f"{where}: how={step.how!r} is not one of {', '.join(SHUTDOWN_HOWS)}")
    elif isinstance(step, Linger):
        if step.seconds is not None:
            _check_int(f"{where}: seconds", step.seconds, 0, int(MAX_SECONDS))
    elif isinstance(step, Sleep):
        _check_number(f"{where}: seconds", step.seconds, 0.0, MAX_SECONDS)
    elif isinstance(step, Fork):
        if not isinstance(step.child, str) or not step.child or step.child in BASE_SIDES:
            raise ScenarioError(f"{where}: child must be a new side name, e.g. 'server-child'")
    elif isinstance(step, WaitState):
        if step.state not in TCP_STATES:
            raise ScenarioError(f"{where}: state={step.state!r} is not one of {', '.join(TCP_STATES)}")
    elif isinstance(step, WaitSegment):
        if step.side not in BASE_SIDES:
            raise ScenarioError(f"{where}: segments are seen per endpoint: side must be 'client' or 'server'")
        flags = step.flags
        if not isinstance(flags, tuple) or not flags or any(f not in SEGMENT_FLAGS for f in flags):
            raise ScenarioError(f"{where}: flags must be a non-empty tuple of {', '.join(SEGMENT_FLAGS)}")
        if step.win is not None:
            _check_int(f"{where}: win", step.win, 0, 1 << 30)


def _check_call(step: Call, where: str) -> None:
    """The code must parse and define `function` taking the socket as its one required argument."""
    if not isinstance(step.source, str) or not isinstance(step.function, str) or not step.function.isidentifier():
        raise ScenarioError(f"{where}: give a function, e.g. call('client', my_function)")
    try:
        tree = ast.parse(step.source)
    except SyntaxError as e:
        raise ScenarioError(f"{where}: the function's code does not parse: {e.msg} (line {e.lineno})") from None
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == step.function]
    if not found or isinstance(found[0], ast.AsyncFunctionDef):
        raise ScenarioError(f"{where}: the code defines no plain function called {step.function!r}")
    arguments = found[0].args
    required = len(arguments.posonlyargs) + len(arguments.args) - len(arguments.defaults)
    if required != 1 and not (required == 0 and arguments.vararg):
        raise ScenarioError(
            f"{where}: {step.function}() must take exactly one argument, the connected socket "
            f"(it takes {required} required arguments)"
        )


def _check_int(what: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise ScenarioError(f"{what}={value} is out of range: allowed {low} to {high}")


def _check_number(what: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ScenarioError(f"{what} must be a number from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise ScenarioError(f"{what}={value} is out of range: allowed {low} to {high} seconds")
