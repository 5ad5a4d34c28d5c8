"""Scenarios: packetdrill-like timelines of steps for two endpoints, ordered by sync points.

By default a scenario starts connected: the server listens, the client connects and the server
accepts before the first step (`start="connected"`). With `start="listening"` only the server
listens and the client holds a fresh socket: the steps connect and accept themselves, so what
happens before accept() can be a lesson too.

Then the steps run in order. A step on one process waits until that process has finished its
previous step and the wire has nothing in flight; a step marked ``background=True`` is started
and the timeline moves on (use it for calls that block, such as a lingering close()), and
``wait_done(side)`` joins it again. ``at_once(a, b)`` starts steps of different processes
together: the wire holds what they send until all have returned. ``wait_*`` steps are sync
points: they wait for a condition the kernel can be asked about, never for a guessed time.

A scenario is plain data: it crosses into the lab as JSON and is validated there again.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field, fields
from typing import Any

from closekit import tcp
from closekit.errors import ScenarioError
from closekit.link import Link
from closekit.settings import Settings

SHUTDOWN_HOWS = ("SHUT_RD", "SHUT_WR", "SHUT_RDWR")
TCP_STATES = tcp.STATES
SEGMENT_FLAGS = ("SYN", "ACK", "FIN", "RST", "PSH", "URG")
ENDPOINTS = ("client", "server")
STARTS = ("connected", "listening")
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
FOREGROUND_SEND = 65536  # a send() larger than this blocks until the peer reads: run it in the background
MAX_SECONDS = 30.0
MAX_TIME_LIMIT = 60.0
MAX_STEPS = 200
MAX_SOURCE = 20_000  # characters of a call() function's code
MAX_DESCRIPTION = 1000  # characters, as a trace may carry (closekit.trace_schema)


_QUIET_DEFAULTS = ("listener", "onoff")  # shown only when given


@dataclass(frozen=True)
class Step:
    """One line of a scenario, done by the process `side`."""

    side: str
    background: bool = field(default=False, kw_only=True)

    @property
    def call(self) -> str:
        """The name of this step as it appears in scenarios and errors."""
        return STEP_NAMES[type(self)]

    def describe(self) -> str:
        args = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("side", "background", "source")
            and not (f.name in _QUIET_DEFAULTS and getattr(self, f.name) == f.default)
        )
        bg = ", background=True" if self.background else ""
        return f"{self.call}({self.side!r}{', ' + args if args else ''}{bg})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.call}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data


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
    """close() this process's descriptor of the connection (or, with listener=True, of the listening socket)."""

    listener: bool = False


@dataclass(frozen=True)
class Shutdown(Step):
    """shutdown(how) with how one of SHUT_RD, SHUT_WR, SHUT_RDWR."""

    how: str = "SHUT_WR"


@dataclass(frozen=True)
class Linger(Step):
    """setsockopt(SO_LINGER): `seconds` None turns lingering off, 0 aborts, > 0 waits that long.

    `onoff=0` with seconds set sends {l_onoff = 0, l_linger = seconds}: the kernel must ignore it.
    """

    seconds: int | None = 0
    onoff: int | None = None


@dataclass(frozen=True)
class Nonblocking(Step):
    """fcntl(O_NONBLOCK) on this process's descriptor."""


@dataclass(frozen=True)
class Sleep(Step):
    """The process is busy for `seconds` (only where the delay is the lesson)."""

    seconds: float = 0.1


@dataclass(frozen=True)
class Fork(Step):
    """fork(): a new process `child` shares this process's descriptors."""

    child: str = "server-child"


@dataclass(frozen=True)
class Exit(Step):
    """The process exits without calling close(): the kernel drops its descriptors."""


@dataclass(frozen=True)
class Epoll(Step):
    """epoll_wait() with timeout 0 on this process's socket: the result is the ready event bits."""


@dataclass(frozen=True)
class Connect(Step):
    """connect() the client to the server. A second connect() (after close) makes a new socket bound
    to the same local port, so the new connection has the old one's 4-tuple."""


