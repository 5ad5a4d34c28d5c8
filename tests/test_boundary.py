"""The sandbox is a boundary: each attack a student's function (or a scenario) could try, and what stops it.

Every case here was tried against an earlier lab and got through (issue 12). A function run with
closekit.steps.call runs inside an endpoint process; it may write anything to any descriptor it
holds, fork, change its session, ignore signals, read and write files. At worst it makes its own
experiment's trace wrong; it must never run code in the helper or the notebook, outlive its
experiment, see the user's files, or keep the next experiment from working.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import closekit
from closekit import steps as s
from closekit.sandbox.client import Lab
from closekit.scenario import Scenario
from closekit.settings import Settings
from closekit.steps import Call

pytestmark = pytest.mark.live


def function(body: str, name: str = "attack") -> Call:
    """A call step on the client running `body` (the function's source, indented as a body)."""
    source = f"def {name}(sock):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return Call("client", source=source, function=name)


def run(*steps, time_limit: float = 5.0, lab: Lab | None = None) -> closekit.Trace:
    return closekit.run(Scenario("attack", "", steps=tuple(steps), time_limit=time_limit), lab=lab)


def result(trace: closekit.Trace):
    return trace.syscalls("client", "call")[0].result


@pytest.fixture
def lab():
    lab = Lab()
    yield lab
    lab.close()


def clean(lab: Lab) -> None:
    """Nothing is left of the experiments: below the helper only the reaper (and, after an experiment
    that ran only the lab's own code, the two endpoint processes it keeps idle), no zombie."""
    stats = lab.stats()
    assert stats["processes"] in (1, 3) and stats["zombies"] == 0, stats


# ---- data across the boundary --------------------------------------------------------------------
FIND_CHANNEL = """
import os, socket
channel = None
for name in os.listdir('/proc/self/fd'):
    try:
        s = socket.socket(fileno=os.dup(int(name)))
    except OSError:
        continue
    if s.type == socket.SOCK_SEQPACKET:
        channel = s
        break
"""


def test_a_pickle_written_to_the_labs_channel_is_refused_as_data_and_never_loaded(tmp_path, lab):
    marker = tmp_path / "pwned"
    body = (
        FIND_CHANNEL
        + f"""
import pickle
class Evil:
    def __reduce__(self):
        return (open, ({str(marker)!r}, 'w'))
channel.send(pickle.dumps(Evil()))
return 'sent'
"""
    )
    with pytest.raises(closekit.ExperimentError, match="not a JSON message"):
        run(function(body), lab=lab)
    assert not marker.exists()
    clean(lab)
    assert closekit.run("close-unread", lab=lab).first("RST").src == "server"


def forged_call(**changed: object) -> dict:
    """A "done" reply whose one syscall record is well formed but for `changed`."""
    record = {"kind": "syscall", "call": "close", "args": {}, "result": 0, "errno": None, "t": 0, "duration": 0,
              "slept": False, "queued": None, "delayed": None}  # fmt: skip
    return {"kind": "done", "records": [{**record, **changed}]}


@pytest.mark.parametrize(
    ("forged", "message"),
    [
        (forged_call(call="rm -rf /"), "unknown call"),
        (forged_call(slept="maybe"), "slept must be true or false"),
        (forged_call(slept=None), "whether it slept"),
        (forged_call(duration=0.01, slept=True, queued=5.0), "impossible time waiting for a CPU"),
        ({"kind": "done", "records": "everything"}, "without a list"),
        ({"kind": "__import__('os').system('id')"}, "no known kind"),
        ({"kind": "limit", "message": "words of its own"}, "limit message of no known form"),
        ({"kind": "limit", "limit": "rm -rf /", "function": None, "length": None}, "limit message of no known form"),
        ({"kind": "done", "records": [{"kind": "signal", "t": 1e300, "signal": "SIGPIPE"}]}, "time outside"),
    ],
)
def test_forged_records_are_checked_against_the_schema(forged, message, lab):
    body = FIND_CHANNEL + f"channel.send({json.dumps(json.dumps(forged))}.encode())\nreturn 'sent'\n"
    with pytest.raises(closekit.ExperimentError, match=message):
        run(function(body), lab=lab)
    clean(lab)


def test_an_oversized_message_is_named_as_such():
    body = FIND_CHANNEL + "channel.send(b'[' * 100_000)\nreturn 'sent'\n"
    with pytest.raises(closekit.ExperimentError, match="message larger than 64 KiB"):
        run(function(body))


def test_a_str_subclass_with_reduce_comes_back_as_a_plain_str(tmp_path):
    marker = tmp_path / "pwned"
    body = f"""
class Sneaky(str):
    def __reduce__(self):
        return (open, ({str(marker)!r}, 'w'))
return Sneaky('just text')
"""
    trace = run(function(body))
    assert result(trace) == "just text" and type(result(trace)) is str
    assert not marker.exists()


def test_a_result_too_large_is_a_named_limit_not_a_dead_process():
    with pytest.raises(closekit.ExperimentError, match="returned 300000 characters; a result may have at most 4096"):
        run(function("return 'x' * 300_000"))


# ---- teardown nobody escapes ----------------------------------------------------------------------
ESCAPE = """
import os, signal, time
for signum in (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(signum, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.setpgid(0, 0)
        while True:
            time.sleep(1)
    os._exit(0)
"""


def test_a_setsid_grandchild_ignoring_signals_does_not_outlive_its_experiment(lab):
    trace = run(function(ESCAPE + "return 'escaped?'"), lab=lab)
    assert result(trace) == "escaped?"
    clean(lab)


def test_a_function_that_hides_in_its_own_process_group_still_ends_on_time(lab):
    body = ESCAPE + "os.setpgid(0, 0)\nwhile True:\n    time.sleep(1)\n"
    started = time.monotonic()
    with pytest.raises(closekit.ExperimentError, match=r"time limit of 1 s"):
        run(function(body), time_limit=1.0, lab=lab)
    assert time.monotonic() - started < 3
    clean(lab)


def test_processes_forked_and_never_waited_for_leave_no_zombie(lab):
    body = "import os\nfor _ in range(12):\n    if os.fork() == 0:\n        os._exit(0)\nreturn 'forked'\n"
    for _ in range(5):
        assert result(run(function(body), lab=lab)) == "forked"
    clean(lab)


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (one whose parent died waits for the host's init to
    reap it, however slow that init is: it runs nothing and holds nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killing_the_notebook_leaves_nothing_behind_within_a_second():
    code = (
        "import closekit, os, signal, sys, threading, textwrap\n"
        "from closekit.scenario import Scenario\nfrom closekit.steps import Call\n"
        "from closekit import steps as s\n"
        "lab = closekit.lab(); lab.mode\n"
        "print(lab.info['pid'], lab.info['reaper'], flush=True)\n"
        f"body = {ESCAPE!r} + 'while True:\\n    time.sleep(1)\\n'\n"
        "source = 'def attack(sock):\\n' + textwrap.indent(body, '    ')\n"
        "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()\n"
        "closekit.run(Scenario('x', '', steps=(Call('client', source=source, function='attack'),), time_limit=30))\n"
    )
    notebook = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    helper, reaper = map(int, notebook.stdout.readline().split())
    namespace = _pid_namespace(reaper)
    assert namespace is not None
    notebook.wait(timeout=30)
    deadline = time.monotonic() + 1.0
    while True:
        left = [
            p for p in os.listdir("/proc") if p.isdigit() and _pid_namespace(int(p)) == namespace and _running(int(p))
        ]
        helper_alive = _running(helper)
        if (not left and not helper_alive) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert left == [] and not helper_alive


# ---- a private view of the machine ----------------------------------------------------------------
def test_the_users_files_and_secrets_are_not_there(tmp_path):
    (tmp_path / "notebook-secret").write_text("token")
    repository_file = Path(__file__).resolve().parents[1] / "pyproject.toml"
    body = f"""
import os
found = []
for path in ('/etc/shadow', '/etc/passwd', {str(tmp_path / "notebook-secret")!r}, {str(repository_file)!r}):
    try:
        open(path).read()
        found.append(path)
    except OSError:
        pass
for home in ('/root', '/home'):
    if os.path.isdir(home):
        found += [os.path.join(home, n) for n in os.listdir(home) if n != '.pyenv']  # the Python install only
return ','.join(found) or 'nothing'
"""
    assert result(run(function(body))) == "nothing"


def test_the_environment_of_the_notebook_is_not_passed_on(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    lab = Lab()
    try:
        trace = run(function("import os\nreturn repr(sorted(os.environ))"), lab=lab)
    finally:
        lab.close()
    assert "JUPYTERHUB_API_TOKEN" not in result(trace)


def test_a_host_unix_socket_is_out_of_reach(tmp_path):
    path = tmp_path / "host.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    body = f"""
import socket
try:
    socket.socket(socket.AF_UNIX).connect({str(path)!r})
except OSError as e:
    return type(e).__name__
return 'connected'
"""
    try:
        assert result(run(function(body))) == "FileNotFoundError"
    finally:
        listener.close()


def test_only_tmp_is_writable_and_it_starts_empty_every_time(lab):
    body = """
import os
try:
    open('/usr/closekit-was-here', 'w')
    outside = 'wrote outside /tmp'
except OSError as e:
    outside = type(e).__name__
before = sorted(os.listdir('/tmp'))
open('/tmp/mine', 'w').write('x')
return f"{outside} {before} {sorted(os.listdir('/tmp'))}"
"""
    first, second = result(run(function(body), lab=lab)), result(run(function(body), lab=lab))
    assert first == second == "OSError [] ['mine']" or first == second == "PermissionError [] ['mine']"


def test_only_the_experiments_own_processes_are_visible():
    body = "import os\nreturn len([p for p in os.listdir('/proc') if p.isdigit()])"
    assert result(run(function(body))) <= 4  # the reaper, the two endpoints, and maybe a /proc listing race


def test_a_function_cannot_make_namespaces_of_its_own():
    body = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
results = []
for flag in (0x10000000, 0x40000000, 0x00020000):  # user, net, mount
    results.append('made' if libc.unshare(flag) == 0 else os.strerror(ctypes.get_errno()))
return ','.join(results)
"""
    assert "made" not in result(run(function(body)))


# ---- limits, each named when it is hit ------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(30)\n",
            "hit the experiment's process limit",
        ),
        (
            "blocks = []\nwhile True:\n    blocks.append(bytearray(32 << 20))\n",
            "ran out of the memory a process of the experiment may use",
        ),
        (
            "for i in range(100):\n    open(f'/tmp/f{i}', 'wb').write(bytes(1 << 20))\n",
            "filled the experiment's private /tmp",
        ),
        ("open('/tmp/big', 'wb').write(bytes(8 << 20))\n", "wrote a file larger than a process of the experiment may"),
    ],
    ids=["processes", "memory", "disk", "file-size"],
)
def test_each_limit_ends_the_experiment_with_an_error_naming_it(body, message, lab):
    with pytest.raises(closekit.ExperimentError, match=message):
        run(function(body), lab=lab)
    clean(lab)
    assert closekit.run("close-unread", lab=lab).first("RST").src == "server"


