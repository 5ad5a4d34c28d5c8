"""Look-alikes: experiments whose outcome resembles a claim's while the kernel took another path.

A check that judges the outcome (an RST went out, the reader got 0, close() returned with nothing
arriving meanwhile) holds on them; a check that establishes the claim's mechanism (which abort
counter moved, which process read, which call blocked and for how long, which connection) fails.
tests/test_claims.py runs each once and requires every claim listed for it to fail on it.

Each is grouped by the kind of look-alike it is (the kinds a check can confuse with the real thing).
"""

from __future__ import annotations

from closekit.library import FAST_WRITER, FULL_OPTIONS, FULL_WINDOW, MILLION
from closekit.link import Link, copy, hold
from closekit.scenario import Options, Scenario
from closekit.steps import (
    accept,
    call,
    close,
    connect,
    epoll,
    fork,
    linger,
    nonblocking,
    read_to_eof,
    recv,
    release,
    send,
    shutdown,
    wait_acked,
    wait_done,
    wait_recv_queue,
    wait_state,
)


def shut_write(sock):
    """Nobody exits: the socket's holder only shuts its sending half and carries on."""
    import socket

    sock.shutdown(socket.SHUT_WR)
    return 0


def returns_at_once(sock):
    """Nobody exits, nobody closes: the function returns and the lab's own close() follows."""
    return 0


def open_dev_null(sock):
    """Descriptors that are not the connection's: /dev/null, opened until the kernel refuses, kept."""
    import os

    held = []
    try:
        while len(held) < 1_000_000:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as error:
        error.partial = len(held)
        raise
    return len(held)


