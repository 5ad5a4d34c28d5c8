"""One experiment's rules, apart from its I/O: fed what the lab observes, a Run answers what to do.

Everything that decides how an experiment goes lives here, in one object that never touches a
socket, a device or a clock (h11's shape): the driver (closekit.sandbox.orchestrator) feeds it
events — a reply from a process, a packet sent or handed over, a socket looked at, a process
found asleep, a moment passed — and carries out the actions it returns — send a process its lines,
look at a socket, find out whether a process sleeps, gate or release the wire, finish. So every
rule can be replayed without a kernel, from a scripted list of events (tests/test_core.py).

The rules:
- Programs. Each process is handed its lines up to the next lab step at once and runs them as its
  program would, the next as soon as its previous one returned (closekit.sandbox.endpoint).
- Lab steps (sync points, release, at_once) hold the lines after them. One is judged once every
  process has returned from its lines before it or sleeps in one of them (the driver reads the
  process's state from /proc); a sync point is then met when its condition holds (its row in
  closekit.steps), within the scenario's sync_timeout.
- Looking. A socket is looked at after every packet that may change it (sent or handed over),
  after every reply and exit of a process holding it (a segment that reached a socket while a call
  held it locked is processed when the call lets go: the call's reply is when it shows; a listening
  socket only after a line that acts on it), when a kernel timer it has is due, and for a sync
  point's condition. What is found is kept in order; when it happened is decided at the end,
  by its cause (closekit.sandbox.dating), not by when the lab happened to look.
- The end. Once every line has returned, the recording goes on until nothing is in flight and no
  acknowledgement is owed (or the peer's delayed-ACK timer has had its time): the trace's tail.
  Without a wire, "nothing moved for QUIET" stands for "nothing in flight".
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from closekit import records
from closekit import steps as st
from closekit.errors import ExperimentError, ProcessEndedError, ScenarioError, SyncTimeoutError, TimeLimitError, text
from closekit.sandbox.dating import Observation, date_states
from closekit.sandbox.diag import DiagSocket
from closekit.sandbox.packets import Connections, Packet
from closekit.sandbox.protocol import MAX_SEGMENTS
from closekit.scenario import Scenario
from closekit.trace import Segment, Signal, Syscall, Trace, Wait
from closekit.transcript import (
    WAKEABLE,
    Told,
    acknowledging,
    causal_times,
    duration_said_otherwise,
    ended_by,
    link_delay,
    may_have_waited,
)

if TYPE_CHECKING:
    from closekit.sandbox.endpoint import Addresses

ENDPOINTS = ("client", "server")
# A run is disturbed when, after its set-up, a busy machine held it up this long: a process kept from
# the CPU in a call, or from starting its next line, or the wire passing a segment on late. The quickest
# timer a built-in scenario lets a process race is the 40 ms delayed ACK (where a lesson would race the
# few-ms tick that acknowledges a FIN after no data, the scenario waits for that ACK instead); on a link
# with delay, the link is quicker (Run.tolerance).
TOLERANCE = 0.02
RELAY_LATE = 0.001  # a first copy the relay wrote this much past its time was held up by the lab, not the link
TIMER_SLACK = 0.002  # look again this long after a kernel timer was due to fire
QUIET = 0.001  # without a wire: nothing moved this long means nothing is in flight
POLL = 0.001  # without any view of the packets: how often sockets are looked at while waiting
DELAYED_ACK_MAX = 0.25  # the kernel's TCP_DELACK_MAX (200 ms), and some slack
DELACK_MIN = 0.04  # the kernel's TCP_DELACK_MIN: the longest delayed-ACK timeout while round trips are shorter
DELAYED_ACK_LATEST = DELACK_MIN + 0.01  # and a tick at HZ=100: a delayed ACK leaves by then (delayed_ack_late)
PROBE_BACKOFF = (0.0002, 0.001, 0.004)  # look again whether a running process sleeps after these
# a connection's first states: met again after later ones, they are a newer connection's on the same 4-tuple
OPENING = ("SYN_SENT", "SYN_RECEIVED")


# ---- what the driver feeds in --------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A process answered: `kind` done (the records of one line or set-up command), hello (a forked
    child is ready), crash or limit (records hold one {"message"})."""

    process: str
    kind: str
    records: tuple[dict[str, Any], ...]
    t: float


@dataclass(frozen=True)
class Gone:
    """A process's channel closed; `how` is what the reaper said of its end."""

    process: str
    how: str
    t: float


@dataclass(frozen=True)
class Ended:
    """The reaper reaped a process: its descriptors are closed now."""

    process: str
    t: float


@dataclass(frozen=True)
class Sent:
    """The lab took a packet its sender's kernel sent (packet.t: when it left; `t`: when taken). On
    the wire, the link has decided its fate already (a rule may hold or drop it)."""

    packet: Packet
    t: float


@dataclass(frozen=True)
class Arrived:
    """The wire has just written a packet into its receiver's device (or failed to: fate dropped)."""

    packet: Packet
    t: float


@dataclass(frozen=True)
class Seen:
    """What a look found: the socket, or None if the kernel has none (freed, or not yet made)."""

    endpoint: str
    conn: int
    found: DiagSocket | None
    t: float


@dataclass(frozen=True)
class Asleep:
    """Whether a process sleeps in the kernel (in a call that waits) or runs."""

    process: str
    asleep: bool
    t: float


@dataclass(frozen=True)
class Starved:
    """How long each of the lab's processes (the helper, the experiment's) has waited for a CPU so far:
    the kernel's run_delay, in seconds, by name."""

    waited: dict[str, float]
    t: float


@dataclass(frozen=True)
class Tick:
    """Time has passed (the driver woke up): deadlines, due timers and waits are checked."""

    t: float


Event = Reply | Gone | Ended | Sent | Arrived | Seen | Asleep | Starved | Tick


