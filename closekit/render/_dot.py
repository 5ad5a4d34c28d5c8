"""Graphviz plumbing shared by the diagrams: a lazily imported wrapper, quoting, SVG output.

The wrapper is imported inside functions so that `import closekit` never needs graphviz.
"""

from __future__ import annotations

import functools
import html
from typing import TYPE_CHECKING

from closekit.errors import CloseKitError

if TYPE_CHECKING:
    import graphviz

INSTALL_HINT = (
    "the graphviz 'dot' program is not installed, so the diagram cannot be rendered; install it "
    "with `apt-get install graphviz` (Debian/Ubuntu) or `conda install -c conda-forge graphviz`. "
    "The DOT source is still available as `graph.source`."
)
FONT = "Helvetica"


def digraph(name: str, **graph_attr: str) -> graphviz.Digraph:
    """A Digraph with the course's fonts; `name` only becomes the DOT graph's name."""
    try:
        diagram = _diagram_class()
    except ImportError as error:
        raise CloseKitError(
            "drawing needs the graphviz Python package: pip install 'closekit[lab]' (or pip install graphviz)"
        ) from error
    g = diagram(name)
    g.attr(fontname=FONT, **graph_attr)
    g.attr("node", fontname=FONT, fontsize="11")
    g.attr("edge", fontname=FONT, fontsize="9")
    return g


@functools.cache
def _diagram_class() -> type[graphviz.Digraph]:
    import graphviz

    class Diagram(graphviz.Digraph):
        """A Digraph that, where the `dot` program is missing, shows how to get it and its DOT
        source instead of failing the notebook cell."""

        def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):  # type: ignore[no-untyped-def]
            try:
                return super()._repr_mimebundle_(include, exclude, **kwargs)
            except graphviz.ExecutableNotFound:
                return {"text/plain": f"[{INSTALL_HINT}]\n{self.source}"}

    return Diagram


def svg_or_notice(graph: graphviz.Digraph) -> str:
    """The graph as inline SVG, or, without `dot`, an HTML notice with the DOT source."""
    try:
        return to_svg(graph)
    except CloseKitError:
        return f"<pre>[{html.escape(INSTALL_HINT)}]\n{html.escape(graph.source)}</pre>"


def to_svg(graph: graphviz.Digraph) -> str:
    """The graph rendered as SVG text by the `dot` program (CloseKitError saying how to install it)."""
    import graphviz

    try:
        return graph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound as error:
        raise CloseKitError(INSTALL_HINT) from error


def ms(seconds: float) -> str:
    """A relative time as the transcript prints it, rounded so the DOT source is the same every run."""
    return f"{seconds * 1000:.1f} ms"
