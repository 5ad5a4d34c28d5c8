"""TCP socket states, queues and timers from the kernel's sock_diag (inet_diag) netlink interface.

sock_diag finds a TCP socket by its 4-tuple whether a descriptor still refers to it or it is an
orphan (FIN_WAIT_2, TIME_WAIT, LAST_ACK), which getsockopt(TCP_INFO) cannot reach, and it says
which timer the socket has running and when it fires. The request and reply are two fixed C
structs, so they are packed here directly: one lookup is a single send/recv pair, microseconds.
The same request with SOCK_DESTROY ends a socket (the lab's clean-up between experiments), and a
dump lists every TCP socket of the namespace, whoever opened it and whatever its state.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
ALL_STATES = 0xFFF

# Linux's enum tcp_state, in kernel order, with closekit.tcp's names (RFC 9293's, with underscores;
# the kernel's TCP_SYN_RECV and its request sockets, TCP_NEW_SYN_RECV, are both SYN_RECEIVED).
KERNEL_STATES = (
    "", "ESTABLISHED", "SYN_SENT", "SYN_RECEIVED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT",
    "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "SYN_RECEIVED",
)  # fmt: skip
# idiag_timer: which of the socket's timers is pending
TIMERS = {0: None, 1: "retransmit", 2: "keepalive", 3: "time-wait", 4: "zero-window probe"}

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI 2s2s16s16sI8s")  # inet_diag_req_v2 (ports big-endian)
NO_COOKIE = b"\xff" * 8
_MSG = struct.Struct("=BBBB 2s2s16s16sI8s IIIII")  # inet_diag_msg
REPLY = 8192  # bytes of the answer about one socket (about 150) or an error (the request, echoed)


@dataclass(frozen=True)
class Found:
    """One TCP socket of a dump: enough to name it exactly in a SOCK_DESTROY request."""

    family: int
    local: tuple[bytes, int]  # (16-byte address, port)
    remote: tuple[bytes, int]
    cookie: bytes
    state: str


class DiagSocket(NamedTuple):
    """One TCP socket as sock_diag reports it (a named tuple: the lab makes one per look)."""

    state: str
    rqueue: int  # bytes received and not yet read (for a listener: its accept queue)
    wqueue: int  # bytes sent and not yet acknowledged (FIN included), or not yet sent
    timer: str | None  # the pending timer, if any
    expires: float  # seconds until it fires (0 without a timer)
    retransmits: int
    orphan: bool  # no descriptor refers to it any more
    remote_port: int  # 0 for a listening socket


class Diag:
    """A sock_diag netlink socket bound to the network namespace it was opened in."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self._seq = 0
        self._bodies: dict[tuple[int, int, tuple[str, int], tuple[str, int]], bytes] = {}  # requests packed

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def lookup(self, local: tuple[str, int], remote: tuple[str, int]) -> DiagSocket | None:
        """The TCP socket with this 4-tuple, or None if the kernel has none (it was freed).

        A listener is found with the remote ("0.0.0.0", 0); asked for a connection that has gone, the
        kernel answers with the listener on its port, which is not that connection: None then. An
        exact lookup is a hash probe; a dump would walk every bucket of the TCP hash tables, about a
        millisecond even in an empty namespace.
        """
        data = self._ask(SOCK_DIAG_BY_FAMILY, 0, local, remote)
        _length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data)
        if kind == SOCK_DIAG_BY_FAMILY:
            found = _parse(data, _NLMSGHDR.size)
            return found if found.remote_port == remote[1] else None
        err = _error(data, kind)
        if err in (errno.ENOENT, errno.ESTALE):
            return None
        raise OSError(err, f"sock_diag lookup failed: {os.strerror(err)}")

    def destroy(self, local: tuple[str, int], remote: tuple[str, int]) -> bool:
        """End the socket with this 4-tuple (SOCK_DESTROY); False if there was none.

        OSError(EOPNOTSUPP) where the kernel was built without CONFIG_INET_DIAG_DESTROY.
        """
        return _destroyed(self._ask(SOCK_DESTROY, NLM_F_ACK, local, remote))

    def dump(self, family: int) -> list[Found]:
        """Every TCP socket of `family` (AF_INET, AF_INET6) in the namespace, in any state: TIME_WAIT,
        orphans and request sockets included. It walks the kernel's TCP hash tables (about a millisecond)."""
        self._send(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, _body(family, (bytes(16), 0), (bytes(16), 0), NO_COOKIE))
        found = []
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset < len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    err = _error(data[offset:], kind)
                    raise OSError(err, f"sock_diag dump failed: {os.strerror(err)}")
                (fam, state, _timer, _retrans, sport, dport, src, dst, _if, cookie,
                 *_rest) = _MSG.unpack_from(data, offset + _NLMSGHDR.size)  # fmt: skip
                name = KERNEL_STATES[state] if state < len(KERNEL_STATES) else f"STATE_{state}"
                local, remote = (src, int.from_bytes(sport, "big")), (dst, int.from_bytes(dport, "big"))
                found.append(Found(fam, local, remote, cookie, name))
                offset += max((length + 3) & ~3, _NLMSGHDR.size)

    def destroy_found(self, sock: Found) -> bool:
        """End a socket a dump found (SOCK_DESTROY, by its 4-tuple and cookie); False if it has gone."""
        self._send(SOCK_DESTROY, NLM_F_ACK, _body(sock.family, sock.local, sock.remote, sock.cookie))
        return _destroyed(self._sock.recv(REPLY))

    def _ask(self, kind: int, flags: int, local: tuple[str, int], remote: tuple[str, int]) -> bytes:
        """One request about an IPv4 socket named by its 4-tuple, and the kernel's answer. The same few
        sockets are asked about again and again: each request is packed once (per experiment's addresses)."""
        key = (kind, flags, local, remote)
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= 64:
                self._bodies.clear()  # (an experiment's addresses are not asked about again)
            ours = (socket.inet_aton(local[0]).ljust(16, b"\0"), local[1])
            theirs = (socket.inet_aton(remote[0]).ljust(16, b"\0"), remote[1])
            body = self._bodies[key] = _body(socket.AF_INET, ours, theirs, NO_COOKIE)
        self._send(kind, flags, body)
        return self._sock.recv(REPLY)

    def _send(self, kind: int, flags: int, body: bytes) -> None:
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, self._seq, 0)
        self._sock.send(header + body)


