"""Entering an unprivileged user + network namespace, and making fresh network namespaces in it."""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
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


# Per-namespace sysctls set in every fresh namespace: send and receive buffers that start large
# enough to hold 1,000,000 bytes, so a bulk send() completes, and its data arrives, without the
# peer reading at the same time; bulk experiments then do not depend on how the two processes
# happen to be scheduled. (SO_RCVBUF/SO_SNDBUF in a scenario's Options still set small ones.)
NAMESPACE_SYSCTLS = {
    "/proc/sys/net/ipv4/tcp_wmem": "4096 4194304 4194304",
    "/proc/sys/net/ipv4/tcp_rmem": "4096 4194304 6291456",
}


def new_network_namespace() -> None:
    """Move this process into a fresh network namespace, loopback up and sysctls set.

    The previous namespace is freed by the kernel once nothing refers to it any more.
    """
    _unshare(CLONE_NEWNET)
    configure_namespace()


def configure_namespace() -> None:
    loopback_up()
    quickack_route()
    for path, value in NAMESPACE_SYSCTLS.items():
        with open(path, "w") as f:
            f.write(value)


# rtnetlink constants (linux/rtnetlink.h)
RTM_NEWROUTE = 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE = 0x1, 0x4, 0x100
RT_TABLE_LOCAL, RTPROT_KERNEL, RT_SCOPE_HOST, RTN_LOCAL = 255, 2, 254, 2
RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_METRICS, RTAX_QUICKACK = 1, 4, 7, 8, 15
LOOPBACK_IFINDEX = 1


def _attribute(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def quickack_route() -> None:
    """`ip route replace local 127.0.0.1 dev lo table local … quickack 1`, over rtnetlink.

    With quickack the kernel acknowledges at once instead of delaying an ACK (up to 40 ms) in the
    hope of piggybacking it. An experiment waits for every owed ACK before its next step anyway,
    so this changes no segment of any trace; it only stops every step after a FIN from waiting
    for the delayed-ACK timer.
    """
    localhost = socket.inet_aton("127.0.0.1")
    attributes = (
        _attribute(RTA_DST, localhost)
        + _attribute(RTA_OIF, struct.pack("=I", LOOPBACK_IFINDEX))
        + _attribute(RTA_PREFSRC, localhost)
        + _attribute(RTA_METRICS, _attribute(RTAX_QUICKACK, struct.pack("=I", 1)))
    )
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, RT_TABLE_LOCAL, RTPROT_KERNEL,
                       RT_SCOPE_HOST, RTN_LOCAL, 0) + attributes  # fmt: skip
    header = struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as nl:
        nl.send(header + body)
        reply = nl.recv(4096)
    (error,) = struct.unpack_from("=i", reply, 16)
    if error:
        raise OSError(-error, f"setting quickack on the loopback route: {os.strerror(-error)}")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def enter_pid_namespace() -> int:
    """Start the helper's children in a PID namespace of their own; returns the fd keeping it alive.

    Code run in an experiment then cannot see or signal any process outside it (the notebook,
    the helper, other students' experiments). The namespace's first process, its init, only waits
    for the helper's end of a pipe to close: when the helper goes, init exits and the kernel kills
    every process left in the namespace, whatever they forked.
    """
    from closekit.sandbox.endpoint import keep_only

    _unshare(CLONE_NEWPID)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if os.fork() == 0:  # PID 1 of the new namespace
        keep_only({read_end})
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    return write_end


def namespace_id() -> str:
    """The inode naming this process's network namespace (e.g. 'net:[4026532281]')."""
    return os.readlink("/proc/self/ns/net")
