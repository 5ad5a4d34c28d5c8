"""What a student gives is what is graded, nothing tells the answer before it is given, and every checker
is seen to fail where it must (each on a trace where it does not hold)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import closekit
from closekit.errors import CloseKitError
from closekit.exercises import _notebook, catalog, checks, jupyter_setup
from closekit.exercises.predict import Predict
from closekit.exercises.results import Result, chapter_href, verdict_html
from closekit.trace import Trace

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


def recorded(name: str) -> Trace:
    return Trace.from_json((FIXTURES / f"{name}.json").read_text())


# ---- every prediction: the right answer holds, a wrong one is seen to fail -------------------------
PREDICTIONS = [
    (catalog.close_unread, "B", "A"),
    (catalog.close_shared, "C", "A"),
    (catalog.shutdown_half_close, "A", "B"),
    (catalog.shutdown_shared, "A", "B"),
    (catalog.linger_zero_time_wait, "C", "A"),
    (catalog.return_default, "A", "B"),
    (catalog.return_linger, "A", "C"),
    (catalog.million_bytes, "B", "A"),
    (catalog.epoll_after_peer_close, "A", "B"),
    (catalog.first_write_after_peer_close, "A", "B"),
    (catalog.second_write_after_reset, "C", "B"),
]


@pytest.mark.parametrize(("build", "right", "wrong"), PREDICTIONS, ids=[p[0].__name__ for p in PREDICTIONS])
def test_every_prediction_holds_for_the_right_answer_and_fails_for_a_wrong_one(build, right, wrong):
    for key, correct in ((right, True), (wrong, False)):
        ex = build()
        ex.answer(key)
        result = ex.run()
        assert result.correct is correct, result.message
        assert result.truth == right and result.score == (ex.points if correct else 0)


def test_every_catalog_prediction_is_tested_here():
    predictions = {n for n in catalog.__all__ if isinstance(getattr(catalog, n)(), Predict)}
    assert predictions == {p[0].__name__ for p in PREDICTIONS}


# ---- every requirement of a written scenario: holds on one recorded trace, fails on another -----------
REQUIREMENTS = [
    (checks.close_aborts("client"), "linger-zero", "close-default", "the client's close() sent a FIN"),
    (checks.no_rst(), "close-default", "linger-zero", "the client sent an RST"),
    (checks.receives_all("server", 1_000_000), None, "million-bytes", "of 1,000,000 bytes, then ECONNRESET"),
    (checks.close_blocks("client", 0.8, 1.5), None, "close-default", "the client's close() returned after 0.00 s"),
]


@pytest.mark.parametrize(("requirement", "holds_on", "fails_on", "seen"), REQUIREMENTS, ids=lambda x: str(x)[:30])
def test_every_requirement_fails_on_a_trace_where_it_does_not_hold(requirement, holds_on, fails_on, seen):
    if holds_on:
        assert requirement.judge(recorded(holds_on)) == (True, "it holds")
    held, what = requirement.judge(recorded(fails_on))
    assert not held and seen in what


def test_requirements_that_hold_on_a_live_trace(live):
    assert checks.receives_all("server", 1_000_000).judge(live("million-bytes"))[0] is False
    assert checks.close_blocks("client", 0.8, 1.5).judge(closekit.run("linger-timeout"))[0]
    both = checks.all_of(checks.no_rst(), checks.close_aborts("client"))
    held, what = both.judge(recorded("linger-zero"))
    assert not held and what == "the client sent an RST"


def test_a_wrong_scenario_shows_its_transcript_and_a_right_one_only_its_verdict():
    wrong = catalog.no_fin_close().check((closekit.steps.close("client"),))
    assert not wrong.passed and "transcript" in wrong._repr_html_() and "F." in wrong._repr_html_()
    right = catalog.no_fin_close().check((closekit.steps.linger("client", 0), closekit.steps.close("client")))
    assert right.passed and "transcript" not in right._repr_html_()


# ---- nothing tells the answer before the student commits ---------------------------------------------
def test_a_prediction_offers_no_way_to_compute_its_answer_before_answering():
    ex = catalog.linger_zero_time_wait()
    assert not any(hasattr(ex, name) for name in ("truth", "explain"))
    assert "truth" not in ex.result.message and ex.result.truth is None


def test_the_recipes_are_shown_side_by_side_only_once_the_choice_is_judged():
    ex = catalog.million_fix()
    before = ex.try_all()
    assert len(before) == 0 and "choose a recipe and run it first" in repr(before)
    assert "not yet" in before._repr_html_()
    ex.answer("D")
    assert not ex.run().correct
    after = ex.try_all()
    assert [row[0] for row in after] == ["A", "B", "C", "D"]
    assert "server received 1,000,000 bytes; no RST" in after[2][2]


# ---- a click is written into the notebook ----------------------------------------------------------
class FakeComm:
    """What the kernel's comm does, with the front end's answer played back."""

    opened: list[tuple[str, dict]] = []

    def __init__(self, target: str, data: dict, reply: dict | None) -> None:
        self.opened.append((target, data))
        self.reply = reply

    def on_msg(self, callback):
        self._msg = callback

    def on_close(self, callback):
        if self.reply is not None:
            self._msg({"content": {"data": self.reply}})
        callback({})


@pytest.fixture
def front_end(monkeypatch):
    """front_end(reply): the notebook front end answers each comm with `reply` (None: it refuses the comm)."""

    def answer_with(reply):
        FakeComm.opened = []
        monkeypatch.setattr(_notebook, "open_comm", lambda target, data: FakeComm(target, data, reply))
        return FakeComm.opened

    return answer_with


def test_a_click_writes_the_same_code_a_student_would_type_and_says_it_is_saved(front_end, monkeypatch):
    opened = front_end({"ok": True, "cell": 5, "inserted": False})
    ex = catalog.linger_zero_time_wait()
    monkeypatch.setitem(vars(sys.modules["__main__"]), "q1", ex)  # `q1 = catalog…` in the notebook
    ex.widget  # noqa: B018 (builds the view, as displaying it does)
    ex._ui["radio"].value = "C"
    ex._ui["button"].click()
    ((target, data),) = opened
    assert target == "closekit.answer" and data["name"] == "q1" and data["model_id"] == ex._ui["box"].model_id
    assert data["source"].endswith('\nq1.answer("C")') and data["source"].startswith("# Your answer")
    assert "Saved in the notebook" in ex._ui["status"].value and ex.result.correct
    # and the code it wrote gives the same answer when autograde runs it
    again = catalog.linger_zero_time_wait()
    exec(data["source"], {"q1": again})
    assert again.prediction == "C" and again.run().correct


@pytest.mark.parametrize(
    ("reply", "says"),
    [(None, "does not write clicked answers"), ({"ok": False, "reason": "read-only"}, "could not be written")],
)
def test_a_click_that_cannot_be_written_tells_the_student_what_to_type(front_end, monkeypatch, reply, says):
    front_end(reply)
    ex = catalog.close_shared()
    monkeypatch.setitem(vars(sys.modules["__main__"]), "q2", ex)
    ex.widget  # noqa: B018
    ex._ui["radio"].value = "C"
    ex._ui["button"].click()
    status = ex._ui["status"].value
    assert says in status and "q2.answer(&quot;C&quot;)" in status and ex.result.correct


def test_the_question_shows_as_plain_html_where_widgets_do_not_render():
    bundle = catalog.close_unread()._repr_mimebundle_()
    assert "What does the client&#x27;s next recv() return?" in bundle["text/html"]
    assert "-1 with ECONNRESET" in bundle["text/html"] and bundle["text/plain"].startswith("Predict: ")


def test_see_chapter_references_are_links_to_the_chapter(tmp_path):
    assert chapter_href("03-so-linger.ipynb", ROOT / "exercises" / "student" / "ex03-linger") == (
        "../../../notebooks/03-so-linger.ipynb"
    )
    html = verdict_html(False, "See chapter 3 (notebooks/03-so-linger.ipynb), 'x'.")
    assert '<a href="' in html and "03-so-linger.ipynb</a>" in html
    assert chapter_href("99-none.ipynb") is None and "<a" not in verdict_html(True, "notebooks/99-none.ipynb")
    assert isinstance(Result(True, "x"), Result)


# ---- the pieces the course installs, and the generated files ---------------------------------------
def test_jupyter_setup_installs_the_extension_no_news_and_the_course_config(tmp_path):
    written = jupyter_setup.install(prefix=tmp_path, course=ROOT / "exercises")
    extension = tmp_path / "share/jupyter/labextensions/closekit-answers"
    package = json.loads((extension / "package.json").read_text())
    assert (extension / package["jupyterlab"]["_build"]["load"]).is_file()
    news = json.loads((tmp_path / "share/jupyter/lab/settings/overrides.d/closekit.json").read_text())
    assert news["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    loader = (tmp_path / "etc/jupyter/nbgrader_config.py").read_text()
    assert str(ROOT / "exercises" / "nbgrader_config.py") in loader and len(written) == 3
    jupyter_setup.install(prefix=tmp_path)  # again: idempotent
    with pytest.raises(SystemExit, match=r"no nbgrader_config\.py"):
        jupyter_setup.install(prefix=tmp_path, course=tmp_path)


def test_navigation_cells_are_current():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "navigation.py"), "--check"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_the_student_versions_are_what_nbgrader_releases_from_the_solutions(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(ROOT / "exercises", course, ignore=shutil.ignore_patterns("student", "gradebook.db", "exchange"))
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"
    # every assignment in one nbgrader run (its assignment id is a glob): starting nbgrader is most of a run
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "*"],
        cwd=course, capture_output=True, text=True, env={**__import__("os").environ, "PATH": env_path},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for folder in sorted((ROOT / "exercises" / "solutions").iterdir()):
        made = course / "student" / folder.name / f"{folder.name}.ipynb"
        assert made.is_file(), f"nbgrader released no {made.relative_to(course)}:\n{done.stderr[-2000:]}"
        kept = (ROOT / "exercises" / "student" / folder.name / f"{folder.name}.ipynb").read_text()
        stale = f"exercises/student/{folder.name} is stale: regenerate it"
        assert json.loads(made.read_text()) == json.loads(kept), stale


def test_a_trace_downloads_as_a_pcap_link(live, tmp_path):
    from closekit.download import pcap_link

    trace = live("linger-zero")
    link = pcap_link(trace, save=tmp_path / "out.pcap")
    assert link.filename == "linger-zero.pcap" and link.packets == len(trace.segments())
    assert link.data[:4] == bytes.fromhex("d4c3b2a1") and (tmp_path / "out.pcap").read_bytes() == link.data
    html = link._repr_html_()
    assert 'download="linger-zero.pcap"' in html and "data:application/vnd.tcpdump.pcap;base64," in html
    with pytest.raises(CloseKitError, match="takes a Trace"):
        pcap_link("linger-zero")  # type: ignore[arg-type]