@dataclass(frozen=True)
class Accept(Step):
    """accept() the next connection from the server's listening socket."""


@dataclass(frozen=True)
class Setsockopt(Step):
    """setsockopt(option, value) on this process's socket, e.g. TCP_USER_TIMEOUT in milliseconds."""

    option: str = "TCP_USER_TIMEOUT"
    value: int = 0


@dataclass(frozen=True)
class Getsockopt(Step):
    """getsockopt(option): SO_ERROR gives the pending error's name (or 0), others a number."""

    option: str = "SO_ERROR"


@dataclass(frozen=True)
class Ioctl(Step):
    """ioctl(request): SIOCINQ (unread bytes), SIOCOUTQ (unacknowledged bytes), SIOCOUTQNSD (unsent)."""

    request: str = "SIOCINQ"


@dataclass(frozen=True)
class Call(Step):
    """Your own function, `function(sock)`, run on this process's socket in the sandbox.

    `source` holds the function's code (closekit.steps.call takes it from a function). The
    result is what it returns; an exception is recorded as "raised Type: message" (an OSError
    also by its errno name).
    """

    source: str = ""
    function: str = ""


@dataclass(frozen=True)
class Release(Step):
    """The wire hands over the segments from `side` that a hold or copy rule kept back."""


@dataclass(frozen=True)
class AtOnce(Step):
    """Steps of different processes that happen together as far as TCP can tell. On the lab's wire
    they run one after another, in the order given, while the wire holds everything they send until
    all have returned, so their segments cross (and the transcript reads the same every run); with
    no wire they are started together."""

    steps: tuple[Step, ...] = ()

    def describe(self) -> str:
        return "at_once(" + ", ".join(s.describe() for s in self.steps) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"step": "at_once", "side": self.side, "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class WaitRecvQueue(Step):
    """Sync point: `side`'s socket holds at least `nbytes` unread bytes, or as many as it can take
    (its peer has more to send, but the window is closed: the peer's zero-window probe timer runs)."""

    nbytes: int = 1


@dataclass(frozen=True)
class WaitState(Step):
    """Sync point: `side`'s socket (its listening socket with listener=True) is in `state`
    (CLOSED once the kernel has freed it)."""

    state: str = "ESTABLISHED"
    listener: bool = False


@dataclass(frozen=True)
class WaitSegment(Step):
    """Sync point: a segment from `side` carrying `flags` (and window `win`, if given) was sent."""

    flags: tuple[str, ...] = ("FIN",)
    win: int | None = None


@dataclass(frozen=True)
class WaitAcked(Step):
    """Sync point: the peer's TCP has acknowledged everything `side`'s socket sent, FIN included (its
    send queue is empty). After a FIN this waits for the peer's ACK, delayed by its timer or not."""


@dataclass(frozen=True)
class WaitDone(Step):
    """Sync point: `side` has finished the step it was running in the background."""


STEP_NAMES: dict[type[Step], str] = {
    Send: "send", Recv: "recv", ReadToEof: "read_to_eof", Close: "close", Shutdown: "shutdown",
    Linger: "linger", Nonblocking: "nonblocking", Sleep: "sleep", Fork: "fork", Exit: "exit",
    Epoll: "epoll", Connect: "connect", Accept: "accept", Setsockopt: "setsockopt",
    Getsockopt: "getsockopt", Ioctl: "ioctl", Call: "call", Release: "release", AtOnce: "at_once",
    WaitRecvQueue: "wait_recv_queue", WaitState: "wait_state", WaitSegment: "wait_segment",
    WaitAcked: "wait_acked", WaitDone: "wait_done",
}  # fmt: skip
STEP_TYPES: dict[str, type[Step]] = {name: cls for cls, name in STEP_NAMES.items()}
SYNC_STEPS = (WaitRecvQueue, WaitState, WaitSegment, WaitAcked, WaitDone)
_NO_SOCKET_NEEDED = (Sleep, Exit, Release, Connect, Accept, *SYNC_STEPS)