# ---- memory, bounded ------------------------------------------------------------------------------
def one_byte_writer(sock):
    import socket

    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        sock.send(b"x")


def reader(sock):
    while sock.recv(65536):
        pass
    return "read"


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


@pytest.mark.parametrize("mode", ["netns", "host"])
def test_a_stream_of_one_byte_segments_is_stopped_at_the_stated_count_before_the_helper_grows(mode):
    """Unbounded, 25 s of this grew the helper to 1 GB before the notebook refused the trace."""
    from closekit.sandbox.protocol import MAX_SEGMENTS

    lab = Lab(sandbox=mode)
    steps = (s.call("client", one_byte_writer), s.call("server", reader))
    flood = Scenario("flood", "", steps=(*steps, s.wait_done("client")), sync_timeout=30, time_limit=30)
    try:
        with pytest.raises(closekit.ExperimentError) as caught:
            closekit.run(flood, lab=lab)
        peak = _peak_kib(lab.pid)
        clean(lab)
        assert closekit.run("close-unread", lab=lab).first("RST").src == "server"
    finally:
        lab.close()
    assert str(caught.value) == (
        f"the experiment put more than {MAX_SEGMENTS:,} segments on the wire, more than a trace may hold; it was "
        "stopped (send fewer, larger writes)"
    )
    assert peak < 256 * 1024  # KiB: what README's containment section states, with room


