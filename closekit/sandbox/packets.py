"""IPv4/TCP headers of the packets the lab sees, and which connection of the experiment each belongs to."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from closekit.pcap import SNAPLEN

TCP_FLAG_BITS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))


@dataclass
class Packet:
    """One TCP/IPv4 packet on the wire: its header fields (absolute sequence numbers), who sent it,
    when it was taken (`t`) and when and how it reached the other side (`arrived`, `fate`)."""

    t: float  # monotonic clock
    src: str  # "client" or "server"
    sport: int
    dport: int
    flags: tuple[str, ...]
    seq: int
    ack: int
    payload: int
    win: int
    wscale: int | None  # window scale option (SYN segments only)
    raw: bytes  # the IPv4 packet, cut at SNAPLEN
    arrived: float | None = None
    fate: str = "delivered"
    conn: int = 0  # set by Connections.classify
    copy: bool = field(default=False)  # an extra copy the wire injected


def decode_ip(ip: bytes, t: float, src: str = "") -> Packet | None:
    """Decode an IPv4 packet holding TCP; None for anything else (or anything malformed)."""
    if len(ip) < 40 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    ihl = (ip[0] & 0x0F) * 4
    if ihl < 20 or len(ip) < ihl + 20:
        return None
    total = struct.unpack_from("!H", ip, 2)[0]
    sport, dport, seq, ack, offset_byte, flag_byte, win = struct.unpack_from("!HHIIBBH", ip, ihl)
    tcp_header = (offset_byte >> 4) * 4
    if tcp_header < 20 or ihl + tcp_header > len(ip):
        return None
    flags = tuple(name for name, bit in TCP_FLAG_BITS if flag_byte & bit)
    return Packet(
        t=t, src=src, sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
        payload=max(0, total - ihl - tcp_header), win=win,
        wscale=_window_scale(ip[ihl + 20 : ihl + tcp_header]) if "SYN" in flags else None,
        raw=bytes(ip[:SNAPLEN]),
    )  # fmt: skip


def discard_queued(sock: socket.socket) -> None:
    """Read and drop every packet queued on a non-blocking packet socket."""
    while True:
        try:
            sock.recv(1)
        except BlockingIOError:
            return


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


@dataclass
class Connection:
    """One connection of an experiment: its ports and each side's initial sequence number and scale."""

    number: int
    client_port: int
    server_port: int
    isn: dict[str, int] = field(default_factory=dict)
    scale: dict[str, int | None] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # endpoint -> end of the sequence space handed to it
    acked: dict[str, int] = field(default_factory=dict)  # endpoint -> the highest ACK it has sent
    reset: bool = False

    def owes_ack(self, endpoint: str) -> bool:
        """Was `endpoint` handed data or a FIN it has not acknowledged yet (a delayed ACK is due)?"""
        if self.reset or endpoint not in self.received:
            return False
        return _after(self.received[endpoint], self.acked.get(endpoint, self.received[endpoint] - 1))


class Connections:
    """Numbers the experiment's connections in the order of their first SYN. A SYN from the client
    on a 4-tuple seen before, with a new sequence number, is a new connection on the old 4-tuple."""

    def __init__(self) -> None:
        self.all: list[Connection] = []
        self.superseded: set[int] = set()  # connections whose 4-tuple a newer one took over
        self._by_ports: dict[tuple[int, int], Connection] = {}
        self._connects: dict[tuple[int, int], int] = {}  # connect() calls the client reported, by ports

    def classify(self, p: Packet) -> Connection | None:
        ports = (p.sport, p.dport) if p.src == "client" else (p.dport, p.sport)
        known = self._by_ports.get(ports)
        opening = "SYN" in p.flags and "ACK" not in p.flags and p.src == "client"
        if opening and (known is None or known.isn.get("client") not in (None, p.seq)):
            if known is not None:
                self.superseded.add(known.number)
            known = Connection(len(self.all) + 1, *ports)
            self.all.append(known)
            self._by_ports[ports] = known
        if known is None:
            return None
        if "SYN" in p.flags:
            known.isn.setdefault(p.src, p.seq)
            known.scale.setdefault(p.src, p.wscale)
        p.conn = known.number
        return known

    def get(self, number: int) -> Connection:
        return self.all[number - 1]

    def connected(self, client_port: int, server_port: int) -> None:
        """The client reported a connect() on these ports. Where no packet is seen (no capture) this is
        how the lab learns of a connection; where packets are seen, its SYN has made it already."""
        ports = (client_port, server_port)
        self._connects[ports] = self._connects.get(ports, 0) + 1
        if self._connects[ports] > sum(1 for c in self.all if (c.client_port, c.server_port) == ports):
            known = self._by_ports.get(ports)
            if known is not None:
                self.superseded.add(known.number)
            self._by_ports[ports] = Connection(len(self.all) + 1, *ports)
            self.all.append(self._by_ports[ports])

    def sent(self, p: Packet) -> None:
        """Note what a packet says about its sender's acknowledgements (a reset ends them all)."""
        if not p.conn or p.conn in self.superseded:
            return
        c = self.get(p.conn)
        if "RST" in p.flags:
            c.reset = True
        elif "ACK" in p.flags and (p.src not in c.acked or _after(p.ack, c.acked[p.src])):
            c.acked[p.src] = p.ack

    def delivered(self, p: Packet) -> None:
        """Note the sequence space a packet handed to its receiver (data, and one for SYN or FIN)."""
        if not p.conn or p.conn in self.superseded or p.copy:
            return
        c = self.get(p.conn)
        dst = "server" if p.src == "client" else "client"
        end = (p.seq + p.payload + ("FIN" in p.flags) + ("SYN" in p.flags)) % (1 << 32)
        if (p.payload or "FIN" in p.flags) and (dst not in c.received or _after(end, c.received[dst])):
            c.received[dst] = end

    def acks_owed(self) -> int:
        return sum(c.owes_ack(e) for c in self.all if c.number not in self.superseded for e in ("client", "server"))

    def relative(self, p: Packet) -> tuple[int, int, int]:
        """(seq, ack, window) as tcpdump prints them: relative to each side's ISN, window scaled."""
        c = self.get(p.conn)
        dst = "server" if p.src == "client" else "client"
        seq = (p.seq - c.isn.get(p.src, p.seq)) % (1 << 32)
        ack = (p.ack - c.isn.get(dst, p.ack)) % (1 << 32) if "ACK" in p.flags else 0
        scaling = all(c.scale.get(s) is not None for s in ("client", "server"))
        win = p.win if ("SYN" in p.flags or not scaling) else p.win << (c.scale[p.src] or 0)
        return seq, ack, win


def _after(a: int, b: int) -> bool:
    """Sequence number a comes after b (modulo 2**32)."""
    return 0 < (a - b) % (1 << 32) < (1 << 31)
