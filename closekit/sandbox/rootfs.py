"""The private root an experiment's processes see: only what Python needs, read-only.

Built once by the lab's reaper, in a mount namespace of its own: a small tmpfs becomes the root,
showing read-only the system's programs and libraries and the Python installation, a few /etc
files (hosts, services …; never passwd or shadow), the harmless devices, a /proc of the reaper's
PID namespace (so only the experiment's own processes are listed) and a private /tmp. Host UNIX
sockets, home directories and the notebook's files are simply not there.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
# statvfs flag -> mount flag a read-only remount of a bind mount must keep (the kernel locks them)
_KEPT_FLAGS = ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME),
               (4096, MS_RELATIME))  # fmt: skip
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "armv7l": 218, "i686": 217, "ppc64le": 203,
              "s390x": 217}  # fmt: skip
ETC_FILES = ("hosts", "services", "protocols", "nsswitch.conf", "ld.so.cache", "localtime", "gai.conf")
DEVICES = ("null", "zero", "full", "random", "urandom")
NEW_ROOT = "/tmp"  # in the new mount namespace a tmpfs is mounted here and becomes the root

_libc = ctypes.CDLL(None, use_errno=True)


def build(binds: tuple[str, ...], scratch: int) -> None:
    """Make this process's (new, unshared) mount namespace's root the private root. Must run in the
    PID namespace whose processes /proc is to show."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("closekit", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    root = NEW_ROOT
    for path in binds:
        if os.path.isdir(path):
            _bind(path, root + path, directory=True)
    for name in ETC_FILES:
        real = os.path.realpath(f"/etc/{name}")
        if os.path.isfile(real):
            _bind(real, f"{root}/etc/{name}", directory=False)
    for name in DEVICES:
        _bind(f"/dev/{name}", f"{root}/dev/{name}", directory=False, read_only=False)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        if not os.path.exists(f"{root}/{link}") and os.path.isdir(f"/{target}"):
            os.symlink(target, f"{root}/{link}")
    os.makedirs(f"{root}/proc", exist_ok=True)
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(f"{root}/tmp", exist_ok=True)
    _mount("scratch", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch},nr_inodes=4096,mode=1777")
    os.makedirs(f"{root}/.old", exist_ok=True)
    _pivot_root(root, f"{root}/.old")
    os.chdir("/")
    if _libc.umount2(b"/.old", MNT_DETACH) != 0:
        _fail("umount the old root")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def empty_scratch() -> None:
    """Leave /tmp empty for the next experiment (usually it already is: this costs nothing then)."""
    for entry in os.scandir("/tmp"):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _bind(source: str, target: str, directory: bool, read_only: bool = True) -> None:
    if directory:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID
    if read_only:
        flags |= MS_RDONLY
    kept = os.statvfs(target).f_flag
    for st_flag, ms_flag in _KEPT_FLAGS:
        if kept & st_flag:
            flags |= ms_flag
    if not read_only:
        flags |= kept & MS_RDONLY
    _mount(None, target, None, flags)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def c(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    if _libc.mount(c(source), c(target), c(fstype), flags, c(data)) != 0:
        _fail(f"mount {target}")


def _pivot_root(new: str, old: str) -> None:
    number = PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {platform.machine()}")
    if _libc.syscall(number, new.encode(), old.encode()) != 0:
        _fail("pivot_root")


def _fail(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")