def udp_flood(sock):
    import socket
    import time

    peer = sock.getpeername()[0]
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            flood.sendto(b"x" * 1400, (peer, 9))
        except OSError:
            pass
    return "flooded"


def test_a_udp_flood_across_the_wire_does_not_grow_the_helper(lab):
    """The relay reads in bounded batches: unbounded, a sender as fast as the reader kept one read going,
    and the tap's copies of the packets the device dropped piled up (the helper peaked at 223 MB)."""
    trace = run(s.call("client", udp_flood), lab=lab)
    assert result(trace) == "flooded"
    assert _peak_kib(lab.pid) < 96 * 1024


def test_a_frame_too_large_is_refused_before_anything_is_written():
    import io

    from closekit.errors import ProtocolError
    from closekit.sandbox.protocol import MAX_FRAME, write_frame

    stream = io.BytesIO()
    with pytest.raises(ProtocolError, match=f"over the limit of {MAX_FRAME}"):
        write_frame(stream, "x" * MAX_FRAME)
    assert stream.getvalue() == b""


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("net.ipv4.tcp_rmem", "4096 131072 9999999999", "out of range: allowed 1 to 8388608, in rising order"),
        ("net.ipv4.tcp_wmem", "4194304 16384 4096", "out of range: allowed 1 to 8388608, in rising order"),
        ("net.ipv4.tcp_wmem", "4096 16384", "the value is three whole numbers"),
        ("net.ipv4.tcp_fin_timeout", "5 5", "the value is one whole number from 1 to 600"),
        ("net.core.somaxconn", "1000000", "out of range: allowed 0 to 4096"),
    ],
)
def test_settings_that_would_pin_host_memory_or_keep_orphans_long_are_refused(name, value, message):
    with pytest.raises(closekit.ScenarioError, match=message):
        Settings(sysctls={name: value})


