"""Where the course's files are, and a student's own copy of them.

The chapters and exercises are files, found in one of two places: the repository closekit runs from
(`pip install -e`, `bash course.sh`), or `<prefix>/share/closekit/` where a wheel of closekit puts them
(`pip install closekit-*.whl`). A student never works on those: `copy()` makes a copy of their own (what
`closekit lab` serves, what a hub gives each student on first login), so their edits never touch a file
git tracks or a package owns, and a later `git pull` or upgrade never conflicts with them.

    python -m closekit.course copy ~/closekit            # chapters, exercises, solutions: self-study
    python -m closekit.course copy ~/closekit --class    # chapters only: assignments come through nbgrader

A class's copy stays one (a marker file in it), so `closekit lab` run on it later never adds the self-study
versions that a `nbgrader fetch_assignment` into it would collide with.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from closekit.errors import CloseKitError

START = Path("notebooks") / "00-start-here.ipynb"
# The course's files, as globs relative to its root. The wheel ships all of them (pyproject.toml's
# data-files lists the same folders; tests/test_packaging.py checks both agree).
CHAPTERS = ("notebooks/*.ipynb", "notebooks/zh/*.ipynb", "exercises/README.md")  # the start page links the guide
STUDENT = ("exercises/student/*/*.ipynb",)
SOLUTIONS = ("exercises/solutions/*/*.ipynb",)
INSTRUCTOR = ("exercises/nbgrader_config.py",)
# Where fetched assignments go in a class copy: the folder the chapters' and the start page's exercise links
# point to (exercises/student/NAME/NAME.ipynb), so links work both ways in a fetched assignment.
ASSIGNMENTS = Path("exercises") / "student"
CLASS_MARKER = ".closekit-class"


def is_course(folder: Path) -> bool:
    return (folder / START).is_file()


def root() -> Path:
    """The course's files: the repository closekit runs from, else the copy a wheel installed."""
    for candidate in (Path(__file__).resolve().parent.parent, Path(sys.prefix) / "share" / "closekit"):
        if is_course(candidate):
            return candidate
    raise CloseKitError(
        f"closekit's course files are not here: no {START} in the repository or in {sys.prefix}/share/closekit; "
        "install closekit from a wheel built from the repository (python -m build), or run from a clone"
    )


def enclosing(folder: Path) -> Path | None:
    """The course folder (a copy, or the repository) that holds `folder`, if any."""
    folder = folder.resolve()
    for candidate in (folder, *folder.parents):
        if is_course(candidate):
            return candidate
    return None


def files(source: Path, *, exercises: bool = True, solutions: bool = True) -> Iterator[Path]:
    """The course's files under `source` (relative paths) that a copy of this kind holds."""
    patterns = CHAPTERS + (STUDENT if exercises else ()) + (SOLUTIONS if solutions else ())
    for pattern in patterns:
        yield from sorted(p.relative_to(source) for p in source.glob(pattern))


def copy(dest: Path | str, *, for_class: bool = False, source: Path | None = None) -> list[Path]:
    """Copy the course into `dest`, file by file, leaving every file that is already there alone (a student's
    edits survive a second run, and a newer course only adds what is new). Returns the files copied.

    For self-study: the chapters, the exercises' student versions and the solutions. `for_class` (or a copy
    that was made for a class): the chapters only; assignments arrive through nbgrader (`fetch_assignment`
    into `dest/exercises/student/`, where the chapters link them) and the solutions stay the instructor's.
    """
    source = source or root()
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise CloseKitError(f"{dest} exists and is not a folder: give a folder for your copy of the course")
    for_class = for_class or (dest / CLASS_MARKER).is_file()
    copied = []
    for relative in files(source, exercises=not for_class, solutions=not for_class):
        target = dest / relative
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)
        copied.append(target)
    (dest / ASSIGNMENTS).mkdir(parents=True, exist_ok=True)
    if for_class:
        (dest / CLASS_MARKER).write_text("closekit: a class's copy of the course (assignments come through nbgrader)\n")
    return copied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m closekit.course", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("copy", help="copy the course into a folder of your own (files already there stay)")
    c.add_argument("dest")
    c.add_argument("--class", dest="klass", action="store_true", help="chapters only: a class fetches assignments")
    sub.add_parser("where", help="print where the course's files are")
    args = p.parse_args(argv)
    try:
        if args.command == "where":
            print(root())
            return 0
        done = copy(args.dest, for_class=args.klass)
    except CloseKitError as e:
        print(f"closekit: {e}", file=sys.stderr)
        return 1
    print(f"closekit: copied {len(done)} files into {Path(args.dest).expanduser()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
