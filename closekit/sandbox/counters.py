"""A namespace's TCP MIB counters (/proc/net/netstat and /proc/net/snmp) and their deltas.

The files are opened once inside each namespace and re-read with pread: an open /proc/net file
stays bound to the network namespace it was opened in.
"""

from __future__ import annotations

import functools
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


Snapshot = list[tuple[tuple[str | None, ...], list[bytes]]]  # per MIB line pair: its keys, its raw numbers


def snapshot(files: Iterable[int]) -> Snapshot:
    """The Tcp/TcpExt lines of the given open MIB files, as read (parsed only when compared)."""
    taken: Snapshot = []
    for fd in files:
        lines = _read_all(fd).splitlines()
        for names, numbers in zip(lines[::2], lines[1::2]):
            keys = _keys(names)
            if keys:
                taken.append((keys, numbers.split()[1:]))
    return taken


def deltas(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """The counters that moved between two snapshots of the same files, summed by name, sorted."""
    moved: dict[str, int] = {}
    for (keys, old), (_keys_again, new) in zip(before, after):
        for key, a, b in zip(keys, old, new):
            if key and a != b:
                moved[key] = moved.get(key, 0) + int(b) - int(a)
    return {k: v for k, v in sorted(moved.items()) if v}


@functools.cache
def _keys(header: bytes) -> tuple[str | None, ...]:
    """'Group:Name' for each column of a header line (None for what is not a counter); cached, since
    the same few header lines come back on every read."""
    group, _, names = header.decode().partition(":")
    if group not in GROUPS:
        return ()
    keys = (f"{group}:{name}" for name in names.split())
    return tuple(None if key in _NOT_COUNTERS else key for key in keys)


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
