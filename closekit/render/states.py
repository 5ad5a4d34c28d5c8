"""The TCP state diagram, drawn from `closekit.tcp.TRANSITIONS`, with one side's path lit from a trace.

Drawn to fit a notebook column: with a trace, the edges the path did not take are dimmed and the
abortive ones (four events into CLOSED) are labelled by what they send, so the lit path carries the
long labels. The text form lists the lit path step by step, the states passed through and the final
one, without clock readings.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from closekit import tcp
from closekit.render._dot import DotPicture, digraph, ms
from closekit.render.evidence import LitStep, lit_path

if TYPE_CHECKING:
    from closekit.trace import Trace

LIT = "#1f5fbf"
ABORT = "#c0392b"
DIM = "#9a9a9a"
CLOSED = tcp.CLOSED
# Teardown ends in CLOSED too: drawn as a second node at the bottom, as RFC 9293's figure does, so
# edges into it do not climb back over the whole machine.
END = "CLOSED_end"


def _node(source: str | None, target: str) -> str:
    """The drawn node of `target` when reached from `source`."""
    return END if target == CLOSED and source in tcp.SYNCHRONIZED else target


def state_diagram(trace: Trace | None = None, side: str = "client") -> DotPicture:
    """The whole machine; with a trace, the path `side` took is lit in order.

    Lit edges are numbered and carry the event and its time; states the trace skipped (passed
    through too fast to observe) are dashed; the final state has a double border.
    """
    path: list[LitStep] = lit_path(trace, side) if trace is not None else []
    title = "TCP states (RFC 9293 + Linux aborts)"
    if trace is not None:
        title = f"{trace.scenario}: the {side}'s states\nkernel {trace.kernel}"
    g = digraph("tcp_states", label=title, labelloc="t", fontsize="12", rankdir="TB", nodesep="0.3", ranksep="0.4",
                forcelabels="true")  # fmt: skip
    g.attr("node", fontsize="10", height="0.3", margin="0.08,0.03")
    g.attr("edge", fontsize="8.5")

    visited = {_node(a.state if a else None, b.state): b for a, b in zip([None, *path], path)}
    final = _node(path[-2].state if len(path) > 1 else None, path[-1].state) if path else None
    for state in (*tcp.STATES, END):
        attrs = {"shape": "box", "style": "rounded", "color": DIM if path else "black"}
        if state in visited:
            attrs.update(color=LIT, penwidth="2", style="rounded,filled", fillcolor="#e8f0fc")
            if visited[state].inferred:
                attrs.update(style="rounded,dashed", fillcolor="white")
        if state == final:
            attrs["peripheries"] = "2"
        label = (CLOSED if state == END else state) + (
            "\n(passed through)" if attrs["style"].endswith("dashed") else ""
        )
        if state == END:
            attrs["group"] = "end"
        g.node(state, label, **attrs)
    with g.subgraph(name="end") as bottom:
        bottom.attr(rank="sink")
        bottom.node(END)

    lit: dict[tuple[str, str], list[str]] = {}
    for number, (a, b) in enumerate(itertools.pairwise(path), start=1):
        when = "" if b.t is None else f" · {ms(b.t)}"
        lit.setdefault((a.state, _node(a.state, b.state)), []).append(f"{number}. {b.event}{when}")

    pairs: dict[tuple[str, str], list[tcp.Transition]] = {}
    for t in tcp.TRANSITIONS.values():
        pairs.setdefault((t.source, _node(t.source, t.target)), []).append(t)
    for (source, target), transitions in pairs.items():
        abortive = all(t.abortive for t in transitions)
        text = "\n".join(t.event + (f" / {t.sends}" if t.sends else "") for t in transitions)
        attrs = {"color": ABORT if abortive else "black", "fontcolor": ABORT if abortive else "black"}
        if path:
            attrs.update(color=DIM, fontcolor=DIM)
            text = _short(transitions)
        if (source, target) in lit:
            text = "\n".join(lit[(source, target)])
            attrs.update(color=LIT, fontcolor=LIT, penwidth="2.5", fontsize="10")
            g.edge(source, target, text, **attrs)
        elif path:  # placed after layout, so dimmed labels take no width: the picture fits a column
            g.edge(source, target, xlabel=text, **attrs)
        else:
            g.edge(source, target, text, **attrs)
    words = _words(trace, side, path, lit) if trace is not None else _machine_words(title)
    return DotPicture("states", title.replace("\n", " · "), words, g)


def _short(transitions: list[tcp.Transition]) -> str:
    """A dimmed edge's label: its orderly events as in the table, its abortive ones as what they send."""
    orderly = [t.event + (f" / {t.sends}" if t.sends else "") for t in transitions if not t.abortive]
    aborts = [t for t in transitions if t.abortive]
    if aborts:
        received = any(t.event == tcp.RCV_RST for t in aborts)
        sent = any(t.sends for t in aborts)
        orderly.append("RST" + (" in/out" if received and sent else " out" if sent else " in"))
    return "\n".join(orderly)


def _words(trace: Trace, side: str, path: list[LitStep], lit: dict[tuple[str, str], list[str]]) -> str:
    """The lit path in words: each step with its event, passed-through states, the final state."""
    lines = [f"{trace.scenario}: the {side}'s states (kernel {trace.kernel})"]
    if not path:
        return "\n".join([*lines, "no state of this side was observed"])
    lines.append(f"starts in {path[0].state}")
    for number, (a, b) in enumerate(itertools.pairwise(path), start=1):
        how = " (passed through, inferred from the table)" if b.inferred else ""
        lines.append(f"{number}. {a.state} ──{b.event or '?'}──▶ {b.state}{how}")
    lines.append(f"ends in {path[-1].state}")
    return "\n".join(lines)


def _machine_words(title: str) -> str:
    lines = [title]
    for t in tcp.TRANSITIONS.values():
        lines.append(f"{t.source} ──{t.event}{' / ' + t.sends if t.sends else ''}──▶ {t.target}")
    return "\n".join(lines)
