"""The wire: a userspace relay between the TUN devices of the client's and the server's namespaces.

Every packet one endpoint's kernel sends comes out of its TUN device here; the wire notes it
(when, from whom), applies the scenario's link (delay, rate, rules) and writes it into the other
TUN device when it is due. Writing a packet into a TUN device makes the receiving kernel process
it before write() returns (tun_get_user -> netif_receive_skb), so after each delivery the
receiver's state and any immediate answer are already there to be seen: the lab looks at the
sockets after every packet, and knows that nothing is in flight when its queue is empty.

Why a relay and not veth with qdiscs: netem (delay, loss) is not in every kernel (not in this
one), and a qdisc cannot hold one chosen segment back and replay it later; a relay can, with the
real kernel on both ends.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Callable
from dataclasses import replace

from closekit.link import Link
from closekit.sandbox.packets import Packet, decode_ip

MAX_READ = 65536 + 256
PEER = {"client": "server", "server": "client"}


class Wire:
    """The relay for one experiment (its TUN descriptors belong to the helper and outlive it)."""

    def __init__(self, link: Link, tuns: dict[str, int]) -> None:
        self.link = link
        self.tuns = tuns
        self._due: list[tuple[float, int, Packet, bytes]] = []  # heap of (when, order, packet, bytes)
        self._order = itertools.count()
        self._held: dict[str, list[tuple[Packet, bytes]]] = {"client": [], "server": []}
        self._gated: list[tuple[Packet, bytes]] = []
        self._gate = False
        self._matches = [0] * len(link.rules)
        self._free = {"client": 0.0, "server": 0.0}  # when each direction's link is free again (rate)
        self.packets: list[Packet] = []  # every TCP packet taken, in order
        self.carried = 0  # packets of any kind written onwards

    def fileno(self, src: str) -> int:
        return self.tuns[src]

    # ---- taking packets -------------------------------------------------------------------
    def take(self, src: str, now: float, classify: Callable[[Packet], object]) -> list[Packet]:
        """Read everything `src`'s kernel has sent; returns the TCP packets among them, each passed to
        `classify` (which numbers its connection) before the link acts on it."""
        fresh = []
        while True:
            try:
                data = os.read(self.tuns[src], MAX_READ)
            except BlockingIOError:
                return fresh
            packet = decode_ip(data, now, src)
            if packet is None:
                if data[:1] and data[0] >> 4 == 4:  # IPv4 but not TCP (e.g. ICMP): carried unobserved
                    self._schedule(Packet(now, src, 0, 0, (), 0, 0, 0, 0, None, b""), data, now, observed=False)
                continue
            classify(packet)
            self.packets.append(packet)
            fresh.append(packet)
            if self._gate:
                self._gated.append((packet, data))
            else:
                self._apply(packet, data, now)

    def _apply(self, packet: Packet, data: bytes, now: float) -> None:
        rule = None
        for i, r in enumerate(self.link.rules):
            if r.matches(packet.src, packet.flags, packet.payload):
                self._matches[i] += 1
                if rule is None and r.applies_to(self._matches[i]):
                    rule = r
        action = rule.action if rule is not None else None
        if action == "drop":
            packet.fate = "dropped"
        elif action == "hold":
            packet.fate = "held"
            self._held[packet.src].append((packet, data))
        else:
            extra = rule.seconds if action == "delay" else 0.0  # type: ignore[union-attr]
            self._schedule(packet, data, now, extra=extra)
            if action == "duplicate":
                twin = replace(packet, copy=True, fate="duplicate", arrived=None)
                self.packets.append(twin)
                self._schedule(twin, data, now, extra=rule.seconds)  # type: ignore[union-attr]
            elif action == "copy":
                twin = replace(packet, copy=True, fate="held", arrived=None)
                self.packets.append(twin)
                self._held[packet.src].append((twin, data))

    def _schedule(self, packet: Packet, data: bytes, now: float, extra: float = 0.0, observed: bool = True) -> None:
        if packet.copy:
            packet.t = now + extra  # a copy leaves the wire, not its sender: when the wire injects it
        start = now
        if self.link.rate is not None:
            start = max(now, self._free[packet.src]) + len(data) * 8 / self.link.rate
            self._free[packet.src] = start
        if observed:
            packet.arrived = None  # on its way
        heapq.heappush(self._due, (start + self.link.delay + extra, next(self._order), packet, data))

    # ---- handing packets over -------------------------------------------------------------
    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def deliver(self, now: float) -> list[Packet]:
        """Write every packet whose time has come into the receiver's TUN device, in order."""
        delivered = []
        while self._due and self._due[0][0] <= now:
            _when, _order, packet, data = heapq.heappop(self._due)
            try:
                os.write(self.tuns[PEER[packet.src]], data)
            except OSError:
                packet.fate = "dropped"  # the receiving device refused it (it would on a real link too)
                continue
            self.carried += 1
            if packet.flags:
                packet.arrived = now
                if packet.fate == "held":
                    packet.fate = "delivered" if not packet.copy else "duplicate"
                delivered.append(packet)
        return delivered

    @property
    def in_flight(self) -> int:
        """Packets on their way (not those a rule holds back for a release() step)."""
        return len(self._due) + len(self._gated)

    def release(self, src: str, now: float) -> int:
        """Put the segments a hold or copy rule kept back from `src` on their way; returns how many."""
        held, self._held[src] = self._held[src], []
        for packet, data in held:
            self._schedule(packet, data, now)
        return len(held)

    # ---- steps that start together --------------------------------------------------------
    def close_gate(self) -> None:
        """Keep everything sent from now on until open_gate(): steps started together then cross."""
        self._gate = True

    def open_gate(self, now: float) -> None:
        self._gate = False
        gated, self._gated = self._gated, []
        for packet, data in gated:
            self._apply(packet, data, now)

    def drain(self) -> None:
        """Throw away whatever the TUN devices still hold (the experiment is over)."""
        for fd in self.tuns.values():
            while True:
                try:
                    os.read(fd, MAX_READ)
                except (BlockingIOError, OSError):
                    break
