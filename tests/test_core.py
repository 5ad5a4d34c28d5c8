"""The lab's rules replayed without a kernel: scripted events into closekit.sandbox.core.Run, actions out.

Each test is a timeline as packetdrill writes one: what the processes answered, which packets
left and arrived, what a look at a socket found, all at chosen times; then what the Run asked for
and the trace it built. Several replay runs that once told the wrong story on a busy machine
(named in each test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from closekit import library
from closekit import steps as s
from closekit.errors import ExperimentError, ProtocolError, SyncTimeoutError, TimeLimitError
from closekit.lang import use
from closekit.link import Link, hold
from closekit.sandbox import core
from closekit.sandbox.diag import DiagSocket
from closekit.sandbox.endpoint import Addresses
from closekit.sandbox.packets import Packet
from closekit.sandbox.protocol import check_reply
from closekit.scenario import Scenario
from closekit.steps import Moment, SocketView

SERVER_PORT, CLIENT_PORT = 5000, 40000


def sock(state: str, rqueue: int = 0, wqueue: int = 0, timer: str | None = None, expires: float = 0.0) -> DiagSocket:
    return DiagSocket(state, rqueue, wqueue, timer, expires, 0, False, CLIENT_PORT)


def call(name: str, t: float, duration: float = 0.0001, result: Any = 0, errno: str | None = None,
         slept: bool = False, **args: Any) -> dict[str, Any]:  # fmt: skip
    return {"kind": "syscall", "t": t, "call": name, "args": args, "result": result, "errno": errno,
            "duration": duration, "slept": slept, "queued": 0.0, "delayed": None}  # fmt: skip


@dataclass
class Lab:
    """A Run with a scripted kernel: a look finds what `kernel` holds; a probe answers `asleep`."""

    scenario: Scenario
    wired: bool = True
    kernel: dict[tuple[str, int], DiagSocket] = field(default_factory=dict)
    asleep: set[str] = field(default_factory=set)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    others: list[core.Action] = field(default_factory=list)
    looks: list[tuple[str, int, float]] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    waited: dict[str, float] = field(default_factory=dict)  # what a Measure finds: each process's run_delay
    measured: list[float] = field(default_factory=list)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.run = core.Run(self.scenario, Addresses("10.9.0.1", "10.9.0.2"), 0.0, wired=self.wired, captured=False)
        self._do(self.run.start())

    def _do(self, actions: list[core.Action]) -> None:
        todo = list(actions)
        while todo:
            a = todo.pop(0)
            if isinstance(a, core.Look):
                self.looks.append((a.endpoint, a.conn, self.now))
                found = self.kernel.get((a.endpoint, a.conn))
                todo += self.run.feed(core.Seen(a.endpoint, a.conn, found, self.now))
            elif isinstance(a, core.Probe):
                self.probes.append(a.process)
                todo += self.run.feed(core.Asleep(a.process, a.process in self.asleep, self.now))
            elif isinstance(a, core.Command):
                self.commands.append((a.process, a.message))
            elif isinstance(a, core.Measure):
                self.measured.append(self.now)
                todo += self.run.feed(core.Starved(dict(self.waited), self.now))
            else:
                self.others.append(a)

    def at(self, t: float) -> Lab:
        self.now = t
        return self

    def feed(self, event: core.Event) -> None:
        self._do(self.run.feed(event))

    def reply(self, process: str, *records: dict[str, Any]) -> None:
        self.feed(core.Reply(process, "done", records, self.now))

    def tick(self) -> None:
        self.feed(core.Tick(self.now))

    def packet(self, src: str, flags: tuple[str, ...], seq: int = 1, ack: int = 1, payload: int = 0,
               arrives: float | None = None, fate: str = "delivered") -> Packet:  # fmt: skip
        """A packet `src`'s kernel sent now (its fate as the link decided); it arrives at `arrives`
        (now, by default; -1: not yet)."""
        ports = (CLIENT_PORT, SERVER_PORT) if src == "client" else (SERVER_PORT, CLIENT_PORT)
        p = Packet(self.now, src, *ports, flags, seq, ack, payload, 65535, None, b"", fate=fate)
        self.run.conns.classify(p)
        self.feed(core.Sent(p, self.now))
        arrival = self.now if arrives is None else arrives
        if arrival >= 0 and arrival == self.now:
            self.arrive(p)
        return p

    def arrive(self, p: Packet) -> None:
        p.arrived = self.now
        if p.fate == "held":
            p.fate = "released"
        self.feed(core.Arrived(p, self.now))

    def connected(self, ack_arrives: float | None = None, accept_returns: float = 0.004) -> None:
        """The set-up of a connected scenario: listen; accept(), which sleeps; then connect() and the
        handshake, its last ACK arriving at once (or at `ack_arrives`); accept() returns at `accept_returns`
        or once that ACK has arrived."""
        self.kernel[("server", 0)] = sock("LISTEN")
        self.at(0.001).reply("server", call("listen", 0.001, backlog=8),
                             {"kind": "port", "role": "listener", "port": SERVER_PORT})  # fmt: skip
        self.asleep.add("server")
        self.at(0.0015).feed(core.Reply("server", "started", (), self.now))
        self.asleep.discard("server")
        self.at(0.002)
        self.kernel[("client", 1)] = sock("SYN_SENT")
        self.packet("client", ("SYN",), seq=100, ack=0)
        self.kernel[("server", 1)] = sock("ESTABLISHED")
        self.kernel[("client", 1)] = sock("ESTABLISHED")
        self.packet("server", ("SYN", "ACK"), seq=500, ack=101)
        ack = self.packet("client", ("ACK",), seq=101, ack=501, arrives=None if ack_arrives is None else -1)
        self.at(0.003).reply(
            "client", call("connect", 0.002), {"kind": "port", "role": "connection", "port": CLIENT_PORT}
        )
        if ack_arrives is not None:
            self.at(ack_arrives).arrive(ack)
        returned = max(accept_returns, self.now)
        self.at(returned).reply("server", call("accept", 0.0015, duration=returned - 0.0015, result=4, slept=True))
        self.probes.clear()  # the set-up's own (test_the_set_up_is_a_server_blocked_in_accept_and_a_client_connecting)

    def sent_lines(self, process: str) -> list[list[list[int]]]:
        return [m["lines"] for p, m in self.commands if p == process and m["op"] == "run"]

    def trace(self) -> Any:
        return self.run.trace("6.18-test", "netns", {}, ())


def scenario(*steps: s.Step, **kw: Any) -> Scenario:
    return Scenario("timeline", "", steps=steps, **kw)


# ---- programs ------------------------------------------------------------------------------------
def test_the_set_up_is_a_server_blocked_in_accept_and_a_client_connecting():
    """As the two programs run: the server listens and calls accept(), which sleeps until a client comes; the
    client connects only once the server sleeps in it (else accept() might find the connection waiting, or
    not); the scenario's lines start once both calls have returned, in whichever order they do. (The lab
    used to hand accept() over after connect() had returned: a server that accepts only once connected.)"""
    lab = Lab(scenario(s.close("client")))
    lab.at(0.001).reply("server", call("listen", 0.001, backlog=8),
                        {"kind": "port", "role": "listener", "port": SERVER_PORT})  # fmt: skip
    assert [(p, m["op"]) for p, m in lab.commands] == [("server", "listen"), ("server", "accept")]
    assert lab.commands[-1][1]["announce"] is True and lab.probes == []  # not before it says it makes the call
    lab.at(0.0012).feed(core.Reply("server", "started", (), lab.now))
    assert lab.probes == ["server"] and len(lab.commands) == 2  # running still, not yet asleep
    lab.asleep.add("server")
    lab.at(0.0013).tick()
    assert lab.probes == ["server"]  # the next look waits for its back-off
    lab.at(0.0015).tick()
    assert lab.probes == ["server", "server"]
    assert [(p, m["op"], m["port"]) for p, m in lab.commands[2:]] == [("client", "connect", SERVER_PORT)]
    lab.asleep.discard("server")
    lab.at(0.003).reply("server", call("accept", 0.0012, duration=0.0018, result=4, slept=True))
    assert lab.run.setup_until is None and lab.sent_lines("client") == []  # connect() has not returned yet
    lab.at(0.0031).reply("client", call("connect", 0.002), {"kind": "port", "role": "connection", "port": CLIENT_PORT})
    assert lab.run.setup_until == 0.0031 and lab.sent_lines("client") == [[[0]]]


def test_each_process_gets_its_lines_up_to_the_next_sync_point_at_once():
    lab = Lab(scenario(s.send("client", 6), s.close("client"), s.recv("server"), s.recv("server"), s.close("server")))
    lab.connected()
    assert lab.sent_lines("client") == [[[0], [1]]]
    assert lab.sent_lines("server") == [[[2], [3], [4]]]


def test_no_line_waits_for_an_owed_ack_or_a_packet_in_flight():
    """The old rule (a step waits for the network to settle) made a server that got 0 from recv()
    close 40 ms later, after its delayed ACK: four segments where the program gives three."""
    lab = Lab(scenario(s.recv("server"), s.wait_done("server"), s.close("server")))
    lab.connected()
    lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501)  # a FIN the server owes an ACK for
    lab.at(0.0101).reply("server", call("recv", 0.005, duration=0.0051, slept=True, result=0, nbytes=65536))
    assert lab.sent_lines("server")[-1] == [[2]]  # close() goes at once, the ACK still owed
    assert lab.now - 0.0101 == 0


def test_a_sync_point_is_judged_once_every_process_is_done_or_blocked_in_its_last_line():
    lab = Lab(scenario(s.recv("server"), s.wait_blocked("server"), s.close("client")))
    lab.connected()
    assert lab.probes == []  # not before it says it is making the call: asleep, it would be idle
    lab.at(0.005).feed(core.Reply("server", "started", (), 0.005))
    assert lab.probes == ["server"]
    assert lab.sent_lines("client") == []  # it was running: the client's close() waits
    lab.asleep.add("server")
    lab.at(0.0052).tick()  # the probe's backoff has run out: asked again, and it sleeps now
    assert lab.sent_lines("client") == [[[2]]]
    (wait,) = lab.trace().waits()
    assert wait.step == "wait_blocked('server')" and wait.t == pytest.approx(0.0052)


def test_a_process_blocked_in_an_earlier_line_does_not_pass_a_sync_point():
    """Asleep in recv() with a close() still to run before the sync point: the close() comes only
    after the recv() returns, so the sync point waits for that."""
    lab = Lab(scenario(s.recv("server"), s.close("server"), s.wait_state("client", "CLOSE_WAIT"), s.close("client")))
    lab.connected()
    lab.asleep.add("server")
    lab.at(0.01).tick()
    assert lab.probes == []  # two lines outstanding, and it has not said it is in its last one
    assert lab.sent_lines("client") == []


def test_a_sync_point_that_is_never_met_says_what_it_waited_for():
    lab = Lab(scenario(s.wait_state("client", "TIME_WAIT"), sync_timeout=0.5))
    lab.connected()
    with pytest.raises(SyncTimeoutError, match="waited for client's socket in TIME_WAIT, but it was in ESTABLISHED"):
        lab.at(0.6).tick()


def test_a_run_s_errors_are_worded_in_the_notebook_s_language():
    """A Chinese notebook's sync point that is not met, and its run past the time limit, are told in
    Chinese (the helper runs each experiment in the language the notebook asked in)."""
    lab = Lab(scenario(s.wait_state("client", "TIME_WAIT"), sync_timeout=0.5))
    lab.connected()
    with use("zh"), pytest.raises(SyncTimeoutError) as timed_out:
        lab.at(0.6).tick()
    assert str(timed_out.value) == (
        "场景 'timeline' 中的同步点 wait_state('client', state='TIME_WAIT') 在 0.5 秒内没有满足："
        "等待 client 的套接字进入 TIME_WAIT，但它处于 ESTABLISHED"
    )
    lab = Lab(scenario(s.recv("server"), time_limit=1.0))
    lab.connected()
    lab.at(1.2).tick()  # past it: first, how long the lab was kept from the CPU
    with use("zh"), pytest.raises(TimeLimitError, match=r"超过了它的时间上限 1 秒（仍在运行：server: recv\("):
        lab.at(1.2).tick()


def test_a_limit_the_sandbox_reports_by_name_is_worded_in_the_notebook_s_language():
    """The endpoint names the limit its process hit; the helper words it, in Chinese for a Chinese
    notebook, and code that writes into the lab's channel while nothing runs is named too."""
    lab = Lab(scenario(s.recv("server")))
    lab.connected()
    memory = core.Reply("server", "limit", ({"limit": "memory", "function": "grow", "length": None},), 0.01)
    with pytest.raises(ExperimentError, match=r"limit of the lab: server: grow\(\) ran out of the memory"):
        lab.feed(memory)
    with use("zh"), pytest.raises(ExperimentError, match=r"限制：server：grow\(\) 用完了实验中一个进程可用的内存"):
        lab.feed(memory)
    long = core.Reply("server", "limit", ({"limit": "result_size", "function": "say", "length": 5000},), 0.01)
    with pytest.raises(ExperimentError, match=r"say\(\) returned 5000 characters; a result may have at most 4096"):
        lab.feed(long)
    with pytest.raises(ProtocolError, match="limit message of no known form"):
        check_reply({"kind": "limit", "limit": "words of its own", "function": None, "length": None}, "server", 0, 1)
    stray = Lab(scenario(s.recv("server")))
    stray.connected()
    stray.reply("server", call("recv", 0.005, result=6))
    with use("zh"), pytest.raises(ExperimentError, match="进程 server 在没有运行任何步骤时发来了回复"):
        stray.reply("server", call("recv", 0.006, result=0))


