"""The course's editions (English, Chinese …) and the rule that binds them: the same code.

Each edition is a folder of chapter notebooks with the same file names (``notebooks/`` and
``notebooks/zh/``), written for its readers in its own words around **identical code cells**: the
experiments, and so their outputs, are the same in every language. :func:`code_drift` says where two
editions of a chapter stopped agreeing; ``tests/test_book.py`` fails on it. :func:`sync_code` brings a
translation's code cells back in step with its original after the original changed, keeping the
translation's words beside the experiments they describe (``python -m closekit.book sync``).

The editions and the words of the book's frame are data, in ``book.toml`` beside this file.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from closekit.errors import EditionDriftError

__all__ = [
    "CONFIG",
    "Book",
    "Edition",
    "EditionDriftError",
    "Sync",
    "code_cells",
    "code_drift",
    "load",
    "pair_cells",
    "sync_code",
    "untranslated",
]

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
    chapters: str = ""  # where "See chapter N" links point, if not to the course folder (see book.toml)

    def edition(self, lang: str) -> Edition:
        for edition in self.editions:
            if edition.lang == lang:
                return edition
        raise KeyError(f"no edition {lang!r}; the editions are {[e.lang for e in self.editions]}")


def load(path: Path = CONFIG, environ: dict[str, str] | None = None) -> Book:
    """The book's configuration; CLOSEKIT_BOOK_LAB / CLOSEKIT_BOOK_BINDER repoint the links for one build,
    CLOSEKIT_CHAPTERS the exercises' links to chapters (a hub, a published book)."""
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
        chapters=environ.get("CLOSEKIT_CHAPTERS", links.get("chapters", "")),
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


# ---- keeping a translation's code in step with its original ---------------------------------------
UNTRANSLATED = "untranslated"  # metadata.closekit.untranslated: markdown copied from the original


@dataclass(frozen=True)
class Sync:
    """What :func:`sync_code` did (or, with write=False, would do) to one translated chapter.
    Cell numbers count the original's code cells from 1."""

    translation: Path
    changed: tuple[int, ...] = ()  # code replaced by the original's new code, outputs cleared
    added: tuple[int, ...] = ()  # new in the original (accept=True): its markdown came in untranslated
    dropped: tuple[int, ...] = ()  # the translation's cells (its own numbering) the original no longer has
    review: tuple[int, ...] = ()  # cells whose markdown a translator should read again
    differs: bool = False  # the file's new text is not its old text
    written: bool = False

    def report(self) -> str:
        """One line: what changed, and what the translator or the chapter still needs."""
        name = self.translation.as_posix()
        if not self.differs:
            return f"{name}: already has the original's code cells"
        parts = [f"{name}: {'updated' if self.written else 'out of date'}"]
        if self.changed:
            parts.append(f"code cells {_numbers(self.changed)} changed (outputs cleared: re-execute)")
        if self.added:
            parts.append(f"code cells {_numbers(self.added)} are new, with the original's markdown (untranslated)")
        if self.dropped:
            parts.append(f"its code cells {_numbers(self.dropped)} are gone from the original")
        if self.review:
            parts.append(f"read the markdown before code cells {_numbers(self.review)} again")
        if not (self.changed or self.added or self.dropped):
            parts.append("cell metadata or ids follow the original")
        return "; ".join(parts)


def untranslated(translation: Path) -> list[int]:
    """The markdown cells (numbered from 1 among all cells) that `sync_code(accept=True)` brought in from
    the original and no translator has rewritten yet: ``metadata.closekit.untranslated``."""
    cells = json.loads(translation.read_text())["cells"]
    return [
        n
        for n, cell in enumerate(cells, start=1)
        if cell["cell_type"] == "markdown" and cell.get("metadata", {}).get("closekit", {}).get(UNTRANSLATED)
    ]


def _numbers(numbers: tuple[int, ...]) -> str:
    return ", ".join(map(str, numbers))


def _groups(cells: list) -> tuple[list[list], list, list]:
    """(the markdown before each code cell, the code cells, the markdown after the last code cell)."""
    leads: list[list] = []
    code: list = []
    pending: list = []
    for cell in cells:
        if cell["cell_type"] == "code":
            leads.append(pending)
            code.append(cell)
            pending = []
        else:
            pending.append(cell)
    return leads, code, pending


def _source(cell: dict) -> str:
    source = cell["source"]
    return ("".join(source) if isinstance(source, list) else source).rstrip()


def _first_line(cell: dict) -> str:
    lines = _source(cell).splitlines()
    return lines[0] if lines else "(empty)"


def _code_cell(original: dict, kept: dict | None) -> dict:
    """The original's code cell; with the outputs (and execution times) of `kept` if its code is the same."""
    cell = copy.deepcopy(original)
    cell["metadata"].pop("execution", None)
    if kept is None:
        cell["outputs"], cell["execution_count"] = [], None
    else:
        cell["outputs"], cell["execution_count"] = copy.deepcopy(kept["outputs"]), kept["execution_count"]
        if "execution" in kept["metadata"]:
            cell["metadata"]["execution"] = copy.deepcopy(kept["metadata"]["execution"])
    return cell


def _untranslated(markdown: dict) -> dict:
    cell = copy.deepcopy(markdown)
    cell["metadata"].setdefault("closekit", {})[UNTRANSLATED] = True
    return cell


