"""The lab as a user meets it: own scenarios, exports, fallback modes, errors, recovery."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt
import pytest
from conftest import last_run

import closekit
from closekit import steps as s
from closekit.sandbox.client import RUN_LOG_ENV, Lab
from closekit.trace import Trace

pytestmark = pytest.mark.live


def own_scenario(**kw) -> closekit.Scenario:
    return closekit.Scenario(
        "my-abort", "server aborts a connection with unread data",
        steps=(s.send("client", 3), s.wait_recv_queue("server", 3), s.close("server"), s.recv("client")), **kw,
    )  # fmt: skip


def test_a_scenario_written_in_a_cell_runs_like_a_built_in_one():
    trace = closekit.run(own_scenario())
    assert trace.scenario == "my-abort"
    assert trace.first("RST").src == "server"
    assert trace.syscalls("client", "recv")[0].errno == "ECONNRESET"


def test_json_round_trip_keeps_every_event(live):
    trace = live("linger-zero")
    again = Trace.from_json(trace.to_json())
    assert again == trace
    data = trace.to_dict()
    assert set(data) >= {"scenario", "kernel", "mode", "counters", "events"}
    kinds = {e["kind"] for e in data["events"]}
    assert kinds == {"syscall", "segment", "state", "wait"}
    rst = next(e for e in data["events"] if e["kind"] == "segment" and "RST" in e["flags"])
    assert rst["src"] == "client" and set(rst) >= {"t", "flags", "seq", "ack", "len", "win"}


def test_with_a_run_log_each_trace_is_kept_and_the_last_one_is_shown_timed(tmp_path, monkeypatch):
    """The live lane shows beside a notebook's cell whose output differed the timed transcript of the last run its
    kernel made (tests/conftest.py): a rare story is then told with every segment, timer and delay."""
    monkeypatch.setenv(RUN_LOG_ENV, str(tmp_path))
    closekit.run("close-default")
    trace = closekit.run("close-unread")
    (log,) = tmp_path.glob("*.jsonl")
    assert log.name == f"{os.getpid()}.jsonl" and len(log.read_text().splitlines()) == 2
    assert last_run(str(tmp_path)) == trace.transcript()
    assert "ms" in trace.transcript() and "RST" in trace.transcript()


def test_pcap_export_reads_back_with_dpkt_and_tcpdump(live, tmp_path):
    trace = live("close-unread")
    path = tmp_path / "out.pcap"
    assert trace.to_pcap(str(path)) == len(trace.segments())
    with open(path, "rb") as f:
        packets = list(dpkt.pcap.Reader(f))
    flags = [dpkt.ip.IP(buf).data.flags for _ts, buf in packets]
    assert len(packets) == len(trace.segments())
    assert flags[-1] & dpkt.tcp.TH_RST  # the decoder and dpkt agree on the last segment
    ours = [seg.has("RST") for seg in trace.segments()]
    assert ours == [bool(f & dpkt.tcp.TH_RST) for f in flags]
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (the README's test command installs it as root)")
    out = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True, check=True).stdout
    assert out.count("Flags [R.]") == 1 and out.count("Flags [S]") == 1


def test_text_and_html_transcripts_show_what_happened(live):
    trace = live("linger-zero")
    text = trace.transcript()
    assert "setsockopt(SO_LINGER, {onoff=1, linger=0}) = 0" in text
    assert "client > server   > R." in text
    assert "recv(nbytes=65536) = -1 ECONNRESET" in text
    html = trace._repr_html_()
    assert 'class="rst"' in html and "ECONNRESET" in html and "⚠" not in html


@pytest.mark.parametrize("mode", ["host", "host-nocapture"])
def test_fallback_modes_run_on_the_host_and_say_so(mode):
    lab = Lab(sandbox=mode)
    try:
        trace = closekit.run("close-unread", lab=lab)
    finally:
        lab.close()
    assert trace.mode == mode
    assert trace.notice and "Fallback mode" in trace.notice
    assert "⚠" in trace._repr_html_() and "NOTE:" in trace.transcript()
    assert trace.counters == {}
    assert trace.syscalls("client", "recv")[0].errno == "ECONNRESET"
    assert trace.states("server") == ["ESTABLISHED", "CLOSED"]
    if mode == "host":
        assert trace.first("RST").src == "server"
    else:
        assert trace.segments() == [] and "segments on the wire" in trace.unobserved[0]


def test_a_runs_counters_are_its_own_not_the_clean_up_of_the_last():
    """The counters a run starts from are read once the lab has cleaned up after the last run, while the notebook
    reads its trace. That run left its sockets open and ending them sent RSTs: they are not the next run's."""
    leftover = closekit.run("descriptors-never-closed")
    assert leftover.states("client")[-1] != "CLOSED"  # (still open when the run ended)
    counters = closekit.run("close-default").counters
    assert "Tcp:OutRsts" not in counters and counters["Tcp:ActiveOpens"] == 1, counters