@dataclass(frozen=True)
class Options:
    """Socket options applied before the connection is made (recorded as setsockopt calls)."""

    server_rcvbuf: int | None = None
    client_sndbuf: int | None = None
    server_sndbuf: int | None = None
    client_rcvbuf: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Scenario:
    """A named, described timeline; `section` names the part of the source document it backs.

    `link` is what the wire between the endpoints does (closekit.link), `settings` what the
    scenario changes from the kernel's defaults (closekit.settings).
    """

    name: str
    description: str
    steps: tuple[Step, ...]
    section: str = ""
    options: Options = Options()
    sync_timeout: float = 3.0
    time_limit: float = 10.0
    link: Link = Link()  # noqa: RUF009 (frozen)
    settings: Settings = Settings()  # noqa: RUF009 (frozen)
    start: str = "connected"

    def __post_init__(self) -> None:
        if isinstance(self.steps, list):
            object.__setattr__(self, "steps", tuple(self.steps))
        validate(self)

    @property
    def sides(self) -> list[str]:
        """Every process of the scenario: client, server, then forked children in order."""
        names = list(ENDPOINTS)
        for s in iter_steps(self.steps):
            if isinstance(s, Fork):
                names.append(s.child)
        return names

    def endpoint_of(self, process: str) -> str:
        """The endpoint whose sockets `process` holds (a forked child holds its parent's)."""
        owners = {"client": "client", "server": "server"}
        for s in iter_steps(self.steps):
            if isinstance(s, Fork):
                owners[s.child] = owners[s.side]
        return owners[process]

    def missing_in(self, mode: str) -> list[str]:
        """What this scenario needs that lab mode `mode` does not give (empty: it can run there)."""
        missing = []
        if not self.link.is_default and mode != "netns":
            missing.append(f"the lab's wire ({self.link.describe()})")
        elif any(isinstance(s, AtOnce) for s in self.steps) and mode != "netns":
            missing.append("the lab's wire, which holds what steps started at once send until all have returned")
        if not self.settings.is_default and mode not in ("netns", "netns-loopback"):
            missing.append(f"a private network namespace for its settings ({self.settings.describe()})")
        if mode == "host-nocapture" and any(isinstance(s, WaitSegment) for s in iter_steps(self.steps)):
            missing.append("the segments on the wire, which its wait_segment() sync point waits for")
        return missing

    def script(self) -> str:
        """The scenario as packetdrill-like lines, one step a line."""
        return "\n".join(s.describe() for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "section": self.section,
            "start": self.start,
            "options": self.options.to_dict(),
            "sync_timeout": self.sync_timeout,
            "time_limit": self.time_limit,
            "link": self.link.to_dict(),
            "settings": self.settings.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Scenario:
        """A scenario from its JSON form, validated as if written by hand (an error names what is wrong)."""
        if not isinstance(data, dict) or set(data) - set(_SCENARIO_KEYS) or not {"name", "steps"} <= set(data):
            raise ScenarioError(f"a scenario is a dict with keys {', '.join(_SCENARIO_KEYS)} (name and steps required)")
        steps = data["steps"]
        if not isinstance(steps, list) or len(steps) > MAX_STEPS:
            raise ScenarioError(f"a scenario's steps are a list of at most {MAX_STEPS} steps")
        options = data.get("options", {})
        if not isinstance(options, dict) or set(options) - {f.name for f in fields(Options)}:
            raise ScenarioError(f"options are a dict with keys {', '.join(f.name for f in fields(Options))}")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            section=data.get("section", ""),
            start=data.get("start", "connected"),
            options=Options(**options),
            sync_timeout=data.get("sync_timeout", 3.0),
            time_limit=data.get("time_limit", 10.0),
            link=Link.from_dict(data.get("link", {})),
            settings=Settings.from_dict(data.get("settings", {})),
            steps=tuple(step_from_dict(s, nested=False) for s in steps),
        )


