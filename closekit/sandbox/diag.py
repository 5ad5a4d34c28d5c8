"""TCP socket states and queues from the kernel's sock_diag (inet_diag) netlink interface.

sock_diag sees every TCP socket of the namespace, including orphans that no descriptor refers to
any more (FIN_WAIT_2, TIME_WAIT, LAST_ACK), which getsockopt(TCP_INFO) cannot reach. The request
and reply are two fixed C structs, so they are packed here directly rather than through a
general netlink library: one dump is a single sendto/recv pair and costs microseconds.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NLMSG_ERROR = 2
ALL_STATES = 0xFFF

# Linux's enum tcp_state, in kernel order, with RFC 9293 names.
KERNEL_STATES = (
    "", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT",
    "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)  # fmt: skip

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI HH16s16sI8s")  # inet_diag_req_v2 (ports big-endian, packed below)
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

    def dump(self) -> list[DiagSocket]:
        """All IPv4 TCP sockets of the namespace, in every state."""
        self._seq += 1
        body = _REQ.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 0, ALL_STATES, 0, 0, b"", b"", 0, b"")
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                                NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0)  # fmt: skip
        self._sock.send(header + body)
        found: list[DiagSocket] = []
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    raise OSError(-err, "sock_diag dump failed")
                if kind == SOCK_DIAG_BY_FAMILY:
                    found.append(_parse(data, offset + _NLMSGHDR.size))
                offset += (length + 3) & ~3


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
