"""Capturing TCP segments on a loopback with an AF_PACKET socket, and decoding their headers.

Only outgoing copies are kept (on loopback every packet is seen leaving and arriving), and
only the first SNAPLEN bytes of each: the headers are the lesson, not the payload.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from closekit.pcap import SNAPLEN

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
ETH_HEADER = 14
TCP_FLAG_BITS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))


@dataclass(frozen=True)
class Packet:
    """The TCP/IPv4 header fields of one captured packet, with absolute sequence numbers."""

    t: float  # time.time() clock
    sport: int
    dport: int
    flags: tuple[str, ...]
    seq: int
    ack: int
    payload: int
    win: int
    wscale: int | None  # window scale option (SYN segments only)
    raw: bytes  # the IPv4 packet, cut at SNAPLEN


def decode(frame: bytes, t: float) -> Packet | None:
    """Decode an Ethernet frame holding IPv4/TCP; None for anything else."""
    if len(frame) < ETH_HEADER + 40 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    total = struct.unpack_from("!H", ip, 2)[0]
    sport, dport, seq, ack, offset_byte, flag_byte, win = struct.unpack_from("!HHIIBBH", ip, ihl)
    tcp_header = (offset_byte >> 4) * 4
    flags = tuple(name for name, bit in TCP_FLAG_BITS if flag_byte & bit)
    return Packet(
        t=t, sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
        payload=total - ihl - tcp_header, win=win,
        wscale=_window_scale(ip[ihl + 20 : ihl + tcp_header]) if "SYN" in flags else None,
        raw=bytes(ip),
    )  # fmt: skip


def _window_scale(options: bytes) -> int | None:
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        if kind == 3 and length == 3 and i + 2 < len(options):
            return options[i + 2]
        i += max(length, 2)
    return None


class Capture:
    """A packet socket on `lo` of the namespace it was opened in.

    It is created with protocol 0 and given ETH_P_ALL only in bind(): a socket created with a
    protocol is hooked at once, and re-binding it to an interface unhooks it first, which waits
    for an RCU grace period (~8-16 ms here). This way opening costs microseconds. Closing still
    waits for one grace period, so the helper closes old captures while it is idle.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self._sock.bind(("lo", ETH_P_ALL))
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> list[Packet]:
        """Every TCP packet queued so far (non-blocking)."""
        packets = []
        while True:
            try:
                frame, ancdata, _flags, address = self._sock.recvmsg(ETH_HEADER + SNAPLEN, 64)
            except BlockingIOError:
                return packets
            if address[2] != PACKET_OUTGOING:
                continue
            t = time.time()
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    t = seconds + nanos / 1e9
            packet = decode(frame, t)
            if packet is not None:
                packets.append(packet)

    def drops(self) -> int:
        """Packets the kernel dropped because this socket's queue was full (since last asked)."""
        _received, dropped = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return dropped
