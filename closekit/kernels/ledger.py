"""The claims ledger across kernels: `closekit verify --json` on each, side by side, and why they differ.

A kernel is named as `closekit kernels run` takes it (6.1, 6.12, 6.1.0-57 …); one the host runs
(`6.18` here) runs on the host, the others in qemu. Each column keeps the kernel's full release
(`uname -r` and `uname -v`, which names Debian's package version), where and when it ran, and every
claim's verdict, evidence and premises. Where a verdict, its evidence (durations aside) or a premise
differs between kernels, the table says which kernel change explains it (changes.toml: the function
in Linux's TCP code, read in each version's source) or that nobody has explained it yet.

The stored table (ledger.json beside this file) is regenerated with one command:

    closekit verify --kernels 6.1,6.12,6.18 --save
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from closekit.errors import CloseKitError
from closekit.lang import current, text

STORED = Path(__file__).with_name("ledger.json")
CHANGES = Path(__file__).with_name("changes.toml")
COMMAND = "closekit verify --kernels {kernels} --save"
NO_EVIDENCE = ("could not run here", "premise did not hold", "not evidence")


def on_host(spec: str) -> bool:
    """Does `spec` name the kernel this machine runs (6.18 for 6.18.44-…, or 'host')?"""
    release = os.uname().release
    return spec == "host" or release == spec or release.startswith((spec + ".", spec + "-"))


def run_kernel(spec: str, timeout: float = 900, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run `closekit verify --json` on kernel `spec` (on the host, or in a guest); its column of the table."""
    argv = ["-m", "closekit", "verify", "--json", "--lang", "en"]
    started = datetime.datetime.now(datetime.UTC)
    if on_host(spec):
        done = subprocess.run([sys.executable, *argv], capture_output=True, timeout=timeout)
        status, stdout, stderr = done.returncode, done.stdout, done.stderr
        where = {"release": os.uname().release, "version": os.uname().version, "package": "", "where": "host"}
    else:
        from closekit.kernels import debian, guest

        package = debian.fetch(spec)
        result = guest.run(package, argv, timeout=timeout, echo=echo)
        status, stdout, stderr = result.status, result.stdout, result.stderr
        where = {"release": result.release, "version": result.version, "package": f"{package.name} {package.version}",
                 "where": f"qemu ({result.accel})"}  # fmt: skip
    try:
        report = json.loads(stdout)
    except ValueError:
        said = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise CloseKitError(f"closekit verify on Linux {spec} gave no JSON (exit {status}): {said[0]}") from None
    return {
        "spec": spec, **where, "date": started.date().isoformat(), "mode": report.get("mode", ""),
        "seconds": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
        "verdicts": report["verdicts"],
    }  # fmt: skip


