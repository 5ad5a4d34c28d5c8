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
    """Exit status 0: every claim was judged from its own run (whatever the verdict); 1: some claim has
    no evidence here (its scenario could not run, a premise did not hold, the run did not do its step)."""
    from closekit import claims, lang

    if args.kernels:
        return _verify_kernels(args)
    if args.save:
        raise UsageError("--save stores the table across kernels: give --kernels too (e.g. --kernels 6.1,6.12,6.18)")
    chosen = args.lang or lang.current()  # detected before anything runs: a bad CLOSEKIT_LANG stops here
    ledger = claims.by_section(args.section) if args.section else claims.CLAIMS
    if not ledger:
        sections = ", ".join(dict.fromkeys(c.section for c in claims.CLAIMS))
        raise UsageError(f"no claims in section {args.section!r}; the sections are: {sections}")
    with lang.use(chosen):  # the evidence is written as the checks run: in the language asked for
        verdicts = claims.verify(ledger)
        print(claims.to_json(verdicts) if args.json else claims.table(verdicts))
    return 1 if any(v.why for v in verdicts) else 0


def _kernel_list(value: str) -> list[str]:
    from closekit.kernels.debian import check_spec

    specs = [s.strip() for s in value.split(",") if s.strip()]
    for spec in specs:
        if spec != "host":
            check_spec(spec)
    if not specs:
        raise UsageError("--kernels needs kernel versions, e.g. --kernels 6.1,6.12,6.18")
    return specs


def _verify_kernels(args: argparse.Namespace) -> int:
    """The ledger on each kernel of --kernels (the host's own, the others in qemu), as one table."""
    import json

    from closekit.kernels import ledger

    if args.section or args.lang:
        raise UsageError("--kernels runs the whole ledger in English; leave out --section and --lang")
    specs = _kernel_list(args.kernels)
    data = ledger.collect(specs, timeout=args.timeout, echo=_echo if args.verbose else None)
    if args.save:
        ledger.save(data)
        print(f"wrote {ledger.STORED}", file=sys.stderr)
    print(json.dumps(data, indent=1, ensure_ascii=False) if args.json else ledger.plain(data))
    return 0 if ledger.evidence_complete(data) else 1


def _echo(line: str) -> None:
    print(f"  | {line}", file=sys.stderr, flush=True)


def _kernels(args: argparse.Namespace) -> int:
    """`closekit kernels run|fetch|table`: other kernels, booted in qemu from Debian's packages."""
    from closekit.kernels import debian

    if args.action == "table":
        from closekit.kernels import ledger

        print(ledger.plain(ledger.load()))
        return 0
    debian.check_spec(args.kernel)
    package = debian.fetch(args.kernel)
    if args.action == "fetch":
        print(f"{package.name} {package.version}: Linux {package.release}, in {package.root}")
        return 0
    from closekit.kernels import guest

    argv = list(args.argv)
    if not argv:
        raise UsageError("kernels run KERNEL -- COMMAND: give closekit's arguments after --, e.g. -- verify --json")
    argv = argv if args.python else ["-m", "closekit", *argv]
    result = guest.run(package, argv, timeout=args.timeout, venv=args.venv, accel=args.accel,
                       echo=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    print(f"closekit: ran on Linux {result.release} ({result.version}) in qemu ({result.accel}), "
          f"{result.seconds:.0f} s, exit {result.status}", file=sys.stderr)  # fmt: skip
    return result.status


def _port(given: str) -> int:
    """A TCP port JupyterLab may listen on, checked here: JupyterLab takes a negative one with a
    traceback and a too-large one without a word."""
    port = int(given) if given.isascii() and given.isdecimal() else -1
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {given} is not a TCP port: give a whole number from 1 to 65535")
    return port


def _lab(args: argparse.Namespace) -> int:
    """JupyterLab on the reader's own copy of the course, opened at the start page.

    The copy (made on first use, see closekit.course) keeps a reader's edits off the files git tracks; the
    server's default URL is the start page, so the URL JupyterLab prints opens it too.
    """
    from closekit import course

    port = _port(args.port)
    folder = Path(args.dir).expanduser().resolve()
    copied = course.copy(folder, for_class=args.for_class)
    if copied:
        print(f"closekit: copied the course into {folder} ({len(copied)} files): edit them there", file=sys.stderr)
    start = f"/lab/tree/{course.START.as_posix()}"
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", f"--port={port}"]
    command.append(f"--LabApp.default_url={start}")
    # checkpoints out of the assignment folders (nbgrader's submit listed them as EXTRA)
    command.append("--FileContentsManager.checkpoints_class=closekit.exercises.checkpoints.RootCheckpoints")
    if args.no_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:
        command.append("--allow-root")  # course.sh runs as root on a fresh machine
    command.append("--ServerApp.answer_yes=True")  # one Ctrl-C stops the server, no question asked
    os.execv(sys.executable, command)
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
    verify.add_argument(
        "--kernels",
        metavar="LIST",
        help="the ledger on each of these kernels, side by side (e.g. 6.1,6.12,6.18: the host's own runs here, "
        "the others in qemu from Debian's packages)",
    )
    verify.add_argument("--save", action="store_true", help="with --kernels: store the table (closekit/kernels/)")
    verify.add_argument("--timeout", type=float, default=900, help="with --kernels: seconds per kernel")
    verify.add_argument("--verbose", action="store_true", help="with --kernels: show each guest's progress")
    verify.set_defaults(func=_verify)
    kernels = sub.add_parser("kernels", help="other kernels: boot Debian's kernel packages in qemu, run closekit")
    actions = kernels.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help="download and unpack a Debian kernel package (6.1, 6.12, 6.1.0-57 …)")
    fetch.add_argument("kernel")
    run_in = actions.add_parser("run", help="boot a kernel in qemu and run a closekit command in it")
    run_in.add_argument("kernel", help="6.1 (Debian 12), 6.12 (Debian 13's series), or one build: 6.1.0-57, 6.12.118")
    run_in.add_argument("argv", nargs="*", help="-- then closekit's arguments (e.g. -- verify --json)")
    run_in.add_argument("--python", action="store_true", help="the arguments are Python's (e.g. -- -m pytest …)")
    run_in.add_argument("--venv", action="store_true", help="the guest also gets this virtual environment and dot")
    run_in.add_argument("--timeout", type=float, default=900, help="seconds the command may take (default 900)")
    run_in.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    actions.add_parser("table", help="the stored ledger across kernels")
    kernels.set_defaults(func=_kernels)
    lab = sub.add_parser("lab", help="open your copy of the course in JupyterLab, at the start page")
    lab.add_argument(
        "--dir",
        default="~/closekit",
        help="your copy of the course: made on first use, never overwritten (default: ~/closekit)",
    )
    lab.add_argument(
        "--class",
        dest="for_class",
        action="store_true",
        help="a class's copy: chapters only; assignments come through nbgrader into DIR/exercises/student",
    )
    lab.add_argument("--port", default="8888", help="the TCP port JupyterLab listens on (1-65535)")
    lab.add_argument("--no-browser", action="store_true")
    lab.set_defaults(func=_lab)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 the experiment or an output failed; 2 the command line or scenario was
    wrong; 130 interrupted; 141 the reader of the output went away (`closekit list | head -1`)."""
    from closekit.errors import ScenarioError

    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] | None = None
    if argv[:2] == ["kernels", "run"] and "--" in argv:  # what follows -- is the guest's command, untouched
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    args = parser().parse_args(argv)
    if command is not None:
        args.argv = [*args.argv, *command]
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
