"""The kernel's close(2) and shutdown(2) paths as a call graph, with the branch one close() took lit.

The graph is a table of functions (`CLOSE_PATH`, `TCP_CLOSE`, `SHUTDOWN_PATH`, names as in Linux
6.18's fs/open.c, fs/file_table.c, net/socket.c, net/ipv4/af_inet.c and net/ipv4/tcp.c) and the
edges between them. Which branch is lit is decided by `close_outcome` from the trace's evidence
only: what the closing socket sent after the call (FIN, RST or nothing), the unread bytes, the
SO_LINGER option it had set, forked holders of the descriptor and the MIB counter deltas.

Each function is checked against /proc/kallsyms of the machine drawing the graph (read once per
process, on first use): a name missing there is inlined or belongs to another kernel version.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from closekit.errors import CloseKitError
from closekit.render._dot import digraph, ms
from closekit.render.evidence import linger_seconds_before, linger_zero_before, origin, socket_of
from closekit.trace import Segment, Syscall

if TYPE_CHECKING:
    import graphviz

    from closekit.trace import Trace

KALLSYMS = Path("/proc/kallsyms")
LIT = "#1f5fbf"
ABORT = "#c0392b"
DIM = "#9a9a9a"
# close(2) stopped going through filp_close()/fput() in Linux 6.6 (commit 021a160abf62, "use
# __fput_sync in close(2)"); later releases renamed the helpers to file_close_fd/fput_close_sync.
SYNC_CLOSE_SINCE = (6, 6)

Branch = Literal["shared", "unread", "linger-zero", "fin", "no-fin", "failed", "unobserved", "none"]
Status = Literal["present", "absent", "unknown"]


@dataclass(frozen=True)
class Fn:
    """One function on the path: its node id, kernel symbol and what it does there (one short line)."""

    node: str
    symbol: str
    note: str
    static: bool = False  # static in its .c file: often inlined, then absent from kallsyms


CLOSE_PATH = (
    Fn("sys_close", "__x64_sys_close", "close(fd)"),
    Fn("file_close_fd", "file_close_fd", "take fd out of the fd table"),
    Fn("filp_flush", "filp_flush", "f_op->flush: sockets have none", static=True),
    Fn("fput_close_sync", "fput_close_sync", "drop this reference to the open file"),
)
LEGACY_PATH = (
    Fn("close_fd", "close_fd", "take fd out of the fd table"),
    Fn("filp_close", "filp_close", "flush, then fput"),
    Fn("fput", "fput", "last reference: __fput deferred to\ntask_work on return to user space"),
)
SOCKET_PATH = (
    Fn("__fput", "__fput", "release the open file", static=True),
    Fn("sock_close", "sock_close", "socket_file_ops.release", static=True),
    Fn("__sock_release", "__sock_release", "sock->ops->release", static=True),
    Fn("inet_release", "inet_release", "timeout = SO_LINGER on ? l_linger : 0\n(0 when the process is exiting)"),
    Fn("tcp_close", "tcp_close", "lock_sock, __tcp_close, sock_put"),
    Fn("__tcp_close", "__tcp_close", "sk_shutdown = SHUTDOWN_MASK;\npurge the receive queue"),
)
TCP_CLOSE = (
    Fn("rst_unread", "tcp_send_active_reset", "RST: unread data was lost\nTcpExt:TCPAbortOnClose"),
    Fn("tcp_disconnect", "tcp_disconnect", "sk_prot->disconnect(sk, 0)\nTcpExt:TCPAbortOnData"),
    Fn("rst_linger", "tcp_send_active_reset", "RST: abortive close"),
    Fn("tcp_close_state", "tcp_close_state", "ESTABLISHED → FIN_WAIT_1\nCLOSE_WAIT → LAST_ACK", static=True),
    Fn("tcp_send_fin", "tcp_send_fin", "FIN queued after any unsent data"),
    Fn("sk_stream_wait_close", "sk_stream_wait_close", "sleep until FIN is acked or\nthe linger timeout expires"),
)
SHUTDOWN_PATH = (
    Fn("sys_shutdown", "__x64_sys_shutdown", "shutdown(fd, how)"),
    Fn("__sys_shutdown", "__sys_shutdown", "fd → socket (no file reference dropped)"),
    Fn("__sys_shutdown_sock", "__sys_shutdown_sock", "sock->ops->shutdown"),
    Fn("inet_shutdown", "inet_shutdown", "sk_shutdown |= how;\nwake readers and pollers"),
    Fn("tcp_shutdown", "tcp_shutdown", "only SEND_SHUTDOWN acts, in ESTABLISHED,\nSYN_SENT, SYN_RECV, CLOSE_WAIT"),
    Fn("sh_close_state", "tcp_close_state", "ESTABLISHED → FIN_WAIT_1\nCLOSE_WAIT → LAST_ACK", static=True),
    Fn("sh_send_fin", "tcp_send_fin", "FIN queued after any unsent data"),
)
FUNCTIONS = (*CLOSE_PATH, *LEGACY_PATH, *SOCKET_PATH, *TCP_CLOSE, *SHUTDOWN_PATH)

# Decisions (diamonds) and outcomes (what goes on the wire), by node id.
DECISIONS = {
    "last_ref": "last reference to\nthe open file?",
    "unread": "unread data in the\nreceive queue?",
    "linger0": "SO_LINGER on\nwith l_linger 0?",
    "state_fin": "state needs a FIN?\n(ESTABLISHED, CLOSE_WAIT)",
    "linger_on": "SO_LINGER on\nwith l_linger > 0?",
}
OUTCOMES = {
    "out_shared": "nothing sent:\nanother descriptor (fork, dup)\nstill holds the socket",
    "out_unread": "RST, socket CLOSED",
    "out_linger0": "RST, socket CLOSED,\nno TIME_WAIT",
    "out_fin": "FIN, close() returns at once",
    "out_wait": "FIN, close() blocks",
    "out_no_fin": "nothing sent: FIN already sent\n(shutdown) or connection gone",
    "out_shut_rd": "SHUT_RD: nothing sent;\nreads return 0",
    "out_shut_wr": "FIN; the descriptor stays open,\nreads still work",
}
EDGES = (  # (from, to, label) in drawing order
    ("sys_close", "file_close_fd", ""),
    ("file_close_fd", "filp_flush", ""),
    ("filp_flush", "fput_close_sync", ""),
    ("fput_close_sync", "last_ref", ""),
    ("close_fd", "filp_close", ""),
    ("filp_close", "fput", ""),
    ("fput", "last_ref", ""),
    ("last_ref", "out_shared", "no"),
    ("last_ref", "__fput", "yes"),
    ("__fput", "sock_close", ""),
    ("sock_close", "__sock_release", ""),
    ("__sock_release", "inet_release", ""),
    ("inet_release", "tcp_close", ""),
    ("tcp_close", "__tcp_close", ""),
    ("__tcp_close", "unread", ""),
    ("unread", "rst_unread", "yes"),
    ("rst_unread", "out_unread", ""),
    ("unread", "linger0", "no"),
    ("linger0", "tcp_disconnect", "yes"),
    ("tcp_disconnect", "rst_linger", ""),
    ("rst_linger", "out_linger0", ""),
    ("linger0", "tcp_close_state", "no"),
    ("tcp_close_state", "state_fin", ""),
    ("state_fin", "tcp_send_fin", "yes"),
    ("state_fin", "out_no_fin", "no"),
    ("tcp_send_fin", "linger_on", ""),
    ("linger_on", "out_fin", "no"),
    ("linger_on", "sk_stream_wait_close", "yes"),
    ("sk_stream_wait_close", "out_wait", ""),
    ("sys_shutdown", "__sys_shutdown", ""),
    ("__sys_shutdown", "__sys_shutdown_sock", ""),
    ("__sys_shutdown_sock", "inet_shutdown", ""),
    ("inet_shutdown", "tcp_shutdown", ""),
    ("tcp_shutdown", "out_shut_rd", "SHUT_RD"),
    ("tcp_shutdown", "sh_close_state", "SHUT_WR\nSHUT_RDWR"),
    ("sh_close_state", "sh_send_fin", ""),
    ("sh_send_fin", "out_shut_wr", ""),
)
_PREFIX = ("sys_close", "file_close_fd", "filp_flush", "fput_close_sync", "last_ref")
_LEGACY_PREFIX = ("sys_close", "close_fd", "filp_close", "fput", "last_ref")
_SOCKET = ("__fput", "sock_close", "__sock_release", "inet_release", "tcp_close", "__tcp_close", "unread")
LIT_NODES: dict[str, tuple[str, ...]] = {  # after the VFS prefix
    "shared": ("out_shared",),
    "unread": (*_SOCKET, "rst_unread", "out_unread"),
    "linger-zero": (*_SOCKET, "linger0", "tcp_disconnect", "rst_linger", "out_linger0"),
    "fin": (*_SOCKET, "linger0", "tcp_close_state", "state_fin", "tcp_send_fin", "linger_on", "out_fin"),
    "no-fin": (*_SOCKET, "linger0", "tcp_close_state", "state_fin", "out_no_fin"),
    "failed": (),
    "unobserved": (),
    "none": (),
}


@dataclass(frozen=True)
class CloseOutcome:
    """Which branch of the kernel's close path one close() call took, and the evidence for it."""

    side: str
    branch: Branch
    lingered: bool  # SO_LINGER on with l_linger > 0: close() went to sleep in sk_stream_wait_close
    evidence: tuple[str, ...]
    shutdown: str | None = None  # how of the socket's last shutdown() before the close, if any


