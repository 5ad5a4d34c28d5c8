"""The course's exercises, one function each, so notebooks stay short and answers stay out of them.

Every `truth` reads the live trace: the choice marked right is whatever this kernel did.
"""

from __future__ import annotations

from closekit import query as q
from closekit.exercises.checks import WriteScenario, all_of, close_blocks, close_sends_no_fin, no_rst, receives_all
from closekit.exercises.code import PAYLOAD_SIZE, WriteCode
from closekit.exercises.predict import ChooseFix, Predict
from closekit.library import FAST_WRITER, MILLION, SMALL_BUFFER
from closekit.scenario import Options, Scenario
from closekit.steps import (
    close,
    linger,
    read_to_eof,
    send,
    shutdown,
    wait_recv_queue,
    wait_state,
)
from closekit.trace import Syscall, Trace
from closekit.transcript import format_duration

CH1 = "chapter 1 (notebooks/01-close.ipynb)"
CH2 = "chapter 2 (notebooks/02-shutdown.ipynb)"
CH3 = "chapter 3 (notebooks/03-so-linger.ipynb)"
CH4 = "chapter 4 (notebooks/04-when-close-returns.ipynb)"
CH5 = "chapter 5 (notebooks/05-kernel-close-path.ipynb)"
CH6 = "chapter 6 (notebooks/06-shutdown-vs-close.ipynb)"


def _sent_by(trace: Trace, side: str, call: str, src: str) -> str:
    """What `src` put on the wire because of `side`'s first `call`: "RST", "FIN" or "nothing"."""
    return q.first_flag(q.after_call(trace, side, call, src))


# ---- chapter 1 / 5: close() -------------------------------------------------------------------
def close_unread() -> Predict:
    """The server closes with 6 unread bytes: what does the client's next recv() return?"""

    def truth(trace: Trace) -> str:
        last = q.calls(trace, "client", "recv")[-1]
        if last.errno == "ECONNRESET":
            return "B"
        if last.errno is None and last.result == 0:
            return "A"
        return "C"

    def explain(trace: Trace) -> str:
        last = q.calls(trace, "client", "recv")[-1]
        got = f"-1 {last.errno}" if last.errno else str(last.result)
        sent = _sent_by(trace, "server", "close", "server")
        return (
            f"The server's close() sent {sent}, and the client's recv() returned {got}. Closing with data "
            "unread aborts the connection: the kernel counted it as TcpExt:TCPAbortOnClose "
            f"+{trace.counter('TcpExt:TCPAbortOnClose')}."
        )

    return Predict(
        "The client sends 6 bytes. The server closes its socket without reading them. "
        "What does the client's next recv() return?",
        {
            "A": "0: end of stream, the server's TCP sent a FIN",
            "B": "-1 with ECONNRESET: the server's TCP sent an RST",
            "C": "something else (the 6 bytes, or another error)",
        },
        "close-unread",
        truth,
        explain,
        section=CH5 + ", 'Unread data: RST instead of FIN'",
    )


def close_shared() -> Predict:
    """A forked child still holds the socket: what does the parent's close() put on the wire?"""

    def truth(trace: Trace) -> str:
        return {"FIN": "A", "RST": "B", "nothing": "C"}[_sent_by(trace, "server", "close", "server")]

    def explain(trace: Trace) -> str:
        parent = _sent_by(trace, "server", "close", "server")
        child = _sent_by(trace, "server-child", "close", "server")
        return (
            f"The parent's close() sent {parent}; the child's close(), the last reference, sent {child}. "
            "close() drops one reference to the socket; only the last one starts the teardown."
        )

    return Predict(
        "The server forks, so parent and child share the connected socket. The parent calls close(); "
        "the child keeps its descriptor. What does the parent's close() put on the wire?",
        {"A": "a FIN", "B": "an RST", "C": "nothing at all"},
        "close-shared",
        truth,
        explain,
        section=CH1 + ", 'One socket, two descriptors'",
    )


