"""The course's exercises, one function each, so notebooks stay short and answers stay out of them.

Every `truth` reads the live trace: the choice marked right is whatever this kernel did. The words of
each exercise (question, choices, explanation) are in the language catalogs (closekit/lang/*.toml,
tables `ex.<function name>`), so an exercise speaks the language of the notebook that builds it.
"""

from __future__ import annotations

from closekit import query as q
from closekit.book import editions
from closekit.exercises.checks import (
    WriteScenario,
    all_of,
    close_aborts,
    close_blocks,
    knows_delivery,
    no_rst,
    receives_all,
)
from closekit.exercises.code import PAYLOAD_SIZE, WriteCode
from closekit.exercises.predict import ChooseFix, Predict
from closekit.lang import current, text, texts, word
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

CHAPTERS = {
    1: "01-close.ipynb",
    2: "02-shutdown.ipynb",
    3: "03-so-linger.ipynb",
    4: "04-when-close-returns.ipynb",
    5: "05-kernel-close-path.ipynb",
    6: "06-shutdown-vs-close.ipynb",
}


def _chapter(number: int, topic: str = "") -> str:
    """Where the course explains it, in the reader's edition: "chapter 3 (notebooks/03-so-linger.ipynb), 'x'"."""
    path = f"{editions.load().edition(current()).notebooks}/{CHAPTERS[number]}"
    if topic:
        return text("words.chapter_topic", number=number, path=path, topic=topic)
    return text("words.chapter", number=number, path=path)


def _sent_by(trace: Trace, side: str, call: str) -> str:
    """What `side`'s first `call` put on the wire: "RST", "FIN" or "nothing" (read from the sockets'
    states where the segments were not captured)."""
    c = q.call(trace, side, call)
    return "nothing" if c is None else q.ended_with(trace, c)


def _answer(trace: Trace, side: str, call: str) -> str:
    """How the peer answered `side`'s first `call`: the first FIN or RST its TCP sent before anyone's next
    call, "nothing", or "uncaptured" where the segments were not seen."""
    if not trace.captured:
        return "uncaptured"
    return q.first_flag(q.after_call(trace, side, call, q.peer(trace.endpoint_of(side))))


# ---- chapter 1 / 5: close() -------------------------------------------------------------------
def close_unread() -> Predict:
    """The server closes with 6 unread bytes: what does the client's next recv() return?"""

    def truth(trace: Trace) -> str:
        last = trace.syscalls("client", "recv")[-1]
        if last.errno == "ECONNRESET":
            return "B"
        if last.errno is None and last.result == 0:
            return "A"
        return "C"

    def explain(trace: Trace) -> str:
        last = trace.syscalls("client", "recv")[-1]
        got = f"-1 {last.errno}" if last.errno else str(last.result)
        sent = word("sent", _sent_by(trace, "server", "close"))
        counted = trace.mode in ("netns", "netns-loopback")
        count = text("ex.close_unread.counted", count=trace.counter("TcpExt:TCPAbortOnClose")) if counted else ""
        return text("ex.close_unread.explain", sent=sent, got=got, counted=count)

    return Predict(
        text("ex.close_unread.question"),
        texts("ex.close_unread.choices"),
        "close-unread",
        truth,
        explain,
        section=_chapter(5, text("ex.close_unread.topic")),
    )


def close_shared() -> Predict:
    """A forked child still holds the socket: what does the parent's close() put on the wire?"""

    def truth(trace: Trace) -> str:
        return {"FIN": "A", "RST": "B", "nothing": "C"}[_sent_by(trace, "server", "close")]

    def explain(trace: Trace) -> str:
        parent = word("sent", _sent_by(trace, "server", "close"))
        child = word("sent", _sent_by(trace, "server-child", "close"))
        return text("ex.close_shared.explain", parent=parent, child=child)

    return Predict(
        text("ex.close_shared.question"),
        texts("ex.close_shared.choices"),
        "close-shared",
        truth,
        explain,
        section=_chapter(1, text("ex.close_shared.topic")),
    )


def send_all_then_close(time_limit: float = 5.0) -> WriteCode:
    """Write send_all_then_close(sock, data): every byte delivered, or an error the caller sees."""
    return WriteCode("send_all_then_close", payload_size=PAYLOAD_SIZE, time_limit=time_limit, section=_chapter(6))


# ---- chapter 2: shutdown() --------------------------------------------------------------------
def shutdown_half_close() -> Predict:
    """After the client's shutdown(SHUT_WR), can the server still send to it?"""

    def truth(trace: Trace) -> str:
        reads = trace.syscalls("client", "recv")
        return "A" if reads and reads[0].result == 5 and not reads[0].errno else "B"

    def explain(trace: Trace) -> str:
        first = trace.syscalls("client", "recv")[0]
        got = f"{first.result}{' ' + first.errno if first.errno else ''}"
        sh = q.call(trace, "client", "shutdown")  # the state the client's FIN took the server to: CLOSE_WAIT
        state = next((e.state for e in q.state_changes(trace, "server") if sh is not None and e.t >= sh.t), "?")
        return text("ex.shutdown_half_close.explain", got=got, state=state)

    return Predict(
        text("ex.shutdown_half_close.question"),
        texts("ex.shutdown_half_close.choices"),
        "shutdown-wr",
        truth,
        explain,
        section=_chapter(2, text("ex.shutdown_half_close.topic")),
    )


