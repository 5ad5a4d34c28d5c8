"""python -m closekit.book build | stamp | check — see closekit/book/__init__.py and README.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from closekit.book import editions, provenance
from closekit.book.build import REPO, BuildError, build


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
    print("\n\n".join(problems) or "the editions share their code cells")
    return 1 if problems else 0


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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
