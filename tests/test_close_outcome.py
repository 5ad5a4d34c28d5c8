"""close_outcome: which branch of the kernel's close path a close() took, judged from the trace alone."""

from __future__ import annotations

import pytest
from wire_traces import lingering_close

from closekit.close_outcome import close_outcome
from closekit.errors import CloseKitError


def test_linger_timeout_close_blocked_until_l_linger_ran_out(live) -> None:
    trace = live("linger-timeout")
    outcome = close_outcome(trace)
    assert outcome is not None and outcome.lingered
    assert any("when l_linger ran out" in line for line in outcome.evidence)


def test_close_index_picks_among_several_closes(live) -> None:
    trace = live("close-shared")
    assert [close_outcome(trace, i).side for i in range(3)] == ["server", "server-child", "client"]
    assert close_outcome(trace, 1).branch == "fin"
    assert close_outcome(trace, -1).side == "client"
    with pytest.raises(CloseKitError, match="out of range"):
        close_outcome(trace, 3)
    with pytest.raises(CloseKitError, match="its close\\(\\) calls, in order, are by: server, server-child, client"):
        close_outcome(trace, side="nobody")


def test_closing_the_listener_counts_among_the_closes(live) -> None:
    trace = live("listener-close-queued")
    outcome = close_outcome(trace)
    assert outcome is not None and outcome.branch == "listener"
    assert "the listening socket closed" in outcome.evidence


def test_a_lingering_close_was_woken_by_the_ack_of_its_resent_fin() -> None:
    """The first FIN was dropped: the ACK of its retransmission, 0.26 s later, ended the wait."""
    outcome = close_outcome(lingering_close())
    assert outcome is not None and outcome.lingered
    assert outcome.evidence[-1].endswith("returned 0 after the peer acknowledged data and FIN")
    assert outcome.words[-1].startswith("close() waited ≈ 1 s")


def test_a_lingering_close_whose_fin_was_not_acked_in_time_ran_out() -> None:
    outcome = close_outcome(lingering_close(close_duration=0.1))
    assert outcome is not None and outcome.lingered
    assert outcome.evidence[-1].endswith("when l_linger ran out, its FIN still unacknowledged")


def test_no_close_gives_none_and_a_trace_is_judged_from_its_evidence_only(live) -> None:
    trace = live("close-default")
    bare = type(trace)(trace.scenario, trace.kernel, trace.mode, {}, tuple(e for e in trace.events
                       if getattr(e, "call", None) != "close"))  # fmt: skip
    assert close_outcome(bare) is None
    assert close_outcome(trace).branch == "fin"