def shutdown_shared() -> Predict:
    """shutdown() on a socket a forked child still holds: does a FIN go out?"""

    def truth(trace: Trace) -> str:
        return "A" if _sent_by(trace, "server", "shutdown") == "FIN" else "B"

    def explain(trace: Trace) -> str:
        sent = word("sent", _sent_by(trace, "server", "shutdown"))
        return text("ex.shutdown_shared.explain", sent=sent)

    return Predict(
        text("ex.shutdown_shared.question"),
        texts("ex.shutdown_shared.choices"),
        "shutdown-shared",
        truth,
        explain,
        section=_chapter(2, text("ex.shutdown_shared.topic")),
    )


# ---- chapter 3: SO_LINGER ---------------------------------------------------------------------
def linger_zero_time_wait() -> Predict:
    """SO_LINGER {on, 0} then close(): which side ends in TIME_WAIT?"""

    def truth(trace: Trace) -> str:
        waits = [s for s in ("client", "server") if "TIME_WAIT" in trace.states(s)]
        return {("client",): "A", ("server",): "B"}.get(tuple(waits), "C")

    def explain(trace: Trace) -> str:
        rst = trace.first("RST")
        client_rst = rst is not None and rst.src == "client"
        sent = text("ex.linger_zero_time_wait.rst") if client_rst else text("ex.linger_zero_time_wait.no_rst")
        client, server = trace.final_state("client"), trace.final_state("server")
        return text("ex.linger_zero_time_wait.explain", rst=sent, client=client, server=server)

    return Predict(
        text("ex.linger_zero_time_wait.question"),
        texts("ex.linger_zero_time_wait.choices"),
        "linger-zero",
        truth,
        explain,
        section=_chapter(3, text("ex.linger_zero_time_wait.topic")),
    )


def no_fin_close() -> WriteScenario:
    """Write a scenario in which the client's close() sends no FIN at all."""
    return WriteScenario(text("ex.no_fin_close.task"), [close_aborts("client")], section=_chapter(3))


def one_second_close() -> WriteScenario:
    """Write a scenario in which the client's close() blocks about one second."""
    return WriteScenario(
        text("ex.one_second_close.task"),
        [close_blocks("client", 0.8, 1.5)],
        section=_chapter(4, text("ex.one_second_close.topic")),
    )


# ---- chapter 4: when close() returns ----------------------------------------------------------
def _close_and_read(trace: Trace) -> tuple[Syscall, Syscall | None]:
    return q.calls(trace, "client", "close")[0], q.call(trace, "server", q.READ_TO_EOF)


def _timing(trace: Trace) -> str:
    """When the client's close() returned, relative to the server's read and (if the segments were
    seen) to the ACK of its FIN."""
    close, read = _close_and_read(trace)
    value = f"-1 {close.errno}" if close.errno else str(close.result)
    before = read is None or q.end(close) < read.t
    words = text("ex.timing.before_read" if before else "ex.timing.after_read", value=value)
    fin = q.first(trace, "FIN", "client", after=close.t)
    ack = q.ack_of(trace, fin) if fin is not None else None
    if ack is None or ack.arrived is None or fin is None or fin.arrived is None:
        return words
    delay = format_duration(ack.t - fin.arrived)
    return words + text("ex.timing.ack_after" if q.end(close) >= ack.arrived else "ex.timing.ack_before", delay=delay)


def return_default() -> Predict:
    """The server is busy for 0.3 s: when does the client's default close() return?"""

    def truth(trace: Trace) -> str:
        close, read = _close_and_read(trace)
        if read is not None and q.end(close) >= read.t:
            return "B"
        return "C" if q.slept(close) else "A"  # a close() that slept waited for the ACK of its FIN

    def explain(trace: Trace) -> str:
        return text("ex.return_default.explain", timing=_timing(trace))

    return Predict(
        text("ex.return_default.question"),
        texts("ex.return_default.choices"),
        "return-default",
        truth,
        explain,
        section=_chapter(4, text("ex.return_default.topic")),
    )


def return_linger() -> Predict:
    """With SO_LINGER {on, 5} and a busy server: when does close() return?"""

    def truth(trace: Trace) -> str:
        close, read = _close_and_read(trace)
        linger = q.linger_at(trace, "client", close.t)
        if linger is not None and close.waited >= 0.95 * linger.seconds:
            return "C"
        return "B" if read is not None and q.end(close) >= read.t else "A"

    def explain(trace: Trace) -> str:
        return text("ex.return_linger.explain", timing=_timing(trace))

    return Predict(
        text("ex.return_linger.question"),
        texts("ex.return_linger.choices"),
        "return-linger",
        truth,
        explain,
        section=_chapter(4, text("ex.return_linger.topic")),
    )


