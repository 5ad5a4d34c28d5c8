"""Diagrams drawn from traces: content of the DOT source, determinism, SVG output, live and recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import closekit
from closekit import render, tcp
from closekit.render.evidence import lit_path

FIXTURES = Path(__file__).parent / "fixtures"
LIVE = ("close-default", "close-unread", "linger-zero", "million-bytes", "million-bytes-fixed", "return-shutdown-read")


@pytest.fixture(scope="module")
def live() -> dict[str, closekit.Trace]:
    return {name: closekit.run(name) for name in LIVE}


def recorded(name: str) -> closekit.Trace:
    return closekit.Trace.from_json((FIXTURES / f"{name}.json").read_text())


def _lit_edges(source: str) -> list[str]:
    """Labels of lit edges, in the order their numbers say."""
    labels = re.findall(r'label="(\d+\. [^"]*)"', source)
    return sorted(labels, key=lambda label: int(label.split(".")[0]))


def test_plain_machine_has_every_state_and_transition() -> None:
    source = render.state_diagram().source
    for state in tcp.STATES:
        assert f"\t{state} [" in source
    for t in tcp.TRANSITIONS.values():
        assert t.event in source


@pytest.mark.parametrize("get", [recorded, None], ids=["recorded", "live"])
def test_close_default_client_path_is_lit_in_order(live, get) -> None:
    trace = get("close-default") if get else live["close-default"]
    source = render.state_diagram(trace, "client").source
    assert [label.split(" · ")[0] for label in _lit_edges(source)] == [
        "1. close",
        "2. rcv ACK of FIN",
        "3. rcv FIN",
    ]
    assert re.search(r"FIN_WAIT_1 \[label=\"FIN_WAIT_1\npassed through\)?", source) or "dashed" in source
    assert re.search(r"TIME_WAIT \[[^\]]*peripheries=2", source)


def test_linger_zero_client_path_is_an_abort(live) -> None:
    source = render.state_diagram(live["linger-zero"], "client").source
    assert [label.split(" · ")[0] for label in _lit_edges(source)] == ["1. close, SO_LINGER 0"]


def test_server_passes_last_ack_in_close_default(live) -> None:
    steps = lit_path(live["close-default"], "server")
    assert [(s.state, s.event, s.inferred) for s in steps] == [
        ("ESTABLISHED", None, False),
        ("CLOSE_WAIT", tcp.RCV_FIN, False),
        ("LAST_ACK", tcp.CLOSE, True),
        ("CLOSED", tcp.RCV_ACK_OF_FIN, False),
    ]


@pytest.mark.parametrize("get", [recorded, None], ids=["recorded", "live"])
def test_linger_zero_sequence_has_rst_from_client_and_no_fin(live, get) -> None:
    trace = get("linger-zero") if get else live["linger-zero"]
    source = render.sequence_diagram(trace).source
    rst = [line for line in source.splitlines() if 'label="R.' in line]
    assert len(rst) == 1 and "#c0392b" in rst[0] and "dir=forward" in rst[0]  # client -> server
    assert not [line for line in source.splitlines() if re.search(r'label="F', line)]
    assert "close() = 0" in source
    assert "ECONNRESET" in source


def test_a_bulk_transfer_collapses_its_data_segments(live) -> None:
    source = render.sequence_diagram(live["million-bytes-fixed"]).source
    assert "data/ACK segments" in source
    arrows = [line for line in source.splitlines() if " win " in line or "segments" in line]
    assert len(arrows) < len(live["million-bytes-fixed"].segments())


def test_long_pause_gets_a_row(live) -> None:
    source = render.sequence_diagram(live["return-shutdown-read"]).source
    assert re.search(r"⋮ \d+\.\d ms idle", source)
    assert "[blocked" in source  # the client's recv() waited for the server


@pytest.mark.parametrize("name", ["close-default", "linger-zero", "million-bytes"])
def test_same_trace_gives_byte_identical_dot(name: str) -> None:
    a, b = recorded(name), closekit.Trace.from_json(recorded(name).to_json())
    assert render.sequence_diagram(a).source == render.sequence_diagram(b).source
    assert render.state_diagram(a, "client").source == render.state_diagram(b, "client").source


def test_two_runs_draw_the_same_state_diagram_but_for_times() -> None:
    mask = re.compile(r"\d+\.\d ms")
    first, second = (render.state_diagram(closekit.run("linger-zero"), "server").source for _ in range(2))
    assert mask.sub("T", first) == mask.sub("T", second)


def test_write_diagrams_writes_svg(tmp_path: Path) -> None:
    paths = render.write_diagrams(recorded("close-default"), tmp_path)
    assert sorted(p.name for p in paths) == [
        "close-default-kernel-path.svg",
        "close-default-sequence.svg",
        "close-default-states-client.svg",
        "close-default-states-server.svg",
    ]
    assert all(p.read_text().lstrip().startswith("<?xml") for p in paths)
    assert "tcp_send_fin" in (tmp_path / "close-default-kernel-path.svg").read_text()


def test_missing_dot_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    graph = render.state_diagram()
    with pytest.raises(closekit.CloseKitError, match="apt-get install graphviz"):
        render.to_svg(graph)
    assert graph.source.startswith("digraph")
