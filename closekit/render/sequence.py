"""A time-sequence diagram of a trace: two lifelines, one arrow per segment, calls and states beside them.

Rows are events in time order (time flows down, one row per event, not to scale); a pause longer
than `GAP` gets its own row saying how long it was, and a long run of plain data/ACK segments is
drawn as one arrow, so a million-byte transfer stays readable.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from closekit.render._dot import digraph, ms
from closekit.render.evidence import origin, socket_of
from closekit.trace import Segment, Signal, StateChange, Syscall
from closekit.transcript import describe_segment, describe_syscall

if TYPE_CHECKING:
    import graphviz

    from closekit.trace import Event, Trace

GAP = 0.15  # seconds of silence worth a row of its own (only sleeps, lingers and timers reach it)
RUN = 6  # this many plain segments in a row are drawn as one arrow
COLOURS = {"RST": "#c0392b", "FIN": "#1f5fbf", "SYN": "#2e8b57"}
SIDES = ("client", "server")


def _colour(flags: tuple[str, ...]) -> str:
    return next((c for f, c in COLOURS.items() if f in flags), "black")


def _plain(e: Event) -> bool:
    return isinstance(e, Segment) and not {"SYN", "FIN", "RST"} & set(e.flags)


def _rows(trace: Trace) -> list[list[Event]]:
    """Events grouped into rows: states seen at one instant share a row, plain segment runs collapse."""
    rows: list[list[Event]] = []
    for e in trace.events:
        last = rows[-1] if rows else []
        same_instant = isinstance(e, StateChange) and all(isinstance(x, StateChange) and x.t == e.t for x in last)
        plain_run = _plain(e) and all(_plain(x) for x in last)
        if last and (same_instant or plain_run):
            last.append(e)
        else:
            rows.append([e])
    split: list[list[Event]] = []
    for row in rows:  # short runs of plain segments are drawn one by one
        split.extend([[e] for e in row] if _plain(row[0]) and len(row) < RUN else [row])
    return split


def sequence_diagram(trace: Trace) -> graphviz.Digraph:
    """The trace as a time-sequence diagram (graphviz); FIN arrows blue, RST red, SYN green."""
    g = digraph("sequence", label=f"{trace.scenario} (kernel {trace.kernel}, {trace.mode})", labelloc="t")
    g.attr(rankdir="TB", nodesep="0.3", ranksep="0.15", fontsize="14")
    g.attr("node", shape="plaintext", fontsize="10")
    if trace.notice:
        g.attr(label=f"{trace.scenario} (kernel {trace.kernel})\n{trace.notice}")
    t0 = origin(trace)
    previous_t: float | None = None
    names: list[tuple[str, str, str, str, str]] = []

    def row(index: int, time: str, left: str, right: str, states: dict[str, str]) -> tuple[str, str, str, str, str]:
        ids = (f"t{index}", f"l{index}", f"c{index}", f"s{index}", f"r{index}")
        with g.subgraph(name=f"row{index}") as r:
            r.attr(rank="same")
            r.node(ids[0], time, fontcolor="#777777")
            r.node(ids[1], left)
            for node, side in ((ids[2], "client"), (ids[3], "server")):
                if side in states:
                    r.node(node, states[side], shape="box", style="rounded,filled", fillcolor="#f3f3f3",
                           fontsize="9", group=side)  # fmt: skip
                else:
                    r.node(node, "", shape="point", width="0.01", color="#bbbbbb", group=side)
            r.node(ids[4], right)
            r.edge(ids[0], ids[1], style="invis")
            r.edge(ids[1], ids[2], style="invis")
            r.edge(ids[3], ids[4], style="invis")
        names.append(ids)
        return ids

    header = row(0, "", "", "", {"client": "client", "server": "server"})
    g.edge(header[2], header[3], style="invis")
    for events in _rows(trace):
        t = events[0].t
        if previous_t is not None and t - previous_t > GAP:
            gap = row(len(names), f"⋮ {ms(t - previous_t)} idle", "", "", {})
            g.edge(gap[2], gap[3], style="invis")
        previous_t = t
        left, right, states = "", "", {}
        for e in events:
            if isinstance(e, StateChange):
                states[e.side] = e.state
            elif isinstance(e, (Syscall, Signal)):
                side = socket_of(e.side)
                who = "" if e.side in SIDES else f"{e.side}: "
                text = who + (describe_syscall(e) if isinstance(e, Syscall) else e.signal)
                left, right = (text, right) if side == "client" else (left, text)
        ids = row(len(names), ms(t - t0), left, right, states)
        segments = [e for e in events if isinstance(e, Segment)]
        if len(segments) == 1:
            s = segments[0]
            colour = _colour(s.flags)
            g.edge(ids[2], ids[3], describe_segment(s), color=colour, fontcolor=colour, penwidth="1.5",
                   dir="forward" if s.src == "client" else "back")  # fmt: skip
        elif segments:
            g.edge(ids[2], ids[3], _run_label(segments), color="#555555", style="bold", dir="both")
        else:
            g.edge(ids[2], ids[3], style="invis")
    for a, b in itertools.pairwise(names):
        for column in (0, 1, 4):
            g.edge(a[column], b[column], style="invis")
        for column in (2, 3):
            g.edge(a[column], b[column], arrowhead="none", color="#bbbbbb", penwidth="2", weight="100")
    return g


def _run_label(segments: list[Segment]) -> str:
    """One line per direction: how many segments, bytes, the sequence range, zero windows."""
    lines = [f"× {len(segments)} data/ACK segments"]  # noqa: RUF001 (a multiplication sign, on purpose)
    for src in SIDES:
        mine = [s for s in segments if s.src == src]
        if not mine:
            continue
        data = sum(s.len for s in mine)
        zero = sum(1 for s in mine if s.win == 0)
        arrow = "→" if src == "client" else "←"
        text = f"{arrow} {len(mine)} from {src}: {data} bytes, seq {mine[0].seq}:{mine[-1].seq + mine[-1].len}"
        lines.append(text + (f", {zero} with win 0" if zero else f", last ack {mine[-1].ack}"))
    return "\n".join(lines)
