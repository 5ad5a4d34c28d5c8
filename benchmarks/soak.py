"""Soak the lab: hundreds of runs in each mode, a hostile student's attacks, fuzzed scenarios; count what is left.

    python benchmarks/soak.py [--runs 500] [--fuzz 300] [--modes netns,netns-loopback,host,host-nocapture]
                              [--identity both|root|user|self]

Prints, per mode: runs and differing runs, then what is left below the helper afterwards (processes,
zombies, fds, threads, TCP sockets in the kept namespaces, namespaces replaced: all must be as before),
the attacks tried and how many were contained, and fuzz cases that escaped as anything but a closekit
error. An attack is contained when it got nothing it was after (an error naming a limit is fine) and the
lab is healthy after it (the next experiment works, nothing of the attack is left). What the README's
containment section states the host modes cannot keep from a student (the host's processes, disk and
sockets) counts as not contained there.
Run as root, `--identity both` (the default) runs every mode again as an ordinary uid (setpriv, a copy
of closekit readable by it; mode host needs CAP_NET_RAW and is skipped there), and ends with the table
of both. Not part of the test run.

The attacks of issue 20 play a hostile student on a shared hub: the "notebook" (this process) holds a
secret in its environment and a key in its session keyring, and each attack goes after them, after the
lab's other processes, after the grade, after the host's memory and after the next experiment.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import closekit
from closekit import steps as s
from closekit.sandbox.client import Lab
from closekit.scenario import Scenario
from closekit.steps import STEP_TYPES, Call

FAST = ["close-default", "close-unread", "linger-zero", "close-shared", "write-after-peer-close", "simultaneous-close",
        "listener-close-queued", "rst-before-accept", "shutdown-wr", "old-duplicate"]  # fmt: skip
NAMESPACES = ("netns", "netns-loopback")
SECRET = "closekit-soak-secret-4711"
SCRATCH = f"/tmp/closekit-soak-{os.getpid()}"  # a file name the experiment's two processes share (in /tmp)
USER = 54321  # the ordinary uid of the second pass (no account needed)
PEAK = 256 * 1024  # KiB: the helper's memory an attack may leave as its high-water mark (README: ~200 MB)
ADD_KEY = {"x86_64": 248, "aarch64": 217, "riscv64": 217, "armv7l": 309, "i686": 286, "ppc64le": 269, "s390x": 278}
_libc = ctypes.CDLL(None, use_errno=True)

# ---- the first round's attacks (issue 12): a client function, and what a contained outcome looks like ----
ATTACKS = {
    "forged pickle frame": (
        "import os, pickle, socket\n"
        "for n in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        c = socket.socket(fileno=os.dup(int(n)))\n"
        "    except OSError:\n"
        "        continue\n"
        "    if c.type == socket.SOCK_SEQPACKET:\n"
        "        c.send(pickle.dumps(os.system))\n"
        "return 'sent'",
        "any",  # contained: nothing crossing the boundary is unpickled (the lab stays healthy), or no pickle at all
    ),
    "setsid grandchild ignoring signals": (
        "import os, signal, time\n"
        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            time.sleep(1)\n"
        "    os._exit(0)\n"
        "return 'forked'",
        "ok",
    ),
    "fork bomb": ("import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(30)", "error"),
    "memory hog": ("b = []\nwhile True:\n    b.append(bytearray(32 << 20))", "error"),
    "disk filler": ("for i in range(100):\n    open(f'/tmp/f{i}', 'wb').write(bytes(1 << 20))", "error"),
    "read /etc/shadow": ("return open('/etc/shadow').read()[:10]", "errno"),
    "kill everything visible": (
        "import os, signal\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit() and int(p) != os.getpid():\n"
        "        try:\n"
        "            os.kill(int(p), signal.SIGKILL)\n"
        "        except OSError:\n"
        "            pass\n"
        "return 'killed'",
        "any",
    ),
    "zombie factory": (
        "import os\nfor _ in range(50):\n    if os.fork() == 0:\n        os._exit(0)\nreturn 'ok'",
        "error",  # zombies count as processes: the limit stops the 17th
    ),
    "huge result": ("return 'x' * 1_000_000", "error"),
    "never returns": ("import time\nwhile True:\n    time.sleep(1)", "error"),
}
# Not contained in the host modes, by the README's table (the host's processes can be signalled), and not
# run there: it would kill every process of the sandbox's uid on this machine, the notebook's included.
NOT_RUN_ON_THE_HOST = {"kill everything visible": "the host's processes of the same uid can be signalled"}


def sandboxed(lab: Lab, body: str, before: tuple = (), time_limit: float = 5.0) -> object:
    """Run `body` as a client function (after `before`); its result, or '-1 ERRNO' if it raised one."""
    source = "def attack(sock):\n" + textwrap.indent(body, "    ") + "\n"
    steps = (*before, Call("client", source=source, function="attack"))
    call = closekit.run(Scenario("attack", "", steps=steps, time_limit=time_limit), lab=lab).syscalls("client", "call")[
        -1
    ]
    return call.result if call.errno is None else f"-1 {call.errno}"


def first_round(body: str, expected: str) -> Callable[[Lab], str | None]:
    def check(lab: Lab) -> str | None:
        try:
            result = sandboxed(lab, body, time_limit=2)
        except closekit.CloseKitError as e:
            why = None if expected in ("error", "any") else f"refused: {e}"
        else:
            ok = expected in ("ok", "any") or (expected == "errno" and str(result).startswith("-1 "))
            why = None if ok else f"returned {str(result)[:80]!r}"
        left = _left_in_host_tmp()
        return left or why

    return check


def _left_in_host_tmp() -> str | None:
    """In the host modes the disk is the host's (README): what an attack left in its /tmp, then removed."""
    left = [path for path in (Path(f"/tmp/f{i}") for i in range(100)) if path.is_file()]
    for path in left:
        with contextlib.suppress(OSError):
            path.unlink()
    return f"left {len(left)} files of 1 MiB in the host's /tmp" if left else None