def test_the_largest_buffers_a_scenario_may_give_are_what_the_kernel_then_uses():
    big = Settings(sysctls={"net.ipv4.tcp_rmem": "4096 8388608 8388608"})
    scenario = Scenario("big-buffer", "", settings=big, steps=(s.getsockopt("server", "SO_RCVBUF"),))
    assert closekit.run(scenario).syscalls("server", "getsockopt")[0].result == 8388608


# ---- clear errors ---------------------------------------------------------------------------------
KILL_THE_PEER = """
import os, signal
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) not in (1, os.getpid()):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
return 'done'
"""


def test_a_killed_endpoint_is_named_with_how_it_died():
    with pytest.raises(closekit.ExperimentError, match=r"the server process was killed by SIGKILL while running recv"):
        run(function(KILL_THE_PEER), s.recv("server"))


def test_a_helper_killed_mid_experiment_is_reported_and_the_next_run_works(lab):
    import threading

    closekit.run("close-default", lab=lab)
    threading.Timer(0.5, lambda: os.kill(lab.pid, signal.SIGKILL)).start()
    with pytest.raises(closekit.ExperimentError, match=r"helper process ended \(killed by SIGKILL\)"):
        run(s.sleep("server", 2), lab=lab)
    assert closekit.run("close-default", lab=lab).states("client")[-1] == "TIME_WAIT"


def test_a_helper_that_died_between_runs_is_replaced_quietly(lab):
    closekit.run("close-default", lab=lab)
    os.kill(lab.pid, signal.SIGKILL)
    os.waitid(os.P_PID, lab.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: as the next cell finds it
    assert closekit.run("close-default", lab=lab).states("client")[-1] == "TIME_WAIT"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: closekit.steps.send.__mro__[1]("client"), "not a step"),
        (lambda: None, "no steps"),
        (lambda: "options", "options must be closekit.Options"),
        (lambda: type("MySend", (closekit.steps.send,), {})("client", 1), "not a step"),
        (lambda: s.at_once(s.close("client"), s.at_once(s.close("server"), s.recv("client"))), "cannot be nested"),
    ],
    ids=["Step", "steps-None", "options-dict", "subclass", "nested"],
)
def test_malformed_scenarios_get_one_clear_line(build, message):
    with pytest.raises(closekit.ScenarioError, match=message):
        made = build()
        if made == "options":
            Scenario("x", "", steps=(s.close("client"),), options={})  # type: ignore[arg-type]
        elif made is None:
            Scenario("x", "", steps=None)  # type: ignore[arg-type]
        else:
            Scenario("x", "", steps=(made,))


