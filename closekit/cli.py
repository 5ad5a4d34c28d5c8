"""The `closekit` command: list and run scenarios, export traces, check this machine, open the course."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from closekit.errors import CloseKitError, LanguageError, UsageError
from closekit.lang import ENV, LANGUAGES


def _list(_args: argparse.Namespace) -> int:
    from closekit.library import SCENARIOS

    width = max(map(len, SCENARIOS))
    for name, scenario in SCENARIOS.items():
        print(f"{name:<{width}}  §{scenario.section:<6} {scenario.description}")
    return 0


def _writable_file(path: str, what: str) -> Path:
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file name, e.g. {target / 'trace.pcap'}")
    if not target.parent.is_dir():
        raise UsageError(f"{what} {path}: the directory {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise UsageError(f"{what} {path}: the directory {target.parent} is not writable")
    return target


def _writable_directory(path: str, what: str) -> Path:
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{what} {path} exists and is not a directory; give a directory for the SVG files")
    if not target.exists() and not target.parent.is_dir():
        raise UsageError(f"{what} {path}: its parent directory {target.parent} does not exist")
    return target


def _run(args: argparse.Namespace) -> int:
    import closekit

    scenario = closekit.get(args.name)  # an unknown name fails here, before the outputs are checked
    pcap = _writable_file(args.pcap, "--pcap") if args.pcap else None
    svg = _writable_directory(args.svg, "--svg") if args.svg else None
    trace = closekit.run(scenario.name)
    print(trace.to_json() if args.json else trace.transcript())
    try:
        if pcap is not None:
            count = trace.to_pcap(str(pcap))
            print(f"wrote {count} packets to {pcap}", file=sys.stderr)
        if svg is not None:
            from closekit.render import write_diagrams

            for path in write_diagrams(trace, svg):
                print(f"wrote {path}", file=sys.stderr)
    except OSError as e:
        print(f"closekit: could not write {e.filename or 'the output'}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


def _doctor(_args: argparse.Namespace) -> int:
    """Exit status 0: everything the course uses is here; 1: a fallback mode; 2: the lab cannot start."""
    from closekit.doctor import report

    text, status = report()
    print(text)
    return status


def _verify(args: argparse.Namespace) -> int:
    from closekit import claims, lang

    chosen = args.lang or lang.current()  # detected before anything runs: a bad CLOSEKIT_LANG stops here
    ledger = claims.by_section(args.section) if args.section else claims.CLAIMS
    if not ledger:
        sections = ", ".join(dict.fromkeys(c.section for c in claims.CLAIMS))
        raise UsageError(f"no claims in section {args.section!r}; the sections are: {sections}")
    with lang.use(chosen):  # the evidence is written as the checks run: in the language asked for
        verdicts = claims.verify(ledger)
        print(claims.to_json(verdicts) if args.json else claims.table(verdicts))
    return 0


def _lab(args: argparse.Namespace) -> int:
    """JupyterLab on the course folder (so the chapters can link to ../exercises), start page open."""
    start = Path(args.notebooks).resolve() / "00-start-here.ipynb"
    if not start.is_file():
        raise CloseKitError(f"no course start page at {start}; pass --notebooks DIR (the folder holding it)")
    root = start.parent.parent
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", f"--port={args.port}"]
    if args.no_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:
        command.append("--allow-root")  # course.sh runs as root on a fresh machine
    command.append("--ServerApp.answer_yes=True")  # one Ctrl-C stops the server, no question asked
    os.execv(sys.executable, [*command, str(start.relative_to(root))])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="closekit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the built-in scenarios").set_defaults(func=_list)
    run = sub.add_parser("run", help="run a scenario on the real kernel and print its transcript")
    run.add_argument("name")
    run.add_argument("--json", action="store_true", help="print the trace as JSON instead")
    run.add_argument("--pcap", metavar="FILE", help="also write the captured packets as pcap")
    run.add_argument("--svg", metavar="DIR", help="also write the diagrams as SVG files")
    run.set_defaults(func=_run)
    sub.add_parser("doctor", help="what this machine allows (namespaces, capture, dot)").set_defaults(func=_doctor)
    verify = sub.add_parser("verify", help="check every claim of the document on this kernel")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--section", help="only the claims of this section of the document (3 includes 3.1, 3.2 …)")
    verify.add_argument(
        "--lang",
        choices=LANGUAGES,
        help=f"the language of the claims and verdicts (default: ${ENV}, else the folder: …/zh/ or *-zh is zh)",
    )
    verify.set_defaults(func=_verify)
    lab = sub.add_parser("lab", help="open the course in JupyterLab")
    lab.add_argument("--notebooks", default="notebooks")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--no-browser", action="store_true")
    lab.set_defaults(func=_lab)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 the experiment or an output failed; 2 the command line or scenario was
    wrong; 130 interrupted; 141 the reader of the output went away (`closekit list | head -1`)."""
    from closekit.errors import ScenarioError

    args = parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        return status
    except (UsageError, ScenarioError, LanguageError) as e:
        print(f"closekit: {e}", file=sys.stderr)
        return 2
    except CloseKitError as e:
        print(f"closekit: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141
    except OSError as e:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"closekit: could not write the output: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
