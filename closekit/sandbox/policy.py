"""When the next step may start, and when a sync point is met: rules fed with observations, no I/O.

The orchestrator gathers what the kernel and the wire show (a Moment) after every packet, reply
and timer; these functions decide. Keeping them pure lets them be tested on hand-made moments,
without a kernel (h11's sans-IO idea).

- A step may start once no process is still running a foreground step, nothing is in flight on
  the wire (every packet sent so far has been handed over and the receiving kernel has answered
  what it answers at once), and no acknowledgement is owed: a kernel that was handed a FIN or
  data and has not acknowledged it yet will, on its delayed-ACK timer (about 40 ms, at most
  200 ms). Waiting for it makes every run the same: otherwise whether that ACK goes alone or
  rides on the peer's next segment would depend on how fast the next step happens to run.
  Retransmissions and other timers are not waited for; a scenario that wants them has sync points.
- wait_recv_queue(side, n) is met when side's socket holds n unread bytes, or holds some while
  its peer has more to send but has armed its zero-window probe timer: the window is closed.
- wait_acked(side) is met when side's socket has nothing unacknowledged (sock_diag's send queue,
  in which a FIN counts one) and nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from closekit import scenario as sc

ZERO_WINDOW = "zero-window probe"


@dataclass(frozen=True)
class SocketView:
    """One socket as last seen: its state (None before it was ever seen), queues and pending timer."""

    state: str | None = None
    rqueue: int = 0
    wqueue: int = 0
    timer: str | None = None


@dataclass(frozen=True)
class Moment:
    """What the lab knows at one instant of an experiment."""

    busy: frozenset[str] = frozenset()  # processes running a foreground step
    running: frozenset[str] = frozenset()  # processes running any step (background ones too)
    in_flight: int = 0  # packets on the wire, not yet handed over
    acks_owed: int = 0  # receivers that have not yet acknowledged what they were handed
    owed_for: float = 0.0  # seconds the wire has been quiet with an acknowledgement owed
    sockets: Mapping[tuple[str, int], SocketView] = field(default_factory=dict)  # (endpoint, conn); conn 0: listener
    current: int = 1  # the newest connection's number (1 before any)
    segments: tuple[tuple[str, frozenset[str], int], ...] = ()  # (src, flags, window) sent since the step began

    def view(self, endpoint: str, listener: bool = False) -> SocketView:
        return self.sockets.get((endpoint, 0 if listener else self.current), SocketView())


DELAYED_ACK_MAX = 0.25  # the kernel's TCP_DELACK_MAX (200 ms), and some slack


def settled(m: Moment) -> bool:
    """May the next step start?"""
    return not m.busy and m.in_flight == 0 and (m.acks_owed == 0 or m.owed_for > DELAYED_ACK_MAX)


def window_closed(m: Moment, receiver: str) -> bool:
    """The receiver holds unread data and its peer, with data left to send, waits for the window."""
    me, peer = m.view(receiver), m.view(_peer(receiver))
    return me.rqueue > 0 and peer.wqueue > 0 and peer.timer == ZERO_WINDOW and m.in_flight == 0


def met(step: sc.Step, m: Moment, endpoint: str) -> bool:
    """Is the sync point `step` (of a process acting for `endpoint`) met in moment `m`?"""
    if isinstance(step, sc.WaitDone):
        return step.side not in m.running
    if isinstance(step, sc.WaitRecvQueue):
        return m.view(endpoint).rqueue >= step.nbytes or window_closed(m, endpoint)
    if isinstance(step, sc.WaitState):
        return m.view(endpoint, step.listener).state == step.state
    if isinstance(step, sc.WaitAcked):
        view = m.view(endpoint)
        return view.state is not None and view.wqueue == 0 and m.in_flight == 0
    if isinstance(step, sc.WaitSegment):
        wanted = set(step.flags)
        return any(
            src == step.side and wanted <= flags and (step.win is None or win == step.win)
            for src, flags, win in m.segments
        )
    raise TypeError(f"{step.describe()} is not a sync point")


def waited_for(step: sc.Step, m: Moment, endpoint: str) -> str:
    """'waited for X, but Y': what a sync point that timed out was waiting for, and what was seen."""
    if isinstance(step, sc.WaitDone):
        return f"waited for {step.side} to finish its background step, but it was still running"
    if isinstance(step, sc.WaitRecvQueue):
        return (
            f"waited for {step.nbytes} unread bytes (or a closed window), but {step.side}'s receive queue "
            f"held {m.view(endpoint).rqueue}"
        )
    if isinstance(step, sc.WaitState):
        which = "listening socket" if step.listener else "socket"
        return (
            f"waited for {step.side}'s {which} in {step.state}, but it was in {m.view(endpoint, step.listener).state}"
        )
    if isinstance(step, sc.WaitAcked):
        return (
            f"waited for the peer to acknowledge all that {step.side} sent, but {m.view(endpoint).wqueue} bytes "
            "(a FIN counts one) were unacknowledged"
        )
    if isinstance(step, sc.WaitSegment):
        seen = ", ".join(f"{src} {'+'.join(sorted(flags))}" for src, flags, _win in m.segments) or "none"
        win = "" if step.win is None else f" and window {step.win}"
        flags = "+".join(step.flags)
        return f"waited for a segment from {step.side} with {flags}{win}, but the segments sent were: {seen}"
    raise TypeError(f"{step.describe()} is not a sync point")


def _peer(endpoint: str) -> str:
    return "server" if endpoint == "client" else "client"