# ---- chapter 5 / 6: where did my million bytes go? --------------------------------------------
def million_bytes() -> Predict:
    """Part 5's naive writer: how much of the million bytes does the reader get?"""

    def truth(trace: Trace) -> str:
        (loop,) = trace.syscalls("server", "recv")
        if loop.errno is None and loop.result == MILLION:
            return "A"
        return "B" if loop.errno and loop.result > 0 else "C"

    def explain(trace: Trace) -> str:
        (loop,) = trace.syscalls("server", "recv")
        then = text("words.then", error=loop.errno) if loop.errno else ""
        return text("ex.million_bytes.explain", count=max(loop.result, 0), then=then)

    return Predict(
        text("ex.million_bytes.question"),
        texts("ex.million_bytes.choices"),
        "million-bytes",
        truth,
        explain,
        section=_chapter(6, text("ex.million_bytes.topic")),
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
    recipe = texts("ex.million_fix.recipes")
    return ChooseFix(
        text("ex.million_fix.question"),
        {
            "A": _million("fix-close", recipe["A"], close("client"), wait_state("server", "CLOSED"), *server_reads),
            "B": _million(
                "fix-linger-5",
                recipe["B"],
                linger("client", 5),
                close("client"),
                wait_state("server", "CLOSED"),
                *server_reads,
            ),
            "C": _million(
                "fix-shutdown-read",
                recipe["C"],
                shutdown("client", "SHUT_WR"),
                *server_reads,
                read_to_eof("client"),
                close("client"),
            ),
            "D": _million(
                "fix-shutdown-close",
                recipe["D"],
                shutdown("client", "SHUT_WR"),
                close("client"),
                *server_reads,
            ),
        },
        all_of(receives_all("server", MILLION), no_rst()),
        section=_chapter(6),
    )


def write_the_fix() -> WriteScenario:
    """Write the fix yourself: a scenario in which all of a million bytes arrive, with no RST."""
    return WriteScenario(
        text("ex.write_the_fix.task"),
        [receives_all("server", MILLION), no_rst(), knows_delivery("client")],
        section=_chapter(6),
    )


# ---- chapter 5: what the peer sees ------------------------------------------------------------
def _epoll_bits(trace: Trace, index: int) -> list[str]:
    waits = trace.syscalls("client", "epoll_wait")
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
        first, later = ("|".join(_epoll_bits(trace, i)) or text("words.no_events") for i in (0, 1))
        return text("ex.epoll_after_peer_close.explain", first=first, later=later)

    return Predict(
        text("ex.epoll_after_peer_close.question"),
        texts("ex.epoll_after_peer_close.choices"),
        "write-after-peer-close",
        truth,
        explain,
        section=_chapter(5, text("ex.peer_closed.topic")),
    )


def first_write_after_peer_close() -> Predict:
    """The server has closed: what does the client's first send() of 10 bytes return?"""

    def truth(trace: Trace) -> str:
        first = trace.syscalls("client", "send")[0]
        if first.errno is None and first.result == 10:
            return "A"
        return "B" if first.errno == "EPIPE" else "C"

    def explain(trace: Trace) -> str:
        first = trace.syscalls("client", "send")[0]
        answer = word("answer", _answer(trace, "client", "send"))
        return text("ex.first_write_after_peer_close.explain", got=_shown(first), answer=answer)

    return Predict(
        text("ex.first_write_after_peer_close.question"),
        texts("ex.first_write_after_peer_close.choices"),
        "write-after-peer-close",
        truth,
        explain,
        section=_chapter(5, text("ex.peer_closed.topic")),
    )


def second_write_after_reset() -> Predict:
    """The first send() drew an RST: what does the second send() do?"""

    def truth(trace: Trace) -> str:
        sends = trace.syscalls("client", "send")
        if len(sends) < 2:
            return "D"
        second = sends[1]
        if second.errno is None and second.result == 10:
            return "A"
        if second.errno == "ECONNRESET":
            return "B"
        return "C" if second.errno == "EPIPE" and "SIGPIPE" in q.signals_of(trace, second) else "D"

    def explain(trace: Trace) -> str:
        sends = trace.syscalls("client", "send")
        second = _shown(sends[1]) if len(sends) > 1 else text("ex.second_write_after_reset.no_second")
        signals = ", ".join(q.signals_of(trace, sends[1]) if len(sends) > 1 else []) or text("words.no_signal")
        return text("ex.second_write_after_reset.explain", got=second, signals=signals)

    return Predict(
        text("ex.second_write_after_reset.question"),
        texts("ex.second_write_after_reset.choices"),
        "write-after-peer-close",
        truth,
        explain,
        section=_chapter(5, text("ex.peer_closed.topic")),
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
