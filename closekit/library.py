"""The built-in scenarios: one experiment per claim of the source document (names are an interface).

Every scenario runs on the kernel as it ships. Where one needs something else it says so in its
definition: a link with a delay or a rule (closekit.link), or a setting (closekit.settings), and
its comment says why.
"""

from __future__ import annotations

from closekit.errors import UnknownScenarioError
from closekit.link import Link, copy, drop
from closekit.scenario import Options, Scenario
from closekit.settings import Settings
from closekit.steps import (
    accept,
    at_once,
    call,
    close,
    connect,
    epoll,
    exit,
    fork,
    getsockopt,
    linger,
    nonblocking,
    read_to_eof,
    recv,
    release,
    send,
    setsockopt,
    shutdown,
    sleep,
    wait_acked,
    wait_done,
    wait_recv_queue,
    wait_state,
)  # fmt: skip

MILLION = 1_000_000
SMALL_BUFFER = 4096  # SO_RCVBUF / SO_SNDBUF for experiments that need a full window
# the document's timing figures: the server is busy for a while, then reads everything and closes
BUSY_SERVER_READS = (sleep("server", 0.3), read_to_eof("server"), close("server"))
# A link with a round trip of 20 ms, so that *when* things happen can be seen: on one loopback an
# ACK comes back in microseconds and every close() looks as if it returned at once.
TIMING_LINK = Link(delay=0.01)
# Part 5's writer is fast: its whole million bytes fit in its send buffer, so send() returns before
# the reader has read anything. The kernel's initial send buffer is 16 KB (tcp_wmem), so this is
# declared; without it send() blocks until the reader reads, and how much it has read when the
# RST comes would depend on scheduling.
FAST_WRITER = Settings(sysctls={"net.ipv4.tcp_wmem": "4096 2097152 4194304"})

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
            wait_acked("client"),
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
            wait_acked("client"),
            close("server"),
        ),
    ),
    Scenario(
        "return-default",  # on the timing link: each figure of section 3.2 looks different
        "close() returns at once, before the busy server has read anything",
        section="3.2.1",
        steps=(
            send("client", 1000),
            close("client"),
            *BUSY_SERVER_READS,
        ),
        link=TIMING_LINK,
    ),
    Scenario(
        "return-linger",  # on the timing link: each figure of section 3.2 looks different
        "with SO_LINGER > 0, close() returns once the server's TCP has acknowledged "
        "data and FIN, not once the server has read them",
        section="3.2.2",
        steps=(
            linger("client", 5),
            send("client", 1000),
            close("client"),
            *BUSY_SERVER_READS,
        ),
        link=TIMING_LINK,
    ),
    Scenario(
        "return-shutdown-read",  # on the timing link: each figure of section 3.2 looks different
        "shutdown(SHUT_WR) then read(): returns only when the server has read everything and closed",
        section="3.2.3",
        steps=(
            send("client", 1000),
            shutdown("client", "SHUT_WR"),
            recv("client", background=True),
            sleep("server", 0.3),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
            wait_done("client"),
            close("client"),
        ),
        link=TIMING_LINK,
    ),
    Scenario(
        "million-bytes",
        "part 5: the writer closes with the reader's request unread; the reader loses data to an RST",
        section="5",
        options=Options(server_rcvbuf=SMALL_BUFFER),
        settings=FAST_WRITER,
        steps=(
            send("server", 13),
            wait_recv_queue("client", 13),
            send("client", MILLION),
            wait_recv_queue("server", MILLION),  # as much as its 4 KB buffer holds
            close("client"),
            wait_state("server", "CLOSED"),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
        ),
    ),
    Scenario(
        "million-bytes-fixed",
        "part 5, fixed: send, shutdown(SHUT_WR), read to EOF, then close: all 1,000,000 bytes arrive",
        section="5",
        settings=FAST_WRITER,
        steps=(
            send("server", 13),
            wait_recv_queue("client", 13),
            send("client", MILLION),
            shutdown("client", "SHUT_WR"),
            read_to_eof("server"),
            wait_acked("client"),
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

# What real peers and links do to a teardown: timers, losses, crossing FINs, before accept().
_WIRE = (
    Scenario(
        "fin-delayed-ack",
        "the kernel's default: once data has flowed, the peer acknowledges a FIN only when its delayed-ACK timer fires",
        section="3.2.2",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),
            recv("server"),
            close("client"),
            wait_acked("client"),  # the server's ACK of the FIN (seen by sock_diag, so without capture too)
            recv("server"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "linger-waits-for-ack",
        "SO_LINGER {on, 5} over a 20 ms round trip: close() returns when the ACK of data and FIN comes back",
        section="3.2.2",
        link=Link(delay=0.01),
        steps=(
            linger("client", 5),
            send("client", 1000),
            close("client"),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "fin-lost",
        "the first FIN is lost on the link: the closer stays in FIN_WAIT_1 until its timer resends it",
        section="3.1",
        link=Link(rules=(drop("client", "FIN"),)),
        sync_timeout=5.0,
        steps=(
            close("client"),
            wait_state("server", "CLOSE_WAIT"),
            recv("server"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "last-ack-lost",
        "the final ACK is lost: the LAST_ACK side resends its FIN and the TIME_WAIT side answers it again",
        section="3.1",
        link=Link(rules=(drop("client", "ACK", without=("SYN", "FIN"), data=False, nth=2),)),
        sync_timeout=5.0,
        steps=(
            close("client"),
            wait_state("server", "CLOSE_WAIT"),
            recv("server"),
            close("server"),
            wait_state("server", "CLOSED"),
        ),
    ),
    Scenario(
        "simultaneous-close",
        "both sides close at once: the FINs cross, both go through CLOSING and end in TIME_WAIT",
        section="3.1",
        steps=(
            at_once(close("client"), close("server")),
            wait_state("client", "TIME_WAIT"),
            wait_state("server", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "close-syn-sent",
        "close() while connect() is still waiting for an answer (SYN_SENT): the socket just goes, nothing is sent",
        section="4.1",
        start="listening",
        link=Link(rules=(drop("client", "SYN", count=None),)),
        steps=(
            nonblocking("client"),
            connect("client"),
            wait_state("client", "SYN_SENT"),
            close("client"),
            wait_state("client", "CLOSED"),
        ),
    ),
    Scenario(
        "listener-close-queued",
        "a listener closed with a connection still in its accept queue: the kernel resets that connection",
        section="4.1",
        start="listening",
        steps=(
            connect("client"),
            wait_state("server", "ESTABLISHED"),
            close("server", listener=True),
            wait_state("client", "CLOSED"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "rst-before-accept",
        "the client aborts (SO_LINGER {on, 0}) before the server has accepted: what accept() and recv() then say",
        section="3.1",
        start="listening",
        steps=(
            connect("client"),
            wait_state("server", "ESTABLISHED"),
            linger("client", 0),
            close("client"),
            wait_state("server", "CLOSED"),
            accept("server"),
            recv("server"),
            close("server"),
        ),
    ),
    Scenario(
        "silent-peer",
        "the peer stops answering after a close(): the orphan resends its FIN until TCP_USER_TIMEOUT ends it",
        section="3.2.1",
        link=Link(rules=(drop("server", nth=2, count=None),)),
        sync_timeout=5.0,
        steps=(
            setsockopt("client", "TCP_USER_TIMEOUT", 1000),
            close("client"),
            wait_state("client", "CLOSED"),
        ),
    ),
    Scenario(
        "old-duplicate",
        "an abortive close skips TIME_WAIT; a copy of an old segment reaches the next connection on the same 4-tuple",
        section="3.1",
        link=Link(delay=0.005, rules=(copy("client", data=True),)),
        steps=(
            send("client", 100),
            wait_recv_queue("server", 100),
            recv("server"),
            linger("client", 0),
            close("client"),
            wait_state("server", "CLOSED"),
            close("server"),
            connect("client"),
            accept("server"),
            nonblocking("server"),
            release("client"),
            recv("server"),
            close("client"),
            close("server"),
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
        steps=(*_FULL_WINDOW, close("client"), read_to_eof("server"), wait_acked("client"), close("server")),
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
            wait_acked("client"),
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
            wait_acked("client"),
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
            wait_acked("client"),
            close("server"),
        ),
    ),
    Scenario(
        "linger-exit",
        "SO_LINGER {on, 1}, the process exits with data queued: exit does not wait",
        section="5",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            linger("client", 1),
            exit("client"),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
        ),
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
            wait_acked("client"),
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


# ---- functions a few experiments run inside the sandbox (steps.call sends their source) -------------
# Each stands for something no single socket call does: a process that keeps every descriptor, or one
# whose exit drops a socket's last reference. They measure nothing themselves: the lab records the
# call's result, errno and duration like any other call's.
def hold_every_descriptor(sock):
    """A parent that never closes what accept() gives it: hold one more descriptor for the socket
    (dup(), as each accepted connection would add one) until the kernel refuses, and keep them all.
    The OSError is let out, with `partial` the number of descriptors that were held."""
    import os

    held = []
    try:
        while len(held) < 1_000_000:
            held.append(os.dup(sock.fileno()))
    except OSError as error:
        error.partial = len(held)
        raise
    return len(held)


def close_every_descriptor(sock):
    """A parent that closes its copy of each connection it hands on: as many descriptors again and
    again, each closed before the next; returns how many it made."""
    import os

    for _ in range(10_000):
        os.close(os.dup(sock.fileno()))
    return 10_000


def exit_holding_the_socket(sock):
    """fork(); the parent closes its descriptor, so the child holds the socket's last reference; the
    child exits without calling close(). Returns once the child has gone (waitpid), so this call's
    duration is how long the exit took. (Self-contained: the lab sends only this function's code.)"""
    import os

    ready, go = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait until the parent has let go, then exit holding the last reference
        os.close(go)
        os.read(ready, 1)
        os._exit(0)
    os.close(ready)
    sock.close()  # the parent's descriptor: one reference less, nothing else happens
    os.write(go, b"x")
    os.close(go)
    os.waitpid(pid, 0)


def close_then_exit(sock):
    """As exit_holding_the_socket, but the child calls close() on the socket before it exits."""
    import os

    ready, go = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go)
        os.read(ready, 1)
        sock.close()  # the last reference, dropped by close(): SO_LINGER applies
        os._exit(0)
    os.close(ready)
    sock.close()
    os.write(go, b"x")
    os.close(go)
    os.waitpid(pid, 0)


_TWO_CONNECTIONS_FIRST = (  # connection 1 ends with the server's shutdown(SHUT_WR); the client watches
    shutdown("server", "SHUT_WR"),
    wait_state("client", "CLOSE_WAIT"),
    wait_acked("server"),
    epoll("client"),
    recv("client"),
    close("client"),
    wait_state("server", "TIME_WAIT"),
    close("server"),
    connect("client"),  # connection 2: the same addresses and ports
    accept("server"),
)
_MILLION_START = (  # part 5: B greets, A writes a million bytes while B is slow to read
    send("server", 13),
    wait_recv_queue("client", 13),
)

_MORE = (
    Scenario(
        "descriptors-never-closed",
        "a parent that never closes keeps one descriptor per connection until the kernel refuses (EMFILE); "
        "its next call that needs one fails, and its close() cannot end the connection",
        section="1",
        steps=(
            call("server", hold_every_descriptor),
            epoll("server"),  # the lab's own call needs a descriptor too: refused
            close("server"),  # one of many: the copies still hold the socket, so no FIN
        ),
    ),
    Scenario(
        "descriptors-closed",
        "a parent that closes its copy of each connection never runs out of descriptors",
        section="1",
        steps=(
            call("server", close_every_descriptor),
            epoll("server"),
            close("server"),
            wait_state("client", "CLOSE_WAIT"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "shutdown-wr-queued",
        "shutdown(SHUT_WR) with data still queued behind a shut window: the data goes first, then the FIN; "
        "the peer can still send",
        section="2",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            shutdown("client", "SHUT_WR"),
            read_to_eof("server"),
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
        "shutdown-rdwr-peer-sends",
        "shutdown(SHUT_RDWR) with bytes already queued: they stay readable; data the peer sends afterwards "
        "draws an RST, and the peer's next send() fails",
        section="2",
        steps=(
            send("server", 5),
            wait_recv_queue("client", 5),
            shutdown("client", "SHUT_RDWR"),
            wait_state("server", "CLOSE_WAIT"),
            recv("client"),
            send("server", 5),
            wait_state("server", "CLOSED"),
            send("server", 5),
            recv("client"),
            close("client"),
            close("server"),
        ),
    ),
    Scenario(
        "linger-off-ignored",
        "SO_LINGER {l_onoff = 0, l_linger = 0}: with l_onoff 0 the linger time is ignored, close() is the default",
        section="3.1",
        steps=(
            send("client", 13),
            wait_recv_queue("server", 13),
            recv("server"),
            linger("client", 0, onoff=0),
            close("client"),
            wait_state("server", "CLOSE_WAIT"),
            recv("server"),
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "epoll-after-fin",
        "the peer closed: level-triggered epoll keeps reporting the FIN; a write draws an RST, whose error "
        "EPOLLERR reports until SO_ERROR is read",
        section="4.1",
        steps=(
            close("server"),
            wait_state("client", "CLOSE_WAIT"),
            epoll("client"),
            epoll("client"),
            getsockopt("client", "SO_ERROR"),
            send("client", 10),
            wait_state("client", "CLOSED"),
            epoll("client"),
            getsockopt("client", "SO_ERROR"),
            epoll("client"),
            send("client", 10),
            close("client"),
        ),
    ),
    Scenario(
        "send-after-rst-established",
        "an RST arrives while the client is still ESTABLISHED: its next send() gets ECONNRESET, the one after "
        "that EPIPE and SIGPIPE",
        section="4.1",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),
            close("server"),
            wait_state("client", "CLOSED"),
            send("client", 10),
            send("client", 10),
            close("client"),
        ),
    ),
    Scenario(
        "close-vs-shutdown-peer",
        "two connections on the same ports: the server ends the first with shutdown(SHUT_WR), the second with "
        "close(); what the client sees of each",
        section="4.1",
        steps=(
            *_TWO_CONNECTIONS_FIRST,
            close("server"),
            wait_state("client", "CLOSE_WAIT"),
            wait_acked("server"),
            epoll("client"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "close-vs-abort-peer",
        "two connections on the same ports: the server ends the first with shutdown(SHUT_WR), the second with "
        "an abortive close (SO_LINGER {on, 0}); what the client sees of each",
        section="4.1",
        steps=(
            *_TWO_CONNECTIONS_FIRST,
            linger("server", 0),
            close("server"),
            wait_state("client", "CLOSED"),
            epoll("client"),
            recv("client"),
            close("client"),
        ),
    ),
    Scenario(
        "peer-resets-fin-wait",
        "the client closes first; the server aborts (SO_LINGER {on, 0}) while the client waits in FIN_WAIT_2: "
        "the first FIN's sender ends without TIME_WAIT",
        section="3.1",
        steps=(
            close("client"),
            wait_state("server", "CLOSE_WAIT"),
            wait_state("client", "FIN_WAIT_2"),
            linger("server", 0),
            close("server"),
            wait_state("client", "CLOSED"),
        ),
    ),
    Scenario(
        "million-bytes-linger",
        "part 5 with SO_LINGER {on, 5}: the writer lingers, but it still closes with the greeting unread",
        section="5",
        options=Options(server_rcvbuf=SMALL_BUFFER),
        settings=FAST_WRITER,
        steps=(
            *_MILLION_START,
            send("client", MILLION),
            wait_recv_queue("server", MILLION),  # as much as its 4 KB buffer holds
            linger("client", 5),
            close("client"),
            wait_state("server", "CLOSED"),
            read_to_eof("server"),
            close("server"),
        ),
    ),
    Scenario(
        "million-bytes-read-linger",
        "part 5, the writer reads the greeting and lingers (SO_LINGER {on, 1}): close() succeeds before the "
        "reader has read anything",
        section="5",
        options=Options(server_rcvbuf=SMALL_BUFFER),
        settings=FAST_WRITER,
        steps=(
            *_MILLION_START,
            recv("client"),
            linger("client", 1),
            send("client", MILLION),
            wait_recv_queue("server", MILLION),  # as much as its 4 KB buffer holds
            close("client"),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
        ),
    ),
    Scenario(
        "exit-with-linger",
        "SO_LINGER {on, 1} and data queued; the last holder of the socket exits without close(): how long "
        "the exit takes, and whether the data still arrives",
        section="5",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            linger("client", 1),
            call("client", exit_holding_the_socket),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
        ),
    ),
    Scenario(
        "close-in-child-with-linger",
        "as exit-with-linger, but the last holder calls close() before it exits: the close lingers",
        section="5",
        options=_FULL_OPTIONS,
        steps=(
            *_FULL_WINDOW,
            linger("client", 1),
            call("client", close_then_exit),
            read_to_eof("server"),
            wait_acked("client"),
            close("server"),
        ),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (*_ALL, *_WIRE, *_LEDGER, *_MORE)}


def get(name: str) -> Scenario:
    """The built-in scenario `name`; an unknown name gets an error listing the names."""
    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        raise UnknownScenarioError(
            f"no built-in scenario called {name!r}; the names are: {', '.join(SCENARIOS)}"
        ) from None
