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
    picture = render.sequence_diagram(trace)
    rst = re.findall(r'<g class="segment (\w+) delivered flags-ra">.*?stroke="([^"]+)"', picture.svg)
    assert rst == [("c2s", "#c0392b")]  # one RST, client -> server, drawn red
    assert "flags-f" not in picture.svg and "flags-fa" not in picture.svg
    assert re.search(r"^client ──R\. \S+ ack \d+──▶ server$", picture.text, flags=re.MULTILINE)
    assert "close() = 0" in picture.text and "ECONNRESET" in picture.text


def test_a_bulk_transfer_collapses_its_data_segments(live) -> None:
    trace = live["million-bytes-fixed"]
    picture = render.sequence_diagram(trace)
    assert picture.svg.count('class="bulk"') == 1
    assert "data/ACK segments" in picture.text and "1,000,000 bytes" in picture.text
    assert picture.svg.count('<g class="segment') < len(trace.segments()) / 2


def test_a_long_pause_is_a_break_and_a_blocked_call_a_bar(live) -> None:
    picture = render.sequence_diagram(live["return-shutdown-read"])
    assert "later ⋯</text>" in picture.svg  # the 0.3 s the server slept is a break
    assert "client ┃ recv(nbytes=65536) … blocks" in picture.text
    assert "client ┃ recv(nbytes=65536) = 0, returned after ≈ 0.3 s" in picture.text
    bars = [float(h) for h in re.findall(r'<rect class="blocked"[^>]*height="([\d.]+)"', picture.svg)]
    assert len(bars) == 1 and bars[0] > 40


@pytest.mark.parametrize("name", ["close-default", "linger-zero", "million-bytes"])
def test_same_trace_gives_byte_identical_pictures(name: str) -> None:
    a, b = recorded(name), closekit.Trace.from_json(recorded(name).to_json())
    assert render.sequence_diagram(a).svg == render.sequence_diagram(b).svg
    assert render.sequence_diagram(a).text == render.sequence_diagram(b).text
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


def test_missing_dot_says_how_to_install_and_still_says_what_it_draws(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    picture = render.state_diagram(recorded("linger-zero"), "client")
    with pytest.raises(closekit.CloseKitError, match="apt-get install graphviz"):
        render.to_svg(picture)
    assert picture.source.startswith("digraph")
    data, _ = picture._repr_mimebundle_()
    assert list(data) == ["text/plain"]
    assert (
        "apt-get install graphviz" in data["text/plain"] and "1. ESTABLISHED ──close, SO_LINGER 0" in data["text/plain"]
    )
    sequence, _ = render.sequence_diagram(recorded("linger-zero"))._repr_mimebundle_()
    assert "image/png" in sequence  # drawn here, in Python: no dot needed
