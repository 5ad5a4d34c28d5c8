"""The `closekit` command: list and run scenarios, export traces, check this machine, open the course."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from closekit.errors import CloseKitError


def _list(_args: argparse.Namespace) -> int:
    from closekit.library import SCENARIOS

    width = max(map(len, SCENARIOS))
    for name, scenario in SCENARIOS.items():
        print(f"{name:<{width}}  §{scenario.section:<6} {scenario.description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import closekit

    trace = closekit.run(args.name)
    if args.json:
        print(trace.to_json())
    else:
        print(trace.transcript())
    if args.pcap:
        count = trace.to_pcap(args.pcap)
        print(f"wrote {count} packets to {args.pcap}", file=sys.stderr)
    if args.svg:
        from closekit.render import write_diagrams

        for path in write_diagrams(trace, args.svg):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _doctor(_args: argparse.Namespace) -> int:
    from closekit.doctor import report

    text, _complete = report()
    print(text)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from closekit import claims

    verdicts = claims.verify()
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
    verify.set_defaults(func=_verify)
    lab = sub.add_parser("lab", help="open the course in JupyterLab")
    lab.add_argument("--notebooks", default="notebooks")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--no-browser", action="store_true")
    lab.set_defaults(func=_lab)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except CloseKitError as e:
        print(f"closekit: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