# ---- the running kernel ------------------------------------------------------------------------
@functools.cache
def kernel_symbols() -> frozenset[str] | None:
    """Every name in /proc/kallsyms (listed even when addresses are hidden); None when unreadable."""
    try:
        with KALLSYMS.open(encoding="utf-8", errors="replace") as lines:
            return frozenset(parts[2] for parts in (line.split() for line in lines) if len(parts) >= 3)
    except OSError:
        return None


def symbol_status(name: str) -> Status:
    """Whether the running kernel has the function `name`: "present", "absent" or "unknown"."""
    symbols = kernel_symbols()
    if symbols is None:
        return "unknown"
    return "present" if name in symbols else "absent"


def _version(release: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", release)
    return (int(found[1]), int(found[2])) if found else (0, 0)


# ---- evidence ----------------------------------------------------------------------------------
def _closes(trace: Trace, side: str | None) -> list[tuple[int, Syscall]]:
    return [
        (i, e)
        for i, e in enumerate(trace.events)
        if isinstance(e, Syscall) and e.call == "close" and (side is None or e.side == side)
    ]


def close_outcome(trace: Trace, close_index: int = 0, side: str | None = None) -> CloseOutcome | None:
    """The branch the `close_index`-th close() (of `side`, or of anyone) took; None if there is no close().

    Raises CloseKitError when `close_index` or `side` pick no close() although the trace has some.
    """
    closes = _closes(trace, side)
    if not closes:
        if side is None and close_index == 0:
            return None
        everyone = [f"{e.side}" for _, e in _closes(trace, None)]
        raise CloseKitError(
            f"no close() #{close_index} by {side or 'anyone'} in {trace.scenario!r}; "
            f"its close() calls, in order, are by: {', '.join(everyone) or 'nobody'}"
        )
    if not -len(closes) <= close_index < len(closes):
        raise CloseKitError(
            f"close_index {close_index} is out of range: {trace.scenario!r} has {len(closes)} close() "
            f"call(s) by {side or 'anyone'} (index 0 to {len(closes) - 1})"
        )
    position, call = closes[close_index]
    return _judge(trace, position, call)


def _judge(trace: Trace, position: int, call: Syscall) -> CloseOutcome:
    sock = socket_of(call.side)
    peer = "server" if sock == "client" else "client"
    events = trace.events
    own = [(i, e) for i, e in enumerate(events) if isinstance(e, Syscall) and socket_of(e.side) == sock]
    later = [i for i, e in own if i > position and e.call in ("close", "shutdown")]
    end = later[0] if later else len(events)
    window = [(i, e) for i, e in enumerate(events) if position < i < end and isinstance(e, Segment)]
    lines = [f"close() by {call.side} at {ms(call.t - origin(trace))}"]
    shutdowns = [e for i, e in own if i < position and e.call == "shutdown" and not e.failed]
    how = str(shutdowns[-1].args.get("how")) if shutdowns else None
    linger = linger_seconds_before(trace, sock, call.t)
    zero = linger_zero_before(trace, sock, call.t)
    if call.failed:
        return CloseOutcome(call.side, "failed", False, (*lines, f"close() failed with {call.errno}"), how)

    # What this socket sent after the call: a RST counts as the close's only if no data from the
    # peer arrived first (data after close() draws a RST of its own, TcpExt:TCPAbortOnData).
    fin = next((e for _, e in window if e.src == sock and e.has("FIN")), None)
    rst = None
    for _, e in window:
        if e.src == peer and e.len > 0:
            break
        if e.src == sock and e.has("RST"):
            rst = e
            break
    first = min((s for s in (fin, rst) if s is not None), key=lambda s: s.t, default=None)
    reset = [e for e in events[:position] if isinstance(e, Segment) and e.has("RST")]
    unread = 0 if reset else _unread_bytes(trace, position, sock, peer)
    counters = {name: trace.counter(name) for name in ("TcpExt:TCPAbortOnClose", "TcpExt:TCPAbortOnData")}
    counted = "; ".join(f"{name} +{value}" for name, value in counters.items() if value)
    holders = _other_holders(trace, position, call.side)

    if unread:
        lines.append(f"{unread} bytes from {peer} arrived that {sock} had not read")
    if zero:
        lines.append("SO_LINGER {on, 0} set before close()")
    elif linger:
        lines.append(f"SO_LINGER {{on, {linger}}} set before close()")
    if how:
        lines.append(f"shutdown({how}) called before close()")

    branch: Branch
    if first is not None and first is rst:
        lines.append(f"RST sent by {sock} {ms(rst.t - call.t)} after close()" + (f"; {counted}" if counted else ""))
        closed_by_unread = unread > 0 or (not zero and counters["TcpExt:TCPAbortOnClose"] > 0)
        branch = "unread" if closed_by_unread else "linger-zero"
    elif first is not None:
        lines.append(f"FIN sent by {sock} {ms(fin.t - call.t)} after close()")
        if holders is None and any(e.call == "fork" for i, e in own if i < position):
            lines.append("this was the last holder of the socket")
        branch = "fin"
    elif not trace.captured:
        lines.append("segments were not captured here: the branch is judged from counters and options")
        if holders:
            branch = "shared"
        elif counters["TcpExt:TCPAbortOnClose"]:
            branch = "unread"
        elif zero and counters["TcpExt:TCPAbortOnData"]:
            branch = "linger-zero"
        else:
            branch = "unobserved"
    elif holders:
        until = f" until {holders}'s close()" if later else ""
        lines.append(f"nothing sent by {sock}{until}: {holders} (forked) still holds the descriptor")
        branch = "shared"
    else:
        lines.append(f"nothing sent by {sock} after close(): " + _already_over(trace, call, sock))
        branch = "no-fin"

    lingered = branch == "fin" and linger > 0
    if lingered and fin is not None:
        returned = call.t + call.duration
        fin_end = fin.seq + fin.len + 1
        acked = any(e.src == peer and e.ack >= fin_end and e.t <= returned for _, e in window)
        why = (
            "after the peer acknowledged data and FIN"
            if acked
            else "when l_linger ran out, its FIN still unacknowledged"
            + (" (not even sent yet)" if fin.t > returned else "")
        )
        lines.append(f"close() waited {ms(call.duration)} in sk_stream_wait_close and returned {call.result} {why}")
    return CloseOutcome(call.side, branch, lingered, tuple(lines), how)


def _already_over(trace: Trace, call: Syscall, sock: str) -> str:
    """Why a close() with nothing to send had nothing to send: the FIN or RST seen before it."""
    before = [e for e in trace.segments() if e.t <= call.t and (e.has("RST") or (e.src == sock and e.has("FIN")))]
    if not before:
        return "no FIN needed in its state"
    last = before[-1]
    what = "connection already reset by" if last.has("RST") else "FIN already sent by"
    return f"{what} {last.src} at {ms(last.t - origin(trace))}"


def _unread_bytes(trace: Trace, position: int, sock: str, peer: str) -> int:
    """Bytes the peer had sent (by sequence number, so retransmissions count once) minus bytes read."""
    events = trace.events[:position]
    sent = [e.seq + e.len for e in events if isinstance(e, Segment) and e.src == peer and e.len > 0]
    calls = [e for e in events if isinstance(e, Syscall) and socket_of(e.side) == sock and e.call == "recv"]
    read = sum(e.result for e in calls if isinstance(e.result, int) and e.result > 0)
    return max(0, (max(sent) - 1 if sent else 0) - read)


def _other_holders(trace: Trace, position: int, side: str) -> str | None:
    """Another process that still held this socket's descriptor at the close (forked, not yet closed)."""
    sock = socket_of(side)
    holders = [sock]
    gone: set[str] = set()
    for e in trace.events[:position]:
        if not isinstance(e, Syscall) or socket_of(e.side) != sock or e.failed:
            continue
        if e.call == "fork" and isinstance(e.result, str):
            holders.append(e.result)
        elif e.call in ("close", "exit"):
            gone.add(e.side)
    others = [h for h in holders if h != side and h not in gone]
    return ", ".join(others) if others and len(holders) > 1 else None


# ---- drawing -----------------------------------------------------------------------------------
def _fn_label(fn: Fn) -> str:
    status = symbol_status(fn.symbol)
    mark = {
        "present": "✓ in kallsyms",
        "absent": "✗ not in kallsyms" + (" (static: inlined)" if fn.static else ""),
        "unknown": "? kallsyms unreadable",
    }[status]
    return f"{fn.symbol}()\n{fn.note}\n{mark}"


def kernel_path(trace: Trace | None = None, close_index: int = 0, side: str | None = None) -> graphviz.Digraph:
    """close(fd) from the system call to tcp_close and its outcomes, beside it shutdown(); lit from a trace.

    With a trace, the branch the `close_index`-th close() (of `side`; default: the first close()
    in the trace) took is lit, decided from the trace's evidence, which is written on the graph.
    Function nodes say whether this machine's kernel has the symbol (/proc/kallsyms).
    """
    release = os.uname().release
    traced = trace.kernel if trace is not None else release
    outcome = close_outcome(trace, close_index, side) if trace is not None else None
    modern = _version(traced) >= SYNC_CLOSE_SINCE
    lit: set[str] = set()
    if outcome is not None and outcome.branch not in ("failed", "none"):
        lit.update(_PREFIX if modern else _LEGACY_PREFIX)
        lit.update(LIT_NODES[outcome.branch])
        if outcome.lingered:
            lit.difference_update({"out_fin"})
            lit.update({"sk_stream_wait_close", "out_wait"})
    elif outcome is not None:
        lit.add("sys_close")
    if outcome is not None and outcome.shutdown:
        lit.update(fn.node for fn in SHUTDOWN_PATH[:5])
        wr = ("sh_close_state", "sh_send_fin", "out_shut_wr")
        lit.update(("out_shut_rd",) if outcome.shutdown == "SHUT_RD" else wr)

    title = "close(fd) and shutdown(fd, how) in the kernel"
    if trace is not None:
        who = f"close() #{close_index} by {outcome.side}" if outcome else "no close() in this trace"
        title = f"{trace.scenario}: {who}"
    checked = f"function names checked against /proc/kallsyms of kernel {release}"
    if kernel_symbols() is None:
        checked = f"/proc/kallsyms unreadable on kernel {release}: symbols unknown"
    if traced != release:
        checked += f"\nthe trace was recorded on kernel {traced}"
    evidence = "\n".join(("evidence: " + outcome.evidence[0], *outcome.evidence[1:])) if outcome else ""
    label = "\n".join(part for part in (title, checked, evidence) if part)
    g = digraph("kernel_path", label=label, labelloc="t", fontsize="13", rankdir="TB", nodesep="0.25")
    g.attr(ranksep="0.3", newrank="true")

    def colour(node: str) -> str:
        if node not in lit:
            return DIM if trace is not None else "black"
        return ABORT if node in ("rst_unread", "rst_linger", "tcp_disconnect", "out_unread", "out_linger0") else LIT

    def fn_node(graph: graphviz.Digraph, fn: Fn) -> None:
        attrs = {"shape": "box", "style": "rounded", "color": colour(fn.node), "fontcolor": colour(fn.node)}
        if symbol_status(fn.symbol) == "absent":
            attrs["style"] = "rounded,dashed"
        if fn.node in lit:
            attrs.update(penwidth="2", style=attrs["style"] + ",filled", fillcolor="#e8f0fc")
        graph.node(fn.node, _fn_label(fn), **attrs)

    def other_node(graph: graphviz.Digraph, node: str, text: str, shape: str) -> None:
        attrs = {"shape": shape, "color": colour(node), "fontcolor": colour(node), "fontsize": "10"}
        if node in lit:
            attrs.update(penwidth="2", style="filled", fillcolor="#fbe9e7" if colour(node) == ABORT else "#e8f0fc")
        graph.node(node, text, **attrs)

    with g.subgraph(name="cluster_close") as close:
        close.attr(label="close(fd)", color="#cccccc")
        with close.subgraph(name="cluster_vfs") as vfs:
            vfs.attr(label=f"VFS on Linux ≥ {SYNC_CLOSE_SINCE[0]}.{SYNC_CLOSE_SINCE[1]} (names as in 6.18)")
            for fn in CLOSE_PATH:
                fn_node(vfs, fn)
        with close.subgraph(name="cluster_legacy") as legacy:
            legacy.attr(label=f"VFS before Linux {SYNC_CLOSE_SINCE[0]}.{SYNC_CLOSE_SINCE[1]}", style="dashed")
            for fn in LEGACY_PATH:
                fn_node(legacy, fn)
        for fn in (*SOCKET_PATH, *TCP_CLOSE):
            fn_node(close, fn)
        for node, text in DECISIONS.items():
            other_node(close, node, text, "diamond")
        for node in ("out_shared", "out_unread", "out_linger0", "out_fin", "out_wait", "out_no_fin"):
            other_node(close, node, OUTCOMES[node], "note")
    with g.subgraph(name="cluster_shutdown") as shut:
        shut.attr(label="shutdown(fd, how): acts on the socket, not the file", color="#cccccc")
        for fn in SHUTDOWN_PATH:
            fn_node(shut, fn)
        for node in ("out_shut_rd", "out_shut_wr"):
            other_node(shut, node, OUTCOMES[node], "note")

    for source, target, text in EDGES:
        on = source in lit and target in lit
        attrs = {"color": colour(target) if on else (DIM if trace is not None else "black")}
        if on:
            attrs.update(penwidth="2.5", fontcolor=colour(target))
        g.edge(source, target, text, **attrs)
    return g
