"""The namespace's TCP MIB counters (/proc/net/netstat and /proc/net/snmp) and their deltas."""

from __future__ import annotations

MIB_FILES = ("/proc/net/netstat", "/proc/net/snmp")
GROUPS = ("Tcp", "TcpExt")
# Gauges, not counters: a delta of these means nothing. And counters of how the receive path
# happened to batch its work (fast path taken, buffers coalesced), which vary with scheduling
# from run to run and say nothing about how a connection was closed.
_NOT_COUNTERS = {
    "Tcp:RtoAlgorithm", "Tcp:RtoMin", "Tcp:RtoMax", "Tcp:MaxConn", "Tcp:CurrEstab",
    "TcpExt:TCPRcvCoalesce", "TcpExt:TCPHPHits", "TcpExt:TCPHPAcks", "TcpExt:TCPBacklogCoalesce",
}  # fmt: skip


def read_counters() -> dict[str, int]:
    """Every Tcp/TcpExt counter of the current network namespace, keyed 'Group:Name'."""
    values: dict[str, int] = {}
    for path in MIB_FILES:
        with open(path) as f:
            lines = f.read().splitlines()
        for names, numbers in zip(lines[::2], lines[1::2]):
            group, _, header = names.partition(":")
            if group not in GROUPS:
                continue
            for name, number in zip(header.split(), numbers.partition(":")[2].split()):
                key = f"{group}:{name}"
                if key not in _NOT_COUNTERS:
                    values[key] = int(number)
    return values


def deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that moved, sorted by name."""
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] != before.get(k, 0)}
