"""Where the machine allows less, every notebook still runs and says what it could not do.

The notebooks are executed (nbval's lax mode: every cell must run without an error; outputs are
not compared, since a fallback mode sees less) once per fallback sandbox mode and once with no
graphviz `dot` program on PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

HERE = Path(__file__).resolve().parent  # nbval_ipc, the plugin that keeps the kernels off TCP ports
REPO = HERE.parent
NOTEBOOKS = sorted(str(p) for p in (REPO / "notebooks").glob("0*.ipynb"))


def _nbval_lax(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "-p", "nbval_ipc", "-o", "addopts=", "--rootdir", str(tmp_path), *NOTEBOOKS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**env, "PYTHONPATH": os.pathsep.join(filter(None, (str(HERE), env.get("PYTHONPATH"))))},
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """The three runs of every chapter (two fallback modes, no dot), each in its own folder, environment and
    kernels, side by side: they mostly wait for their experiments' timers. The two host modes share the
    host's loopback, and mode host's capture queues only its own experiment's segments (before its filter,
    the other's bulk transfers overflowed its queue: "the packet capture dropped segments"). Which run ->
    (its exit status, the end of its output)."""
    no_dot = tmp_path_factory.mktemp("no-dot")  # python and its tools, but no dot
    environments = {
        "no-dot": {**os.environ, "PATH": f"{Path(sys.executable).parent}:{no_dot}"},
        "host": {**os.environ, "CLOSEKIT_SANDBOX": "host"},
        "host-nocapture": {**os.environ, "CLOSEKIT_SANDBOX": "host-nocapture"},
    }
    started: dict[str, subprocess.Popen[str]] = {}
    done = {}

    def start(name: str) -> None:
        started[name] = _nbval_lax(tmp_path_factory.mktemp(name), environments[name])

    def finish(name: str) -> None:
        out, _ = started[name].communicate(timeout=600)
        done[name] = (started[name].returncode, out[-3000:])

    try:
        for name in environments:
            start(name)
        for name in environments:
            finish(name)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


@pytest.mark.parametrize("mode", ["host", "host-nocapture"])
def test_every_chapter_runs_in_a_fallback_mode(mode, runs):
    returncode, out = runs[mode]
    assert returncode == 0, out


def test_every_chapter_runs_without_the_dot_program(runs):
    returncode, out = runs["no-dot"]
    assert returncode == 0, out


def test_a_diagram_without_dot_shows_how_to_get_it(tmp_path):
    code = (  # the state diagram needs dot; the time-sequence diagram is drawn in Python and still shows
        "import closekit; from closekit.render import sequence_diagram, state_diagram; "
        "t = closekit.run('linger-zero'); "
        "b, _ = state_diagram(t, 'client')._repr_mimebundle_(); print(sorted(b)); print(b['text/plain'][:60]); "
        "s, _ = sequence_diagram(t)._repr_mimebundle_(); print(sorted(s))"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{tmp_path}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0] == "['text/plain']", out.stderr
    assert "the graphviz 'dot' program is not installed" in lines[1]
    assert lines[2] == "['image/png', 'text/plain']"


def test_doctor_says_what_is_missing_and_how_to_get_it(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{tmp_path}", "CLOSEKIT_SANDBOX": "host-nocapture"}
    out = subprocess.run([sys.executable, "-m", "closekit", "doctor"], capture_output=True, text=True, env=env)
    assert "--  graphviz dot binary: not found on PATH" in out.stdout
    assert "apt-get install graphviz" in out.stdout
    assert "experiments will run in mode: host-nocapture" in out.stdout
    assert "--  user + network namespaces" in out.stdout