def test_a_run_past_its_time_limit_names_what_was_still_running():
    lab = Lab(scenario(s.recv("server"), time_limit=1.0))
    lab.connected()
    still = r"time limit of 1 s \(still running: server: recv\('server', nbytes=65536\)\)"
    lab.at(1.2).tick()
    with pytest.raises(TimeLimitError, match=still):
        lab.at(1.2).tick()


def test_the_time_limit_runs_from_the_end_of_the_set_up():
    """Beside busy labs, the set-up took 0.4 s of a 0.5 s limit: the scenario's lines still have 0.5 s."""
    lab = Lab(scenario(s.recv("server"), time_limit=0.5))
    lab.connected(accept_returns=0.4)
    lab.at(0.85).tick()
    assert not lab.run.finished
    lab.at(0.91).tick()  # past it: how long was the lab kept from the CPU? (not at all)
    with pytest.raises(TimeLimitError, match=r"time limit of 0\.5 s"):
        lab.at(0.91).tick()


def test_time_the_machine_kept_the_lab_from_the_cpu_does_not_count_to_the_time_limit():
    """Beside the suite on three workers, a function returning at once "ran past" a 0.5 s limit while the
    helper waited 1.16 s for a CPU. The kernel's run_delay of each process since the set-up's end moves the
    limit: one that was not there then counts from its start, one gone since counts for nothing."""
    lab = Lab(scenario(s.recv("server"), time_limit=0.5))
    lab.waited = {"helper": 2.0, "client": 1.0, "server": 0.5}
    lab.connected()  # the set-up ends at 0.004: the limit is at 0.504
    assert lab.measured == [0.004]
    lab.waited = {"helper": 2.3, "client": 1.05, "child": 0.05}  # 0.4 s kept from the CPU since
    lab.at(0.6).tick()
    assert lab.measured == [0.004, 0.6]
    lab.at(0.9).tick()
    lab.at(0.91).tick()  # past 0.904: measured again, and nothing more was kept from it
    with pytest.raises(TimeLimitError, match=r"time limit of 0\.5 s \(still running: server: recv"):
        lab.at(0.91).tick()