def send_all_then_close(time_limit: float = 5.0) -> WriteCode:
    """Write send_all_then_close(sock, data): every byte delivered, or an error the caller sees."""
    return WriteCode("send_all_then_close", payload_size=PAYLOAD_SIZE, time_limit=time_limit, section=CH6)


# ---- chapter 2: shutdown() --------------------------------------------------------------------
def shutdown_half_close() -> Predict:
    """After the client's shutdown(SHUT_WR), can the server still send to it?"""

    def truth(trace: Trace) -> str:
        reads = q.calls(trace, "client", "recv")
        return "A" if reads and reads[0].result == 5 and not reads[0].errno else "B"

    def explain(trace: Trace) -> str:
        first = q.calls(trace, "client", "recv")[0]
        return (
            f"The client's first recv() after its shutdown(SHUT_WR) returned {first.result}"
            f"{' ' + first.errno if first.errno else ''}. SHUT_WR closes only the client's sending half: "
            f"it sent a FIN (the server went to {trace.states('server')[-1] if trace.states('server') else '?'}), "
            "and the other direction stays open."
        )

    return Predict(
        "The client calls shutdown(SHUT_WR). Then the server sends 5 bytes. What does the client's recv() return?",
        {"A": "5: the server's bytes arrive", "B": "0 or an error: the connection is closed both ways"},
        "shutdown-wr",
        truth,
        explain,
        section=CH2 + ", 'SHUT_WR: the half-close'",
    )


def shutdown_shared() -> Predict:
    """shutdown() on a socket a forked child still holds: does a FIN go out?"""

    def truth(trace: Trace) -> str:
        return "A" if _sent_by(trace, "server", "shutdown", "server") == "FIN" else "B"

    def explain(trace: Trace) -> str:
        sent = _sent_by(trace, "server", "shutdown", "server")
        return f"The parent's shutdown(SHUT_WR) sent {sent}. shutdown() acts on the socket, whoever else holds it."

    return Predict(
        "The server forks, so parent and child share the socket. The parent calls shutdown(SHUT_WR). "
        "What goes on the wire?",
        {"A": "a FIN, although the child still holds the socket", "B": "nothing until the child lets go too"},
        "shutdown-shared",
        truth,
        explain,
        section=CH2 + ", 'shutdown() ignores the reference count'",
    )


# ---- chapter 3: SO_LINGER ---------------------------------------------------------------------
def linger_zero_time_wait() -> Predict:
    """SO_LINGER {on, 0} then close(): which side ends in TIME_WAIT?"""

    def truth(trace: Trace) -> str:
        waits = [s for s in ("client", "server") if "TIME_WAIT" in trace.states(s)]
        return {("client",): "A", ("server",): "B"}.get(tuple(waits), "C")

    def explain(trace: Trace) -> str:
        rst = q.first(trace, "RST")
        return (
            f"The client's close() sent {'an RST' if rst and rst.src == 'client' else 'no RST'}, and the "
            f"client went to {trace.final_state('client')}, the server to {trace.final_state('server')}. "
            "An abortive close skips the FIN exchange, and with it TIME_WAIT."
        )

    return Predict(
        "The client sets SO_LINGER {l_onoff=1, l_linger=0}, then calls close(). Which side ends in TIME_WAIT?",
        {"A": "the client, as the active closer", "B": "the server", "C": "neither"},
        "linger-zero",
        truth,
        explain,
        section=CH3 + ", 'l_linger = 0: the abortive close'",
    )


def no_fin_close() -> WriteScenario:
    """Write a scenario in which the client's close() sends no FIN at all."""
    return WriteScenario(
        "the client calls close() and its TCP sends no FIN at all",
        [close_sends_no_fin("client")],
        section=CH3,
    )


def one_second_close() -> WriteScenario:
    """Write a scenario in which the client's close() blocks about one second."""
    return WriteScenario(
        "the client's close() blocks about one second (0.8 to 1.5 s)",
        [close_blocks("client", 0.8, 1.5)],
        section=CH4 + ", 'When the linger time runs out'",
    )


# ---- chapter 4: when close() returns ----------------------------------------------------------
def _close_and_read(trace: Trace) -> tuple[Syscall, Syscall | None]:
    return q.calls(trace, "client", "close")[0], q.call(trace, "server", q.READ_TO_EOF)


