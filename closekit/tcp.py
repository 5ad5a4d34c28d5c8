"""The TCP state machine of RFC 9293, as data: everything the course says about TCP states lives here.

Rules of this module:

* `TRANSITIONS` is the one table of the machine: (state, event) -> (next state, what is sent).
  The state diagram in `closekit.render` is drawn from it and `check_path` reads it, so the
  picture and the check cannot drift apart.
* Besides the RFC's orderly transitions, the table holds the Linux abortive ones the course
  shows on the real kernel (close with unread data, SO_LINGER {on, 0}, data arriving after
  the reading half was shut, a listener closed with connections it never handed to accept()):
  they go straight to CLOSED and send RST. And the ends that send nothing: retransmissions
  that run out (tcp_retries2, tcp_orphan_retries, TCP_USER_TIMEOUT) and an orphan's FIN_WAIT_2
  timer (tcp_fin_timeout).
* A trace may miss a state that lasted microseconds (a trace recorded by an older lab, which
  looked only at settled points; a state a socket passes through between two observations).
  `explain_path` fills such gaps, but only with `TRANSIENT` states: a state the socket
  leaves by the peer's next segment. A gap that would need any other state is illegal.
* A socket's path is one socket's: the server's connection is born in SYN_RECEIVED from the
  listening socket, which stays in LISTEN (its own path is LISTEN → CLOSED).

Nothing here does I/O or knows about traces: it is names, tables and small searches.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

# ---- states ------------------------------------------------------------------------------------
CLOSED = "CLOSED"
LISTEN = "LISTEN"
SYN_SENT = "SYN_SENT"
SYN_RECEIVED = "SYN_RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN_WAIT_1"
FIN_WAIT_2 = "FIN_WAIT_2"
CLOSING = "CLOSING"
TIME_WAIT = "TIME_WAIT"
CLOSE_WAIT = "CLOSE_WAIT"
LAST_ACK = "LAST_ACK"

STATES = (
    CLOSED,
    LISTEN,
    SYN_SENT,
    SYN_RECEIVED,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    CLOSING,
    TIME_WAIT,
    CLOSE_WAIT,
    LAST_ACK,
)  # fmt: skip

# States a socket leaves on the peer's very next segment: on loopback they last microseconds,
# so a trace may skip them. Only these may be inferred between two observed states.
TRANSIENT = frozenset({SYN_SENT, SYN_RECEIVED, FIN_WAIT_1, CLOSING, LAST_ACK})

# ---- events ------------------------------------------------------------------------------------
PASSIVE_OPEN = "listen"
ACTIVE_OPEN = "connect"
RCV_SYN = "rcv SYN"
RCV_SYN_ACK = "rcv SYN+ACK"
RCV_ACK_OF_SYN = "rcv ACK of SYN"
CLOSE = "close"
SHUTDOWN_WR = "shutdown_wr"
RCV_FIN = "rcv FIN"
RCV_ACK_OF_FIN = "rcv ACK of FIN"
RCV_FIN_ACK = "rcv FIN+ACK"
TIMEOUT_2MSL = "2MSL timeout"
RCV_RST = "rcv RST"
CLOSE_UNREAD = "close, unread data"
CLOSE_LINGER_ZERO = "close, SO_LINGER 0"
RCV_DATA_AFTER_SHUTDOWN = "rcv data after SHUT_RD or close"
LISTENER_CLOSED = "listener closed"  # inet_csk_listen_stop: a queued, never-accepted connection is reset
RETRIES_RUN_OUT = "retries run out"  # tcp_write_timeout: no answer to retransmissions (or TCP_USER_TIMEOUT)
FIN_WAIT_2_TIMEOUT = "FIN_WAIT_2 timeout"  # an orphan waits tcp_fin_timeout for the peer's FIN, then goes

EVENTS = (
    PASSIVE_OPEN,
    ACTIVE_OPEN,
    RCV_SYN,
    RCV_SYN_ACK,
    RCV_ACK_OF_SYN,
    CLOSE,
    SHUTDOWN_WR,
    RCV_FIN,
    RCV_ACK_OF_FIN,
    RCV_FIN_ACK,
    TIMEOUT_2MSL,
    RCV_RST,
    CLOSE_UNREAD,
    CLOSE_LINGER_ZERO,
    RCV_DATA_AFTER_SHUTDOWN,
    LISTENER_CLOSED,
    RETRIES_RUN_OUT,
    FIN_WAIT_2_TIMEOUT,
)  # fmt: skip

# Events that end the connection at once with RST: Linux behaviour (RFC 1122 4.2.2.13 for unread
# or late data) rather than the RFC 9293 diagram. A gap is explained by them only as a last resort.
ABORTIVE = frozenset({RCV_RST, CLOSE_UNREAD, CLOSE_LINGER_ZERO, RCV_DATA_AFTER_SHUTDOWN, LISTENER_CLOSED})

# Events that end the connection by giving up, sending nothing: timers, not the peer or the application.
# Like aborts, a gap is explained by them only as a last resort.
GIVE_UP = frozenset({RETRIES_RUN_OUT, FIN_WAIT_2_TIMEOUT})

# Events the application causes (the others arrive from the peer or a timer).
APP_EVENTS = frozenset({PASSIVE_OPEN, ACTIVE_OPEN, CLOSE, SHUTDOWN_WR, CLOSE_UNREAD, CLOSE_LINGER_ZERO})

# Which application events `close()` may be, depending on what the socket holds.
CLOSE_EVENTS = frozenset({CLOSE, CLOSE_UNREAD, CLOSE_LINGER_ZERO})


@dataclass(frozen=True)
class Transition:
    """One edge of the machine: in `source`, `event` moves the socket to `target` and sends `sends`."""

    source: str
    event: str
    target: str
    sends: str = ""

    @property
    def abortive(self) -> bool:
        return self.event in ABORTIVE

    @property
    def gives_up(self) -> bool:
        return self.event in GIVE_UP


def _t(source: str, event: str, target: str, sends: str = "") -> tuple[tuple[str, str], Transition]:
    return (source, event), Transition(source, event, target, sends)


# States after the handshake: a reset moves each of them to CLOSED.
SYNCHRONIZED = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK)
# States in which the application still holds the socket and may close it (after a shutdown,
# FIN_WAIT_* and LAST_ACK are reached with the descriptor still open).
_APP_HOLDS = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT)

TRANSITIONS: dict[tuple[str, str], Transition] = dict(
    [
        # opening (RFC 9293 figure 5)
        _t(CLOSED, PASSIVE_OPEN, LISTEN),
        _t(CLOSED, ACTIVE_OPEN, SYN_SENT, "SYN"),
        _t(LISTEN, RCV_SYN, SYN_RECEIVED, "SYN,ACK"),
        _t(LISTEN, CLOSE, CLOSED),
        _t(SYN_SENT, RCV_SYN_ACK, ESTABLISHED, "ACK"),
        _t(SYN_SENT, RCV_SYN, SYN_RECEIVED, "SYN,ACK"),
        _t(SYN_SENT, CLOSE, CLOSED),
        _t(SYN_RECEIVED, RCV_ACK_OF_SYN, ESTABLISHED),
        _t(SYN_RECEIVED, CLOSE, FIN_WAIT_1, "FIN"),
        _t(SYN_RECEIVED, RCV_RST, LISTEN),
        # orderly release: active closer
        _t(ESTABLISHED, CLOSE, FIN_WAIT_1, "FIN"),
        _t(ESTABLISHED, SHUTDOWN_WR, FIN_WAIT_1, "FIN"),
        _t(FIN_WAIT_1, RCV_ACK_OF_FIN, FIN_WAIT_2),
        _t(FIN_WAIT_1, RCV_FIN, CLOSING, "ACK"),
        _t(FIN_WAIT_1, RCV_FIN_ACK, TIME_WAIT, "ACK"),
        _t(FIN_WAIT_2, RCV_FIN, TIME_WAIT, "ACK"),
        _t(CLOSING, RCV_ACK_OF_FIN, TIME_WAIT),
        _t(TIME_WAIT, TIMEOUT_2MSL, CLOSED),
        # orderly release: passive closer
        _t(ESTABLISHED, RCV_FIN, CLOSE_WAIT, "ACK"),
        _t(CLOSE_WAIT, CLOSE, LAST_ACK, "FIN"),
        _t(CLOSE_WAIT, SHUTDOWN_WR, LAST_ACK, "FIN"),
        _t(LAST_ACK, RCV_ACK_OF_FIN, CLOSED),
        # abortive: a reset from the peer ends any synchronized state
        *(_t(s, RCV_RST, CLOSED) for s in SYNCHRONIZED),
        # abortive, Linux: close() with unread data, or with SO_LINGER {on, 0}, sends RST
        *(_t(s, CLOSE_UNREAD, CLOSED, "RST") for s in _APP_HOLDS),
        *(_t(s, CLOSE_LINGER_ZERO, CLOSED, "RST") for s in _APP_HOLDS),
        # abortive, Linux: new data for a socket whose reading half is shut (or already closed)
        _t(FIN_WAIT_1, RCV_DATA_AFTER_SHUTDOWN, CLOSED, "RST"),
        _t(FIN_WAIT_2, RCV_DATA_AFTER_SHUTDOWN, CLOSED, "RST"),
        # abortive, Linux: closing a listener resets the connections still in its accept queue
        _t(ESTABLISHED, LISTENER_CLOSED, CLOSED, "RST"),
        _t(CLOSE_WAIT, LISTENER_CLOSED, CLOSED, "RST"),
        # giving up, sending nothing: unanswered retransmissions (of a SYN, data or a FIN) ...
        *(_t(s, RETRIES_RUN_OUT, CLOSED) for s in (SYN_SENT, ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK)),
        # ... and an orphan whose peer never sends its FIN
        _t(FIN_WAIT_2, FIN_WAIT_2_TIMEOUT, CLOSED),
    ]
)

# A gap is explained by the cheapest walk: each step costs 1, an abortive step costs as much as a
# long orderly detour, so CLOSE_WAIT -> CLOSED reads as "via LAST_ACK", not as a reset.
_ABORT_COST = 10


@dataclass(frozen=True)
class Step:
    """One state on an explained path and the events that may have led into it.

    `events` holds every event of the table between the previous state and this one (e.g. both
    `close` and `shutdown_wr` lead ESTABLISHED -> FIN_WAIT_1); a caller with more evidence picks.
    The first step of a path has no events. `inferred` marks a state filled in, not observed.
    """

    state: str
    events: tuple[str, ...] = ()
    inferred: bool = False


@dataclass(frozen=True)
class PathCheck:
    """Whether an observed path is a legal walk; when not, which step broke it and why."""

    states: tuple[str, ...]
    steps: tuple[Step, ...]
    illegal: tuple[str, str] | None = None
    reason: str = ""

    @property
    def legal(self) -> bool:
        return self.illegal is None

    def __bool__(self) -> bool:
        return self.legal


@functools.cache
def transitions_from(state: str) -> tuple[Transition, ...]:
    """Every edge leaving `state`, in table order."""
    return tuple(t for (source, _), t in TRANSITIONS.items() if source == state)


@functools.cache
def events_between(source: str, target: str) -> tuple[str, ...]:
    """The events that move `source` directly to `target`, in table order."""
    return tuple(t.event for t in transitions_from(source) if t.target == target)


def walks(source: str, target: str) -> list[list[str]]:
    """Every walk source -> target without repeated states whose inner states are all TRANSIENT.

    Cheapest first (each step costs 1, an abortive one `_ABORT_COST`), ties in name order: the first
    is what `explain_path` assumes; a caller with evidence may pick a later one.
    """
    found: list[tuple[int, list[str]]] = []

    def extend(path: list[str], cost: int) -> None:
        for t in transitions_from(path[-1]):
            step = cost + (_ABORT_COST if t.abortive or t.gives_up else 1)
            if t.target == target:
                found.append((step, [*path, target]))
            elif t.target in TRANSIENT and t.target not in path:
                extend([*path, t.target], step)

    extend([source], 0)
    found.sort()
    unique: list[list[str]] = []
    for _, path in found:
        if path not in unique:
            unique.append(path)
    return unique


def walk_steps(walk: Sequence[str]) -> list[Step]:
    """The steps after the first state of a walk; every state but the last is inferred."""
    return [
        Step(b, events_between(a, b), inferred=i < len(walk) - 2) for i, (a, b) in enumerate(itertools.pairwise(walk))
    ]


def check_path(states: Sequence[str]) -> PathCheck:
    """Check an observed path against the table, filling gaps with transient states.

    Repeated states (the same state observed twice) are one state. An unknown state name or a
    pair with no legal walk makes the path illegal; `illegal` names that pair.
    """
    path = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    unknown = [s for s in path if s not in STATES]
    if unknown:
        return PathCheck(tuple(states), (), (unknown[0], unknown[0]), f"{unknown[0]} is not a TCP state")
    steps: list[Step] = [Step(path[0])] if path else []
    for a, b in itertools.pairwise(path):
        options = walks(a, b)
        if not options:
            return PathCheck(
                tuple(states),
                tuple(steps),
                (a, b),
                f"no transition leads from {a} to {b}, even through states too short-lived to observe",
            )
        steps.extend(walk_steps(options[0]))
    return PathCheck(tuple(states), tuple(steps))


def explain_path(states: Sequence[str]) -> list[Step]:
    """The observed states with the ones passed through in between filled in (marked `inferred`).

    Raises ValueError when the path is not a legal walk (use `check_path` to find out why).
    """
    result = check_path(states)
    if not result.legal:
        raise ValueError(result.reason)
    return list(result.steps)
