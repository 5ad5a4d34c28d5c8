"""A Trace: what the kernel did during one experiment, as immutable typed events on one clock.

Everything that reads a trace (queries, transcripts, diagrams, claims, exercise checks) is a
pure function of it, so a Trace can also be loaded from JSON recorded on another machine.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

MODES = ("netns", "netns-loopback", "host", "host-nocapture")
ENDPOINTS = ("client", "server")
FATES = ("delivered", "delayed", "gated", "released", "dropped", "held", "duplicate")
ARRIVING = ("delivered", "delayed", "gated", "released", "duplicate")  # the fates of segments that reached the peer
Mode = Literal["netns", "netns-loopback", "host", "host-nocapture"]
FLAG_ORDER = ("SYN", "FIN", "RST", "PSH", "ACK", "URG")
SEGMENT_FLAGS = FLAG_ORDER

MODE_NOTICES = {
    "netns": "",
    "netns-loopback": (
        "Fallback mode 'netns-loopback': this machine gives no TUN device, so both endpoints share one "
        "loopback in a private network namespace. Everything is observed, but segments arrive at once "
        "and no link delay or rule can apply."
    ),
    "host": (
        "Fallback mode 'host': this machine does not allow a private network namespace, so the "
        "experiment ran on the host loopback. Segments were captured, but the TCP counters are "
        "shared with everything else on the host and were not recorded."
    ),
    "host-nocapture": (
        "Fallback mode 'host-nocapture': no private network namespace and no packet capture here. "
        "Syscalls and socket states are real; the segments on the wire could not be observed, and a state "
        "a socket held for less than a millisecond may be missing (sockets were looked at after each call "
        "and every millisecond)."
    ),
}


@dataclass(frozen=True)
class Syscall:
    """One system call made by one side: what was asked, what the kernel answered, and when.

    `slept`: whether the calling thread went to sleep in it (it waited for the network, a timer or
    buffer room), as opposed to running all along or merely losing the CPU for a while on a busy
    machine; None where it was not recorded (traces from before it was). `queued`: how much of
    `duration` the process spent runnable but waiting for a CPU; `delayed`: how long after its program
    would have made this call it did (at once after its previous call returned, or after the lab's wait
    ended if that was later: the lab's lateness in handing the line over counts too); None where not
    recorded, and in the set-up.

    `forgeable`: the process that reported this call had run a function of the scenario's (a call()
    step, this one included) or was forked from one that had. Such a function can rewrite the code
    that times and records the process's calls, so this record is that process's word, not the
    kernel's: a verdict must not rest on it (closekit.exercises says it cannot judge instead)."""

    t: float = field(compare=False)
    side: str
    call: str
    args: dict[str, Any]
    result: Any
    errno: str | None
    duration: float = field(compare=False)
    slept: bool | None = field(default=None, compare=False)
    queued: float | None = field(default=None, compare=False)
    delayed: float | None = field(default=None, compare=False)
    forgeable: bool = field(default=False, compare=False)
    kind: Literal["syscall"] = "syscall"

    @property
    def failed(self) -> bool:
        return self.errno is not None

    @property
    def waited(self) -> float:
        """How long the call took, less the time its process only waited for a CPU: the part the kernel
        or the network decided (a woken close() can sit tens of ms in a busy machine's run queue)."""
        return max(self.duration - (self.queued or 0.0), 0.0)


@dataclass(frozen=True)
class Segment:
    """One TCP segment on the wire between the endpoints (seq/ack relative, like tcpdump).

    `t` is when it left its sender (when the lab's wire took it); `arrived` when the wire handed it
    to the other endpoint, None if it never did. `fate` says what the wire did with it:
    "delivered" (after the link's delay), "delayed" (later, by a scenario's rule), "gated" (kept until
    the calls of an at_once step had all returned, so that it crossed its peer's), "released" (held
    back by a rule until a release step), "dropped" (a rule), "held" (kept back and never released),
    or "duplicate" (an extra copy the wire injected). `conn` numbers the connections of an experiment
    in the order of their first SYN (1 for the usual one).

    Equality leaves out times and the advertised window: a window is the receiver's free buffer
    memory, which moves by a few KB with how the kernel happened to batch buffers during a bulk
    transfer, while which segments were sent (flags, seq, ack, length) and their fate do not.
    """

    t: float = field(compare=False)
    src: str
    flags: tuple[str, ...]
    seq: int
    ack: int
    len: int
    win: int = field(compare=False)
    raw: bytes = field(default=b"", compare=False, repr=False)
    conn: int = 1
    arrived: float | None = field(default=None, compare=False)
    fate: str = "delivered"
    kind: Literal["segment"] = "segment"

    def __post_init__(self) -> None:
        if self.arrived is None and self.fate in ARRIVING:
            object.__setattr__(self, "arrived", self.t)  # no wire in between: it arrived as it left

    @property
    def lost(self) -> bool:
        """The segment never reached the other endpoint (dropped, or held until the end)."""
        return self.arrived is None

    @property
    def dst(self) -> str:
        return "server" if self.src == "client" else "client"

    def has(self, flag: str) -> bool:
        return flag.upper() in self.flags

    @property
    def tcpdump_flags(self) -> str:
        """Flags the way tcpdump prints them: S, F, R, P and '.' for ACK."""
        letters = "".join({"SYN": "S", "FIN": "F", "RST": "R", "PSH": "P", "URG": "U"}.get(f, "") for f in self.flags)
        return letters + ("." if "ACK" in self.flags else "")


