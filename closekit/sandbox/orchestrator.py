"""Running one scenario and recording what the kernel did: the helper's side of an experiment.

The orchestrator starts the experiment's processes (closekit.sandbox.jail), hands each its steps
in the scenario's order, and meanwhile watches: packets on the wire (or a loopback capture),
replies from the endpoints, sockets through sock_diag. It blocks on all their descriptors at
once, with a timeout that comes from the next deadline (a packet due on the wire, a kernel timer,
a sync point's limit, the scenario's time limit), so waiting costs no CPU. It looks at the
sockets after every packet, reply and timer, so every state is recorded as it happens, however
briefly it lasts. What the next step may do and when is decided by closekit.sandbox.policy.
"""

from __future__ import annotations

import itertools
import select
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any

from closekit import scenario as sc
from closekit.errors import ExperimentError, NotHereError, ParentGone, ProtocolError, ScenarioError, SyncTimeoutError
from closekit.sandbox import policy
from closekit.sandbox.capture import Capture
from closekit.sandbox.counters import deltas, snapshot
from closekit.sandbox.diag import Diag, DiagSocket
from closekit.sandbox.endpoint import Addresses
from closekit.sandbox.jail import Jail, Limits
from closekit.sandbox.namespace import NetNamespace
from closekit.sandbox.packets import Connections, Packet
from closekit.sandbox.protocol import MAX_SEGMENTS, channel_pair, check_reply, recv_message, send_message
from closekit.sandbox.wire import Wire
from closekit.trace import Segment, Signal, StateChange, Syscall, Trace

ENDPOINTS = ("client", "server")
_UNSEEN = policy.SocketView()
TIMER_SLACK = 0.002  # look again this long after a kernel timer was due to fire
QUIET = 0.001  # without a wire: nothing moved this long means nothing is in flight
POLL = 0.001  # without any view of the packets: how often sockets are looked at while waiting
EXIT_REPORT = 0.2  # how long to wait for the init's word on how a process ended
# A call that changes its socket's state may send nothing (close() with the window shut queues its
# FIN behind the data; close() in SYN_SENT): look this long after it began, while it still runs.
PEEKS = (0.001, 0.005)
PEEKED = (sc.Close, sc.Shutdown, sc.Call)
# a connection's first states: met again after later ones, they are a newer connection's on the same 4-tuple
OPENING = ("SYN_SENT", "SYN_RECEIVED")
# the states a socket enters as it sends a segment with this flag (the call that sends it sets them)
ENTERED_BY = {"FIN": ("FIN_WAIT_1", "LAST_ACK"), "SYN": ("SYN_SENT",), "RST": ("CLOSED",)}
# ... and the states a segment with this flag brings its receiver
BROUGHT_BY = {"FIN": ("CLOSE_WAIT", "CLOSING", "TIME_WAIT"), "RST": ("CLOSED",)}


@dataclass
class Environment:
    """What the helper keeps for experiments: where they run and what observes them."""

    mode: str
    kernel: str
    spaces: dict[str, NetNamespace]  # endpoint -> its network namespace (none in the host modes)
    addresses: Addresses
    jail: Jail | None = None
    capture: Capture | None = None
    host_diag: Diag | None = None
    as_nobody: bool = False
    limits: Limits = Limits()  # noqa: RUF009 (frozen)
    unobserved: tuple[str, ...] = ()
    parent: int | None = None  # the request pipe: readable mid-experiment only when the parent has gone

    @property
    def wired(self) -> bool:
        return all(space.tun is not None for space in self.spaces.values()) and bool(self.spaces)

    def diag(self, endpoint: str) -> Diag:
        return self.spaces[endpoint].diag if self.spaces else self.host_diag  # type: ignore[return-value]

    def mib_files(self) -> list[int]:
        unique = {id(s): s for s in self.spaces.values()}
        return [fd for space in unique.values() for fd in space.mib]