# ---- issue 20: a clean start -------------------------------------------------------------------
def environment_block(lab: Lab) -> str | None:
    body = (
        "import ctypes\nctypes.CDLL(None).prctl(4, 1, 0, 0, 0)\n"
        f"return {SECRET!r} in open('/proc/self/environ', errors='replace').read()"
    )
    return None if sandboxed(lab, body) is False else "the notebook's environment block was read"


def descriptors(lab: Lab) -> str | None:
    body = textwrap.dedent("""
        import json, os
        seen = {}
        for n in os.listdir('/proc/self/fd'):
            try:
                seen[n] = (os.readlink('/proc/self/fd/' + n), os.isatty(int(n)))
            except OSError:
                pass
        try:
            os.close(os.open('/dev/tty', os.O_RDWR))
            seen['tty'] = 'opened'
        except OSError:
            pass
        return json.dumps(seen)
    """)
    seen = json.loads(str(sandboxed(lab, body)))
    bad = [f"{n}: {v}" for n, v in seen.items() if n == "tty" or v[1] or (int(n) <= 2 and v[0] != "/dev/null")]
    bad += [f"{n}: {v[0]}" for n, v in seen.items() if n != "tty" and int(n) > 2 and not v[0].startswith("socket:")]
    return "; ".join(bad) or None


def keyring(lab: Lab) -> str | None:
    keyctl, add_key = _key_calls()
    body = textwrap.dedent(f"""
        import ctypes
        libc = ctypes.CDLL(None)
        found = libc.syscall({keyctl}, 10, -3, b"user", b"closekit-soak-host-key", 0)
        libc.syscall({add_key}, b"user", b"closekit-soak-planted", b"x", 1, -3)
        return found
    """)
    found = sandboxed(lab, body)
    planted = _libc.syscall(keyctl, 10, -3, b"user", b"closekit-soak-planted", 0)
    if isinstance(found, int) and found > 0:
        return "read the notebook's key"
    return "planted a key the notebook then found" if planted > 0 else None


TELL_PID = f"SCRATCH = {SCRATCH!r}\n" + textwrap.dedent("""
    def tell(sock):
        import os
        open(SCRATCH + '-peer', 'w').write(str(os.getpid()))
        sock.send(b'x')
        return 'told'
""")


