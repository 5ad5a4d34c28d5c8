"""Which end sent a segment the loopback's packet socket saw (closekit.sandbox.capture): by address and
port, since on a loopback the client may be given the server's port number on an address of its own."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from closekit.sandbox.capture import Capture, sender
from closekit.sandbox.packets import decode_ip

SERVER, CLIENT, PORT = "127.3.0.2", "127.3.0.1", 40000


def _segment(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], 1000, 1, 5 << 4, 0x10, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))  # fmt: skip
    return ip + tcp


def _sender(src: tuple[str, int], dst: tuple[str, int]) -> str:
    packet = decode_ip(_segment(src, dst), 0.0)
    assert packet is not None
    return sender(packet, (socket.inet_aton(SERVER), PORT))


def test_a_segment_is_the_servers_only_from_its_address_and_port():
    """The client on its own address with the server's port number (mode host: once in CI, once in 3,240 runs here): by
    port alone both directions read as the server's, the SYN was no client's, and the handshake was lost."""
    assert _sender((CLIENT, PORT), (SERVER, PORT)) == "client"
    assert _sender((SERVER, PORT), (CLIENT, PORT)) == "server"
    assert _sender((CLIENT, 51000), (SERVER, PORT)) == "client"
    assert _sender((SERVER, PORT), (CLIENT, 51000)) == "server"
    assert _sender((CLIENT, PORT), (SERVER, PORT + 1)) == ""  # another connection on the loopback


@pytest.mark.live
def test_the_loopbacks_capture_tells_the_ends_apart_when_they_share_a_port_number():
    """A real handshake on this machine's loopback, the client bound to the server's port number."""
    try:
        capture = Capture()
    except PermissionError:
        pytest.skip("a packet socket on the host's loopback needs CAP_NET_RAW (the lab's mode host runs as root)")
    listener = socket.socket()
    listener.bind((SERVER, 0))
    port = listener.getsockname()[1]
    listener.listen()
    client = socket.socket()
    try:
        capture.follow(port)
        try:
            client.bind((CLIENT, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            pytest.skip(f"port {port} is taken on {CLIENT} by another program")
        client.connect((SERVER, port))
        accepted, _ = listener.accept()  # after the last ACK: the loopback queues each copy as it is sent
        seen = [(p.src, p.flags) for p in capture.drain((socket.inet_aton(SERVER), port))]
        accepted.close()
    finally:
        client.close()
        listener.close()
        capture.close()
    assert seen[:3] == [("client", ("SYN",)), ("server", ("SYN", "ACK")), ("client", ("ACK",))]
