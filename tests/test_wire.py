"""The wire's link rules on socket pairs standing in for TUN devices: no namespaces, exact timing.

A TUN device hands over one IP packet per read and takes one per write, as a SOCK_SEQPACKET pair
does; so the relay can be driven here with hand-made IPv4/TCP packets and a clock of our own.
"""

from __future__ import annotations

import socket
import struct

import pytest
from wire_traces import seg

from closekit.errors import ScenarioError
from closekit.link import Link, Rule, copy, delay, drop, duplicate, hold
from closekit.sandbox.packets import Connections, Packet
from closekit.sandbox.wire import Wire
from closekit.trace import Segment, Trace

FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10}


def packet(flags: str, seq: int = 1000, payload: int = 0, sport: int = 40000, dport: int = 5000) -> bytes:
    bits = sum(FLAG_BITS[f] for f in flags.split("+"))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, bits, 65535, 0, 0) + b"x" * payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))  # fmt: skip
    return ip + tcp


class Bench:
    """A wire between two fake TUN devices; `send` puts a packet on the client's device."""

    def __init__(self, link: Link) -> None:
        self.client, self.client_tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server, self.server_tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (self.client_tun, self.server_tun, self.server):
            s.setblocking(False)
        self.wire = Wire(link, {"client": self.client_tun.fileno(), "server": self.server_tun.fileno()})
        self.conns = Connections()

    def send(self, raw: bytes, at: float) -> list[Packet]:
        self.client.send(raw)
        return self.wire.take("client", at, self.conns.classify)

    def delivered(self, at: float) -> list[Packet]:
        self.wire.deliver(at)
        got = []
        while True:
            try:
                got.append(self.server.recv(70000))
            except BlockingIOError:
                return got


def test_a_delay_holds_each_packet_for_its_time_and_keeps_their_order():
    bench = Bench(Link(delay=0.010))
    bench.send(packet("SYN"), at=0.0)
    bench.send(packet("ACK", seq=1001), at=0.001)
    assert bench.wire.in_flight == 2 and bench.wire.next_due() == pytest.approx(0.010)
    assert bench.delivered(at=0.0099) == []
    assert len(bench.delivered(at=0.0105)) == 1
    assert len(bench.delivered(at=0.011)) == 1
    first, second = bench.wire.packets
    assert (first.arrived, second.arrived) == (0.0105, 0.011) and bench.wire.in_flight == 0


class SentAt:
    """Stands in for the AF_PACKET tap: the sender's kernel sent every packet at `t`."""

    def __init__(self, t: float) -> None:
        self.t = t

    def drain(self) -> None:
        pass

    def sent(self, data: bytes, now: float) -> float:
        return self.t


def test_the_delay_runs_from_when_the_kernel_sent_a_packet_not_from_when_the_relay_read_it():
    bench = Bench(Link(delay=0.010))
    bench.wire.stamps["client"] = SentAt(0.002)  # the relay, kept from the CPU, reads it 6 ms late
    bench.send(packet("SYN"), at=0.008)
    assert bench.wire.next_due() == pytest.approx(0.012)
    bench.wire.stamps["client"] = SentAt(0.020)  # later than a whole delay: on its way at once
    bench.send(packet("ACK", seq=1001), at=0.040)
    assert bench.delivered(at=0.040) and [p.arrived for p in bench.wire.packets] == [0.040, 0.040]


def test_a_rate_queues_packets_behind_each_other():
    bench = Bench(Link(rate=8_000))  # 1000 bytes a second
    bench.send(packet("ACK", payload=960), at=0.0)  # 1000 bytes: one second on the link
    bench.send(packet("ACK", payload=960), at=0.0)
    assert bench.wire.next_due() == pytest.approx(1.0)
    assert len(bench.delivered(at=1.0)) == 1 and len(bench.delivered(at=1.5)) == 0
    assert len(bench.delivered(at=2.0)) == 1


def test_drop_acts_on_the_nth_match_only_and_count_none_on_every_later_one():
    once = Bench(Link(rules=(drop("client", "FIN", nth=2),)))
    for i in range(3):
        once.send(packet("FIN+ACK", seq=1000 + i), at=i)
    assert [p.fate for p in once.wire.packets] == ["delivered", "dropped", "delivered"]
    always = Bench(Link(rules=(drop("client", "FIN", count=None),)))
    for i in range(3):
        always.send(packet("FIN+ACK", seq=1000 + i), at=i)
    assert [p.fate for p in always.wire.packets] == ["dropped"] * 3
    assert always.delivered(at=10) == []


def test_rules_match_flags_data_and_excluded_flags():
    rule = drop("client", "ACK", data=False, without=("FIN",))
    assert rule.matches("client", ("ACK",), 0)
    assert not rule.matches("client", ("FIN", "ACK"), 0)
    assert not rule.matches("client", ("ACK",), 10)
    assert not rule.matches("server", ("ACK",), 0)


