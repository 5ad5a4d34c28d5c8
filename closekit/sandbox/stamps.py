"""When a packet really left its kernel: a tap on the TUN device that timestamps every outgoing packet.

The wire reads a packet from a TUN device some microseconds after the kernel sent it, and in
that time the sending process may already have returned from the call that sent it (connect()
returns once its ACK is out, close() once its FIN is). Timed by the wire, the packet would then
sometimes come after the return and sometimes before it. An AF_PACKET socket bound to the
device gets a copy of each packet before the device does (dev_queue_xmit_nit runs before the
driver's xmit), stamped by the kernel at that moment, in the sender's own context. The wire
pairs each packet it reads with its copy, first in first out, by the packet's first bytes.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time
from collections import deque

from closekit.sandbox.packets import discard_queued

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
KEEP = 96  # bytes of each copy kept: IP and TCP headers with options, enough to tell packets apart
RCVBUF = 1 << 22
# copies taken in at once: four times what the wire reads at once (its BATCH), since copies of packets the
# device drops (a flood overflowing its queue) reach the tap too; the rest wait in the socket's bounded queue
BATCH = 4096

# cBPF: keep the first KEEP bytes of outgoing packets, nothing of the packets the wire writes in
_FILTER = (
    (0x20, 0, 0, 0xFFFFF004),  # ld [SKF_AD_OFF + SKF_AD_PKTTYPE]
    (0x15, 0, 1, PACKET_OUTGOING),  # jeq #PACKET_OUTGOING, keep, drop
    (0x06, 0, 0, KEEP),  # ret #KEEP
    (0x06, 0, 0, 0),  # ret #0
)


class SendStamps:
    """The kernel's send time of each packet leaving one TUN device (opened in its namespace)."""

    def __init__(self, ifindex: int) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in _FILTER))
            fprog = struct.pack("HL", len(_FILTER), ctypes.addressof(program))
            self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:  # the namespace's own root may pass net.core.rmem_max
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            # protocol given only here: a socket hooked at creation would be unhooked by bind (an RCU wait)
            self._sock.bind((socket.if_indextoname(ifindex), ETH_P_ALL))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        self._queue: deque[tuple[bytes, float]] = deque()

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> None:
        """Take in the copies queued so far (at most BATCH), each with its time on the monotonic clock."""
        offset = clock_offset()
        for _ in range(BATCH):
            try:
                head, ancdata, _flags, _address = self._sock.recvmsg(KEEP, 64)
            except BlockingIOError:
                return
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    self._queue.append((head, seconds + nanos / 1e9 + offset))

    def sent(self, packet: bytes, fallback: float) -> float:
        """When `packet` (just read from the device) left the kernel; `fallback` if its copy is
        missing (the tap's queue overflowed). Copies of packets the device dropped are skipped."""
        head = packet[:KEEP]
        while self._queue:
            copy, t = self._queue.popleft()
            if copy == head:
                return t
        return fallback

    def forget(self) -> None:
        """Drop every copy (the experiment is over; its packets are gone)."""
        discard_queued(self._sock)
        self._queue.clear()


def clock_offset() -> float:
    """The monotonic clock less the real-time clock the kernel stamps packets with. Read between two
    readings of the monotonic clock close together: a process preempted between the two readings
    (a busy machine) would otherwise be off by as long as it waited, enough to put a packet before
    the call that sent it."""
    best = (float("inf"), 0.0)
    for _ in range(5):
        before = time.monotonic()
        real = time.time()
        after = time.monotonic()
        best = min(best, (after - before, (before + after) / 2 - real))
        if best[0] < 20e-6:
            break
    return best[1]
