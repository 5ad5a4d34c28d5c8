"""How much a student waits: import time, first (cold) experiment, warm experiments, determinism.

    python benchmarks/bench.py [--runs 200] [--scenario-runs 200]

Prints numbers; asserts nothing (targets: import <= 0.3 s, cold <= 0.5 s, warm median <= 20 ms,
0 differing runs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import closekit; print(time.perf_counter() - t)"
    samples = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(5)]
    return statistics.median(samples)


def cold_first_run() -> float:
    code = (
        "import time, closekit; t = time.perf_counter(); closekit.run('close-default'); print(time.perf_counter() - t)"
    )
    samples = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(5)]
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="warm runs of close-default")
    parser.add_argument("--scenario-runs", type=int, default=200, help="runs of every scenario for determinism")
    args = parser.parse_args()

    import closekit

    print(f"import closekit:              {import_time() * 1000:7.1f} ms (median of 5, fresh processes)")
    print(f"first experiment (cold):      {cold_first_run() * 1000:7.1f} ms (median of 5, incl. helper start)")

    closekit.run("close-default")
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        closekit.run("close-default")
        times.append(time.perf_counter() - t)
    times.sort()
    p95 = times[int(len(times) * 0.95) - 1]
    median = statistics.median(times)
    print(f"close-default warm, {args.runs} runs: median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")

    print(f"determinism, {args.scenario_runs} runs of each scenario (runs differing from the first):")
    total = 0
    for name in closekit.scenarios():
        first = closekit.run(name)
        started = time.perf_counter()
        differing = sum(closekit.run(name) != first for _ in range(args.scenario_runs - 1))
        total += differing
        each = (time.perf_counter() - started) / max(1, args.scenario_runs - 1)
        print(f"  {name:24s} differing {differing:4d}   ({each * 1000:7.1f} ms a run)")
    print(f"total differing runs: {total}")


if __name__ == "__main__":
    main()
