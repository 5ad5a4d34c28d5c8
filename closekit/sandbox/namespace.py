"""Namespaces for the lab: the helper's user namespace, and the network namespaces it keeps.

In mode netns the helper owns two network namespaces, one per endpoint, each with a TUN device
whose other end is the helper itself (the wire). They are made once and cleaned between
experiments (sockets destroyed, settings put back), which costs microseconds, where making and
freeing a namespace costs about a millisecond of CPU each. Every experiment gets a new pair of
addresses, so nothing TCP cached about an earlier peer (its RTT in the tcp_metrics cache, which
an unprivileged user may not flush) can change a later experiment's timers.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from dataclasses import dataclass, field

from closekit.sandbox import netlink
from closekit.sandbox.diag import Diag
from closekit.sandbox.stamps import SendStamps

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
NOBODY = 65534
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
TUN_NAME = "ck0"
MIB_FILES = ("/proc/net/netstat", "/proc/net/snmp")
SOCKSTAT_FILES = ("/proc/net/sockstat", "/proc/net/sockstat6")  # the second only where the kernel has IPv6

_libc = ctypes.CDLL(None, use_errno=True)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def setns(fd: int, kind: int) -> None:
    if _libc.setns(fd, kind) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_user_namespace() -> bool:
    """Become root of a new user namespace (mapped to the caller's uid) with its own network namespace.

    Run as real root, a child still in the initial namespace writes the maps, so that uid and gid
    65534 (nobody) are mapped too and experiments can run as nobody rather than as root. Returns
    whether nobody is mapped. Must be called while the process has a single thread.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        return False
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    mapper = os.fork()
    if mapper == 0:  # still in the initial user namespace, with CAP_SETUID there
        os.close(ready_w)
        go = os.read(ready_r, 1)
        try:
            if not go:
                os._exit(1)
            _write(f"/proc/{parent}/uid_map", f"0 0 1\n{NOBODY} {NOBODY} 1")
            _write(f"/proc/{parent}/gid_map", f"0 0 1\n{NOBODY} {NOBODY} 1")
        except OSError:
            os._exit(1)
        os._exit(0)
    os.close(ready_r)
    try:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        os.write(ready_w, b"x")
    finally:
        os.close(ready_w)
        _pid, status = os.waitpid(mapper, 0)
    if status != 0:
        raise OSError(1, "could not write the user namespace's uid and gid maps")
    return True


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


@dataclass
class NetNamespace:
    """One network namespace the helper keeps, with what it observes and configures it through."""

    name: str  # which endpoint lives here: "client", "server", or "both"
    fd: int  # /proc/self/ns/net of it
    diag: Diag
    mib: list[int]  # /proc/net/netstat and /proc/net/snmp, opened in it
    sockstat: list[int]  # /proc/net/sockstat (and sockstat6), opened in it: its TCP sockets, counted
    rtnl: socket.socket
    tun: int | None = None
    ifindex: int = 1  # the TUN device's (the loopback's without one)
    stamps: SendStamps | None = None  # the kernel's send times of the TUN device's packets
    defaults: dict[str, str] = field(default_factory=dict)  # sysctl values before a scenario changed them

    def close(self) -> list[int]:
        """Close what holds the namespace; returns the fds whose close waits for the kernel (the TUN)."""
        self.diag.close()
        self.rtnl.close()
        if self.stamps is not None:
            self.stamps.close()
        for fd in (*self.mib, *self.sockstat, self.fd):
            os.close(fd)
        return [self.tun] if self.tun is not None else []


def new_network_namespace(name: str, wired: bool) -> NetNamespace:
    """Move this process into a fresh network namespace with loopback up and, if `wired`, a TUN
    device up (addresses come per experiment). The caller moves back."""
    unshare(CLONE_NEWNET)
    netlink.interface_up("lo")
    tun = stamps = None
    if wired:
        tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", TUN_NAME.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(tun)
            raise
        _quiet_ipv6(TUN_NAME)
        netlink.interface_up(TUN_NAME)
        try:
            stamps = SendStamps(socket.if_nametoindex(TUN_NAME))
        except OSError:
            stamps = None  # the wire times packets when it reads them (a few microseconds late)
    return NetNamespace(
        name=name,
        fd=os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC),
        diag=Diag(),
        mib=[os.open(path, os.O_RDONLY | os.O_CLOEXEC) for path in MIB_FILES],
        sockstat=[os.open(path, os.O_RDONLY | os.O_CLOEXEC) for path in SOCKSTAT_FILES if os.path.exists(path)],
        rtnl=netlink.route_socket(),
        tun=tun,
        ifindex=socket.if_nametoindex(TUN_NAME) if wired else 1,
        stamps=stamps,
    )


