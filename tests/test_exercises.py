"""Exercises: predictions judged by the live kernel, scenario and code checkers, and the nbgrader loop."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import closekit
from closekit import exercises
from closekit.exercises import ExerciseError, catalog
from closekit.lang import edition_name, use
from closekit.steps import call, close, linger, send, wait_recv_queue
from closekit.trace import Syscall, Trace

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "ex01-close"


# ---- student functions for the code checker (module level: the checker sends their source) -------
def graceful(sock, data):
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()


def plain_close(sock, data):
    sock.sendall(data)
    sock.close()


def hangs(sock, data):
    while True:
        pass


def raises(sock, data):
    raise ValueError("not today")


def quits(sock, data):
    import os

    os._exit(3)


def claims_success(sock, data):
    return "all 1,000,000 bytes delivered"


def one_argument(sock):
    sock.close()


def _recorded(mode: str = "netns", **recv: object) -> Trace:
    event = Syscall(t=0.0, side="client", call="recv", args={}, result=recv.get("result", 0),
                    errno=recv.get("errno"), duration=0.0)  # fmt: skip
    return Trace("close-unread", "6.x", mode, {}, (event,))  # type: ignore[arg-type]


# ---- predict, then run ------------------------------------------------------------------------
@pytest.mark.parametrize(("prediction", "correct"), [("B", True), ("A", False), ("c", False)])
def test_a_prediction_is_judged_by_what_the_kernel_did(prediction, correct):
    ex = catalog.close_unread()
    ex.answer(prediction)
    result = ex.run()
    assert result.correct is correct and result.passed is correct
    assert result.truth == "B" and ex.prediction == prediction.upper()
    assert "ECONNRESET" in result.message and result.score == (1.0 if correct else 0.0)
    assert ("held" in result.message) is correct


def test_the_right_answer_comes_from_the_trace_not_from_the_exercise(monkeypatch):
    ex = catalog.close_unread()
    ex.answer("B")
    monkeypatch.setattr(closekit, "run", lambda scenario: _recorded(result=0))  # a kernel that sent FIN
    result = ex.run()
    assert not result.correct and result.truth == "A"


def test_a_question_about_what_a_call_returned_is_judged_without_a_capture(monkeypatch):
    ex = catalog.close_unread()
    ex.answer("B")
    monkeypatch.setattr(closekit, "run", lambda scenario: _recorded("host-nocapture", result=-1, errno="ECONNRESET"))
    result = ex.run()
    assert result.passed and not result.pending and "TCPAbortOnClose" not in result.message  # no counters there


def test_a_prediction_locks_once_the_experiment_has_run():
    ex = catalog.close_shared()
    ex.answer("C")
    assert ex.run().correct
    ex.answer("c")  # the same answer again is fine
    with pytest.raises(ExerciseError, match="locked: you chose 'C'"):
        ex.answer("A")
    ex.prediction = "A"  # a plain attribute, but the lock still holds
    with pytest.raises(ExerciseError, match="locked"):
        ex.run()


def test_unanswered_and_bad_answers_say_what_is_expected():
    ex = catalog.close_unread()
    result = ex.run()
    assert not result.passed and result.message.startswith("not answered yet: choose one of A, B, C")
    assert ex.result.message == ex._not_answered()
    with pytest.raises(ExerciseError, match="'Z' is not one of the choices; answer with one of 'A', 'B', 'C'"):
        ex.answer("Z")
    with pytest.raises(ExerciseError, match=r"\(a str\), not 2"):
        ex.answer(2)  # type: ignore[arg-type]
    assert ex.prediction is None


def test_the_widget_runs_the_experiment_and_locks_and_never_imports_at_closekit_import():
    ex = catalog.linger_zero_time_wait()
    bundle = ex._repr_mimebundle_()
    assert bundle["text/plain"] == f"Predict: {ex.question}"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    ex._ui["radio"].value = "C"
    ex._ui["button"].click()
    assert ex.prediction == "C" and ex.result.correct and ex._ui["radio"].disabled
    shown = ex._ui["output"].outputs[0]["data"]["text/html"]
    assert "Your prediction held" in shown and "transcript" in shown
    code = "import sys, closekit, closekit.exercises; sys.exit('ipywidgets' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- choose the fix ---------------------------------------------------------------------------
def test_choose_the_fix_runs_every_recipe_and_judges_the_choice_live():
    ex = catalog.million_fix()
    ex.answer("C")
    assert ex.run().correct
    table = ex.try_all()  # once the choice is judged
    assert [row[0] for row in table] == ["A", "B", "C", "D"]
    assert "server received 1,000,000 bytes; no RST" in table[2][2] and "ECONNRESET" in table[0][2]
    wrong = catalog.million_fix()
    wrong.answer("B")
    result = wrong.run()
    assert not result.correct and "does not meet the goal" in result.message and "RST" in result.message


# ---- write the scenario -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("steps", "passed", "message"),
    [
        ((linger("client", 0), close("client")), True, "✔ the client's close() aborts the connection"),
        ((send("server", 3), wait_recv_queue("client", 3), close("client")), True, "✔"),
        ((close("client"),), False, "the client's close() sent a FIN: an orderly release"),
        ((linger("client", 0),), False, "the client never called close()"),
        ((), False, "your scenario has no steps yet"),
        ("linger-zero", False, "'linger-zero' is a name"),
        (42, False, "expected a closekit.Scenario or a tuple of steps from closekit.steps, not int"),
        (None, False, "not answered yet"),
        ((close("client"), close("client")), False, "that scenario cannot run: step 2"),
        ((call("client", one_argument),), False, "call() steps are not allowed here"),
    ],
)
def test_a_written_scenario_is_checked_on_the_live_kernel(steps, passed, message):
    ex = catalog.no_fin_close()
    result = ex.check(steps)
    assert result.passed is passed and message in result.message
    assert ex.result is result


def test_a_close_that_blocks_about_a_second_is_measured_not_assumed():
    ex = catalog.one_second_close()
    assert not ex.check((linger("client", 1), close("client"))).passed  # nothing queued: returns at once
    lingering = closekit.get("linger-timeout")
    assert ex.check(lingering).passed
    assert "0.8 and 1.5 s" in ex.result.message


# ---- write the code ---------------------------------------------------------------------------
def test_a_correct_function_passes_every_live_peer():
    result = catalog.send_all_then_close().check(graceful)
    assert result.passed and result.score == 1.0, result.message
    assert result.peer("banner").message == "the peer received all 1,000,000 bytes, then end of stream"
    assert "let the ECONNRESET out" in result.peer("reset").message


def test_a_plain_close_loses_data_to_the_unread_banner_and_says_so():
    result = catalog.send_all_then_close().check(plain_close)
    assert not result.passed and result.score == pytest.approx(2 / 3)
    assert result.peer("slow reader").passed
    banner = result.peer("banner").message
    assert banner.startswith("the peer received ") and "of 1,000,000 bytes, then ECONNRESET" in banner
    # with the kernel's default buffers send() is still blocked when the reset comes, and fails
    assert "let the ECONNRESET out" in result.peer("reset").message


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (hangs, "send_all_then_close() did not return within 0.5 s (it hangs)"),
        (raises, "your function raised ValueError: not today"),
        (
            quits,
            "send_all_then_close() ended its process (os._exit?) instead of returning: the client process "
            "exited with status 3",
        ),
        (claims_success, "the peer received 0 of 1,000,000 bytes"),
        (one_argument, "one_argument(sock) cannot be called as send_all_then_close(sock, data)"),
        (lambda sock, data: None, "not as a lambda"),
        (print, "expected a function defined with def"),
        (None, "not answered yet"),
    ],
)
def test_a_broken_function_gets_a_clear_message_and_the_lab_stays_healthy(function, message):
    ex = exercises.WriteCode(peers=("banner",), time_limit=0.5)
    result = ex.check(function)
    assert not result.passed and result.score == 0 and message in result.peer("banner").message
    assert closekit.run("close-unread").first("RST").src == "server"


def test_a_function_that_hangs_or_quits_is_told_so_in_the_notebook_s_language():
    """How the run ended is told by the kind of error the lab raised, not by its English words."""
    ex = exercises.WriteCode(peers=("banner",), time_limit=0.5)
    with use("zh"):
        assert ex.check(hangs).peer("banner").message == "send_all_then_close() 在 0.5 秒内没有返回（卡住了）"
        quit_message = ex.check(quits).peer("banner").message
        assert quit_message.startswith("send_all_then_close() 结束了自己所在的进程")
        assert "进程 client 在运行 " in quit_message


# ---- the nbgrader loop ------------------------------------------------------------------------
def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(  # nbgrader runs `alembic` and the kernel from the venv: put its bin/ first
        [sys.executable, "-m", "nbgrader", *args, "--ExecutePreprocessor.kernel_name=python3"],
        cwd=course,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _submit(course: Path, assignment: str, student: str, notebook: dict) -> None:
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    (folder / f"{assignment}.ipynb").write_text(json.dumps(notebook))


def _answer(notebook: dict, answers: dict[str, str]) -> dict:
    """Fill the student version's stubs, by the grade_id of the solution cell."""
    for cell in notebook["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = "".join(cell["source"]).replace("pass", answers[grade_id])
    return notebook


# The Chinese edition is graded the same way, and its kernel (in the assignment's -zh folder) speaks Chinese.
EDITIONS = [(ASSIGNMENT, "not answered yet: choose one of A, B, C"), (edition_name(ASSIGNMENT, "zh"), "还没有作答")]


@pytest.mark.parametrize(("assignment", "unanswered"), EDITIONS, ids=[e[0] for e in EDITIONS])
def test_nbgrader_releases_without_solutions_and_autogrades_from_the_live_kernel(tmp_path, assignment, unanswered):
    course = tmp_path / "course"
    ignore = shutil.ignore_patterns("student", "exchange", "submitted", "autograded", "feedback", "gradebook.db")
    shutil.copytree(ROOT / "exercises", course, ignore=ignore)
    _nbgrader(course, "generate_assignment", assignment)
    released = (course / "student" / assignment / f"{assignment}.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "END SOLUTION", "sock.sendall", 'q1.answer(\\"B\\")', 'q2.answer(\\"C\\")'):
        assert secret not in released
    student = json.loads(released)
    assert not any(c.get("outputs") for c in student["cells"])

    solution = json.loads((course / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    _submit(course, assignment, "instructor", solution)
    _submit(course, assignment, "untouched", json.loads(released))
    wrong = {
        "q1-answer": 'q1.answer("A")',
        "q2-answer": 'q2.answer("C")',
        "code-answer": "sock.sendall(data)\n    sock.close()",
    }
    _submit(course, assignment, "plausible", _answer(json.loads(released), wrong))
    _nbgrader(course, "autograde", assignment)

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission(assignment, s).score for s in ("instructor", "untouched", "plausible")}
        assert gradebook.find_submission(assignment, "instructor").max_score == 5
    # plausible: right about the shared socket; with the kernel's default buffers its sendall() of a
    # million bytes is still blocked when the reset peer's RST comes, so the error reaches the caller,
    # and a plain close() serves the slow reader; only the greeting peer shows what close() misses
    assert scores == {"instructor": 5, "untouched": 0, "plausible": 3}
    graded = json.loads((course / "autograded" / "untouched" / assignment / f"{assignment}.ipynb").read_text())
    errors = [o for c in graded["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert {o["ename"] for o in errors} == {"AssertionError"}  # only the test cells fail; the rest ran
    assert all(o["evalue"].startswith(unanswered) for o in errors[:2])  # and said "not answered", in its language
