"""What this machine allows the lab to do, and how to get what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from closekit.errors import CloseKitError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _dot_check() -> Check:
    dot = shutil.which("dot")
    if dot is None:
        return Check("graphviz dot binary", False, "not found on PATH",
                     "apt-get install graphviz (Debian/Ubuntu), or conda install -c conda-forge graphviz")  # fmt: skip
    out = subprocess.run([dot, "-V"], capture_output=True, text=True, timeout=10)
    return Check("graphviz dot binary", True, (out.stderr or out.stdout).strip() or dot)


def _userns_hint() -> str:
    for path, bad, hint in (
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
         "Ubuntu restricts unprivileged user namespaces: sysctl kernel.apparmor_restrict_unprivileged_userns=0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0", "sysctl kernel.unprivileged_userns_clone=1"),
        ("/proc/sys/user/max_user_namespaces", "0", "sysctl user.max_user_namespaces=10000"),
    ):  # fmt: skip
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return hint
        except OSError:
            continue
    return "in a container, run it with user namespaces allowed (e.g. docker --security-opt seccomp=unconfined)"


def checks() -> list[Check]:
    """Ask a fresh lab helper what it could do; nothing here is guessed from the OS name."""
    from closekit.sandbox.client import Lab

    found = [Check("kernel", True, os.uname().release), Check("python", True, sys.version.split()[0])]
    lab = Lab(sandbox=os.environ.get("CLOSEKIT_SANDBOX"))
    try:
        mode = lab.mode
        why = lab.info.get("why", [])
    except CloseKitError as e:
        return [*found, Check("lab helper", False, str(e), "see the message above")]
    finally:
        lab.close()
    userns = mode == "netns"
    capture = mode in ("netns", "host")
    forced = os.environ.get("CLOSEKIT_SANDBOX")
    if forced and forced != "netns" and not why:
        why = [f"not tried: CLOSEKIT_SANDBOX={forced} chose the mode"]
    found.append(Check("user + network namespaces", userns, "yes" if userns else "; ".join(why) or "not used",
                       "" if userns else _userns_hint()))  # fmt: skip
    found.append(Check("packet capture (AF_PACKET)", capture, "yes" if capture else "; ".join(why) or "refused",
                       "" if capture else "allow user namespaces (above), or give python CAP_NET_RAW"))  # fmt: skip
    found.append(_dot_check())
    fallback = "" if mode == "netns" else "fallback: results still come from the real kernel, with less seen"
    found.append(Check("experiments will run in mode", mode == "netns", mode, fallback))
    return found


def report() -> tuple[str, bool]:
    """A printable report, and whether everything the course uses is available."""
    found = checks()
    lines = []
    for c in found:
        mark = "ok " if c.ok else "-- "
        lines.append(f"{mark} {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"      how: {c.fix}")
    return "\n".join(lines), all(c.ok for c in found)
