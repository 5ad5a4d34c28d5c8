"""Download a trace's packets from a notebook: a link that hands the browser a pcap file.

>>> from closekit.download import pcap_link
>>> pcap_link(closekit.run("linger-zero"))     # a link: linger-zero.pcap (7 packets) — open it in Wireshark

The file is carried in the link itself (a `data:` URL with the `download` attribute), so nothing is
written next to the notebook and the link works wherever the notebook runs; with a snap length of
256 bytes a pcap stays small (a million-byte transfer is some tens of kilobytes). `save=` writes it to
a file as well, for `tcpdump -r`.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
from dataclasses import dataclass

from closekit.errors import CloseKitError
from closekit.trace import Trace

PCAP_MIME = "application/vnd.tcpdump.pcap"


@dataclass(frozen=True)
class PcapDownload:
    """A trace's packets as a pcap file, shown in a notebook as a download link."""

    filename: str
    data: bytes
    packets: int

    def _repr_html_(self) -> str:
        href = f"data:{PCAP_MIME};base64,{base64.b64encode(self.data).decode()}"
        name = html.escape(self.filename)
        return (
            f'<a download="{name}" href="{href}" class="closekit-pcap">⬇ {name}</a> '
            f"<small>({self.packets} packets: open it in Wireshark, or <code>tcpdump -r {name}</code>)</small>"
        )

    def __repr__(self) -> str:
        return f"{self.filename}: {self.packets} packets (a download link in a notebook)"


def pcap_link(trace: Trace, filename: str | None = None, save: str | os.PathLike[str] | None = None) -> PcapDownload:
    """The captured packets of `trace` as a download link (`filename` defaults to the scenario's name).

    Raises CloseKitError when the trace has no packets (a mode without capture).
    """
    if not isinstance(trace, Trace):
        raise CloseKitError(f"pcap_link() takes a Trace (what closekit.run returns), not {type(trace).__name__}")
    if not trace.captured:
        raise CloseKitError(f"no packets to download: this trace ran in mode {trace.mode}, without capture")
    name = filename or re.sub(r"[^\w.-]+", "-", trace.scenario) + ".pcap"
    with tempfile.TemporaryDirectory(prefix="closekit-pcap-") as folder:
        path = os.path.join(folder, "trace.pcap")
        count = trace.to_pcap(path)
        with open(path, "rb") as f:
            data = f.read()
    if save is not None:
        with open(save, "wb") as f:
            f.write(data)
    return PcapDownload(name, data, count)


__all__ = ["PcapDownload", "pcap_link"]
