"""Running one scenario in the current network namespace and recording what the kernel did.

The orchestrator forks one process per side, hands each its steps in the scenario's order,
and meanwhile watches the kernel: segments from the packet socket, socket states and queues
from sock_diag. After each step it settles: it waits until nothing has moved (no segment, no
state or queue change) for QUIET seconds and no acknowledgement is owed, so the next step
always starts from the same kernel state. States are recorded at those settled points, and
during long waits once they have held for STABLE seconds: the states a socket rests in, the
same on every run. A state that lasts only until a delayed ACK (FIN_WAIT_1 on loopback) is
passed through, not recorded; the state-machine table shows where it was.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from closekit import scenario as sc
from closekit.errors import ExperimentError, SyncTimeoutError
from closekit.sandbox.capture import Capture, Packet
from closekit.sandbox.channel import channel_pair, recv_message, send_message
from closekit.sandbox.counters import deltas, read_counters
from closekit.sandbox.diag import Diag, DiagSocket
from closekit.sandbox.endpoint import start_endpoint
from closekit.trace import Segment, Signal, StateChange, Syscall, Trace

QUIET = 0.001
POLL = 0.0002
ACK_WAIT_LIMIT = 0.25  # an owed ACK comes within a delayed-ACK time, or never
FULL_AFTER = 0.005  # a receiver whose queue has not moved this long, with data waiting, is full
STABLE = 0.25  # a state held this long while waiting is recorded before the wait ends
SOCKET_SIDES = ("client", "server")


class ParentGone(ExperimentError):
    """The helper's parent exited (a notebook kernel restarted) while an experiment ran."""


@dataclass
class Environment:
    """What the helper prepared for one experiment: where it runs and what can observe it."""

    mode: str
    kernel: str
    diag: Diag
    capture: Capture | None
    unobserved: tuple[str, ...] = ()
    parent: int | None = None  # the request pipe: readable mid-experiment only when the parent has gone


@dataclass
class _SideView:
    state: str | None = None
    since: float = 0.0
    recorded: str | None = None
    rqueue: int = 0
    seen: bool = False


