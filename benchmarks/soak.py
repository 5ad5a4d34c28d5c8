"""Soak the lab: many runs of every scenario, injected faults, fuzzed scenarios, leak counts.

    python benchmarks/soak.py [--runs 500] [--fuzz 300]

Prints: runs, differing runs, leaked fds/processes/threads, faults injected and survived, fuzz
cases tried. Takes several minutes with the defaults (the sleeping scenarios dominate); it is
not part of the default test run.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import time

import closekit
from closekit import steps as s
from closekit.sandbox.client import Lab

FAST_LIMIT = 0.2  # scenarios shorter than this get the full run count; slower ones a tenth


def counts(lab: Lab) -> tuple[int, int, int, int]:
    stats = lab.stats()
    return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")), stats["fds"], stats["children"]


def soak_determinism(lab: Lab, runs: int) -> tuple[int, int]:
    total = differing = 0
    for name in closekit.scenarios():
        first = closekit.run(name, lab=lab)
        n = runs if first.events[-1].t < FAST_LIMIT else max(1, runs // 10)
        bad = sum(closekit.run(name, lab=lab) != first for _ in range(n))
        print(f"  {name:24s} runs {n:4d}  differing {bad}")
        total, differing = total + n, differing + bad
    return total, differing


def inject_faults(lab: Lab, rounds: int) -> tuple[int, int]:
    """Each fault must end in a closekit error, after which the next experiment works."""
    never = closekit.Scenario("never", "", steps=(s.wait_recv_queue("server", 1),), sync_timeout=0.1)
    stuck = closekit.Scenario("stuck", "", steps=(s.recv("client"),), time_limit=0.3)
    unread = closekit.Scenario("unread", "", steps=(s.send("client", 10_000_000),), time_limit=0.3)
    faults = [
        lambda: closekit.run(never, lab=lab),
        lambda: closekit.run(stuck, lab=lab),
        lambda: closekit.run(unread, lab=lab),
        lambda: (os.kill(lab.pid, signal.SIGKILL), closekit.run("close-default", lab=lab)),
    ]
    injected = survived = 0
    for _ in range(rounds):
        for fault in faults:
            injected += 1
            try:
                fault()
            except closekit.CloseKitError:
                pass
            if closekit.run("close-unread", lab=lab).first("RST") is not None:
                survived += 1
    return injected, survived


def fuzz(lab: Lab, cases: int) -> tuple[int, int]:
    """Random step lists: each must run or fail with a closekit error, never anything else."""
    from closekit.scenario import STEP_TYPES

    rng = random.Random(1)
    odd = [-5, 0, 1, 7, 10**9, 0.5, "x", None, "SHUT_WR", "TIME_WAIT", ("FIN",)]
    tried = bad = 0
    for _ in range(cases):
        steps = []
        for _ in range(rng.randint(1, 4)):
            cls = rng.choice(list(STEP_TYPES.values()))
            fields = [f for f in cls.__dataclass_fields__ if f not in ("side", "background")]
            kwargs = {f: rng.choice(odd) for f in fields if rng.random() < 0.5}
            steps.append(cls(rng.choice(["client", "server", "ghost"]), **kwargs))
        tried += 1
        try:
            closekit.run(closekit.Scenario("fuzz", "", steps=tuple(steps), sync_timeout=0.1, time_limit=0.5), lab=lab)
        except closekit.CloseKitError:
            pass
        except Exception as e:
            bad += 1
            print(f"  escaped: {type(e).__name__}: {e}")
    return tried, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--fuzz", type=int, default=300)
    parser.add_argument("--fault-rounds", type=int, default=10)
    args = parser.parse_args()
    started = time.monotonic()
    lab = Lab()
    closekit.run("close-default", lab=lab)
    before = counts(lab)
    print(f"determinism ({args.runs} runs of each fast scenario, {max(1, args.runs // 10)} of each slow one):")
    runs, differing = soak_determinism(lab, args.runs)
    injected, survived = inject_faults(lab, args.fault_rounds)
    tried, escaped = fuzz(lab, args.fuzz)
    closekit.run("close-default", lab=lab)
    after = counts(lab)
    lab.close()
    print(f"runs: {runs}, differing runs: {differing}")
    print(
        f"leaked: parent fds {after[0] - before[0]}, parent threads {after[1] - before[1]}, "
        f"helper fds {after[2] - before[2]}, helper children {after[3] - before[3]}"
    )
    print(f"faults injected: {injected}, survived: {survived}")
    print(f"fuzz cases tried: {tried}, escaped as non-closekit errors: {escaped}")
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
