"""Entering an unprivileged user + network namespace, and making fresh network namespaces in it."""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def enter_user_namespace() -> None:
    """Become root of a new user namespace (mapped to the caller's uid) with its own netns.

    Must be called while the process has a single thread.
    """
    uid, gid = os.getuid(), os.getgid()
    _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


# Per-namespace sysctls set in every fresh namespace: a send buffer large enough that a
# 1,000,000-byte send() completes without the peer reading, so bulk experiments do not depend
# on how the two processes happen to be scheduled.
NAMESPACE_SYSCTLS = {"/proc/sys/net/ipv4/tcp_wmem": "4096 4194304 4194304"}


def new_network_namespace() -> None:
    """Move this process into a fresh network namespace, loopback up and sysctls set.

    The previous namespace is freed by the kernel once nothing refers to it any more.
    """
    _unshare(CLONE_NEWNET)
    configure_namespace()


def configure_namespace() -> None:
    loopback_up()
    for path, value in NAMESPACE_SYSCTLS.items():
        with open(path, "w") as f:
            f.write(value)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def namespace_id() -> str:
    """The inode naming this process's network namespace (e.g. 'net:[4026532281]')."""
    return os.readlink("/proc/self/ns/net")
