"""Every picture of one experiment side by side: the gallery notebook shows one of these per scenario."""

from __future__ import annotations

import html
from dataclasses import dataclass

from closekit.render._dot import svg_or_notice
from closekit.render.kernel import kernel_path
from closekit.render.sequence import sequence_diagram
from closekit.render.states import state_diagram
from closekit.trace import Trace


@dataclass(frozen=True)
class Gallery:
    """A trace's sequence diagram, both state diagrams and the kernel path of its first close(), as SVG."""

    trace: Trace
    panels: tuple[tuple[str, str], ...]  # (heading, SVG text)

    def _repr_html_(self) -> str:
        cells = "".join(
            f'<figure style="display:inline-block;vertical-align:top;margin:0 1em 1em 0">'
            f"<figcaption><b>{html.escape(heading)}</b></figcaption>{svg}</figure>"
            for heading, svg in self.panels
        )
        return f'<div class="closekit-gallery">{cells}</div>'

    def __repr__(self) -> str:  # what nbval compares as text/plain: no ids, no times
        return f"<Gallery {self.trace.scenario!r}: {', '.join(heading for heading, _ in self.panels)}>"


def gallery(scenario: str | Trace) -> Gallery:
    """Run a built-in scenario (or take a trace) and draw all its pictures, so a notebook cell stays one line."""
    import closekit

    trace = closekit.run(scenario) if isinstance(scenario, str) else scenario
    graphs = [("time sequence", sequence_diagram(trace))]
    graphs += [(f"{side} states", state_diagram(trace, side)) for side in ("client", "server") if trace.states(side)]
    graphs.append(("kernel path of the first close()", kernel_path(trace)))
    return Gallery(trace, tuple((heading, _strip_prolog(svg_or_notice(graph))) for heading, graph in graphs))


def _strip_prolog(svg: str) -> str:
    """SVG without its XML declaration and DOCTYPE, which may not appear inside an HTML document."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
