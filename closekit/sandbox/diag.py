"""TCP socket states and queues from the kernel's sock_diag (inet_diag) netlink interface.

sock_diag finds a TCP socket by its 4-tuple whether a descriptor still refers to it or it is an
orphan (FIN_WAIT_2, TIME_WAIT, LAST_ACK), which getsockopt(TCP_INFO) cannot reach. The request
and reply are two fixed C structs, so they are packed here directly rather than through a
general netlink library: one lookup is a single send/recv pair and costs microseconds.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
ALL_STATES = 0xFFF

# Linux's enum tcp_state, in kernel order, with RFC 9293 names.
KERNEL_STATES = (
    "", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT",
    "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)  # fmt: skip

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI 2s2s16s16sI8s")  # inet_diag_req_v2 (ports big-endian)
NO_COOKIE = b"\xff" * 8
_MSG = struct.Struct("=BBBB 2s2s16s16sI8s IIIII")  # inet_diag_msg


@dataclass(frozen=True)
class DiagSocket:
    """One TCP socket as sock_diag reports it."""

    state: str
    sport: int
    dport: int
    rqueue: int  # bytes received and not yet read (for a listener: accept backlog)
    wqueue: int  # bytes sent and not yet acknowledged (FIN included)
    inode: int  # 0 once no descriptor refers to it (an orphan)


class Diag:
    """A sock_diag netlink socket bound to the namespace it was opened in."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def lookup(self, sport: int, dport: int, address: str = "127.0.0.1") -> DiagSocket | None:
        """The TCP socket with this 4-tuple, or None if the kernel has none (it was freed).

        An exact lookup is a hash probe; a dump walks every bucket of the TCP hash tables, which
        costs about a millisecond even in an empty namespace.
        """
        ip = socket.inet_aton(address).ljust(16, b"\0")
        self._seq += 1
        body = _REQ.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 0, ALL_STATES, sport.to_bytes(2, "big"),
                         dport.to_bytes(2, "big"), ip, ip, 0, NO_COOKIE)  # fmt: skip
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, self._seq, 0)
        self._sock.send(header + body)
        data = self._sock.recv(65536)
        _length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data)
        if kind == SOCK_DIAG_BY_FAMILY:
            return _parse(data, _NLMSGHDR.size)
        (err,) = struct.unpack_from("=i", data, _NLMSGHDR.size) if kind == NLMSG_ERROR else (-errno.EPROTO,)
        if err == -errno.ENOENT:
            return None
        raise OSError(-err, f"sock_diag lookup failed: {os.strerror(-err)}")


def _parse(data: bytes, offset: int) -> DiagSocket:
    (_family, state, _timer, _retrans, sport, dport, _src, _dst, _if, _cookie,
     _expires, rqueue, wqueue, _uid, inode) = _MSG.unpack_from(data, offset)  # fmt: skip
    return DiagSocket(
        state=KERNEL_STATES[state] if state < len(KERNEL_STATES) else f"STATE_{state}",
        sport=int.from_bytes(sport, "big"),
        dport=int.from_bytes(dport, "big"),
        rqueue=rqueue,
        wqueue=wqueue,
        inode=inode,
    )
