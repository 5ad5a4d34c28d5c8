"""Boot a Debian kernel in qemu and run one command inside it; bring back its output.

The guest is a 1-vCPU qemu machine with the kernel's own initramfs (images.initramfs), the
runtime and course images read-only, and a scratch disk on which init leaves a tar of the
command's stdout, stderr and exit status, and the guest's `uname -r` and `uname -v`. Its console
(the kernel's and init's lines, then the command's stderr as it comes) is a file the host reads
while the guest runs. KVM is used where it boots the kernel (it is tried once per kernel and the
answer kept); elsewhere qemu emulates the CPU (TCG), slower but everywhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from closekit.errors import CloseKitError
from closekit.kernels import images
from closekit.kernels.debian import Package

QEMU = "qemu-system-x86_64"
MARK = "closekit-guest: "
PANIC = "Kernel panic - not syncing:"
BOOT_SECONDS = 120  # boot, modules and mounts under TCG on a busy machine; a healthy guest takes 3-10 s
# no_timer_check: early in boot Linux waits 10 ticks for the timer's interrupts and panics ("IO-APIC + timer
# doesn't work!") if fewer than 5 came. Under TCG qemu's main loop fires them, and on a busy host it can be
# kept off the CPU that long while the emulated CPU runs: it panicked so in CI, and in 3 of 6 boots here with
# that thread niced beside two busy loops; with the check off, 0 of 5. Cloud images boot with it for the same reason.
KERNEL_ARGUMENTS = "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check rdinit=/init"
KVM_BOOT_SECONDS = 20  # a KVM guest that has not booted by then never will (a nested hypervisor that cannot)
OUT_DISK = 256 << 20
PASSED_ENV = ("CLOSEKIT_LANG", "CLOSEKIT_SANDBOX")


class GuestError(CloseKitError):
    """The guest did not run the command: it did not boot, a module is missing, it ran out of time."""


@dataclass(frozen=True)
class Result:
    """What the command did in the guest, and on which kernel exactly."""

    release: str  # uname -r in the guest
    version: str  # uname -v: Debian's package version and build date
    status: int  # the command's exit status (137: killed at its timeout)
    stdout: bytes
    stderr: bytes
    accel: str  # kvm or tcg
    seconds: float  # from qemu's start to its end


def qemu() -> str:
    found = shutil.which(QEMU)
    if found is None:
        raise CloseKitError(f"booting another kernel needs {QEMU}: apt-get install qemu-system-x86")
    return found


def job_lines(argv: Sequence[str], timeout: float, venv: bool, repo: Path) -> str:
    """The shell lines /job holds: the command line init runs in the guest's root (see init.sh)."""
    python = sys.executable if venv else os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    env = {"PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    env.update({k: os.environ[k] for k in PASSED_ENV if k in os.environ})
    path = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin" if venv else "/usr/bin:/bin"
    command = [
        f"PATH={path}", *(f"{k}={v}" for k, v in env.items()),
        "/.closekit/busybox", "timeout", "-s", "KILL", str(int(timeout)),
        "/.closekit/busybox", "sh", "-c", 'cd "$0" && exec "$@"', str(repo), python, *argv,
    ]  # fmt: skip
    return "set -- " + " ".join(shlex.quote(a) for a in command) + "\n"


def run(
    package: Package,
    argv: Sequence[str],
    *,
    timeout: float = 600,
    venv: bool = False,
    accel: str = "auto",
    memory_mib: int = 2048,
    echo: Callable[[str], None] | None = None,
    cache: Path | None = None,
) -> Result:
    """Run `python ARGV` (e.g. ["-m", "closekit", "verify", "--json"]) in a guest booted on `package`'s
    kernel, in the course's folder. `echo` is given each line the command writes to stderr, as it comes.
    GuestError when the guest does not get as far as the command's end."""
    from closekit.kernels.debian import cache_dir

    cache = cache or cache_dir()
    if accel not in ("auto", "kvm", "tcg"):
        raise CloseKitError(f"accel {accel!r} is not one of auto, kvm, tcg")
    repo = images.repository()
    initrd = images.initramfs(package, cache)
    runtime = images.runtime_image(cache, venv=venv)
    course = images.course_image(cache, repo)
    job = images.job(job_lines(argv, timeout, venv, repo))
    known = cache / "kvm" / package.release  # whether KVM boots this kernel here, once tried
    if accel != "auto":
        tries = [accel]
    elif known.exists():
        tries = ["kvm"] if known.read_text().startswith("works") else ["tcg"]
    else:
        tries = ["kvm", "tcg"] if _kvm_usable() else ["tcg"]
    for chosen in tries:
        probing = len(tries) > 1 and chosen == "kvm"
        try:
            result = _boot(package, initrd, job, runtime, course, chosen, timeout, memory_mib, echo, probing)
        except _NotBooted as e:
            if not probing:
                raise GuestError(str(e)) from None
            _remember(known, f"fails: {e}")
            continue
        if probing:
            _remember(known, "works")
        return result
    raise AssertionError("unreachable: the last try either returns or raises")


def _remember(path: Path, verdict: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verdict + "\n")


class _NotBooted(Exception):
    pass


def _kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _boot(
    package: Package, initrd: Path, job: bytes, runtime: Path, course: Path, accel: str, timeout: float,
    memory_mib: int, echo: Callable[[str], None] | None, probing: bool,
) -> Result:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="closekit-guest-") as scratch:
        work = Path(scratch)
        initrd_job = work / "initrd"
        with open(initrd_job, "wb") as f:
            compressed = initrd.read_bytes()
            f.write(compressed + b"\0" * (-len(compressed) % 4))  # the next archive starts 4-byte aligned
            f.write(job)
        out = work / "out.img"
        with open(out, "wb") as f:
            f.truncate(OUT_DISK)
        console = work / "console.log"
        command = [
            qemu(), "-machine", f"q35,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
            "-m", str(memory_mib), "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-chardev", f"file,id=console,path={console}", "-serial", "chardev:console",
            "-kernel", str(package.vmlinuz), "-initrd", str(initrd_job),
            "-append", KERNEL_ARGUMENTS,
            "-drive", f"file={runtime},if=virtio,format=raw,readonly=on",
            "-drive", f"file={course},if=virtio,format=raw,readonly=on",
            "-drive", f"file={out},if=virtio,format=raw",
        ]  # fmt: skip
        started = time.monotonic()
        boot_limit = KVM_BOOT_SECONDS if probing else BOOT_SECONDS
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watcher = _Console(console, echo)
        try:
            while process.poll() is None:
                time.sleep(0.1)
                watcher.read()
                elapsed = time.monotonic() - started
                if not watcher.booted and elapsed > boot_limit:
                    raise _NotBooted(_words(package, accel, f"did not boot within {boot_limit} s", watcher))
                if elapsed > boot_limit + timeout:
                    raise GuestError(_words(package, accel, f"did not finish within {timeout:.0f} s", watcher))
        finally:
            if process.poll() is None:
                process.kill()
            qemu_said = process.communicate()[0].decode(errors="replace").strip()
        watcher.read()
        seconds = time.monotonic() - started
        if not watcher.booted:
            if watcher.panic:
                why = f"the kernel panicked: {watcher.panic}"
            elif qemu_said:
                why = f"qemu said: {qemu_said.splitlines()[-1]}"
            else:
                why = "it stopped before init ran"
            raise _NotBooted(_words(package, accel, f"did not boot ({why})", watcher))
        if watcher.failed:
            raise GuestError(f"Linux {package.release}: the guest {watcher.failed}")
        if not watcher.done:
            raise GuestError(_words(package, accel, "stopped before the command's output was saved", watcher))
        result = _result(out, accel, seconds)
        if echo is not None:  # what the console had not shown yet (its reader polls; the guest stopped first)
            for line in result.stderr.decode(errors="replace").splitlines()[watcher.echoed :]:
                echo(line)
        return result