def _unique_ids(cells: list) -> list:
    """Code cells keep the original's ids; a markdown cell whose id is taken gets a new one."""
    taken = {c["id"] for c in cells if c["cell_type"] == "code" and "id" in c}
    seen: set[str] = set()
    for cell in cells:
        if "id" not in cell:
            continue
        if cell["cell_type"] != "code" and (cell["id"] in taken or cell["id"] in seen):
            n = 1
            while f"{cell['id']}-{n}" in taken | seen:
                n += 1
            cell["id"] = f"{cell['id']}-{n}"
        seen.add(cell["id"])
    return cells


def sync_code(original: Path, translation: Path, accept: bool = False, write: bool = True) -> Sync:
    """Give `translation` the code cells of `original`, keeping the translation's own markdown in place.

    Each markdown cell belongs to the code cell after it (markdown after the last code cell stays at
    the end). The translation's code cells are matched to the original's by their source, in order
    (:func:`pair_cells`), so the words follow their experiment when the original edits or moves cells
    around them: a cell whose code is unchanged keeps its outputs; a cell whose code changed gets the
    new code with no outputs (re-execute the chapter); cell metadata and ids follow the original.

    When the original gained or lost code cells, a translator must write words for them, so this
    raises :class:`EditionDriftError` naming the cells, unless `accept`: then a new cell comes in after
    the original's own markdown for it (marked ``metadata.closekit.untranslated``), and the markdown of
    a dropped cell moves on to the next code cell. With `write=False` nothing is written.
    """
    import nbformat

    ours = nbformat.read(original, as_version=4)
    theirs = nbformat.read(translation, as_version=4)
    en_leads, en_code, _ = _groups(ours.cells)
    leads, code, tail = _groups(theirs.cells)
    steps = pair_cells([_source(c) for c in code], [_source(c) for c in en_code])
    added = [j for i, j in steps if i is None]
    dropped = [i for i, j in steps if j is None]
    if (added or dropped) and not accept:
        lines = [
            f"{translation}: its original {original} has {len(en_code)} code cells, the translation "
            f"{len(code)}; they no longer pair up one to one:"
        ]
        lines += [f"  new in the original: code cell {j + 1}: {_first_line(en_code[j])}" for j in added]
        lines += [
            f"  gone from the original: the translation's code cell {i + 1}: {_first_line(code[i])}" for i in dropped
        ]
        lines.append(
            "Write the translation's words for these cells, or run again with --accept: new cells then come "
            "in after the original's (untranslated) markdown, and a dropped cell's markdown moves on to the "
            "next code cell."
        )
        raise EditionDriftError("\n".join(lines))

    cells: list = []
    carried: list = []  # markdown of dropped cells, waiting for the next code cell
    changed, review = [], []
    for i, j in steps:
        if j is None:
            carried += leads[i]
            continue
        if carried or i is None:
            review.append(j + 1)
        same = i is not None and _source(code[i]) == _source(en_code[j])
        if i is not None and not same:
            changed.append(j + 1)
        words = leads[i] if i is not None else [_untranslated(m) for m in en_leads[j]]
        cells += [*carried, *words, _code_cell(en_code[j], code[i] if same else None)]
        carried = []
    if carried:
        review.append(len(en_code))
    theirs.cells = _unique_ids([*cells, *carried, *tail])
    text = nbformat.writes(theirs) + "\n"
    differs = _content(text) != _content(translation.read_text())
    if differs and write:
        translation.write_text(text)
    return Sync(
        translation,
        changed=tuple(changed),
        added=tuple(j + 1 for j in added),
        dropped=tuple(i + 1 for i in dropped),
        review=tuple(review),
        differs=differs,
        written=differs and write,
    )


def pair_cells(old: list[str], new: list[str], alike: float = 0.5) -> list[tuple[int | None, int | None]]:
    """Pair the cells of an old and a new list of code sources, in order: (i, j) for old cell i that
    became new cell j (the same code, or edited), (i, None) for a dropped cell, (None, j) for a new one.

    Identical cells anchor the pairing (difflib's longest matching blocks); between anchors, a run
    of as many new cells as old ones is an edit in place, and in a run of unequal length cells pair
    where their code is still `alike` (difflib ratio), keeping the most similar pairs in order."""
    steps: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            steps += zip(range(i1, i2), range(j1, j2))
        else:
            steps += _pair_by_likeness(old, new, range(i1, i2), range(j1, j2), alike)
    return steps


def _pair_by_likeness(
    old: list[str], new: list[str], olds: range, news: range, alike: float
) -> list[tuple[int | None, int | None]]:
    """The order-keeping pairing of `olds` with `news` that maximizes the total likeness of its pairs."""
    ratio = {(i, j): difflib.SequenceMatcher(None, old[i], new[j], autojunk=False).ratio() for i in olds for j in news}
    # best[a][b]: (score, steps) for olds[a:], news[b:]
    best: dict[tuple[int, int], tuple[float, list]] = {}
    for a in range(len(olds), -1, -1):
        for b in range(len(news), -1, -1):
            if a == len(olds) or b == len(news):
                rest = [(i, None) for i in olds[a:]] + [(None, j) for j in news[b:]]
                best[a, b] = (0.0, rest)
                continue
            i, j = olds[a], news[b]
            options = [
                (best[a + 1, b][0], [(i, None), *best[a + 1, b][1]]),
                (best[a, b + 1][0], [(None, j), *best[a, b + 1][1]]),
            ]
            if ratio[i, j] >= alike:
                options.append((ratio[i, j] + best[a + 1, b + 1][0], [(i, j), *best[a + 1, b + 1][1]]))
            best[a, b] = max(options, key=lambda option: option[0])
    return best[0, 0][1]


def _content(text: str) -> dict:
    """A notebook as data, each source as one string: a list of lines or one string is the same cell."""
    notebook = json.loads(text)
    for cell in notebook.get("cells", []):
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    return notebook
