"""Pictures drawn from what the kernel did: state diagram, time-sequence diagram, SVG output.

Importing this package does not import graphviz; each drawing function does, when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from closekit.render._dot import to_svg
from closekit.render.gallery import gallery
from closekit.render.kernel import kernel_path
from closekit.render.sequence import sequence_diagram
from closekit.render.states import state_diagram

if TYPE_CHECKING:
    from closekit.trace import Trace

__all__ = ["gallery", "kernel_path", "sequence_diagram", "state_diagram", "to_svg", "write_diagrams"]


def write_diagrams(trace: Trace, directory: str | Path) -> list[Path]:
    """Write the trace's diagrams as SVG files into `directory` (created if missing); returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {f"{trace.scenario}-sequence.svg": sequence_diagram(trace)}
    for side in ("client", "server"):
        if trace.states(side):
            graphs[f"{trace.scenario}-states-{side}.svg"] = state_diagram(trace, side)
    if trace.syscalls(call="close"):
        graphs[f"{trace.scenario}-kernel-path.svg"] = kernel_path(trace)
    paths = []
    for name, graph in graphs.items():
        path = out / name
        path.write_text(to_svg(graph), encoding="utf-8")
        paths.append(path)
    return paths
