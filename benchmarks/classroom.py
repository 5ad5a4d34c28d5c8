"""A class at work on the hub of deploy/, measured: how many students one machine holds.

    sudo .venv/bin/python benchmarks/classroom.py --students 20      # root: it makes real accounts

What it does, through the same APIs as a browser (deploy/hubclient.py), on a hub started the documented way
(`bash course.sh hub`, deploy/localhub.py) with N students and an instructor (real Unix accounts):

1. an idle run: one student alone runs the assignment's cells (the instructor's answers typed in), the
   reference for what every cell should say;
2. the instructor generates and releases the assignment;
3. all N students log in at once (login form -> server spawned -> server answers: login-to-running);
4. all fetch it, type the answers into the answer cells, open a kernel and run every cell in order, at once
   (experiments and predictions); each cell's output is compared with the idle run's after tests/nbval.cfg's
   sanitizers (what a stored notebook is compared by), and its latency kept;
5. memory and CPU per student while every kernel is alive: PSS (/proc/PID/smaps_rollup) and CPU seconds so
   far (/proc/PID/stat) of the server, of the kernel, and of closekit's own processes (the lab's helper, its
   reaper and endpoints);
6. all submit; the instructor collects and autogrades every submission (Formgrader's API).

It prints one report (and --json FILE writes it): p50/p95 of login-to-running and of the experiment cells'
latency at work, failures, cells whose words differ from the idle run, memory per student, autograde time, and
the machine's load before and during (other work on the machine shows there). Not a test: no timing is
asserted; see deploy/README.md for the figures and the capacity table made from them.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "deploy"), str(REPO / "benchmarks")]
from bench import nbval_sanitizer  # noqa: E402
from hubclient import Kernel, Person  # noqa: E402
from localhub import LocalHub, pids_of  # noqa: E402

COURSE = "ckload"
INSTRUCTOR = "ckload-teacher"
EXPERIMENTS = ("-run",)  # the grade ids of the cells that run experiments (q1-run, code-run …)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def solutions(assignment: str) -> dict[str, str]:
    """The instructor's answer cells (grade id -> code): what a student who got everything right types."""
    notebook = json.loads((REPO / "exercises" / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    answers = {}
    for cell in notebook["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            source = "".join(cell["source"])
            answers[meta["grade_id"]] = "\n".join(
                line
                for line in source.splitlines()
                if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
            )
    return answers


def work(person: Person, path: str, answers: dict[str, str], sanitize) -> tuple[list[dict], Kernel]:
    """The student's session: type the answers, save, open a kernel, run every code cell in order. The kernel
    is left running (memory is measured with every kernel alive): the caller closes it."""
    notebook = person.notebook(path)
    for cell in notebook["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    person.save(path, notebook)
    kernel = person.kernel(path)
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        reply = kernel.run("".join(cell["source"]))
        cells.append({"id": grade_id, "seconds": reply.seconds, "error": reply.error, "words": sanitize(reply.text)})
    return cells, kernel


def usage(name: str) -> dict[str, dict[str, float]]:
    """One student's processes, split: server, kernels, closekit's own (helper, reaper, endpoints): MiB of PSS,
    and CPU seconds used so far (their own and their reaped children's)."""
    tick = os.sysconf("SC_CLK_TCK")
    split = {kind: {"pss_mib": 0.0, "cpu_s": 0.0} for kind in ("server", "kernel", "closekit")}
    for pid in pids_of(pwd.getpwnam(name).pw_uid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        pss = next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0) / 1024
        kind = "server" if "jupyterhub-singleuser" in cmdline else "kernel" if "ipykernel" in cmdline else "closekit"
        split[kind]["pss_mib"] += pss
        split[kind]["cpu_s"] += sum(int(v) for v in stat[11:15]) / tick  # utime stime cutime cstime
    return split


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--students", type=int, default=10)
    p.add_argument("--assignment", default="ex01-close")
    p.add_argument("--prefix", default=os.environ.get("CLOSEKIT_HUB_PREFIX", "/opt/closekit"))
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("it makes real Unix accounts and runs a hub: run it as root")
    students = [f"ckload-s{i:02d}" for i in range(1, args.students + 1)]
    roster = [(INSTRUCTOR, "instructor"), *((s, "student") for s in students)]
    answers = solutions(args.assignment)
    sanitize = nbval_sanitizer()
    path = f"closekit/exercises/student/{args.assignment}/{args.assignment}.ipynb"
    report: dict = {"students": args.students, "assignment": args.assignment, "cpus": os.cpu_count(),
                    "load_before": loadavg()}  # fmt: skip
    loads: list[str] = []
    stop = threading.Event()

    def watch_load() -> None:
        while not stop.wait(5):
            loads.append(loadavg())

    threading.Thread(target=watch_load, daemon=True).start()
    with LocalHub(roster, COURSE, Path(args.prefix), start_timeout=600) as hub:
        teacher = hub.person(INSTRUCTOR)
        teacher.formgrader(f"assignment/{args.assignment}/assign")
        teacher.formgrader(f"assignment/{args.assignment}/release")

        # 1. the idle run: the first student alone
        first = hub.person(students[0])
        first.assignments("fetch", COURSE, args.assignment)
        idle, kernel = work(first, path, answers, sanitize)
        kernel.close()
        reference = {c["id"]: c["words"] for c in idle}
        idle_experiments = [c for c in idle if c["id"].endswith(EXPERIMENTS)]
        report["idle_experiment_cell_s"] = {c["id"]: round(c["seconds"], 3) for c in idle_experiments}

        # 3. everyone else logs in at once (the first is already in)
        others = students[1:]
        started = time.monotonic()

        def login(name: str) -> float:
            hub.person(name, timeout=600)
            return time.monotonic() - started

        with ThreadPoolExecutor(len(others) or 1) as pool:
            login_s = list(pool.map(login, others))
        report["login_to_running_s"] = {
            "p50": percentile(login_s, 0.5),
            "p95": percentile(login_s, 0.95),
            "max": max(login_s, default=float("nan")),
        }

        # 4. everyone at work at once
        for name in others:
            hub.person(name).assignments("fetch", COURSE, args.assignment)
        failures: list[str] = []
        results: dict[str, list[dict]] = {}
        kernels: list[Kernel] = []

        def session(name: str) -> None:
            try:
                results[name], kernel = work(hub.person(name), path, answers, sanitize)
                kernels.append(kernel)
            except Exception as e:  # a failure is counted and reported, not raised
                failures.append(f"{name}: {e}")

        at_work = time.monotonic()
        with ThreadPoolExecutor(len(others) or 1) as pool:
            list(pool.map(session, others))
        report["class_at_work_s"] = round(time.monotonic() - at_work, 1)
        cells = [c for cs in results.values() for c in cs]
        experiment = [c["seconds"] for c in cells if c["id"].endswith(EXPERIMENTS)]
        report["experiment_cell_s"] = {
            "p50": percentile(experiment, 0.5),
            "p95": percentile(experiment, 0.95),
            "max": max(experiment, default=float("nan")),
            "count": len(experiment),
        }
        by_cell = {}
        for grade_id in dict.fromkeys(c["id"] for c in cells if c["id"].endswith(EXPERIMENTS)):
            seconds = [c["seconds"] for c in cells if c["id"] == grade_id]
            by_cell[grade_id] = {"p50": percentile(seconds, 0.5), "p95": percentile(seconds, 0.95)}
        report["experiment_cell_s_by_cell"] = by_cell
        report["cells"] = len(cells)
        failures += [f"{n}: {c['id']}: {c['error']}" for n, cs in results.items() for c in cs if c["error"]]
        report["failures"] = failures
        differ = [f"{n}: {c['id']}" for n, cs in results.items() for c in cs if c["words"] != reference.get(c["id"])]
        report["words_differ_from_idle"] = differ

        # 5. memory and CPU while every kernel is alive
        per_student = [usage(name) for name in others]
        for measure in ("pss_mib", "cpu_s"):
            report[f"{measure}_per_student"] = {
                kind: {
                    "mean": statistics.mean(u[kind][measure] for u in per_student),
                    "max": max(u[kind][measure] for u in per_student),
                }
                for kind in ("server", "kernel", "closekit")
            }
        for kernel in kernels:
            kernel.close()

        # 6. hand in; the instructor collects and autogrades everything
        for name in students:
            hub.person(name).assignments("submit", COURSE, args.assignment)
        teacher.formgrader(f"assignment/{args.assignment}/collect")
        graded = time.monotonic()
        autograde_failures = []
        for name in students:
            answer = teacher.formgrader(f"submission/{args.assignment}/{name}/autograde")
            if not answer.get("success"):
                autograde_failures.append(name)
        report["autograde_s"] = round(time.monotonic() - graded, 1)
        report["autograde_failures"] = autograde_failures
        scores = teacher.get(f"formgrader/api/submissions/{args.assignment}").json()
        report["scores"] = sorted({f"{s['score']}/{s['max_score']}" for s in scores})
    stop.set()
    report["load_during"] = loads
    text = json.dumps(report, indent=1, default=float)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
