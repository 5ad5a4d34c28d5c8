"""Watching a loopback with an AF_PACKET socket: how the lab sees segments where it has no wire of its own.

Only outgoing copies are kept (on loopback every packet is seen leaving and arriving), and only
the first SNAPLEN bytes of each: the headers are the lesson, not the payload. A classic BPF filter
on the socket keeps only the experiment's own segments (to or from its server's port): on the
host's loopback every other program's traffic passes too, and if it were queued, a busy loopback
would fill the socket's queue and the experiment's segments would be dropped with the rest.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time

from closekit.pcap import SNAPLEN
from closekit.sandbox.packets import Packet, decode_ip, discard_queued

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
ETH_HEADER = 14
SO_ATTACH_FILTER = 26
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the packet's direction
BATCH = 1024  # frames read at once (more wait for the next call): what one call holds stays bounded


class Capture:
    """A packet socket on `lo` of the namespace it was opened in.

    It is created with protocol 0 and given ETH_P_ALL only in bind(): a socket created with a
    protocol is hooked at once, and re-binding it to an interface unhooks it first, which waits
    for an RCU grace period (~8-16 ms here). This way opening costs microseconds. The lab keeps
    one capture for as long as it runs, drained between experiments.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self._sock.bind(("lo", ETH_P_ALL))
        self._sock.setblocking(False)
        self.port = -1
        self.follow(0)  # (no TCP segment has port 0: nothing is queued until an experiment's port is known)
        # SO_TIMESTAMPNS is on the real-time clock; the lab runs on the monotonic one
        self._offset = time.monotonic() - time.time()

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def follow(self, port: int) -> None:
        """Queue from now on only the outgoing IPv4 TCP segments to or from `port`, cut at SNAPLEN."""
        if port == self.port:
            return
        program = _only_port(port)
        code = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(code))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.port = port

    def drain(self, server: tuple[bytes, int] | None) -> list[Packet]:
        """The TCP packets queued so far to or from `server` (its packed IPv4 address and its port; None:
        none yet), up to BATCH frames' worth (non-blocking), `src` set by which end sent each."""
        packets: list[Packet] = []
        for _ in range(BATCH):  # on a loopback the endpoints send at full speed while it reads
            try:
                frame, ancdata, _flags, address = self._sock.recvmsg(ETH_HEADER + SNAPLEN, 64)
            except BlockingIOError:
                return packets
            if address[2] != PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue
            t = time.monotonic()
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    t = seconds + nanos / 1e9 + self._offset
            packet = decode_ip(frame[ETH_HEADER:], t)
            if packet is None or server is None:
                continue
            packet.src, packet.arrived = sender(packet, server), t
            if packet.src:
                packets.append(packet)
        return packets

    def forget(self) -> None:
        """Throw away whatever is queued and the count of drops (the experiment is over, nothing sends)."""
        discard_queued(self._sock)
        self.drops()

    def drops(self) -> int:
        """Packets the kernel dropped because this socket's queue was full (since last asked)."""
        _received, dropped = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return dropped


def sender(packet: Packet, server: tuple[bytes, int]) -> str:
    """ "server" for a packet from the server's address and port, "client" for one to them, "" for
    another. By port alone it is ambiguous on a loopback: the client, on an address of its own, may be
    given the server's port number (mode host, once in CI and once in 3,240 runs here: every segment read
    as the server's and the handshake was lost)."""
    if (packet.raw[12:16], packet.sport) == server:
        return "server"
    if (packet.raw[16:20], packet.dport) == server:
        return "client"
    return ""


def _only_port(port: int) -> bytes:
    """A classic BPF program (struct sock_filter[]) passing the first SNAPLEN bytes of outgoing,
    unfragmented IPv4 TCP frames whose source or destination port is `port`, and nothing else."""
    drop, keep = 13, 14
    ops = [  # (code, jump if true, jump if false, k): jumps count instructions after the next one
        (0x20, 0, 0, SKF_AD_PKTTYPE),  # ld  direction
        (0x15, 0, drop - 2, PACKET_OUTGOING),  # jeq outgoing
        (0x28, 0, 0, 12),  # ldh ethertype
        (0x15, 0, drop - 4, 0x0800),  # jeq IPv4
        (0x30, 0, 0, ETH_HEADER + 9),  # ldb protocol
        (0x15, 0, drop - 6, socket.IPPROTO_TCP),  # jeq TCP
        (0x28, 0, 0, ETH_HEADER + 6),  # ldh flags and fragment offset
        (0x45, drop - 8, 0, 0x1FFF),  # jset a fragment after the first
        (0xB1, 0, 0, ETH_HEADER),  # ldxb 4*([14]&0xf): the IP header's length
        (0x48, 0, 0, ETH_HEADER),  # ldh [x+14]: source port
        (0x15, keep - 11, 0, port),  # jeq port
        (0x48, 0, 0, ETH_HEADER + 2),  # ldh [x+16]: destination port
        (0x15, keep - 13, drop - 13, port),  # jeq port
        (0x06, 0, 0, 0),  # drop: ret 0
        (0x06, 0, 0, ETH_HEADER + SNAPLEN),  # keep: ret the bytes kept
    ]
    return b"".join(struct.pack("HBBI", *op) for op in ops)
