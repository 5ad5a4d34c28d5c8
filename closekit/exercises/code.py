"""Write the code: the student's `send_all_then_close(sock, data)` runs as the client against live peers.

The function runs in the sandbox (closekit.steps.call): its source is sent to a forked process,
with `socket` imported and `data` built there, under the scenario's time limit. The verdict reads
only the trace — what the peer's recv() calls returned, who sent an RST, whether the function let
an error out — never the function's return value, so nothing it returns can fake a pass. The peer runs
no code of the student's, so its recv() records are the kernel's answers; the client's records are
marked forgeable (the function could rewrite how they are made), and the one of them read, whether an
error got out of the function, is the function's own behaviour, which is what is graded.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import closekit
from closekit import query as q
from closekit.errors import CloseKitError, ExperimentError, ProcessEndedError, SyncTimeoutError, TimeLimitError
from closekit.exercises.results import CodeResult, PeerCheck
from closekit.lang import text, texts, word
from closekit.query import received, recv_error
from closekit.scenario import Options, Scenario
from closekit.steps import Call, close, linger, read_to_eof, send, sleep, wait_done, wait_recv_queue
from closekit.trace import Trace

PAYLOAD_SIZE = 1_000_000
BANNER = 13  # bytes the banner peer sends first, which a plain close() leaves unread
PEERS = ("slow reader", "banner", "reset")  # what each does: closekit/lang/*.toml, code.peer_about
ENTRY = "_closekit_entry"
LEFT_OPEN = "closekit: left the socket open"
# Runs the student's function; whatever it does, the socket is closed afterwards so the peer is not
# left waiting for an end of stream (a socket the function left open is reported, not hidden).
ENTRY_SOURCE = """

def {entry}(sock):
    try:
        {name}(sock, b"x" * {size})
    except BaseException:
        _closekit_close(sock)
        raise
    if sock.fileno() != -1:
        _closekit_close(sock)
        return {left_open!r}
    return None


def _closekit_close(sock):
    try:
        sock.close()
    except OSError:
        pass