LOOKALIKES: dict[str, tuple[str, Scenario]] = {
    # ---- which process read: a forked child reads, the process that shut down finds nothing --------
    "child-reads-after-shut-rd": (
        "reader",
        Scenario(
            "child-reads-after-shut-rd",
            "SHUT_RD by the parent; a forked child reads what was queued and what arrives later",
            steps=(
                fork("client", "client-child"),
                send("server", 5),
                wait_recv_queue("client", 5),
                shutdown("client", "SHUT_RD"),
                wait_done("client"),
                recv("client-child"),
                wait_done("client-child"),  # the child reads first
                recv("client"),
                wait_done("client"),  # ... and the parent's read is done before more comes
                send("server", 5),
                wait_recv_queue("client", 5),
                recv("client-child"),
                wait_done("client-child"),
                recv("client"),
                close("client-child"),
                close("client"),
                wait_state("server", "CLOSE_WAIT"),
                close("server"),
            ),
        ),
    ),
    # ---- which connection: the FIN of a second connection on the same ports ---------------------------
    "second-connection-fin": (
        "connection",
        Scenario(
            "second-connection-fin",
            "connection 1 is reset with 6 bytes the server never read (its close() then sends nothing); "
            "connection 2 ends with a plain close()",
            steps=(
                send("client", 6),
                wait_recv_queue("server", 6),
                linger("client", 0),
                close("client"),
                wait_state("server", "CLOSED"),
                close("server"),
                connect("client"),
                accept("server"),
                close("server"),
                wait_state("client", "CLOSE_WAIT"),
                recv("client"),
                close("client"),
            ),
        ),
    ),
    "shutdown-by-the-last-holder": (
        "reader",
        Scenario(
            "shutdown-by-the-last-holder",
            "the forked child closes first; the parent, now the socket's only holder, calls shutdown(SHUT_WR)",
            steps=(
                fork("server", "server-child"),
                close("server-child"),
                wait_done("server-child"),  # the child lets go first
                shutdown("server", "SHUT_WR"),
                wait_state("client", "CLOSE_WAIT"),
                recv("client"),
                close("server"),
                close("client"),
            ),
        ),
    ),
    # ---- which abort counter: an RST from SO_LINGER {1, 0} with nothing unread ------------------------
    "linger-zero-nothing-unread": (
        "abort counter",
        Scenario(
            "linger-zero-nothing-unread",
            "the server reads everything, then aborts with SO_LINGER {1, 0}: an RST, TCPAbortOnData",
            steps=(
                send("client", 6),
                wait_recv_queue("server", 6),
                recv("server"),
                linger("server", 0),
                close("server"),
                wait_state("client", "CLOSED"),
                epoll("client"),
                recv("client"),
                close("client"),
            ),
        ),
    ),
    "unread-with-linger-zero-client": (
        "abort counter",
        Scenario(
            "unread-with-linger-zero-client",
            "the client sets SO_LINGER {1, 0} but closes with 6 unread bytes: the unread-data abort",
            steps=(
                send("server", 6),
                wait_recv_queue("client", 6),
                linger("client", 0),
                close("client"),
                wait_state("server", "CLOSED"),
                recv("server"),
            ),
        ),
    ),
    "million-read-then-abort": (
        "abort counter",
        Scenario(
            "million-read-then-abort",
            "part 5's writer reads the greeting, then aborts with SO_LINGER {1, 0}: B still loses data, "
            "but to TCPAbortOnData, not to the unread greeting",
            options=Options(server_rcvbuf=4096),
            settings=FAST_WRITER,
            steps=(
                send("server", 13),
                wait_recv_queue("client", 13),
                recv("client"),
                send("client", MILLION),
                wait_recv_queue("server", MILLION),
                linger("client", 0),
                close("client"),
                wait_state("server", "CLOSED"),
                read_to_eof("server"),
                close("server"),
            ),
        ),
    ),
    # ---- what the RST answered: an orphan's RST to data the peer sent afterwards ---------------------
    "orphan-rst-answers-data": (
        "RST cause",
        Scenario(
            "orphan-rst-answers-data",
            "SO_LINGER {1, 1} runs out (Linux: close() returns 0); the server then sends, and the orphan "
            "answers that data with an RST",
            options=FULL_OPTIONS,
            steps=(
                *FULL_WINDOW,
                linger("client", 1),
                close("client"),
                wait_done("client"),  # the linger time ran out: the socket is an orphan now
                send("server", 5),
                read_to_eof("server"),
                close("server"),
            ),
            sync_timeout=3.0,
        ),
    ),
    # ---- which call blocked, and for how long: close() under SO_LINGER {1, 1} -------------------------
    "linger-close-nothing-back": (
        "blocked call",
        Scenario(
            "linger-close-nothing-back",
            "SO_LINGER {1, 1} with data queued and the server's ACKs held by the wire: close() blocks "
            "1 s with nothing arriving meanwhile",
            options=Options(client_sndbuf=65536),
            link=Link(rules=(hold("server", "ACK", nth=2, count=None),)),
            steps=(
                send("client", 20000),
                linger("client", 1),
                close("client"),
                wait_done("client"),
                release("server"),
                read_to_eof("server"),
            ),
            sync_timeout=3.0,
        ),
    ),
    # ---- a stand-in for the act: nobody exits; descriptors that are not the connection's -------------
    "nobody-exits": (
        "stand-in",
        Scenario(
            "nobody-exits",
            "SO_LINGER {1, 1}, data queued; the called function only returns and the process closes",
            options=FULL_OPTIONS,
            steps=(
                *FULL_WINDOW,
                linger("client", 1),
                call("client", returns_at_once),
                close("client"),
                read_to_eof("server"),
                wait_acked("client"),
                wait_done("client"),
                close("server"),
            ),
        ),
    ),
    "fresh-data-after-duplicate": (
        "stand-in",
        Scenario(
            "fresh-data-after-duplicate",
            "the old duplicate is refused; the client then sends 100 fresh bytes of its own, which recv() reads",
            link=Link(delay=0.005, rules=(copy("client", data=True),)),
            steps=(
                send("client", 100),
                wait_recv_queue("server", 100),
                recv("server"),
                wait_done("server"),
                linger("client", 0),
                close("client"),
                wait_state("server", "CLOSED"),
                close("server"),
                connect("client"),
                accept("server"),
                nonblocking("server"),
                release("client"),
                send("client", 100),
                wait_recv_queue("server", 100),
                recv("server"),
                close("client"),
                close("server"),
            ),
        ),
    ),
    "dev-null-descriptors": (
        "stand-in",
        Scenario(
            "dev-null-descriptors",
            "the server fills its descriptor table with /dev/null, not with the connection",
            steps=(
                call("server", open_dev_null),
                epoll("server"),
                close("server"),
                wait_state("client", "CLOSE_WAIT"),
                recv("client"),
                close("client"),
            ),
        ),
    ),
}

# Which checks each look-alike must defeat.
FOOLED: dict[str, tuple[str, ...]] = {
    "child-reads-after-shut-rd": ("shut-rd-discards-later-data", "shut-rd-discards-queued-data"),
    "shutdown-by-the-last-holder": ("shutdown-ignores-refcount", "close-last-reference-fin"),
    "second-connection-fin": ("table-close-default-fin", "close-unread-rst"),
    "linger-zero-nothing-unread": ("close-unread-rst", "close-unread-peer-epoll", "table-close-default-fin"),
    "unread-with-linger-zero-client": ("linger-zero-rst",),
    "million-read-then-abort": ("million-bytes-lost", "million-bytes-linger-no-help"),
    "orphan-rst-answers-data": ("linger-timeout-rst",),
    "linger-close-nothing-back": ("close-returns-at-once", "close-before-fin-acked", "return-default-before-read"),
    "nobody-exits": ("exit-lingers-in-background",),
    "fresh-data-after-duplicate": ("old-duplicate-delivered",),
    "dev-null-descriptors": ("parent-runs-out-of-descriptors",),
}
