"""The built-in scenarios: one experiment per claim of the source document (names are an interface).

Each is the programs its lesson is about: each process runs its lines as that program would, and
the sync points between them are the only order the lab adds (closekit.scenario). A sync point
stands where a lesson needs one side to be at a given point before the other acts: the server
already blocked in recv() when the client closes, a receive buffer already full. They are written
so that every run tells the same story: at each sync point the processes are either done or
blocked, so what happens next is caused by the lines after it.

Every scenario runs on the kernel as it ships. Where one needs something else it says so in its
definition: a link with a delay or a rule (closekit.link), or a setting (closekit.settings), and
its comment says why.
"""

from __future__ import annotations

from closekit.errors import UnknownScenarioError
from closekit.link import Link, copy, drop
from closekit.premise import Premise, data_queued, sent_all, window_shut
from closekit.scenario import Options, Scenario
from closekit.settings import Settings
from closekit.steps import (
    Step,
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
    wait_blocked,
    wait_done,
    wait_recv_queue,
    wait_segment,
    wait_state,
)  # fmt: skip

MILLION = 1_000_000
SMALL_BUFFER = 4096  # SO_RCVBUF / SO_SNDBUF for experiments that need a full window
# A link with a round trip of 20 ms, so that *when* things happen can be seen: on one loopback an
# ACK comes back in microseconds and every close() looks as if it returned at once.
TIMING_LINK = Link(delay=0.01)
# Part 5's writer is fast: its whole million bytes fit in its send buffer, so send() returns before
# the reader has read anything. The kernel's initial send buffer is 16 KB (tcp_wmem), so this is
# declared; without it send() blocks until the reader reads, and how much it has read when the
# RST comes would depend on scheduling.
FAST_WRITER = Settings(sysctls={"net.ipv4.tcp_wmem": "4096 2097152 4194304"})


def blocked(step: Step) -> tuple[Step, Step]:
    """`step`, a call that waits (a recv() with nothing to read yet), and the sync point that holds
    the lines after it until the process is blocked in it."""
    return step, wait_blocked(step.side)


# the document's timing figures: the server is busy (it sleeps) while the client writes and closes,
# then reads everything and closes
BUSY_SERVER = blocked(sleep("server", 0.3))
SERVER_READS = (read_to_eof("server"), close("server"))
# ... and where a bulk transfer ends: whether the reader's TCP acknowledges the FIN inside the read
# (a window update as the reader drains its buffer) or on its timer after it is the scheduler's
# call, so the server closes once it has
SERVER_DRAINS = (read_to_eof("server"), wait_acked("client"), close("server"))
# A full window: the client sends FULL_BYTES, more than the server's 4 KB receive buffer takes, so the
# server's window shuts with the rest still queued in the client's send buffer. That buffer must take
# every byte without waiting: a send() that finds it full sleeps in sk_stream_wait_memory() and is woken
# by sk_stream_write_space() only once a third of it is free again, which takes ACKs, and a shut window
# brings none. What a buffer holds depends on the kernel, since each queued segment is charged its skb's
# truesize: on Linux 6.1 a 1,448-byte segment costs 2,728 bytes (its head comes from kmalloc-1024 in
# kmalloc_reserve(); 6.3 gave small heads their own 640-byte skb_small_head_cache). With SO_SNDBUF
# 16384 (a 32 KB buffer) 6.1 was full at 18,824 queued bytes (35,464 charged; 6.12 at 21,720, 6.18 at
# 24,616), and send(20000) never returned in 9 of 10 runs on 6.1 (none on 6.12 or 6.18). SO_SNDBUF 32768
# holds 36,200 queued bytes on 6.1 (41,992 on 6.12, 44,888 on 6.18): more than twice the 15,656 queued
# here, on every kernel the course supports (benchmarks/full_window.py measures it on a kernel).
FULL_BYTES = 20000
FULL_WINDOW = (
    send("client", FULL_BYTES),  # returns once the client's buffer has taken it all
    wait_recv_queue("server", FULL_BYTES),  # as much as the server's buffer holds: its window is shut
    wait_done("client"),
)
FULL_OPTIONS = Options(server_rcvbuf=SMALL_BUFFER, client_sndbuf=SMALL_BUFFER * 8)
# What the full-window scenarios' lessons stand on, checked in every trace before a verdict is drawn.
FULL_PREMISES = (
    sent_all("client", FULL_BYTES),
    window_shut("server", "client", FULL_BYTES),
    data_queued("client", FULL_BYTES),
)

