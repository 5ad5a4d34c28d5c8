"""The TCP state diagram, drawn from `closekit.tcp.TRANSITIONS`, with one socket's path lit from a trace.

Drawn to fit a notebook column: the ways a connection ends abnormally (resets, time-outs) are
labelled by what they send or receive, and with a trace the edges the path did not take are dimmed
and their labels placed after layout, so the lit path carries the long labels. A socket's path is
its own: the server's connection is born in SYN_RECEIVED from the listening socket (drawn as a
dashed edge from LISTEN), and the listening socket (conn 0) has a path of its own. The text form
lists the lit path step by step, the states passed through and the final one, without clock readings.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from closekit import tcp
from closekit.lang import text, word, wrap
from closekit.render._dot import DotPicture, digraph, ms
from closekit.render.evidence import LitStep, listener_origin, lit_path
from closekit.trace import StateChange
from closekit.transcript import connections, link_text, settings_text

if TYPE_CHECKING:
    from closekit.trace import Trace

LIT = "#1f5fbf"
ABORT = "#c0392b"
DIM = "#9a9a9a"
CLOSED = tcp.CLOSED
# Teardown ends in CLOSED too: drawn as a second node at the bottom, as RFC 9293's figure does, so
# edges into it do not climb back over the whole machine.
END = "CLOSED_end"
TITLE_CHARS = 70  # a title line longer than this is wrapped: graphviz widens the picture to fit it


def _node(source: str | None, target: str) -> str:
    """The drawn node of `target` when reached from `source`."""
    return END if target == CLOSED and source in tcp.SYNCHRONIZED else target


def state_diagram(trace: Trace | None = None, side: str = "client", conn: int = 1) -> DotPicture:
    """The whole machine; with a trace, the path `side`'s socket of connection `conn` took is lit in
    order (conn 0: the server's listening socket; 2 …: a later connection on the same 4-tuple).

    Lit edges are numbered and carry the event and its time; states the trace skipped (passed
    through too fast to observe) are dashed; the final state has a double border. A connection
    born from the listening socket shows where it came from: a dashed edge from LISTEN, which the
    listening socket itself never left. The title names the kernel, the link and changed settings.
    """
    path: list[LitStep] = lit_path(trace, side, conn) if trace is not None else []
    born = listener_origin(trace, side, conn) if trace is not None else None
    title = text("render.machine_title") + "\n" + text("render.machine_key")
    if trace is not None:
        title = "\n".join([text("render.states_title", scenario=trace.scenario, whose=_whose(trace, side, conn)),
                           *_title_lines(trace)])  # fmt: skip
    g = digraph("tcp_states", label=title, labelloc="t", fontsize="12", rankdir="TB", nodesep="0.3", ranksep="0.4",
                forcelabels="true")  # fmt: skip
    g.attr("node", fontsize="10", height="0.3", margin="0.08,0.03")
    g.attr("edge", fontsize="8.5")

    visited = {_node(a.state if a else None, b.state): b for a, b in zip([None, *path], path)}
    final = _node(path[-2].state if len(path) > 1 else None, path[-1].state) if path else None
    for state in (*tcp.STATES, END):
        attrs = {"shape": "box", "style": "rounded", "color": DIM if trace is not None else "black"}
        if state in visited:
            attrs.update(color=LIT, penwidth="2", style="rounded,filled", fillcolor="#e8f0fc")
            if visited[state].inferred:
                attrs.update(style="rounded,dashed", fillcolor="white")
        if state == final:
            attrs["peripheries"] = "2"
        label = (CLOSED if state == END else state) + (
            "\n" + text("render.passed_through") if attrs["style"].endswith("dashed") else ""
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
    if born is not None:  # not a step of this socket: the listening socket made it, and stays in LISTEN
        g.edge(tcp.LISTEN, tcp.SYN_RECEIVED, text("render.born", at=ms(born)),
               color=LIT, fontcolor=LIT, style="dashed", penwidth="1.5", fontsize="9")  # fmt: skip

    pairs: dict[tuple[str, str], list[tcp.Transition]] = {}
    for t in tcp.TRANSITIONS.values():
        pairs.setdefault((t.source, _node(t.source, t.target)), []).append(t)
    for (source, target), transitions in pairs.items():
        if born is not None and (source, target) == (tcp.LISTEN, tcp.SYN_RECEIVED):
            continue  # drawn above, as where this socket came from
        abnormal = all(t.abortive or t.gives_up for t in transitions)
        attrs = {"color": ABORT if abnormal else "black", "fontcolor": ABORT if abnormal else "black"}
        if all(t.gives_up for t in transitions):
            attrs["style"] = "dashed"
        words = _short(transitions)  # resets as the RST they send or take, time-outs as such: it fits a column
        if trace is not None:
            attrs.update(color=DIM, fontcolor=DIM)
        if (source, target) in lit:
            words = "\n".join(lit[(source, target)])
            attrs.update(color=LIT, fontcolor=LIT, penwidth="2.5", fontsize="10")
            g.edge(source, target, words, **attrs)
        elif trace is None and not abnormal:
            g.edge(source, target, words, **attrs)
        else:  # placed after layout, so these labels take no width: the picture fits a column
            g.edge(source, target, xlabel=words, **attrs)
    told = _words(trace, side, conn, path, born) if trace is not None else _machine_words(title)
    return DotPicture("states", title.split("\n")[0], told, g)


def drawn_sockets(trace: Trace) -> list[tuple[str, int]]:
    """The (side, conn) whose state diagrams tell a trace's story: each side's connection(s) with states,
    and the server's listening socket only when it did more than listen (it was closed)."""
    out = []
    for side in ("client", "server"):
        conns = sorted({e.conn for e in trace.events if isinstance(e, StateChange) and e.side == side})
        out += [(side, c) for c in conns if c > 0]
        if 0 in conns and len(trace.states(side, 0)) > 1:
            out.append((side, 0))
    return out


def _whose(trace: Trace, side: str, conn: int) -> str:
    """How a socket is named: "the client's", "the server's listening socket's", "the client's (connection #2)"."""
    if conn == 0:
        return text("render.whose_listener", side=word("side", side))
    several = len(connections(trace)) > 1
    return text("render.whose", side=word("side", side)) + (text("render.whose_conn", conn=conn) if several else "")


def _title_lines(trace: Trace) -> list[str]:
    """Kernel, link and changed settings, wrapped to keep the picture inside a column."""
    lines = [f"{text('transcript.kernel', kernel=trace.kernel)} · {link_text(trace)}", settings_text(trace)]
    return [part for line in lines if line for part in wrap(line, TITLE_CHARS)]


def _short(transitions: list[tcp.Transition]) -> str:
    """An edge's short label: its orderly events as in the table, its abortive ones as what they send,
    giving up as "time-out"."""
    orderly = [t.event + (f" / {t.sends}" if t.sends else "") for t in transitions if not t.abortive and not t.gives_up]
    if any(t.gives_up for t in transitions):
        orderly.append(text("render.time_out"))
    aborts = [t for t in transitions if t.abortive]
    if aborts:
        received = any(t.event == tcp.RCV_RST for t in aborts)
        sent = any(t.sends for t in aborts)
        orderly.append("RST" + (" in/out" if received and sent else " out" if sent else " in"))
    return "\n".join(orderly)


def _words(trace: Trace, side: str, conn: int, path: list[LitStep], born: float | None) -> str:
    """The lit path in words: each step with its event, passed-through states, the final state."""
    head = text("render.states_words_head", scenario=trace.scenario, whose=_whose(trace, side, conn),
                kernel=trace.kernel)  # fmt: skip
    lines = [head, *(line for line in (link_text(trace), settings_text(trace)) if line)]
    if not path:
        return "\n".join([*lines, text("render.no_states")])
    made = text("render.made_by_listener") if born is not None else ""
    lines.append(text("render.starts_in", state=path[0].state, made=made))
    for number, (a, b) in enumerate(itertools.pairwise(path), start=1):
        how = text("render.inferred") if b.inferred else ""
        lines.append(f"{number}. {a.state} ──{b.event or '?'}──▶ {b.state}{how}")
    lines.append(text("render.ends_in", state=path[-1].state))
    return "\n".join(lines)


def _machine_words(title: str) -> str:
    lines = [title]
    for t in tcp.TRANSITIONS.values():
        lines.append(f"{t.source} ──{t.event}{' / ' + t.sends if t.sends else ''}──▶ {t.target}")
    return "\n".join(lines)
