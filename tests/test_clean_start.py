"""Sandboxed code starts with nothing of the notebook's (issue 20): not its environment block, not its
descriptors (a terminal, a log file), not its session keyring, not its controlling terminal, and it
can neither trace nor read the lab's other processes.

Each case was tried against the lab and got through, as root (experiments as nobody) and as an ordinary
uid. A "notebook" is started here as a process of its own, with a secret in its environment, a key in a
session keyring of its own, a terminal as its controlling terminal and stdin, and a 0600 log file as its
stderr; one experiment then runs attacks on all of it from a call() on the client. Each test runs as
root and again as an ordinary uid (setpriv), in a namespace mode and a host mode.
"""

from __future__ import annotations

import json
import os
import platform
import pty
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import closekit
from closekit.sandbox.jail import KEYCTL

pytestmark = pytest.mark.live

USER = 54321  # an ordinary uid, no account needed
SECRET = "closekit-notebook-secret-4711"
# add_key(2) and keyctl(2) by architecture (the same table as closekit.sandbox.jail.KEYCTL)
ADD_KEY = {"x86_64": 248, "aarch64": 217, "riscv64": 217, "armv7l": 309, "i686": 286, "ppc64le": 269, "s390x": 278}
KEY_SPEC_SESSION_KEYRING, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_SEARCH = -3, 1, 10

# Runs on the server first: where the client's attack finds the server's endpoint process.
TELL_PID = """
def tell_pid(sock):
    import os
    with open(PEER_FILE, "w") as f:
        f.write(str(os.getpid()))
    sock.send(b"x")
    return "told"
"""

# The attack, run on the client: every way issue 20 found into the notebook's belongings.
ATTACK = """
def attack(sock):
    import ctypes, errno, json, os
    libc = ctypes.CDLL(None, use_errno=True)

    def err():
        return errno.errorcode.get(ctypes.get_errno(), "?")

    out = {"dumpable": libc.prctl(3, 0, 0, 0, 0)}
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: makes /proc/self/environ readable to itself
    out["environ"] = open("/proc/self/environ", "rb").read().decode(errors="replace")
    out["fds"] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out["fds"][name] = [os.readlink("/proc/self/fd/" + name), os.isatty(int(name))]
        except OSError:
            pass  # the listing's own descriptor
    for fd in (0, 1, 2):  # what it did to a log file on stderr, and to a terminal
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            os.write(fd, b"owned by the sandbox")
        except OSError:
            pass
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
        out["tty"] = "opened"
    except OSError as e:
        out["tty"] = errno.errorcode[e.errno]
    found = libc.syscall(KEYCTL, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user", b"closekit-host-key", 0)
    out["host_key"] = "found" if found >= 0 else err()
    planted = libc.syscall(ADD_KEY, b"user", b"closekit-sandbox-key", b"planted", 7, KEY_SPEC_SESSION_KEYRING)
    out["planted"] = planted >= 0
    peer = int(open(PEER_FILE).read())
    helper = int(open("/proc/%d/stat" % os.getppid()).read().rsplit(")", 1)[1].split()[1])
    for who, pid in (("peer", peer), ("helper", helper)):
        if pid <= 1:
            out[who + "_environ"] = out[who + "_ptrace"] = "not visible"
            continue
        try:
            open("/proc/%d/environ" % pid, "rb").read()
            out[who + "_environ"] = "read"
        except OSError as e:
            out[who + "_environ"] = errno.errorcode[e.errno]
        attached = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
        out[who + "_ptrace"] = "attached" if attached == 0 else err()
        if attached == 0:
            libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return json.dumps(out)
"""

# The notebook: a secret in its environment, a key of its own, a terminal, a log file; one experiment.
NOTEBOOK = """
import ctypes, fcntl, json, os, sys, termios
import closekit
from closekit import steps as s
from closekit.sandbox.client import Lab
from closekit.scenario import Scenario
from closekit.steps import Call

libc = ctypes.CDLL(None, use_errno=True)
fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the terminal on stdin becomes the controlling terminal
assert libc.syscall(KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None) > 0  # a keyring of this test's own
assert libc.syscall(ADD_KEY, b"user", b"closekit-host-key", b"host", 4, KEY_SPEC_SESSION_KEYRING) > 0
assert libc.syscall(KEYCTL, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user", b"closekit-host-key", 0) > 0
os.environ["CLOSEKIT_TEST_TOKEN"] = SECRET
steps = (Call("server", source=TELL_PID, function="tell_pid"), s.wait_recv_queue("client", 1),
         Call("client", source=ATTACK, function="attack"))
lab = Lab(sandbox=MODE)
try:
    trace = closekit.run(Scenario("attack", "", steps=steps, time_limit=10), lab=lab)
finally:
    lab.close()
call = trace.syscalls("client", "call")[0]
seen = json.loads(call.result) if call.errno is None else {"failed": call.errno, "result": call.result}
left = libc.syscall(KEYCTL, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user", b"closekit-sandbox-key", 0)
seen["planted_seen_by_notebook"] = left > 0
seen["mode"] = trace.mode
print(json.dumps(seen))
"""


def _constants(**more: object) -> str:
    machine = platform.machine()
    values = {"KEYCTL": KEYCTL[machine], "ADD_KEY": ADD_KEY[machine],
              "KEY_SPEC_SESSION_KEYRING": KEY_SPEC_SESSION_KEYRING, "KEYCTL_SEARCH": KEYCTL_SEARCH,
              "KEYCTL_JOIN_SESSION_KEYRING": KEYCTL_JOIN_SESSION_KEYRING, **more}  # fmt: skip
    return "".join(f"{k} = {v!r}\n" for k, v in values.items())