_ALL = (
    Scenario(
        "close-default",
        "close() with nothing unread: FIN, the peer reads EOF and closes at once; its FIN carries the ACK",
        section="1",
        steps=(
            *blocked(recv("server")),  # the server waits for a request
            send("client", 6),
            *blocked(recv("server")),  # it has read it, and waits for the next
            close("client"),
            close("server"),  # its recv() returns 0 (end of stream): it closes at once
            wait_state("client", "TIME_WAIT"),
        ),
    ),
    Scenario(
        "close-unread",
        "close() with unread data: RST instead of FIN, the peer gets ECONNRESET",
        section="5",
        steps=(
            send("client", 6),
            wait_recv_queue("server", 6),  # the request sits unread in the server's socket
            *blocked(recv("client")),  # the client waits for an answer
            close("server"),
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
            wait_done("server"),
            epoll("client"),  # nothing has arrived
            wait_done("client"),
            close("server-child"),
            wait_acked("server"),  # the client's TCP has the FIN: CLOSE_WAIT
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
            *blocked(recv("server")),
            shutdown("client", "SHUT_WR"),
            wait_acked("client"),  # the server got end of stream (0) and acknowledged the FIN
            *blocked(recv("client")),  # the client still reads what the server sends
            send("server", 5),
            *blocked(recv("client")),  # the client read the 5 bytes and waits for more
            close("server"),
            close("client"),  # its recv() returns 0: it closes
            wait_state("server", "CLOSED"),
        ),
    ),
    Scenario(
        "shutdown-rd",
        "shutdown(SHUT_RD): what happens to data that arrives afterwards, on this kernel",
        section="2",
        steps=(
            shutdown("client", "SHUT_RD"),
            recv("client"),  # returns at once
            wait_done("client"),
            send("server", 5),
            recv("server"),  # the server waits for the client's end of stream
            wait_recv_queue("client", 5),
            recv("client"),
            close("client"),
            wait_acked("client"),  # the server got end of stream (0) and acknowledged the FIN
            close("server"),
            wait_state("server", "CLOSED"),
        ),
    ),
    Scenario(
        "shutdown-wr-rd",
        "SHUT_WR then SHUT_RD while the peer keeps sending",
        section="2",
        steps=(
            shutdown("client", "SHUT_WR"),
            wait_acked("client"),  # the server's TCP has the FIN
            send("server", 5),
            wait_recv_queue("client", 5),
            shutdown("client", "SHUT_RD"),  # both halves shut now, 5 bytes unread
            wait_done("client"),
            send("server", 5),  # more data for a socket that reads no more
            wait_state("server", "CLOSED"),
            recv("client"),
            close("client"),
            wait_done("client"),
            send("server", 5),
            recv("server"),
        ),
    ),
    Scenario(
        "shutdown-rdwr",
        "shutdown(SHUT_RDWR): both halves at once, the descriptor stays open",
        section="2",
        steps=(
            *blocked(recv("server")),
            shutdown("client", "SHUT_RDWR"),
            wait_acked("client"),  # the server's recv() returned 0 and its TCP acknowledged the FIN
            recv("client"),
            send("client", 1),
            wait_done("client"),
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
            wait_done("server"),
            *blocked(recv("client")),
            shutdown("server", "SHUT_WR"),
            wait_acked("server"),  # the client's recv() returned 0 and its TCP acknowledged the FIN
            send("server-child", 1),  # the child cannot send either: the socket's sending half is shut
            wait_done("server-child"),
            close("server"),
            wait_done("server"),
            close("server-child"),
        ),
    ),
    Scenario(
        "linger-zero",
        "SO_LINGER {on, 0}: close() aborts with RST, no FIN, no TIME_WAIT",
        section="3.1",
        steps=(
            *blocked(recv("server")),
            send("client", 13),
            *blocked(recv("server")),  # it has read the 13 bytes and waits for more
            linger("client", 0),
            close("client"),
        ),
    ),
    Scenario(
        "linger-timeout",
        "SO_LINGER {on, 1} with the peer's window full: how long close() blocks and what it returns",
        section="3.2.2",
        options=FULL_OPTIONS,
        steps=(
            *FULL_WINDOW,
            linger("client", 1),
            close("client"),  # the data cannot leave: it blocks
            wait_done("client"),
            *SERVER_DRAINS,
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
            close("client"),  # blocks until the server's TCP acknowledges the data and the FIN
            wait_done("client"),  # the server has read nothing yet
            *SERVER_READS,
        ),
    ),
    Scenario(
        "return-default",  # on the timing link: each figure of section 3.2 looks different
        "close() returns at once, before the busy server has read anything",
        section="3.2.1",
        steps=(*BUSY_SERVER, send("client", 1000), close("client"), *SERVER_READS),
        link=TIMING_LINK,
    ),
    Scenario(
        "return-linger",  # on the timing link: each figure of section 3.2 looks different
        "with SO_LINGER > 0, close() returns once the server's TCP has acknowledged "
        "data and FIN, not once the server has read them",
        section="3.2.2",
        steps=(*BUSY_SERVER, linger("client", 5), send("client", 1000), close("client"), *SERVER_READS),
        link=TIMING_LINK,
    ),
    Scenario(
        "return-shutdown-read",  # on the timing link: each figure of section 3.2 looks different
        "shutdown(SHUT_WR) then read(): returns only when the server has read everything and closed",
        section="3.2.3",
        steps=(
            *BUSY_SERVER,
            send("client", 1000),
            shutdown("client", "SHUT_WR"),
            recv("client"),  # returns 0 once the server has read everything and closed
            close("client"),
            *SERVER_READS,
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
            wait_recv_queue("client", 13),  # B's greeting: A never reads it
            send("client", MILLION),  # returns at once: A's buffer takes it all
            wait_recv_queue("server", MILLION),  # as much as B's 4 KB buffer holds
            close("client"),  # the greeting is unread: RST
            wait_state("server", "CLOSED"),
            *SERVER_READS,
        ),
    ),
    Scenario(
        "million-bytes-fixed",
        "part 5, fixed: send, shutdown(SHUT_WR), read to EOF, then close: all 1,000,000 bytes arrive",
        section="5",
        settings=FAST_WRITER,
        steps=(
            send("server", 13),
            read_to_eof("server"),
            wait_recv_queue("client", 13),
            wait_blocked("server"),
            send("client", MILLION),
            shutdown("client", "SHUT_WR"),
            read_to_eof("client"),  # the greeting, then end of stream once B has read everything and closed
            wait_acked("client"),  # B has read everything; its TCP acknowledged the FIN
            close("server"),
            close("client"),
        ),
        # the transfer through B's window takes seconds in an emulated VM (the ledger's), over 10 s beside a
        # suite on the same 2 cores; these are deadlines, never waited out by a run that works
        sync_timeout=30.0,
        time_limit=60.0,
    ),
    Scenario(
        "write-after-peer-close",
        "writing to a peer that closed: epoll events, the first write provokes RST, the second gets EPIPE and SIGPIPE",
        section="5",
        steps=(
            close("server"),
            wait_acked("server"),  # the client's TCP has the FIN: CLOSE_WAIT
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
        "until the peer's immediate ACK",
        section="3.1",
        steps=(
            *blocked(recv("server")),
            close("client"),
            wait_acked("client"),  # the server's recv() returned 0 and its TCP acknowledged the FIN
            close("server"),
            wait_state("client", "TIME_WAIT"),
        ),
    ),
)

# What real peers and links do to a teardown: timers, losses, crossing FINs, before accept().
_WIRE = (
    Scenario(
        "fin-delayed-ack",
        "the server does something else before it reads: once data has flowed, its TCP acknowledges the FIN "
        "only when the delayed-ACK timer fires, in a segment of its own (the four-segment close)",
        section="3.2.2",
        steps=(
            *blocked(recv("server")),
            send("client", 6),
            wait_done("server"),
            close("client"),
            wait_acked("client"),  # the server is busy elsewhere: its ACK of the FIN comes on its timer
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
            *blocked(read_to_eof("server")),
            linger("client", 5),
            send("client", 1000),
            close("client"),
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
            *blocked(recv("server")),
            close("client"),  # its FIN is lost: the client's timer sends it again
            wait_acked("client"),
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
            *blocked(recv("server")),
            close("client"),
            wait_acked("client"),
            close("server"),  # the client's ACK of this FIN is lost: the server sends it again
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
            *blocked(recv("client")),
            wait_state("server", "ESTABLISHED"),
            close("server", listener=True),
            close("client"),  # its recv() failed: ECONNRESET
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
            *blocked(recv("server")),
            send("client", 100),
            recv("server"),  # it has read the 100 bytes and waits for more
            wait_acked("client"),  # their ACK has reached the client
            linger("client", 0),
            close("client"),  # an abort: the server's recv() fails, no TIME_WAIT holds the 4-tuple
            close("server"),
            *blocked(accept("server")),
            connect("client"),  # the same 4-tuple
            nonblocking("server"),
            wait_done("server"),
            release("client"),  # the copy of the old data segment is on its way now
            wait_segment("server", ("ACK",)),  # the server's TCP answered it (it refused it: PAWS)
            recv("server"),  # nothing of it was delivered
            wait_done("server"),
            close("client"),
            wait_acked("client"),
            close("server"),
        ),
    ),
)

# Experiments behind single claims of the ledger and cells of the chapters.
_LEDGER = (
    Scenario(
        "close-shared-child",
        "the forked child closes first: the parent still holds the socket, so nothing is sent",
        section="1",
        steps=(
            fork("server", "server-child"),
            close("server-child"),
            wait_done("server-child"),
            epoll("client"),  # nothing has arrived
            *blocked(recv("client")),
            send("server", 1),  # the parent still uses the connection
            wait_done("client"),
            *blocked(recv("client")),
            close("server"),  # the last reference: FIN
            close("client"),
        ),
    ),
    Scenario(
        "close-full-window",
        "a default close() while the peer's window is shut: close() returns, the data and FIN leave later",
        section="4.1",
        options=FULL_OPTIONS,
        steps=(*FULL_WINDOW, close("client"), wait_done("client"), *SERVER_DRAINS),
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
            *blocked(recv("server")),
            close("client"),
            close("server"),
            wait_state("server", "CLOSED"),
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
            wait_acked("client"),  # the server's TCP has the FIN: CLOSE_WAIT
            epoll("server"),
            recv("server"),
            wait_done("server"),
            recv("client"),
            *blocked(recv("client")),
            close("server"),
            close("client"),
        ),
    ),
    Scenario(
        "linger-zero-queued",
        "SO_LINGER {on, 0} with data still queued in the send buffer: the data is dropped",
        section="3.1",
        options=FULL_OPTIONS,
        steps=(
            *FULL_WINDOW,
            linger("client", 0),
            close("client"),
            wait_state("server", "CLOSED"),
            *SERVER_DRAINS,
        ),
    ),
    Scenario(
        "linger-nonblocking",
        "SO_LINGER {on, 1} on a non-blocking socket whose data cannot leave: does close() wait?",
        section="3.2.2",
        options=FULL_OPTIONS,
        steps=(
            *FULL_WINDOW,
            linger("client", 1),
            nonblocking("client"),
            close("client"),
            wait_done("client"),
            *SERVER_DRAINS,
        ),
    ),
    Scenario(
        "linger-exit",
        "SO_LINGER {on, 1}, the process exits with data queued: exit does not wait",
        section="5",
        options=FULL_OPTIONS,
        steps=(*FULL_WINDOW, linger("client", 1), exit("client"), wait_done("client"), *SERVER_DRAINS),
    ),
    Scenario(
        "linger-shutdown",
        "SO_LINGER {on, 1}, then shutdown(SHUT_WR) with data queued: does shutdown() wait?",
        section="5",
        options=FULL_OPTIONS,
        steps=(
            *FULL_WINDOW,
            linger("client", 1),
            shutdown("client", "SHUT_WR"),
            *blocked(recv("client")),  # the client waits for the server's end of stream
            *SERVER_DRAINS,
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
            *blocked(recv("client")),
            linger("server", 0),
            close("server"),
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
    recv("server"),  # the server waits for the client's end of stream
    wait_acked("server"),  # the client's TCP has the FIN: CLOSE_WAIT
    epoll("client"),
    recv("client"),
    close("client"),
    wait_state("server", "TIME_WAIT"),  # its recv() returned 0 at the client's FIN
    close("server"),
    *blocked(accept("server")),
    connect("client"),  # connection 2: the same addresses and ports
    wait_done("server"),
    wait_done("client"),  # its connect() has returned: what the server does next cannot fail it (an RST would)
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
            *blocked(recv("client")),
            call("server", close_every_descriptor),
            epoll("server"),
            close("server"),
            wait_acked("server"),  # the client's recv() returned 0 and its TCP acknowledged the FIN
            close("client"),
        ),
    ),
    Scenario(
        "shutdown-wr-queued",
        "shutdown(SHUT_WR) with data still queued behind a shut window: the data goes first, then the FIN; "
        "the peer can still send",
        section="2",
        options=FULL_OPTIONS,
        steps=(
            *FULL_WINDOW,
            shutdown("client", "SHUT_WR"),
            recv("client"),  # what the server still sends
            wait_blocked("client"),
            read_to_eof("server"),
            # whether the ACK of the FIN goes alone or rides on the server's reply depends on how the
            # last data was cut (one MSS unacknowledged or less): wait for it, so the half-closed
            # client is seen in FIN_WAIT_2 before the server sends
            wait_acked("client"),
            send("server", 5),
            *blocked(recv("client")),
            close("server"),
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
            wait_acked("client"),  # the server's TCP has the FIN: CLOSE_WAIT
            recv("client"),
            wait_done("client"),
            send("server", 5),
            wait_state("server", "CLOSED"),
            send("server", 5),
            wait_done("server"),
            recv("client"),
            close("client"),
            wait_done("client"),
            close("server"),
        ),
    ),
    Scenario(
        "linger-off-ignored",
        "SO_LINGER {l_onoff = 0, l_linger = 0}: with l_onoff 0 the linger time is ignored, close() is the default",
        section="3.1",
        steps=(
            *blocked(recv("server")),
            send("client", 13),
            *blocked(recv("server")),
            linger("client", 0, onoff=0),
            close("client"),
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
            wait_acked("server"),  # the client's TCP has the FIN: CLOSE_WAIT
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
            wait_acked("server"),  # the client's TCP has the FIN: CLOSE_WAIT
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
            *SERVER_READS,
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
            close("client"),  # lingers: returns once the data and FIN are acknowledged, or after 1 s
            wait_done("client"),
            *SERVER_DRAINS,
        ),
        # the drain through B's 4 KB window takes seconds in an emulated VM (the ledger's), over 10 s beside a
        # suite on the same 2 cores; these are deadlines, never waited out by a run that works
        sync_timeout=30.0,
        time_limit=60.0,
    ),
    Scenario(
        "exit-with-linger",
        "SO_LINGER {on, 1} and data queued; the last holder of the socket exits without close(): how long "
        "the exit takes, and whether the data still arrives",
        section="5",
        options=FULL_OPTIONS,
        steps=(
            *FULL_WINDOW,
            linger("client", 1),
            call("client", exit_holding_the_socket),
            wait_done("client"),
            *SERVER_DRAINS,
        ),
    ),
    Scenario(
        "close-in-child-with-linger",
        "as exit-with-linger, but the last holder calls close() before it exits: the close lingers",
        section="5",
        options=FULL_OPTIONS,
        steps=(*FULL_WINDOW, linger("client", 1), call("client", close_then_exit), wait_done("client"), *SERVER_DRAINS),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (*_ALL, *_WIRE, *_LEDGER, *_MORE)}
# What each scenario needs to have happened before its lesson starts (closekit.premise).
PREMISES: dict[str, tuple[Premise, ...]] = {
    name: FULL_PREMISES
    for name in ("linger-timeout", "close-full-window", "linger-zero-queued", "linger-nonblocking", "linger-exit",
                 "linger-shutdown", "shutdown-wr-queued", "exit-with-linger", "close-in-child-with-linger")
}  # fmt: skip


def get(name: str) -> Scenario:
    """The built-in scenario `name`; an unknown name gets an error listing the names."""
    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        raise UnknownScenarioError(
            f"no built-in scenario called {name!r}; the names are: {', '.join(SCENARIOS)}"
        ) from None