# ---- what it asks the driver to do ----------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    process: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Look:
    """Ask the kernel about one socket (conn 0: the server's listener) by its 4-tuple; answer with Seen."""

    endpoint: str
    conn: int
    local: tuple[str, int]
    remote: tuple[str, int]


@dataclass(frozen=True)
class Probe:
    """Find out whether the process sleeps in the kernel; answer with Asleep."""

    process: str


@dataclass(frozen=True)
class Measure:
    """Read how long the lab's processes have waited for a CPU; answer with Starved."""


@dataclass(frozen=True)
class Gate:
    """Close (keep everything sent from now on) or open the wire's gate: at_once's segments cross."""

    closed: bool


@dataclass(frozen=True)
class ReleaseHeld:
    """The wire puts on their way the segments a rule kept back from `side`."""

    side: str


Action = Command | Look | Probe | Measure | Gate | ReleaseHeld


@dataclass
class _Process:
    name: str
    endpoint: str
    queue: deque[tuple[list[int], st.Step]] = field(default_factory=deque)  # lines given, not yet sent
    sent: deque[tuple[str, st.Step | None]] = field(default_factory=deque)  # (set-up label or "", step) awaiting reply
    asleep: bool = False
    started: bool = False  # it has said it is making the call of its last line handed out
    probe_due: float | None = None
    probes: int = 0
    exited: bool = False  # said its last word (exit)
    ended: bool = False  # reaped
    ran_code: bool = False  # it ran a scenario's function, or was forked from one that had: its records are its word

    @property
    def idle(self) -> bool:
        return not self.queue and not self.sent

    def doing(self) -> str:
        """What it is running, in words (only an error says it: a line is described then)."""
        label, step = self.sent[0]
        return label or step.describe()  # type: ignore[union-attr]


def _limit_words(process: str, limit: str, function: str | None, length: int | None) -> str:
    """Which limit of the sandbox the process hit (closekit.sandbox.protocol.LIMITS), in words."""
    if limit == "processes":
        return text("run.limit.processes", process=process, function=function)
    if limit == "memory":
        return text("run.limit.memory", process=process, function=function)
    if limit == "tmp":
        return text("run.limit.tmp", process=process, function=function)
    if limit == "file_size":
        return text("run.limit.file_size", process=process, function=function)
    if limit == "result_size":
        return text("run.limit.result_size", process=process, function=function, length=length, most=records.MAX_TEXT)
    return text("run.limit.fork", process=process)