def _fin_ack_words(trace: Trace, close: Syscall) -> str:
    """When the ACK of the client's FIN came back, relative to close(), if the segments were seen."""
    fin = q.first(trace, "FIN", "client", after=close.t)
    ack = q.ack_of(trace, fin) if fin is not None else None
    if ack is None or ack.arrived is None or fin is None or fin.arrived is None:
        return ""
    if q.end(close) >= ack.arrived:
        when = "right after the ACK of its FIN arrived"
    else:
        when = "before the ACK of its FIN arrived"
    return (
        f" It returned {when}; the server's TCP had sent that ACK {format_duration(ack.t - fin.arrived)} after "
        "the FIN reached it."
    )


def _returned(c: Syscall) -> str:
    return f"returned -1 with {c.errno}" if c.errno else f"returned {c.result}"


def return_default() -> Predict:
    """The server is busy for 0.3 s: when does the client's default close() return?"""

    def truth(trace: Trace) -> str:
        close, read = _close_and_read(trace)
        return "A" if read is None or q.end(close) < read.t else "B"

    def explain(trace: Trace) -> str:
        close, read = _close_and_read(trace)
        before = read is None or q.end(close) < read.t
        return (
            f"The client's close() {_returned(close)} {'before' if before else 'after'} the server began to "
            f"read.{_fin_ack_words(trace, close)} By default close() hands the data and the FIN to the kernel and "
            "returns; it says nothing about delivery."
        )

    return Predict(
        "The client sends 1000 bytes and calls close(); the server is busy for 0.3 s before it reads. "
        "When does the client's close() return?",
        {"A": "at once", "B": "after ≈ 0.3 s, once the server has read the data"},
        "return-default",
        truth,
        explain,
        section=CH4 + ", '1. The default'",
        requires_capture=False,
    )


def return_linger() -> Predict:
    """With SO_LINGER {on, 5} and a busy server: when does close() return?"""

    def truth(trace: Trace) -> str:
        close, read = _close_and_read(trace)
        linger = q.linger_at(trace, "client", close.t)
        if linger is not None and close.duration >= 0.95 * linger.seconds:
            return "C"
        return "B" if read is not None and q.end(close) >= read.t else "A"

    def explain(trace: Trace) -> str:
        close, read = _close_and_read(trace)
        before = read is None or q.end(close) < read.t
        return (
            f"The client's close() {_returned(close)} {'before' if before else 'after'} the server began to "
            f"read.{_fin_ack_words(trace, close)} A positive linger time waits for the peer's TCP to acknowledge "
            "data and FIN: one round trip, plus however long that TCP holds its ACK back, while the application "
            "is still busy."
        )

    return Predict(
        "The client sets SO_LINGER {on, 5}, sends 1000 bytes and calls close(); the link takes 10 ms each way and "
        "the server is busy for 0.3 s before it reads. When does close() return?",
        {
            "A": "after tens of milliseconds: when the server's TCP has acknowledged data and FIN",
            "B": "after ≈ 0.3 s: when the server's application has read the data",
            "C": "after 5 s: when the linger time runs out",
        },
        "return-linger",
        truth,
        explain,
        section=CH4 + ", '2. A positive linger time'",
        requires_capture=False,
    )


# ---- chapter 5 / 6: where did my million bytes go? --------------------------------------------
def million_bytes() -> Predict:
    """Part 5's naive writer: how much of the million bytes does the reader get?"""

    def truth(trace: Trace) -> str:
        (loop,) = q.calls(trace, "server", q.READ_TO_EOF)
        if loop.errno is None and loop.result == MILLION:
            return "A"
        return "B" if loop.errno and loop.result > 0 else "C"

    def explain(trace: Trace) -> str:
        (loop,) = q.calls(trace, "server", q.READ_TO_EOF)
        return (
            f"The server read {max(loop.result, 0):,} bytes{', then ' + loop.errno if loop.errno else ''}. "
            "The client closed with the server's 13-byte request unread, so its close() sent an RST and both "
            "kernels threw away what was still queued."
        )

    return Predict(
        "The server sends a 13-byte request; the client never reads it, sends 1,000,000 bytes and calls "
        "close() while most of them are still queued. How many bytes does the server's read loop get?",
        {
            "A": "all 1,000,000, then end of stream",
            "B": "part of them, then ECONNRESET",
            "C": "none",
        },
        "million-bytes",
        truth,
        explain,
        section=CH6 + ", 'The naive program'",
    )


