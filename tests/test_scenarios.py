"""Each built-in scenario's observable facts on the real kernel: segments, results, states, counters.

These pin what Linux does with its default settings; where the source document (or UNP) says
otherwise, the course shows both, and a change in the kernel's behaviour shows up here first.
Segments after the connection set-up are written as tcpdump flags, "D" for a segment with data,
"/dropped" or "/duplicate" for what the wire did, "#2" for a second connection.
"""

from __future__ import annotations

import pytest

import closekit
from closekit.trace import Trace

pytestmark = pytest.mark.live


def flags_by(trace: Trace, side: str) -> list[str]:
    """`side`'s segments after the set-up (a scenario's own connects keep their SYNs)."""
    marks = []
    for s in trace.segments(src=side):
        if s.has("SYN") and trace.setup_until is not None and s.t < trace.setup_until:
            continue
        if s.t < (trace.setup_until or 0) and not s.len and s.flags == ("ACK",):
            continue  # the handshake's last ACK
        fate = "" if s.fate == "delivered" else f"/{s.fate}"
        marks.append(s.tcpdump_flags + ("D" if s.len else "") + fate + ("" if s.conn == 1 else f"#{s.conn}"))
    return marks


def results(trace: Trace, side: str, call: str) -> list:
    return [(e.errno or e.result) for e in trace.syscalls(side, call)]