def test_a_function_looping_on_a_starved_machine_still_runs_past_its_limit_at_twice_it():
    lab = Lab(scenario(s.recv("server"), time_limit=0.5))
    lab.waited = {"client": 0.0}
    lab.connected()
    lab.waited = {"client": 5.0}  # runnable all along (a loop), and kept from the CPU
    lab.at(0.6).tick()
    lab.at(1.0).tick()
    lab.at(1.01).tick()
    with pytest.raises(TimeLimitError):
        lab.at(1.01).tick()


def test_an_exit_returns_once_the_process_is_reaped_whichever_word_comes_first():
    for reaped_first in (True, False):
        lab = Lab(scenario(s.exit("client"), s.wait_done("client"), s.recv("server")))
        lab.connected()
        events = [core.Ended("client", 0.01), core.Reply("client", "done", (call("exit", 0.009, result=None),), 0.01)]
        for event in events if reaped_first else events[::-1]:
            assert lab.sent_lines("server") == []
            lab.at(0.01).feed(event)
        assert lab.sent_lines("server") == [[[2]]]


def test_at_once_runs_its_parts_one_after_another_behind_the_closed_gate():
    lab = Lab(scenario(s.at_once(s.close("client"), s.close("server"))))
    lab.connected()
    assert lab.others == [core.Gate(closed=True)]
    assert lab.sent_lines("client") == [[[0, 0]]] and lab.sent_lines("server") == []
    lab.at(0.005).reply("client", call("close", 0.0049))
    assert lab.sent_lines("server") == [[[0, 1]]]
    lab.at(0.006).reply("server", call("close", 0.0059))
    assert lab.others[-1] == core.Gate(closed=False)


def test_the_trace_ends_only_once_nothing_is_in_flight_and_no_ack_is_owed():
    lab = Lab(scenario(s.close("client")))
    lab.connected()
    fin = lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    lab.reply("client", call("close", 0.0099))
    assert not lab.run.finished  # the FIN is on the wire
    lab.at(0.011).arrive(fin)
    lab.tick()
    assert not lab.run.finished  # the server owes its ACK: its delayed-ACK timer will send it
    lab.at(0.300).tick()
    assert lab.run.finished


def test_what_a_release_lets_go_is_in_flight_until_it_arrives():
    lab = Lab(scenario(s.close("client"), s.release("client"), s.wait_acked("client"),
                       link=Link(rules=(hold("client", "FIN"),))))  # fmt: skip
    lab.connected()
    fin = lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1, fate="held")
    lab.kernel[("client", 1)] = sock("FIN_WAIT_1", wqueue=0)  # (as if acknowledged: only the wire holds it up)
    lab.reply("client", call("close", 0.0099))
    assert core.ReleaseHeld("client") in lab.others
    assert lab.trace().waits()[-1].step == "release('client')"
    lab.at(0.012).tick()
    assert [w.step for w in lab.trace().waits()] == ["release('client')"]  # the FIN is on its way
    lab.at(0.013).arrive(fin)
    lab.tick()
    assert [w.step for w in lab.trace().waits()][-1] == "wait_acked('client')"


def _fin_resent(first_arrives: float) -> tuple[float, str]:
    """linger-ack beside four CPU-bound processes: the client's FIN left at 10 ms, the relay was kept
    from the CPU until `first_arrives`, and at 14.5 ms the client's tail-loss probe sent the FIN again."""
    lab = Lab(scenario(s.close("client")))
    lab.connected()
    fin = lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    lab.at(0.0145).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    lab.at(first_arrives).arrive(fin)
    return lab.run.disturbance(0.0)