def _million(name: str, description: str, *teardown: object) -> Scenario:
    return Scenario(
        name,
        description,
        options=Options(server_rcvbuf=SMALL_BUFFER),
        settings=FAST_WRITER,  # as in the library's million-bytes: the writer's send() returns at once
        steps=(
            send("server", 13),
            wait_recv_queue("client", 13),
            send("client", MILLION),
            wait_recv_queue("server", MILLION),  # as much as its buffer holds: the window closes
            *teardown,  # type: ignore[list-item]
        ),
    )


def million_fix() -> ChooseFix:
    """Choose the teardown that gets all of the million bytes to the server."""
    server_reads = (read_to_eof("server"), close("server"))
    return ChooseFix(
        "The client has sent 1,000,000 bytes (most still queued) and never read the server's 13-byte request. "
        "Which teardown gets every byte to the server, with no RST?",
        {
            "A": _million("fix-close", "close()", close("client"), wait_state("server", "CLOSED"), *server_reads),
            "B": _million(
                "fix-linger-5",
                "SO_LINGER {on, 5}, then close()",
                linger("client", 5),
                close("client"),
                wait_state("server", "CLOSED"),
                *server_reads,
            ),
            "C": _million(
                "fix-shutdown-read",
                "shutdown(SHUT_WR), read to EOF, then close()",
                shutdown("client", "SHUT_WR"),
                *server_reads,
                read_to_eof("client"),
                close("client"),
            ),
            "D": _million(
                "fix-shutdown-close",
                "shutdown(SHUT_WR), then close() at once",
                shutdown("client", "SHUT_WR"),
                close("client"),
                *server_reads,
            ),
        },
        all_of(receives_all("server", MILLION), no_rst()),
        section=CH6,
    )


def write_the_fix() -> WriteScenario:
    """Write the fix yourself: a scenario in which all of a million bytes arrive, with no RST."""
    return WriteScenario(
        "the server receives all 1,000,000 bytes the client sends, and nobody sends an RST",
        [receives_all("server", MILLION), no_rst()],
        section=CH6,
    )


# ---- chapter 5: what the peer sees ------------------------------------------------------------
def _epoll_bits(trace: Trace, index: int) -> list[str]:
    waits = q.calls(trace, "client", "epoll_wait")
    return list(waits[index].result) if len(waits) > index and isinstance(waits[index].result, list) else []


def _shown(call: Syscall) -> str:
    return f"-1 {call.errno}" if call.errno else str(call.result)


def epoll_after_peer_close() -> Predict:
    """The server closes: which bits does the client's epoll_wait() report once the FIN has arrived?"""

    def truth(trace: Trace) -> str:
        bits = _epoll_bits(trace, 0)
        if "EPOLLERR" in bits or "EPOLLHUP" in bits:
            return "B"
        return "A" if "EPOLLIN" in bits and "EPOLLRDHUP" in bits else "C"

    def explain(trace: Trace) -> str:
        first, later = _epoll_bits(trace, 0), _epoll_bits(trace, 1)
        return (
            f"After the server's FIN the client's epoll_wait() returned {'|'.join(first) or 'no events'}. "
            "A FIN is an end of stream: recv() would return 0, so the socket is readable (EPOLLIN), and "
            "EPOLLRDHUP says the peer will send no more; the client may still send. EPOLLHUP and EPOLLERR mean "
            f"a dead connection: after the RST that the client's send() drew, epoll_wait() returned "
            f"{'|'.join(later) or 'no events'}."
        )

    return Predict(
        "The server calls close() on an idle connection; its FIN arrives. Which events does the client's "
        "epoll_wait() report (asked for EPOLLIN|EPOLLOUT|EPOLLRDHUP)?",
        {
            "A": "EPOLLIN|EPOLLOUT|EPOLLRDHUP: readable (end of stream), still writable, the peer's side closed",
            "B": "EPOLLERR and EPOLLHUP as well: the connection is dead",
            "C": "no EPOLLIN: nothing arrived to read, only EPOLLOUT (or nothing at all)",
        },
        "write-after-peer-close",
        truth,
        explain,
        section=CH5 + ", 'Writing to a peer that has closed'",
        requires_capture=False,
    )