_SCENARIO_KEYS = ("name", "description", "section", "start", "options", "sync_timeout", "time_limit", "link",
                  "settings", "steps")  # fmt: skip


def step_from_dict(data: Any, nested: bool) -> Step:
    """One step from its JSON form ({"step": "send", "side": "client", "nbytes": 6})."""
    if not isinstance(data, dict) or not isinstance(data.get("step"), str) or data["step"] not in STEP_TYPES:
        raise ScenarioError(f"a step is a dict whose 'step' is one of {', '.join(STEP_TYPES)}, not {data!r:.80}")
    cls = STEP_TYPES[data["step"]]
    allowed = {f.name for f in fields(cls)}
    given = {k: v for k, v in data.items() if k != "step"}
    if set(given) - allowed:
        raise ScenarioError(f"step {data['step']} takes {', '.join(sorted(allowed))}, not {', '.join(sorted(given))}")
    if cls is AtOnce:
        if nested or not isinstance(given.get("steps"), list):
            raise ScenarioError("at_once takes a list of steps, and cannot be nested")
        given["steps"] = tuple(step_from_dict(s, nested=True) for s in given["steps"])
    elif cls is WaitSegment and isinstance(given.get("flags"), list):
        given["flags"] = tuple(given["flags"])
    if not isinstance(given.get("side"), str):
        raise ScenarioError(f"step {data['step']} needs a side (a process name such as 'client')")
    try:
        return cls(**given)
    except TypeError as e:
        raise ScenarioError(f"step {data['step']}: {e}") from None


def iter_steps(steps: tuple[Step, ...]) -> list[Step]:
    """Every step, with the parts of at_once steps in place of them."""
    flat: list[Step] = []
    for s in steps:
        flat.extend(s.steps if isinstance(s, AtOnce) else (s,))
    return flat


# ---- validation ---------------------------------------------------------------------------------
@dataclass
class _Process:
    """What validation knows about one process as the timeline goes on."""

    endpoint: str
    conn: str  # "none", "unconnected", "connected", "closed"
    listener: bool = False
    exited: bool = False
    busy: bool = False
    reading: bool = False  # its background step is a read
    peer_reading: bool = False  # set for a step's check: a process of the other endpoint reads in the background
    connects: int = 0


def validate(scenario: Scenario) -> None:
    """Reject what can be known to be wrong before anything runs, naming the step and what is allowed."""
    _check_header(scenario)
    server_conn = "connected" if scenario.start == "connected" else "none"
    procs = {
        "client": _Process("client", "connected" if scenario.start == "connected" else "unconnected"),
        "server": _Process("server", server_conn, listener=True),
    }
    counted = 0
    foreground_sleep = 0.0
    for i, step in enumerate(scenario.steps, 1):
        where = f"step {i} of {scenario.name!r}"
        _check_type(step, where, top=True)
        where = f"{where}, {step.describe()}"
        parts = step.steps if isinstance(step, AtOnce) else (step,)
        counted += len(parts)
        if counted > MAX_STEPS:
            raise ScenarioError(f"scenario {scenario.name!r} has more than {MAX_STEPS} steps")
        if isinstance(step, AtOnce):
            _check_at_once(step, where)
        for part in parts:
            part_where = where if part is step else f"{where}: {part.describe()}"
            _check_step(part, part_where, scenario, procs)
            if isinstance(part, Sleep) and not part.background:
                foreground_sleep += part.seconds
    if foreground_sleep >= scenario.time_limit:
        raise ScenarioError(
            f"scenario {scenario.name!r} sleeps {foreground_sleep:g} s in all, but its time_limit is "
            f"{scenario.time_limit:g} s: raise time_limit (at most {MAX_TIME_LIMIT:g}) or sleep less"
        )


