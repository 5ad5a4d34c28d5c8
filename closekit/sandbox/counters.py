"""A namespace's TCP MIB counters (/proc/net/netstat and /proc/net/snmp) and their deltas.

The files are opened once inside each namespace and re-read with pread: an open /proc/net file
stays bound to the network namespace it was opened in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

GROUPS = ("Tcp", "TcpExt")
# Gauges, not counters: a delta of these means nothing. And counters of how the receive path
# happened to batch its work (fast path taken, buffers coalesced), which vary with scheduling
# from run to run and say nothing about how a connection was closed.
_NOT_COUNTERS = {
    "Tcp:RtoAlgorithm", "Tcp:RtoMin", "Tcp:RtoMax", "Tcp:MaxConn", "Tcp:CurrEstab",
    "TcpExt:TCPRcvCoalesce", "TcpExt:TCPHPHits", "TcpExt:TCPHPAcks", "TcpExt:TCPBacklogCoalesce",
}  # fmt: skip


def read_counters(files: Iterable[int]) -> dict[str, int]:
    """Every Tcp/TcpExt counter in the given open MIB files, keyed 'Group:Name'."""
    values: dict[str, int] = {}
    for fd in files:
        lines = _read_all(fd).decode().splitlines()
        for names, numbers in zip(lines[::2], lines[1::2]):
            group, _, header = names.partition(":")
            if group not in GROUPS:
                continue
            for name, number in zip(header.split(), numbers.partition(":")[2].split()):
                key = f"{group}:{name}"
                if key not in _NOT_COUNTERS:
                    values[key] = values.get(key, 0) + int(number)
    return values


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that moved, sorted by name."""
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] != before.get(k, 0)}
