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
from collections.abc import Callable, Mapping
from dataclasses import replace

from closekit.link import Link
from closekit.sandbox.packets import Packet, decode_ip
from closekit.sandbox.stamps import SendStamps

MAX_READ = 65536 + 256
BATCH = 1024  # packets read at once: a sender as fast as the reader must not grow one read without end
PEER = {"client": "server", "server": "client"}


class Wire:
    """The relay for one experiment (its TUN descriptors belong to the helper and outlive it)."""

    def __init__(
        self,
        link: Link,
        tuns: dict[str, int],
        stamps: Mapping[str, SendStamps | None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`stamps`: the kernel's send times per sender (else a packet is timed when read); `clock`:
        read just before each packet is written, as its arrival (else the `now` deliver() is given)."""
        self.link = link
        self.tuns = tuns
        self.stamps = dict(stamps or {})
        self.clock = clock
        self._due: list[tuple[float, int, Packet, bytes]] = []  # heap of (when, order, packet, bytes)
        self._order = itertools.count()
        self._held: dict[str, list[tuple[Packet, bytes]]] = {"client": [], "server": []}
        self._gated: list[tuple[Packet, bytes]] = []
        self._gate = False
        self._matches = [0] * len(link.rules)
        self._free = {"client": 0.0, "server": 0.0}  # when each direction's link is free again (rate)
        self._last = {"client": float("-inf"), "server": float("-inf")}  # latest arrival from each sender
        self.packets: list[Packet] = []  # every TCP packet taken, in order
        self.carried = 0  # packets of any kind written onwards
        self.late = 0.0  # the longest a packet waited past its time (the relay kept from the CPU)

    def fileno(self, src: str) -> int:
        return self.tuns[src]

    # ---- taking packets -------------------------------------------------------------------
    def take(self, src: str, now: float, classify: Callable[[Packet], object]) -> list[Packet]:
        """Read what `src`'s kernel has sent (up to BATCH packets); returns the TCP packets among them,
        each passed to `classify` (which numbers its connection) before the link acts on it, and the
        copies the link made of them (a duplicate or copy rule), after their originals."""
        batch = []
        while len(batch) < BATCH:
            try:
                batch.append(os.read(self.tuns[src], MAX_READ))
            except BlockingIOError:
                break
        stamps = self.stamps.get(src)
        if stamps is not None and batch:
            stamps.drain()  # every packet read has its copy queued already (taps see it first)
        first = len(self.packets)
        for data in batch:
            packet = decode_ip(data, now if stamps is None else stamps.sent(data, now), src)
            if packet is None:
                if data[:1] and data[0] >> 4 == 4:  # IPv4 but not TCP (e.g. ICMP): carried unobserved
                    self._schedule(Packet(now, src, 0, 0, (), 0, 0, 0, 0, None, b""), data, now, observed=False)
                continue
            classify(packet)
            self.packets.append(packet)
            if self._gate:
                self._gated.append((packet, data))
            else:
                self._apply(packet, data, now)
        return self.packets[first:]

    def _apply(self, packet: Packet, data: bytes, now: float, late: bool = False) -> None:
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
            extra = 0.0
            if action == "delay":
                packet.fate, extra = "delayed", rule.seconds  # type: ignore[union-attr]
            self._schedule(packet, data, now, extra=extra, late=late)
            if action == "duplicate":
                twin = replace(packet, copy=True, fate="duplicate", arrived=None)
                self.packets.append(twin)
                self._schedule(twin, data, now, extra=rule.seconds)  # type: ignore[union-attr]
            elif action == "copy":
                twin = replace(packet, copy=True, fate="held", arrived=None)
                self.packets.append(twin)
                self._held[packet.src].append((twin, data))

    def _schedule(
        self, packet: Packet, data: bytes, now: float, extra: float = 0.0, observed: bool = True, late: bool = False
    ) -> None:
        """Put a packet on its way. The link's delay runs from when the sender's kernel sent it (a relay
        kept from the CPU for a while does not lengthen the link), or for a packet a rule or the gate
        held back (`late`), from now. A packet arrives when the wire writes it into the receiver's
        device (never before what the link delivered ahead of it): on a link without delay, the
        microseconds after it left that the relay took. Its arrival then comes after whatever the
        receiver sent before it was written, as it did in the receiving kernel."""
        if packet.copy:
            packet.t = now + extra  # a copy leaves the wire, not its sender: when the wire injects it
        start = now if late else min(packet.t, now)
        if self.link.rate is not None:
            start = max(start, self._free[packet.src]) + len(data) * 8 / self.link.rate
            self._free[packet.src] = start
        if observed:
            packet.arrived = None  # on its way
        heapq.heappush(self._due, (start + self.link.delay + extra, next(self._order), packet, data))

    # ---- handing packets over -------------------------------------------------------------
    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def deliver(self, now: float, after: Callable[[Packet], object] | None = None) -> list[Packet]:
        """Write every packet whose time has come into the receiver's TUN device, in order; `after` is
        called with each TCP packet as soon as it is written (before the next one), so what is seen
        then is that packet's doing, and with one the receiving device refused (its fate: dropped)."""
        delivered = []
        while self._due and self._due[0][0] <= now:
            when, _order, packet, data = heapq.heappop(self._due)
            # taken before write(): the receiving kernel reacts inside it
            arrived = now if self.clock is None else self.clock()
            self.late = max(self.late, arrived - when)
            arrived = self._last[packet.src] = max(arrived, self._last[packet.src])
            try:
                os.write(self.tuns[PEER[packet.src]], data)
            except OSError:
                packet.fate = "dropped"  # the receiving device refused it (it would on a real link too)
                if packet.flags and after is not None:
                    after(packet)
                continue
            self.carried += 1
            if packet.flags:
                packet.arrived = arrived
                if packet.fate == "held":
                    packet.fate = "released" if not packet.copy else "duplicate"
                delivered.append(packet)
                if after is not None:
                    after(packet)
        return delivered

    @property
    def in_flight(self) -> int:
        """Packets on their way (not those a rule holds back for a release() step)."""
        return len(self._due) + len(self._gated)

    def release(self, src: str, now: float) -> int:
        """Put the segments a hold or copy rule kept back from `src` on their way; returns how many."""
        held, self._held[src] = self._held[src], []
        for packet, data in held:
            self._schedule(packet, data, now, late=True)
        return len(held)

    # ---- steps that start together --------------------------------------------------------
    def close_gate(self) -> None:
        """Keep everything sent from now on until open_gate(): steps started together then cross."""
        self._gate = True

    def open_gate(self, now: float) -> list[Packet]:
        """Let the kept packets go, the link acting on them now (what it would simply have delivered is
        "gated": the scenario's at_once held it back); returns the copies the link made of them."""
        self._gate = False
        gated, self._gated = self._gated, []
        first = len(self.packets)
        for packet, data in gated:
            self._apply(packet, data, now, late=True)
            if packet.fate == "delivered":
                packet.fate = "gated"
        return self.packets[first:]

    def drain(self) -> None:
        """Throw away whatever the TUN devices still hold (the experiment is over)."""
        for stamps in self.stamps.values():
            if stamps is not None:
                stamps.forget()
        for fd in self.tuns.values():
            while True:
                try:
                    os.read(fd, MAX_READ)
                except (BlockingIOError, OSError):
                    break