def test_a_segment_resent_while_the_relay_still_held_its_first_copy_is_a_disturbed_run():
    """The probe's copy drew the server's immediate ACK of a duplicate, and the lingering close()
    returned after 5 ms instead of the delayed ACK's 40 ms: the lab's lateness, not TCP's lesson."""
    held_up, said = _fin_resent(0.0149)
    assert (
        held_up == 0.0
        and said == "the client sent a segment again while the wire still held the first copy (5 ms late)"
    )


def test_a_segment_resent_after_its_first_copy_arrived_is_the_lesson_not_a_disturbance():
    assert _fin_resent(0.0101) == (0.0, "")  # the first copy arrived in time: the resend is TCP's own


def _fin_resent_before_its_ack_arrived(ack_arrives: float) -> tuple[float, str]:
    """million-bytes-fixed (1 run in 60, quiet machine): the relay, behind with the bulk's ACKs, passed
    the client's FIN on 17 ms late; the server acknowledged it at once, the relay held that ACK until
    `ack_arrives`, and at 111 ms the client's tail-loss probe sent the FIN again: a retransmission, a
    duplicate's ACK and a DSACK the program on a wire without delay does not see."""
    lab = Lab(scenario(s.shutdown("client", "SHUT_WR"), s.recv("server"), s.close("server")))
    lab.connected()
    fin = lab.at(0.0919).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    lab.at(0.1088).arrive(fin)
    ack = lab.at(0.1089).packet("server", ("ACK",), seq=501, ack=102, arrives=-1)
    lab.at(0.1111).packet("client", ("FIN", "ACK"), seq=101, ack=501)
    lab.at(ack_arrives).arrive(ack)
    return lab.run.disturbance(0.0)


def test_a_segment_resent_while_the_relay_held_its_acknowledgement_is_a_disturbed_run():
    assert _fin_resent_before_its_ack_arrived(0.1175) == (
        0.0, "the client sent a segment again while the wire still held the server's acknowledgement of it (9 ms late)"
    )  # fmt: skip
    with use("zh"):
        assert "线路还扣着 server 对某个报文段的确认时" in _fin_resent_before_its_ack_arrived(0.1175)[1]


def test_a_segment_resent_after_its_acknowledgement_arrived_is_the_lesson_not_a_disturbance():
    assert _fin_resent_before_its_ack_arrived(0.1090) == (0.0, "")  # the ACK was passed on in time


def test_a_process_kept_from_the_cpu_between_two_of_its_lines_is_a_disturbed_run():
    """close-default: the server's recv() returned 0 and, as the program would, its close() was to
    follow at once; kept from the CPU 50 ms in between, its FIN would leave after the delayed ACK had
    gone alone: four segments, not the program's three. Its call's own queued time does not see that."""
    lab = Lab(scenario(s.recv("server"), s.close("server")))
    lab.connected()
    lab.at(0.010).reply("server", call("recv", 0.005, result=0), {**call("close", 0.060), "delayed": 0.05})
    held = "the server was held 50 ms before its close(), which its program makes at once"
    assert lab.run.disturbance(0.0) == (0.05, held)
    lab = Lab(scenario(s.recv("server"), s.close("server")))
    lab.connected()
    lab.at(0.010).reply("server", call("recv", 0.005, result=0), {**call("close", 0.006), "delayed": 0.0002})
    assert lab.run.disturbance(0.0) == (0.0002, "")


def test_a_line_after_a_sync_point_is_timed_from_what_met_it_not_from_when_the_lab_took_it_in():
    """linger-timeout beside two CPU-bound processes (once in a suite): the server's recv() returned 0,
    which met the sync point before its close(); the helper, kept from the CPU, took the reply in 45 ms
    later, and the server's delayed ACK went alone. The command says when the wait ended (`since`), so
    that the endpoint counts the lab's lateness in the close()'s `delayed` too."""
    lab = Lab(scenario(s.recv("server"), s.wait_done("server"), s.close("server"), s.close("client")))
    lab.connected()
    lab.at(0.055).reply("server", call("recv", 0.005, duration=0.005, result=0, slept=True))
    since = {p: m["since"] for p, m in lab.commands if m["op"] == "run" and m["lines"][0][0] >= 2}
    assert since == {"server": pytest.approx(0.010), "client": pytest.approx(0.010)}


def test_a_commands_since_is_a_number_of_seconds_the_endpoint_takes_whatever_a_process_reported():
    """A function under test may rewrite its process's records: whole seconds arrive as JSON ints, which
    the endpoint would not take as the end of the lab's wait (its first line would go unmeasured)."""
    lab = Lab(scenario(s.recv("server"), s.wait_done("server"), s.close("client")))
    lab.connected()
    lab.at(1.5).reply("server", {**call("recv", 1, duration=0, result=0), "t": 1})
    (since,) = [m["since"] for p, m in lab.commands if p == "client" and m["op"] == "run"]
    assert since == 1.0 and type(since) is float


def test_a_sync_point_met_by_a_packet_is_timed_from_when_the_packet_left():
    lab = Lab(scenario(s.wait_segment("client", ("FIN",)), s.close("server")))
    lab.connected()
    lab.at(0.030)
    p = Packet(0.012, "client", CLIENT_PORT, SERVER_PORT, ("FIN", "ACK"), 101, 501, 0, 65535, None, b"")
    lab.run.conns.classify(p)
    lab.feed(core.Sent(p, 0.030))  # taken 18 ms after it left
    assert [m["since"] for _p, m in lab.commands if m["op"] == "run"] == [0.012]