def test_unknown_scenario_name_lists_the_names():
    with pytest.raises(closekit.UnknownScenarioError, match="the names are: close-default, close-unread"):
        closekit.run("close-nonexistent")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: closekit.Scenario("x", "", steps=()), "has no steps"),
        (lambda: closekit.Scenario("x", "", steps=(s.send("client", -1),)), r"nbytes=-1 is out of range"),
        (lambda: closekit.Scenario("x", "", steps=(s.send("cleint", 1),)), "unknown side 'cleint'"),
        (lambda: closekit.Scenario("x", "", steps=(s.shutdown("client", "SHUT_BOTH"),)), "is not one of SHUT_RD"),
        (
            lambda: closekit.Scenario("x", "", steps=(s.close("client"), s.linger("client", 0))),
            "it closed its descriptor",
        ),
        (lambda: closekit.Scenario("x", "", steps=(s.wait_done("client"),)), "has no line before this one"),
        (lambda: closekit.Scenario("x", "", steps=(s.wait_state("client", "DONE"),)), "is not one of CLOSED, LISTEN"),
        (lambda: closekit.Scenario("x", "", steps=("close",)), "not a step"),
        (lambda: closekit.Scenario("x", "", steps=(s.sleep("server", -2),)), "out of range"),
    ],
)
def test_invalid_scenarios_are_rejected_before_anything_runs(build, message):
    with pytest.raises(closekit.ScenarioError, match=message):
        build()


def test_a_sync_point_never_met_times_out_with_what_was_seen_and_the_lab_recovers():
    never = closekit.Scenario(
        "never", "waits for bytes that are never sent",
        steps=(s.send("client", 2), s.wait_recv_queue("server", 10)), sync_timeout=0.2,
    )  # fmt: skip
    with pytest.raises(closekit.SyncTimeoutError, match="receive queue held 2"):
        closekit.run(never)
    assert closekit.run("close-unread").first("RST") is not None


def test_a_step_that_runs_past_the_time_limit_is_stopped():
    slow = closekit.Scenario("slow", "", steps=(s.recv("client"),), time_limit=0.5)  # nothing is ever sent
    started = time.monotonic()
    with pytest.raises(closekit.ExperimentError, match=r"time limit of 0\.5 s"):
        closekit.run(slow)
    assert time.monotonic() - started < 2
    assert closekit.run("close-default").states("client")[-1] == "TIME_WAIT"


def test_a_killed_helper_is_reported_and_replaced():
    lab = Lab()
    try:
        closekit.run("close-default", lab=lab)
        os.kill(lab.pid, signal.SIGKILL)
        with pytest.raises(closekit.ExperimentError, match="helper process"):
            closekit.run("close-default", lab=lab)
        assert closekit.run("close-default", lab=lab).mode == "netns"
    finally:
        lab.close()