def traced(lab: Lab) -> str | None:
    body = f"SCRATCH = {SCRATCH!r}\n" + textwrap.dedent("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        peer = int(open(SCRATCH + '-peer').read())
        helper = int(open('/proc/%d/stat' % os.getppid()).read().rsplit(')', 1)[1].split()[1])
        got = []
        for pid in (peer, helper):
            if pid <= 1:
                continue
            try:
                open('/proc/%d/environ' % pid, 'rb').read()
                got.append('read %d' % pid)
            except OSError:
                pass
            if libc.ptrace(16, pid, None, None) == 0:
                libc.ptrace(17, pid, None, None)
                got.append('traced %d' % pid)
        return ' '.join(got) or 'nothing'
    """)
    before = (Call("server", source=TELL_PID, function="tell"), s.wait_recv_queue("client", 1))
    result = sandboxed(lab, body, before=before)
    return None if result == "nothing" else str(result)


# ---- issue 20: forged records ------------------------------------------------------------------
FORGERIES_FILE = Path(__file__).resolve().parent.parent / "tests" / "forgeries.py"
sys.path.insert(0, str(FORGERIES_FILE.parent))
from forgeries import FORGERIES  # noqa: E402  (the same forgeries tests/test_forgery.py proves forge)


def forgery(question: str) -> Callable[[Lab], str | None]:
    def check(lab: Lab) -> str | None:
        from closekit.exercises import WriteScenario, catalog
        from closekit.sandbox import client

        previous, client._default = client._default, lab  # the exercises run on the lab of this mode
        try:
            exercise = getattr(catalog, question)()
            plain = exercise.check(FORGERIES[question])
            allowing = WriteScenario(exercise.task, exercise.requirements, allow_calls=True).check(FORGERIES[question])
        finally:
            client._default = previous
        return "graded correct" if plain.passed or allowing.passed else None

    return check


PATCHED = (
    "import closekit.exercises.results as r\nr.PredictionResult.correct = property(lambda self: True)\nq1.answer('B')"
)


def regraded(course: Path) -> Callable[[Lab], str | None]:
    """An answer cell that patches the result classes in its kernel, then a wrong answer: regraded."""

    def check(lab: Lab) -> str | None:
        from closekit.exercises.regrade import regrade
        from closekit.sandbox import client

        nb = json.loads((course / "student" / "ex02-shutdown" / "ex02-shutdown.ipynb").read_text())
        for cell in nb["cells"]:
            if cell["metadata"].get("nbgrader", {}).get("grade_id") == "q1-answer":
                cell["source"] = PATCHED
        with tempfile.TemporaryDirectory() as tmp:
            submitted = Path(tmp) / "ex02-shutdown" / "ex02-shutdown.ipynb"
            submitted.parent.mkdir()
            submitted.write_text(json.dumps(nb))
            previous, client._default = client._default, lab
            try:
                result = regrade(course / "solutions" / "ex02-shutdown" / "ex02-shutdown.ipynb", submitted)
            finally:
                client._default = previous
        return "the patched wrong answer scored" if result.points else None

    return check


# ---- issue 20: what outlives an experiment -----------------------------------------------------
LISTEN = f"SCRATCH = {SCRATCH!r}\n" + textwrap.dedent("""
    def listen(sock):
        import builtins, socket
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind((sock.getsockname()[0], 0))
        listener.listen(1)
        builtins.kept = listener
        open(SCRATCH + '-port', 'w').write(str(listener.getsockname()[1]))
        return 'listening'
""")
ORPHAN = f"SCRATCH = {SCRATCH!r}\n" + textwrap.dedent("""
    def orphan(sock):
        import socket
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        c.connect((sock.getpeername()[0], int(open(SCRATCH + '-port').read())))
        c.setblocking(False)
        try:
            while True:
                c.send(b'x' * 65536)
        except BlockingIOError:
            pass
        c.close()
        return 'left'
""")
FLOOD = f"SCRATCH = {SCRATCH!r}\n" + textwrap.dedent("""
    def flood(sock):
        import socket
        listener = socket.socket()
        listener.bind(('127.0.0.1', 0))
        listener.listen(64)
        open(SCRATCH + '-port', 'w').write(str(listener.getsockname()[1]))
        for _ in range(5000):
            c = socket.socket()  # not create_connection(): its name lookup imports a codec lazily, which a
            c.connect(listener.getsockname())  # sandbox on the host may not read (root's Python, as nobody)
            accepted, _ = listener.accept()
            c.close()
            accepted.close()
        return 'flooded'
""")


def _left_on_the_host(port: int) -> int:
    """Sockets of the host's loopback on `port` (the host modes: the lab does not end them)."""
    from closekit.sandbox.diag import Diag

    diag = Diag()
    try:
        found = [f for f in diag.dump(socket.AF_INET) if port in (f.local[1], f.remote[1])]
        if os.geteuid() == 0:
            for f in found:  # clean up after the measurement, so that the next attack starts afresh
                diag.destroy_found(f)
        return len(found)
    finally:
        diag.close()


def outlived(lab: Lab, steps: tuple) -> str | None:
    """What of the experiment's sockets is left after it: in the kept namespaces (the namespace modes), or
    on the host's loopback, found by the port the attack wrote down (the host modes)."""
    renewed = lab.stats()["renewed"]
    try:
        closekit.run(Scenario("leftover", "", steps=steps, time_limit=10), lab=lab)
    except closekit.ExperimentError as e:  # on a loopback the capture may drop a flood's segments
        if "capture dropped" not in str(e):
            raise
    stats = lab.stats()
    if lab.mode in NAMESPACES:
        left = stats["sockets"] + stats["renewed"] - renewed
    else:
        left = _left_on_the_host(int(Path(SCRATCH + "-port").read_text()))
    return f"{left} socket(s) outlived it" if left else None


def orphan(lab: Lab) -> str | None:
    steps = (Call("client", source=LISTEN, function="listen"), Call("server", source=ORPHAN, function="orphan"))
    return outlived(lab, steps)


def time_wait_flood(lab: Lab) -> str | None:
    steps = (Call("client", source=FLOOD, function="flood"),)
    return outlived(lab, steps)


# ---- issue 20: memory --------------------------------------------------------------------------
def _peak(lab: Lab) -> int:
    with open(f"/proc/{lab.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def socket_memory(_lab: Lab) -> str | None:
    try:
        closekit.settings.Settings(sysctls={"net.ipv4.tcp_rmem": "4096 131072 9999999999"})
    except closekit.ScenarioError:
        return None
    return "a 10-digit tcp_rmem was accepted"


def one_byte_stream(lab: Lab) -> str | None:
    writer = (
        "import socket\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\nwhile True:\n    sock.send(b'x')"
    )
    reader = "def read(sock):\n    while sock.recv(65536):\n        pass\n    return 'read'\n"
    source = "def attack(sock):\n" + textwrap.indent(writer, "    ") + "\n"
    steps = (Call("client", source=source, function="attack"),
             Call("server", source=reader, function="read"), s.wait_done("client"))  # fmt: skip
    try:
        closekit.run(Scenario("stream", "", steps=steps, sync_timeout=6, time_limit=6), lab=lab)
    except closekit.CloseKitError:
        pass
    else:
        return "an endless stream ran to its end"
    return f"the helper peaked at {_peak(lab) >> 10} MB" if _peak(lab) > PEAK else None


def udp_flood(lab: Lab) -> str | None:
    body = textwrap.dedent("""
        import socket, time
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                flood.sendto(b'x' * 1400, (sock.getpeername()[0], 9))
            except OSError:
                pass
        return 'flooded'
    """)
    try:
        sandboxed(lab, body)
    except closekit.ExperimentError as e:  # on a loopback the capture sees the flood too: the trace is refused
        if "capture dropped" not in str(e):
            raise
    return f"the helper peaked at {_peak(lab) >> 10} MB" if _peak(lab) > PEAK else None


# ---- issue 20: bad input, one line each ---------------------------------------------------------
def _trace(**changed: object) -> dict:
    event = {"kind": "syscall", "t": 0, "side": "client", "call": "close", "args": {}, "result": 0, "errno": None,
             "duration": 0, **changed}  # fmt: skip
    return {"scenario": "x", "kernel": "k", "mode": "netns", "counters": {}, "events": [event],
            "processes": {"client": "client", "server": "server"}}  # fmt: skip


BAD_INPUTS: dict[str, Callable[[], object]] = {
    'setsockopt("client", [], 1)': lambda: Scenario("x", "", steps=(s.setsockopt("client", [], 1),)),
    'Trace.from_json("{bad")': lambda: closekit.Trace.from_json("{bad"),
    "100k nested [": lambda: closekit.Trace.from_json("[" * 100_000),
    "a 5,000-digit int": lambda: closekit.Trace.from_json("1" * 5000),
    "an event whose kind is []": lambda: closekit.Trace.from_dict(_trace(kind=[])),
    "a syscall side not among the processes": lambda: closekit.Trace.from_dict(_trace(side="ghost")),
    "a description over 1,000 characters": lambda: Scenario("x", "d" * 1001, steps=(s.close("client"),)),
}


def bad_input(make: Callable[[], object]) -> Callable[[Lab], str | None]:
    def check(_lab: Lab) -> str | None:
        try:
            make()
        except closekit.CloseKitError as e:
            return None if "\n" not in str(e) else "more than one line"
        except Exception as e:
            return f"raised {type(e).__name__}"
        return "accepted"

    return check


def lab_port(port: str) -> Callable[[Lab], str | None]:
    def check(_lab: Lab) -> str | None:
        done = subprocess.run([sys.executable, "-m", "closekit", "lab", "--no-browser", "--port", port],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        ok = done.returncode == 2 and done.stderr.count("\n") == 1 and "1 to 65535" in done.stderr
        return None if ok else f"exit {done.returncode}: {done.stderr.strip()[:80]}"

    return check


def attacks(course: Path) -> dict[str, Callable[[Lab], str | None]]:
    """Every attack, by name: a check returning None when contained, else what got through."""
    found: dict[str, Callable[[Lab], str | None]] = {
        what: first_round(body, expected) for what, (body, expected) in ATTACKS.items()
    }
    found |= {
        "the notebook's environment block, once dumpable": environment_block,
        "the notebook's stderr and terminal": descriptors,
        "the notebook's session keyring": keyring,
        "the peer endpoint and the helper: read, traced": traced,
        **{f"forged records: {q}": forgery(q) for q in FORGERIES},
        "answer cell patching the result classes (regraded)": regraded(course),
        "orphan in FIN_WAIT_1 from a function's own connection": orphan,
        "TIME_WAIT flood (5,000 loopback connections)": time_wait_flood,
        "10-digit tcp_rmem": socket_memory,
        "an endless stream of 1-byte segments": one_byte_stream,
        "UDP flood across the wire": udp_flood,
        **{f"bad input: {what}": bad_input(make) for what, make in BAD_INPUTS.items()},
        "bad input: closekit lab --port -5": lab_port("-5"),
        "bad input: closekit lab --port 99999999": lab_port("99999999"),
    }
    return found


def healthy(lab: Lab, renewed: int) -> str | None:
    """The lab after an attack: the next experiment works, and nothing of the attack is left."""
    if lab.mode != "host-nocapture" and closekit.run("close-unread", lab=lab).first("RST") is None:
        return "the next experiment did not work"
    stats = lab.stats()
    if stats["zombies"] or stats["processes"] not in (1, 3) or stats["sockets"] or stats["renewed"] != renewed:
        return f"left {stats}"
    return None


def run_attacks(lab: Lab, course: Path) -> tuple[int, list[str]]:
    tried, escaped = 0, []
    for what, check in attacks(course).items():
        tried += 1
        if lab.mode.startswith("host") and what in NOT_RUN_ON_THE_HOST:
            escaped.append(what)
            print(f"  NOT contained: {what} (not run: {NOT_RUN_ON_THE_HOST[what]})", flush=True)
            continue
        renewed = lab.stats()["renewed"]
        try:
            why = check(lab)
        except Exception as e:  # an attack that broke the measurement counts as not contained
            why = f"{type(e).__name__}: {str(e)[:100]}"
        finally:
            for leftover in (SCRATCH + "-peer", SCRATCH + "-port"):  # in the host modes, in the host's /tmp
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
        why = why or healthy(lab, renewed)
        if why:
            escaped.append(what)
            print(f"  NOT contained: {what} ({why})", flush=True)
    return tried, escaped


def counts(lab: Lab) -> dict[str, int]:
    stats = lab.stats()
    return {
        **stats,
        "parent fds": len(os.listdir("/proc/self/fd")),
        "parent threads": len(os.listdir("/proc/self/task")),
    }


def soak(lab: Lab, runs: int) -> tuple[int, int]:
    total = differing = 0
    for name in FAST:
        if runs < len(FAST):
            break
        try:
            first = closekit.run(name, lab=lab)
        except closekit.NotHereError:
            continue
        bad = sum(closekit.run(name, lab=lab) != first for _ in range(runs // len(FAST)))
        total, differing = total + runs // len(FAST), differing + bad
    return total, differing


def fuzz(lab: Lab, cases: int) -> tuple[int, int]:
    """Random step lists: each must run or fail with a closekit error, never anything else."""
    rng = random.Random(1)
    odd = [-5, 0, 1, 7, 10**9, 0.5, "x", None, "SHUT_WR", "TIME_WAIT", ("FIN",), []]
    tried = escaped = 0
    for _ in range(cases):
        steps = []
        for _ in range(rng.randint(1, 4)):
            cls = rng.choice(list(STEP_TYPES.values()))
            fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("side", "background")]
            kwargs = {f: rng.choice(odd) for f in fields if rng.random() < 0.5}
            steps.append(cls(rng.choice(["client", "server", "ghost"]), **kwargs))
        tried += 1
        try:
            closekit.run(Scenario("fuzz", "", steps=tuple(steps), sync_timeout=0.1, time_limit=0.5), lab=lab)
        except closekit.CloseKitError:
            pass
        except Exception as e:
            escaped += 1
            print(f"  escaped: {type(e).__name__}: {e}")
    return tried, escaped


# ---- the notebook's belongings, and the second identity ----------------------------------------
def _key_calls() -> tuple[int, int]:
    from closekit.sandbox.jail import KEYCTL

    return KEYCTL[platform.machine()], ADD_KEY[platform.machine()]


def belongings() -> None:
    """What the attacks go after: a secret in this process's environment (before any lab starts) and a
    key in a session keyring of its own (joined here, so the machine's keyring is left alone)."""
    os.environ["CLOSEKIT_SOAK_TOKEN"] = SECRET
    keyctl, add_key = _key_calls()
    _libc.syscall(keyctl, 1, None)
    _libc.syscall(add_key, b"user", b"closekit-soak-host-key", b"host", 4, -3)


def as_user(args: argparse.Namespace) -> list[dict]:
    """Run the same soak as an ordinary uid (setpriv), from a copy of closekit it may read."""
    modes = ",".join(m for m in args.modes.split(",") if m != "host")  # host needs CAP_NET_RAW
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    with tempfile.TemporaryDirectory(prefix="closekit-soak-") as tmp:
        root = Path(tmp)
        shutil.copytree(Path(closekit.__file__).parent, root / "closekit")
        for source, target in ((Path(__file__), "benchmarks"), (FORGERIES_FILE, "tests")):  # (as laid out here)
            (root / target).mkdir()
            shutil.copy(source, root / target / source.name)
        for part in ("solutions", "student"):
            shutil.copytree(args.course / part / "ex02-shutdown", root / "exercises" / part / "ex02-shutdown")
        for path in (root, *root.rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        soak = root / "benchmarks" / "soak.py"
        command = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", python, str(soak),
                   "--identity", "self", "--modes", modes, "--runs", str(args.runs), "--fuzz", str(args.fuzz),
                   "--course", str(root / "exercises")]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": tmp})  # fmt: skip
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("ROW "):
            rows.append(json.loads(line[4:]))
        else:
            print(line)
    if done.returncode:
        print(done.stderr[-3000:])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--fuzz", type=int, default=300)
    parser.add_argument("--modes", default="netns,netns-loopback,host,host-nocapture")
    parser.add_argument("--identity", choices=("both", "root", "user", "self"), default="both")
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1] / "exercises")
    args = parser.parse_args()
    rows = []
    if args.identity in ("both", "root", "self") and not (args.identity == "root" and os.geteuid() != 0):
        belongings()
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        print(f"== lab as {who}")
        for mode in args.modes.split(","):
            rows.append(one_mode(mode, who, args))
    if args.identity in ("both", "user") and os.geteuid() == 0:
        print(f"== lab as an ordinary uid ({USER})")
        rows += as_user(args)
    if args.identity == "self":
        for row in rows:
            print("ROW " + json.dumps(row))
        return
    print("\n| mode | lab as | attacks tried | contained | not contained |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['who']} | {row['tried']} | {row['tried'] - len(row['escaped'])} | "
              f"{'; '.join(row['escaped']) or '—'} |")  # fmt: skip


def one_mode(mode: str, who: str, args: argparse.Namespace) -> dict:
    started = time.monotonic()
    lab = Lab(sandbox=mode)
    try:
        closekit.run("close-default", lab=lab)
        before = counts(lab)
        runs, differing = soak(lab, args.runs)
        tried, escaped = run_attacks(lab, args.course)
        cases, fuzz_escaped = fuzz(lab, args.fuzz)
        closekit.run("close-default", lab=lab)
        after = counts(lab)
    finally:
        lab.close()
    left = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    print(f"mode {mode}: {runs} runs, {differing} differing; after them: {after['processes']} process(es) "
          f"below the helper (the reaper and its idle endpoints), {after['zombies']} zombies, "
          f"changes {left or 'none'}")  # fmt: skip
    print(f"  attacks: {tried} tried, {tried - len(escaped)} contained; fuzz: {cases} tried, {fuzz_escaped} escaped")
    print(f"  took {time.monotonic() - started:.0f} s", flush=True)
    return {"mode": mode, "who": who, "tried": tried, "escaped": escaped}


if __name__ == "__main__":
    main()
