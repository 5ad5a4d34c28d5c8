"""Keep each exercise's other-language editions running exactly the English notebook's code.

An exercise's Chinese edition is an nbgrader assignment of its own, named by ``closekit.lang.edition_name``
(``ex01-close`` -> ``ex01-close-zh``, in ``exercises/solutions/ex01-close-zh/ex01-close-zh.ipynb``): its
folder's name is what makes its kernel speak Chinese. Its markdown is written for its readers; its code
cells, their nbgrader metadata (grade ids, points, locks) and their order are the English notebook's.
This tool copies them over, keeping the edition's markdown and the outputs of every code cell whose code
did not change, and stops with a message naming the cell where the two notebooks' cells do not line up.

    python tools/exercise_editions.py            # copy the English code into every edition
    python tools/exercise_editions.py --check    # change nothing; exit 1 if an edition is out of date (CI)
    python tools/exercise_editions.py --new NAME # start the editions of a new exercise from its English one

Navigation cells (`metadata.closekit.generated`) are each edition's own: tools/navigation.py writes them.
After a sync, re-execute the editions whose code changed and regenerate their student versions
(exercises/README.md, "After editing an exercise").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from closekit.lang import LANGUAGES, edition_name

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "exercises" / "solutions"


class OutOfLine(Exception):
    """The edition's cells do not line up with the English notebook's: the message says where."""


def notebook_path(name: str) -> Path:
    return SOLUTIONS / name / f"{name}.ipynb"


def english_exercises() -> list[str]:
    """The English assignments: every solutions folder that is not another language's edition."""
    editions = tuple(f"-{lang}" for lang in LANGUAGES[1:])
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and not p.name.endswith(editions))


def _generated(cell: dict) -> bool:
    return "generated" in cell.get("metadata", {}).get("closekit", {})


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _label(cell: dict) -> str:
    grade_id = _grade_id(cell)
    return f"a {cell['cell_type']} cell" + (f" {grade_id!r}" if grade_id else " (no grade id)")


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def sync(english: dict, edition: dict, where: str) -> dict:
    """`edition` with the English notebook's code cells and nbgrader metadata; its own markdown words."""
    theirs = [c for c in english["cells"] if not _generated(c)]
    ours = [c for c in edition["cells"] if not _generated(c)]
    for index, (e, o) in enumerate(zip(theirs, ours), start=1):
        if e["cell_type"] != o["cell_type"] or _grade_id(e) != _grade_id(o):
            raise OutOfLine(
                f"{where}: cell {index} (not counting navigation) is {_label(e)} in the English notebook but "
                f"{_label(o)} here. The editions have the same cells in the same order; only markdown words differ."
            )
    if len(theirs) != len(ours):
        longer, owner = (theirs, "the English notebook") if len(theirs) > len(ours) else (ours, "this edition")
        raise OutOfLine(
            f"{where}: the English notebook has {len(theirs)} cells and this edition {len(ours)} (not counting "
            f"navigation); the first extra one, in {owner}, is {_label(longer[min(len(theirs), len(ours))])}."
        )
    pairs = iter(zip(theirs, ours))
    cells = []
    for cell in edition["cells"]:
        if _generated(cell):
            cells.append(cell)
            continue
        e, o = next(pairs)
        if e["cell_type"] == "code":
            new = copy.deepcopy(e)
            new["id"] = o.get("id", e.get("id"))
            new["metadata"] = {k: v for k, v in e["metadata"].items() if k != "execution"}
            if _source(e) == _source(o):  # same code: its outputs (in the edition's language) still hold
                new["outputs"], new["execution_count"] = o["outputs"], o["execution_count"]
                if "execution" in o["metadata"]:
                    new["metadata"]["execution"] = o["metadata"]["execution"]
            else:
                new["outputs"], new["execution_count"] = [], None
        else:
            new = copy.deepcopy(o)
            new["metadata"] = {k: v for k, v in o["metadata"].items() if k != "nbgrader"}
            if "nbgrader" in e["metadata"]:
                new["metadata"]["nbgrader"] = e["metadata"]["nbgrader"]
        cells.append(new)
    metadata = {**edition["metadata"], "kernelspec": english["metadata"]["kernelspec"]}
    return {**edition, "cells": cells, "metadata": metadata}


def start(english: dict) -> dict:
    """A new edition: the English notebook without outputs, its markdown to be rewritten for its readers."""
    new = copy.deepcopy(english)
    for cell in new["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"].pop("execution", None)
    return new


def _text(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _normal(notebook: dict) -> list[dict]:
    return [{**c, "source": _source(c)} for c in notebook["cells"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if an edition is out of date")
    p.add_argument("--new", metavar="NAME", help="start the editions of the English exercise NAME")
    args = p.parse_args(argv)
    stale, problems = [], []
    for name in [args.new] if args.new else english_exercises():
        english = json.loads(notebook_path(name).read_text())
        for lang in LANGUAGES[1:]:
            path = notebook_path(edition_name(name, lang))
            where = str(path.relative_to(ROOT))
            if args.new:
                path.parent.mkdir(exist_ok=True)
                path.write_text(_text(start(english)))
                print(f"started {where}: rewrite its markdown, then run tools/navigation.py")
                continue
            if not path.is_file():
                problems.append(f"{where} is missing: start it with --new {name}")
                continue
            edition = json.loads(path.read_text())
            try:
                synced = sync(english, edition, where)
            except OutOfLine as e:
                problems.append(str(e))
                continue
            if _normal(synced) == _normal(edition) and synced["metadata"] == edition["metadata"]:
                continue
            stale.append(where)
            if not args.check:
                path.write_text(_text(synced))
                print(f"synced {where}: re-execute it where its code changed")
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}: run python tools/exercise_editions.py", file=sys.stderr)
    return 1 if problems or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
