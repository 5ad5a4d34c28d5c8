"""python -m closekit.book build | stamp | check | sync — see closekit/book/__init__.py and README.md."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from closekit.book import editions, provenance
from closekit.book.build import REPO, BuildError, build
from closekit.errors import EditionDriftError


def _build(args: argparse.Namespace) -> int:
    try:
        result = build(Path(args.out), repo=Path(args.repo), strict=args.strict)
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    counts = ", ".join(f"{lang}: {len(pages)}" for lang, pages in result.pages.items())
    print(f"book: {result.out}/index.html ({counts} pages) in {result.seconds:.1f} s")
    return 0


def _stamp(args: argparse.Namespace) -> int:
    for path in map(Path, args.notebooks):
        if args.execute:
            provenance.execute(path)
        made = provenance.stamp(path, kernel=None if args.execute else args.kernel)
        print(f"{path}: outputs from Linux {made.kernel}, {made.date}")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Every translated chapter runs the code of its original (the test suite checks the same)."""
    repo = Path(args.repo)
    book = editions.load()
    default, problems = book.editions[0], []
    for edition in book.editions[1:]:
        for notebook in edition.chapters(repo):
            original = repo / default.notebooks / notebook.name
            if not original.is_file():
                problems.append(f"{notebook}: no chapter of that name in {default.notebooks}/")
                continue
            problems += [f"{notebook}: {p}" for p in editions.code_drift(original, notebook)]
            left = editions.untranslated(notebook)
            if left:
                problems.append(
                    f"{notebook}: markdown cells {', '.join(map(str, left))} are still the original's words "
                    "(metadata closekit.untranslated): translate them and remove the mark"
                )
    print("\n\n".join(problems) or "the editions share their code cells")
    return 1 if problems else 0


def _translations(repo: Path, names: list[str]) -> list[tuple[Path, Path]]:
    """(original, translation) for the named translated chapters, or for every one."""
    book = editions.load()
    default = book.editions[0]
    chapters = [nb for e in book.editions[1:] for nb in e.chapters(repo)]
    if names:
        chapters = [Path(n).resolve() for n in names]
    # relative paths, so that messages name the files as a reader of the repository does
    return [(Path(os.path.relpath(repo / default.notebooks / nb.name)), Path(os.path.relpath(nb))) for nb in chapters]


def _sync(args: argparse.Namespace) -> int:
    """Give translated chapters their original's code cells; their own markdown stays where it was."""
    repo = Path(args.repo)
    status, rerun = 0, []
    for original, translation in _translations(repo, args.notebooks):
        if not original.is_file():
            print(f"{translation}: no chapter of that name in {original.parent}/", file=sys.stderr)
            status = 1
            continue
        try:
            done = editions.sync_code(original, translation, accept=args.accept, write=not args.check)
        except EditionDriftError as error:
            print(error, file=sys.stderr)
            status = 1
            continue
        print(done.report())
        if done.differs and args.check:
            status = 1
        if done.written and (done.changed or done.added):
            rerun.append(str(translation))
    if rerun:
        print(
            "then: python tools/navigation.py && python -m closekit.book stamp --execute " + " ".join(rerun),
        )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closekit.book", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build the book from the stored notebooks")
    b.add_argument("--out", default=str(REPO / "build" / "book"), help="output folder (emptied first)")
    b.add_argument("--repo", default=str(REPO), help="the repository to read notebooks from")
    b.add_argument("--strict", action="store_true", help="fail on any Sphinx warning (broken links …)")
    b.set_defaults(run=_build)
    s = commands.add_parser("stamp", help="record the kernel and date of notebooks' outputs")
    s.add_argument("notebooks", nargs="+")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--execute", action="store_true", help="re-execute in place first, then stamp this kernel")
    how.add_argument("--kernel", help="the kernel release the outputs were made on (default: this machine's)")
    s.set_defaults(run=_stamp)
    c = commands.add_parser("check", help="do the editions' chapters share their code cells?")
    c.add_argument("--repo", default=str(REPO))
    c.set_defaults(run=_check)
    y = commands.add_parser(
        "sync",
        help="give translated chapters the code cells of their originals (after the originals changed), "
        "keeping each translation's markdown beside its experiment",
    )
    y.add_argument("notebooks", nargs="*", help="translated chapters (default: all of them)")
    y.add_argument("--repo", default=str(REPO))
    y.add_argument(
        "--accept",
        action="store_true",
        help="when the original gained or lost code cells: bring new ones in with its (untranslated) markdown",
    )
    y.add_argument("--check", action="store_true", help="change nothing; exit 1 if a translation is out of date")
    y.set_defaults(run=_sync)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