"""


def call_step(function: Callable[..., Any], payload_size: int = PAYLOAD_SIZE) -> Call:
    """A client step that runs `function(sock, data)` in the sandbox with `payload_size` bytes of data."""
    source = _source(function) + ENTRY_SOURCE.format(
        entry=ENTRY, name=function.__name__, size=int(payload_size), left_open=LEFT_OPEN
    )
    return Call("client", source="import socket\n\n" + source, function=ENTRY)


def scenario_for(
    function: Callable[..., Any], peer: str, payload_size: int = PAYLOAD_SIZE, time_limit: float = 5.0
) -> Scenario:
    """The scenario that runs `function` as the client against `peer` (one of PEERS)."""
    step = call_step(function, payload_size)
    if peer == "slow reader":
        steps: tuple = (step, sleep("server", 0.2), read_to_eof("server"), close("server"), wait_done("client"))
        options = Options(server_rcvbuf=16384)
    elif peer == "banner":
        steps = (
            send("server", BANNER),
            wait_recv_queue("client", BANNER),
            step,
            sleep("server", 0.1),
            read_to_eof("server"),
            close("server"),
            wait_done("client"),
        )
        options = Options(server_rcvbuf=16384)
    elif peer == "reset":
        steps = (step, wait_recv_queue("server", 1), linger("server", 0), close("server"), wait_done("client"))
        options = Options()
    else:
        raise ValueError(f"no peer called {peer!r}; the peers are: {', '.join(PEERS)}")
    return Scenario(
        f"{function.__name__}-vs-{peer.replace(' ', '-')}",
        text("code.against", name=function.__name__, peer=texts("code.peer_about", banner=BANNER)[peer]),
        steps=steps,
        options=options,
        time_limit=time_limit,
    )


def _source(function: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        raise CloseKitError(text("code.no_source", name=function.__name__)) from None


class WriteCode:
    """Check a student's `name(sock, data)` against live peers (PEERS), each with a time limit.

    `check(function)` returns a CodeResult: one PeerCheck per peer, `score` the share passed.
    """

    def __init__(
        self,
        name: str = "send_all_then_close",
        peers: tuple[str, ...] = PEERS,
        payload_size: int = PAYLOAD_SIZE,
        time_limit: float = 5.0,
        section: str = "",
        points: float = 1.0,
    ) -> None:
        unknown = [p for p in peers if p not in PEERS]
        if unknown:
            raise ValueError(f"unknown peers {unknown}; the peers are: {', '.join(PEERS)}")
        self.name = name
        self.peers = tuple(peers)
        self.payload_size = payload_size
        self.time_limit = time_limit
        self.section = section
        self.points = float(points)
        self._result: CodeResult | None = None

    @property
    def result(self) -> CodeResult:
        """The result of the last check (a not-passed result before any)."""
        if self._result is not None:
            return self._result
        return CodeResult(False, text("code.not_checked", name=self.name), self.points)

    def check(self, function: Any) -> CodeResult:
        """Run `function(sock, data)` against every peer on the live kernel and say how it did."""
        problem = self._signature_problem(function)
        if problem:
            checks = tuple(PeerCheck(p, False, problem) for p in self.peers)
        else:
            checks = tuple(self._against(function, p) for p in self.peers)
        passed = all(c.passed for c in checks)
        done = sum(c.passed for c in checks)
        if problem:
            head = problem
        elif passed:
            head = text("code.all_passed", name=self.name, size=self.payload_size)
        else:
            see = text("predict.see", section=self.section) if self.section else ""
            head = text("code.some_passed", name=self.name, done=done, total=len(checks)) + see
        lines = "\n".join(
            text(
                "code.peer_line", mark="✔" if c.passed else "✘", peer=word("code.peer_name", c.peer), message=c.message
            )
            for c in checks
        )
        self._result = CodeResult(passed, f"{head}\n{lines}", self.points, checks=checks)
        return self._result

    def _signature_problem(self, function: Any) -> str | None:
        if function is None:
            return text("code.not_answered", name=self.name)
        if not inspect.isfunction(function):
            return text("code.not_a_function", name=self.name, type=type(function).__name__)
        if function.__name__ == "<lambda>":
            return text("code.a_lambda", name=self.name)
        try:
            inspect.signature(function).bind(object(), b"")
        except TypeError:
            signature = inspect.signature(function)
            return text("code.bad_signature", function=function.__name__, signature=signature, name=self.name)
        try:
            _source(function)
        except CloseKitError as e:
            return str(e)
        if function.__code__.co_freevars:
            names = ", ".join(function.__code__.co_freevars)
            return text("code.closure", function=function.__name__, names=names)
        return None

    def _against(self, function: Callable[..., Any], peer: str) -> PeerCheck:
        scenario = scenario_for(function, peer, self.payload_size, self.time_limit)
        try:
            trace = closekit.run(scenario)
        except TimeLimitError:
            return PeerCheck(peer, False, text("code.hangs", name=self.name, seconds=self.time_limit))
        except ProcessEndedError as e:
            return PeerCheck(peer, False, text("code.exited", name=self.name, error=e))
        except (ExperimentError, SyncTimeoutError) as e:
            return PeerCheck(peer, False, text("code.not_to_end", error=e))
        except CloseKitError as e:
            return PeerCheck(peer, False, text("code.could_not_run", error=e))
        return PeerCheck(peer, *self._judge(trace, peer), trace=trace)

    def _judge(self, trace: Trace, peer: str) -> tuple[bool, str]:
        calls = trace.syscalls("client", "call")
        if not calls:
            return False, text("code.no_call")
        call = calls[0]
        got, error = received(trace, "server"), recv_error(trace, "server")
        then = text("words.then", error=error) if error else ""
        arrived = text("code.arrived", got=got, total=self.payload_size) + then
        rst = q.first(trace, "RST", "client")
        raised_other = isinstance(call.result, str) and call.result.startswith("raised ") and call.errno is None
        if peer == "reset":
            if call.errno:
                return True, text("code.reset_let_out", errno=call.errno)
            if raised_other:
                return False, text("code.reset_raised", error=call.result.removeprefix("raised "))
            return False, text("code.reset_returned", arrived=arrived)
        if call.errno:
            return False, text("code.raised_oserror", arrived=arrived, errno=call.errno)
        if raised_other:
            return False, text("code.raised", arrived=arrived, error=call.result.removeprefix("raised "))
        if rst is not None:
            why = text("code.greeting_unread") if peer == "banner" else ""
            return False, text("code.sent_rst", arrived=arrived, why=why)
        if got != self.payload_size or error:
            return False, arrived
        if call.result == LEFT_OPEN:
            return False, text("code.left_open", total=self.payload_size)
        return True, text("code.delivered", total=self.payload_size)