def _check_header(scenario: Scenario) -> None:
    if not isinstance(scenario.name, str) or not scenario.name or len(scenario.name) > 100:
        raise ScenarioError("a scenario needs a name: a non-empty str of at most 100 characters")
    if not isinstance(scenario.description, str) or not isinstance(scenario.section, str):
        raise ScenarioError(f"scenario {scenario.name!r}: description and section are str")
    if len(scenario.description) > MAX_DESCRIPTION:
        raise ScenarioError(
            f"scenario {scenario.name!r}: its description has {len(scenario.description)} characters; "
            f"at most {MAX_DESCRIPTION} (a trace carries it)"
        )
    if not isinstance(scenario.steps, tuple) or not scenario.steps:
        raise ScenarioError(f"scenario {scenario.name!r} has no steps: give a tuple of at least one step")
    if type(scenario.options) is not Options:
        raise ScenarioError(
            f"scenario {scenario.name!r}: options must be closekit.Options(...), not {scenario.options!r}"
        )
    if type(scenario.link) is not Link:
        raise ScenarioError(f"scenario {scenario.name!r}: link must be closekit.link.Link(...), not {scenario.link!r}")
    if type(scenario.settings) is not Settings:
        raise ScenarioError(f"scenario {scenario.name!r}: settings must be closekit.settings.Settings(...)")
    if scenario.start not in STARTS:
        raise ScenarioError(f"scenario {scenario.name!r}: start is one of {', '.join(STARTS)}, not {scenario.start!r}")
    _check_number("sync_timeout", scenario.sync_timeout, 0.01, MAX_SECONDS)
    _check_number("time_limit", scenario.time_limit, 0.1, MAX_TIME_LIMIT)
    for f in fields(Options):
        value = getattr(scenario.options, f.name)
        if value is not None:
            _check_int(f.name, value, 1, MAX_BYTES)
    # re-check what a frozen dataclass may have been given behind its back
    Link.__post_init__(scenario.link)
    Settings.__post_init__(scenario.settings)


def _check_type(step: Any, where: str, top: bool) -> None:
    if type(step) not in STEP_NAMES:
        raise ScenarioError(
            f"{where} is {step!r:.80}, not a step; build steps with closekit.steps ({', '.join(STEP_TYPES)})"
        )
    if not isinstance(step.side, str) or not step.side:
        raise ScenarioError(f"{where}: side must be a process name such as 'client'")
    if not isinstance(step.background, bool):
        raise ScenarioError(f"{where}: background must be True or False")
    if isinstance(step, AtOnce):
        if not top:
            raise ScenarioError(f"{where}: at_once steps cannot be nested")
        if not isinstance(step.steps, tuple) or len(step.steps) < 2:
            raise ScenarioError(f"{where}: at_once needs a tuple of at least two steps")
        for part in step.steps:
            _check_type(part, where, top=False)


def _check_at_once(step: AtOnce, where: str) -> None:
    for part in step.steps:
        if isinstance(part, (*SYNC_STEPS, Fork, Exit, Release)) or part.background:
            raise ScenarioError(
                f"{where}: {part.describe()} cannot run at once with others; use calls such as close, "
                "shutdown or send, without background"
            )
    sides = [p.side for p in step.steps]
    if len(set(sides)) != len(sides):
        raise ScenarioError(f"{where}: each step of at_once must be on a different process")