def _held_before_close(link: Link, held: float, last_ack: bool = True, relay_late: float = 0.0,
                       queued: float = 0.0, sync: bool = False) -> tuple[float, str]:  # fmt: skip
    """return-shutdown-read's end: the server's FIN left a link's delay before 30 ms and the wire passed it on
    `relay_late` late; the client's recv() it woke waited `queued` for a CPU, returned 0, and its close() was
    to follow at once (or, with `sync`, once a sync point on the server's socket was met) but started `held`
    later. The client's last ACK left as the FIN arrived (`last_ack`; else nothing happened after), reaching
    the server after the link's delay and closing its socket. How long the run was held up, and what its
    trace says about being disturbed."""
    lines = (s.wait_state("server", "LAST_ACK"),) if sync else ()
    lab = Lab(scenario(s.recv("client"), *lines, s.close("client"), link=link))
    lab.connected(ack_arrives=0.012)
    lab.kernel[("server", 1)] = sock("LAST_ACK")
    fin = lab.at(0.030 - link.delay).packet("server", ("FIN", "ACK"), seq=501, ack=101, arrives=-1)
    arrival = 0.030 + relay_late
    lab.at(arrival).arrive(fin)
    returned, closed = arrival + queued, arrival + queued + held
    recv = {**call("recv", 0.013, duration=returned - 0.013, result=0, slept=True), "queued": queued}
    close = {**call("close", closed), "delayed": held}
    events = [(closed, "close")]
    if last_ack:
        ack = lab.at(arrival).packet("client", ("ACK",), seq=101, ack=502, arrives=-1)
        events.append((arrival + link.delay, "ack"))
    for t, what in sorted(events):
        if what == "ack":
            del lab.kernel[("server", 1)]  # the ACK closes the server's socket
            lab.at(t).arrive(ack)
        elif sync:
            lab.at(returned).reply("client", recv)
            lab.at(closed).reply("client", close)
        else:
            lab.at(closed).reply("client", recv, close)
    held_up, trace = lab.run.outcome("6.18-test", "netns", {}, (), relay_late)
    return held_up, trace.disturbed


def test_on_a_link_with_delay_a_line_held_back_past_a_segments_arrival_is_a_disturbed_run():
    """On a 10 ms link (1 run in a suite on a busy machine): held 10 ms, the client's close() came after its
    last ACK had reached the server and closed its socket, and the picture drew them the other way round.
    Well below the 20 ms a link without delay tolerates, the run is run again: past 80% of the delay, where
    what the trace shows happened while the line was held back (here the server's socket closed)."""
    held = "the client was held 11 ms before its close(), which its program makes at once"
    assert _held_before_close(Link(delay=0.01), 0.011) == (0.011, held)
    assert _held_before_close(Link(delay=0.01), 0.009) == (0.0, "")  # the ACK arrived after the close()
    assert _held_before_close(Link(), 0.011) == (0.011, "")  # its next segment goes at once: 20 ms


def test_on_a_link_with_delay_a_line_held_back_while_nothing_moved_has_the_tolerance_of_a_link_without():
    """old-duplicate beside two CPU-bound processes: the lab handed lines over up to 9 ms after their sync
    points, 34 runs in 80 past its 5 ms link's 4 ms, all with the same picture: where nothing the trace
    shows happened meanwhile, no order in it can change."""
    assert _held_before_close(Link(delay=0.01), 0.015, last_ack=False) == (0.0, "")
    held = "the client was held 25 ms before its close(), which its program makes at once"
    assert _held_before_close(Link(delay=0.01), 0.025, last_ack=False) == (0.025, held)


def test_a_line_after_a_woken_call_is_held_by_the_wires_and_the_cpus_lateness_added_up():
    """return-shutdown-read beside two CPU-bound processes and six labs, 3 runs in about 1,700, told nothing: the
    wire passed the server's FIN on 7 ms late and the client's recv(), woken by it, waited 4 ms for a CPU. Each
    under the 10 ms link's 8 ms, together they put the client's close() after its last ACK had closed the
    server's socket, and the words, which tell recv()'s return as the FIN arrived on time, drew that order."""
    link = Link(delay=0.01)
    late = (0.0074, 0.0044)
    assert _held_before_close(link, 0.0002, relay_late=late[0], queued=late[1]) == (pytest.approx(0.012), (
        "the client's close() started 12 ms later than the segment that ended its recv() allows: the wire passed "
        "that segment on 7 ms late, and the client waited 5 ms for a CPU"
    ))  # fmt: skip
    assert _held_before_close(link, 0.0002, relay_late=0.004, queued=0.003)[1] == ""  # 7.2 ms in all
    assert _held_before_close(Link(), 0.0002, relay_late=late[0], queued=late[1])[1] == ""  # 20 ms there
    assert _held_before_close(link, 0.0002, relay_late=late[0], queued=late[1], sync=True)[1] == ""  # the lab's
    # 8.7 ms in all, but nothing told between recv()'s return and the close(): its last ACK reached the server
    # after the close() began (the FIN is told arriving on time, at 30 ms; the ACK 10 ms later)
    assert _held_before_close(link, 0.0002, relay_late=0.004, queued=0.0045)[1] == ""


def test_a_line_after_a_call_its_timer_ended_is_not_held_by_the_wire():
    """return-default's server sleeps 0.3 s while the client's data and FIN arrive: a segment that came during a
    sleep() did not end it, so the wire's lateness passing it on does not count against the line after it (the
    words tell the sleep's return by its clock too, after the client's getsockopt())."""
    lab = Lab(scenario(s.sleep("server", 0.05), s.close("server"), s.getsockopt("client"), link=Link(delay=0.01)))
    lab.connected(ack_arrives=0.012)
    data = lab.at(0.020).packet("client", ("PSH", "ACK"), seq=101, ack=501, payload=6, arrives=-1)
    lab.at(0.0374).arrive(data)  # 7.4 ms late
    lab.at(0.050).reply("client", call("getsockopt", 0.050, option="SO_ERROR"))
    lab.at(0.0672).reply("server", {**call("sleep", 0.013, duration=0.054, slept=True, seconds=0.05), "queued": 0.004},
                         {**call("close", 0.0674), "delayed": 0.0002})  # fmt: skip
    assert core.woken_late(lab.run.trace("6.18-test", "netns", {}, ()), 0.008) is None


def test_on_a_link_with_delay_a_late_wire_in_the_set_up_is_a_disturbed_run():
    """return-default (once in CI): the relay passed the handshake on 34 ms late and connect(), told as the
    10 ms link's round trip (≈ 20 ms), read ≈ 40 ms. Without delay the set-up's timing is no lesson's."""
    lab = Lab(scenario(s.close("client"), link=Link(delay=0.01)))
    lab.connected(ack_arrives=0.012)
    assert lab.run.disturbance(0.0, setup_late=0.034) == (0.034, "the wire passed a segment on 34 ms late")
    lab = Lab(scenario(s.close("client")))
    lab.connected()
    assert lab.run.disturbance(0.0, setup_late=0.034) == (0.0, "")


