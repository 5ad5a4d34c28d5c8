"""Graphviz plumbing shared by the state and kernel-path diagrams: a Digraph with the course's fonts,
and DotPicture, the Picture whose SVG `dot` lays out (and whose PNG resvg draws from that SVG).

graphviz is imported inside functions so that `import closekit` never needs it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from closekit.errors import CloseKitError
from closekit.render.picture import Picture, font_match, in_px, rasterize

if TYPE_CHECKING:
    import graphviz

INSTALL_HINT = (
    "the graphviz 'dot' program is not installed, so the diagram cannot be rendered; install it "
    "with `apt-get install graphviz` (Debian/Ubuntu) or `conda install -c conda-forge graphviz`. "
    "The DOT source is still available as `picture.source`."
)
FONT = "Helvetica"
# dot scales a drawing down to this (inches: 8.1 in = 778 CSS px, under picture.MAX_WIDTH) and never up,
# so a layout a few labels too wide still fits a notebook column; the layouts are made to fit without it
FIT = "8.1,100"


def digraph(name: str, **graph_attr: str) -> graphviz.Digraph:
    """A Digraph with the course's fonts; `name` only becomes the DOT graph's name."""
    try:
        import graphviz
    except ImportError as error:
        raise CloseKitError(
            "drawing needs the graphviz Python package: pip install 'closekit[lab]' (or pip install graphviz)"
        ) from error
    g = graphviz.Digraph(name)
    g.attr(fontname=FONT, size=FIT, **graph_attr)
    g.attr("node", fontname=FONT, fontsize="11")
    g.attr("edge", fontname=FONT, fontsize="9")
    return g


class DotPicture(Picture):
    """A picture laid out by graphviz's `dot`: `source` is its DOT text, `graph` the Digraph."""

    def __init__(self, kind: str, title: str, text: str, graph: graphviz.Digraph) -> None:
        super().__init__(title, text)
        self.kind = kind
        self.graph = graph

    @property
    def source(self) -> str:
        return self.graph.source

    @functools.cached_property
    def svg(self) -> str:
        return _pipe(self.graph, "svg").decode("utf-8")

    def _png(self) -> bytes:
        """resvg's rendering of dot's SVG (a third of the size of dot's own PNG); dot's PNG without resvg."""
        svg = self.svg  # without dot: CloseKitError saying how to install it
        try:
            family = font_match(FONT) or FONT  # what graphviz measured its labels with
            svg = in_px(svg).replace(f'font-family="{FONT},sans-Serif"', f'font-family="{family}"')
            return rasterize(svg, self.scale)
        except CloseKitError:  # no resvg here
            return _pipe(self.graph, "png", f"-Gdpi={96 * self.scale}", "-Gbgcolor=white")


def _pipe(graph: graphviz.Digraph, fmt: str, *options: str) -> bytes:
    """`dot -Tfmt` of the graph (CloseKitError saying how to install dot if it is missing)."""
    import subprocess

    try:
        done = subprocess.run(["dot", f"-T{fmt}", *options], input=graph.source.encode("utf-8"), capture_output=True)
    except FileNotFoundError as error:
        raise CloseKitError(INSTALL_HINT) from error
    if done.returncode:
        raise CloseKitError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def to_svg(picture: Picture | graphviz.Digraph) -> str:
    """A picture (or a bare Digraph) as SVG text (CloseKitError saying how to install dot if missing)."""
    if isinstance(picture, Picture):
        return picture.svg
    return _pipe(picture, "svg").decode("utf-8")


def ms(seconds: float) -> str:
    """A relative time as the transcript prints it, rounded so the DOT source is the same every run."""
    return f"{seconds * 1000:.1f} ms"
