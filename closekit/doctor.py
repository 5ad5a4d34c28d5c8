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


def checks() -> tuple[list[Check], int]:
    """Ask a fresh lab helper what it could do, nothing guessed from the OS name; and the exit status
    (0 everything, 1 a fallback mode, 2 the lab cannot start)."""
    from closekit.sandbox.client import Lab

    found = [Check("kernel", True, os.uname().release), Check("python", True, sys.version.split()[0])]
    lab = Lab(sandbox=os.environ.get("CLOSEKIT_SANDBOX"))
    try:
        mode = lab.mode
        info = lab.info
    except CloseKitError as e:
        return [*found, Check("lab helper", False, str(e), "see the message above"), _dot_check()], 2
    finally:
        lab.close()
    why = list(info.get("why", []))
    forced = os.environ.get("CLOSEKIT_SANDBOX")
    if forced and forced not in ("auto", "netns") and not why:
        why = [f"not tried: CLOSEKIT_SANDBOX={forced} chose the mode"]
    private = mode in ("netns", "netns-loopback")
    wire = mode == "netns"
    capture = mode != "host-nocapture"
    found.append(Check("user + network namespaces", private, "yes" if private else "; ".join(why) or "not used",
                       "" if private else _userns_hint()))  # fmt: skip
    found.append(Check("TUN device for the lab's wire", wire, "yes" if wire else "; ".join(why) or "not used",
                       "" if wire else "the lab needs /dev/net/tun (a container: --device /dev/net/tun)"))  # fmt: skip
    found.append(Check("packet capture", capture, "yes" if capture else "; ".join(why) or "refused",
                       "" if capture else "allow user namespaces (above), or give python CAP_NET_RAW"))  # fmt: skip
    who = "nobody (the lab runs as root)" if info.get("as_nobody") else "your user"
    contained = f"run as {who}; limits: {info.get('limits', '?')}"
    if not private:
        contained = "only by process limits on the host (see the README's containment)"
    found.append(Check("experiments are contained", private, contained))
    found.append(_dot_check())
    fallback = "" if wire else "fallback: results still come from the real kernel, with less seen and no wire"
    found.append(Check("experiments will run in mode", wire, mode, fallback))
    return found, 0 if wire else 1


def report() -> tuple[str, int]:
    """A printable report, and the exit status of `closekit doctor`."""
    found, status = checks()
    lines = []
    for c in found:
        mark = "ok " if c.ok else "-- "
        lines.append(f"{mark} {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"      how: {c.fix}")
    return "\n".join(lines), status