def test_a_peer_aborts_a_new_connection_only_once_its_connect_has_returned():
    """close-vs-abort-peer (1 run in 300, quiet machine): the server's accept() returned and it aborted
    the connection while the client, woken by the SYN-ACK, had not yet run: its connect() failed with
    ECONNRESET. The scenario joins the client's connect() before the abort, and the lab holds it."""
    tail = (s.connect("client"), s.wait_done("server"), s.wait_done("client"), s.linger("server", 0),
            s.close("server"))  # fmt: skip
    assert library.get("close-vs-abort-peer").steps[10:15] == tail
    lab = Lab(scenario(s.close("client"), s.close("server"), s.accept("server"), *tail))
    lab.connected()
    assert lab.sent_lines("server") == [[[1], [2]]] and lab.sent_lines("client") == [[[0], [3]]]
    lab.at(0.006).reply("server", call("close", 0.005))
    lab.at(0.006).reply("client", call("close", 0.005))
    lab.at(0.010).reply("server", call("accept", 0.006, duration=0.004, result=5, slept=True))
    assert lab.sent_lines("server") == [[[1], [2]]]  # the client's connect() still runs: no abort yet
    lab.at(0.011).reply("client", call("connect", 0.006, duration=0.005, slept=True))
    assert lab.sent_lines("server") == [[[1], [2]], [[6], [7]]]


def _waited_while_the_wire_was_late(took: float, wire_late: float, read: bool = False) -> str:
    """linger-ack beside busy labs: the client's lingering close() began at 10 ms and returned `took`
    later, once the server's ACK of its FIN came back, while the wire passed segments on up to
    `wire_late` late (under the tolerance); or (`read`) the server's recv() began at 10 ms and the
    client's FIN woke it `took` later. What the run's trace says about being disturbed."""
    lab = Lab(scenario(s.recv("server") if read else s.close("client")))
    lab.connected()
    if read:
        lab.at(0.0099 + took).packet("client", ("FIN", "ACK"), seq=101, ack=501)
        lab.at(0.0100 + took).reply("server", call("recv", 0.010, duration=took, slept=True))
    else:
        lab.at(0.0101).packet("client", ("FIN", "ACK"), seq=101, ack=501)
        lab.at(0.0099 + took).packet("server", ("ACK",), seq=501, ack=102)
        lab.at(0.0100 + took).reply("client", call("close", 0.010, duration=took, slept=True))
    return lab.run.outcome("6.18-test", "netns", {}, (), wire_late)[1].disturbed


def test_a_wire_late_enough_to_move_a_told_duration_into_another_category_is_a_disturbed_run():
    """A 40 ms delayed ACK and a relay 15 ms late: close() took 58 ms, told "≈ 60 ms" where the program
    waits "≈ 40 ms". Under the 20 ms tolerance, but the words are the lab's doing."""
    assert _waited_while_the_wire_was_late(0.058, 0.015) == (
        "the wire passed a segment on 15 ms late, enough to change how long the client's close() is said to take"
    )
    with use("zh"):
        assert "足以改变 client 的 close() 被说成用了多久" in _waited_while_the_wire_was_late(0.058, 0.015)


def test_a_late_wire_that_moves_no_told_duration_is_no_disturbance():
    assert _waited_while_the_wire_was_late(0.045, 0.005) == ""  # ≈ 40 ms either way
    assert _waited_while_the_wire_was_late(0.050, 0.0005) == ""
    # a read is told by what woke it ("when the FIN arrived"), not by how long it took
    assert _waited_while_the_wire_was_late(0.058, 0.015, read=True) == ""


def test_a_delayed_ack_later_than_its_timer_allows_is_a_disturbed_run():
    """linger-ack in a loaded suite: the server's ACK of the FIN left 66 ms after the FIN had reached it, the wire
    on time. Where round trips are shorter, its kernel arms the delayed-ACK timer for 40 ms at most, and the
    timer fires within a tick: the rest was a busy machine's, and close() was told "≈ 60 ms" where the program
    waits "≈ 40 ms". The run is disturbed, as one a wire as late had held up would be."""
    assert _waited_while_the_wire_was_late(0.066, 0.0) == (
        "the server's kernel sent its delayed ACK 16 ms later than its timer allows (40 ms and a tick), enough to "
        "change how long the client's close() is said to take"
    )
    with use("zh"):
        assert "晚了 16 毫秒" in _waited_while_the_wire_was_late(0.066, 0.0)
    assert _waited_while_the_wire_was_late(0.049, 0.0) == ""  # in time (≈ 40 ms, as the program waits)
    assert _waited_while_the_wire_was_late(0.058, 0.0)  # 8 ms late, enough to be told "≈ 60 ms"


def _fin_acknowledged(
    after: float, transit: float = 0.0, read_returns: float | None = None, seq: int = 501
) -> tuple[float, str]:
    """The client's FIN left at 10 ms and reached the server `transit` later; the server's pure ACK of it left
    `after` that (with sequence number `seq`: 500 is one below its next), while its recv() (blocked since the
    set-up) returned at `read_returns` or not at all. How late core.delayed_ack_late finds that ACK, and whose."""
    lab = Lab(scenario(s.recv("server"), s.close("client")))
    lab.connected()
    fin = lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    lab.at(0.010 + transit).arrive(fin)
    if read_returns is not None:
        lab.at(read_returns).reply("server", call("recv", 0.005, duration=read_returns - 0.005, slept=True))
    lab.at(0.010 + transit + after).packet("server", ("ACK",), seq=seq, ack=102)
    return core.delayed_ack_late(lab.trace())


def test_only_an_ack_its_timer_alone_can_have_sent_is_judged_by_the_timer():
    """Look-alikes of a late delayed ACK, each a pure ACK 66 ms after the FIN: one a call of the server's may
    have sent (a read returning frees the window, or finds an ACK owed: tcp_cleanup_rbuf); a window probe or
    keepalive (another timer's, its sequence number one below the next: linger-timeout probes a shut window
    from 0.2 s on, every run); and one on a connection whose round trips are as long as the timer's
    40 ms (the kernel stretches the timer to the round trip: tcp_send_delayed_ack)."""
    late, side = _fin_acknowledged(0.066)
    assert (round(late, 4), side) == (0.016, "server")
    assert _fin_acknowledged(0.066, read_returns=0.0759) == (0.0, "")
    assert _fin_acknowledged(0.066, seq=500) == (0.0, "")
    assert _fin_acknowledged(0.066, transit=0.025) == (0.0, "")
    assert _fin_acknowledged(0.049) == (0.0, "")