@dataclass
class _Process:
    name: str
    endpoint: str
    channel: socket.socket
    running: str | None = None  # what it is doing
    background: bool = False
    started: bool = True  # a background step has said it began (the next step waits for that)
    exited: bool = False
    ran_code: bool = False  # it ran a scenario's function, or was forked from one that had: its records are its word


@dataclass
class Experiment:
    """One run of a scenario."""

    scenario: sc.Scenario
    env: Environment
    t0: float = field(default_factory=time.monotonic)
    procs: dict[str, _Process] = field(default_factory=dict)
    wire: Wire | None = None
    conns: Connections = field(default_factory=Connections)
    captured: list[Packet] = field(default_factory=list)  # the capture's packets (no wire)
    records: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # (order, process, record)
    views: dict[tuple[str, int], policy.SocketView] = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)
    states: list[tuple[int, StateChange]] = field(default_factory=list)
    undated: dict[tuple[str, int], int] = field(default_factory=dict)  # key -> index in states: dated by a look
    timers: dict[tuple[str, int], float] = field(default_factory=dict)
    server_port: int = 0
    setup_until: float | None = None  # when the scenario's first step began (before: the set-up)
    mark: int = 0  # wait_segment looks at packets from this index on
    peeks: list[tuple[float, str]] = field(default_factory=list)  # (when, process): look while it runs
    last_activity: float = 0.0
    order: Any = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if self.env.wired:
            spaces = self.env.spaces
            self.wire = Wire(
                self.scenario.link,
                {e: spaces[e].tun for e in ENDPOINTS},  # type: ignore[misc]
                stamps={e: spaces[e].stamps for e in ENDPOINTS},
                clock=time.monotonic,
            )

    # ---- processes -----------------------------------------------------------------------
    @property
    def jail(self) -> Jail:
        assert self.env.jail is not None
        return self.env.jail

    def start(self) -> None:
        ends = {p: channel_pair() for p in self.scenario.sides}
        try:
            self.jail.launch(
                self.scenario.to_dict(),
                {"server": self.env.addresses.server, "client": self.env.addresses.client},
                {p: theirs for p, (_mine, theirs) in ends.items()},
            )
        finally:
            for _mine, theirs in ends.values():
                theirs.close()
        for p, (mine, _theirs) in ends.items():
            self.procs[p] = _Process(p, self.scenario.endpoint_of(p), mine)

    def _owner(self, process: str) -> str:
        return self.procs[process].endpoint if process in self.procs else self.scenario.endpoint_of(process)

    def stop(self, clean: bool = False) -> None:
        """End the experiment's processes. `clean`: it ended without error, so if it ran only the lab's
        own code (no function of a student's, no fork, no exit) its endpoints may be reused."""
        for proc in self.procs.values():
            proc.channel.close()
        own_code = not any(isinstance(s, sc.Call | sc.Fork | sc.Exit) for s in sc.iter_steps(self.scenario.steps))
        self.jail.clear(reuse=clean and own_code and not any(p.running for p in self.procs.values()))

    def command(self, process: str, message: dict[str, Any], label: str, background: bool = False) -> None:
        """Send `process` its next command; a background one must say when its call begins, so that
        the step after it, on the other side, begins later (not merely is sent later)."""
        proc = self.procs[process]
        proc.running, proc.background, proc.started = label, background, not background
        if message.get("op") == "step":
            self._note_code(proc, message["path"])
        if background:
            message = {**message, "announce": True}
        try:
            send_message(proc.channel, message)
        except OSError:
            self._died(proc)

    def _note_code(self, proc: _Process, path: list[int]) -> None:
        """A process that runs a scenario's function (and whatever it forks from then on) may have had
        the code that records its calls rewritten: from that step on its records are marked forgeable."""
        step = self.scenario.steps[path[0]]
        if isinstance(step, sc.AtOnce):
            step = step.steps[path[1]]
        if isinstance(step, sc.Call):
            proc.ran_code = True
        elif isinstance(step, sc.Fork) and proc.ran_code and step.child in self.procs:
            self.procs[step.child].ran_code = True

    # ---- observing -----------------------------------------------------------------------
    def pump(self, until: float) -> None:
        """Wait until `until` at most for anything to happen, then take it in."""
        now = time.monotonic()
        limit_at = self.t0 + self.scenario.time_limit
        if now > limit_at:
            doing = "; ".join(f"{p.name}: {p.running}" for p in self.procs.values() if p.running) or "nothing"
            raise ExperimentError(
                f"scenario {self.scenario.name!r} ran past its time limit of {self.scenario.time_limit:g} s "
                f"(still running: {doing})"
            )
        wake = min(until, limit_at + 0.001, *self.timers.values(), *(when for when, _p in self.peeks))
        if self.wire is not None:
            due = self.wire.next_due()
            if due is not None:
                wake = min(wake, due)
        elif self.env.capture is None:
            wake = min(wake, now + POLL)
        watched: list[Any] = [p.channel for p in self.procs.values() if not p.exited]
        if self.wire is not None:
            watched += [self.wire.fileno(e) for e in ENDPOINTS]
        if self.env.capture is not None:
            watched.append(self.env.capture)
        watched.append(self.jail)
        if self.env.parent is not None:
            watched.append(self.env.parent)
        readable, _, _ = select.select(watched, [], [], max(0.0, wake - now))
        now = time.monotonic()
        ready = set(readable)
        if self.env.parent is not None and self.env.parent in ready:
            raise ParentGone("the process that asked for this experiment has gone")
        self._move_packets(now, ready)
        if self.jail in ready:
            ended = len(self.jail.ended)
            self.jail.take()
            for process in list(self.jail.ended)[ended:]:  # its descriptors are closed now
                if process in self.procs:
                    self._look(self.procs[process].endpoint, self._current())
        for proc in list(self.procs.values()):
            if proc.channel in ready and not proc.exited:
                self._take_reply(proc)
        for key, due in list(self.timers.items()):
            if due <= now:
                del self.timers[key]
                self._look(*key)
        for peek in [p for p in self.peeks if p[0] <= now]:
            self.peeks.remove(peek)
            if self.procs[peek[1]].running:
                self._look(self.procs[peek[1]].endpoint, self._current())
        if self.wire is None and self.env.capture is None:
            for key in list(self.views):
                self._look(*key)

    def _move_packets(self, now: float, ready: set[Any]) -> None:
        if self.wire is not None:
            sources = [e for e in ENDPOINTS if self.wire.fileno(e) in ready]
            while True:
                for src in sources:
                    for p in self.wire.take(src, now, self.conns.classify):
                        self._seen_packet(p)
                delivered = self.wire.deliver(now, after=self._arrived)
                if not delivered:
                    return
                sources = [("server" if p.src == "client" else "client") for p in delivered]
                now = time.monotonic()
        elif self.env.capture is not None and self.env.capture in ready:
            side_of_port = {self.server_port: "server"} if self.server_port else {}
            for p in self.env.capture.drain(side_of_port):
                self.conns.classify(p)
                self.captured.append(p)
                self._seen_packet(p)

    def _arrived(self, p: Packet) -> None:
        """The wire has just written `p` into its receiver's device: look at what it changed there."""
        dst = "server" if p.src == "client" else "client"
        self.conns.delivered(p)
        self._look_after(p, dst, at=p.arrived)
        if "SYN" in p.flags and dst == "server":
            self._look("server", 0, at=p.arrived)

    def _seen_packet(self, p: Packet) -> None:
        if len(self._packets()) > MAX_SEGMENTS:  # the helper's memory is bounded before the trace is built
            raise ExperimentError(
                f"the experiment put more than {MAX_SEGMENTS:,} segments on the wire, more than a trace may hold; "
                "it was stopped (send fewer, larger writes)"
            )
        self.last_activity = time.monotonic()
        self.conns.sent(p)
        if not p.conn:
            return
        self._date_by(p)
        self._look_after(p, p.src, at=p.t)
        if self.wire is None:  # on a loopback, sent is received
            self.conns.delivered(p)
            self._look_after(p, "server" if p.src == "client" else "client", at=p.t)

    def _arrival_that_brought(self, endpoint: str, conn: int, state: str) -> float | None:
        """When the segment that brought `state` reached `endpoint`, if one did since its last state:
        a FIN that reached a socket its reader held locked waits in the backlog, and the state it
        brings appears only when the reader lets go, after the lab's look at the arrival."""
        if self.wire is None or not conn:
            return None
        since = next((c.t + self.t0 for _o, c in reversed(self.states) if (c.side, c.conn) == (endpoint, conn)), 0.0)
        for p in reversed(self.wire.packets):
            if p.arrived is None or p.conn != conn or p.src == endpoint:
                continue
            if p.arrived < since:
                return None
            if state in {s for flag in p.flags for s in BROUGHT_BY.get(flag, ())}:
                return p.arrived
        return None

    def _date_by(self, p: Packet) -> None:
        """A state a look found before the lab took the segment that the same call sent with it (the
        FIN of a shutdown() looked at while it ran) is dated by that segment's leaving, as it would
        have been had the lab taken the segment first."""
        key = (p.src, p.conn)
        i = self.undated.get(key)
        if i is None:
            return
        order, change = self.states[i]
        if p.t - self.t0 >= change.t:  # sent after the state was seen: neither it nor a later one brought it
            del self.undated[key]
        elif change.state in {state for flag in p.flags for state in ENTERED_BY.get(flag, ())}:
            self.states[i] = (order, replace(change, t=p.t - self.t0))
            del self.undated[key]

    def _look_after(self, p: Packet, endpoint: str, at: float | None) -> None:
        """Look at `endpoint`'s socket after packet `p` left or reached it (a change found is dated
        `at`: when it left or arrived), unless nothing can have changed: a plain data or ACK segment
        leaves an established connection established."""
        if not {"SYN", "FIN", "RST"} & set(p.flags):
            view = self.views.get((endpoint, p.conn))
            if view is not None and view.state == "ESTABLISHED" and (endpoint, p.conn) not in self.timers:
                return
        self._look(endpoint, p.conn, at)

    def _take_reply(self, proc: _Process) -> None:
        now = time.monotonic()
        try:
            message = recv_message(proc.channel, proc.name)
        except ProtocolError as e:
            raise ExperimentError(f"{e}; the experiment was stopped") from None
        except OSError:
            message = None
        if message is None:
            self._died(proc)
            return
        kind, records = check_reply(message, proc.name, self.t0 - 1, now + 1)
        if kind == "crash":
            raise ExperimentError(
                f"the {proc.name} process failed while running {proc.running}: {records[0]['message']}"
            )
        if kind == "limit":
            raise ExperimentError(f"the experiment hit a limit of the lab: {records[0]['message']}")
        if kind == "hello":
            return
        if kind == "started":
            if proc.running is None or proc.started:
                raise ExperimentError(
                    f"the {proc.name} process said a call began when none was due (code in the experiment wrote "
                    "to the lab's channel); the experiment was stopped"
                )
            proc.started = True
            return
        if proc.running is None:
            raise ExperimentError(
                f"the {proc.name} process sent a reply while it was running nothing (code in the experiment wrote "
                "to the lab's channel); the experiment was stopped"
            )
        proc.running, proc.started = None, True
        for r in records:
            if r["kind"] == "port":
                if proc.ran_code:
                    continue  # which connection is the experiment's is not for code under test to say
                if r["role"] == "listener" and proc.endpoint == "server":
                    self.server_port = r["port"]
                elif r["role"] == "connection" and proc.endpoint == "client" and self.server_port:
                    self.conns.connected(r["port"], self.server_port)
            else:
                self.records.append((next(self.order), proc.name, {**r, "forgeable": proc.ran_code}))
                if r.get("call") == "exit":
                    proc.exited = True
        self._look(proc.endpoint, self._current())
        if proc.endpoint == "server":
            self._look("server", 0)

    def _died(self, proc: _Process) -> None:
        """A process's channel closed: fine after exit, an error while it ran a step."""
        proc.exited = True
        doing, proc.running = proc.running, None
        if doing is None:
            return
        how = self._how_it_ended(proc.name)
        raise ExperimentError(f"the {proc.name} process {how} while running {doing}")

    def _how_it_ended(self, process: str) -> str:
        """What the reaper says about how the process ended (it may take a moment to say it)."""
        deadline = time.monotonic() + EXIT_REPORT
        while process not in self.jail.ended and time.monotonic() < deadline:
            select.select([self.jail], [], [], max(0.0, deadline - time.monotonic()))
            self.jail.take()
        return self.jail.ended.get(process, "ended")

    # ---- sockets -------------------------------------------------------------------------
    def _look(self, endpoint: str, conn: int, at: float | None = None) -> None:
        """Ask the kernel about one socket (conn 0: the server's listener) and record a new state,
        dated `at` if what changed it is known (a packet's leaving or arrival), else now. Dating a
        change by its cause, not by when the lab asked, keeps the order of events the kernel's: a
        reader woken by a FIN returns after the state the FIN brought, however late the lab looks."""
        address = self._tuple(endpoint, conn)
        if address is None:
            return
        found = self.env.diag(endpoint).lookup(*address)
        key = (endpoint, conn)
        if found is not None and found.state in OPENING and self.views.get(key, _UNSEEN).state not in (None, *OPENING):
            return  # a newer connection's socket on this 4-tuple, looked at before the wire saw its SYN
        now = time.monotonic()
        view = self._view_of(found, key)
        if view.state is not None and view.state != self.views.get(key, _UNSEEN).state:
            if at is None:
                at = self._arrival_that_brought(endpoint, conn, view.state)
            when = now if at is None else at
            self.states.append((next(self.order), StateChange(t=when - self.t0, side=endpoint, state=view.state,
                                                              conn=conn)))  # fmt: skip
            if at is None:
                self.undated[key] = len(self.states) - 1
            else:
                self.undated.pop(key, None)
        self.views[key] = view
        if found is not None and found.timer is not None and found.timer != "time-wait":
            self.timers[key] = now + found.expires + TIMER_SLACK
        else:
            self.timers.pop(key, None)

    def _view_of(self, found: DiagSocket | None, key: tuple[str, int]) -> policy.SocketView:
        if found is None:
            return policy.SocketView("CLOSED" if key in self.seen else None)
        self.seen.add(key)
        return policy.SocketView(found.state, found.rqueue, found.wqueue, found.timer)

    def _current(self) -> int:
        """The number of the newest connection (1 before any)."""
        return self.conns.all[-1].number if self.conns.all else 1

    def _tuple(self, endpoint: str, conn: int) -> tuple[tuple[str, int], tuple[str, int]] | None:
        addresses = self.env.addresses
        if conn == 0:
            return ((addresses.server, self.server_port), ("0.0.0.0", 0)) if self.server_port else None
        if conn > len(self.conns.all) or conn in self.conns.superseded:
            return None  # (a newer connection on the same 4-tuple answers for it now)
        c = self.conns.get(conn)
        client, server = (addresses.client, c.client_port), (addresses.server, c.server_port)
        return (client, server) if endpoint == "client" else (server, client)

    def moment(self, segments: bool = False) -> policy.Moment:
        """What the policy decides on; `segments` adds the segments sent since the step began (only
        wait_segment needs them)."""
        now = time.monotonic()
        in_flight = self.wire.in_flight if self.wire is not None else 0
        if self.wire is None and now - self.last_activity < QUIET:
            in_flight = 1
        packets = self.wire.packets if self.wire is not None else self.captured
        return policy.Moment(
            busy=frozenset(p.name for p in self.procs.values() if p.running and not p.background),
            running=frozenset(p.name for p in self.procs.values() if p.running),
            in_flight=in_flight,
            acks_owed=self.conns.acks_owed() if packets else 0,
            owed_for=now - self.last_activity,
            sockets=self.views,
            current=self._current(),
            segments=tuple(
                (p.src, frozenset(p.flags), self.conns.relative(p)[2]) for p in packets[self.mark :] if p.conn
            )
            if segments
            else (),
        )

    # ---- waiting -------------------------------------------------------------------------
    def settle(self) -> None:
        while not policy.settled(moment := self.moment()):
            until = self.t0 + self.scenario.time_limit
            if moment.acks_owed:
                until = min(until, self.last_activity + policy.DELAYED_ACK_MAX + 0.001)
            if self.wire is None:
                until = min(until, self.last_activity + QUIET + 0.0001)
            self.pump(until)

    def wait_idle(self, process: str) -> None:
        while self.procs[process].running:
            self.pump(self.t0 + self.scenario.time_limit)

    def wait_ended(self, process: str) -> None:
        """Until the reaper says `process` is gone: only then are its descriptors closed (the exit
        step's reply leaves before), and the next step must find its sockets released."""
        while process not in self.jail.ended:
            self.pump(self.t0 + self.scenario.time_limit)

    def wait_started(self, process: str) -> None:
        proc = self.procs[process]
        while proc.running and not proc.started:
            self.pump(self.t0 + self.scenario.time_limit)

    def sync(self, step: sc.Step) -> None:
        endpoint = self._owner(step.side)
        deadline = time.monotonic() + self.scenario.sync_timeout
        segments = isinstance(step, sc.WaitSegment)
        while True:
            self._refresh(step, endpoint)
            if policy.met(step, self.moment(segments), endpoint):
                return
            if time.monotonic() > deadline:
                raise SyncTimeoutError(
                    f"sync point {step.describe()} in {self.scenario.name!r} was not met within "
                    f"{self.scenario.sync_timeout:g} s: {policy.waited_for(step, self.moment(segments), endpoint)}"
                )
            self.pump(deadline)

    def _refresh(self, step: sc.Step, endpoint: str) -> None:
        """Look again at the sockets a sync point depends on (queues move without a state change)."""
        current = self._current()
        if isinstance(step, sc.WaitRecvQueue):
            self._look(endpoint, current)
            self._look("server" if endpoint == "client" else "client", current)
        elif isinstance(step, sc.WaitState):
            self._look(endpoint, 0 if step.listener else current)
        elif isinstance(step, sc.WaitAcked):
            self._look(endpoint, current)

    # ---- the timeline --------------------------------------------------------------------
    def execute(self) -> None:
        self.command("server", {"op": "listen"}, "listen()")
        self.wait_idle("server")
        if self.scenario.start == "connected":
            self.command("client", {"op": "connect", "port": self.server_port}, "connect()")
            self.wait_idle("client")
            self.command("server", {"op": "accept"}, "accept()")
            self.wait_idle("server")
        else:
            self.command("client", {"op": "socket"}, "socket()")
            self.wait_idle("client")
        self.settle()
        self.setup_until = time.monotonic() - self.t0
        for index, step in enumerate(self.scenario.steps):
            if isinstance(step, sc.SYNC_STEPS):
                self.sync(step)
            elif isinstance(step, sc.Release):
                self._release(step)
            elif isinstance(step, sc.AtOnce):
                self._at_once(index, step)
            else:
                self.wait_idle(step.side)
                self.mark = len(self._packets())
                self.command(step.side, {"op": "step", "path": [index], "port": self.server_port},
                             step.describe(), background=step.background)  # fmt: skip
                if isinstance(step, PEEKED):
                    now = time.monotonic()
                    self.peeks += [(now + after, step.side) for after in PEEKS]
                if step.background:
                    self.wait_started(step.side)
                else:
                    self.wait_idle(step.side)
                if isinstance(step, sc.Exit):
                    self.wait_ended(step.side)
            self.settle()
        for proc in list(self.procs.values()):
            self.wait_idle(proc.name)
        self.settle()

    def _release(self, step: sc.Release) -> None:
        if self.wire is None:
            raise ScenarioError(f"{step.describe()} needs the lab's wire, which mode {self.env.mode!r} does not have")
        self.mark = len(self.wire.packets)
        self.wire.release(step.side, time.monotonic())

    def _at_once(self, index: int, step: sc.AtOnce) -> None:
        for part in step.steps:
            self.wait_idle(part.side)
        self.mark = len(self._packets())
        if self.wire is not None:
            self.wire.close_gate()
        for j, part in enumerate(step.steps):
            self.command(part.side, {"op": "step", "path": [index, j], "port": self.server_port}, part.describe())
            if self.wire is not None:  # one after another, in the given order: the gate makes them cross
                self.wait_idle(part.side)
        for part in step.steps:
            self.wait_idle(part.side)
        if self.wire is not None:
            self.wire.open_gate(time.monotonic())

    def _packets(self) -> list[Packet]:
        return self.wire.packets if self.wire is not None else self.captured

    # ---- the whole run -------------------------------------------------------------------
    def run(self) -> Trace:
        """Start, run every step, stop every process; the Trace of what happened."""
        refuse_unsupported(self.scenario, self.env)
        files = self.env.mib_files()
        before = snapshot(files)
        self.start()
        clean = False
        try:
            self.execute()
            counters = deltas(before, snapshot(files))
            clean = True
        finally:
            self.stop(clean)
        if self.env.capture is not None and self.env.capture.drops():
            raise ExperimentError("the packet capture dropped segments; the trace would be incomplete")
        return self.trace(counters)

    def sockets(self) -> list[tuple[str, tuple[str, int], tuple[str, int]]]:
        """(endpoint, local, remote) of every socket the experiment may have left in the kernel."""
        found = [(e, *t) for c in self.conns.all for e in ENDPOINTS if (t := self._tuple(e, c.number))]
        listener = self._tuple("server", 0)
        return found + ([("server", *listener)] if listener else [])

    # ---- the result ----------------------------------------------------------------------
    def trace(self, counters: dict[str, int]) -> Trace:
        t0 = self.t0
        # (time, rank, order): a state dated by a packet comes right after that packet
        events: list[tuple[float, int, int, Any]] = []
        for order, process, r in self.records:
            if r["kind"] == "signal":
                signal = Signal(t=r["t"] - t0, side=process, signal=r["signal"], forgeable=r["forgeable"])
                events.append((r["t"] - t0, 2, order, signal))
            else:
                e = Syscall(t=r["t"] - t0, side=process, call=r["call"], args=r["args"], result=r["result"],
                            errno=r["errno"], duration=r["duration"], slept=r["slept"], queued=r["queued"],
                            forgeable=r["forgeable"])  # fmt: skip
                events.append((e.t, 2, order, e))
        for order, p in enumerate(self._packets()):
            if not p.conn:
                continue
            seq, ack, win = self.conns.relative(p)
            s = Segment(
                t=p.t - t0, src=p.src, flags=p.flags, seq=seq, ack=ack, len=p.payload, win=win, raw=p.raw,
                conn=p.conn, arrived=None if p.arrived is None else p.arrived - t0, fate=p.fate,
            )  # fmt: skip
            events.append((s.t, 0, order, s))
        events.extend((s.t, 1, order, s) for order, s in self.states)
        events.sort(key=lambda x: x[:3])
        scenario = self.scenario
        return Trace(
            scenario=scenario.name, description=scenario.description, kernel=self.env.kernel, mode=self.env.mode,
            counters=counters, events=tuple(e for *_key, e in events), unobserved=self.env.unobserved,
            link=scenario.link.to_dict(), settings=scenario.settings.to_dict(),
            processes={p: scenario.endpoint_of(p) for p in scenario.sides}, setup_until=self.setup_until,
        )  # fmt: skip


def refuse_unsupported(scenario: sc.Scenario, env: Environment) -> None:
    """A scenario that needs what this mode lacks is refused before anything runs, saying why."""
    missing = scenario.missing_in(env.mode)
    if missing:
        raise NotHereError(
            f"scenario {scenario.name!r} needs {' and '.join(missing)}, which mode {env.mode!r} does not have "
            "(`closekit doctor` says why)"
        )
