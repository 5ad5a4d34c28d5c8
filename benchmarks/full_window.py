"""What a send buffer takes while the peer's window is shut, on this kernel, in the lab's namespaces.

The full-window scenarios (closekit.library: FULL_BYTES, _FULL_OPTIONS) need the client's send() of
20,000 bytes to return while the server's 4 KB window is shut. This measures, for a few SO_SNDBUF
sizes: how many bytes a non-blocking writer gets in before the buffer is full (the server's receive
queue, the client's unsent bytes, and what the kernel charged for them, from SO_MEMINFO), and how
often close-full-window's own blocking send(20000) never returns with that buffer. Run it on each kernel:

    python benchmarks/full_window.py [RUNS]
    closekit kernels run 6.1 --python -- benchmarks/full_window.py [RUNS]
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import closekit
from closekit.scenario import Options
from closekit.steps import call, ioctl, sleep


def fill(sock):
    """Write without blocking until the buffer stays full; the bytes taken, sk_sndbuf, sk_wmem_queued."""
    import socket
    import struct
    import time

    sock.setblocking(False)
    total, idle = 0, 0
    while idle < 4:
        try:
            total += sock.send(b"x" * 65536)
            idle = 0
        except BlockingIOError:
            idle += 1
            time.sleep(0.25)
    meminfo = struct.unpack("9I", sock.getsockopt(socket.SOL_SOCKET, 55, 36))  # SO_MEMINFO
    return [total, meminfo[3], meminfo[5]]


def main(runs: int) -> None:
    print(f"Linux {os.uname().release}")
    for sndbuf in (16384, 32768):
        options = Options(server_rcvbuf=4096, client_sndbuf=sndbuf)
        probe = closekit.Scenario("full-window-probe", "fill the send buffer behind a shut window", options=options,
                                  steps=(call("client", fill), sleep("client", 0.3), ioctl("server", "SIOCINQ"),
                                         ioctl("client", "SIOCOUTQNSD")))  # fmt: skip
        trace = closekit.run(probe)
        filled, server_queue, unsent = (c.result for c in trace.syscalls() if c.call in ("call", "ioctl"))
        taken, sk_sndbuf, charged = json.loads(filled)  # a call's result comes back as its text
        hung = 0
        for _ in range(runs):
            scenario = dataclasses.replace(closekit.get("close-full-window"), options=options)
            try:
                closekit.run(scenario)
            except closekit.CloseKitError:
                hung += 1
        print(f"  SO_SNDBUF {sndbuf}: full at {taken:,} bytes ({server_queue:,} in the server's receive queue, "
              f"{unsent:,} unsent, charged {charged:,} of sk_sndbuf {sk_sndbuf:,}); "
              f"send({20000:,}) never returned in {hung} of {runs} runs")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