def _quiet_ipv6(device: str) -> None:
    """No IPv6 on the wire's device: its router solicitations would only wake the relay. TCP over IPv4
    is untouched (this is the lab's own device, not a TCP setting)."""
    try:
        _write(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6", "1")
    except OSError:
        pass  # a kernel without IPv6 sends none


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctl(name: str) -> str:
    with open(sysctl_path(name)) as f:
        return " ".join(f.read().split())


def write_sysctl(name: str, value: str) -> None:
    _write(sysctl_path(name), value)


def apply_settings(
    space: NetNamespace, sysctls: dict[str, str], route: dict[str, int], to_peer: netlink.RouteSpec, home: int
) -> None:
    """Set a scenario's sysctls (remembering the defaults) and route options in `space`."""
    if sysctls:
        setns(space.fd, CLONE_NEWNET)
        try:
            for name, value in sysctls.items():
                space.defaults.setdefault(name, read_sysctl(name))
                write_sysctl(name, value)
        finally:
            setns(home, CLONE_NEWNET)
    if route:
        netlink.set_route_metrics(space.rtnl, to_peer, route)


def restore_sysctls(space: NetNamespace, sysctls: dict[str, str], home: int) -> None:
    """Put back the sysctls apply_settings changed (route options go with the experiment's route)."""
    if sysctls:
        setns(space.fd, CLONE_NEWNET)
        try:
            for name in sysctls:
                write_sysctl(name, space.defaults[name])
        finally:
            setns(home, CLONE_NEWNET)


def clear_sockets(space: NetNamespace, known: list[tuple[tuple[str, int], tuple[str, int]]]) -> bool:
    """End every TCP socket left in `space`, whoever opened it and whatever its state (TIME_WAIT,
    orphans holding unsent data); True when the namespace is then empty.

    The experiment's own connections are ended by their 4-tuples (a lookup each, microseconds). A
    function's own sockets are found by counting the namespace's TCP sockets, and, when any is left,
    by dumping them all (about a millisecond). False where one survives (kernels before 6.11 do not
    end orphans this way): the caller then replaces the namespaces.
    """
    try:
        for local, remote in known:
            space.diag.destroy(local, remote)
        if not tcp_sockets(space):
            return True
        for family in (socket.AF_INET, socket.AF_INET6):
            for found in space.diag.dump(family):
                space.diag.destroy_found(found)
    except OSError:
        return False
    return tcp_sockets(space) == 0


def tcp_sockets(space: NetNamespace) -> int:
    """How many TCP sockets `space` holds: those in its hash tables (listening, connected, orphaned,
    over IPv4 and IPv6) and its TIME_WAIT sockets, as /proc/net/sockstat counts them per namespace."""
    count = 0
    for fd in space.sockstat:
        for line in os.pread(fd, 4096, 0).decode().splitlines():
            kind, _, fields = line.partition(": ")
            if kind in ("TCP", "TCP6"):
                numbers = dict(zip(fields.split()[::2], fields.split()[1::2]))
                count += int(numbers.get("inuse", 0)) + int(numbers.get("tw", 0))
    return count
