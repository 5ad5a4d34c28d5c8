"""What an experiment's process records about its calls (closekit.sandbox.endpoint): how long after its
program would have made a call it did, by which the helper judges whether a busy machine disturbed the run."""

from __future__ import annotations

import time

from closekit import library
from closekit.sandbox.endpoint import Addresses, Endpoint

HELD = 0.03


def _endpoint() -> Endpoint:
    return Endpoint("client", library.get("close-default"), None, {}, Addresses("10.9.0.1", "10.9.0.2"))  # type: ignore[arg-type]


def _second_line_delayed(since: str | None) -> float | None:
    """Two calls with the process held HELD between them, asleep rather than waiting for a CPU (as for
    a page read from disk); the second call's `delayed`. `since`: None, handed over with the first;
    "before" or "after" the hold, a new command whose lab wait ended then."""
    endpoint = _endpoint()
    endpoint.next_command(time.monotonic())
    endpoint.record("recv", {}, lambda: 0)
    ended_before = time.monotonic()
    time.sleep(HELD)
    if since is not None:
        endpoint.next_command(ended_before if since == "before" else time.monotonic())
    endpoint.record("close", {}, lambda: 0)
    return endpoint.records[-1]["delayed"]


def test_a_line_started_late_after_a_line_handed_over_with_it_says_how_late_whatever_held_it():
    """return-shutdown-read: the client's close() follows its recv() at once in the program; held
    between them by anything, not only by a CPU's wait, its segment and the peer's can change order."""
    delayed = _second_line_delayed(since=None)
    assert delayed is not None and delayed >= HELD


def test_the_first_line_of_a_command_counts_from_the_end_of_the_labs_wait():
    """The time before a command is the lab's wait for a sync point, not the program's delay."""
    delayed = _second_line_delayed(since="after")
    assert delayed is not None and delayed < HELD


def test_a_command_handed_over_late_after_its_wait_ended_says_how_late():
    """linger-timeout beside two CPU-bound processes: the sync point before the server's close() was met
    when its recv() returned, but the line came late and the delayed ACK went alone (once in a suite)."""
    delayed = _second_line_delayed(since="before")
    assert delayed is not None and delayed >= HELD


def test_a_line_after_a_call_that_blocked_past_the_labs_wait_counts_from_that_calls_return():
    """A line handed over while the process still blocks in its previous one starts when that returns."""
    endpoint = _endpoint()
    endpoint.next_command(time.monotonic())
    wait_ended = time.monotonic()
    endpoint.record("recv", {}, lambda: time.sleep(HELD) or 0)  # blocks past the lab's wait for the next line
    endpoint.next_command(wait_ended)
    endpoint.record("close", {}, lambda: 0)
    delayed = endpoint.records[-1]["delayed"]
    assert delayed is not None and delayed < HELD


def test_set_up_calls_have_no_delay_to_tell():
    endpoint = _endpoint()
    endpoint.next_command(None)
    endpoint.record("listen", {}, lambda: 0)
    assert endpoint.records[-1]["delayed"] is None