def _check_step(step: Step, where: str, scenario: Scenario, procs: dict[str, _Process]) -> None:
    side = step.side
    if isinstance(step, Release):
        if side not in ENDPOINTS:
            raise ScenarioError(f"{where}: release() names the endpoint whose kept-back segments go: client or server")
        if not any(r.action in ("hold", "copy") and r.src == side for r in scenario.link.rules):
            raise ScenarioError(f"{where}: the link has no hold or copy rule for segments from the {side}")
        return
    if side not in procs:
        raise ScenarioError(f"{where}: unknown side {side!r}; the processes so far are {sorted(procs)}")
    p = procs[side]
    p.peer_reading = any(q.reading for q in procs.values() if q.endpoint != p.endpoint)
    if p.exited and not isinstance(step, WaitState | WaitSegment | WaitRecvQueue | WaitAcked):
        raise ScenarioError(f"{where}: process {side!r} has already exited")
    if step.background and isinstance(step, SYNC_STEPS):
        raise ScenarioError(f"{where}: a sync point cannot run in the background")
    _check_arguments(step, where, scenario, p)
    if not isinstance(step, _NO_SOCKET_NEEDED):
        if isinstance(step, Close) and step.listener:
            if not p.listener:
                raise ScenarioError(f"{where}: {side!r} holds no listening socket (only the server listens)")
        elif p.conn not in ("connected", "unconnected"):
            raise ScenarioError(
                f"{where}: {side!r} holds no open socket here ({_conn_words(p.conn)}); after close() only sleep, "
                "exit, wait_* and (on the client) connect steps are allowed on that process"
            )
    if p.busy and not isinstance(step, SYNC_STEPS):  # the process finishes its background step first
        p.busy = p.reading = False
    if isinstance(step, WaitDone):
        if not p.busy:
            raise ScenarioError(
                f"{where}: nothing runs in the background on {side!r}, so this would wait forever; mark the "
                "step to wait for with background=True"
            )
        p.busy = p.reading = False
    elif step.background:
        p.busy = True
        p.reading = isinstance(step, Recv | ReadToEof)
    _advance(step, where, p, procs)


def _advance(step: Step, where: str, p: _Process, procs: dict[str, _Process]) -> None:
    """Move the process's sockets on as the step would."""
    if isinstance(step, Close):
        if step.listener:
            p.listener = False
        else:
            p.conn = "closed"
    elif isinstance(step, Exit):
        p.exited, p.conn, p.listener = True, "closed", False
    elif isinstance(step, Connect):
        if step.side != "client":
            raise ScenarioError(f"{where}: only the client connects")
        if p.conn not in ("unconnected", "closed"):
            raise ScenarioError(f"{where}: the client's socket is already connected; close it before connecting again")
        p.connects += 1
        if p.connects > 4:
            raise ScenarioError(f"{where}: at most 4 connect() steps in a scenario")
        p.conn = "connected"
    elif isinstance(step, Accept):
        if step.side != "server" or not p.listener:
            raise ScenarioError(f"{where}: only the server accepts, and only while its listening socket is open")
        if p.conn == "connected":
            raise ScenarioError(f"{where}: the server already holds a connection; close it before accepting another")
        p.conn = "connected"
    elif isinstance(step, Fork):
        if step.child in procs:
            raise ScenarioError(f"{where}: a process called {step.child!r} already exists")
        procs[step.child] = _Process(p.endpoint, p.conn, listener=p.listener)


