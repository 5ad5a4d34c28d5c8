"""The state machine table: every path the real kernel takes is a legal walk of it, a made-up one is not."""

from __future__ import annotations

import pytest

import closekit
from closekit import tcp
from closekit.trace import StateChange


@pytest.fixture(scope="module")
def traces() -> dict[str, closekit.Trace]:
    return {name: closekit.run(name) for name in closekit.scenarios()}


@pytest.mark.parametrize("name", list(closekit.scenarios()))
@pytest.mark.parametrize("side", ["client", "server"])
def test_every_observed_path_is_legal(traces: dict[str, closekit.Trace], name: str, side: str) -> None:
    trace = traces[name]
    for conn in sorted({e.conn for e in trace.events if isinstance(e, StateChange) and e.side == side}):
        result = tcp.check_path(trace.states(side, conn))  # each socket its own: the listener is conn 0
        assert result.legal, (conn, trace.states(side, conn), result.reason)


def test_time_wait_back_to_established_is_reported() -> None:
    result = tcp.check_path(["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT", "ESTABLISHED"])
    assert not result
    assert result.illegal == ("TIME_WAIT", "ESTABLISHED")
    assert "TIME_WAIT" in result.reason


def test_unknown_state_is_reported() -> None:
    assert tcp.check_path(["ESTABLISHED", "HALF_OPEN"]).illegal == ("HALF_OPEN", "HALF_OPEN")


def test_fin_wait_1_is_inferred_between_established_and_fin_wait_2() -> None:
    steps = tcp.explain_path(["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"])
    assert [(s.state, s.inferred) for s in steps] == [
        ("ESTABLISHED", False),
        ("FIN_WAIT_1", True),
        ("FIN_WAIT_2", False),
        ("TIME_WAIT", False),
    ]
    assert set(steps[1].events) == {tcp.CLOSE, tcp.SHUTDOWN_WR}


def test_passive_closer_passes_last_ack_rather_than_a_reset() -> None:
    steps = tcp.explain_path(["ESTABLISHED", "CLOSE_WAIT", "CLOSED"])
    assert [s.state for s in steps] == ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def test_direct_established_to_closed_is_an_abort_or_giving_up() -> None:
    (_, closed) = tcp.explain_path(["ESTABLISHED", "CLOSED"])
    assert set(closed.events) == {
        tcp.RCV_RST,
        tcp.CLOSE_UNREAD,
        tcp.CLOSE_LINGER_ZERO,
        tcp.LISTENER_CLOSED,
        tcp.RETRIES_RUN_OUT,
    }
    assert all(tcp.TRANSITIONS[("ESTABLISHED", e)].sends in ("", "RST") for e in closed.events)


def test_giving_up_sends_nothing_and_explains_a_gap_only_as_a_last_resort() -> None:
    for t in tcp.TRANSITIONS.values():
        if t.gives_up:
            assert t.target == tcp.CLOSED and t.sends == "" and not t.abortive
    # a silent LAST_ACK side that gives up is a legal path, but LAST_ACK -> CLOSED reads as the ACK first
    assert tcp.events_between(tcp.LAST_ACK, tcp.CLOSED)[0] == tcp.RCV_ACK_OF_FIN
    assert [s.state for s in tcp.explain_path(["CLOSE_WAIT", "CLOSED"])] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def test_explain_path_raises_on_an_illegal_path() -> None:
    with pytest.raises(ValueError, match="TIME_WAIT"):
        tcp.explain_path(["TIME_WAIT", "ESTABLISHED"])


def test_abortive_transitions_send_rst_or_receive_it() -> None:
    for t in tcp.TRANSITIONS.values():
        if t.abortive and t.source != tcp.SYN_RECEIVED:  # a reset half-open connection returns to LISTEN
            assert t.target == tcp.CLOSED
            assert t.sends == ("" if t.event == tcp.RCV_RST else "RST")