def test_hold_keeps_a_segment_until_release_and_copy_replays_an_old_duplicate():
    bench = Bench(Link(rules=(hold("client", "FIN"), copy("client", data=True))))
    bench.send(packet("ACK+PSH", payload=10), at=0.0)
    bench.send(packet("FIN+ACK", seq=1010), at=0.0)
    assert len(bench.delivered(at=0.0)) == 1  # the data went; its copy and the FIN wait
    assert bench.wire.release("client", 5.0) == 2
    assert len(bench.delivered(at=5.0)) == 2
    data, fin, twin = sorted(bench.wire.packets, key=lambda p: p.t)
    assert (data.fate, fin.fate, twin.fate) == ("delivered", "released", "duplicate")
    assert fin.arrived == 5.0 and twin.t == 5.0  # a copy leaves the wire when the wire injects it


def test_duplicate_and_delay_rules():
    bench = Bench(Link(rules=(duplicate("client", "SYN", after=0.5), delay("client", "ACK", seconds=0.2))))
    bench.send(packet("SYN"), at=0.0)
    bench.send(packet("ACK", seq=1001), at=0.0)
    assert len(bench.delivered(at=0.0)) == 1  # the SYN
    assert len(bench.delivered(at=0.2)) == 1  # the delayed ACK
    assert len(bench.delivered(at=0.5)) == 1  # the SYN's copy
    assert [p.fate for p in bench.wire.packets] == ["delivered", "duplicate", "delayed"]


def test_the_gate_holds_what_steps_started_at_once_send_until_it_opens():
    bench = Bench(Link())
    bench.wire.close_gate()
    bench.send(packet("FIN+ACK"), at=0.0)
    assert bench.wire.in_flight == 1 and bench.delivered(at=1.0) == []
    bench.wire.open_gate(2.0)
    assert len(bench.delivered(at=2.0)) == 1 and bench.wire.packets[0].arrived == 2.0


def test_a_second_syn_on_the_same_ports_with_a_new_sequence_number_is_a_new_connection():
    conns = Connections()
    first = Packet(0, "client", 40000, 5000, ("SYN",), 100, 0, 0, 0, None, b"")
    again = Packet(0, "client", 40000, 5000, ("SYN",), 100, 0, 0, 0, None, b"")  # a retransmission
    new = Packet(0, "client", 40000, 5000, ("SYN",), 9999, 0, 0, 0, None, b"")
    assert [conns.classify(p).number for p in (first, again, new)] == [1, 1, 2]
    assert conns.superseded == {1}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Rule("explode", "client"), "action 'explode' is not one of drop"),
        (lambda: drop("peer", "FIN"), "src is 'client' or 'server'"),
        (lambda: drop("client", "FIN", "FYN"), "distinct names from SYN"),
        (lambda: drop("client", "FIN", without=("FIN",)), "both require and exclude"),
        (lambda: delay("client", "FIN", seconds=0), "needs seconds > 0"),
        (lambda: Link(delay=10), "out of range"),
        (lambda: Link(rate=1), "link rate"),
        (lambda: Link(rules=("drop",)), "is not a link rule"),
    ],
)
def test_a_bad_link_is_refused_with_what_is_allowed(build, message):
    with pytest.raises(ScenarioError, match=message):
        build()


def test_a_link_says_itself_in_words_and_survives_a_round_trip_through_json():
    link = Link(delay=0.01, rules=(drop("client", "FIN"), copy("client", data=True, nth=2)))
    assert link.describe() == (
        "one-way delay 10 ms; drop the 1st FIN from the client; "
        "keep a copy of the 2nd data segment from the client for a release() step to replay"
    )
    assert Link.from_dict(link.to_dict()) == link


def _teardown(fin: str, *extra: Segment) -> Trace:
    """1000 bytes and a FIN (its fate `fin`), the peer's ACK of both, and `extra` segments."""
    data = seg(0.0, "client", ("PSH", "ACK"), 1, 1, length=1000)
    last = seg(0.010, "client", ("FIN", "ACK"), 1001, 1, fate=fin)
    events = [data, last, *extra, seg(0.300, "server", ("ACK",), 1, 1002)]
    return Trace("t", "6.18", "netns", {}, tuple(sorted(events, key=lambda e: e.t)))


def test_a_retransmission_of_what_had_arrived_is_left_out_of_trace_equality_but_not_one_of_what_was_lost():
    again = seg(0.250, "client", ("FIN", "PSH", "ACK"), 501, 1, length=500)  # a timer fired while the ACK was late
    assert _teardown("delivered", again) == _teardown("delivered")
    resent = seg(0.250, "client", ("FIN", "ACK"), 1001, 1)
    assert _teardown("dropped", resent) != _teardown("dropped")  # the resent FIN is the lesson
