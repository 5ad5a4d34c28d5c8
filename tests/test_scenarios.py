"""Each built-in scenario's observable facts on the real kernel: segments, results, states, counters.

These pin what Linux does; where the source document (or UNP) says otherwise, the course shows
both, and a change in the kernel's behaviour shows up here first.
"""

from __future__ import annotations

import pytest

import closekit


def flags_by(trace, side: str) -> list[str]:
    """tcpdump flags of the segments `side` sent after the handshake (data segments marked D)."""
    after_handshake = trace.segments()[3:]
    return [s.tcpdump_flags + ("D" if s.len else "") for s in after_handshake if s.src == side]


def results(trace, side: str, call: str) -> list:
    return [(e.errno or e.result) for e in trace.syscalls(side, call)]


EXPECTED = {
    # name: (client segments, server segments, client states, server states)
    "close-default": (["P.D", "F.", "."], [".", ".", "F."],
                      ["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"], ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]),
    "close-unread": (["P.D"], [".", "R."], ["ESTABLISHED", "CLOSED"], ["ESTABLISHED", "CLOSED"]),
    "close-shared": ([".", "F."], ["F.", "."], ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"],
                     ["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"]),
    "shutdown-wr": (["F.", ".", "."], [".", "P.D", "F."], ["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"],
                    ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]),
    "shutdown-rd": ([".", "F.", "."], ["P.D", ".", "F."], ["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"],
                    ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]),
    "shutdown-wr-rd": (["F.", ".", "R"], [".", "P.D", "P.D"], ["ESTABLISHED", "FIN_WAIT_2", "CLOSED"],
                       ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]),
    "shutdown-shared": (["."], ["F."], ["ESTABLISHED", "CLOSE_WAIT"], ["ESTABLISHED", "FIN_WAIT_2"]),
    "linger-zero": (["P.D", "R."], ["."], ["ESTABLISHED", "CLOSED"], ["ESTABLISHED", "CLOSED"]),
    "write-after-peer-close": ([".", "P.D"], ["F.", "R"], ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"],
                               ["ESTABLISHED", "FIN_WAIT_2", "CLOSED"]),
    "time-wait": (["F.", "."], [".", "F."], ["ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"],
                  ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]),
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


def test_parent_close_of_shared_descriptor_sends_nothing(live):
    trace = live("close-shared")
    parent_close = trace.syscalls("server", "close")[0]
    child_close = trace.syscalls("server-child", "close")[0]
    fin = trace.first("FIN", src="server")
    assert fin.t > child_close.t > parent_close.t
    assert results(trace, "client", "epoll_wait") == [["EPOLLOUT"], ["EPOLLIN", "EPOLLOUT", "EPOLLRDHUP"]]


def test_shutdown_ignores_the_descriptor_refcount(live):
    trace = live("shutdown-shared")
    assert trace.first("FIN", src="server").t > trace.syscalls("server", "shutdown")[0].t
    assert results(trace, "server-child", "send") == ["EPIPE"]
    assert trace.signals("server-child") == ["SIGPIPE"]


def test_linux_still_delivers_data_that_arrives_after_shut_rd(live):
    trace = live("shutdown-rd")
    assert results(trace, "client", "recv") == [0, 5]


def test_close_after_shut_rd_with_data_unread_aborts(live):
    trace = live("shutdown-wr-rd")
    assert trace.first("RST").src == "client"
    assert results(trace, "server", "send") == [5, 5, "EPIPE"]


def test_shut_rdwr_makes_reads_return_eof_and_writes_fail(live):
    trace = live("shutdown-rdwr")
    assert results(trace, "client", "recv") == [0]
    assert results(trace, "client", "send") == ["EPIPE"]


def test_linger_zero_aborts_with_rst_and_skips_time_wait(live):
    trace = live("linger-zero")
    assert not trace.sent("client", "FIN")
    assert trace.first("RST").src == "client"
    assert "TIME_WAIT" not in trace.states("client")
    assert results(trace, "server", "recv") == [13, "ECONNRESET"]
    assert trace.counter("TcpExt:TCPAbortOnData") == 1


def test_linger_timeout_blocks_for_the_linger_time_then_returns_zero(live):
    trace = live("linger-timeout")
    close = trace.syscalls("client", "close")[0]
    assert 0.9 < close.duration < 1.5
    assert close.result == 0 and close.errno is None  # Linux: no EWOULDBLOCK, no RST
    assert not trace.segments(flags="RST")
    assert results(trace, "server", "recv") == [20000]  # and the data still arrives afterwards
    assert "FIN_WAIT_1" in trace.states("client")


@pytest.mark.parametrize("name", ["linger-ack", "return-linger", "return-default"])
def test_close_returns_without_waiting_for_the_peer_application(live, name):
    trace = live(name)
    close = trace.syscalls("client", "close")[0]
    assert close.result == 0 and close.duration < 0.1
    server_read = trace.syscalls("server", "recv")[0]
    assert server_read.t > close.t + close.duration
    assert server_read.result == 1000


def test_shutdown_then_read_returns_when_the_server_has_closed(live):
    trace = live("return-shutdown-read")
    read = trace.syscalls("client", "recv")[0]
    server_close = trace.syscalls("server", "close")[0]
    assert read.result == 0
    assert read.duration > 0.25  # the server was busy for 0.3 s
    assert read.t + read.duration >= server_close.t


def test_million_bytes_loses_data_to_an_rst(live):
    trace = live("million-bytes")
    assert results(trace, "client", "send") == [1_000_000]
    (read,) = trace.syscalls("server", "recv")
    assert read.errno == "ECONNRESET"
    assert 0 <= read.result < 1_000_000
    assert trace.first("RST").src == "client"
    assert trace.counter("TcpExt:TCPAbortOnClose") == 1


def test_million_bytes_fixed_delivers_everything(live):
    trace = live("million-bytes-fixed")
    assert results(trace, "server", "recv") == [1_000_000]
    assert results(trace, "client", "recv") == [13]
    assert not trace.segments(flags="RST")


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
def test_every_scenario_runs_in_a_private_namespace_with_a_handshake(live, name):
    trace = live(name)
    assert trace.mode == "netns"
    assert [s.tcpdump_flags for s in trace.segments()[:3]] == ["S", "S.", "."]
    assert trace.counter("Tcp:ActiveOpens") == 1 and trace.counter("Tcp:PassiveOpens") == 1


@pytest.mark.parametrize("name", ["close-default", "close-unread", "linger-zero", "shutdown-wr"])
def test_a_scenario_gives_the_same_trace_on_every_run(live, name):
    first = live(name)
    for _ in range(3):
        assert closekit.run(name) == first
