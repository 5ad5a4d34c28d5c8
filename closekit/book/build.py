"""Build the static book from the stored notebooks, without executing them.

For each edition (``book.toml``) the build stages a Sphinx project in a temporary folder — the
edition's chapter notebooks, a generated cover page, and the frame of every page (provenance,
links, the language switch) as data for the extension — then runs Sphinx with myst-nb, which renders
the stored outputs as they are (``nb_execution_mode = "off"``). The editions build in parallel, one
Sphinx process each, into ``OUT/<lang>/``; ``OUT/index.html`` sends readers to the default edition.

    python -m closekit.book build [--out build/book] [--strict]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from closekit.book import editions, frame, provenance
from closekit.book.editions import Book, Edition
from closekit.errors import BuildError

__all__ = ["BuildError", "Result", "build"]

REPO = Path(__file__).resolve().parents[2]
CONF = Path(__file__).with_name("conf")
DATA = "_closekit_book.json"  # the frame, handed to closekit.book.sphinx_ext in the staged project
MARK = ".closekit-book"  # marks a folder this build made, so a rebuild may empty it


@dataclass(frozen=True)
class Result:
    out: Path
    pages: dict[str, list[str]]  # lang -> the pages Sphinx wrote (without .html)
    warnings: list[str]  # Sphinx's warnings, each prefixed with the edition
    seconds: float


def _stage_notebook(source: Path, target: Path) -> None:
    """Copy a chapter without saved widget state (the book shows no live widgets and loads no
    widget JavaScript; each widget's text form is shown instead)."""
    notebook = json.loads(source.read_text())
    notebook.get("metadata", {}).pop("widgets", None)
    target.write_text(json.dumps(notebook, ensure_ascii=False))


def _exercise(repo: Path, book: Book, edition: Edition, name: str) -> str:
    """The repository path of the exercise `name` in `edition`'s language; a translation whose own
    version of it does not exist (yet) offers the default edition's."""
    path = edition.exercises.format(name=name)
    default = book.editions[0].exercises.format(name=name)
    return path if (repo / path).is_file() or not (repo / default).is_file() else default


def _stage(
    repo: Path, book: Book, edition: Edition, chapters: dict[str, list[str]], src: Path
) -> list[tuple[Path, str]]:
    """Write the edition's Sphinx sources into `src`; return the exercises to copy into the site."""
    src.mkdir(parents=True)
    stamps: list[provenance.Provenance | None] = []
    headers: dict[str, str] = {}
    downloads: list[tuple[Path, str]] = []
    for notebook in edition.chapters(repo):
        page = notebook.stem
        _stage_notebook(notebook, src / notebook.name)
        stamp = provenance.read(notebook)
        stamps.append(stamp)
        exercises = []
        for name in book.exercises.get(page, ()):
            path = _exercise(repo, book, edition, name)
            found = (repo / path).is_file()
            stem = Path(path).stem
            if found:
                downloads.append((repo / path, f"_exercises/{stem}.ipynb"))
            exercises.append(frame.Exercise(stem, path, f"_exercises/{stem}.ipynb" if found else None))
        headers[page] = frame.chapter_header(book, edition, notebook.relative_to(repo).as_posix(), stamp, exercises)
    pages = [*chapters[edition.lang], frame.GLOSSARY] if chapters[edition.lang] else []
    (src / "index.md").write_text(frame.cover(book, edition, pages, stamps))
    (src / f"{frame.GLOSSARY}.md").write_text(frame.glossary(edition))
    switches = {
        page: frame.switch(book, edition, page, chapters)
        for page in [*chapters[edition.lang], frame.GLOSSARY, "index", "search", "genindex"]
    }
    data = {
        "repo": str(repo),
        "notebooks": edition.notebooks,
        "lab": book.lab,
        "headers": headers,
        "switches": switches,
        # a translation links the chapters it does not have yet to the default edition's
        "fallback": None
        if edition is book.editions[0]
        else {"lang": book.editions[0].lang, "notebooks": book.editions[0].notebooks},
    }
    (src / DATA).write_text(json.dumps(data, ensure_ascii=False))
    return downloads


def _empty(out: Path) -> None:
    """Make `out` an empty folder of ours; refuse to empty a folder this build did not make."""
    if out.exists():
        if any(out.iterdir()) and not (out / MARK).exists():
            raise BuildError(f"{out} exists and was not made by closekit.book: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARK).write_text("made by python -m closekit.book build; emptied by the next build\n")


def _front_door(book: Book, out: Path) -> None:
    """OUT/index.html: straight to the default edition, with a link to each."""
    default = book.editions[0].lang
    links = " · ".join(f'<a href="{e.lang}/index.html" hreflang="{e.language}">{e.name}</a>' for e in book.editions)
    (out / "index.html").write_text(
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{book.editions[0].title}</title>"
        f'<meta http-equiv="refresh" content="0; url={default}/index.html"></head>'
        f"<body><p>{links}</p></body></html>\n"
    )


def build(
    out: Path,
    repo: Path = REPO,
    book: Book | None = None,
    strict: bool = False,
) -> Result:
    """Build every edition of the book from `repo`'s stored notebooks into `out` (emptied first).

    Editions build in parallel. Raises BuildError if Sphinx fails, or, with `strict`, if it warned
    (a broken link, a missing cross-reference …)."""
    book = book or editions.load()
    started = time.monotonic()
    out = out.resolve()
    _empty(out)
    chapters = {e.lang: [nb.stem for nb in e.chapters(repo)] for e in book.editions}
    with tempfile.TemporaryDirectory(prefix="closekit-book-") as tmp:
        runs = []
        for edition in book.editions:
            # myst-nb writes its copies of the notebooks beside Sphinx's output folder: one scratch
            # folder per edition, so that parallel builds do not meet.
            work = Path(tmp) / edition.lang
            downloads = _stage(repo, book, edition, chapters, work / "src")
            command = [
                sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E",
                "-c", str(CONF), "-d", str(work / "doctrees"), "-w", str(work / "warnings"),
                "-D", f"language={edition.language}", "-D", f"html_title={edition.title}",
                str(work / "src"), str(work / "html"),
            ]  # fmt: skip
            env = {**os.environ, "PYTHONHASHSEED": "0"}  # a reproducible search index
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            runs.append((edition, process, work, downloads))
        found: list[str] = []
        for edition, process, work, downloads in runs:
            output, _ = process.communicate()
            if process.returncode:
                raise BuildError(f"Sphinx failed on the {edition.lang} edition:\n{output}")
            staged = f"{work / 'src'}/"  # name the chapter as it is in the repository, not our copy
            found += [
                f"[{edition.lang}] {line.replace(staged, f'{edition.notebooks}/')}"
                for line in (work / "warnings").read_text().splitlines()
                if line
            ]
            site = out / edition.lang
            shutil.move(work / "html", site)
            shutil.rmtree(site / "_sources", ignore_errors=True)  # empty: the book does not copy sources
            for source, target in downloads:
                (site / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, site / target)
    _front_door(book, out)
    pages = {
        e.lang: sorted(p.relative_to(out / e.lang).with_suffix("").as_posix() for p in (out / e.lang).rglob("*.html"))
        for e in book.editions
    }
    if strict and found:
        raise BuildError("Sphinx warned (--strict):\n" + "\n".join(found))
    return Result(out, pages, found, time.monotonic() - started)