@dataclass
class _Run:
    scenario: sc.Scenario
    env: Environment
    t0: float = field(default_factory=time.time)
    channels: dict[str, socket.socket] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)  # side -> what it is doing
    exited: set[str] = field(default_factory=set)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)
    views: dict[str, _SideView] = field(default_factory=lambda: {s: _SideView() for s in SOCKET_SIDES})
    states: list[StateChange] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    last_change: float = 0.0
    snapshot: tuple = ()
    segment_mark: int = 0  # wait_segment looks at packets from this index on

    # ---- processes -----------------------------------------------------------------------
    def start(self) -> None:
        ends = {side: channel_pair() for side in self.scenario.sides}
        children = {side: ends[side][1] for side in self.scenario.sides if side not in SOCKET_SIDES}
        for side in SOCKET_SIDES:
            self.pids[side] = start_endpoint(side, self.scenario, ends[side][1], children)
        for side, (mine, theirs) in ends.items():
            theirs.close()
            self.channels[side] = mine

    def stop(self) -> None:
        for _side, channel in self.channels.items():
            try:
                send_message(channel, ("quit", None))
            except OSError:
                pass
            channel.close()
        for pid in self.pids.values():
            try:
                os.killpg(pid, signal.SIGKILL)  # the endpoint and anything it forked
            except (ProcessLookupError, PermissionError):
                pass
        for side in SOCKET_SIDES:  # our own children: wait until they are gone
            try:
                os.waitpid(self.pids[side], 0)
            except ChildProcessError:
                pass
        reap_children()  # grandchildren handed to us as subreaper

    def command(self, side: str, command: str, argument: Any, label: str) -> None:
        self.running[side] = label
        send_message(self.channels[side], (command, argument))

    # ---- observing -----------------------------------------------------------------------
    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` for anything, then take in replies, packets and socket states."""
        now = time.time()
        if now - self.t0 > self.scenario.time_limit:
            doing = "; ".join(f"{side}: {what}" for side, what in self.running.items()) or "nothing"
            raise ExperimentError(
                f"scenario {self.scenario.name!r} ran past its time limit of {self.scenario.time_limit} s "
                f"(still running: {doing})"
            )
        watched = [self.channels[s] for s in self.channels if s not in self.exited]
        if self.env.capture is not None:
            watched.append(self.env.capture)  # type: ignore[arg-type]
        if self.env.parent is not None:
            watched.append(self.env.parent)  # type: ignore[arg-type]
        readable, _, _ = select.select(watched, [], [], timeout)
        for ready in readable:
            if ready is self.env.parent:
                raise ParentGone("the process that asked for this experiment has gone")
            if ready is not self.env.capture:
                self._take_reply(ready)
        if self.env.capture is not None:
            fresh = self.env.capture.drain()
            if fresh:
                self.packets.extend(fresh)
                self.last_change = time.time()
        self._observe_sockets()

    def _take_reply(self, channel: socket.socket) -> None:
        side = next(s for s, c in self.channels.items() if c is channel)
        message = recv_message(channel)
        self.last_change = time.time()
        if message is None:
            self.exited.add(side)
            if side in self.running:
                raise ExperimentError(f"the {side} process died while running {self.running.pop(side)}")
            return
        kind, payload = message
        if kind == "hello":
            self.pids[side] = payload
        elif kind == "crash":
            raise ExperimentError(f"the {side} process failed while running {self.running.get(side)}:\n{payload}")
        else:
            self.running.pop(side, None)
            for record in payload:
                if record["kind"] == "port":
                    self.ports[side] = record["port"]
                else:
                    self.records.append((side, record))
                    if record.get("call") == "exit":
                        self.exited.add(side)

    def _socket_of(self, side: str) -> DiagSocket | None:
        local, remote = ("client", "server") if side == "client" else ("server", "client")
        if local not in self.ports or remote not in self.ports:
            return None
        return self.env.diag.lookup(self.ports[local], self.ports[remote])

    def _observe_sockets(self) -> None:
        now = time.time()
        snapshot = []
        for side in SOCKET_SIDES:
            view = self.views[side]
            s = self._socket_of(side)
            if s is not None:
                view.seen = True
            state = s.state if s is not None else ("CLOSED" if view.seen else None)
            view.rqueue = s.rqueue if s is not None else 0
            snapshot.append((state, view.rqueue, s.wqueue if s is not None else 0))
            if state != view.state:
                view.state, view.since = state, now
            elif now - view.since >= STABLE:
                self._record_state(side)
        if tuple(snapshot) != self.snapshot:
            self.snapshot = tuple(snapshot)
            self.last_change = now

    def _record_state(self, side: str, at: float | None = None) -> None:
        """Record `side`'s state if new; at a settled point `at` is now, so that states sort after
        every segment of the step that caused them, whatever the timing of a delayed ACK."""
        view = self.views[side]
        if view.state is not None and view.state != view.recorded:
            view.recorded = view.state
            t = view.since if at is None else at
            self.states.append(StateChange(t=t - self.t0, side=side, state=view.state))

    # ---- waiting -------------------------------------------------------------------------
    def settle(self) -> None:
        """Wait until nothing has moved for QUIET seconds and no acknowledgement is owed (a delayed
        ACK of a FIN would otherwise race the next step), then record the states."""
        started = self.last_change = time.time()
        while True:
            self.pump(POLL)
            now = time.time()
            if now - self.last_change >= QUIET and (not self._ack_owed() or now - started > ACK_WAIT_LIMIT):
                for side in SOCKET_SIDES:
                    self._record_state(side, at=now)
                return

    def _ack_owed(self) -> bool:
        """Some side has unacknowledged data or FIN while its peer's window is open."""
        if not self.snapshot:
            return False
        open_window = self._open_windows()
        for side, (state, _rqueue, wqueue) in zip(SOCKET_SIDES, self.snapshot):
            peer = "server" if side == "client" else "client"
            if wqueue and state not in (None, "CLOSED", "LISTEN") and open_window.get(peer, True):
                return True
        return False

    def _open_windows(self) -> dict[str, bool]:
        """Whether each side's last captured segment advertised a non-zero window."""
        windows: dict[str, bool] = {}
        for s in build_segments(self.packets[-16:], self.ports):
            windows[s.src] = s.win > 0
        return windows

    def wait_for(self, step: sc.Step, met: Any, awaited: str, seen: Any) -> None:
        deadline = time.time() + self.scenario.sync_timeout
        while not met():
            if time.time() > deadline:
                raise SyncTimeoutError(
                    f"sync point {step.describe()} in {self.scenario.name!r} was not met within "
                    f"{self.scenario.sync_timeout} s: waited for {awaited}, but {seen()}"
                )
            self.pump(POLL)

    def _receiver_full(self, side: str) -> bool:
        """`side` holds unread data, its peer still has data to send, and nothing has moved for
        FULL_AFTER seconds: the receive buffer is as full as it gets (the window is closed).
        Told from sock_diag alone, so it works where segments cannot be captured."""
        me = self.views["server" if side not in SOCKET_SIDES else side]
        index = 0 if me is self.views["client"] else 1
        peer_wqueue = self.snapshot[1 - index][2] if self.snapshot else 0
        return me.rqueue > 0 and peer_wqueue > 0 and time.time() - self.last_change >= FULL_AFTER

    def wait_idle(self, side: str) -> None:
        while side in self.running:
            self.pump(POLL)

    # ---- the timeline --------------------------------------------------------------------
    def execute(self) -> None:
        self.command("server", "listen", None, "listen()")
        self.wait_idle("server")
        self.command("client", "connect", self.ports["server"], "connect()")
        self.wait_idle("client")
        self.command("server", "accept", None, "accept()")
        self.wait_idle("server")
        self.settle()
        for index, step in enumerate(self.scenario.steps):
            if isinstance(step, sc.SYNC_STEPS):
                self.sync(step)
            else:
                self.wait_idle(step.side)
                self.segment_mark = len(self.packets)
                self.command(step.side, "step", index, step.describe())
                if not step.background:
                    self.wait_idle(step.side)
            self.settle()
        for side in list(self.running):
            self.wait_idle(side)
        self.settle()

    def sync(self, step: sc.Step) -> None:
        side = step.side
        view = self.views["server" if side not in SOCKET_SIDES else side]
        if isinstance(step, sc.WaitDone):
            self.wait_idle(side)
        elif isinstance(step, sc.WaitRecvQueue):
            self.wait_for(
                step, lambda: view.rqueue >= step.nbytes or self._receiver_full(side),
                f"{step.nbytes} unread bytes", lambda: f"{side}'s receive queue held {view.rqueue}",
            )  # fmt: skip
        elif isinstance(step, sc.WaitState):
            self.wait_for(step, lambda: view.state == step.state, f"{side} in {step.state}",
                          lambda: f"{side} was in {view.state}")  # fmt: skip
        elif isinstance(step, sc.WaitSegment):
            if self.env.capture is None:
                raise ExperimentError(
                    f"{step.describe()} needs packet capture, which mode {self.env.mode!r} does not have"
                )
            self.wait_for(step, lambda: self._segment_seen(step), f"a segment from {side} with "
                          f"{'+'.join(step.flags)}" + ("" if step.win is None else f" and window {step.win}"),
                          lambda: f"the segments seen were: {self._seen_flags()}")  # fmt: skip

    def _segment_seen(self, step: sc.WaitSegment) -> bool:
        segments = build_segments(self.packets, self.ports)[self.segment_mark :]
        return any(
            s.src == step.side and set(step.flags) <= set(s.flags) and (step.win is None or s.win == step.win)
            for s in segments
        )

    def _seen_flags(self) -> str:
        return ", ".join(f"{s.src} {s.tcpdump_flags}" for s in build_segments(self.packets, self.ports)) or "none"

    # ---- the result ----------------------------------------------------------------------
    def trace(self, counters: dict[str, int]) -> Trace:
        events: list[Any] = []
        for side, r in self.records:
            if r["kind"] == "signal":
                events.append(Signal(t=r["t"] - self.t0, side=side, signal=r["signal"]))
            else:
                events.append(Syscall(t=r["t"] - self.t0, side=side, call=r["call"], args=r["args"],
                                      result=r["result"], errno=r["errno"], duration=r["duration"]))  # fmt: skip
        events.extend(build_segments(self.packets, self.ports, self.t0))
        events.extend(self.states)
        events.sort(key=lambda e: e.t)
        return Trace(
            scenario=self.scenario.name, description=self.scenario.description, kernel=self.env.kernel,
            mode=self.env.mode, counters=counters, events=tuple(events), unobserved=self.env.unobserved,
        )  # fmt: skip


def build_segments(packets: list[Packet], ports: dict[str, int], t0: float = 0.0) -> list[Segment]:
    """Segments of the experiment's connection with tcpdump-style relative seq/ack and scaled windows."""
    if "client" not in ports or "server" not in ports:
        return []
    side_of = {ports["client"]: "client", ports["server"]: "server"}
    ours = [p for p in packets if {p.sport, p.dport} == {ports["client"], ports["server"]}]
    isn: dict[str, int] = {}
    scale: dict[str, int | None] = {}
    for p in ours:
        if "SYN" in p.flags:
            isn.setdefault(side_of[p.sport], p.seq)
            scale.setdefault(side_of[p.sport], p.wscale)
    scaling = all(scale.get(s) is not None for s in SOCKET_SIDES)
    segments = []
    for p in ours:
        src = side_of[p.sport]
        dst = "server" if src == "client" else "client"
        win = p.win if ("SYN" in p.flags or not scaling) else p.win << (scale[src] or 0)
        segments.append(Segment(
            t=p.t - t0, src=src, flags=p.flags,
            seq=(p.seq - isn.get(src, p.seq)) % (1 << 32),
            ack=(p.ack - isn.get(dst, p.ack)) % (1 << 32) if "ACK" in p.flags else 0,
            len=p.payload, win=win, raw=p.raw,
        ))  # fmt: skip
    return segments


def reap_children() -> None:
    """Collect every child that has ended (endpoints, and grandchildren handed to us as subreaper)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_scenario(scenario: sc.Scenario, env: Environment) -> Trace:
    """Run `scenario` in the current namespace and return its Trace."""
    before = read_counters() if env.mode == "netns" else {}
    if env.capture is not None:
        env.capture.drain()
    run = _Run(scenario, env)
    run.start()
    try:
        run.execute()
        counters = deltas(before, read_counters()) if env.mode == "netns" else {}
    finally:
        run.stop()
    if env.capture is not None and env.capture.drops():
        raise ExperimentError("the packet capture dropped segments; the trace would be incomplete")
    return run.trace(counters)
