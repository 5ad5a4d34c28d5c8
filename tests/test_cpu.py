"""One CPU per experiment (closekit.sandbox.cpu): the notebook's thread, the helper and the endpoints run an
experiment on one CPU, and are free again afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

import closekit
from closekit import library
from closekit.recorded import load
from closekit.sandbox.client import Lab
from closekit.sandbox.cpu import HERE, one_cpu
from closekit.sandbox.workspace import RUNS, Workspace
from closekit.scenario import Scenario
from closekit.steps import Call

ALLOWED = os.sched_getaffinity(0)
needs_two = pytest.mark.skipif(len(ALLOWED) < 2, reason="one CPU allowed here: there is no CPU to choose")


@pytest.fixture
def free_again():
    yield
    os.sched_setaffinity(0, ALLOWED)


@needs_two
def test_the_block_runs_on_the_wanted_cpu_and_the_mask_comes_back(free_again):
    wanted = max(ALLOWED)
    with one_cpu(wanted) as cpu:
        assert cpu == wanted
        assert os.sched_getaffinity(0) == {wanted}
    assert os.sched_getaffinity(0) == ALLOWED


@needs_two
@pytest.mark.parametrize("wanted", [None, True, -1, "0", [0], 1 << 20])
def test_a_cpu_not_to_be_had_is_the_one_the_thread_is_on(wanted, free_again):
    home = min(ALLOWED)
    os.sched_setaffinity(0, {home})
    os.sched_setaffinity(0, ALLOWED)  # free, but still on `home` until the scheduler moves it
    with one_cpu(wanted) as cpu:
        assert cpu in ALLOWED and os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == ALLOWED


def test_a_thread_held_on_one_cpu_stays_there(free_again):
    only = min(ALLOWED)
    os.sched_setaffinity(0, {only})
    with one_cpu(max(ALLOWED)) as cpu:
        assert cpu == only and os.sched_getaffinity(0) == {only}
    assert os.sched_getaffinity(0) == {only}


AFFINITY = Call(
    "client",
    source=textwrap.dedent("""\
        def affinity(sock):
            import os
            return ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    """),
    function="affinity",
)


@needs_two
@pytest.mark.live
def test_an_experiments_processes_run_on_the_notebooks_cpu_and_the_notebook_is_free_again(free_again):
    lab = Lab()
    lab.start()  # while free: the helper takes the mask of the thread that starts it
    try:
        for home in sorted(ALLOWED)[-2:]:
            os.sched_setaffinity(0, {home})
            trace = closekit.run(Scenario("where", "", steps=(AFFINITY,)), lab=lab)
            assert trace.syscalls("client", "call")[0].result == str(home)
            assert os.sched_getaffinity(0) == {home}  # held there already: left as it was
            os.sched_setaffinity(0, ALLOWED)
            trace = closekit.run(Scenario("where", "", steps=(AFFINITY,)), lab=lab)
            assert int(trace.syscalls("client", "call")[0].result) in ALLOWED  # one CPU, whichever
            assert os.sched_getaffinity(0) == ALLOWED
    finally:
        lab.close()


class _AlwaysDisturbed:
    """Workspace.run's retry rule on its own: every run comes back disturbed; the CPU each was asked for is kept."""

    def __init__(self) -> None:
        self.asked: list[object] = []
        self.trace = replace(load("million-bytes", "a stored trace"), disturbed="the client waited 30 ms for a CPU")

    def _run_once(self, scenario: Scenario, parent: int | None, cpu: object) -> tuple[float, closekit.Trace]:
        self.asked.append(cpu)
        return 0.03, self.trace


def test_a_run_repeated_because_the_machine_was_busy_is_held_on_the_helpers_cpu_not_the_notebooks():
    runs = _AlwaysDisturbed()
    trace = Workspace.run(runs, library.get("million-bytes"), None, cpu=1)  # type: ignore[arg-type]
    assert runs.asked == [1] + [HERE] * (RUNS - 1)  # HERE: where the scheduler has put the helper
    assert trace.disturbed.startswith(runs.trace.disturbed)


REPEATED = """
import json, os, sys
from closekit import library
from closekit.sandbox import core
from closekit.sandbox.workspace import Workspace
core.TOLERANCE = -1.0  # every run is disturbed: each is run again, RUNS times in all
ws = Workspace.open(sys.argv[1])
paths = set()
run_once = ws._run_once
def each(scenario, parent, cpu):
    held_up, trace = run_once(scenario, parent, cpu)
    paths.add(repr((trace.states("client"), trace.states("server"))))
    return held_up, trace
ws._run_once = each
for _ in range(40):
    ws.run(library.get("close-default"), None, cpu=min(os.sched_getaffinity(0)))  # on one CPU, as the notebook's
ws.finish()
print(json.dumps(sorted(paths)))
"""


@needs_two
@pytest.mark.live
@pytest.mark.parametrize("mode", ["netns-loopback", "host"])
def test_a_repeated_run_on_a_loopback_sees_the_states_a_first_run_sees(mode):
    """On a loopback the kernel handles a segment in its sender's context: a look from another CPU can
    catch a socket halfway through one segment (a FIN_WAIT_2 inside a FIN-ACK, in 1 close-default in 20
    to 40 when nothing is held). 40 experiments run 3 times each: the 80 repeats see what the first runs see."""
    if mode == "host" and os.geteuid() != 0:
        pytest.skip("mode host captures packets only as root (CAP_NET_RAW); CI runs this as root")
    out = subprocess.run([sys.executable, "-c", REPEATED, mode], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [repr((["ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT"],
                                            ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]))]  # fmt: skip
