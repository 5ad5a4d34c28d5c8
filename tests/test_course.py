"""A reader's own copy of the course (closekit.course), and where "See chapter N" links point from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from closekit import course
from closekit.errors import CloseKitError
from closekit.exercises.results import chapter_href

REPO = Path(__file__).resolve().parent.parent


def test_a_copy_holds_the_chapters_exercises_and_solutions_and_keeps_a_readers_edits(tmp_path):
    copied = course.copy(tmp_path / "mine")
    chapter = tmp_path / "mine" / "notebooks" / "01-close.ipynb"
    assert chapter in copied and (tmp_path / "mine" / "notebooks" / "zh" / "01-close.ipynb").is_file()
    assert (tmp_path / "mine" / "exercises" / "student" / "ex01-close" / "ex01-close.ipynb").is_file()
    assert (tmp_path / "mine" / "exercises" / "solutions" / "ex01-close" / "ex01-close.ipynb").is_file()
    chapter.write_text("my notes")
    (tmp_path / "mine" / "notebooks" / "02-shutdown.ipynb").unlink()
    again = course.copy(tmp_path / "mine")
    assert again == [tmp_path / "mine" / "notebooks" / "02-shutdown.ipynb"]  # only what is missing
    assert chapter.read_text() == "my notes"


def test_a_class_copy_has_no_exercises_or_solutions_and_stays_a_class_copy(tmp_path):
    course.copy(tmp_path / "class", for_class=True)
    exercises = tmp_path / "class" / "exercises"
    assert (tmp_path / "class" / "notebooks" / "00-start-here.ipynb").is_file()
    assert (exercises / "README.md").is_file()  # the start page links it
    assert list((exercises / "student").iterdir()) == []  # where fetch_assignment puts assignments
    assert not (exercises / "solutions").exists()
    course.copy(tmp_path / "class")  # a later `closekit lab` without --class
    assert list((exercises / "student").iterdir()) == [] and not (exercises / "solutions").exists()


def test_a_copy_over_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CloseKitError, match="exists and is not a folder"):
        course.copy(tmp_path / "file")
    done = subprocess.run([sys.executable, "-m", "closekit.course", "copy", str(tmp_path / "file")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "not a folder" in done.stderr


def test_see_chapter_links_point_into_the_course_copy_that_holds_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("CLOSEKIT_CHAPTERS", raising=False)
    course.copy(tmp_path / "mine", for_class=True)
    fetched = tmp_path / "mine" / "exercises" / "student" / "ex03-linger"
    fetched.mkdir()
    assert chapter_href("03-so-linger.ipynb", fetched) == "../../../notebooks/03-so-linger.ipynb"
    assert (fetched / chapter_href("zh/03-so-linger.ipynb", fetched)).resolve().is_file()
    elsewhere = tmp_path / "elsewhere"  # outside any copy: the course closekit came with
    elsewhere.mkdir()
    assert (elsewhere / chapter_href("03-so-linger.ipynb", elsewhere)).resolve() == (
        REPO / "notebooks" / "03-so-linger.ipynb"
    )


@pytest.mark.parametrize(
    ("base", "name", "link"),
    [
        ("/hub/user-redirect/lab/tree/closekit/{path}", "05-kernel-close-path.ipynb",
         "/hub/user-redirect/lab/tree/closekit/notebooks/05-kernel-close-path.ipynb"),
        ("https://example.org/book/{page}", "zh/05-kernel-close-path.ipynb",
         "https://example.org/book/zh/05-kernel-close-path.html"),
        ("https://example.org/book/{page}", "05-kernel-close-path.ipynb",
         "https://example.org/book/en/05-kernel-close-path.html"),
    ],
)  # fmt: skip
def test_one_configured_base_points_every_chapter_link_there(monkeypatch, tmp_path, base, name, link):
    monkeypatch.setenv("CLOSEKIT_CHAPTERS", base)
    assert chapter_href(name, tmp_path) == link


def test_feedback_points_chapter_links_at_the_students_copy_or_the_configured_base(monkeypatch):
    from closekit.exercises.feedback import relink

    text = 'Chapters: [1](../../../notebooks/01-close.ipynb) <a href="../../../../s/c/notebooks/zh/05-x-y.ipynb">5</a>'
    monkeypatch.delenv("CLOSEKIT_CHAPTERS", raising=False)
    up = "../../../../../notebooks"  # from <copy>/exercises/student/NAME/feedback/<time>/ to the copy's chapters
    assert relink(text) == f'Chapters: [1]({up}/01-close.ipynb) <a href="{up}/zh/05-x-y.ipynb">5</a>'
    monkeypatch.setenv("CLOSEKIT_CHAPTERS", "/hub/user-redirect/lab/tree/closekit/{path}")
    assert relink(text) == (
        "Chapters: [1](/hub/user-redirect/lab/tree/closekit/notebooks/01-close.ipynb) "
        '<a href="/hub/user-redirect/lab/tree/closekit/notebooks/zh/05-x-y.ipynb">5</a>'
    )
    assert relink("[elsewhere](https://example.org/notebooks/01-close.ipynb)") == (
        "[elsewhere](https://example.org/notebooks/01-close.ipynb)"  # not a relative link to a chapter: kept
    )
