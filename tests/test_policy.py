"""The lab's settle and sync rules, on hand-made moments: no kernel, no processes (h11's sans-IO idea)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from closekit import steps as s
from closekit.sandbox.orchestrator import Experiment
from closekit.sandbox.packets import Packet
from closekit.sandbox.policy import DELAYED_ACK_MAX, Moment, SocketView, met, settled, waited_for
from closekit.trace import StateChange


def moment(**kwargs) -> Moment:
    return Moment(**kwargs)


def sockets(**views: SocketView) -> dict[tuple[str, int], SocketView]:
    return {(name, 1): view for name, view in views.items()}


def test_a_step_starts_only_when_nothing_runs_nothing_flies_and_no_ack_is_owed():
    assert settled(moment())
    assert not settled(moment(busy=frozenset({"client"})))
    assert not settled(moment(in_flight=1))
    assert not settled(moment(acks_owed=1, owed_for=0.01))  # the peer's delayed ACK is still to come
    assert settled(moment(acks_owed=1, owed_for=DELAYED_ACK_MAX + 0.01))  # it never came: go on
    assert settled(moment(running=frozenset({"server"})))  # a background step does not hold the timeline


def test_wait_recv_queue_is_met_by_the_bytes_or_by_a_closed_window():
    step = s.wait_recv_queue("server", 100)
    assert not met(step, moment(sockets=sockets(server=SocketView("ESTABLISHED", rqueue=99))), "server")
    assert met(step, moment(sockets=sockets(server=SocketView("ESTABLISHED", rqueue=100))), "server")
    step = s.wait_recv_queue("server", 20000)  # more than the receiver's buffer takes
    full = sockets(
        server=SocketView("ESTABLISHED", rqueue=4096),
        client=SocketView("ESTABLISHED", wqueue=15000, timer="zero-window probe"),
    )
    assert met(step, moment(sockets=full), "server")
    assert not met(step, moment(sockets=full, in_flight=1), "server")  # something may still arrive
    retransmitting = dict(full)
    retransmitting[("client", 1)] = SocketView("ESTABLISHED", wqueue=15000, timer="retransmit")
    assert not met(step, moment(sockets=retransmitting), "server")  # the window is not known to be shut


def test_wait_state_reads_the_current_connection_or_the_listener():
    views = {("server", 0): SocketView("LISTEN"), ("server", 1): SocketView("SYN_RECEIVED"), ("server", 2):
             SocketView("ESTABLISHED")}  # fmt: skip
    assert met(s.wait_state("server", "ESTABLISHED"), moment(sockets=views, current=2), "server")
    assert not met(s.wait_state("server", "ESTABLISHED"), moment(sockets=views, current=1), "server")
    assert met(s.wait_state("server", "LISTEN", listener=True), moment(sockets=views, current=2), "server")


def test_wait_acked_needs_an_empty_send_queue_and_a_quiet_wire():
    step = s.wait_acked("client")
    assert not met(step, moment(sockets=sockets(client=SocketView("FIN_WAIT_1", wqueue=1))), "client")
    assert met(step, moment(sockets=sockets(client=SocketView("FIN_WAIT_2", wqueue=0))), "client")
    assert not met(step, moment(sockets=sockets(client=SocketView("FIN_WAIT_2")), in_flight=1), "client")
    assert not met(step, moment(), "client")  # a socket never seen has acknowledged nothing


def test_wait_segment_matches_flags_and_window_of_the_named_sender():
    seen = (("client", frozenset({"FIN", "ACK"}), 64512), ("server", frozenset({"ACK"}), 0))
    assert met(s.wait_segment("client", ("FIN",)), moment(segments=seen), "client")
    assert not met(s.wait_segment("server", ("FIN",)), moment(segments=seen), "server")
    assert met(s.wait_segment("server", ("ACK",), win=0), moment(segments=seen), "server")
    assert not met(s.wait_segment("server", ("ACK",), win=1), moment(segments=seen), "server")


def test_wait_done_is_met_when_the_side_runs_nothing():
    assert met(s.wait_done("client"), moment(running=frozenset({"server"})), "client")
    assert not met(s.wait_done("client"), moment(running=frozenset({"client"})), "client")


@pytest.mark.parametrize(
    ("step", "seen", "expected"),
    [
        (s.wait_recv_queue("server", 10), moment(sockets=sockets(server=SocketView("ESTABLISHED", rqueue=2))),
         "waited for 10 unread bytes (or a closed window), but server's receive queue held 2"),
        (s.wait_state("client", "TIME_WAIT"), moment(sockets=sockets(client=SocketView("FIN_WAIT_2"))),
         "waited for client's socket in TIME_WAIT, but it was in FIN_WAIT_2"),
        (s.wait_acked("client"), moment(sockets=sockets(client=SocketView("FIN_WAIT_1", wqueue=1))),
         "but 1 bytes (a FIN counts one) were unacknowledged"),
        (s.wait_segment("server", ("RST",)), moment(segments=(("client", frozenset({"FIN"}), 1),)),
         "but the segments sent were: client FIN"),
    ],
)  # fmt: skip
def test_a_sync_point_that_times_out_says_what_it_waited_for_and_what_it_saw(step, seen, expected):
    assert expected in waited_for(step, seen, step.side)


# ---- dating a state a look found before the lab took the segment that brought it -----------------
def _experiment_with(state: str, seen_at: float) -> Experiment:
    """An experiment whose look found the server in `state` at `seen_at`, not knowing why (a look while
    shutdown() ran, before the lab had taken the FIN it sent)."""
    experiment = Experiment(scenario=None, env=SimpleNamespace(wired=False), t0=0.0)  # type: ignore[arg-type]
    experiment.states.append((0, StateChange(t=seen_at, side="server", state=state, conn=1)))
    experiment.undated[("server", 1)] = 0
    return experiment


def _sent(flags: tuple[str, ...], t: float) -> Packet:
    return Packet(t, "server", 5000, 40000, flags, 1, 1, 0, 65535, None, b"", conn=1)


@pytest.mark.parametrize(
    ("state", "segments", "dated"),
    [
        ("FIN_WAIT_1", [(("FIN", "ACK"), 0.0120)], 0.0120),  # the FIN the call sent brought it
        ("FIN_WAIT_1", [(("ACK",), 0.0110), (("FIN", "ACK"), 0.0120)], 0.0120),  # an earlier ACK did not
        ("FIN_WAIT_1", [(("FIN", "ACK"), 0.0130)], 0.0125),  # a FIN sent after the look: not its cause
        ("ESTABLISHED", [(("FIN", "ACK"), 0.0120)], 0.0125),  # a FIN does not bring ESTABLISHED
        ("CLOSED", [(("RST", "ACK"), 0.0120)], 0.0120),
    ],
)
def test_a_state_seen_before_its_segment_was_taken_is_dated_by_that_segment(state, segments, dated):
    experiment = _experiment_with(state, seen_at=0.0125)
    for flags, t in segments:
        experiment._date_by(_sent(flags, t))
    assert experiment.states[0][1].t == dated


def _arrived_at_server(flags: tuple[str, ...], arrived: float) -> Packet:
    return Packet(arrived - 0.0001, "client", 40000, 5000, flags, 1, 1, 0, 65535, None, b"", arrived=arrived, conn=1)


@pytest.mark.parametrize(
    ("state", "arrivals", "dated"),
    [
        ("CLOSE_WAIT", [(("FIN", "PSH", "ACK"), 0.030), (("ACK",), 0.031)], 0.030),  # the FIN waited in the backlog
        ("CLOSE_WAIT", [(("FIN", "ACK"), 0.010)], None),  # it came before the last state seen: not this one's cause
        ("CLOSE_WAIT", [(("ACK",), 0.030)], None),  # an ACK brings no CLOSE_WAIT
        ("CLOSED", [(("RST",), 0.030)], 0.030),
        ("LAST_ACK", [(("FIN", "ACK"), 0.030)], None),  # the server's own close() brings LAST_ACK
    ],
)
def test_a_state_that_appeared_after_its_segment_arrived_is_dated_by_the_arrival(state, arrivals, dated):
    experiment = Experiment(scenario=None, env=SimpleNamespace(wired=False), t0=0.0)  # type: ignore[arg-type]
    experiment.states.append((0, StateChange(t=0.020, side="server", state="ESTABLISHED", conn=1)))
    experiment.wire = SimpleNamespace(packets=[_arrived_at_server(f, t) for f, t in arrivals])  # type: ignore[assignment]
    assert experiment._arrival_that_brought("server", 1, state) == dated
