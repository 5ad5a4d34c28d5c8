"""The built-in scenarios: one experiment per claim of the source document (names are an interface)."""

from __future__ import annotations

from closekit.errors import UnknownScenarioError
from closekit.scenario import Options, Scenario
from closekit.steps import (
    close,
    epoll,
    exit,
    fork,
    linger,
    nonblocking,
    read_to_eof,
    recv,
    send,
    shutdown,
    sleep,
    wait_done,
    wait_recv_queue,
    wait_state,
)  # fmt: skip

MILLION = 1_000_000
SMALL_BUFFER = 4096  # SO_RCVBUF / SO_SNDBUF for experiments that need a full window
# the document's timing figures: the server is busy for a while, then reads everything and closes
BUSY_SERVER_READS = (sleep("server", 0.3), read_to_eof("server"), close("server"))

_ALL = (
    Scenario(
        "close-default",
        "close() with nothing unread: FIN, the peer reads EOF",
        section="1",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),
            recv("server"),
            close("client"),
            wait_state("server", "CLOSE_WAIT"),
            recv("server"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "close-unread",
        "close() with unread data: RST instead of FIN, the peer gets ECONNRESET",
        section="5",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),
            close("server"),
            wait_state("client", "CLOSED"),
            recv("client"),
        ),
    ),
    Scenario(
        "close-shared",
        "the server's descriptor is shared with a forked child: the parent's close "
        "sends nothing, the child's (last) close sends FIN",
        section="1",
        steps=(
            fork("server", "server-child"),
            close("server"),
            epoll("client"),
            close("server-child"),
            wait_state("client", "CLOSE_WAIT"),
            epoll("client"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "shutdown-wr",
        "shutdown(SHUT_WR): a half-close; FIN goes out, the peer can still send and be read",
        section="2",
        steps=(
            shutdown("client", "SHUT_WR"),
            wait_state("server", "CLOSE_WAIT"),
            recv("server"),
            send("server", 5),
            wait_recv_queue("client", 5),
            recv("client"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "shutdown-rd",
        "shutdown(SHUT_RD): what happens to data that arrives afterwards, on this kernel",
        section="2",
        steps=(
            shutdown("client", "SHUT_RD"),
            recv("client"),
            send("server", 5),
            wait_recv_queue("client", 5),
            recv("client"),
            close("client"),
            close("server"),
        ),
    ),
    Scenario(
        "shutdown-wr-rd",
        "SHUT_WR then SHUT_RD while the peer keeps sending",
        section="2",
        steps=(
            shutdown("client", "SHUT_WR"),
            wait_state("server", "CLOSE_WAIT"),
            send("server", 5),
            wait_recv_queue("client", 5),
            shutdown("client", "SHUT_RD"),
            send("server", 5),
            recv("client"),
            close("client"),
            send("server", 5),
            recv("server"),
        ),
    ),
    Scenario(
        "shutdown-rdwr",
        "shutdown(SHUT_RDWR): both halves at once, the descriptor stays open",
        section="2",
        steps=(
            shutdown("client", "SHUT_RDWR"),
            wait_state("server", "CLOSE_WAIT"),
            recv("server"),
            recv("client"),
            send("client", 1),
            close("server"),
            wait_state("client", "TIME_WAIT"),
            close("client"),
        ),
    ),
    Scenario(
        "shutdown-shared",
        "shutdown() acts on the socket, not the descriptor: FIN goes out although a forked child still holds it",
        section="2",
        steps=(
            fork("server", "server-child"),
            shutdown("server", "SHUT_WR"),
            wait_state("client", "CLOSE_WAIT"),
            recv("client"),
            send("server-child", 1),
            close("server"),
            close("server-child"),
        ),
    ),
    Scenario(
        "linger-zero",
        "SO_LINGER {on, 0}: close() aborts with RST, no FIN, no TIME_WAIT",
        section="3.1",
        steps=(
            send("client", 13),
            wait_recv_queue("server", 13),
            recv("server"),
            linger("client", 0),
            close("client"),
            wait_state("server", "CLOSED"),
            recv("server"),
        ),
    ),
    Scenario(
        "linger-timeout",
        "SO_LINGER {on, 1} with the peer's window full: how long close() blocks and what it returns",
        section="3.2.2",
        options=Options(server_rcvbuf=SMALL_BUFFER, client_sndbuf=SMALL_BUFFER * 4),
        steps=(
            send("client", 20000, background=True),
            wait_recv_queue("server", 20000),  # as much as its 4 KB buffer holds: the window closes
            wait_done("client"),
            linger("client", 1),
            close("client"),
            read_to_eof("server"),
            close("server"),
        ),
        sync_timeout=3.0,
    ),
    Scenario(
        "linger-ack",
        "SO_LINGER {on, 5}, the peer's TCP acknowledging: close() returns once data and FIN are acknowledged",
        section="3.2.2",
        steps=(
            linger("client", 5),
            send("client", 1000),
            close("client"),
            wait_recv_queue("server", 1000),
            read_to_eof("server"),
            close("server"),
        ),
    ),
    Scenario(
        "return-default",
        "close() returns at once, before the busy server has read anything",
        section="3.2.1",
        steps=(
            send("client", 1000),
            close("client"),
            *BUSY_SERVER_READS,
        ),
    ),
    Scenario(
        "return-linger",
        "with SO_LINGER > 0, close() returns once the server's TCP has acknowledged "
        "data and FIN, not once the server has read them",
        section="3.2.2",
        steps=(
            linger("client", 5),
            send("client", 1000),
            close("client"),
            *BUSY_SERVER_READS,
        ),
    ),
    Scenario(
        "return-shutdown-read",
        "shutdown(SHUT_WR) then read(): returns only when the server has read everything and closed",
        section="3.2.3",
        steps=(
            send("client", 1000),
            shutdown("client", "SHUT_WR"),
            recv("client", background=True),
            sleep("server", 0.3),
            read_to_eof("server"),
            close("server"),
            wait_done("client"),
            close("client"),
        ),
    ),
    Scenario(
        "million-bytes",
        "part 5: the writer closes with the reader's request unread; the reader loses data to an RST",
        section="5",
        options=Options(server_rcvbuf=SMALL_BUFFER),
        steps=(
            send("server", 13),
            wait_recv_queue("client", 13),
            send("client", MILLION),
            wait_recv_queue("server", MILLION),  # as much as its 4 KB buffer holds
            close("client"),
            wait_state("server", "CLOSED"),
            read_to_eof("server"),
            close("server"),
        ),
    ),
    Scenario(
        "million-bytes-fixed",
        "part 5, fixed: send, shutdown(SHUT_WR), read to EOF, then close: all 1,000,000 bytes arrive",
        section="5",
        steps=(
            send("server", 13),
            wait_recv_queue("client", 13),
            send("client", MILLION),
            wait_recv_queue("server", MILLION),
            shutdown("client", "SHUT_WR"),
            read_to_eof("server"),
            close("server"),
            read_to_eof("client"),
            close("client"),
        ),
    ),
    Scenario(
        "write-after-peer-close",
        "writing to a peer that closed: epoll events, the first write provokes RST, the second gets EPIPE and SIGPIPE",
        section="5",
        steps=(
            close("server"),
            wait_state("client", "CLOSE_WAIT"),
            epoll("client"),
            send("client", 10),
            wait_state("client", "CLOSED"),
            epoll("client"),
            send("client", 10),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "time-wait",
        "the active closer ends in TIME_WAIT; the passive closer goes through LAST_ACK, which lasts only "
        "until the peer's immediate ACK on loopback",
        section="3.1",
        options=Options(),
        steps=(
            close("client"),
            wait_state("server", "CLOSE_WAIT"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
)

# Experiments behind single claims of the ledger and cells of the chapters.
_FULL_WINDOW = (  # the client's send buffer holds data the server's zero window keeps back
    send("client", 20000, background=True),
    wait_recv_queue("server", 20000),  # as much as its buffer holds: the window closes
    wait_done("client"),
)
_FULL_OPTIONS = Options(server_rcvbuf=SMALL_BUFFER, client_sndbuf=SMALL_BUFFER * 4)

_LEDGER = (
    Scenario(
        "close-shared-child",
        "the forked child closes first: the parent still holds the socket, so nothing is sent",
        section="1",
        steps=(
            fork("server", "server-child"),
            close("server-child"),
            epoll("client"),
            send("server", 1),
            wait_recv_queue("client", 1),
            recv("client"),
            close("server"),
            wait_state("client", "CLOSE_WAIT"),
            close("client"),
        ),
    ),
    Scenario(
        "close-full-window",
        "a default close() while the peer's window is shut: close() returns, the data and FIN leave later",
        section="4.1",
        options=_FULL_OPTIONS,
        steps=(*_FULL_WINDOW, close("client"), read_to_eof("server"), close("server")),
    ),
    Scenario(
        "shutdown-rd-queued",
        "shutdown(SHUT_RD) with data already queued: is it discarded, and can the process still send?",
        section="2",
        steps=(
            send("server", 5),
            wait_recv_queue("client", 5),
            shutdown("client", "SHUT_RD"),
            recv("client"),
            send("client", 3),
            wait_recv_queue("server", 3),
            recv("server"),
            close("client"),
            close("server"),
        ),
    ),
    Scenario(
        "shutdown-wr-unread",
        "shutdown(SHUT_WR) with unread data: a FIN, no RST; the peer sees what a close() would show",
        section="4.2",
        steps=(
            send("server", 5),
            wait_recv_queue("client", 5),
            shutdown("client", "SHUT_WR"),
            wait_state("server", "CLOSE_WAIT"),
            epoll("server"),
            recv("server"),
            recv("client"),
            close("client"),
            close("server"),
        ),
    ),
    Scenario(
        "linger-zero-queued",
        "SO_LINGER {on, 0} with data still queued in the send buffer: the data is dropped",
        section="3.1",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            linger("client", 0),
            close("client"),
            wait_state("server", "CLOSED"),
            read_to_eof("server"),
            close("server"),
        ),
    ),
    Scenario(
        "linger-nonblocking",
        "SO_LINGER {on, 1} on a non-blocking socket whose data cannot leave: does close() wait?",
        section="3.2.2",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            linger("client", 1),
            nonblocking("client"),
            close("client"),
            read_to_eof("server"),
            close("server"),
        ),
    ),
    Scenario(
        "linger-exit",
        "SO_LINGER {on, 1}, the process exits with data queued: exit does not wait",
        section="5",
        options=_FULL_OPTIONS,
        steps=(*_FULL_WINDOW, linger("client", 1), exit("client"), read_to_eof("server"), close("server")),
    ),
    Scenario(
        "linger-shutdown",
        "SO_LINGER {on, 1}, then shutdown(SHUT_WR) with data queued: does shutdown() wait?",
        section="5",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            linger("client", 1),
            shutdown("client", "SHUT_WR"),
            read_to_eof("server"),
            close("server"),
            close("client"),
        ),
    ),
    Scenario(
        "close-unread-epoll",
        "close() with unread data: what epoll reports on the peer that receives the RST",
        section="4.1",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),
            close("server"),
            wait_state("client", "CLOSED"),
            epoll("client"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "close-unread-linger-zero",
        "close() with unread data and SO_LINGER {on, 0}: which abort path the kernel takes first",
        section="4.1",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),
            linger("server", 0),
            close("server"),
            wait_state("client", "CLOSED"),
            recv("client"),
        ),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (*_ALL, *_LEDGER)}


def get(name: str) -> Scenario:
    """The built-in scenario `name`; an unknown name gets an error listing the names."""
    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        raise UnknownScenarioError(
            f"no built-in scenario called {name!r}; the names are: {', '.join(SCENARIOS)}"
        ) from None