def test_a_scenario_changed_behind_its_validation_is_checked_again():
    scenario = Scenario("x", "", steps=(s.sleep("client", 1),))
    object.__setattr__(scenario, "time_limit", 0.5)
    with pytest.raises(closekit.ScenarioError, match=r"sleeps 1 s but the scenario's time_limit is 0\.5 s"):
        closekit.run(scenario)


def test_the_helper_checks_a_scenario_again_whatever_the_notebook_sent(lab):
    assert lab.mode == "netns"
    data = Scenario("x", "", steps=(s.close("client"),)).to_dict()
    data["steps"][0]["side"] = "nobody"
    with pytest.raises(closekit.ScenarioError, match="unknown side 'nobody'"):
        lab._ask({"op": "run", "scenario": data})


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "closekit", *args], capture_output=True, text=True, timeout=60,
                          **kwargs)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "close-default", "--pcap", "/nonexistent/dir/x.pcap"), "directory /nonexistent/dir does not exist"),
        (("run", "close-default", "--pcap", "/tmp"), "/tmp is a directory"),
        (("run", "close-nothing"), "no built-in scenario called 'close-nothing'"),
    ],
)
def test_the_cli_refuses_bad_arguments_before_running_anything(args, message):
    out = _cli(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"closekit: {out.stderr.strip().removeprefix('closekit: ')}"]
    assert message in out.stderr and "Traceback" not in out.stderr


def test_the_cli_refuses_an_svg_directory_that_is_a_file(tmp_path):
    existing = tmp_path / "file"
    existing.write_text("")
    out = _cli("run", "close-default", "--svg", str(existing))
    assert out.returncode == 2 and "exists and is not a directory" in out.stderr


def test_the_cli_says_when_it_cannot_write_its_output():
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "closekit", "list"], stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and out.stderr.strip() == "closekit: could not write the output: No space left on device"


def test_the_cli_stops_quietly_when_its_reader_goes():
    out = subprocess.run(f"{sys.executable} -m closekit list | true", shell=True, capture_output=True, text=True)
    assert out.stderr == ""


def test_doctor_fails_when_the_lab_cannot_start():
    out = _cli("doctor", env={**os.environ, "CLOSEKIT_SANDBOX": "nonsense"})
    assert out.returncode == 2
    assert "CLOSEKIT_SANDBOX='nonsense' is not one of auto, netns" in out.stdout


def test_mode_specific_refusals_say_what_is_missing():
    mine = Scenario("mine", "", steps=(s.close("client"),), link=closekit.link.Link(delay=0.01))
    lab = Lab(sandbox="host")
    try:
        with pytest.raises(closekit.NotHereError, match=r"needs the lab's wire \(one-way delay 10 ms\)"):
            closekit.run(mine, lab=lab)
        recorded = closekit.run("return-linger", lab=lab)
    finally:
        lab.close()
    assert recorded.recorded.startswith("recorded on Linux") and "this machine runs mode host" in recorded.notice


def test_a_sync_point_on_segments_is_refused_where_nothing_is_captured():
    mine = Scenario("mine", "", steps=(s.close("client"), s.wait_segment("client", ("FIN",))))
    lab = Lab(sandbox="host-nocapture")
    try:
        with pytest.raises(closekit.NotHereError, match=r"wait_segment\(\) sync point"):
            closekit.run(mine, lab=lab)
    finally:
        lab.close()
    assert not mine.missing_in("host") and not mine.missing_in("netns")


def test_a_recorded_trace_is_what_the_kernel_gives_today():
    from closekit.recorded import load, recordable

    for name, scenario in closekit.scenarios().items():
        if recordable(scenario):
            recorded = load(name, "test")
            assert recorded is not None, f"no recording of {name}: run python -m closekit.recorded"
            assert closekit.run(name) == recorded, f"{name} no longer runs as recorded: python -m closekit.recorded"