def _python_for(uid: int) -> str | None:
    """A Python 3.11+ that `uid` may run and start again (the venv's may live in root's home)."""
    check = (
        "import subprocess, sys; assert sys.version_info >= (3, 11); subprocess.run([sys.executable, '-V'], check=True)"
    )
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        probe = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", candidate, "-c", check],
            capture_output=True, cwd="/",
        )  # fmt: skip
        if probe.returncode == 0:
            return candidate
    return None


def notebook(identity: str, mode: str, tmp: Path) -> tuple[dict, str]:
    """Run the notebook as `identity` ("root" or "user"); what the attack saw, and what its log holds."""
    if platform.machine() not in ADD_KEY:
        pytest.skip(f"no add_key(2) number known for {platform.machine()}")
    peer_file = f"/tmp/closekit-peer-{os.getpid()}-{identity}"
    constants = _constants(PEER_FILE=peer_file)
    code = (
        constants
        + f"SECRET = {SECRET!r}\nMODE = {mode!r}\n"
        + f"TELL_PID = {constants + TELL_PID!r}\nATTACK = {constants + ATTACK!r}\n"
        + textwrap.dedent(NOTEBOOK)
    )
    log = tmp / "notebook.log"
    log.write_text("the notebook's log\n")
    os.chmod(log, 0o600)
    primary, secondary = pty.openpty()
    env = {"PATH": "/usr/bin:/bin", "CLOSEKIT_TEST_TOKEN": SECRET, "PYTHONPATH": str(tmp)}
    command = [sys.executable, "-c", code]
    if identity == "user":
        python = _python_for(USER)
        if python is None:
            pytest.skip(f"no Python 3.11+ on this machine that uid {USER} may run")
        shutil.copytree(Path(closekit.__file__).parent, tmp / "closekit")
        for path in (tmp, *tmp.rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chown(log, USER, USER)
        os.chown(os.ttyname(secondary), USER, USER)
        command = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", python, "-c", code]
    else:
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(closekit.__file__))
    try:
        with open(log, "a") as stderr:
            out = subprocess.run(command, stdin=secondary, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                 cwd="/", start_new_session=True, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(secondary)
        os.close(primary)
        if os.path.exists(peer_file):
            os.unlink(peer_file)
    assert out.returncode == 0, log.read_text()[-3000:]
    return json.loads(out.stdout), log.read_text()


CASES = [("root", "netns"), ("root", "host"), ("user", "netns"), ("user", "host-nocapture")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{who}-{mode}" for who, mode in CASES])
def attacked(request):
    identity, mode = request.param
    if os.geteuid() != 0:
        pytest.skip("these tests switch identities as root (as an ordinary user, the 'user' cases are the same)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the notebook as an ordinary uid")
    if (identity, mode) == ("user", "netns"):
        request.getfixturevalue("tun_open_to_users")
    tmp = Path(tempfile.mkdtemp(prefix=f"closekit-clean-{identity}-"))  # pytest's own is root's alone
    try:
        os.chmod(tmp, 0o755)
        seen, log = notebook(identity, mode, tmp)
    finally:
        shutil.rmtree(tmp)
    assert seen.get("mode") == mode, seen
    assert "failed" not in seen, seen
    return seen, log


def test_the_environment_block_holds_nothing_of_the_notebooks_even_once_dumpable(attacked):
    seen, _log = attacked
    names = [entry.split("=", 1)[0] for entry in seen["environ"].split("\0") if entry]
    assert SECRET not in seen["environ"]
    assert set(names) <= {"PATH", "LANG", "PYTHONPATH", "CLOSEKIT_SANDBOX"}, names


def test_only_the_labs_channel_and_the_experiments_sockets_are_open(attacked):
    seen, _log = attacked
    fds = seen["fds"]
    assert [fds[str(n)][0] for n in (0, 1, 2)] == ["/dev/null"] * 3
    others = {target for n, (target, _tty) in fds.items() if int(n) > 2}
    assert all(target.startswith("socket:[") for target in others), fds
    assert not any(tty for _target, tty in fds.values())


def test_the_notebooks_log_on_stderr_is_untouched(attacked):
    _seen, log = attacked
    assert log.startswith("the notebook's log\n") and "owned by the sandbox" not in log


def test_there_is_no_controlling_terminal_to_open(attacked):
    seen, _log = attacked
    assert seen["tty"] in ("ENXIO", "ENOENT")  # no controlling terminal; no /dev/tty in the private root


def test_the_notebooks_session_keyring_is_out_of_reach_both_ways(attacked):
    seen, _log = attacked
    assert seen["host_key"] == "ENOKEY"
    assert seen["planted_seen_by_notebook"] is False


def test_the_process_starts_not_dumpable(attacked):
    seen, _log = attacked
    assert seen["dumpable"] == 0


def test_the_peer_endpoint_and_the_helper_can_be_neither_read_nor_traced(attacked):
    seen, _log = attacked
    assert seen["peer_environ"] in ("EACCES", "EPERM") and seen["peer_ptrace"] == "EPERM", seen
    assert seen["helper_environ"] in ("EACCES", "EPERM", "not visible"), seen
    assert seen["helper_ptrace"] in ("EPERM", "not visible"), seen


def test_a_lab_started_from_a_notebook_with_a_full_environment_passes_none_of_it(monkeypatch):
    """The same in this process's own lab (the default one a notebook uses)."""
    from closekit.sandbox.client import helper_environment

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    env = helper_environment(None)
    assert "JUPYTERHUB_API_TOKEN" not in env and set(env) <= {"PATH", "LANG", "PYTHONPATH", "CLOSEKIT_SANDBOX"}
