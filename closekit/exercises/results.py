"""What every exercise hands back: a Result with `.passed`, `.score` and a `.message` in the student's terms.

Results are frozen values built from a live trace; a test cell of a graded notebook asserts on them
(`assert result.passed, result.message`), so the message is what a student sees on a failed check.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from closekit.errors import CloseKitError, ExerciseError
from closekit.lang import text, word
from closekit.trace import Trace

__all__ = [
    "CodeResult",
    "ExerciseError",
    "PeerCheck",
    "PredictionResult",
    "Result",
    "autograding",
    "chapter_href",
    "configured_chapter_link",
    "pending",
    "verdict_html",
]


@dataclass(frozen=True)
class Result:
    """The outcome of one check. `score` is `points` when it passed, else 0 (nbgrader's points).

    `pending`: the answer could not be judged here (this machine's lab does not see what it is about)
    and is kept, to be graded where the lab runs. Nothing failed, so `passed` is True and a test cell
    asserting it does not fail; `score` is 0 and no ✔ or ✘ is shown. Under nbgrader's autograde a
    pending answer raises instead (see `pending`): a grade must come from a machine that can judge."""

    passed: bool
    message: str
    points: float = 1.0
    trace: Trace | None = field(default=None, compare=False, repr=False)
    pending: bool = field(default=False, kw_only=True)

    @property
    def correct(self) -> bool:
        """Same as `passed` (reads better for a prediction)."""
        return self.passed

    @property
    def score(self) -> float:
        return self.points if self.passed and not self.pending else 0.0

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        if self.pending:
            return f"{text('results.saved')}: {self.message}"
        return f"{text('results.passed') if self.passed else text('results.not_passed')}: {self.message}"

    def _repr_html_(self) -> str:
        """The verdict; when it did not pass, also what the experiment did (the transcript), to learn from."""
        head = verdict_html(self.passed, self.message, self.pending)
        if self.passed or self.trace is None:
            return head
        return (
            f"{head}<details open><summary>{text('results.transcript')}</summary>{self.trace._repr_html_()}</details>"
        )


@dataclass(frozen=True, repr=False)
class PredictionResult(Result):
    """A prediction put to the kernel: what was predicted, and what the live trace says is true."""

    prediction: str | None = None
    truth: str | None = None


@dataclass(frozen=True)
class PeerCheck:
    """How a student's function did against one peer."""

    peer: str
    passed: bool
    message: str
    trace: Trace | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, repr=False)
class CodeResult(Result):
    """A function checked against several live peers; `score` is `points` times the share passed."""

    checks: tuple[PeerCheck, ...] = ()

    @property
    def score(self) -> float:
        if not self.checks:
            return 0.0
        return self.points * sum(c.passed for c in self.checks) / len(self.checks)

    def peer(self, name: str) -> PeerCheck:
        """The check against the peer called `name` (e.g. "slow reader")."""
        for c in self.checks:
            if c.peer == name:
                return c
        raise ExerciseError(text("results.no_peer", name=repr(name), peers=", ".join(c.peer for c in self.checks)))

    def _repr_html_(self) -> str:
        rows = "".join(
            "<li>"
            + text(
                "code.peer_line",
                mark="✔" if c.passed else "✘",
                peer=f"<b>{html.escape(word('code.peer_name', c.peer))}</b>",
                message=html.escape(c.message),
            )
            + "</li>"
            for c in self.checks
        )
        head = verdict_html(self.passed, self.message.split("\n", 1)[0])
        return f"{head}<ul>{rows}</ul>" if rows else head


def autograding(here: Path | None = None) -> bool:
    """Is this notebook being graded by nbgrader's autograde? It runs each submission in a kernel whose
    working directory is `autograded/<student>/<assignment>/` of the course."""
    return "autograded" in (here or Path.cwd()).parts


def pending(message: str, points: float, trace: Trace | None, kind: type[Result] = Result, **fields: object) -> Result:
    """An answer this machine cannot judge, kept for a machine that can (see Result.pending). Under
    autograde it raises: grading must happen where the lab sees what the question is about."""
    if autograding():
        raise ExerciseError(text("results.cannot_grade_here", message=message))
    return kind(True, message, points, trace, pending=True, **fields)


_CHAPTER = re.compile(r"notebooks/((?:[a-z]{2}/)?\d\d-[\w-]+\.ipynb)")


def configured_chapter_link(name: str) -> str | None:
    """The link to chapter `name` ("05-x.ipynb", "zh/05-x.ipynb") under the base the course configured
    (CLOSEKIT_CHAPTERS, or `chapters` in closekit/book/book.toml), or None where none is."""
    from closekit.book import editions

    book = editions.load()
    if not book.chapters:
        return None
    lang, _, page = name.rpartition("/")
    page = f"{lang or book.editions[0].lang}/{Path(page).stem}.html"
    return book.chapters.format(path=f"notebooks/{name}", page=page)


def chapter_href(name: str, here: Path | None = None) -> str | None:
    """A link from the running notebook (the kernel's folder, `here`) to the course chapter `name` (in an
    edition's folder: "zh/01-close.ipynb").

    With a base configured (CLOSEKIT_CHAPTERS, or `chapters` in closekit/book/book.toml: a hub's course folder,
    a published book), the link is that base filled in: the same for every reader, so it survives feedback
    made in the instructor's folder. Otherwise it is relative, to the chapter in the course folder that holds
    `here` (a student's copy, a fetched assignment in it, the repository) or in the course closekit came
    with; JupyterLab opens a relative link to a notebook in a tab of its own. None if no chapter is found.
    Every edition has the same chapter files, so the chapter exists when the default edition's does (a stored
    verdict then does not change when an edition's chapter is added)."""
    from closekit import course

    configured = configured_chapter_link(name)
    if configured is not None:
        return configured
    path = f"notebooks/{name}"
    here = Path.cwd() if here is None else here
    try:
        folder = course.enclosing(here) or course.root()
    except CloseKitError:
        return None
    if not (folder / "notebooks" / Path(name).name).is_file():
        return None
    return Path(os.path.relpath(folder / path, here)).as_posix()


def _linked(text: str) -> str:
    """Escaped `text` with every `notebooks/NN-….ipynb` made a link to that chapter."""

    def link(match: re.Match[str]) -> str:
        href = chapter_href(match.group(1))
        shown = html.escape(match.group(0))
        return f'<a href="{html.escape(href)}">{shown}</a>' if href else shown

    parts = _CHAPTER.split(text)
    out = []
    for i, part in enumerate(parts):
        out.append(link(_CHAPTER.match(f"notebooks/{part}")) if i % 2 else html.escape(part))  # type: ignore[arg-type]
    return "".join(out)


def verdict_html(passed: bool, message: str, pending: bool = False) -> str:
    """A verdict as a block with a coloured edge: ✔ green, ✘ red, ⏸ amber for an answer kept to be graded
    where the lab runs. Long lines wrap (a verdict is prose, not a table cell)."""
    colour = "#8a6d00" if pending else "#1a7f37" if passed else "#b42318"
    mark = "⏸" if pending else "✔" if passed else "✘"
    text = _linked(message).replace("\n", "<br>")
    style = f"border-left:4px solid {colour};padding:4px 8px;white-space:normal;overflow-wrap:anywhere"
    return f'<div style="{style}">{mark} {text}</div>'
