"""Pictures drawn from what the kernel did: time-sequence diagram, state diagram, kernel close path.

Each drawing function returns a Picture (closekit.render.picture): a PNG for notebooks (it shows in
untrusted ones too), its SVG, and a text form saying the same in words. Importing this package does
not import graphviz; the state and kernel diagrams do, when drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from closekit.render._dot import to_svg
from closekit.render.gallery import gallery
from closekit.render.kernel import kernel_path
from closekit.render.picture import Picture
from closekit.render.sequence import sequence_diagram
from closekit.render.states import drawn_sockets, state_diagram

if TYPE_CHECKING:
    from closekit.trace import Trace

__all__ = ["Picture", "gallery", "kernel_path", "sequence_diagram", "state_diagram", "to_svg", "write_diagrams"]


def write_diagrams(trace: Trace, directory: str | Path) -> list[Path]:
    """Write the trace's diagrams as SVG files into `directory` (created if missing); returns their paths.

    One state diagram per socket that tells the story (`drawn_sockets`): NAME-states-client.svg,
    NAME-states-server-2.svg for a second connection, NAME-states-server-listener.svg for a
    listening socket that was closed."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, Picture] = {f"{trace.scenario}-sequence.svg": sequence_diagram(trace)}
    for side, conn in drawn_sockets(trace):
        which = "" if conn == 1 else "-listener" if conn == 0 else f"-{conn}"
        graphs[f"{trace.scenario}-states-{side}{which}.svg"] = state_diagram(trace, side, conn)
    if trace.syscalls(call="close"):
        graphs[f"{trace.scenario}-kernel-path.svg"] = kernel_path(trace)
    paths = []
    for name, graph in graphs.items():
        path = out / name
        path.write_text(graph.svg, encoding="utf-8")
        paths.append(path)
    return paths