def _body(family: int, local: tuple[bytes, int], remote: tuple[bytes, int], cookie: bytes) -> bytes:
    """An inet_diag_req_v2 naming one socket (any state)."""
    return _REQ.pack(
        family, socket.IPPROTO_TCP, 0, 0, ALL_STATES, local[1].to_bytes(2, "big"), remote[1].to_bytes(2, "big"),
        local[0], remote[0], 0, cookie,
    )  # fmt: skip


def _destroyed(data: bytes) -> bool:
    _length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data)
    err = _error(data, kind)
    if err in (errno.ENOENT, errno.ESTALE):
        return False
    if err:
        raise OSError(err, f"sock_diag destroy failed: {os.strerror(err)}")
    return True


def _error(data: bytes, kind: int) -> int:
    """The errno of an NLMSG_ERROR message at the start of `data` (0: an acknowledgement)."""
    if kind != NLMSG_ERROR:
        return errno.EPROTO
    return -struct.unpack_from("=i", data, _NLMSGHDR.size)[0]


def _parse(data: bytes, offset: int) -> DiagSocket:
    (_family, state, timer, retrans, _sport, dport, _src, _dst, _if, _cookie,
     expires, rqueue, wqueue, _uid, inode) = _MSG.unpack_from(data, offset)  # fmt: skip
    name = KERNEL_STATES[state] if state < len(KERNEL_STATES) else f"STATE_{state}"
    return DiagSocket(
        state=name,
        rqueue=rqueue,
        wqueue=wqueue,
        timer=TIMERS.get(timer),
        expires=expires / 1000 if timer else 0.0,
        retransmits=retrans,
        orphan=inode == 0 and name not in ("TIME_WAIT", "SYN_RECEIVED"),
        remote_port=int.from_bytes(dport, "big"),
    )