OPEN = ["SYN_SENT", "ESTABLISHED"], ["SYN_RECEIVED", "ESTABLISHED"]
ACTIVE = [*OPEN[0], "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]
PIGGYBACKED = [*OPEN[0], "FIN_WAIT_1", "TIME_WAIT"]  # the peer's FIN acknowledged ours: no FIN_WAIT_2
PASSIVE = [*OPEN[1], "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
EXPECTED = {
    # name: (client segments, server segments, client states, server states)
    # the server blocked in recv() gets 0 as the FIN arrives and closes at once: its FIN carries the ACK
    "close-default": (["P.D", "F.", "."], [".", "F."], PIGGYBACKED, PASSIVE),
    "close-unread": (["P.D"], [".", "R."], [*OPEN[0], "CLOSED"], [*OPEN[1], "CLOSED"]),
    "close-shared": ([".", "F."], ["F.", "."], [*OPEN[0], "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
                     [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]),
    "shutdown-wr": (["F.", ".", "."], [".", "P.D", "F."], ACTIVE, PASSIVE),
    "shutdown-rd": ([".", "F.", "."], ["P.D", ".", "F."], ACTIVE, PASSIVE),
    "shutdown-wr-rd": (["F.", ".", "R"], [".", "P.D", "P.D"], [*OPEN[0], "FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"],
                       [*OPEN[1], "CLOSE_WAIT", "CLOSED"]),
    "shutdown-rdwr": (["F.", "."], [".", "F."], ACTIVE, PASSIVE),
    "shutdown-shared": (["."], ["F."], [*OPEN[0], "CLOSE_WAIT"], [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2"]),
    "linger-zero": (["P.D", "R."], ["."], [*OPEN[0], "CLOSED"], [*OPEN[1], "CLOSED"]),
    "linger-ack": (["P.D", "F.", "."], [".", ".", "F."], ACTIVE, PASSIVE),
    "write-after-peer-close": ([".", "P.D"], ["F.", "R"], [*OPEN[0], "CLOSE_WAIT", "CLOSED"],
                               [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"]),
    "time-wait": (["F.", "."], [".", "F."], ACTIVE, PASSIVE),
    "fin-delayed-ack": (["P.D", "F.", "."], [".", ".", "F."], ACTIVE, PASSIVE),
    "linger-waits-for-ack": (["P.D", "F.", "."], [".", "F."], PIGGYBACKED, PASSIVE),
    "fin-lost": (["F./dropped", "F.", "."], [".", "F."], ACTIVE, PASSIVE),
    "last-ack-lost": (["F.", "./dropped", "."], [".", "F.", "F."], ACTIVE, PASSIVE),
    "simultaneous-close": (["F./gated", "."], ["F./gated", "."], [*OPEN[0], "FIN_WAIT_1", "CLOSING", "TIME_WAIT"],
                           [*OPEN[1], "FIN_WAIT_1", "CLOSING", "TIME_WAIT"]),
    "close-syn-sent": (["S/dropped"], [], ["SYN_SENT", "CLOSED"], []),
    "listener-close-queued": (["S", "."], ["S.", "R."], [*OPEN[0], "CLOSED"], [*OPEN[1], "CLOSED"]),
    "rst-before-accept": (["S", ".", "R."], ["S."], [*OPEN[0], "CLOSED"], [*OPEN[1], "CLOSED"]),
    "silent-peer": (["F.", "F.", "F.", "F."], ["./dropped"] * 4, [*OPEN[0], "FIN_WAIT_1", "CLOSED"],
                    [*OPEN[1], "CLOSE_WAIT"]),
    "descriptors-never-closed": ([], [], OPEN[0], OPEN[1]),  # the held copies keep the socket: close() sends nothing
    "descriptors-closed": ([".", "F."], ["F.", "."], [*OPEN[0], "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
                           [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]),
    "shutdown-rdwr-peer-sends": ([".", "F.", "R"], ["P.D", ".", "P.D"],
                                 [*OPEN[0], "FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"], [*OPEN[1], "CLOSE_WAIT", "CLOSED"]),
    "linger-off-ignored": (["P.D", "F.", "."], [".", "F."], PIGGYBACKED, PASSIVE),
    "epoll-after-fin": ([".", "P.D"], ["F.", "R"], [*OPEN[0], "CLOSE_WAIT", "CLOSED"],
                        [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"]),
    "send-after-rst-established": (["P.D"], [".", "R."], [*OPEN[0], "CLOSED"], [*OPEN[1], "CLOSED"]),
    "close-vs-shutdown-peer": ([".", "F.", "S#2", ".#2", ".#2", "F.#2"], ["F.", ".", "S.#2", "F.#2", ".#2"],
                               [*OPEN[0], "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
                               [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]),
    "close-vs-abort-peer": ([".", "F.", "S#2", ".#2"], ["F.", ".", "S.#2", "R.#2"],
                            [*OPEN[0], "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
                            [*OPEN[1], "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]),
    "old-duplicate": (["P.D", "R.", "S#2", ".#2", "P.D/duplicate", "F.#2", ".#2"], [".", "S.#2", ".#2", ".#2", "F.#2"],
                      [*OPEN[0], "CLOSED"], [*OPEN[1], "CLOSED"]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_segments_and_states_are_what_the_kernel_does(live, name):
    trace = live(name)
    client_segments, server_segments, client_states, server_states = EXPECTED[name]
    assert flags_by(trace, "client") == client_segments
    assert flags_by(trace, "server") == server_segments
    assert trace.states("client") == client_states
    assert trace.states("server") == server_states


def test_close_with_unread_data_sends_rst_and_peer_gets_econnreset(live):
    trace = live("close-unread")
    assert trace.first("RST").src == "server"
    assert not trace.sent("server", "FIN")
    assert results(trace, "client", "recv") == ["ECONNRESET"]
    assert trace.counter("TcpExt:TCPAbortOnClose") == 1


def test_default_close_sends_fin_and_peer_reads_eof(live):
    trace = live("close-default")
    assert results(trace, "server", "recv") == [6, 0]
    assert not trace.segments(flags="RST")
    assert trace.counter("TcpExt:TW") == 1


def test_the_passive_closer_acknowledges_a_fin_on_its_delayed_ack_timer(live):
    trace = live("fin-delayed-ack")
    fin = trace.first("FIN", src="client")
    ack = next(s for s in trace.segments(src="server") if s.t > fin.t and s.ack == fin.seq + 1)
    assert 0.03 < ack.t - fin.arrived < 0.25  # TCP_DELACK_MIN is 40 ms; the lab waited for it
    assert trace.counter("TcpExt:DelayedACKs") >= 1


def test_lingering_close_returns_once_data_and_fin_are_acknowledged_over_the_wire(live):
    """The server, blocked in its read, gets the end of stream and closes at once: its FIN carries
    the ACK of the client's, which arrives a round trip after the client's FIN left."""
    trace = live("linger-waits-for-ack")
    (close,) = trace.syscalls("client", "close")
    fin = trace.first("FIN", src="client")
    ack = next(s for s in trace.segments(src="server") if s.ack == fin.seq + 1)
    assert trace.link["delay"] == 0.01
    assert close.result == 0 and ack.has("FIN")
    assert fin.t <= close.t + close.duration
    assert abs((close.t + close.duration) - ack.arrived) < 0.005  # it returned as the ACK arrived
    assert close.duration > 0.02  # a round trip of 20 ms


def test_a_lost_fin_is_resent_on_the_retransmission_timer(live):
    trace = live("fin-lost")
    lost, resent = trace.segments(src="client", flags="FIN")
    assert (lost.fate, resent.fate) == ("dropped", "delivered")
    assert 0.19 < resent.t - lost.t < 1.5  # an RTO: at least TCP_RTO_MIN (200 ms)
    assert trace.counter("Tcp:RetransSegs") >= 1


def test_a_lost_last_ack_is_answered_again_from_time_wait(live):
    trace = live("last-ack-lost")
    fins = trace.segments(src="server", flags="FIN")
    assert len(fins) == 2 and fins[1].t - fins[0].t > 0.19
    acks = [s for s in trace.segments(src="client") if s.flags == ("ACK",) and s.t > fins[0].t]
    assert [a.fate for a in acks] == ["dropped", "delivered"]
    assert trace.final_state("client") == "TIME_WAIT"


def test_crossing_fins_take_both_sides_through_closing(live):
    trace = live("simultaneous-close")
    assert "CLOSING" in trace.states("client") and "CLOSING" in trace.states("server")
    assert trace.counter("TcpExt:TW") == 2


def test_close_in_syn_sent_sends_nothing(live):
    trace = live("close-syn-sent")
    assert results(trace, "client", "connect") == ["EINPROGRESS"]
    assert all(s.fate == "dropped" for s in trace.segments())
    assert trace.states("client")[-1] == "CLOSED" and not trace.segments(flags="RST")


def test_closing_a_listener_resets_the_connections_in_its_queue(live):
    trace = live("listener-close-queued")
    assert trace.first("RST").src == "server"
    assert results(trace, "client", "recv") == ["ECONNRESET"]
    assert trace.states("server", conn=0) == ["LISTEN", "CLOSED"]


def test_a_connection_reset_before_accept_is_still_accepted(live):
    trace = live("rst-before-accept")
    assert results(trace, "server", "accept") != [] and trace.syscalls("server", "accept")[0].errno is None
    assert results(trace, "server", "recv") == ["ECONNRESET"]


def test_user_timeout_ends_an_orphan_whose_peer_is_silent(live):
    trace = live("silent-peer")
    fins = trace.segments(src="client", flags="FIN")
    end = next(e for e in trace.events if e.kind == "state" and e.side == "client" and e.state == "CLOSED")
    assert len(fins) >= 3  # the FIN and its retransmissions, each unanswered
    assert 0.9 < end.t - fins[0].t < 2.0  # TCP_USER_TIMEOUT 1000 ms, give or take a timer
    assert trace.counter("TcpExt:TCPAbortOnTimeout") == 1
    assert not trace.segments(src="client", flags="RST")


def test_an_old_duplicate_is_refused_by_the_new_connection(live):
    trace = live("old-duplicate")
    (old,) = [s for s in trace.segments(src="client") if s.fate == "duplicate"]
    second_syn = trace.segments(src="client", flags="SYN")[-1]
    assert old.conn == 1 and old.arrived > second_syn.t  # conn 1's segment reached conn 2
    assert trace.counter("TcpExt:PAWSEstab") == 1  # refused by PAWS: its timestamp is older
    assert results(trace, "server", "recv") == [100, "ECONNRESET", "EAGAIN"]  # the abort; then nothing of it


def test_linger_timeout_blocks_for_the_linger_time_then_returns_zero(live):
    trace = live("linger-timeout")
    close = trace.syscalls("client", "close")[0]
    assert 0.9 < close.duration < 1.5
    assert close.result == 0 and close.errno is None  # Linux: no EWOULDBLOCK, no RST
    assert not trace.segments(flags="RST")
    assert results(trace, "server", "recv") == [20000]  # and the data still arrives afterwards
    assert "FIN_WAIT_1" in trace.states("client")


@pytest.mark.parametrize("name", ["linger-ack", "return-linger"])
def test_lingering_close_waits_for_the_ack_but_not_for_the_reader(live, name):
    trace = live(name)
    close = trace.syscalls("client", "close")[0]
    fin_ack = next(s for s in trace.segments(src="server") if s.ack >= 1002)
    assert close.result == 0 and close.t + close.duration >= fin_ack.arrived - 0.001
    server_read = trace.syscalls("server", "recv")[0]
    assert server_read.t >= close.t + close.duration and server_read.result == 1000


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("return-default", 0.0, 0.005), ("return-linger", 0.045, 0.2), ("return-shutdown-read", 0.3, 0.5)],
)
def test_the_three_ways_of_section_3_2_return_at_three_different_times(live, name, low, high):
    """At once; after a round trip and the peer's delayed ACK; after the busy peer read and closed."""
    trace = live(name)
    call = trace.syscalls("client", "recv" if name == "return-shutdown-read" else "close")[0]
    assert low <= call.duration < high
    assert trace.link["delay"] == 0.01


def test_million_bytes_loses_data_to_an_rst(live):
    trace = live("million-bytes")
    assert trace.settings == {"sysctls": {"net.ipv4.tcp_wmem": "4096 2097152 4194304"}}
    assert results(trace, "client", "send") == [1_000_000]
    (read,) = trace.syscalls("server", "recv")
    assert read.errno == "ECONNRESET"
    assert 0 < read.result < 1_000_000
    assert trace.first("RST").src == "client"
    assert trace.counter("TcpExt:TCPAbortOnClose") == 1


def test_million_bytes_fixed_delivers_everything(live):
    trace = live("million-bytes-fixed")
    assert results(trace, "server", "recv") == [1_000_000]
    assert results(trace, "client", "recv") == [13]
    assert not trace.segments(flags="RST")


def test_the_error_an_rst_leaves_depends_on_the_state_it_finds(live):
    assert results(live("write-after-peer-close"), "client", "send") == [10, "EPIPE"]  # it found CLOSE_WAIT
    assert results(live("send-after-rst-established"), "client", "send") == [6, "ECONNRESET", "EPIPE"]
    assert live("send-after-rst-established").signals("client") == ["SIGPIPE"]  # only with the EPIPE


def test_an_exit_does_not_linger_but_a_close_does(live):
    (exit_,) = live("exit-with-linger").syscalls("client", "call")
    (close,) = live("close-in-child-with-linger").syscalls("client", "call")
    assert exit_.duration < 0.2 and 0.9 < close.duration < 1.5  # SO_LINGER {on, 1}, the peer's window shut
    for name in ("exit-with-linger", "close-in-child-with-linger"):
        assert results(live(name), "server", "recv") == [20000]  # the orphan sends everything either way


def test_a_parent_that_keeps_every_descriptor_runs_out(live):
    (held,) = live("descriptors-never-closed").syscalls("server", "call")
    assert held.errno == "EMFILE" and held.result > 0
    (refused,) = live("descriptors-never-closed").syscalls("server", "epoll_wait")
    assert refused.errno == "EMFILE"
    (closed,) = live("descriptors-closed").syscalls("server", "call")
    assert closed.errno is None and closed.result == 10_000


def test_write_after_peer_close_epoll_bits_rst_then_epipe_and_sigpipe(live):
    trace = live("write-after-peer-close")
    assert results(trace, "client", "epoll_wait") == [
        ["EPOLLIN", "EPOLLOUT", "EPOLLRDHUP"],
        ["EPOLLIN", "EPOLLOUT", "EPOLLRDHUP", "EPOLLERR", "EPOLLHUP"],
    ]
    assert results(trace, "client", "send") == [10, "EPIPE"]
    assert trace.signals("client") == ["SIGPIPE"]
    assert trace.first("RST").src == "server"


@pytest.mark.parametrize("name", list(closekit.scenarios()))
def test_every_scenario_runs_on_the_wire_with_the_kernels_defaults_unless_it_says_otherwise(live, name):
    trace, scenario = live(name), closekit.get(name)
    assert trace.mode == "netns"
    assert trace.link == scenario.link.to_dict() and trace.settings == scenario.settings.to_dict()
    assert trace.counter("Tcp:ActiveOpens") >= 1 or scenario.start == "listening"


@pytest.mark.parametrize("name", ["close-default", "close-unread", "simultaneous-close", "fin-lost", "old-duplicate"])
def test_a_scenario_gives_the_same_trace_on_every_run(live, name):
    first = live(name)
    for _ in range(3):
        assert closekit.run(name) == first
