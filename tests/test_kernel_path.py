"""The kernel close-path graph: the branch lit from a trace's evidence, kallsyms marks, determinism."""

from __future__ import annotations

import re

import pytest

from closekit.close_outcome import close_outcome
from closekit.errors import CloseKitError
from closekit.render import kernel_path
from closekit.render.kernel import symbol_status


def _lit(source: str) -> set[str]:
    """Ids of the nodes drawn lit (filled, thick border) in a DOT source."""
    nodes = re.findall(r'^\t+(\S+) \[((?:[^\]"]|"[^"]*")*)\]', source, flags=re.MULTILINE)
    return {name.strip('"') for name, attrs in nodes if re.search(r"\bpenwidth=2\b", attrs)}


@pytest.mark.parametrize(
    ("scenario", "side", "branch", "lit", "dark"),
    [
        ("close-unread", None, "unread", {"rst_unread", "out_unread", "tcp_close"}, {"tcp_send_fin", "out_fin"}),
        ("linger-zero", None, "linger-zero", {"tcp_disconnect", "out_linger0"}, {"rst_unread"}),
        ("close-default", None, "fin", {"tcp_close_state", "tcp_send_fin", "out_fin"}, {"sk_stream_wait_close"}),
        ("close-shared", "server", "shared", {"last_ref", "out_shared"}, {"__fput", "tcp_close", "tcp_send_fin"}),
        ("close-shared", "server-child", "fin", {"__fput", "tcp_send_fin", "out_fin"}, {"out_shared"}),
        ("linger-timeout", None, "fin", {"tcp_send_fin", "sk_stream_wait_close", "out_wait"}, {"out_fin"}),
        ("close-shared", "server", "shared", {"fd", "flush", "put"}, {"sock_close"}),
        ("listener-close-queued", None, "listener", {"listening", "listen_stop", "out_listener"}, {"unread"}),
        ("close-syn-sent", None, "no-fin", {"listening", "tcp_close_state", "out_no_fin"}, {"tcp_send_fin"}),
        ("shutdown-wr-rd", None, "no-fin", {"sh_send_fin", "out_shut_wr", "out_shut_rd"}, {"tcp_send_fin"}),
    ],
    ids=[
        "unread-rst",
        "linger-zero-rst",
        "default-fin",
        "shared-parent-nothing",
        "shared-child-fin",
        "linger-wait",
        "shared-parent-vfs",
        "listener-resets-its-queue",
        "syn-sent-sends-nothing",
        "both-shutdowns",
    ],
)
def test_the_branch_lit_is_the_one_the_evidence_shows(live, scenario, side, branch, lit, dark) -> None:
    trace = live(scenario)
    outcome = close_outcome(trace, 0, side)
    assert outcome is not None and outcome.branch == branch
    source = kernel_path(trace, side=side).source
    drawn = _lit(source)
    assert lit <= drawn, f"not lit: {lit - drawn}"
    assert not dark & drawn, f"lit but should not be: {dark & drawn}"
    assert "close() by " in source
    assert "close() by " in kernel_path(trace, side=side).text


def test_close_with_unread_data_names_the_rst_and_the_counter(live) -> None:
    source = kernel_path(live("close-unread")).source
    assert "RST sent by server" in source and "TcpExt:TCPAbortOnClose +1" in source


def test_close_index_and_side_pick_the_close_drawn(live) -> None:
    trace = live("close-shared")
    with pytest.raises(CloseKitError, match="out of range"):
        kernel_path(trace, close_index=3)
    with pytest.raises(CloseKitError, match="no close"):
        kernel_path(trace, side="nobody")


def test_functions_are_marked_from_kallsyms(live) -> None:
    if symbol_status("tcp_close") == "unknown":
        pytest.skip("/proc/kallsyms is not readable here")
    assert symbol_status("tcp_close") == "present"
    assert symbol_status("closekit_no_such_kernel_function") == "absent"
    source = kernel_path(live("close-default")).source
    assert re.search(r'\ttcp_close \[label="tcp_close\(\)\n[^"]*" ', source)  # present: plain border
    assert "not in /proc/kallsyms of kernel" in source
    picture = kernel_path(live("close-default"))
    absent = [line for line in picture.text.splitlines() if line.startswith("kallsyms of this machine:")]
    assert len(absent) == 1


def test_same_trace_gives_byte_identical_dot(live) -> None:
    trace = live("linger-timeout")
    assert kernel_path(trace).source == kernel_path(trace).source
    assert kernel_path(trace).source == kernel_path(type(trace).from_json(trace.to_json())).source


def test_without_a_trace_nothing_is_lit() -> None:
    assert _lit(kernel_path().source) == set()


@pytest.mark.parametrize("name", ["shutdown-wr-rd", "listener-close-queued"])
def test_the_close_path_fits_a_column_without_shrinking(live, name) -> None:
    from closekit.render.picture import MAX_WIDTH

    picture = kernel_path(live(name), shutdown=True)
    assert picture.width <= MAX_WIDTH
    assert re.search(r'class="graph" transform="scale\(1 1\)', picture.svg), "laid out too wide: dot shrank it"