def test_an_interrupted_experiment_leaves_no_process_behind():
    code = (
        "import closekit, signal, threading, os\n"
        "from closekit import steps as s\n"
        "lab = closekit.lab()\n"
        "threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    closekit.run(closekit.Scenario('long', '', steps=(s.sleep('server', 5),)))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', lab.pid)\n"
        "print(closekit.run('close-unread').first('RST').src)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.split("\n")[:2] == ["interrupted None", "server"], out.stderr
    leftovers = subprocess.run(["pgrep", "-f", "closekit.sandbox.helper"], capture_output=True, text=True).stdout
    mine = [pid for pid in leftovers.split() if _parent(int(pid)) == os.getpid()]
    assert mine == [] or closekit.lab().pid in map(int, mine)


@pytest.mark.parametrize("written", ["half", "all"])
def test_a_request_interrupted_in_the_writing_leaves_the_next_experiment_its_own_answer(monkeypatch, written):
    """Ctrl-C while the request is being written (half of it sent) or just after it (all sent, the answer not
    read): the helper is stopped then, or the next request would garble it or get this one's answer."""
    from closekit.sandbox import client

    lab = Lab()
    try:
        closekit.run("close-default", lab=lab)
        real_write = client.write_frame

        def interrupted(stream, request):
            if written == "all":
                real_write(stream, request)
            else:
                stream.write(b"\0\0\1\0{")  # a frame's length (256 bytes) and the first of them
                stream.flush()
            raise KeyboardInterrupt

        monkeypatch.setattr(client, "write_frame", interrupted)
        with pytest.raises(KeyboardInterrupt):
            closekit.run("close-default", lab=lab)
        assert lab.pid is None
        monkeypatch.setattr(client, "write_frame", real_write)
        trace = closekit.run("close-unread", lab=lab)
        assert trace.scenario == "close-unread" and trace.first("RST").src == "server"
    finally:
        lab.close()


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _python_for_nobody() -> str | None:
    """A Python 3.11+ that user nobody may run and start again (a venv's may live in root's home)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        check = (
            "import subprocess, sys; assert sys.version_info >= (3, 11); "
            "subprocess.run([sys.executable, '-V'], check=True)"
        )
        probe = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", candidate, "-c", check],
            capture_output=True,
            cwd="/",
        )
        if probe.returncode == 0:
            return candidate
    return None


def test_the_lab_works_for_an_unprivileged_user(tun_open_to_users):
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: every other test here covers it")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop privileges")
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python 3.11+ on this machine that an unprivileged user may run")
    readable = tempfile.mkdtemp(prefix="closekit-nobody-")
    try:
        os.chmod(readable, 0o755)
        shutil.copytree(Path(closekit.__file__).parent, Path(readable) / "closekit")
        code = (
            "import closekit; t = closekit.run('close-unread'); w = closekit.run('fin-lost'); "
            "print(t.mode, t.first('RST').src, t.counters['TcpExt:TCPAbortOnClose'], "
            "[s.fate for s in w.segments(src='client', flags='FIN')], w.recorded or 'live')"
        )
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", code],
            capture_output=True, text=True, timeout=60, cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": readable},
        )  # fmt: skip
    finally:
        shutil.rmtree(readable)
    assert out.stdout.strip() == "netns server 1 ['dropped', 'delivered'] live", out.stderr


def test_cli_lists_runs_and_exports(tmp_path):
    cli = [sys.executable, "-m", "closekit"]
    listing = subprocess.run([*cli, "list"], capture_output=True, text=True, check=True).stdout
    assert listing.splitlines()[0].startswith("close-default")
    assert len(listing.splitlines()) == len(closekit.scenarios())
    pcap = tmp_path / "lz.pcap"
    run = subprocess.run([*cli, "run", "linger-zero", "--json", "--pcap", str(pcap)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert Trace.from_json(run.stdout).first("RST").src == "client"
    assert pcap.stat().st_size > 24
    bad = subprocess.run([*cli, "run", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "the names are:" in bad.stderr and "Traceback" not in bad.stderr


def test_doctor_reports_namespaces_capture_and_mode():
    out = subprocess.run([sys.executable, "-m", "closekit", "doctor"], capture_output=True, text=True, check=True)
    assert "ok  user + network namespaces: yes" in out.stdout
    assert "experiments will run in mode: netns" in out.stdout
    assert os.uname().release in out.stdout


def graceful_close(sock):
    sock.sendall(b"x" * 100_000)
    sock.shutdown(1)
    while sock.recv(65536):
        pass
    sock.close()
    return "done"


def loops_forever(sock):
    while True:
        pass


def gives_up(sock):
    raise ValueError("no idea")


def exits(sock):
    import os

    os._exit(3)


def test_your_own_function_runs_in_the_sandbox_on_the_live_socket():
    scenario = closekit.Scenario(
        "mine",
        "",
        steps=(
            s.send("server", 13),
            s.wait_recv_queue("client", 13),
            s.call("client", graceful_close),
            s.read_to_eof("server"),
            s.close("server"),
            s.wait_done("client"),
        ),
    )
    trace = closekit.run(scenario)
    (called,) = trace.syscalls("client", "call")
    assert called.result == "done" and called.args == {"function": "graceful_close"}
    assert trace.syscalls("server", "recv")[0].result == 100_000
    assert not trace.segments(flags="RST")


def test_an_exception_in_your_function_is_its_result_and_the_lab_goes_on():
    trace = closekit.run(closekit.Scenario("raises", "", steps=(s.call("client", gives_up),)))
    assert trace.syscalls("client", "call")[0].result == "raised ValueError: no idea"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (loops_forever, r"time limit of 0\.5 s \(still running: client: call"),
        (exits, r"the client process exited with status 3 while running call\('client'"),
    ],
)
def test_a_function_that_hangs_or_exits_is_stopped_with_a_clear_error(function, message):
    scenario = closekit.Scenario("bad", "", steps=(s.call("client", function),), time_limit=0.5)
    with pytest.raises(closekit.ExperimentError, match=message):
        closekit.run(scenario)
    assert closekit.run("close-unread").first("RST").src == "server"


def test_a_function_with_the_wrong_signature_is_rejected_before_running():
    def two(sock, extra):
        return 0

    with pytest.raises(closekit.ScenarioError, match="must take exactly one argument"):
        closekit.Scenario("x", "", steps=(s.call("client", two),))
    with pytest.raises(closekit.ScenarioError, match="needs a function"):
        s.call("client", print)