# ---- looking ---------------------------------------------------------------------------------------
def test_the_listening_socket_is_looked_at_only_after_a_line_that_acts_on_it():
    lab = Lab(scenario(s.recv("server"), s.close("server"), s.close("server", listener=True)))
    lab.connected()
    lab.looks.clear()
    lab.at(0.010).reply("server", call("recv", 0.005, result=6))
    lab.at(0.011).reply("server", call("close", 0.0105))
    assert ("server", 0) not in [(e, c) for e, c, _t in lab.looks]  # a recv and a close of the connection
    lab.kernel[("server", 0)] = None  # type: ignore[assignment]
    lab.at(0.012).reply("server", call("close", 0.0115, socket="listener"))
    assert lab.looks[-2:] == [("server", 1, 0.012), ("server", 0, 0.012)]
    assert [(e.state, e.t) for e in lab.trace().events if e.kind == "state" and e.conn == 0][-1] == ("CLOSED", 0.0115)


def test_a_segment_that_cannot_have_changed_its_sender_is_not_followed_by_a_look_at_it():
    """The first FIN (FIN_WAIT_1 inside close()) and an RST are looked for; the SYN-ACK of a socket seen
    in SYN_RECEIVED, a FIN sent again and a plain ACK from TIME_WAIT are not."""
    lab = Lab(scenario(s.close("client")))
    lab.connected()
    lab.looks.clear()
    lab.kernel[("client", 1)] = sock("FIN_WAIT_1")
    lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    assert lab.looks == [("client", 1, 0.010)]
    lab.at(0.210).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)  # sent again
    lab.kernel[("client", 1)] = sock("TIME_WAIT", timer="time-wait")
    lab.at(0.220).packet("server", ("FIN", "ACK"), seq=501, ack=102)
    lab.looks.clear()
    lab.at(0.221).packet("client", ("ACK",), seq=102, ack=502, arrives=-1)
    assert lab.looks == []
    lab.at(0.222).packet("client", ("RST",), seq=102, ack=0, arrives=-1)
    assert lab.looks == [("client", 1, 0.222)]


def test_a_timer_gone_without_a_change_of_state_is_looked_at_once_more():
    """A look that lands while a retransmission timer's handler runs finds the socket with no timer; the
    handler then ends it (TCP_USER_TIMEOUT) without sending anything. silent-peer once dated CLOSED at
    5 s, the sync point's timeout, instead of about 1 s: nothing was left to look again (one fresh-clone run)."""
    lab = Lab(scenario(s.close("client"), s.wait_state("client", "CLOSED"), sync_timeout=5.0))
    lab.connected()
    lab.kernel[("client", 1)] = sock("FIN_WAIT_1", timer="retransmit", expires=0.8)
    lab.at(0.010).packet("client", ("FIN", "ACK"), seq=101, ack=501, arrives=-1)
    lab.at(0.011).reply("client", call("close", 0.0100))
    lab.kernel[("client", 1)] = sock("FIN_WAIT_1")  # the handler is running: no timer pending
    lab.at(0.812).tick()
    assert lab.run.timers == {("client", 1): pytest.approx(0.814)}
    del lab.kernel[("client", 1)]  # the handler ended the connection
    lab.at(0.815).tick()
    (closed,) = [e for e in lab.trace().events if e.kind == "state" and e.state == "CLOSED"]
    assert closed.t == 0.815 and lab.run.next == 2  # the sync point passed then
    lab.kernel[("client", 1)] = sock("FIN_WAIT_1")  # a timer cancelled for good is looked at once, not again
    lab.run.views[("client", 1)] = SocketView("FIN_WAIT_1")
    lab.run.feed(core.Seen("client", 1, sock("FIN_WAIT_1"), 0.9))
    assert ("client", 1) not in lab.run.timers


# ---- dating by cause -----------------------------------------------------------------------------
def test_a_state_a_call_brings_is_dated_at_the_call_before_the_segment_it_sends():
    """close-full-window told FIN_WAIT_1 after close() returned: the FIN waits behind the data,
    nothing is sent, and the lab saw the state only at the reply."""
    lab = Lab(scenario(s.close("client")))
    lab.connected()
    lab.kernel[("client", 1)] = sock("FIN_WAIT_1", wqueue=15000)
    lab.at(0.020).reply("client", call("close", 0.0100))
    changes = [e for e in lab.trace().events if e.kind == "state" and e.side == "client"]
    assert (changes[-1].state, changes[-1].t) == ("FIN_WAIT_1", 0.0100)


def test_a_state_a_segment_brings_is_dated_at_its_arrival_even_when_the_look_saw_it_later():
    """A FIN that reaches a socket its reader holds locked waits in the backlog: the look right after
    the arrival still finds ESTABLISHED (million-bytes-fixed, 1 run in 199)."""
    lab = Lab(scenario(s.read_to_eof("server")))
    lab.connected()
    lab.at(0.030).packet("client", ("FIN", "ACK"), seq=101, ack=501)  # the look finds ESTABLISHED
    lab.kernel[("server", 1)] = sock("CLOSE_WAIT")
    lab.at(0.032).reply("server", call("recv", 0.020, duration=0.012, result=0, slept=True, until="EOF"))
    (close_wait,) = [e for e in lab.trace().events if e.kind == "state" and e.state == "CLOSE_WAIT"]
    assert close_wait.t == 0.030


def test_a_state_no_look_saw_is_put_in_when_its_cause_is_in_the_trace():
    """The reader takes the FIN from the backlog and closes before the lab looks: it sees LAST_ACK,
    never CLOSE_WAIT (linger-exit, idle)."""
    lab = Lab(scenario(s.read_to_eof("server"), s.close("server")))
    lab.connected()
    lab.at(0.030).packet("client", ("FIN", "ACK"), seq=101, ack=501)
    lab.kernel[("server", 1)] = sock("LAST_ACK", wqueue=1)
    lab.at(0.031).reply("server", call("recv", 0.020, duration=0.0104, result=0, slept=True, until="EOF"))
    lab.at(0.0312).packet("server", ("FIN", "ACK"), seq=501, ack=102, arrives=-1)  # close() ran at 0.0305
    lab.reply("server", call("close", 0.0305))
    states = [(e.state, e.t) for e in lab.trace().events if e.kind == "state" and e.side == "server" and e.conn == 1]
    assert states[-2:] == [("CLOSE_WAIT", 0.030), ("LAST_ACK", 0.0305)]


