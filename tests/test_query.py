"""closekit.query on hand-built traces: the variants the diagrams and close_outcome ask for."""

from __future__ import annotations

from dataclasses import replace

from wire_traces import D, call, lingering_close, seg, state

from closekit import query as q
from closekit.trace import Event, Segment, Trace


def _trace(*events: Event) -> Trace:
    ordered = tuple(sorted(events, key=lambda e: e.t))
    return Trace("hand-built", "6.18.0", "netns", {}, ordered, processes={"client": "client", "server": "server"})


def _conn(s: Segment, conn: int) -> Segment:
    return replace(s, conn=conn)


def test_closing_the_listener_counts_as_a_close_only_when_asked() -> None:
    t = _trace(call(0.1, "server", "close", socket="listener"), call(0.2, "server", "close"))
    assert [c.t for c in q.calls(t, "server", "close")] == [0.2]
    assert [c.t for c in q.calls(t, "server", "close", listener=True)] == [0.1, 0.2]


def test_until_includes_its_end_and_before_does_not() -> None:
    t = lingering_close()
    fin = q.first(t, "FIN", "client")
    assert fin is not None
    assert q.first(t, "FIN", "client", before=fin.t) is None
    assert q.first(t, "FIN", "client", until=fin.t) is fin
    assert q.first(t, "FIN", "client", after=fin.t, until=fin.t) is fin


def test_arrived_places_segments_by_arrival_and_leaves_out_the_undelivered() -> None:
    t = lingering_close()
    dropped, resent = q.segments(t, "client", "FIN")[:2]
    assert dropped.arrived is None
    assert q.first(t, "FIN", "client", arrived=True) is resent
    assert q.first(t, "FIN", "client", after=resent.t + D / 2, arrived=True) is resent  # left before, arrived after
    assert q.first(t, "FIN", "client", after=resent.t + D / 2) is not resent


def test_the_ack_of_a_dropped_fin_is_the_ack_of_its_retransmission_only_when_asked() -> None:
    t = lingering_close()
    dropped = q.first(t, "FIN", "client")
    assert dropped is not None and dropped.arrived is None
    assert q.ack_of(t, dropped) is None
    ack = q.ack_of(t, dropped, resent=True)
    assert ack is not None and ack.src == "server" and ack.ack == q.seq_end(dropped)


def test_a_delivered_ack_skips_one_the_wire_dropped() -> None:
    fin = seg(0.10, "client", ("FIN", "ACK"), 1, 1)
    lost = seg(0.12, "server", ("ACK",), 1, 2, fate="dropped")
    again = seg(0.30, "server", ("ACK",), 1, 2)
    t = _trace(fin, lost, again)
    assert q.ack_of(t, fin) is lost
    assert q.ack_of(t, fin, delivered=True) is again


def test_unread_bytes_of_a_later_connection_do_not_count_reads_of_an_earlier_one() -> None:
    t = _trace(
        _conn(seg(0.00, "client", ("SYN",), 0, 0), 1),
        _conn(seg(0.01, "client", ("PSH", "ACK"), 1, 1, 100), 1),
        call(0.05, "server", "recv", result=100, nbytes=100),
        _conn(seg(1.00, "client", ("SYN",), 0, 0), 2),
        _conn(seg(1.01, "client", ("PSH", "ACK"), 1, 1, 100), 2),
        call(1.10, "server", "close"),
    )
    assert q.unread_at(t, "server", 0.5) == 0
    assert q.unread_at(t, "server", 1.10, conn=2) == 100


def test_a_linger_says_whether_close_resets_and_how_long_it_may_wait() -> None:
    t = _trace(
        call(0.1, "client", "setsockopt", option="SO_LINGER", l_onoff=1, l_linger=0),
        call(0.2, "client", "setsockopt", option="SO_LINGER", l_onoff=1, l_linger=3),
        call(0.3, "client", "setsockopt", option="SO_LINGER", l_onoff=0, l_linger=3),
        state(0.05, "client", "ESTABLISHED"),
    )
    zero, three, off = (q.linger_at(t, "client", when) for when in (0.1, 0.2, 0.3))
    assert zero is not None and zero.abortive and zero.timeout == 0
    assert three is not None and not three.abortive and three.timeout == 3
    assert off is not None and not off.abortive and off.timeout == 0
    assert q.origin(t) == 0.05 and q.origin(_trace()) == 0.0
