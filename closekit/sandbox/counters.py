"""A namespace's TCP MIB counters (/proc/net/netstat and /proc/net/snmp) and their deltas.

The files are opened once inside each namespace and re-read with pread: an open /proc/net file
stays bound to the network namespace it was opened in. A snapshot is the files as read; they are
parsed only when two are compared, and only where they differ.
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


Snapshot = list[bytes]  # each file's text, as read
READ = 1 << 16


def snapshot(files: Iterable[int]) -> Snapshot:
    """The text of each of the given open MIB files."""
    return [_read_all(fd) for fd in files]


def deltas(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """The counters that moved between two snapshots of the same files, summed by name, sorted."""
    moved: dict[str, int] = {}
    for old_text, new_text in zip(before, after):
        if old_text == new_text:
            continue
        for (keys, old), (_keys_again, new) in zip(_tcp_lines(old_text), _tcp_lines(new_text)):
            if old == new:
                continue
            for key, a, b in zip(keys, old.split()[1:], new.split()[1:]):
                if key and a != b:
                    moved[key] = moved.get(key, 0) + int(b) - int(a)
    return {k: v for k, v in sorted(moved.items()) if v}


def _tcp_lines(text: bytes) -> list[tuple[tuple[str | None, ...], bytes]]:
    """(the keys of its header, its line of numbers) for each Tcp and TcpExt line pair of a MIB file."""
    lines = text.splitlines()
    return [(keys, numbers) for names, numbers in zip(lines[::2], lines[1::2]) if (keys := _keys(names))]


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
    """The whole file. A /proc seq file fills a read as far as it has text, so a short read is its end
    (one pread, where asking again until an empty read made the kernel print the file twice)."""
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, READ, offset)
        chunks.append(chunk)
        offset += len(chunk)
        if len(chunk) < READ:
            return b"".join(chunks)