def _result(out: Path, accel: str, seconds: float) -> Result:
    found: dict[str, bytes] = {}
    with tarfile.open(out, "r:") as archive:
        for member in archive.getmembers():
            f = archive.extractfile(member) if member.isfile() else None
            if f is not None:
                found[member.name.removeprefix("./")] = f.read()
    return Result(
        release=found.get("release", b"").decode().strip(),
        version=found.get("version", b"").decode().strip(),
        status=int(found.get("status", b"255").strip() or 255),
        stdout=found.get("stdout", b""),
        stderr=found.get("stderr", b""),
        accel=accel,
        seconds=seconds,
    )


class _Console:
    """Follows the guest's console file: init's marks, and the command's stderr passed to `echo`."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None) -> None:
        self.path, self.echo = path, echo
        self.offset = 0
        self.pending = ""
        self.lines: list[str] = []
        self.booted = self.running = self.done = False
        self.failed = ""
        self.panic = ""  # why the kernel panicked, if it did
        self.echoed = 0  # lines of the command's stderr passed to echo so far

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        self.pending += chunk.decode(errors="replace").replace("\r", "")
        *complete, self.pending = self.pending.split("\n")
        for line in complete:
            self._line(line)

    def _line(self, line: str) -> None:
        self.lines = [*self.lines[-200:], line]
        if PANIC in line and not self.panic:
            self.panic = line.split(PANIC, 1)[1].strip()
        if line.startswith(MARK):
            said = line.removeprefix(MARK)
            self.booted = self.booted or said.startswith("booted")
            self.running = self.running or said == "running"
            self.done = self.done or said == "done"
            if said.startswith("failed: "):
                self.failed = said.removeprefix("failed: ")
        elif self.running and not self.done and self.echo is not None:
            self.echo(line)
            self.echoed += 1

    def tail(self, count: int = 6) -> str:
        return " | ".join(line.strip() for line in self.lines[-count:] if line.strip())


def _words(package: Package, accel: str, what: str, console: _Console) -> str:
    where = "with KVM" if accel == "kvm" else "in qemu's emulation (TCG)"
    tail = console.tail()
    return f"Linux {package.release} {where} {what}" + (f"; its console's last lines: {tail}" if tail else "")