def test_an_opening_state_after_later_ones_is_a_newer_connections_socket_not_this_ones():
    """close-vs-abort-peer told its first connection going back to SYN_SENT (4 of 60 runs under load)."""
    lab = Lab(scenario(s.close("client")))
    lab.connected()
    lab.kernel[("client", 1)] = sock("SYN_SENT")
    lab.at(0.010).feed(core.Seen("client", 1, lab.kernel[("client", 1)], 0.010))
    assert [e.state for e in lab.trace().events if e.kind == "state" and e.side == "client"][-1] == "ESTABLISHED"


def test_a_close_by_a_process_that_shares_the_socket_does_not_date_its_fin_wait():
    """close-shared: the parent's close() drops a reference; the child's close() sends the FIN."""
    lab = Lab(scenario(s.fork("server", "kid"), s.close("server"), s.wait_done("server"), s.close("kid")))
    lab.connected()
    lab.at(0.010).reply("server", call("fork", 0.009, result="kid"))
    lab.at(0.012).reply("server", call("close", 0.011))
    lab.feed(core.Reply("kid", "hello", (), 0.012))
    lab.kernel[("server", 1)] = sock("FIN_WAIT_1", wqueue=1)
    lab.at(0.020).reply("kid", call("close", 0.019))
    changes = [e for e in lab.trace().events if e.kind == "state" and e.side == "server" and e.conn == 1]
    assert (changes[-1].state, changes[-1].t) == ("FIN_WAIT_1", 0.019)


# ---- the sync points' rows -------------------------------------------------------------------------
def views(**seen: SocketView) -> dict[tuple[str, int], SocketView]:
    return {(name, 1): view for name, view in seen.items()}


def test_wait_recv_queue_is_met_by_the_bytes_or_by_a_closed_window():
    step = s.wait_recv_queue("server", 100)
    assert not step.met(Moment(sockets=views(server=SocketView("ESTABLISHED", rqueue=99))), "server")
    assert step.met(Moment(sockets=views(server=SocketView("ESTABLISHED", rqueue=100))), "server")
    step = s.wait_recv_queue("server", 20000)  # more than the receiver's buffer takes
    full = views(server=SocketView("ESTABLISHED", rqueue=4096),
                 client=SocketView("ESTABLISHED", wqueue=15000, timer="zero-window probe"))  # fmt: skip
    assert step.met(Moment(sockets=full), "server")
    assert not step.met(Moment(sockets=full, in_flight=1), "server")  # something may still arrive
    retransmitting = {**full, ("client", 1): SocketView("ESTABLISHED", wqueue=15000, timer="retransmit")}
    assert not step.met(Moment(sockets=retransmitting), "server")  # the window is not known to be shut


def test_wait_state_reads_the_current_connection_or_the_listener():
    seen = {("server", 0): SocketView("LISTEN"), ("server", 1): SocketView("SYN_RECEIVED"),
            ("server", 2): SocketView("ESTABLISHED")}  # fmt: skip
    assert s.wait_state("server", "ESTABLISHED").met(Moment(sockets=seen, current=2), "server")
    assert not s.wait_state("server", "ESTABLISHED").met(Moment(sockets=seen, current=1), "server")
    assert s.wait_state("server", "LISTEN", listener=True).met(Moment(sockets=seen, current=2), "server")


def test_wait_acked_needs_an_empty_send_queue_and_a_quiet_wire():
    step = s.wait_acked("client")
    assert not step.met(Moment(sockets=views(client=SocketView("FIN_WAIT_1", wqueue=1))), "client")
    assert step.met(Moment(sockets=views(client=SocketView("FIN_WAIT_2", wqueue=0))), "client")
    assert not step.met(Moment(sockets=views(client=SocketView("FIN_WAIT_2")), in_flight=1), "client")
    assert not step.met(Moment(), "client")  # a socket never seen has acknowledged nothing


def test_wait_segment_matches_flags_and_window_of_the_named_sender():
    seen = (("client", frozenset({"FIN", "ACK"}), 64512), ("server", frozenset({"ACK"}), 0))
    assert s.wait_segment("client", ("FIN",)).met(Moment(segments=seen), "client")
    assert not s.wait_segment("server", ("FIN",)).met(Moment(segments=seen), "server")
    assert s.wait_segment("server", ("ACK",), win=0).met(Moment(segments=seen), "server")
    assert not s.wait_segment("server", ("ACK",), win=1).met(Moment(segments=seen), "server")


def test_wait_done_and_wait_blocked_read_where_the_process_is():
    assert s.wait_done("client").met(Moment(returned=frozenset({"client"})), "client")
    assert not s.wait_done("client").met(Moment(blocked=frozenset({"client"})), "client")
    assert s.wait_blocked("client").met(Moment(blocked=frozenset({"client"})), "client")
    assert not s.wait_blocked("client").met(Moment(returned=frozenset({"client"})), "client")


@pytest.mark.parametrize(
    ("step", "seen", "expected"),
    [
        (s.wait_recv_queue("server", 10), Moment(sockets=views(server=SocketView("ESTABLISHED", rqueue=2))),
         "waited for 10 unread bytes (or a closed window), but server's receive queue held 2"),
        (s.wait_state("client", "TIME_WAIT"), Moment(sockets=views(client=SocketView("FIN_WAIT_2"))),
         "waited for client's socket in TIME_WAIT, but it was in FIN_WAIT_2"),
        (s.wait_acked("client"), Moment(sockets=views(client=SocketView("FIN_WAIT_1", wqueue=1))),
         "but 1 bytes (a FIN counts one) were unacknowledged"),
        (s.wait_segment("server", ("RST",)), Moment(segments=(("client", frozenset({"FIN"}), 1),)),
         "but the segments sent were: client FIN"),
        (s.wait_blocked("server"), Moment(returned=frozenset({"server"})),
         "waited for server to block in its call, but the call returned without waiting"),
    ],
)  # fmt: skip
def test_a_sync_point_that_times_out_says_what_it_waited_for_and_what_it_saw(step, seen, expected):
    assert expected in step.waited_for(seen, step.side)


def test_a_record_is_checked_against_the_fields_it_is_given_each_time():
    """The allowed keys are worked out once per kind of record: a fields tuple made for one call (its
    id free to be reused by the next) is never judged by another's keys."""
    from closekit import records

    for name in ("a", "b", "c"):
        fields = (records.Field(name, records.finite),)
        assert records.check(fields, {name: 1.0}) == {name: 1.0}
        with pytest.raises(records.Invalid, match="unknown keys: x"):
            records.check(fields, {name: 1.0, "x": 2.0})
