"""The kernel's close(2) path as a call graph, with the branch one close() took lit.

What the graph claims, and where it comes from (Linux source, the version that changed it):

- close(2) first takes the descriptor out of the table, then drops that reference to the open
  file. The names changed: `__close_fd` → `close_fd` (5.11, "file: Rename __close_fd to close_fd");
  6.6 made close(2) call `close_fd_get_file`, `filp_flush` (split out of `filp_close`) and
  `__fput_sync` ("fs: use __fput_sync in close(2)", 021a160abf62); 6.8 renamed `close_fd_get_file`
  to `file_close_fd` (a88c955fcfb4); 6.15 replaced `__fput_sync` by `fput_close_sync` ("fs: use
  fput_close() in close()").
- Before 6.6 the last `fput()` queued `____fput` as task_work, so `__fput` (and with it the whole
  socket release, including a SO_LINGER wait) ran on the way back to user space; since 6.6
  close(2) runs `__fput` synchronously, inside the call. Either way close() returns only after it.
- `__fput` calls `file->f_op->release`, which for a socket is `sock_close` (net/socket.c), which
  calls `__sock_release`, which calls `sock->ops->release` = `inet_release` (net/ipv4/af_inet.c):
  timeout = l_linger if SO_LINGER is on and the process is not exiting, else 0; then
  `sk->sk_prot->close` = `tcp_close` → `__tcp_close` (net/ipv4/tcp.c).
- `__tcp_close` first handles a listening socket: CLOSED, and `inet_csk_listen_stop` resets
  (`tcp_disconnect`) every connection still in its accept queue, never handed to accept().
- Otherwise `__tcp_close` purges the receive queue counting unread bytes; unread data → RST
  (`tcp_send_active_reset`, TCPAbortOnClose); else SO_LINGER {on, 0} → `tcp_disconnect` (RST,
  TCPAbortOnData); else `tcp_close_state` (ESTABLISHED → FIN_WAIT_1, CLOSE_WAIT → LAST_ACK,
  SYN_RECV → FIN_WAIT_1, SYN_SENT → CLOSED) and, if the state needs one, `tcp_send_fin`; then `sk_stream_wait_close`
  sleeps while the FIN is unacknowledged, up to the timeout (0: not at all).

Which branch is lit is decided by `closekit.close_outcome` from the trace's evidence only: what the
closing socket sent after the call (FIN, RST or nothing), the unread bytes, the SO_LINGER option it
had set, forked holders of the descriptor and the MIB counter deltas.

Each function is checked against /proc/kallsyms of the machine drawing the graph (read once per
process): a name missing there is inlined (static) or belongs to another kernel version.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from closekit.close_outcome import CloseOutcome, close_outcome
from closekit.lang import text, texts, word, wrap
from closekit.render._dot import DotPicture, digraph
from closekit.transcript import link_text, settings_text

if TYPE_CHECKING:
    import graphviz

    from closekit.trace import Trace

KALLSYMS = Path("/proc/kallsyms")
LIT = "#1f5fbf"
ABORT = "#c0392b"
DIM = "#9a9a9a"

Status = Literal["present", "absent", "unknown"]


@dataclass(frozen=True)
class Fn:
    """One function on the path: node id, kernel symbol(s) (any one present counts), and its note: a key of
    the language catalogs' [kernel_notes] (what the function does here, in the reader's words)."""

    node: str
    symbol: str | tuple[str, ...]
    note: str
    static: bool = False  # static in its .c file: often inlined, then absent from kallsyms

    @property
    def name(self) -> str:
        return self.symbol if isinstance(self.symbol, str) else self.symbol[0]


SYS_CLOSE = Fn("sys_close", ("sys_close", "__x64_sys_close", "__arm64_sys_close", "__se_sys_close"), "sys_close")
SYS_SHUTDOWN = Fn(
    "sys_shutdown",
    ("sys_shutdown", "__x64_sys_shutdown", "__arm64_sys_shutdown", "__se_sys_shutdown"),
    "sys_shutdown",
)


@dataclass(frozen=True)
class Era:
    """How close(2) reached the socket in a range of kernel versions."""

    since: tuple[int, int]
    label: str  # a key of [kernel_eras]: the versions, in the reader's words
    path: tuple[Fn, ...]  # after sys_close
    deferred: bool  # the last reference's __fput ran as task_work on return to user space


_SYNC = "put_sync"
ERAS = (
    Era((6, 15), "since_6_15", (
        Fn("fd", "file_close_fd", "fd_out"),
        Fn("flush", "filp_flush", "no_flush", static=True),
        Fn("put", "fput_close_sync", _SYNC),
    ), False),
    Era((6, 8), "from_6_8_to_6_14", (
        Fn("fd", "file_close_fd", "fd_out"),
        Fn("flush", "filp_flush", "no_flush", static=True),
        Fn("put", "__fput_sync", _SYNC),
    ), False),
    Era((6, 6), "from_6_6_to_6_7", (
        Fn("fd", "close_fd_get_file", "fd_out"),
        Fn("flush", "filp_flush", "no_flush", static=True),
        Fn("put", "__fput_sync", _SYNC),
    ), False),
    Era((5, 11), "from_5_11_to_6_5", (
        Fn("fd", "close_fd", "fd_out"),
        Fn("flush", "filp_close", "flush_fput"),
        Fn("put", "fput", "put_deferred"),
    ), True),
    Era((0, 0), "before_5_11", (
        Fn("fd", "__close_fd", "fd_out"),
        Fn("flush", "filp_close", "flush_fput"),
        Fn("put", "fput", "put_deferred"),
    ), True),
)  # fmt: skip
SOCKET_PATH = (
    Fn("__fput", "__fput", "fput", static=True),
    Fn("sock_close", "sock_close", "sock_close", static=True),
    Fn("__sock_release", "__sock_release", "sock_release", static=True),
    Fn("inet_release", "inet_release", "inet_release"),
    Fn("tcp_close", "tcp_close", "tcp_close"),
    Fn("__tcp_close", "__tcp_close", "tcp_close_inner"),
)
TCP_CLOSE = (
    Fn("listen_stop", "inet_csk_listen_stop", "listen_stop"),
    Fn("rst_unread", "tcp_send_active_reset", "rst_unread"),
    Fn("tcp_disconnect", "tcp_disconnect", "tcp_disconnect"),
    Fn(
        "tcp_close_state",
        "tcp_close_state",
        "close_state",
        static=True,
    ),
    Fn("tcp_send_fin", "tcp_send_fin", "send_fin"),
    Fn("sk_stream_wait_close", "sk_stream_wait_close", "wait_close"),
)
SHUTDOWN_PATH = (
    SYS_SHUTDOWN,
    Fn("__sys_shutdown", "__sys_shutdown", "sys_shutdown_inner"),
    Fn("inet_shutdown", "inet_shutdown", "inet_shutdown"),
    Fn("tcp_shutdown", "tcp_shutdown", "tcp_shutdown"),
    Fn("sh_send_fin", "tcp_send_fin", "shutdown_fin"),
)
DECISIONS = ("last_ref", "listening", "unread", "linger0", "linger_on")  # words: [kernel_decisions]
OUTCOMES = (  # words: [kernel_outcomes]
    "out_shared", "out_listener", "out_unread", "out_linger0", "out_no_fin", "out_fin", "out_wait", "out_shut_rd",
    "out_shut_wr",
)  # fmt: skip
EDGES = (  # (from, to, label)
    ("sys_close", "fd", ""),
    ("fd", "flush", ""),
    ("flush", "put", ""),
    ("put", "last_ref", ""),
    ("last_ref", "out_shared", "no"),
    ("last_ref", "__fput", "yes"),
    ("__fput", "sock_close", ""),
    ("sock_close", "__sock_release", ""),
    ("__sock_release", "inet_release", ""),
    ("inet_release", "tcp_close", ""),
    ("tcp_close", "__tcp_close", ""),
    ("__tcp_close", "listening", ""),
    ("listening", "listen_stop", "yes"),
    ("listen_stop", "out_listener", ""),
    ("listening", "unread", "no"),
    ("unread", "rst_unread", "yes"),
    ("rst_unread", "out_unread", ""),
    ("unread", "linger0", "no"),
    ("linger0", "tcp_disconnect", "yes"),
    ("tcp_disconnect", "out_linger0", ""),
    ("linger0", "tcp_close_state", "no"),
    ("tcp_close_state", "tcp_send_fin", "FIN due"),
    ("tcp_close_state", "out_no_fin", "none due"),
    ("tcp_send_fin", "linger_on", ""),
    ("linger_on", "out_fin", "no"),
    ("linger_on", "sk_stream_wait_close", "yes"),
    ("sk_stream_wait_close", "out_wait", ""),
    ("sys_shutdown", "__sys_shutdown", ""),
    ("__sys_shutdown", "inet_shutdown", ""),
    ("inet_shutdown", "tcp_shutdown", ""),
    ("tcp_shutdown", "out_shut_rd", "SHUT_RD"),
    ("tcp_shutdown", "sh_send_fin", "SHUT_WR,\nSHUT_RDWR"),
    ("sh_send_fin", "out_shut_wr", ""),
)
_VFS = ("sys_close", "fd", "flush", "put", "last_ref")
_RELEASE = ("__fput", "sock_close", "__sock_release", "inet_release", "tcp_close", "__tcp_close", "listening")
_SOCKET = (*_RELEASE, "unread")
_FIN = (*_SOCKET, "linger0", "tcp_close_state", "tcp_send_fin", "linger_on")
LIT_NODES: dict[str, tuple[str, ...]] = {  # after the VFS prefix; "lingered": a FIN, then a wait
    "shared": ("out_shared",),
    "listener": (*_RELEASE, "listen_stop", "out_listener"),
    "unread": (*_SOCKET, "rst_unread", "out_unread"),
    "linger-zero": (*_SOCKET, "linger0", "tcp_disconnect", "out_linger0"),
    "fin": (*_FIN, "out_fin"),
    "lingered": (*_FIN, "sk_stream_wait_close", "out_wait"),
    "no-fin": (*_SOCKET, "linger0", "tcp_close_state", "out_no_fin"),
    "failed": (),
    "unobserved": (),
    "none": (),
}
ABORTS = {"rst_unread", "tcp_disconnect", "out_unread", "out_linger0", "listen_stop", "out_listener"}


# ---- the running kernel ------------------------------------------------------------------------
@functools.cache
def kernel_symbols() -> frozenset[str] | None:
    """Every name in /proc/kallsyms (listed even when addresses are hidden); None when unreadable."""
    try:
        with KALLSYMS.open(encoding="utf-8", errors="replace") as lines:
            return frozenset(parts[2] for parts in (line.split() for line in lines) if len(parts) >= 3)
    except OSError:
        return None


def symbol_status(name: str | tuple[str, ...]) -> Status:
    """Whether the running kernel has the function `name` (or any of the names): present, absent, unknown."""
    symbols = kernel_symbols()
    if symbols is None:
        return "unknown"
    names = (name,) if isinstance(name, str) else name
    return "present" if any(n in symbols for n in names) else "absent"


def version(release: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", release)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def era_of(release: str) -> Era:
    """The close(2) path of a kernel release (`uname -r`)."""
    v = version(release)
    return next(era for era in ERAS if v >= era.since)


# ---- drawing -----------------------------------------------------------------------------------
def _note(fn: Fn) -> str:
    """A function's note in the reader's words."""
    return texts("kernel_notes")[fn.note]


def _fn_label(fn: Fn) -> str:
    absent = symbol_status(fn.symbol) == "absent"
    missing = text("kernel.inlined") if fn.static else text("kernel.not_in_kallsyms")
    return f"{fn.name}()\n{_note(fn)}" + (f"\n{missing}" if absent else "")


def kernel_path(
    trace: Trace | None = None, close_index: int = 0, side: str | None = None, shutdown: bool | None = None
) -> DotPicture:
    """close(fd) from the system call to tcp_close and its outcomes; lit from a trace.

    With a trace, the branch the `close_index`-th close() (of `side`; default: the first close()
    in the trace) took is lit, decided from the trace's evidence, which is written under the title.
    The VFS part is drawn as in the trace's kernel version. Functions are marked ✓ or ✗ by whether
    this machine's /proc/kallsyms has them. shutdown(2)'s path is drawn beside it when the closing
    socket was shut down first, or when asked (`shutdown=True`; default without a trace).
    """
    release = os.uname().release
    traced = trace.kernel if trace is not None else release
    era = era_of(traced)
    outcome = close_outcome(trace, close_index, side) if trace is not None else None
    lit: set[str] = set()
    if outcome is not None and outcome.branch not in ("failed", "none"):
        lit.update(_VFS)
        lit.update(LIT_NODES["lingered" if outcome.lingered else outcome.branch])
    elif outcome is not None:
        lit.add("sys_close")
    for how in outcome.shutdowns if outcome is not None else ():
        lit.update(fn.node for fn in SHUTDOWN_PATH[:4])
        lit.update(("out_shut_rd",) if how == "SHUT_RD" else ("sh_send_fin", "out_shut_wr"))
    with_shutdown = shutdown if shutdown is not None else (trace is None or bool(outcome and outcome.shutdown))

    title = text("kernel.title")
    if trace is not None:
        who = (
            text("kernel.close_by", index=close_index, side=word("side", outcome.side))
            if outcome
            else text("kernel.no_close")
        )
        title = f"{trace.scenario}: {who}"
    symbols = kernel_symbols()
    checked = (
        text("kernel.dashed", release=release) if symbols is not None else text("kernel.unreadable", release=release)
    )
    if traced != release:
        checked += text("kernel.traced_on", traced=traced)
    evidence = "\n".join(part for line in outcome.evidence for part in wrap(line, 90)) if outcome else ""
    wire = [link_text(trace), settings_text(trace)] if trace is not None else []
    wire_lines = "\n".join(part for line in wire if line for part in wrap(line, 90))
    label = "\n".join(part for part in (title, wire_lines, evidence, checked) if part)
    g = digraph("kernel_path", label=label, labelloc="t", fontsize="11", rankdir="TB", nodesep="0.15")
    g.attr(ranksep="0.22", newrank="true")
    g.attr("node", fontsize="9.5", margin="0.06,0.03", height="0.3")
    g.attr("edge", fontsize="8.5", arrowsize="0.7")

    def colour(node: str) -> str:
        if node not in lit:
            return DIM if trace is not None else "black"
        return ABORT if node in ABORTS else LIT

    def fn_node(graph: graphviz.Digraph, fn: Fn) -> None:
        attrs = {"shape": "box", "style": "rounded", "color": colour(fn.node), "fontcolor": colour(fn.node)}
        if symbol_status(fn.symbol) == "absent":
            attrs["style"] = "rounded,dashed"
        if fn.node in lit:
            attrs.update(
                penwidth="2", style=attrs["style"] + ",filled", fillcolor="#fbe9e7" if fn.node in ABORTS else "#e8f0fc"
            )
        graph.node(fn.node, _fn_label(fn), **attrs)

    def other_node(graph: graphviz.Digraph, node: str, label: str, shape: str) -> None:
        attrs = {"shape": shape, "color": colour(node), "fontcolor": colour(node), "fontsize": "9"}
        if shape == "diamond":
            attrs.update(margin="0.02,0.01", height="0.45")
        if node in lit:
            attrs.update(penwidth="2", style="filled", fillcolor="#fbe9e7" if node in ABORTS else "#e8f0fc")
        graph.node(node, label, **attrs)

    deferred = text("kernel.deferred") if era.deferred else text("kernel.in_call")
    with g.subgraph(name="cluster_vfs") as vfs:
        vfs.attr(label=text("kernel.vfs", era=_era_label(era), deferred=deferred), color="#cccccc", fontsize="9.5")
        with vfs.subgraph() as row:
            row.attr(rank="same")
            for fn in (SYS_CLOSE, *era.path):
                fn_node(row, fn)
    fns = {fn.node: fn for fn in (*SOCKET_PATH, *TCP_CLOSE)}
    # A grid: each row's first node in one column (invisible heavy edges keep them aligned), so
    # the chain folds into rows instead of drifting right.
    grid = (
        ("last_ref", "out_shared"),
        ("__fput", "sock_close", "__sock_release"),
        ("inet_release", "tcp_close", "__tcp_close"),
        ("listening", "listen_stop", "out_listener"),
        ("unread", "rst_unread", "out_unread"),
        ("linger0", "tcp_disconnect", "out_linger0"),
        ("tcp_close_state", "out_no_fin"),
        ("tcp_send_fin", "linger_on", "out_fin"),
        ("sk_stream_wait_close", "out_wait"),
    )
    for nodes in grid:
        with g.subgraph() as row:
            row.attr(rank="same")
            for column, node in enumerate(nodes):
                if node in fns:
                    fn_node(row, fns[node])
                elif node in DECISIONS:
                    other_node(row, node, _decision(node), "diamond")
                else:
                    other_node(row, node, _outcome(node), "note")
                row.node(node, group=f"c{column}")
    firsts = ["sys_close", *(nodes[0] for nodes in grid)]
    for a, b in itertools.pairwise(firsts):
        g.edge(a, b, style="invis", weight="50")
    history = text("kernel.history").replace("\n", "\\l") + "\\l"  # graphviz: left-justified lines
    g.node("history", history, shape="note", fontsize="8.5", color="#cccccc", fontcolor="#666666")
    g.edge("sh_send_fin" if with_shutdown else "out_wait", "history", style="invis")  # last, under the rest
    if with_shutdown:  # below the close path, in two rows: beside it, it would not fit a column
        with g.subgraph(name="cluster_shutdown") as shut:
            shut.attr(label=text("kernel.shutdown_cluster"), color="#cccccc", fontsize="9.5")
            with shut.subgraph() as row:
                row.attr(rank="same")
                for column, fn in enumerate(SHUTDOWN_PATH[:4]):
                    fn_node(row, fn)
                    row.node(fn.node, group=f"c{column}")
            with shut.subgraph() as row:
                row.attr(rank="same")
                fn_node(row, SHUTDOWN_PATH[4])
                for node in ("out_shut_rd", "out_shut_wr"):
                    other_node(row, node, _outcome(node), "note")
        g.edge("sk_stream_wait_close", "sys_shutdown", style="invis", weight="50")  # under the first column

    for source, target, label in EDGES:
        if not with_shutdown and (source in _SHUTDOWN_NODES or target in _SHUTDOWN_NODES):
            continue
        on = source in lit and target in lit
        attrs = {"color": colour(target) if on else (DIM if trace is not None else "black")}
        if on:
            attrs.update(penwidth="2.2", fontcolor=colour(target))
        g.edge(source, target, texts("kernel_edges").get(label, label), **attrs)
    return DotPicture("kernel-path", title, _words(trace, era, outcome, lit, with_shutdown), g)


def _decision(node: str) -> str:
    return texts("kernel_decisions")[node]


def _outcome(node: str) -> str:
    return texts("kernel_outcomes")[node]


def _era_label(era: Era) -> str:
    return texts("kernel_eras")[era.label]


_SHUTDOWN_NODES = {fn.node for fn in SHUTDOWN_PATH} | {"out_shut_rd", "out_shut_wr"}


def _words(trace: Trace | None, era: Era, outcome: CloseOutcome | None, lit: set[str], shutdown: bool) -> str:
    """The lit path as a call chain, the decisions with their answers, the evidence, then kallsyms."""
    names = {fn.node: fn.name for fn in (SYS_CLOSE, *era.path, *SOCKET_PATH, *TCP_CLOSE, *SHUTDOWN_PATH)}
    socket_path = " → ".join(fn.name for fn in SOCKET_PATH)
    if trace is None or outcome is None:
        head = text("kernel.title") if trace is None else f"{trace.scenario}: {text('kernel.no_close')}"
        vfs = " → ".join(names[n] for n in ("sys_close", "fd", "flush", "put"))
        lines = [head, text("kernel.words_vfs", era=_era_label(era), chain=vfs, deferred="")]
        lines.append(text("kernel.words_then", chain=socket_path))
        lines.append(text("kernel.words_branches"))
    else:
        lines = [text("kernel.words_head", scenario=trace.scenario, side=word("side", outcome.side))]
        chain = [names[n] for n in ("sys_close", "fd", "flush", "put") if n in lit]
        if chain:
            deferred = text("kernel.words_deferred") if era.deferred else ""
            lines.append(text("kernel.words_vfs", era=_era_label(era), chain=" → ".join(chain), deferred=deferred))
        steps = [
            ("last_ref", "__fput", "out_shared"),
            ("listening", "listen_stop", "unread"),
            ("unread", "rst_unread", "linger0"),
            ("linger0", "tcp_disconnect", "tcp_close_state"),
            ("tcp_close_state", "tcp_send_fin", "out_no_fin"),
            ("linger_on", "sk_stream_wait_close", "out_fin"),
        ]
        questions = texts("kernel_questions")
        for node, yes, no in steps:
            if node not in lit:
                continue
            answer = text("kernel.yes") if yes in lit else text("kernel.no") if no in lit else "?"
            lines.append(f"{questions[node]} {answer}")
            if node == "last_ref" and yes in lit:
                lines.append("  " + socket_path)
        outcome_node = next((n for n in OUTCOMES if n in lit and not n.startswith("out_shut")), None)
        if outcome_node:
            lines.append(text("kernel.words_outcome", outcome=_outcome(outcome_node).replace("\n", " ")))
        for how in outcome.shutdowns:
            lines.append(text("kernel.words_shutdown", how=how))
        lines.append(text("kernel.words_evidence", evidence=text("transcript.semicolon").join(outcome.words)))
    symbols = kernel_symbols()
    if symbols is not None:
        drawn = [(SYS_CLOSE, *era.path, *SOCKET_PATH, *TCP_CLOSE, *(SHUTDOWN_PATH if shutdown else ()))]
        absent = sorted({fn.name for fn in drawn[0] if symbol_status(fn.symbol) == "absent"})
        if absent:
            lines.append(text("kernel.words_absent", names=", ".join(absent)))
        else:
            lines.append(text("kernel.words_all_found"))
    return "\n".join(lines)
