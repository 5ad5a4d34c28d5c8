"""A checker that grades a student's own scenario requires the lesson's mechanism, and where the lab
cannot see, nothing is marked wrong.

- Each written-scenario task passes on the chapter's way of doing it and fails on a look-alike: a
  scenario whose outcome resembles the task's while the kernel did something else (a close() that
  sent nothing because a forked child still held the socket; a close() that waited a second for a
  late ACK rather than until its linger time ran out; a fix that delivers every byte but leaves the
  client not knowing it).
- In a mode that does not observe what a question is about, a prediction is judged on the built-in
  scenario's recorded trace (and says so), or read from the sockets' states, which every mode sees;
  an answer nothing here can judge is kept ("saved") and never shown as ✘ or failing its test cell,
  while nbgrader's autograde refuses to grade it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from closekit.errors import ExerciseError
from closekit.exercises import catalog
from closekit.exercises.results import Result, pending
from closekit.library import FAST_WRITER, FULL_OPTIONS, FULL_WINDOW, MILLION, SMALL_BUFFER
from closekit.link import Link, delay
from closekit.scenario import Options, Scenario
from closekit.steps import (
    close,
    fork,
    linger,
    read_to_eof,
    recv,
    send,
    shutdown,
    wait_done,
    wait_recv_queue,
    wait_state,
)

MILLION_OPTIONS = {"options": Options(server_rcvbuf=SMALL_BUFFER), "settings": FAST_WRITER}
GREETING = (send("server", 13), wait_recv_queue("client", 13))

ANSWERS = [
    # (task, the chapter's way, a look-alike, what the look-alike is told)
    (
        catalog.no_fin_close,
        (linger("client", 0), close("client")),
        (fork("client", "client-child"), close("client"), wait_done("client"), close("client-child")),  # the child last
        "still held the socket",
    ),
    (
        catalog.one_second_close,
        Scenario(
            "linger-runs-out",
            "SO_LINGER {1, 1}, the peer's window shut",
            options=FULL_OPTIONS,
            steps=(
                *FULL_WINDOW,
                linger("client", 1),
                close("client"),
                wait_done("client"),  # the linger time runs out before the server reads
                read_to_eof("server"),
                close("server"),
            ),
        ),
        Scenario(
            "late-ack",
            "SO_LINGER {1, 5}; the wire holds every ACK of the server back for a second",
            link=Link(rules=(delay("server", "ACK", seconds=1.0, nth=2, count=None),)),
            steps=(linger("client", 5), close("client"), wait_state("server", "CLOSE_WAIT"), close("server")),
        ),
        "ended when its FIN was acknowledged",
    ),
    (
        catalog.write_the_fix,
        Scenario(
            "the-fix",
            "send, shutdown(SHUT_WR), read to the end, close",
            **MILLION_OPTIONS,
            steps=(
                *GREETING,
                send("client", MILLION),
                shutdown("client", "SHUT_WR"),
                read_to_eof("server"),
                close("server"),
                read_to_eof("client"),
                close("client"),
            ),
        ),
        Scenario(
            "read-greeting-then-close",
            "the client reads the greeting, sends, and closes: nothing is lost, but it knows nothing",
            **MILLION_OPTIONS,
            steps=(
                *GREETING,
                recv("client"),
                send("client", MILLION),
                close("client"),
                read_to_eof("server"),
                close("server"),
            ),
        ),
        "never called shutdown(SHUT_WR)",
    ),
]


@pytest.mark.live
@pytest.mark.parametrize(("task", "right", "look_alike", "told"), ANSWERS, ids=[a[0].__name__ for a in ANSWERS])
def test_a_written_scenario_passes_by_the_lesson_s_mechanism_and_not_by_a_look_alike(task, right, look_alike, told):
    assert task().check(right).passed, task().check(right).message
    result = task().check(look_alike)
    assert not result.passed and not result.pending and told in result.message, result.message


@pytest.mark.live
def test_an_unread_data_abort_is_the_other_way_to_close_without_a_fin():
    steps = (send("server", 6), wait_recv_queue("client", 6), close("client"))
    assert catalog.no_fin_close().check(steps).passed


# ---- where the lab cannot see --------------------------------------------------------------------
def test_a_saved_answer_is_neither_a_pass_nor_a_fail():
    kept = pending("saved for later", 1.0, None)
    assert kept.passed and kept.pending and kept.score == 0.0
    html = kept._repr_html_()
    assert "⏸" in html and "✘" not in html and "✔" not in html
    assert repr(kept).startswith("SAVED: ") and not Result(True, "x").pending


def test_autograde_refuses_to_grade_what_it_cannot_see(tmp_path, monkeypatch):
    folder = tmp_path / "autograded" / "student" / "ex03-linger"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    with pytest.raises(ExerciseError, match="run nbgrader autograde where `closekit doctor` says mode netns"):
        pending("the segments were not seen", 1.0, None)


_IN_MODE = """
import json
from closekit.exercises import catalog
from closekit.exercises.predict import Predict
out = {}
shared = catalog.close_shared()
shared.answer("C")
linger = catalog.return_linger()
linger.answer("A")
wire = Predict("which flag?", {"A": "RST", "B": "FIN"}, "linger-zero", lambda t: "A", requires_capture=True)
wire.answer("B")
for name, ex in (("shared", shared), ("linger", linger), ("wire", wire)):
    r = ex.run()
    out[name] = {"correct": r.correct, "pending": r.pending, "message": r.message, "html": r._repr_html_()}
print(json.dumps(out))
"""


@pytest.mark.live
def test_in_mode_host_nocapture_a_prediction_is_judged_from_states_or_a_recording_or_kept():
    env = {**os.environ, "CLOSEKIT_SANDBOX": "host-nocapture", "CLOSEKIT_LANG": "en"}
    done = subprocess.run([sys.executable, "-c", _IN_MODE], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["shared"]["correct"] and not out["shared"]["pending"]  # the peer's states tell what was sent
    assert out["shared"]["message"].startswith("Your prediction held: C) nothing at all.")
    assert out["linger"]["correct"] and out["linger"]["message"].startswith("Judged on the trace recorded elsewhere")
    assert out["wire"]["pending"] and out["wire"]["correct"] and "✘" not in out["wire"]["html"]
    assert out["wire"]["message"].startswith("Saved: your answer B) FIN is kept; it is graded where the lab runs")
