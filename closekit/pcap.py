"""Reading and writing classic pcap files of raw IPv4 packets (LINKTYPE_RAW).

The format is two fixed headers, so it is written here directly: that keeps the original
length of packets captured with a snap length (tcpdump shows them as truncated, correctly).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

LINKTYPE_RAW = 101
SNAPLEN = 256
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_MAGIC = 0xA1B2C3D4


def write_pcap(path: str, packets: Iterable[tuple[float, bytes]]) -> int:
    """Write (time, IPv4 packet) pairs; packets cut at capture time keep their IP total length."""
    count = 0
    with open(path, "wb") as f:
        f.write(_FILE_HEADER.pack(_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for t, packet in packets:
            original = max(len(packet), struct.unpack_from("!H", packet, 2)[0]) if len(packet) >= 4 else len(packet)
            seconds = int(t)
            f.write(_RECORD_HEADER.pack(seconds, round((t - seconds) * 1e6), len(packet), original))
            f.write(packet)
            count += 1
    return count


def read_pcap(path: str) -> list[tuple[float, bytes]]:
    """The (time, packet) records of a pcap file written by write_pcap."""
    with open(path, "rb") as f:
        data = f.read()
    magic, *_rest, linktype = _FILE_HEADER.unpack_from(data)
    if magic != _MAGIC or linktype != LINKTYPE_RAW:
        raise ValueError(f"{path}: not a little-endian raw-IP pcap file")
    offset, records = _FILE_HEADER.size, []
    while offset < len(data):
        sec, usec, caplen, _orig = _RECORD_HEADER.unpack_from(data, offset)
        offset += _RECORD_HEADER.size
        records.append((sec + usec / 1e6, data[offset : offset + caplen]))
        offset += caplen
    return records
