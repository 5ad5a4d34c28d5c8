"""Soak the lab: hundreds of runs in each mode, the adversarial cases, fuzzed scenarios; count what is left.

    python benchmarks/soak.py [--runs 500] [--fuzz 300] [--modes netns,netns-loopback,host,host-nocapture]

Prints, per mode: runs and differing runs, then what is left below the helper afterwards (processes,
zombies, namespaces, fds, threads: all must be as before), the adversarial cases tried and how many
were contained (the experiment ended with a closekit error or a harmless result, and the next one
works), and fuzz cases that escaped as anything but a closekit error. Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import random
import textwrap
import time

import closekit
from closekit.sandbox.client import Lab
from closekit.scenario import Scenario
from closekit.steps import STEP_TYPES, Call

FAST = ["close-default", "close-unread", "linger-zero", "close-shared", "write-after-peer-close", "simultaneous-close",
        "listener-close-queued", "rst-before-accept", "shutdown-wr", "old-duplicate"]  # fmt: skip
# (attack, what a contained outcome looks like): each runs as a client function in the sandbox
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
# what the README's containment table says differs in the host modes: the disk is the host's
IN_HOST_MODES = {"disk filler": "ok"}


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
        try:
            first = closekit.run(name, lab=lab)
        except closekit.NotHereError:
            continue
        bad = sum(closekit.run(name, lab=lab) != first for _ in range(runs // len(FAST)))
        total, differing = total + runs // len(FAST), differing + bad
    return total, differing


def attacks(lab: Lab) -> tuple[int, int]:
    tried = contained = 0
    for what, (body, expected) in ATTACKS.items():
        if lab.mode.startswith("host"):
            expected = IN_HOST_MODES.get(what, expected)
        source = "def attack(sock):\n" + textwrap.indent(body, "    ") + "\n"
        scenario = Scenario("attack", what, steps=(Call("client", source=source, function="attack"),), time_limit=2)
        tried += 1
        try:
            call = closekit.run(scenario, lab=lab).syscalls("client", "call")[0]
            ok = expected in ("ok", "any") or (expected == "errno" and call.errno is not None)
        except closekit.CloseKitError:
            ok = expected in ("error", "any")
        healthy = (
            closekit.run("close-unread", lab=lab).first("RST") is not None if lab.mode != "host-nocapture" else True
        )
        stats = lab.stats()
        contained += ok and healthy and stats["zombies"] == 0 and stats["processes"] in (1, 3)
        if not (ok and healthy):
            print(f"  NOT contained: {what}")
    return tried, contained


def fuzz(lab: Lab, cases: int) -> tuple[int, int]:
    """Random step lists: each must run or fail with a closekit error, never anything else."""
    rng = random.Random(1)
    odd = [-5, 0, 1, 7, 10**9, 0.5, "x", None, "SHUT_WR", "TIME_WAIT", ("FIN",)]
    tried = escaped = 0
    for _ in range(cases):
        steps = []
        for _ in range(rng.randint(1, 4)):
            cls = rng.choice(list(STEP_TYPES.values()))
            fields = [f for f in cls.__dataclass_fields__ if f not in ("side", "background")]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--fuzz", type=int, default=300)
    parser.add_argument("--modes", default="netns,netns-loopback,host,host-nocapture")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        started = time.monotonic()
        lab = Lab(sandbox=mode)
        try:
            closekit.run("close-default", lab=lab)
            before = counts(lab)
            runs, differing = soak(lab, args.runs)
            tried, contained = attacks(lab)
            cases, escaped = fuzz(lab, args.fuzz)
            closekit.run("close-default", lab=lab)
            after = counts(lab)
        finally:
            lab.close()
        left = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        print(f"mode {mode}: {runs} runs, {differing} differing; after them: {after['processes']} process(es) "
              f"below the helper (the reaper and its idle endpoints), {after['zombies']} zombies, "
              f"changes {left or 'none'}")  # fmt: skip
        print(f"  adversarial cases: {tried} tried, {contained} contained; fuzz: {cases} tried, {escaped} escaped")
        print(f"  took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
