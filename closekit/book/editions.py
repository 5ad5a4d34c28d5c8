"""The course's editions (English, Chinese …) and the rule that binds them: the same code.

Each edition is a folder of chapter notebooks with the same file names (``notebooks/`` and
``notebooks/zh/``), written for its readers in its own words around **identical code cells**: the
experiments, and so their outputs, are the same in every language. :func:`code_drift` says where two
editions of a chapter stopped agreeing; ``tests/test_book.py`` fails on it.

The editions and the words of the book's frame are data, in ``book.toml`` beside this file.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONFIG", "Book", "Edition", "code_cells", "code_drift", "load"]

CONFIG = Path(__file__).with_name("book.toml")


@dataclass(frozen=True)
class Edition:
    """One language of the course: where its chapters are and the words of its frame."""

    lang: str  # the site's folder: en, zh
    name: str  # what the language switch says: English, 中文
    language: str  # Sphinx's language code
    notebooks: str  # repository path of the chapters' folder
    exercises: str  # repository path template of an exercise's student version
    title: str
    text: dict[str, str] = field(repr=False)

    def chapters(self, repo: Path) -> list[Path]:
        """The edition's chapter notebooks in `repo`, in file-name order (00-start-here first)."""
        folder = repo / self.notebooks
        return sorted(folder.glob("*.ipynb")) if folder.is_dir() else []


@dataclass(frozen=True)
class Book:
    """The whole frame: editions (the first is the default), links and the exercises of each chapter."""

    editions: tuple[Edition, ...]
    lab: str
    binder: str
    exercises: dict[str, tuple[str, ...]]

    def edition(self, lang: str) -> Edition:
        for edition in self.editions:
            if edition.lang == lang:
                return edition
        raise KeyError(f"no edition {lang!r}; the editions are {[e.lang for e in self.editions]}")


def load(path: Path = CONFIG, environ: dict[str, str] | None = None) -> Book:
    """The book's configuration; CLOSEKIT_BOOK_LAB / CLOSEKIT_BOOK_BINDER repoint the links for one build."""
    environ = os.environ if environ is None else environ
    data = tomllib.loads(path.read_text())
    editions = tuple(
        Edition(
            lang=lang,
            name=e["name"],
            language=e["language"],
            notebooks=e["notebooks"],
            exercises=e["exercises"],
            title=e["title"],
            text={k: v.strip() for k, v in e["text"].items()},
        )
        for lang, e in data["editions"].items()
    )
    links = data["links"]
    return Book(
        editions=editions,
        lab=environ.get("CLOSEKIT_BOOK_LAB", links["lab"]),
        binder=environ.get("CLOSEKIT_BOOK_BINDER", links["binder"]),
        exercises={k: tuple(v) for k, v in data["exercises"]["chapters"].items()},
    )


def code_cells(notebook: Path) -> list[str]:
    """The sources of a notebook's code cells, in order (trailing blank lines do not count)."""
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]).rstrip() for c in cells if c["cell_type"] == "code"]


def code_drift(original: Path, translation: Path) -> list[str]:
    """Where `translation`'s code cells differ from `original`'s: one message per difference,
    naming the cell and showing a diff; empty when both run exactly the same code. Markdown is free."""
    ours, theirs = code_cells(original), code_cells(translation)
    problems = []
    for index, (a, b) in enumerate(zip(ours, theirs), start=1):
        if a != b:
            diff = "\n".join(
                difflib.unified_diff(a.splitlines(), b.splitlines(), str(original), str(translation), lineterm="")
            )
            problems.append(f"code cell {index} differs:\n{diff}")
    if len(ours) != len(theirs):
        extra = theirs[len(ours) :] or ours[len(theirs) :]
        more = translation if len(theirs) > len(ours) else original
        problems.append(
            f"{original} has {len(ours)} code cells, {translation} has {len(theirs)}; "
            f"the first one only in {more}:\n{extra[0]}"
        )
    return problems
