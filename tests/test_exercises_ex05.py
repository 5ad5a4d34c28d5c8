"""Exercises 5 (what the peer sees): predictions judged by the live kernel, and a release without solutions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closekit.exercises import catalog

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "ex05-what-the-peer-sees"


@pytest.mark.parametrize(
    ("build", "right", "wrong", "seen"),
    [
        (catalog.epoll_after_peer_close, "A", "B", "EPOLLRDHUP"),
        (catalog.first_write_after_peer_close, "A", "B", "returned 10"),
        (catalog.second_write_after_reset, "C", "B", "SIGPIPE"),
    ],
)
def test_a_chapter_5_prediction_is_judged_by_what_the_kernel_did(build, right, wrong, seen):
    for prediction, correct in ((right, True), (wrong, False)):
        ex = build()
        ex.answer(prediction)
        result = ex.run()
        assert result.correct is correct and result.truth == right, result.message
        assert seen in result.message and "chapter 5" in result.message
        assert result.score == (1.0 if correct else 0.0)


def test_nbgrader_releases_exercises_5_without_solutions(tmp_path):
    course = tmp_path / "course"
    ignore = shutil.ignore_patterns("student", "exchange", "submitted", "autograded", "feedback", "gradebook.db")
    shutil.copytree(ROOT / "exercises", course, ignore=ignore)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(  # nbgrader runs `alembic` from the venv: put its bin/ first
        [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT],
        cwd=course,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    released = (course / "student" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "END SOLUTION", 'q1.answer(\\"A\\")', 'q2.answer(\\"A\\")', 'q3.answer(\\"C\\")'):
        assert secret not in released
    student = json.loads(released)
    assert not any(c.get("outputs") for c in student["cells"])
    tests = [c["metadata"]["nbgrader"] for c in student["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert [(t["grade_id"], t["points"]) for t in tests] == [("q1-test", 1), ("q2-test", 1), ("q3-test", 1)]

    # the untouched student version runs top to bottom: each question says "not answered yet", and only
    # the test cells fail
    import nbclient
    import nbformat

    notebook = nbformat.reads(released, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    errors = [o["ename"] for c in notebook.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == ["AssertionError"] * 3
    runs = [c for c in notebook.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").endswith("-run")]
    assert len(runs) == 3 and all("not answered yet" in json.dumps(c["outputs"]) for c in runs)
