"""Shared fixtures (live traces, each built-in scenario run once per session) and the two lanes.

`bash course.sh test` runs the suite in two lanes. The kernel-free lane (`pytest -n 2 --kernel-free
tests`) runs first: the rules of the engine, queries, checks, rendering and words, on stored and hand-made
traces. In it the lab is switched off, so a test that would start an experiment fails and names the
marker it lacks. The live lane runs the rest: tests marked `live` (experiments on this kernel),
`browser` (Chromium), `nbgrader` (the exercise loop), `vm` (other kernels in qemu), `hub` (a class's
JupyterHub) and `packaging` (a wheel built and installed), and nbval over the notebooks
(`pytest --live-lane`).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import nbval_ipc
import pytest

import closekit
from closekit.sandbox.client import RUN_LOG_ENV
from closekit.trace import Trace

LANES = ("live", "browser", "nbgrader", "vm", "hub", "packaging")
LIVE_FIXTURES = ("live", "verdicts", "traces")  # fixtures that run experiments: a test using one is live
# The live lane's longest files, longest first: seconds of one worker on a 2-core machine, in its quick phase (and
# in a slow phase, when everything runs up to twice as long). xdist (--dist loadfile --no-loadscope-reorder,
# course.sh) hands files out in collection order, so these start first and the many short files fill in beside
# them; otherwise a long file picked up last decides the wall time.
LONGEST_FIRST = (
    "tests/test_kernels.py",  # 60-70 (130): Debian 12's kernel under qemu's emulation runs the whole ledger
    "tests/test_reliability.py",  # 80-85 (105)
    "tests/test_hub.py",  # 50 (65)
    "tests/test_browser.py",  # 50-55 (120)
    "tests/test_packaging.py",  # 40-47 (85)
    "tests/test_book.py",  # 44-65 (70)
    "tests/test_exercises_guide.py",  # 27-36 (52)
    "tests/test_exercises.py",  # 30-35 (66)
    "tests/test_degraded.py",  # 32 (50)
    "tests/test_boundary.py",  # 28-33 (44)
    "tests/test_claims.py",  # 33 (39)
    "tests/test_browser_pictures.py",  # 26 (one JupyterLab page for every chapter)
    "tests/test_regrade.py",  # 10-15
    "tests/test_exercises_answers.py",  # 11-27
)
_traces: dict[str, Trace] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kernel-free", action="store_true", help="only the tests that need no lab, browser or VM")
    parser.addoption("--live-lane", action="store_true", help="all but the kernel-free tests (and any notebook)")


def pytest_configure(config: pytest.Config) -> None:
    # Started as a background job of a shell without job control (nohup, `… &` in a script), the suite inherits
    # SIGINT ignored, and so would every program it starts: a script's Ctrl-C would be lost and JupyterHub's
    # services would outlive its SIGINT-first stop by its timeouts. A caught signal is reset by exec instead.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for lane in LANES:
        config.addinivalue_line("markers", f"{lane}: needs {lane} (not in the kernel-free lane)")
    if config.getoption("--live-lane"):  # each process (xdist's workers too) its own: the notebooks' kernels log there
        log = tempfile.mkdtemp(prefix="closekit-runs-")
        os.environ[RUN_LOG_ENV] = log
        config.add_cleanup(lambda: shutil.rmtree(log, ignore_errors=True))
        config.pluginmanager.register(ShowLastRun(), "closekit-show-last-run")
    config.pluginmanager.register(nbval_ipc, "closekit-nbval-ipc")
    if config.getoption("--kernel-free"):  # for the whole session: session fixtures too

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("the kernel-free lane started an experiment: mark the test live (tests/conftest.py)")

        import closekit.sandbox.client

        closekit.sandbox.client.default_lab = refuse  # type: ignore[assignment]
        closekit.sandbox.client.Lab.__init__ = refuse  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if set(LIVE_FIXTURES) & set(getattr(item, "fixturenames", ())):  # a notebook cell (nbval) has none
            item.add_marker(pytest.mark.live)
    laned = {id(i) for i in items if any(i.get_closest_marker(lane) for lane in LANES)}
    if config.getoption("--kernel-free"):
        kept = [i for i in items if id(i) not in laned]
    elif config.getoption("--live-lane"):  # a notebook's cells (nbval) are not Python tests: they stay
        kept = [i for i in items if id(i) in laned or not isinstance(i, pytest.Function)]
    else:
        return
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = _live_lane_order(kept) if config.getoption("--live-lane") else kept


class ShowLastRun:
    """A notebook's cell that failed (its output differed, most often) is shown with the timed transcript of
    the last experiment its kernel ran: a rare story's every segment, timer and delay, where the stored
    output is clock-free and left them out. (A plugin, not a hook of this file's: those reach only tests/.)"""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" and report.failed and ".ipynb::" in item.nodeid:
            shown = last_run(os.environ.get(RUN_LOG_ENV))
            if shown:
                report.sections.append(("closekit: the last experiment this notebook's kernel ran", shown))


def last_run(log: str | None) -> str:
    """The timed transcript of the last trace logged in `log` (RUN_LOG_ENV) by the process that logged last, or
    "" if there is none."""
    files = sorted(Path(log).glob("*.jsonl"), key=lambda f: f.stat().st_mtime) if log else []
    if not files:
        return ""
    last = files[-1].read_text(encoding="utf-8").splitlines()[-1]
    return Trace.from_dict(json.loads(last)).transcript()


def _live_lane_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """The live lane's files in the order xdist hands them out: the two longest (LONGEST_FIRST) first, then the
    other test files, longest first, each followed by a notebook. A chapter's notebook mostly waits for its
    experiments' timers (lingers, sleeps): beside the other worker's test file it leaves that file a CPU, where
    all at the end (collection order) both workers waited on timers together."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    tests = sorted((f for f in files if not f.endswith(".ipynb")), key=lambda f: rank.get(f, len(rank)))
    notebooks = [f for f in files if f.endswith(".ipynb")]
    order = tests[:2]
    for test, notebook in itertools.zip_longest(tests[2:], notebooks):
        order += [f for f in (test, notebook) if f is not None]
    return [item for name in order for item in files[name]]


@pytest.fixture(scope="session")
def live():
    """live(name) -> the Trace of one run of a built-in scenario on this kernel (cached)."""

    def get(name: str) -> Trace:
        if name not in _traces:
            _traces[name] = closekit.run(name)
        return _traces[name]

    return get


@pytest.fixture(scope="session")
def tun_open_to_users() -> None:
    """Skip, saying why, where an unprivileged user may not open the TUN device, so that its lab has no wire:
    a machine without udev keeps the kernel's 0600 (Debian's udev rule makes it 0666; `bash course.sh test`
    does so as root)."""
    try:
        mode = os.stat("/dev/net/tun").st_mode
    except OSError as e:
        pytest.skip(f"no TUN device here ({e.strerror}): an unprivileged user's lab has no wire")
    if mode & 0o006 != 0o006:
        pytest.skip(f"/dev/net/tun is mode {mode & 0o777:o} here: an unprivileged user's lab has no wire")