def collect(specs: Sequence[str], timeout: float = 900, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The table for `specs`, each kernel run in turn."""
    return table([run_kernel(spec, timeout, echo) for spec in specs])


def table(columns: list[dict[str, Any]]) -> dict[str, Any]:
    """Kernels' columns as one table: the kernels, then one row per claim with each kernel's verdict."""
    rows: dict[str, dict[str, Any]] = {}
    for column in columns:
        for v in column["verdicts"]:
            row = rows.setdefault(v["id"], {"id": v["id"], "section": v["section"], "claim": v["claim"],
                                            "scenario": v["scenario"], "on": {}})  # fmt: skip
            row["on"][column["spec"]] = {
                "status": v["status"], "evidence": v["evidence"],
                "premises": [{k: p[k] for k in ("id", "holds", "evidence")} for p in v.get("premises", [])],
            }  # fmt: skip
    kernels = [{k: v for k, v in c.items() if k != "verdicts"} for c in columns]
    specs = ",".join(c["spec"] for c in columns)
    return {"command": COMMAND.format(kernels=specs), "kernels": kernels, "claims": list(rows.values())}


def save(data: dict[str, Any], path: Path = STORED) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def load(path: Path = STORED) -> dict[str, Any]:
    if not path.is_file():
        raise CloseKitError(f"no stored table at {path}; make it with {COMMAND.format(kernels='6.1,6.12,6.18')}")
    return json.loads(path.read_text())


def changes(path: Path = CHANGES) -> dict[str, dict[str, str]]:
    """Why kernels differ, by claim id or premise id: the change, and the kernel function that shows it."""
    return tomllib.loads(path.read_text()) if path.is_file() else {}


def untimed(evidence: str) -> str:
    """Evidence with its durations left out: they differ run to run, not kernel to kernel."""
    return re.sub(r"\d[\d,.]* ?(ms|s|µs)\b", "T", evidence)


def differences(row: dict[str, Any]) -> list[str]:
    """What differs between the kernels in one row: 'verdict', 'evidence', and each premise id that does."""
    found = []
    cells = list(row["on"].values())
    if len({c["status"] for c in cells}) > 1:
        found.append("verdict")
    if len({untimed(c["evidence"]) for c in cells}) > 1:
        found.append("evidence")
    premises = {p["id"] for c in cells for p in c["premises"]}
    for pid in sorted(premises):
        seen = {next(((p["holds"], untimed(p["evidence"])) for p in c["premises"] if p["id"] == pid), None)
                for c in cells}  # fmt: skip
        if len(seen) > 1:
            found.append(pid)
    return found


def unexplained(data: dict[str, Any]) -> list[str]:
    """Rows whose verdict or premise differs between kernels with no kernel change recorded for it."""
    known = changes()
    missing = []
    for row in data["claims"]:
        for what in differences(row):
            if what != "evidence" and row["id"] not in known and what not in known:
                missing.append(f"{row['id']} ({what})")
    return missing


def plain(data: dict[str, Any], width: int = 110) -> str:
    """The table for a terminal: the kernels, each claim's verdict on each, evidence where it differs."""
    specs = [k["spec"] for k in data["kernels"]]
    known = changes()
    lines = ["The claims ledger across kernels", ""]
    for k in data["kernels"]:
        package = f", {k['package']}" if k.get("package") else ""
        lines.append(f"  {k['spec']:<6} {k['release']} ({k['version']}{package}); {k['where']}, mode {k['mode']}, "
                     f"{k['date']}")  # fmt: skip
    w_id = max(len(r["id"]) for r in data["claims"]) if data["claims"] else 5
    w_col = max(14, *(len(s) for s in specs))
    lines += ["", f"{'sec':<6} {'claim':<{w_id}}  " + "  ".join(f"{s:<{w_col}}" for s in specs)]
    lines.append("-" * (8 + w_id + (w_col + 2) * len(specs)))
    notes: dict[str, tuple[str, list[str]]] = {}
    for row in data["claims"]:
        cells = [row["on"].get(s, {"status": "—"})["status"] for s in specs]
        differ = differences(row)
        mark = " ≠" if any(d != "evidence" for d in differ) else ""
        lines.append(f"{row['section']:<6} {row['id']:<{w_id}}  " + "  ".join(f"{c:<{w_col}}" for c in cells) + mark)
        if "evidence" in differ or mark:
            for s in specs:
                if s in row["on"]:
                    for part in textwrap.wrap(f"{s}: {row['on'][s]['evidence']}", width - 10):
                        lines.append(f"{'':<8}{part}")
        else:
            first = next(iter(row["on"].values()))
            for part in textwrap.wrap(first["evidence"], width - 10):
                lines.append(f"{'':<8}{part}")
        for what in differ:
            if what == "evidence":
                continue
            key = row["id"] if row["id"] in known else what
            notes.setdefault(key, (what, []))[1].append(row["id"])
    lines += ["", summary(data)]
    if notes:
        lines += ["", text("kernels.why")]
        for key, (what, ids) in notes.items():
            change = known.get(key)
            lines.append(f"- {', '.join(ids)} ({what}):")
            said = f"{change['text']} ({change['function']})" if change else text("kernels.unexplained")
            lines.extend("    " + part for part in textwrap.wrap(said, width - 4))
    held = [(key, c) for key, c in known.items() if key not in notes and c.get("premise_note")]
    if held:
        lines += ["", text("kernels.premise_notes")]
        for key, change in held:
            lines.append(f"- {key}:")
            lines.extend("    " + p for p in textwrap.wrap(f"{change['text']} ({change['function']})", width - 4))
    return "\n".join(lines)


def summary(data: dict[str, Any]) -> str:
    """'63 claims on 3 kernels: 63 with the same verdict and premises on every kernel, 0 differ'."""
    total = len(data["claims"])
    same = sum(not [d for d in differences(r) if d != "evidence"] for r in data["claims"])
    return text("kernels.summary", total=total, count=len(data["kernels"]), same=same, differ=total - same)


def _cell(status: str, spec: str, evidence: str) -> str:
    """A verdict's status in the course's language, as a column of the table shows it."""
    where = f"Linux {spec}"
    if status == "holds":
        return text("verdict.holds")
    if status == "differs":
        return text("verdict.differs", kernel=where)
    if status == "does not hold":
        return text("verdict.does_not_hold", kernel=where)
    if status == "could not run here":
        return text("verdict.not_run")
    if status == "premise did not hold":
        return text("verdict.premise_failed")
    if status == "not evidence":
        return text("verdict.not_evidence")
    return text("verdict.cannot_judge", mode="?", missing=evidence)


def html(data: dict[str, Any]) -> str:
    """The table for a notebook: one row per claim, one column per kernel (its release and date in the
    header), a row marked where kernels differ; then why they differ (changes.toml) and the premises
    the scenarios were set up to keep on every kernel."""
    from html import escape as esc

    known = changes()
    lang = current()
    kernels = data["kernels"]
    head = "".join(
        f"<th>Linux {esc(k['spec'])}<br><small>{esc(k['release'])}<br>{esc(k['date'])}</small></th>" for k in kernels
    )
    rows, notes = [], {}
    for row in data["claims"]:
        differ = [d for d in differences(row) if d != "evidence"]
        cells = "".join(
            f"<td>{esc(_cell(row['on'][k['spec']]['status'], k['spec'], row['on'][k['spec']]['evidence']))}</td>"
            if k["spec"] in row["on"] else "<td>—</td>"
            for k in kernels
        )  # fmt: skip
        mark = ' style="background:#fff3e0"' if differ else ""
        rows.append(f"<tr{mark}><td>{esc(row['section'])}</td><td>{esc(row['id'])}</td>{cells}</tr>")
        for what in differ:
            notes.setdefault(row["id"] if row["id"] in known else what, []).append(row["id"])
    table = (f'<table class="closekit-kernels"><thead><tr><th>§</th><th>{esc(text("verdict.claim"))}</th>{head}'
             f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip

    def explained(key: str) -> str:
        change = known.get(key)
        if change is None:
            return esc(text("kernels.unexplained"))
        said = change.get(f"text_{lang}", change["text"])
        return f"{esc(said)} <small>({esc(change['function'])})</small>"

    parts = [table]
    if notes:
        items = "".join(f"<li><b>{esc(', '.join(ids))}</b>: {explained(key)}</li>" for key, ids in notes.items())
        parts.append(f"<p>{esc(text('kernels.why'))}</p><ul>{items}</ul>")
    held = [key for key, change in known.items() if key not in notes and change.get("premise_note")]
    if held:
        items = "".join(f"<li><b>{esc(key)}</b>: {explained(key)}</li>" for key in held)
        parts.append(f"<p>{esc(text('kernels.premise_notes'))}</p><ul>{items}</ul>")
    return "".join(parts)


def evidence_complete(data: dict[str, Any]) -> bool:
    """Every claim has a verdict drawn from its own run on every kernel (none could not run, no premise
    failed, no run that did not do what its claim needs)."""
    return all(c["status"] not in NO_EVIDENCE for row in data["claims"] for c in row["on"].values())
