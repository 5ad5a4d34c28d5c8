"""Which kernel, and which day, a notebook's stored outputs come from.

The book shows stored outputs without running anything, so each page must say where they come from.
That is recorded in the notebook itself, in its metadata, when it is re-executed:

    "metadata": {"closekit": {"outputs": {"kernel": "6.18.44-fc-v769", "date": "2026-11-25"}}, ...}

``python -m closekit.book stamp --execute NOTEBOOK...`` re-executes notebooks in place and stamps
them with this machine's kernel; ``stamp --kernel RELEASE`` stamps outputs made elsewhere. The date
is the day of the newest cell execution that Jupyter records in the cells' metadata, so a notebook
re-executed without being stamped again is caught (:func:`stale`; ``tests/test_book.py``).
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["Provenance", "execute", "executed_on", "read", "stale", "stamp"]


@dataclass(frozen=True)
class Provenance:
    kernel: str  # `uname -r` of the machine whose kernel produced the outputs
    date: str  # ISO date (UTC) the outputs were made


def _load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def executed_on(notebook: nbformat.NotebookNode) -> str | None:
    """The UTC day of the newest cell execution Jupyter recorded (None if no cell records one)."""
    times = [
        cell.metadata.get("execution", {}).get("iopub.execute_input", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    times = [t for t in times if t]
    return max(times)[:10] if times else None


def read(path: Path) -> Provenance | None:
    """The stamp of the notebook at `path`, or None if it has none."""
    found = _load(path).metadata.get("closekit", {}).get("outputs")
    return Provenance(found["kernel"], found["date"]) if found else None


def stale(path: Path) -> str | None:
    """Why the stamp cannot be trusted (missing, or older than the outputs), or None if it can."""
    notebook = _load(path)
    found = notebook.metadata.get("closekit", {}).get("outputs")
    if not found:
        return f"{path} has no record of the kernel and date of its outputs: run python -m closekit.book stamp"
    ran = executed_on(notebook)
    if ran and ran != found["date"]:
        return (
            f"{path} was executed on {ran} but stamped for {found['date']}: stamp it again "
            f"(python -m closekit.book stamp --kernel RELEASE {path}) with the kernel it ran on"
        )
    return None


def stamp(path: Path, kernel: str | None = None) -> Provenance:
    """Record in the notebook at `path` that its outputs come from `kernel` (default: this machine's)."""
    notebook = _load(path)
    made = Provenance(
        kernel=kernel or platform.release(),
        date=executed_on(notebook) or datetime.datetime.now(datetime.UTC).date().isoformat(),
    )
    notebook.metadata.setdefault("closekit", {})["outputs"] = {"kernel": made.kernel, "date": made.date}
    text = nbformat.writes(notebook) + "\n"
    if text != path.read_text():
        path.write_text(text)
    return made


def execute(path: Path, timeout: int = 600) -> None:
    """Run the notebook top to bottom in place, as its stored outputs were made (nbconvert)."""
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--inplace",
         f"--ExecutePreprocessor.timeout={timeout}", str(path)],
        check=True,
    )  # fmt: skip
