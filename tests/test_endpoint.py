"""What an experiment's process records about its calls (closekit.sandbox.endpoint): the time between
two of its lines, by which the helper judges whether a busy machine disturbed the run."""

from __future__ import annotations

import time

from closekit import library
from closekit.sandbox.endpoint import Addresses, Endpoint

HELD = 0.03


def _two_lines(same_command: bool) -> float | None:
    """Two calls with the process held HELD between them, asleep rather than waiting for a CPU (as for
    a page read from disk); the second call's `delayed`."""
    endpoint = Endpoint("client", library.get("close-default"), None, {}, Addresses("10.9.0.1", "10.9.0.2"))  # type: ignore[arg-type]
    endpoint.next_command()
    endpoint.record("recv", {}, lambda: 0)
    time.sleep(HELD)
    if not same_command:
        endpoint.next_command()
    endpoint.record("close", {}, lambda: 0)
    return endpoint.records[-1]["delayed"]


def test_a_line_started_late_after_a_line_handed_over_with_it_says_how_late_whatever_held_it():
    """return-shutdown-read: the client's close() follows its recv() at once in the program; held
    between them by anything, not only by a CPU's wait, its segment and the peer's can change order."""
    delayed = _two_lines(same_command=True)
    assert delayed is not None and delayed >= HELD


def test_the_first_line_of_a_command_counts_only_its_wait_for_a_cpu():
    """The time before a command is the lab's wait for a sync point, not the program's delay."""
    delayed = _two_lines(same_command=False)
    assert delayed is not None and delayed < HELD
