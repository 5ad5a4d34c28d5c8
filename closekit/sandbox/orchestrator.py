"""Running one scenario: the I/O around closekit.sandbox.core's rules.

The driver starts the experiment's processes (closekit.sandbox.jail), then blocks on every
descriptor at once — the wire's devices (or a loopback capture), the processes' channels, the
reaper, the notebook's request pipe — with a timeout taken from the run's next deadline, so that
waiting costs no CPU. What it takes in it feeds to the Run as events; what the Run asks it does:
send a process its lines, look at a socket through sock_diag (answered at once, so that what is
seen after a packet is that packet's doing), read from /proc whether a process sleeps, gate or
release the wire. Every decision is the Run's.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from closekit.errors import ExperimentError, NotHereError, ParentGone, ProtocolError, text
from closekit.sandbox import core
from closekit.sandbox.capture import Capture
from closekit.sandbox.counters import Snapshot, deltas, snapshot
from closekit.sandbox.cpu import one_cpu
from closekit.sandbox.diag import Diag
from closekit.sandbox.endpoint import Addresses
from closekit.sandbox.jail import Jail, Limits
from closekit.sandbox.namespace import NetNamespace
from closekit.sandbox.packets import Packet
from closekit.sandbox.protocol import channel_pair, check_reply, recv_message, send_message
from closekit.sandbox.wire import Wire
from closekit.scenario import Scenario
from closekit.trace import Trace

ENDPOINTS = ("client", "server")
EXIT_REPORT = 0.2  # how long to wait for the reaper's word on how a process ended


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


class Experiment:
    """One run of a scenario: the Run's rules, and the descriptors they act through."""

    def __init__(self, scenario: Scenario, env: Environment) -> None:
        self.scenario = scenario
        self.env = env
        self.channels: dict[str, socket.socket] = {}
        self.pids: dict[str, int] = {}  # process -> pid, as the kernel vouches for it (SCM_CREDENTIALS)
        self.gone: set[str] = set()
        self.watched: list[Any] | None = None  # what the loop blocks on (None: to be made again)
        self.reaped: set[str] = set()
        self.held_up = 0.0  # how long a busy machine held the run up at worst (core.Run.disturbance)
        self.setup_late = 0.0  # the wire's worst lateness in the set-up
        self.proc_files: dict[tuple[int, str], int] = {}  # (pid, file) -> /proc/PID/file, open for this experiment
        self.stopped = False
        self.wire: Wire | None = None
        if env.wired:
            spaces = env.spaces
            self.wire = Wire(
                scenario.link,
                {e: spaces[e].tun for e in ENDPOINTS},  # type: ignore[misc]
                stamps={e: spaces[e].stamps for e in ENDPOINTS},
                clock=time.monotonic,
            )
        self.core = core.Run(scenario, env.addresses, time.monotonic(), wired=self.wire is not None,
                             captured=env.capture is not None)  # fmt: skip

    # ---- processes -------------------------------------------------------------------------
    @property
    def jail(self) -> Jail:
        assert self.env.jail is not None
        return self.env.jail

    def start(self, cpu: int | None) -> None:
        ends = {p: channel_pair() for p in self.scenario.sides}
        try:
            self.jail.launch(
                self.scenario.to_dict(),
                {"server": self.env.addresses.server, "client": self.env.addresses.client},
                {p: theirs for p, (_mine, theirs) in ends.items()},
                cpu,
            )
        finally:
            for _mine, theirs in ends.values():
                theirs.close()
        for p, (mine, _theirs) in ends.items():
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.channels[p] = mine

    def stop(self) -> None:
        """End the experiment's processes (once); its endpoints may serve the next one if the Run allows."""
        if self.stopped:
            return
        self.stopped = True
        for channel in self.channels.values():
            channel.close()
        for fd in self.proc_files.values():
            os.close(fd)
        self.proc_files.clear()
        self.jail.clear(reuse=self.core.reusable)

    # ---- the loop --------------------------------------------------------------------------
    def execute(self) -> None:
        self._do(self.core.start())
        while self.core.setup_until is None:
            self._wait()
        if self.wire is not None:
            self.setup_late, self.wire.late = self.wire.late, 0.0  # told apart: core.Run.disturbance
        while not self.core.finished:
            self._wait()

    def _wait(self) -> None:
        """Block until something happens or the Run's next deadline; feed in what happened."""
        now = time.monotonic()
        wake = self.core.deadline()
        if self.wire is not None:
            due = self.wire.next_due()
            if due is not None:
                wake = min(wake, due)
        if self.watched is None:
            self.watched = self._watch()
        ready = set(select.select(self.watched, [], [], max(0.0, wake - now))[0])
        if self.env.parent is not None and self.env.parent in ready:
            raise ParentGone("the process that asked for this experiment has gone")
        self._packets(ready)
        for process, channel in self.channels.items():
            if channel in ready and process not in self.gone:
                self._reply(process, channel)
        if self.jail in ready:
            self.jail.take()
        for process in self.jail.ended.keys() - self.reaped:  # (a Gone may have taken the report already)
            self.reaped.add(process)
            if process in self.core.procs:
                self._feed(core.Ended(process, time.monotonic()))
        self._feed(core.Tick(time.monotonic()))

    def _watch(self) -> list[Any]:
        """What the loop blocks on: the channels of the processes still there, the wire's devices (or the
        capture), the reaper and the notebook's request pipe."""
        watched: list[Any] = [c for p, c in self.channels.items() if p not in self.gone]
        if self.wire is not None:
            watched += [self.wire.fileno(e) for e in ENDPOINTS]
        if self.env.capture is not None:
            watched.append(self.env.capture)
        watched.append(self.jail)
        if self.env.parent is not None:
            watched.append(self.env.parent)
        return watched

    def _lose(self, process: str) -> core.Gone:
        """The process's channel closed (or refused a command): the event telling the Run how it ended."""
        self.gone.add(process)
        self.watched = None
        return core.Gone(process, self._how_it_ended(process), time.monotonic())

    def _packets(self, ready: set[Any]) -> None:
        wire = self.wire
        if wire is not None:
            sources = [e for e in ENDPOINTS if wire.fileno(e) in ready]
            while True:
                now = time.monotonic()
                for src in sources:
                    for p in wire.take(src, now, self.core.conns.classify):
                        self._feed(core.Sent(p, now))
                delivered = wire.deliver(now, after=self._arrived)
                if not delivered:
                    return
                sources = ["server" if p.src == "client" else "client" for p in delivered]
        elif self.env.capture is not None and self.env.capture in ready:
            port = self.core.server_port
            server = (socket.inet_aton(self.env.addresses.server), port) if port else None
            for p in self.env.capture.drain(server):
                self.core.conns.classify(p)
                self._feed(core.Sent(p, time.monotonic()))

    def _arrived(self, p: Packet) -> None:
        self._feed(core.Arrived(p, time.monotonic() if p.arrived is None else p.arrived))

    def _reply(self, process: str, channel: socket.socket) -> None:
        try:
            message, pid = recv_message(channel, process, with_pid=True)
        except ProtocolError as e:
            raise ExperimentError(f"{e}; the experiment was stopped") from None
        except OSError:
            message, pid = None, None
        if message is None:
            self._feed(self._lose(process))
            return
        if pid:
            self.pids[process] = pid
        now = time.monotonic()
        kind, records = check_reply(message, process, self.core.t0 - 1, now + 1)
        self._feed(core.Reply(process, kind, tuple(records), now))

    def _how_it_ended(self, process: str) -> str:
        """What the reaper says about how the process ended (it may take a moment to say it)."""
        deadline = time.monotonic() + EXIT_REPORT
        while process not in self.jail.ended and time.monotonic() < deadline:
            select.select([self.jail], [], [], max(0.0, deadline - time.monotonic()))
            self.jail.take()
        return self.jail.ended.get(process, "ended")

    # ---- carrying out what the Run asks --------------------------------------------------------
    def _feed(self, event: core.Event) -> None:
        actions = self.core.feed(event)
        if actions:  # (most events call for none)
            self._do(actions)

    def _do(self, actions: list[core.Action]) -> None:
        todo = deque(actions)
        while todo:
            a = todo.popleft()
            if isinstance(a, core.Look):
                found = self.env.diag(a.endpoint).lookup(a.local, a.remote)
                todo.extend(self.core.feed(core.Seen(a.endpoint, a.conn, found, time.monotonic())))
            elif isinstance(a, core.Command):
                if self.env.capture is not None:  # before anything is sent to or from the server's port
                    self.env.capture.follow(self.core.server_port)
                try:
                    send_message(self.channels[a.process], a.message)
                except OSError:
                    todo.extend(self.core.feed(self._lose(a.process)))
            elif isinstance(a, core.Probe):
                todo.extend(self.core.feed(core.Asleep(a.process, self._asleep(a.process), time.monotonic())))
            elif isinstance(a, core.Measure):
                todo.extend(self.core.feed(core.Starved(self._waited(), time.monotonic())))
            elif isinstance(a, core.Gate):
                if self.wire is not None and a.closed:
                    self.wire.close_gate()
                elif self.wire is not None:
                    now = time.monotonic()
                    for p in self.wire.open_gate(now):
                        todo.extend(self.core.feed(core.Sent(p, now)))
            elif self.wire is not None:  # ReleaseHeld
                self.wire.release(a.side, time.monotonic())

    def _asleep(self, process: str) -> bool:
        """The process sleeps in the kernel (state S in /proc/PID/stat) in the call it said it makes.
        A process that has finished that call sleeps too, reading its channel for the next command:
        then its reply waits in the channel, and it is not taken as asleep."""
        pid = self.pids.get(process)
        if pid is None or select.select([self.channels[process]], [], [], 0)[0]:
            return False
        try:
            return self._read_proc(pid, "stat", 1024).rsplit(b")", 1)[1].split()[0] == b"S"
        except (OSError, IndexError):
            return False

    def _waited(self) -> dict[str, float]:
        """How long the helper and each of the experiment's processes have waited for a CPU so far, in
        seconds (run_delay in /proc/PID/schedstat), by name; one that cannot be read is left out."""
        waited = {}
        for name, pid in (("helper", os.getpid()), *self.pids.items()):
            try:
                waited[name] = int(self._read_proc(pid, "schedstat", 128).split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                continue
        return waited

    def _read_proc(self, pid: int, name: str, size: int) -> bytes:
        """/proc/PID/`name`, opened once an experiment: an open /proc file stays with the process it was
        opened for, and fails once that process has gone, whatever process takes its pid."""
        fd = self.proc_files.get((pid, name))
        if fd is None:
            fd = self.proc_files[pid, name] = os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(fd, size, 0)

    # ---- the whole run -------------------------------------------------------------------
    def run(self, cpu: object, before: Snapshot) -> Trace:
        """Start and run every line, on `cpu` where it may, else on the helper's (closekit.sandbox.cpu; None:
        free); the Trace of what happened, its counters moved since `before`. The processes are stopped here
        only if it fails: otherwise by the caller (stop()), once the trace is on its way."""
        refuse_unsupported(self.scenario, self.env)
        files = self.env.mib_files()
        with one_cpu(cpu) if cpu is not None else nullcontext() as chosen:  # closekit.sandbox.cpu
            self.start(chosen)
            try:
                self.execute()
                counters = deltas(before, snapshot(files))
            except BaseException:
                self.stop()
                raise
        if self.env.capture is not None and self.env.capture.drops():
            raise ExperimentError(text("run.capture_dropped"))
        late = self.wire.late if self.wire is not None else 0.0
        self.held_up, trace = self.core.outcome(
            self.env.kernel, self.env.mode, counters, self.env.unobserved, late, self.setup_late
        )
        return trace

    def sockets(self) -> list[tuple[str, tuple[str, int], tuple[str, int]]]:
        """(endpoint, local, remote) of every socket the experiment may have left in the kernel."""
        return self.core.sockets()


def refuse_unsupported(scenario: Scenario, env: Environment) -> None:
    """A scenario that needs what this mode lacks is refused before anything runs, saying why."""
    missing = scenario.missing_words(env.mode)
    if missing:
        raise NotHereError(text("run.not_here", scenario=repr(scenario.name), missing=missing, mode=repr(env.mode)))