class Run:
    """The rules of one run of `scenario`. `wired`: the lab's wire joins the endpoints (packets are
    seen as they leave and as they arrive); `captured`: a capture sees them (no wire); neither: the
    lab sees no packets and looks at sockets every POLL."""

    def __init__(self, scenario: Scenario, addresses: Addresses, t0: float, wired: bool, captured: bool) -> None:
        self.scenario = scenario
        self.addresses = addresses
        self.t0 = t0
        self.wired, self.captured = wired, captured
        self.procs = {p: _Process(p, scenario.endpoint_of(p)) for p in scenario.sides}
        self._note_children_of_code()
        self.conns = Connections()
        self.packets: list[Packet] = []
        self.records: list[tuple[int, str, dict[str, Any]]] = []  # (order, process, record)
        self.waits: list[Wait] = []
        self.observed: list[Observation] = []
        self.views: dict[tuple[str, int], st.SocketView] = {}
        self.seen: set[tuple[str, int]] = set()
        self.timers: dict[tuple[str, int], float] = {}
        self.server_port = 0
        self.setup: deque[tuple[str, dict[str, Any]]] = deque()
        self.setup_until: float | None = None
        self.next = 0  # the first top-level line not yet handed out or done
        self.held_since: float | None = None  # when the lab step at `next` was first judged
        self.at_once: deque[tuple[str, dict[str, Any], st.Step]] | None = None
        self.part: str | None = None  # the process running at_once's current part (on the wire)
        self.unarrived: list[Packet] = []  # packets on the wire that have not reached their receiver
        self.released: set[int] = set()  # id() of held packets a release() put on their way
        self.looks_pending = 0  # looks asked for and not yet answered
        self.ticked = False  # time has passed since a sync point's sockets were last looked at
        self.sync_looked = -1  # the lab step whose sockets were looked at for it
        self.mark = 0  # wait_segment looks at packets from this index on
        self.last_activity = t0
        self.now = t0
        self.taking_in: Event = Tick(t0)  # what the Run takes in now (an answer: what asked for it)
        self.finished = False
        self.starved_from: dict[str, float] | None = None  # what each process had waited for a CPU by the set-up's end
        self.starved = 0.0  # how long since then, in all, up to the time limit: the limit is moved by it
        self.measured_at = float("-inf")  # when that was last read
        self._order = 0
        self._actions: list[Action] = []

    # ---- the driver's side ---------------------------------------------------------------------
    def start(self) -> list[Action]:
        """The set-up, as a server and a client program start: the server listens and blocks in accept(),
        then the client connects (or only makes its socket). accept() returns when the handshake's last
        ACK reaches the server, as it would, whatever the link's delay."""
        self.setup.append(("server", {"op": "listen"}))
        if self.scenario.start == "connected":
            self.setup += [("server", {"op": "accept", "announce": True}), ("client", {"op": "connect"})]
        else:
            self.setup.append(("client", {"op": "socket"}))
        self._next_setup()
        return self._take()

    def feed(self, event: Event) -> list[Action]:
        """Take in one event; the actions it calls for (a Look's answer is fed back as Seen, a Probe's
        as Asleep)."""
        if event.t > self.now:
            self.now = event.t
        if type(event) is not Seen and type(event) is not Starved:
            self.taking_in = event
        _TAKE_IN.get(type(event), Run._tick_event)(self, event)
        if not self.looks_pending:
            self._progress()
        return self._take()

    def deadline(self) -> float:
        """When the driver must wake at the latest, even if nothing happens."""
        due = [self._time_limit() + 0.001, *self.timers.values()]
        due += [p.probe_due for p in self.procs.values() if p.probe_due is not None]
        if self.held_since is not None:
            due.append(self.held_since + self.scenario.sync_timeout)
        if not self.wired:
            due.append(self.last_activity + QUIET + 0.0001 if self.captured else self.now + POLL)
        if self.setup_until is not None and self._tail_reached() and self.conns.acks_owed():
            due.append(self.last_activity + DELAYED_ACK_MAX + 0.001)
        return min(due)

    def outcome(
        self,
        kernel: str,
        mode: str,
        counters: dict[str, int],
        unobserved: tuple[str, ...],
        wire_late: float,
        setup_late: float = 0.0,
    ) -> tuple[float, Trace]:
        """The run's Trace and how long a busy machine held it up at worst (`disturbance`). Below the
        tolerance too, a run is disturbed where the wire's and a process's lateness added up after a segment woke
        it (`woken_late`) could have moved its next line past what the peer did meanwhile, and where the wire's
        lateness (`wire_late`), or a kernel's delayed-ACK timer firing late (`delayed_ack_late`), could have
        moved a duration the trace's words name into another category (40 ms of a delayed ACK told as ≈ 60 ms)."""
        held, said = self.disturbance(wire_late, setup_late)
        trace = self.trace(kernel, mode, counters, unobserved, said)
        if said:
            return held, trace
        chain = woken_late(trace, self.tolerance())
        if chain is not None:
            return max(held, chain.late), replace(trace, disturbed=chain.words())
        moved = duration_said_otherwise(trace, wire_late)
        if moved is not None:
            said = text("run.disturbed.moved", ms=f"{wire_late * 1000:.0f}", process=moved.side, call=moved.call)
            return held, replace(trace, disturbed=said)
        late, side = delayed_ack_late(trace)
        moved = duration_said_otherwise(trace, late) if late else None
        if moved is not None:
            said = text("run.disturbed.timer", ms=f"{late * 1000:.0f}", side=side, process=moved.side, call=moved.call)
            return max(held, late), replace(trace, disturbed=said)
        return held, trace

    def disturbance(self, wire_late: float, setup_late: float = 0.0) -> tuple[float, str]:
        """How long a busy machine held the run up at worst after its set-up (`wire_late`: the wire's
        worst since then), and in words ("" if the lesson tolerates it). On a link with delay the wire's
        worst in the set-up (`setup_late`) counts too: connect() is told as the link's round trip there
        (≈ 20 ms on return-default's 10 ms link; 54 ms with a relay 34 ms late, once in CI). A line held back
        counts against the link's tighter tolerance only where something the trace shows happened meanwhile."""
        if self.scenario.link.delay:
            wire_late = max(wire_late, setup_late)
        held, who = wire_late, None  # who: (process, call, in it or before it) kept from the CPU; None: the wire
        begun = self.setup_until or self.t0
        for _order, process, r in self.records:
            if r["kind"] != "syscall" or r["t"] < begun:
                continue
            if (r["queued"] or 0.0) > held:
                held, who = r["queued"], (process, r["call"], True)
            delayed = r["delayed"] or 0.0  # (before a line the program makes at once)
            if delayed > held and not self._held_while_nothing_moved(process, r["t"], delayed):
                held, who = delayed, (process, r["call"], False)
        if held > self.tolerance():
            ms = f"{held * 1000:.0f}"
            if who is None:
                return held, text("run.disturbed.wire", ms=ms)
            process, call, inside = who
            if inside:
                return held, text("run.disturbed.cpu", process=process, call=call, ms=ms)
            return held, text("run.disturbed.cpu_before", process=process, call=call, ms=ms)
        return held, self._resent_in_the_relay()

    def _held_while_nothing_moved(self, process: str, start: float, delayed: float) -> bool:
        """`process`'s line that started at `start`, `delayed` after its program would have made it, on a
        link with delay, held back no longer than TOLERANCE while nothing the trace shows happened: no
        segment left, no socket was seen to change state, the other processes made or returned from no
        call. It came after nothing it would have come before, so the link's tighter tolerance is not its
        (its time moved, which a link without delay tolerates as long). A segment's arrival shows only
        by what it changed (old-duplicate: an ACK reaching the client before its close(), not after,
        changed no state and no picture, in 45 runs of 150 beside two CPU-bound processes)."""
        if not self.scenario.link.delay or delayed > TOLERANCE:
            return False
        since = start - delayed
        return not (
            any(since < p.t < start for p in self.packets)
            or any(since < o.seen < start for o in self.observed)
            or any(since < r["t"] < start or since < r["t"] + r["duration"] < start
                   for _order, other, r in self.records if other != process and r["kind"] == "syscall")
        )  # fmt: skip

    def tolerance(self) -> float:
        """How long a busy machine may hold the run up before its lesson may read otherwise: TOLERANCE, or
        on a link with one-way delay D, 80% of D. A process held D would start its next line after the
        segment its last call sent had reached the peer (return-shutdown-read: the client's close() after
        its last ACK had closed the server's socket, 1 run in a suite on a busy machine); the rest of D
        is for its waking and the lab's recording between the two lines (under 1 ms)."""
        delay = self.scenario.link.delay
        return min(TOLERANCE, delay * 0.8) if delay else TOLERANCE

    def _resent_in_the_relay(self) -> str:
        """A segment its sender sent again while the lab's relay still held what would have spared it:
        its first copy, not yet written to the receiver, or the receiver's acknowledgement of that
        copy. The relay was late past the sender's quickest timer (a tail-loss probe fires after twice
        the RTT and 2 ms, a few ms on a link without delay), so the retransmission is the lab's doing,
        not the lesson's. In words, or "". (On a link with delay D no timer of the sender fires within
        D, so a timely first copy, and a timely acknowledgement, has always arrived.)"""
        link = self.scenario.link
        if link.rate is not None:
            return ""  # a rate-limited link queues: a first copy may wait there past the sender's timers
        first: dict[tuple[str, int, int, tuple[str, ...]], Packet] = {}
        for p in self.packets:
            if not p.conn or p.copy or not (p.payload or "FIN" in p.flags or "SYN" in p.flags):
                continue
            q = first.setdefault((p.src, p.conn, p.seq, p.flags), p)
            if q is p or q.fate != "delivered" or q.arrived is None:
                continue
            late = q.arrived - q.t - link.delay
            if late > RELAY_LATE and p.t < q.arrived:
                return text("run.disturbed.resent", side=p.src, ms=f"{late * 1000:.0f}")
            held = self._held_acknowledgement(q, p.t)
            if held:
                return text("run.disturbed.resent_acked", side=p.src, peer=st.peer_of(p.src), ms=f"{held * 1000:.0f}")
        return ""

    def _held_acknowledgement(self, q: Packet, t: float) -> float:
        """How late the relay passed on the receiver's acknowledgement of `q` that it held at `t`
        (sent in time to have arrived by then), or 0."""
        end = q.seq + q.payload + ("FIN" in q.flags or "SYN" in q.flags)
        delay = self.scenario.link.delay
        for a in self.packets:
            if a.src == q.src or a.conn != q.conn or "ACK" not in a.flags or a.copy or a.fate != "delivered":
                continue  # (one the link drops or holds is the lesson's)
            if a.t + delay > t:
                continue
            if (a.ack - end) & 0xFFFFFFFF >= 1 << 31:
                continue  # acknowledges less than all of `q`
            late = (self.now if a.arrived is None else a.arrived) - a.t - delay
            if late > RELAY_LATE and (a.arrived is None or a.arrived > t):
                return late
        return 0.0

    def trace(
        self, kernel: str, mode: str, counters: dict[str, int], unobserved: tuple[str, ...], disturbed: str = ""
    ) -> Trace:
        """The Trace of what happened: events on the experiment's clock, states dated by their cause."""
        t0 = self.t0
        events: list[tuple[float, int, int, Any]] = []  # (time, rank, order): a cause comes before its effect
        calls = []
        for order, process, r in self.records:
            if r["kind"] == "signal":
                signal = Signal(t=r["t"] - t0, side=process, signal=r["signal"], forgeable=r["forgeable"])
                events.append((signal.t, 3, order, signal))
                continue
            fields = {f.name: r[f.name] for f in records.SYSCALL}
            e = Syscall(**{**fields, "t": r["t"] - t0}, side=process, forgeable=r["forgeable"])
            events.append((e.t, 0, order, e))
            calls.append((self.procs[process].endpoint if process in self.procs else process, e))
        segments = []
        for order, p in enumerate(self.packets):
            if not p.conn:
                continue
            seq, ack, win = self.conns.relative(p)
            s = Segment(
                t=p.t - t0, src=p.src, flags=p.flags, seq=seq, ack=ack, len=p.payload, win=win, raw=p.raw,
                conn=p.conn, arrived=None if p.arrived is None else p.arrived - t0, fate=p.fate,
            )  # fmt: skip
            segments.append(s)
            events.append((s.t, 1, order, s))
        events.extend((w.t, 4, -1, w) for w in self.waits)  # after what it waited for
        for order, change in date_states(self.observed, calls, segments, t0):
            events.append((change.t, 2, order, change))
        events.sort(key=lambda x: x[:3])
        scenario = self.scenario
        return Trace(
            scenario=scenario.name, description=scenario.description, kernel=kernel, mode=mode,  # type: ignore[arg-type]
            counters=counters, events=tuple(e for *_key, e in events), unobserved=unobserved,
            link=scenario.link.to_dict(), settings=scenario.settings.to_dict(),
            processes={p: scenario.endpoint_of(p) for p in scenario.sides},
            setup_until=None if self.setup_until is None else self.setup_until - t0, disturbed=disturbed,
        )  # fmt: skip

    def sockets(self) -> list[tuple[str, tuple[str, int], tuple[str, int]]]:
        """(endpoint, local, remote) of every socket the experiment may have left in the kernel."""
        found = [(e, *t) for c in self.conns.all for e in ENDPOINTS if (t := self._tuple(e, c.number))]
        listener = self._tuple("server", 0)
        return found + ([("server", *listener)] if listener else [])

    @property
    def reusable(self) -> bool:
        """Ran only the lab's own code (no function of a student's, no fork, no exit) and ended with
        every process idle: its endpoint processes may serve the next experiment."""
        own = not any(isinstance(s, st.Call | st.Fork | st.Exit) for s in st.iter_steps(self.scenario.steps))
        return own and self.finished and all(p.idle for p in self.procs.values())

    def running(self) -> str:
        """What each process is still doing, for an error that ends the run early."""
        return "; ".join(f"{p.name}: {p.doing()}" for p in self.procs.values() if p.sent) or text("run.running_nothing")

    # ---- taking in ------------------------------------------------------------------------------
    def _sent(self, p: Packet) -> None:
        if len(self.packets) >= MAX_SEGMENTS:  # the helper's memory is bounded before the trace is built
            raise ExperimentError(text("run.too_many_segments", most=f"{MAX_SEGMENTS:,}"))
        self.last_activity = max(self.last_activity, self.now)
        self.packets.append(p)
        if self.wired and p.arrived is None:
            self.unarrived.append(p)
        self.conns.sent(p)
        if not p.conn:
            return
        if self._may_have_changed_its_sender(p):
            self._look(p.src, p.conn)
        if not self.wired:  # on a loopback, sent is received
            self.conns.delivered(p)
            self._look_after(p, st.peer_of(p.src))

    def _arrived(self, p: Packet) -> None:
        self.last_activity = max(self.last_activity, self.now)
        if p in self.unarrived:
            self.unarrived.remove(p)
        if p.fate == "dropped":  # the receiving device refused it
            return
        self.conns.delivered(p)
        dst = st.peer_of(p.src)
        if p.conn:
            self._look_after(p, dst)
        if "SYN" in p.flags and dst == "server":
            self._look("server", 0)

    def _may_have_changed_its_sender(self, p: Packet) -> bool:
        """Sending `p` may have come with a change of its sender's socket not yet seen: an RST, the
        first SYN or FIN. What changed a socket before it sent a plain segment, a SYN-ACK or a FIN
        again (a segment handed over, a call that returned, a timer) was looked at then."""
        view = self.views.get((p.src, p.conn), st.UNSEEN)
        if "RST" in p.flags or view.state is None:
            return True
        if "SYN" in p.flags:
            return view.state != "SYN_RECEIVED"
        if "FIN" in p.flags:
            return view.state not in ("FIN_WAIT_1", "CLOSING", "LAST_ACK")
        return view.state in OPENING

    def _look_after(self, p: Packet, endpoint: str) -> None:
        """Look at `endpoint`'s socket after packet `p` reached it, unless nothing can have changed: a
        plain data or ACK segment leaves an established connection established."""
        key = (endpoint, p.conn)
        if not {"SYN", "FIN", "RST"} & set(p.flags):
            view = self.views.get(key)
            if view is not None and view.state == "ESTABLISHED" and key not in self.timers:
                return
        self._look(endpoint, p.conn)

    def _reply(self, e: Reply) -> None:
        proc = self.procs[e.process]
        if e.kind == "crash":
            doing = proc.doing() if proc.sent else text("run.its_setup")
            raise ExperimentError(
                text("run.failed_while", process=proc.name, doing=doing, message=e.records[0]["message"])
            )
        if e.kind == "limit":
            raise ExperimentError(text("run.lab_limit", message=_limit_words(proc.name, **e.records[0])))
        if e.kind == "hello":
            return
        if e.kind == "started":
            proc.started = True
            return
        if not proc.sent:
            raise ExperimentError(text("run.stray_reply", process=proc.name))
        _label, step = proc.sent[0]
        self._note_code(proc, step)
        for r in e.records:
            if r["kind"] == "port":
                if proc.ran_code:
                    continue  # which connection is the experiment's is not for code under test to say
                if r["role"] == "listener" and proc.endpoint == "server":
                    self.server_port = r["port"]
                elif r["role"] == "connection" and proc.endpoint == "client" and self.server_port:
                    self.conns.connected(r["port"], self.server_port)
            else:
                self._order += 1
                self.records.append((self._order, proc.name, {**r, "forgeable": proc.ran_code}))
        proc.asleep, proc.probes, proc.probe_due = False, 0, None
        if isinstance(step, st.Exit):
            proc.exited = True  # its line is done once the reaper has reaped it
            self._exit_done(proc)
        else:
            proc.sent.popleft()
        self._look(proc.endpoint, self._current())  # (a segment may have waited for the call's lock)
        if proc.endpoint == "server" and (step is None or step.acts_on_listener()):
            self._look("server", 0)
        if self.setup_until is None:
            self._next_setup()
        elif self.part == proc.name:
            self.part = None
            self._next_part()

    def _note_children_of_code(self) -> None:
        """A child forked after its parent ran a scenario's function is marked from its first record on.
        Decided by program order, before anything runs: the child's replies may reach the lab before
        its parent's reply to the fork line does."""
        ran = set()
        for step in st.iter_steps(self.scenario.steps):
            if isinstance(step, st.Call):
                ran.add(step.side)
            elif isinstance(step, st.Fork) and step.side in ran and step.child in self.procs:
                ran.add(step.child)
                self.procs[step.child].ran_code = True

    @staticmethod
    def _note_code(proc: _Process, step: st.Step | None) -> None:
        """A process that runs a scenario's function may have had the code that records its calls
        rewritten: from that line on its records are marked forgeable."""
        if isinstance(step, st.Call):
            proc.ran_code = True

    def _ended(self, e: Ended) -> None:
        proc = self.procs.get(e.process)
        if proc is None:
            return
        proc.ended = True
        self._exit_done(proc)
        self._look(proc.endpoint, self._current())

    @staticmethod
    def _exit_done(proc: _Process) -> None:
        """An exit line returns once the process has both said its last word and been reaped."""
        if proc.exited and proc.ended and proc.sent and isinstance(proc.sent[0][1], st.Exit):
            proc.sent.popleft()

    def _gone(self, e: Gone) -> None:
        proc = self.procs[e.process]
        if proc.exited or not proc.sent:
            proc.exited = True
            return
        raise ProcessEndedError(text("run.ended_while", process=proc.name, how=e.how, doing=proc.doing()))

    def _asleep(self, e: Asleep) -> None:
        proc = self.procs[e.process]
        proc.asleep = e.asleep and bool(proc.sent)
        proc.probe_due = None if proc.asleep else e.t + PROBE_BACKOFF[min(proc.probes, len(PROBE_BACKOFF) - 1)]
        proc.probes += 1
        if self.setup_until is None:
            self._next_setup()

    def _seen(self, e: Seen) -> None:
        self.looks_pending -= 1
        key = (e.endpoint, e.conn)
        found = e.found
        before = self.views.get(key, st.UNSEEN)
        if found is not None and found.state in OPENING and before.state not in (None, *OPENING):
            return  # a newer connection's socket on this 4-tuple, looked at before the wire saw its SYN
        if found is None:
            view = st.SocketView("CLOSED" if key in self.seen else None)
        else:
            self.seen.add(key)
            view = st.SocketView(found.state, found.rqueue, found.wqueue, found.timer)
        if view.state is not None and view.state != before.state:
            self._order += 1
            self.observed.append(Observation(self._order, e.endpoint, e.conn, view.state, e.t))
        self.views[key] = view
        if found is not None and found.timer is not None and found.timer != "time-wait":
            self.timers[key] = e.t + found.expires + TIMER_SLACK
        elif found is not None and before.timer not in (None, "time-wait") and found.state == before.state:
            # its timer gone with no change of state: it may be firing this moment (sock_diag shows none while
            # the handler runs, e.g. the retransmission TCP_USER_TIMEOUT ends in): look once more (silent-peer)
            self.timers[key] = e.t + TIMER_SLACK
        else:
            self.timers.pop(key, None)

    def _time_limit(self) -> float:
        """When the run is past its time limit: the scenario's lines have all of it from the end of the
        set-up, which has as long itself (a busy machine's slow start of the lab is not the scenario's),
        and the time a busy machine has kept the lab's processes from the CPU since then is not counted
        (up to the limit again: a function looping on a busy machine still runs past it)."""
        return (self.t0 if self.setup_until is None else self.setup_until) + self.scenario.time_limit + self.starved

    def _starved(self, e: Starved) -> None:
        if self.starved_from is None:
            self.starved_from = e.waited
            return
        since = sum(max(0.0, w - self.starved_from.get(name, 0.0)) for name, w in e.waited.items())
        self.starved = max(self.starved, min(since, self.scenario.time_limit))

    def _tick_event(self, e: Tick) -> None:
        self._tick(e.t)

    def _tick(self, now: float) -> None:
        self.ticked = True
        if now > self._time_limit():
            if self.starved_from is None or self.measured_at >= self._time_limit():
                raise TimeLimitError(
                text("run.time_limit", scenario=repr(self.scenario.name), seconds=f"{self.scenario.time_limit:g}",
                     running=self.running())
                )  # fmt: skip
            self.measured_at = now  # past the limit: first, how long was the lab kept from the CPU since?
            self._actions.append(Measure())
        for key, due in list(self.timers.items()):
            if due <= now:
                del self.timers[key]
                self._look(*key)
        if not self.wired and not self.captured:
            for key in list(self.views):
                self._look(*key)

    # ---- handing out lines ----------------------------------------------------------------------
    def _next_setup(self) -> None:
        """Hand out the set-up's next call once the calls handed out have returned or sleep in the kernel
        (accept(), waiting for the client); once all have returned, the set-up is over."""
        busy = [p for p in self.procs.values() if p.sent]
        if self.setup and all(p.asleep for p in busy):
            process, message = self.setup.popleft()
            if message["op"] in ("connect", "accept"):
                message = {**message, "port": self.server_port}
            self._command(process, message, f"{message['op']}()", None)
        elif not self.setup and not busy:
            self.setup_until = self.now
            self.mark = len(self.packets)
            self._actions.append(Measure())  # from here on, time kept from the CPU does not count to the limit

    def _progress(self) -> None:
        """Hand out lines and judge lab steps as far as the rules allow now."""
        if self.finished:
            return
        if self.setup_until is None:  # a set-up call that blocks: the next one starts once it sleeps in it
            for p in self.procs.values() if self.setup else ():
                if p.sent and not p.asleep:
                    self._probe(p)
            return
        steps = self.scenario.steps
        while self.next < len(steps):
            step = steps[self.next]
            if not step.lab:
                self.procs[step.side].queue.append(([self.next], step))
                self.next += 1
                continue
            self._send_queues()
            if not self._reached() or not self._pass(step):
                break
        self._send_queues()
        self.ticked = False
        if self.next == len(steps) and self._tail_reached() and self._quiet():
            self.finished = True

    def _reached(self) -> bool:
        """Every process has returned from its lines before the lab step at `next`, or sleeps in the
        kernel in the last of them. A process is probed once it has said it is making that line's call
        (the answer comes back as Asleep): asleep before it, it would only be waiting for its next
        command. One that has exited holds the step until the reaper has reaped it (only then are its
        sockets released)."""
        if self.held_since is None:
            self.held_since = self.now
        waiting = False
        for p in self.procs.values():
            if not p.sent or (p.exited and p.ended) or (p.asleep and p.started and len(p.sent) == 1):
                continue
            waiting = True
            self._probe(p)
        return not waiting

    def _probe(self, p: _Process) -> None:
        """Ask whether `p` sleeps in the kernel in the call of its last line, once it has said it is making
        that call, when the last answer's back-off has passed."""
        if p.started and len(p.sent) == 1 and not p.exited and (p.probe_due is None or p.probe_due <= self.now):
            p.probe_due = float("inf")  # until it answers
            self._actions.append(Probe(p.name))

    def _pass(self, step: st.Step) -> bool:
        """Try to get past the lab step at `next`; False while it holds."""
        if isinstance(step, st.SyncPoint):
            endpoint = self._endpoint(step.side)
            looks = step.looks(endpoint, self._current())
            if looks and (self.ticked or self.sync_looked != self.next):  # look when first judged, and
                self.ticked, self.sync_looked = False, self.next  # again as time passes (queues move)
                for key in looks:
                    self._look(*key)
                if self.looks_pending:
                    return False  # judged once the answers are in
            moment = self._moment(segments=isinstance(step, st.WaitSegment))
            if not step.met(moment, endpoint):
                if self.now > self.held_since + self.scenario.sync_timeout:  # type: ignore[operator]
                    raise SyncTimeoutError(
                        text("run.sync_timeout", step=step.describe(), scenario=repr(self.scenario.name),
                             seconds=f"{self.scenario.sync_timeout:g}", waited=step.waited_for(moment, endpoint))
                    )  # fmt: skip
                return False
            self.waits.append(Wait(t=self.now - self.t0, side=step.side, step=step.describe()))
        elif isinstance(step, st.Release):
            if not self.wired:
                raise ScenarioError(text("run.release_needs_wire", step=step.describe()))
            self.released |= {id(p) for p in self.unarrived if p.fate == "held" and p.src == step.side}
            self._actions.append(ReleaseHeld(step.side))
            self.waits.append(Wait(t=self.now - self.t0, side=step.side, step=step.describe()))
        elif isinstance(step, st.AtOnce):
            return self._at_once(step)
        self._passed()
        return True

    def _at_once(self, step: st.AtOnce) -> bool:
        """Start the parts (on the wire one after another, behind the closed gate, so that their
        segments cross); passed once every part has returned."""
        if self.at_once is None:
            if any(not self.procs[part.side].idle for part in step.steps):
                return False  # a process still in a call cannot start another
            self.at_once = deque((part.side, {"op": "run", "lines": [[self.next, j]]}, part)
                                 for j, part in enumerate(step.steps))  # fmt: skip
            if self.wired:
                self._actions.append(Gate(closed=True))
                self._next_part()
            else:
                while self.at_once:
                    self._next_part()
        if self.at_once or any(self.procs[part.side].sent for part in step.steps):
            return False
        self.at_once = None
        if self.wired:
            self._actions.append(Gate(closed=False))
        self._passed()
        return True

    def _passed(self) -> None:
        self.next += 1
        self.held_since = None
        self.mark = len(self.packets)

    def _next_part(self) -> None:
        if self.at_once:
            process, message, part = self.at_once.popleft()
            self._command(process, {**message, "port": self.server_port, "since": _cause(self.taking_in)}, "", part)
            self.part = process if self.wired else None

    def _send_queues(self) -> None:
        for proc in self.procs.values():
            if proc.queue and not proc.exited:
                lines = [path for path, _step in proc.queue]
                for _path, step in proc.queue:
                    proc.sent.append(("", step))
                proc.queue.clear()
                proc.started = proc.asleep = False  # its last line may block across the next lab step: it
                message = {"op": "run", "lines": lines, "port": self.server_port, "announce": True,  # says so
                           "since": _cause(self.taking_in)}  # fmt: skip
                self._actions.append(Command(proc.name, message))

    def _command(self, process: str, message: dict[str, Any], label: str, step: st.Step | None) -> None:
        proc = self.procs[process]
        proc.sent.append((label, step))
        proc.started = proc.asleep = False
        self._actions.append(Command(process, message))

    # ---- the end ----------------------------------------------------------------------------------
    def _tail_reached(self) -> bool:
        return (
            self.setup_until is not None
            and self.next == len(self.scenario.steps)
            and self.at_once is None
            and all(p.idle or (p.exited and p.ended) for p in self.procs.values())
        )

    def _quiet(self) -> bool:
        """Nothing in flight and no acknowledgement owed (or the delayed-ACK timer has had its time)."""
        if not self.wired and self.now - self.last_activity < QUIET:
            return False
        owed = self.conns.acks_owed() if self.packets else 0
        return self._in_flight() == 0 and (owed == 0 or self.now - self.last_activity > DELAYED_ACK_MAX)

    def _in_flight(self) -> int:
        """Packets on their way: taken from their sender and not yet handed over (not those a rule
        dropped or holds back for a release() step)."""
        if not self.wired:
            return 1 if self.now - self.last_activity < QUIET else 0
        self.unarrived = [p for p in self.unarrived if p.arrived is None and p.fate != "dropped"]
        return sum(1 for p in self.unarrived if p.fate != "held" or id(p) in self.released)

    # ---- sockets --------------------------------------------------------------------------------
    def _look(self, endpoint: str, conn: int) -> None:
        address = self._tuple(endpoint, conn)
        if address is not None:
            self.looks_pending += 1
            self._actions.append(Look(endpoint, conn, *address))

    def _moment(self, segments: bool) -> st.Moment:
        return st.Moment(
            sockets=self.views,
            current=self._current(),
            in_flight=self._in_flight(),
            returned=frozenset(p.name for p in self.procs.values() if p.idle or (p.exited and p.ended)),
            blocked=frozenset(p.name for p in self.procs.values() if p.asleep and p.started and len(p.sent) == 1),
            segments=tuple(
                (p.src, frozenset(p.flags), self.conns.relative(p)[2]) for p in self.packets[self.mark :] if p.conn
            )
            if segments
            else (),
        )

    def _endpoint(self, side: str) -> str:
        return self.procs[side].endpoint if side in self.procs else side

    def _current(self) -> int:
        """The number of the newest connection (1 before any)."""
        return self.conns.all[-1].number if self.conns.all else 1

    def _tuple(self, endpoint: str, conn: int) -> tuple[tuple[str, int], tuple[str, int]] | None:
        a = self.addresses
        if conn == 0:
            return ((a.server, self.server_port), ("0.0.0.0", 0)) if self.server_port else None
        if conn > len(self.conns.all) or conn in self.conns.superseded:
            return None  # (a newer connection on the same 4-tuple answers for it now)
        c = self.conns.get(conn)
        client, server = (a.client, c.client_port), (a.server, c.server_port)
        return (client, server) if endpoint == "client" else (server, client)

    def _take(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions


def delayed_ack_late(trace: Trace) -> tuple[float, str]:
    """How much later than its timer allows an endpoint's kernel sent a delayed ACK, and which endpoint
    (0.0, "" where none was late). A pure ACK of the last segment that reached an endpoint
    (`acknowledging`), none of its processes making or returning from a call meanwhile, and not a probe (its
    sequence number one below the next), is its delayed-ACK timer's: the kernel arms that timer for at most
    TCP_DELACK_MIN (40 ms) while the connection's round trips are shorter (tcp_send_delayed_ack stretches it
    to the round trip only beyond), and it fires within a tick (10 ms at HZ=100). Later than that, a busy
    machine kept the kernel from running it (linger-ack's 40 ms wait for the ACK of its FIN, once 66 ms in a
    loaded suite, the wire on time)."""
    segments = trace.segments()
    if any(s.arrived is not None and s.arrived - s.t >= DELACK_MIN / 2 for s in segments):
        return 0.0, ""  # a round trip as long as the timeout may have stretched it
    acknowledged = {id(ack): last for ack, last in acknowledging(trace)}
    moments: dict[str, list[float]] = {}  # when each endpoint's processes made or returned from a call
    for c in trace.syscalls():
        moments.setdefault(trace.endpoint_of(c.side), []).extend((c.t, c.t + c.duration))
    for times in moments.values():
        times.sort()
    worst, side = 0.0, ""
    unsent: dict[tuple[int, str], int] = {}  # the next sequence number each side has not sent yet
    for ack in segments:
        key = (ack.conn, ack.src)
        probe = ack.seq < unsent.get(key, 0)  # a window probe or keepalive
        unsent[key] = max(ack.seq + ack.len + ack.has("SYN") + ack.has("FIN"), unsent.get(key, 0))
        last = acknowledged.get(id(ack))
        if last is None or probe:
            continue
        since: float = last.arrived  # type: ignore[assignment]
        calls = moments.get(ack.src, [])
        k = bisect.bisect_right(calls, since)
        if k < len(calls) and calls[k] <= ack.t:
            continue  # a call of the endpoint's may have sent it
        if ack.t - since - DELAYED_ACK_LATEST > worst:
            worst, side = ack.t - since - DELAYED_ACK_LATEST, ack.src
    return worst, side


@dataclass(frozen=True)
class WokenLate:
    """A line a busy machine held up after a segment woke its process's call (`woken_late`): by `late` in all,
    `wire` of it the wire's lateness passing that segment on, the rest the process's waits for a CPU."""

    late: float
    wire: float
    woken: Syscall
    line: Syscall

    def words(self) -> str:
        return text("run.disturbed.woken", ms=f"{self.late * 1000:.0f}", process=self.line.side,
                    call=self.line.call, woken=self.woken.call, wire=f"{self.wire * 1000:.0f}",
                    cpu=f"{(self.late - self.wire) * 1000:.0f}")  # fmt: skip


def woken_late(trace: Trace, tolerance: float) -> WokenLate | None:
    """A line a busy machine held up more than `tolerance` between a segment that woke one of its process's
    calls and the line itself, which the program makes next, at once (no sync point met between them): the
    wire's lateness passing that segment on, the process's wait for a CPU inside the woken call, and its wait
    before the line, added up; the worst such line, or None. The words tell the woken call's return right
    after the segment arrived on time (`causal_times`) and the line by its clock, so parts each below the
    tolerance may together move the line past what happened meanwhile (return-shutdown-read beside busy labs,
    3 runs in about 1,700: the server's FIN 7 ms late, the client's recv() 4 ms waiting for a CPU, and its
    close() told after its last ACK had closed the server's socket). A line with nothing told between the
    woken call's return and its start moved past nothing, and does not count. On a rate-limited link the
    wire's part is not told apart from the queue's, and is left out."""
    delay = link_delay(trace)
    rated = (trace.link or {}).get("rate") is not None
    waits = sorted(w.t for w in trace.events if isinstance(w, Wait))
    lines: dict[str, list[Syscall]] = {}
    for c in trace.syscalls():
        if trace.setup_until is None or c.t >= trace.setup_until:
            lines.setdefault(c.side, []).append(c)
    late_lines = []
    for calls in lines.values():
        for woken, line in itertools.pairwise(calls):
            segment = ended_by(trace, woken) if woken.call in WAKEABLE and may_have_waited(woken) else None
            if segment is None or segment.arrived is None or segment.fate != "delivered":
                continue
            k = bisect.bisect_left(waits, woken.t + woken.duration)
            if k < len(waits) and waits[k] <= line.t:
                continue  # the line came after a sync point: the lab started it
            wire = 0.0 if rated else max(0.0, segment.arrived - segment.t - delay)
            late = wire + (woken.queued or 0.0) + (line.delayed or 0.0)
            if late > tolerance:
                late_lines.append(WokenLate(late, wire, woken, line))
    if not late_lines:
        return None
    told = causal_times(trace)
    moments = sorted(_told_moments(trace, told))
    moved = [w for w in late_lines if _any_between(moments, told.returned(w.woken), w.line.t)]
    return max(moved, key=lambda w: w.late, default=None)


def _told_moments(trace: Trace, told: Told) -> list[float]:
    """When the clock-free words tell each thing: a segment leaving and arriving, a state, a call and its return."""
    out = []
    for e in trace.events:
        if isinstance(e, Syscall):
            out += (e.t, told.returned(e))
        elif isinstance(e, Segment):
            arrived = told.arrival(e)
            out += (told.time(e),) if arrived is None else (told.time(e), arrived)
        else:
            out.append(told.time(e))
    return out


def _any_between(moments: list[float], low: float, high: float) -> bool:
    k = bisect.bisect_right(moments, low)
    return k < len(moments) and moments[k] < high


def _cause(event: Event) -> float:
    """When what `event` tells of happened, as far as the lab can tell: a reply's last call returned, a
    packet left its sender; not when the driver took it in (on a busy machine, later). A command's
    `since`: the end of the lab's wait, from which closekit.sandbox.endpoint times its first line."""
    t = event.t
    if isinstance(event, Reply):  # (a process that ran a scenario's function may report whole seconds: JSON ints)
        ends = [r["t"] + r["duration"] for r in event.records if r.get("kind") == "syscall"]
        return float(min(t, max(ends))) if ends else t
    if isinstance(event, Sent):
        return min(t, event.packet.t)
    return t


# how the Run takes in each kind of event (anything else is a moment passed)
_TAKE_IN: dict[type, Callable[[Run, Any], None]] = {
    Seen: Run._seen,
    Sent: lambda run, e: run._sent(e.packet),
    Arrived: lambda run, e: run._arrived(e.packet),
    Reply: Run._reply,
    Asleep: Run._asleep,
    Starved: Run._starved,
    Ended: Run._ended,
    Gone: Run._gone,
}