@dataclass(frozen=True)
class StateChange:
    """A TCP state the kernel reported for an endpoint's socket (RFC 9293 names).

    `side` is the endpoint ("client" or "server"), whichever process holds the socket; `conn` is
    the connection (as in Segment), 0 for the server's listening socket.
    """

    t: float = field(compare=False)
    side: str
    state: str
    conn: int = 1
    kind: Literal["state"] = "state"


@dataclass(frozen=True)
class Signal:
    """A signal the kernel delivered to one side's process (e.g. SIGPIPE on a write), as that process
    reported it (`forgeable` as for Syscall)."""

    t: float = field(compare=False)
    side: str
    signal: str
    forgeable: bool = field(default=False, compare=False)
    kind: Literal["signal"] = "signal"


@dataclass(frozen=True)
class Wait:
    """A sync point of the scenario was met (or a release() done): the lines after it started then.
    `side` is whom it is about, `step` the line as the scenario wrote it. Only the scenario's own
    waits are in a trace: the lab waits for nothing else between lines."""

    t: float = field(compare=False)
    side: str
    step: str
    kind: Literal["wait"] = "wait"


Event = Syscall | Segment | StateChange | Signal | Wait
_EVENT_TYPES: dict[str, type] = {
    "syscall": Syscall,
    "segment": Segment,
    "state": StateChange,
    "signal": Signal,
    "wait": Wait,
}
# each kind's fields as they appear in JSON (a segment's raw bytes only on request)
_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in fields(cls) if f.name != "raw") for kind, cls in _EVENT_TYPES.items()
}