def first_write_after_peer_close() -> Predict:
    """The server has closed: what does the client's first send() of 10 bytes return?"""

    def truth(trace: Trace) -> str:
        first = q.calls(trace, "client", "send")[0]
        if first.errno is None and first.result == 10:
            return "A"
        return "B" if first.errno == "EPIPE" else "C"

    def explain(trace: Trace) -> str:
        first = q.calls(trace, "client", "send")[0]
        answer = _sent_by(trace, "client", "send", "server") if trace.captured else "(not captured)"
        return (
            f"The client's first send() returned {_shown(first)}, and the server's TCP answered the bytes with "
            f"{answer}. A FIN says only that the peer sends no more: the client's kernel cannot know that nobody "
            "will read, so it accepts the data; the server's kernel, whose socket is gone, answers it with an RST."
        )

    return Predict(
        "The server has closed its socket: its FIN arrived and the client is in CLOSE_WAIT. The client sends "
        "10 bytes. What does this first send() return?",
        {
            "A": "10: the kernel accepts the bytes",
            "B": "-1 with EPIPE: the peer has closed",
            "C": "-1 with ECONNRESET (or another error)",
        },
        "write-after-peer-close",
        truth,
        explain,
        section=CH5 + ", 'Writing to a peer that has closed'",
        requires_capture=False,
    )


def second_write_after_reset() -> Predict:
    """The first send() drew an RST: what does the second send() do?"""

    def truth(trace: Trace) -> str:
        sends = q.calls(trace, "client", "send")
        if len(sends) < 2:
            return "D"
        second = sends[1]
        if second.errno is None and second.result == 10:
            return "A"
        if second.errno == "ECONNRESET":
            return "B"
        return "C" if second.errno == "EPIPE" and "SIGPIPE" in q.signals_of(trace, second) else "D"

    def explain(trace: Trace) -> str:
        sends = q.calls(trace, "client", "send")
        second = _shown(sends[1]) if len(sends) > 1 else "nothing (no second send)"
        signals = ", ".join(q.signals_of(trace, sends[1]) if len(sends) > 1 else []) or "no signal"
        return (
            f"The client's second send() returned {second}, and the client got {signals}. The RST ended the "
            "connection; it arrived in CLOSE_WAIT, for which Linux records the error as EPIPE rather than "
            "ECONNRESET. A send() failing with EPIPE also raises SIGPIPE, whose default action ends the process "
            "(MSG_NOSIGNAL, or ignoring SIGPIPE, leaves only the EPIPE)."
        )

    return Predict(
        "The client's first send() after the server's close() was answered by an RST. The client calls send() "
        "with 10 more bytes. What happens?",
        {
            "A": "it returns 10 again",
            "B": "-1 with ECONNRESET",
            "C": "-1 with EPIPE, and the process receives SIGPIPE",
            "D": "something else (another error, or EPIPE with no signal)",
        },
        "write-after-peer-close",
        truth,
        explain,
        section=CH5 + ", 'Writing to a peer that has closed'",
        requires_capture=False,
    )


__all__ = [
    "close_shared",
    "close_unread",
    "epoll_after_peer_close",
    "first_write_after_peer_close",
    "linger_zero_time_wait",
    "million_bytes",
    "million_fix",
    "no_fin_close",
    "one_second_close",
    "return_default",
    "return_linger",
    "second_write_after_reset",
    "send_all_then_close",
    "shutdown_half_close",
    "shutdown_shared",
    "write_the_fix",
]
