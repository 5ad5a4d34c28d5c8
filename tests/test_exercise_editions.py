"""Each exercise's Chinese edition runs exactly the English notebook's code, with the same grading, and the
tool that keeps it so refuses notebooks whose cells do not line up."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from closekit.book import editions
from closekit.lang import LANGUAGES, edition_name

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "exercise_editions.py"


def _tool():
    spec = importlib.util.spec_from_file_location("exercise_editions", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


tool = _tool()
PAIRS = [(name, edition_name(name, lang)) for name in tool.english_exercises() for lang in LANGUAGES[1:]]


def test_every_exercise_has_its_editions():
    assert [name for name, _ in PAIRS] == [
        "ex01-close",
        "ex02-shutdown",
        "ex03-linger",
        "ex04-when-close-returns",
        "ex05-what-the-peer-sees",
        "ex06-fix",
    ]
    for _, edition in PAIRS:
        assert tool.notebook_path(edition).is_file(), f"exercises/solutions/{edition} is missing"


@pytest.mark.parametrize(("english", "edition"), PAIRS, ids=[p[1] for p in PAIRS])
def test_an_edition_runs_the_english_code_with_the_same_grading(english, edition):
    ours, theirs = tool.notebook_path(english), tool.notebook_path(edition)
    assert editions.code_drift(ours, theirs) == []

    def grading(path: Path) -> list[dict]:
        return [c["metadata"]["nbgrader"] for c in json.loads(path.read_text())["cells"] if "nbgrader" in c["metadata"]]

    assert grading(ours) == grading(theirs)
    markdown = [c for c in json.loads(theirs.read_text())["cells"] if c["cell_type"] == "markdown"]
    assert "练习" in "".join(markdown[0]["source"]), "the edition's markdown is written for its readers"


def test_the_tool_finds_every_edition_in_sync():
    done = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _cell(notebook: dict, grade_id: str) -> dict:
    return next(c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _pair() -> tuple[dict, dict]:
    english = json.loads(tool.notebook_path("ex02-shutdown").read_text())
    return english, json.loads(tool.notebook_path("ex02-shutdown-zh").read_text())


def test_a_changed_english_cell_is_copied_over_and_its_stale_output_dropped():
    english, edition = _pair()
    _cell(english, "q1-show")["source"] = "q1 = catalog.shutdown_half_close()\nq1  # changed"
    synced = tool.sync(english, edition, "ex02-shutdown-zh")
    cell = _cell(synced, "q1-show")
    assert cell["source"].endswith("# changed") and cell["outputs"] == [] and cell["execution_count"] is None
    intro = _cell(synced, "q1-intro")
    assert "半关闭" in "".join(intro["source"])  # the edition's words stay
    english, edition = _pair()
    assert tool.sync(english, edition, "x") == edition  # in sync: nothing changes, outputs included


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda cells: cells.pop(3), "cell 3 (not counting navigation) is a markdown cell 'q1-intro' in the English"),
        (lambda cells: cells.append(copy.deepcopy(cells[-1])), "the English notebook has 12 cells and this edition 13"),
        (lambda cells: cells[0]["metadata"].setdefault("nbgrader", {}).update(grade_id="title"), "cell 1"),
    ],
    ids=["a cell missing", "a cell more", "another grade id"],
)
def test_an_edition_whose_cells_do_not_line_up_is_refused_naming_the_cell(change, says):
    english, edition = _pair()
    change(edition["cells"])
    with pytest.raises(tool.OutOfLine, match="ex02-shutdown-zh") as refused:
        tool.sync(english, edition, "exercises/solutions/ex02-shutdown-zh/ex02-shutdown-zh.ipynb")
    assert says in str(refused.value)


def test_code_drift_sees_an_edition_that_runs_other_code(tmp_path):
    edition = _pair()[1]
    answer = _cell(edition, "q1-answer")
    answer["source"] = answer["source"] + ["\nq1.answer('B')"]
    changed = tmp_path / "ex02-shutdown-zh.ipynb"
    changed.write_text(json.dumps(edition))
    [problem] = editions.code_drift(tool.notebook_path("ex02-shutdown"), changed)
    assert problem.startswith("code cell 3 differs") and "+q1.answer('B')" in problem


def test_the_books_editions_link_existing_student_versions():
    book = editions.load()
    names = sorted({name for names in book.exercises.values() for name in names})
    for edition in book.editions:
        for name in names:
            path = ROOT / edition.exercises.format(name=name)
            assert path.is_file(), f"the {edition.lang} edition links {path.relative_to(ROOT)}, which is missing"
    zh = book.edition("zh").exercises.format(name="ex01-close")
    assert zh == "exercises/student/ex01-close-zh/ex01-close-zh.ipynb"