@dataclass(frozen=True, eq=False)
class Trace:
    """The record of one experiment.

    Two traces are equal when the same things happened (their `signature`), whatever the times:
    the same calls and results in each process, the same states of each socket, the same segments
    in each direction, the same counters of what the connection did.
    """

    scenario: str
    kernel: str
    mode: Mode
    counters: dict[str, int]
    events: tuple[Event, ...]
    description: str = field(default="", compare=False)
    unobserved: tuple[str, ...] = field(default=(), compare=False)
    link: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, str] = field(default_factory=dict)
    setup_until: float | None = field(default=None, compare=False)  # when the first step began
    disturbed: str = field(default="", compare=False)  # a busy machine held the run up, in words (or "")
    recorded: str = field(default="", compare=False)  # set on a trace recorded elsewhere (closekit.recorded)

    def endpoint_of(self, process: str) -> str:
        """The endpoint ("client" or "server") whose socket a process acts on: a forked child acts on
        its parent's. Traces recorded before processes were listed fall back to the name's prefix."""
        if process in self.processes:
            return self.processes[process]
        if process in ENDPOINTS:
            return process
        return process.partition("-")[0]

    # ---- what happened, for comparing runs ---------------------------------------------------
    def signature(self) -> tuple[Any, ...]:
        """What a run is compared by, on the same kernel: every process's calls (with results), every
        socket's states, and every direction's segments, in their own order; and the counters of
        what the connection did (resets, aborts, TIME_WAIT …).

        Left out, because scheduling decides them rather than the protocol: how events of different
        endpoints interleave where the scenario does not order them (two closes started at once);
        how a stream of bytes is cut into segments (data and pure ACKs count as the bytes carried and
        the last acknowledgement; where a FIN or RST sits in the stream is kept); windows and PSH;
        a retransmission of data or a FIN the receiver had already been given (a sender's timer that
        fired while a busy machine kept the ACK back); and counters of segment volume or
        loss-recovery heuristics (tail loss probes, DSACKs). A retransmission of what the wire
        dropped or held back is kept: that is a lesson.
        """
        per: dict[tuple[str, str, int], list[Any]] = {}
        again = self.redundant()
        for e in self.events:
            if isinstance(e, Segment):
                items = per.setdefault(("segments", e.src, e.conn), [])
                control = tuple(sorted(set(e.flags) - {"PSH", "ACK"}))
                if e.fate != "delivered":
                    items.append((e.flags, e.seq, e.ack, e.len, e.fate))
                    continue
                if id(e) in again:
                    continue  # everything it carries had arrived already
                if e.len or not control:  # the bytes and acknowledgement a run of segments carried
                    if items and items[-1][0] == "run":
                        items[-1] = ("run", items[-1][1], max(items[-1][2], e.seq + e.len), e.ack)
                    else:
                        items.append(("run", e.seq, e.seq + e.len, e.ack))
                if control:
                    items.append((control, e.seq + e.len, e.ack))
            elif isinstance(e, StateChange):
                per.setdefault(("states", e.side, e.conn), []).append(e.state)
            elif isinstance(e, Syscall):
                per.setdefault(("calls", e.side, 0), []).append((e.call, tuple(sorted(e.args.items())), repr(e.result),
                                                                 e.errno))  # fmt: skip
            elif isinstance(e, Signal):
                per.setdefault(("signals", e.side, 0), []).append(e.signal)
        counters = tuple(sorted((k, v) for k, v in self.counters.items() if not incidental_counter(k)))
        return (self.scenario, self.mode, tuple(sorted((k, tuple(v)) for k, v in per.items())), counters)

    def redundant(self) -> set[int]:
        """ids of the delivered segments that carried only data or a FIN their receiver had been given
        already: a sender's timer (a tail loss probe, an RTO) that fired while the receiver's ACK was
        still to come. Which of the two timers fires first follows how busy the machine is; a
        retransmission of what the wire dropped or held back, or sent because the wire kept the
        receiver's answers back, is not one of these (that is a lesson)."""
        given: dict[tuple[str, int], int] = {}  # per direction: the end of what the receiver was given
        lost: dict[tuple[str, int], list[tuple[int, int]]] = {}  # per direction: what the wire kept back
        unanswered: set[tuple[str, int]] = set()  # senders whose peer's answer the wire kept back
        out: set[int] = set()
        for e in self.events:
            if not isinstance(e, Segment):
                continue
            way, end = (e.src, e.conn), e.seq + e.len + ("FIN" in e.flags)
            control = tuple(sorted(set(e.flags) - {"PSH", "ACK"}))
            if e.fate != "delivered":
                lost.setdefault(way, []).append((e.seq, end))
                if e.arrived is None:  # the wire never handed it over
                    unanswered.add((e.dst, e.conn))
                continue
            if (
                control in ((), ("FIN",))
                and e.seq < end <= given.get(way, -1)
                and not any(a < end and e.seq < b for a, b in lost.get(way, ()))
                and way not in unanswered
            ):
                out.add(id(e))
                continue
            given[way] = max(end, given.get(way, -1))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self.signature() == other.signature()

    def __hash__(self) -> int:
        return hash(self.signature())

    # ---- queries -------------------------------------------------------------------------
    def segments(self, src: str | None = None, flags: str | Iterable[str] | None = None) -> list[Segment]:
        """Segments, optionally only those sent by `src` and carrying every flag in `flags`."""
        wanted = _flag_set(flags)
        return [
            e
            for e in self.events
            if isinstance(e, Segment) and (src is None or e.src == src) and wanted.issubset(e.flags)
        ]

    def syscalls(self, side: str | None = None, call: str | None = None) -> list[Syscall]:
        return [
            e
            for e in self.events
            if isinstance(e, Syscall) and (side is None or e.side == side) and (call is None or e.call == call)
        ]

    def states(self, side: str, conn: int = 1) -> list[str]:
        """The states `side`'s socket of connection `conn` went through, in order (as observed)."""
        return [e.state for e in self.events if isinstance(e, StateChange) and e.side == side and e.conn == conn]

    def final_state(self, side: str, conn: int = 1) -> str | None:
        path = self.states(side, conn)
        return path[-1] if path else None

    def waits(self) -> list[Wait]:
        """The scenario's sync points as they were met, in order."""
        return [e for e in self.events if isinstance(e, Wait)]

    def signals(self, side: str | None = None) -> list[str]:
        return [e.signal for e in self.events if isinstance(e, Signal) and (side is None or e.side == side)]

    def first(self, flag: str, src: str | None = None) -> Segment | None:
        """The first segment carrying `flag` (e.g. "RST", "FIN"), or None if none was seen."""
        found = self.segments(src=src, flags=flag)
        return found[0] if found else None

    def sent(self, src: str, flag: str) -> bool:
        """Did `src` send a segment with `flag`? (False in host-nocapture mode: nothing was seen.)"""
        return self.first(flag, src=src) is not None

    def counter(self, name: str) -> int:
        """A MIB counter delta, e.g. 'TcpExt:TCPAbortOnClose' (0 when it did not move)."""
        return self.counters.get(name, 0)

    @property
    def sides(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.events:
            if isinstance(e, (Syscall, StateChange, Signal)):
                seen.setdefault(e.side, None)
        return list(seen)

    @property
    def captured(self) -> bool:
        return self.mode != "host-nocapture"

    @property
    def notice(self) -> str:
        """What a reader must know before trusting the trace as this machine's: a fallback mode, or
        that it was recorded elsewhere."""
        if self.recorded:
            return f"This trace was {self.recorded}."
        return MODE_NOTICES[self.mode]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    # ---- export --------------------------------------------------------------------------
    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        """The trace as JSON-ready data (the schema in the README); `raw` adds each segment's captured
        bytes (base64), which pcap export needs."""
        events = []
        for e in self.events:
            d = {f: getattr(e, f) for f in _FIELDS[e.kind]}  # asdict() deep-copies: ten times slower
            if isinstance(e, Segment):
                d["flags"] = list(e.flags)
                if raw:
                    d["raw"] = base64.b64encode(e.raw).decode()
            elif isinstance(e, Syscall):
                d["args"] = dict(e.args)
                if isinstance(e.result, list):
                    d["result"] = list(e.result)
            events.append(d)
        return {
            "scenario": self.scenario,
            "description": self.description,
            "kernel": self.kernel,
            "mode": self.mode,
            "unobserved": list(self.unobserved),
            "counters": dict(self.counters),
            "link": dict(self.link),
            "settings": dict(self.settings),
            "processes": dict(self.processes),
            "setup_until": self.setup_until,
            "disturbed": self.disturbed,
            "events": events,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> Trace:
        """A trace from its JSON form, every field checked (it may come from another process or
        machine): a TraceFormatError names the first thing that is wrong."""
        from closekit.trace_schema import load_trace

        return load_trace(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """A trace from its JSON text (Trace.to_json()); a TraceFormatError names what is wrong."""
        from closekit.trace_schema import parse_json

        return cls.from_dict(parse_json(text))

    def pcap_link(self, filename: str | None = None) -> Any:
        """The captured packets as a download link in a notebook (closekit.download.pcap_link)."""
        from closekit.download import pcap_link

        return pcap_link(self, filename)

    def to_pcap(self, path: str) -> int:
        """Write the captured packets as a pcap file (tcpdump -r, Wireshark); returns the count."""
        from closekit.pcap import write_pcap

        return write_pcap(path, [(s.t, s.raw) for s in self.segments() if s.raw])

    # ---- display -------------------------------------------------------------------------
    def transcript(self) -> str:
        from closekit.transcript import text_transcript

        return text_transcript(self)

    def __str__(self) -> str:
        return self.transcript()

    def _repr_html_(self) -> str:
        from closekit.transcript import html_transcript

        return html_transcript(self)

    def __repr__(self) -> str:
        return f"<Trace {self.scenario!r} mode={self.mode} events={len(self.events)}>"


# Counters that count segments, or what loss-recovery heuristics did (tail loss probes, DSACKs):
# they follow how a transfer happened to be cut up and scheduled, not what the connection did.
_INCIDENTAL = ("InSegs", "OutSegs", "PureAcks", "OrigDataSent", "Delivered", "DelayedACK", "ZeroWindow", "DSACK",
               "LossProbe", "Retrans", "SACK", "Recovery", "Spurious", "Reorder", "Undo", "Coalesce", "Prune",
               "RcvQDrop", "HPHits", "Timeouts", "WinProbe", "Backlog", "OFO", "AutoCorking", "Rehash")  # fmt: skip


def incidental_counter(name: str) -> bool:
    return any(part in name for part in _INCIDENTAL)


def _flag_set(flags: str | Iterable[str] | None) -> frozenset[str]:
    if flags is None:
        return frozenset()
    if isinstance(flags, str):
        flags = flags.replace(",", " ").split()
    return frozenset(f.upper() for f in flags)
