"""Write the course's navigation cells: previous/next and contents on every chapter, chapter <-> exercise links.

The cells are generated, not written by hand, so that they survive any rewrite of the chapters' prose:
each carries `metadata.closekit.generated`, and a run replaces exactly those cells (and nothing else)
with what the current files say. Titles are read from each notebook's first heading.

    python tools/navigation.py           # rewrite the cells in notebooks/ and exercises/solutions/
    python tools/navigation.py --check   # exit 1 if a notebook's navigation is out of date (CI)

Student versions (exercises/student/) get theirs from their instructor version through
`nbgrader generate_assignment`. An exercise's editions in other languages (`ex01-close-zh`, see
tools/exercise_editions.py) link their edition's chapters (`notebooks/zh/`) by number.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from closekit.lang import edition_name

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = ROOT / "exercises" / "solutions"
STUDENT = "exercises/student"

# Which chapters each exercise practises (the instructor guide's table says the same).
EXERCISES: dict[str, tuple[int, ...]] = {
    "ex01-close": (1, 5),
    "ex02-shutdown": (2,),
    "ex03-linger": (3, 4),
    "ex04-when-close-returns": (4,),
    "ex05-what-the-peer-sees": (5,),
    "ex06-fix": (6,),
}
KEY = "closekit"
# The line an exercise's edition puts under its title, and how it names chapter N.
EDITION_WORDS = {"zh": ("对应章节：", "第 {number} 章")}


def title(path: Path) -> str:
    """The notebook's first heading, without the '#'."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def chapters() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("0*.ipynb") if re.match(r"0\d-", p.name))


def chapter_number(path: Path) -> int:
    return int(path.name[:2])


def exercise_path(name: str, kind: str = STUDENT) -> str:
    return f"{kind}/{name}/{name}.ipynb"


def cell(kind: str, text: str) -> dict:
    return {
        "cell_type": "markdown",
        "id": f"closekit-{kind}",
        "metadata": {KEY: {"generated": kind}, "tags": ["navigation"]},
        "source": text.splitlines(keepends=True),  # as nbformat stores it, so a re-executed notebook compares equal
    }


def chapter_cells(path: Path, all_chapters: list[Path]) -> tuple[dict, dict]:
    """The line under a chapter's title and the block at its end."""
    i = all_chapters.index(path)
    previous = all_chapters[i - 1] if i > 0 else None
    following = all_chapters[i + 1] if i + 1 < len(all_chapters) else None
    parts = []
    if previous is not None:
        parts.append(f"← [{title(previous)}]({previous.name})")
    if path.name != "00-start-here.ipynb":
        parts.append("[contents](00-start-here.ipynb)")
    if following is not None:
        parts.append(f"[{title(following)}]({following.name}) →")
    line = " · ".join(parts)
    number = chapter_number(path)
    practice = [name for name, numbers in EXERCISES.items() if number in numbers]
    bottom = [f"---\n\n{line}"]
    if practice:
        links = ", ".join(
            f"[{title(SOLUTIONS / name / f'{name}.ipynb')}](../{exercise_path(name)})" for name in practice
        )
        bottom.insert(0, f"**Practise this chapter:** {links} (graded, checked on the live kernel).")
    top = cell("navigation-top", f"<small>{line}</small>")
    return top, cell("navigation-bottom", "\n\n".join(bottom))


def start_page_cell() -> dict:
    """The start page's list of exercises: the student versions, and the solutions kept apart."""
    rows = []
    for name, numbers in EXERCISES.items():
        source = SOLUTIONS / name / f"{name}.ipynb"
        where = ", ".join(f"[{n}]({p.name})" for p in chapters() for n in [chapter_number(p)] if n in numbers)
        rows.append(f"| [{title(source)}](../{exercise_path(name)}) | {where} |")
    return cell(
        "exercises",
        "## Exercises\n\n"
        "Predict-then-run questions, choose-the-fix, and code of your own, each checked on the live kernel.\n"
        "Open the student versions below (your course may hand them out through nbgrader instead).\n\n"
        "| exercise | chapters |\n|---|---|\n" + "\n".join(rows) + "\n\n"
        "Solutions, for self-study once you have answered, are kept apart in "
        "[`../exercises/solutions/`](../exercises/solutions/) — each with its answers and the verdicts "
        "this kernel gave. Instructors: [`../exercises/README.md`](../exercises/README.md).",
    )


def exercise_cell(name: str) -> dict:
    links = []
    for number in EXERCISES[name]:
        chapter = next(p for p in chapters() if chapter_number(p) == number)
        links.append(f"[{title(chapter)}](../../../notebooks/{chapter.name})")
    return cell("navigation-top", "<small>Chapters: " + " · ".join(links) + "</small>")


def edition_exercise_cell(name: str, lang: str) -> dict:
    """The chapters line of an exercise's `lang` edition: its edition's chapters, named by number."""
    lead, chapter_name = EDITION_WORDS[lang]
    links = []
    for number in EXERCISES[name]:
        chapter = next(p for p in chapters() if chapter_number(p) == number)
        links.append(f"[{chapter_name.format(number=number)}](../../../notebooks/{lang}/{chapter.name})")
    return cell("navigation-top", f"<small>{lead}" + " · ".join(links) + "</small>")


def _without_generated(cells: list[dict]) -> list[dict]:
    return [c for c in cells if KEY not in c.get("metadata", {}) or "generated" not in c["metadata"][KEY]]


def _after_title(cells: list[dict]) -> int:
    for i, c in enumerate(cells):
        if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("# "):
            return i + 1
    return 0


def _normal(notebook: dict) -> list:
    """The cells with each source as one string (nbformat accepts a string or a list of lines)."""
    return [{**c, "source": "".join(c["source"])} for c in notebook["cells"]]


def navigate(path: Path, top: dict | None, bottom: dict | None) -> bool:
    """Put `top` under the title and `bottom` at the end of `path`; True if the file changed."""
    text = path.read_text()
    notebook = json.loads(text)
    cells = _without_generated(notebook["cells"])
    if top is not None:
        cells.insert(_after_title(cells), top)
    if bottom is not None:
        cells.append(bottom)
    notebook["cells"] = cells
    new = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if _normal(json.loads(new)) == _normal(json.loads(text)):
        return False
    path.write_text(new)
    return True


def plan() -> list[tuple[Path, dict | None, dict | None]]:
    every = chapters()
    jobs: list[tuple[Path, dict | None, dict | None]] = []
    for path in every:
        top, bottom = chapter_cells(path, every)
        if path.name == "00-start-here.ipynb":
            bottom = start_page_cell()
            bottom["source"] += ["\n", "\n", *chapter_cells(path, every)[1]["source"]]
        jobs.append((path, top, bottom))
    for name in EXERCISES:
        jobs.append((SOLUTIONS / name / f"{name}.ipynb", exercise_cell(name), None))
        for lang in EDITION_WORDS:
            edition = edition_name(name, lang)
            jobs.append((SOLUTIONS / edition / f"{edition}.ipynb", edition_exercise_cell(name, lang), None))
    return jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    args = p.parse_args(argv)
    stale = []
    for path, top, bottom in plan():
        if args.check:
            before = path.read_text()
            changed = navigate(path, top, bottom)
            if changed:
                path.write_text(before)
                stale.append(path)
        elif navigate(path, top, bottom):
            print(f"navigation: updated {path.relative_to(ROOT)}")
    if stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"navigation out of date in {names}: run python tools/navigation.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
