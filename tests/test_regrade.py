"""Grading the student's kernel cannot reach (issue 20): `python -m closekit.exercises.regrade` judges a
submission in a fresh interpreter, from the instructor's cells and the answers read as data, never
running a student's cell. Under nbgrader's autograde an answer cell that patches closekit's result
classes makes a wrong answer pass its grade cell; regraded, it scores what the kernel says.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closekit.exercises import jupyter_setup
from closekit.exercises.regrade import read_answer, regrade

pytestmark = pytest.mark.nbgrader

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "exercises" / "solutions"
STUDENT = REPO / "exercises" / "student"
# A wrong prediction (ex02's q1 is A), and a patch that makes every prediction "correct" in its kernel.
PATCHED = (
    "import closekit.exercises.results as results\n"
    "results.PredictionResult.correct = property(lambda self: True)\n"
    'q1.answer("B")\n'
)


def submission(tmp: Path, assignment: str, answers: dict[str, str], folder: str | None = None) -> Path:
    """The released notebook of `assignment` with `answers` (grade_id -> code) in its answer cells."""
    nb = json.loads((STUDENT / assignment / f"{assignment}.ipynb").read_text())
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    target = tmp / (folder or assignment) / f"{assignment}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(nb))
    return target


def scores(assignment: str, notebook: Path) -> dict[str, float]:
    result = regrade(SOLUTIONS / assignment / f"{assignment}.ipynb", notebook)
    return {g.grade_id: g.points for g in result.graded}


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("ex03-linger", {"q1-test": 1, "s2-test": 2, "s3-test": 2}),
        ("ex01-close", {"q1-test": 1, "q2-test": 1, "code-test-slow": 1, "code-test-banner": 1, "code-test-reset": 1}),
    ],
)
def test_the_solutions_regrade_to_full_points(assignment, expected):
    notebook = SOLUTIONS / assignment / f"{assignment}.ipynb"
    assert scores(assignment, notebook) == expected


def test_an_unanswered_notebook_regrades_to_nothing_and_says_why(tmp_path):
    result = regrade(
        SOLUTIONS / "ex02-shutdown" / "ex02-shutdown.ipynb", STUDENT / "ex02-shutdown" / "ex02-shutdown.ipynb"
    )
    assert [(g.grade_id, g.points) for g in result.graded] == [("q1-test", 0), ("q2-test", 0)]
    assert all(g.message.startswith("not answered yet") for g in result.graded)


def test_a_wrong_prediction_regrades_to_zero_with_what_the_kernel_did(tmp_path):
    notebook = submission(tmp_path, "ex02-shutdown", {"q1-answer": 'q1.answer("B")', "q2-answer": 'q2.answer("A")'})
    result = regrade(SOLUTIONS / "ex02-shutdown" / "ex02-shutdown.ipynb", notebook)
    assert [(g.grade_id, g.points) for g in result.graded] == [("q1-test", 0), ("q2-test", 1)]
    assert "Your prediction did not hold" in result.graded[0].message


def test_a_patching_answer_cell_is_not_read_and_scores_as_unanswered(tmp_path):
    notebook = submission(tmp_path, "ex02-shutdown", {"q1-answer": PATCHED, "q2-answer": 'q2.answer("A")'})
    result = regrade(SOLUTIONS / "ex02-shutdown" / "ex02-shutdown.ipynb", notebook)
    assert [(g.grade_id, g.points) for g in result.graded] == [("q1-test", 0), ("q2-test", 1)]
    assert result.unread == {
        "q1-answer": "line 2: 'results.PredictionResult.correct = property(lambda self: True)' is not an answer "
        "the regrader reads"
    }


MARKER = "/tmp/closekit-regrade-ran-student-code"


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (f"q1.answer(open({MARKER!r}, 'w').name)", "is not an answer the regrader reads"),
        (f"x = open({MARKER!r}, 'w')", "line 1: open is not defined"),
        (f"x = __import__('os').system('touch {MARKER}')", "Attribute is not something the regrader evaluates"),
        (f"x = (lambda: open({MARKER!r}, 'w'))()", "Lambda is not something the regrader evaluates"),
        ("x = tuple(close('client') for _ in range(3))", "tuple is not defined"),
        ("x = catalog.no_fin_close()", "line 1: catalog is not something an answer may use here"),
        ("x = 10 ** 10 ** 10", "BinOp is not something the regrader evaluates"),
        ("x = 1 << 100", "this arithmetic is not something the regrader evaluates"),
        ("key = 'A'\nq1.answer(key)", "line 2: 'q1.answer(key)' is not an answer the regrader reads"),
        ("@open\ndef f(sock):\n    pass", "decorators or computed defaults"),
        (f"def f(sock, x=open({MARKER!r}, 'w')):\n    pass", "decorators or computed defaults"),
        ("x = Scenario('x', '', steps=(close('client', listener=[]),))", "line 1: step 1 of 'x'"),
    ],
)
def test_an_answer_that_would_run_code_is_not_read_and_runs_nothing(code, why):
    from closekit import Scenario
    from closekit.exercises import catalog
    from closekit.steps import close

    namespace = {"q1": catalog.close_unread(), "catalog": catalog, "close": close, "Scenario": Scenario}
    with pytest.raises(Exception) as caught:
        read_answer(code, namespace)
    assert why in str(caught.value) and type(caught.value).__name__ == "ExerciseError"
    assert not os.path.exists(MARKER)
    assert namespace["q1"].prediction is None


def test_steps_and_scenarios_built_from_closekits_constructors_are_read():
    from closekit import Options, Scenario
    from closekit.steps import close, linger

    namespace = {"Options": Options, "Scenario": Scenario, "close": close}
    read_answer(
        "from closekit.steps import linger, send\nimport socket\nbase = (send('client', 2 * 1024),)\n"
        "mine = Scenario('mine', 'd', options=Options(server_rcvbuf=1 << 12), steps=(*base, linger('client', 0), "
        "close('client')) + ())",
        namespace,
    )
    assert namespace["mine"].steps[1:] == (linger("client", 0), close("client"))
    assert namespace["mine"].options.server_rcvbuf == 4096


def test_a_function_answer_is_compiled_never_called(tmp_path):
    marker = tmp_path / "called"
    namespace: dict = {}
    read_answer(f"def f(sock, data):\n    open({str(marker)!r}, 'w')\n", namespace)
    import inspect

    assert inspect.getsource(namespace["f"]).startswith("def f(sock, data):") and not marker.exists()


# ---- the autograde path, end to end --------------------------------------------------------------
def test_autograde_passes_a_patched_wrong_answer_and_the_regrade_corrects_the_gradebook(tmp_path):
    if shutil.which("nbgrader", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("nbgrader is not installed in this environment (pip install '.[lab]')")
    course = tmp_path / "exercises"
    ignore = shutil.ignore_patterns("exchange", "submitted", "autograded", "feedback", "gradebook.db", "*.csv")
    shutil.copytree(REPO / "exercises", course, ignore=ignore)
    config = tmp_path / "jupyter-config"
    jupyter_setup.install(prefix=tmp_path / "prefix", course=course, config_dir=config)
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(config),
           "CLOSEKIT_COURSE_CONFIG": str(course / "nbgrader_config.py"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    run("nbgrader", "generate_assignment", "ex02-shutdown", "--force")
    run("nbgrader", "db", "student", "add", "mallory")
    submission(course / "submitted" / "mallory", "ex02-shutdown", {"q1-answer": PATCHED, "q2-answer": 'q2.answer("A")'})
    run("nbgrader", "autograde", "ex02-shutdown", "--force")
    out = run(
        sys.executable, "-m", "closekit.exercises.regrade", "ex02-shutdown", "--course", str(course), "--gradebook"
    )
    assert "differs from autograde: mallory ex02-shutdown q1-test: autograde gave 1, regraded 0" in out
    assert "answer cell q1-answer not read: line 2:" in out
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        q1 = gradebook.find_grade("q1-test", "ex02-shutdown", "ex02-shutdown", "mallory")
        assert (q1.auto_score, q1.manual_score, q1.score) == (1, 0, 0)  # fooled in its kernel; regraded
        assert gradebook.find_submission("ex02-shutdown", "mallory").score == 1