def _check_arguments(step: Step, where: str, scenario: Scenario, p: _Process) -> None:
    if isinstance(step, Call):
        _check_call(step, where)
    elif isinstance(step, Send | Recv | WaitRecvQueue):
        _check_int(f"{where}: nbytes", step.nbytes, 0 if isinstance(step, WaitRecvQueue) else 1, MAX_BYTES)
        if isinstance(step, Send) and not step.background and step.nbytes > _foreground_send_limit(scenario, p):
            raise ScenarioError(
                f"{where}: a send() of {step.nbytes} bytes blocks until the peer reads, and the peer cannot read "
                f"while this step holds the timeline; send at most {_foreground_send_limit(scenario, p)} bytes, or "
                "mark it background=True and wait_done() after the peer's read"
            )
    elif isinstance(step, Shutdown):
        if step.how not in SHUTDOWN_HOWS:
            raise ScenarioError(f"{where}: how={step.how!r} is not one of {', '.join(SHUTDOWN_HOWS)}")
    elif isinstance(step, Linger):
        if step.seconds is not None:
            _check_int(f"{where}: seconds", step.seconds, 0, int(MAX_SECONDS))
        if step.onoff not in (None, 0, 1) or (step.onoff is not None and step.seconds is None):
            raise ScenarioError(f"{where}: onoff is 0 or 1 (with seconds given), or left out")
    elif isinstance(step, Sleep):
        _check_number(f"{where}: seconds", step.seconds, 0.0, MAX_SECONDS)
        if step.seconds >= scenario.time_limit:
            raise ScenarioError(
                f"{where}: sleeps {step.seconds:g} s but the scenario's time_limit is {scenario.time_limit:g} s"
            )
    elif isinstance(step, Fork):
        if not isinstance(step.child, str) or not step.child or step.child in ENDPOINTS or len(step.child) > 40:
            raise ScenarioError(f"{where}: child must be a new process name of at most 40 characters, e.g. 'kid'")
    elif isinstance(step, WaitState):
        if step.state not in TCP_STATES:
            raise ScenarioError(f"{where}: state={step.state!r} is not one of {', '.join(TCP_STATES)}")
        if not isinstance(step.listener, bool) or (step.listener and p.endpoint != "server"):
            raise ScenarioError(f"{where}: listener=True is for the server's listening socket")
    elif isinstance(step, WaitAcked):
        if step.side not in ENDPOINTS:
            raise ScenarioError(f"{where}: wait_acked names an endpoint: side must be 'client' or 'server'")
    elif isinstance(step, WaitSegment):
        if step.side not in ENDPOINTS:
            raise ScenarioError(f"{where}: segments are seen per endpoint: side must be 'client' or 'server'")
        flags = step.flags
        if not isinstance(flags, tuple) or not flags or any(f not in SEGMENT_FLAGS for f in flags):
            raise ScenarioError(f"{where}: flags must be a non-empty tuple of {', '.join(SEGMENT_FLAGS)}")
        if step.win is not None:
            _check_int(f"{where}: win", step.win, 0, 1 << 30)
    elif isinstance(step, Close):
        if not isinstance(step.listener, bool):
            raise ScenarioError(f"{where}: listener must be True or False")
    elif isinstance(step, Setsockopt):
        if not isinstance(step.option, str) or step.option not in SETSOCKOPT:
            raise ScenarioError(f"{where}: option {step.option!r} is not one of {', '.join(SETSOCKOPT)}")
        _check_int(f"{where}: value", step.value, *SETSOCKOPT[step.option])
    elif isinstance(step, Getsockopt):
        if not isinstance(step.option, str) or step.option not in GETSOCKOPT:
            raise ScenarioError(f"{where}: option {step.option!r} is not one of {', '.join(GETSOCKOPT)}")
    elif isinstance(step, Ioctl) and step.request not in IOCTLS:
        raise ScenarioError(f"{where}: request {step.request!r} is not one of {', '.join(IOCTLS)}")


def _foreground_send_limit(scenario: Scenario, p: _Process) -> int:
    """The largest send() that completes without the peer reading: what the kernel's initial buffers
    take, unless the scenario's settings give the sender a larger initial buffer, or the peer is
    reading in the background."""
    if p.peer_reading:
        return MAX_BYTES
    limit = FOREGROUND_SEND
    for name in ("net.ipv4.tcp_wmem", "net.ipv4.tcp_rmem"):
        value = scenario.settings.sysctl(name)
        if value is not None:
            limit = max(limit, int(value.split()[1]) // 2)
    return limit


def _conn_words(conn: str) -> str:
    return {"none": "it has not accepted a connection", "closed": "it closed its descriptor"}.get(conn, conn)


def _check_call(step: Call, where: str) -> None:
    """The code must parse and define `function` taking the socket as its one required argument."""
    if not isinstance(step.source, str) or not isinstance(step.function, str) or not step.function.isidentifier():
        raise ScenarioError(f"{where}: give a function, e.g. call('client', my_function)")
    if len(step.source) > MAX_SOURCE:
        raise ScenarioError(f"{where}: the function's code has {len(step.source)} characters; at most {MAX_SOURCE}")
    try:
        tree = ast.parse(step.source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ScenarioError(f"{where}: the function's code does not parse: {getattr(e, 'msg', e)}") from None
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
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{what} must be a number from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise ScenarioError(f"{what}={value} is out of range: allowed {low} to {high} seconds")
