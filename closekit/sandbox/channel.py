"""Framed messages between processes: pickles over SOCK_SEQPACKET sockets or over pipes."""

from __future__ import annotations

import os
import pickle
import socket
import struct
from typing import Any, BinaryIO

_LENGTH = struct.Struct("!I")
MAX_MESSAGE = 1 << 20


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected sockets that keep message boundaries (one message = one pickle)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_message(sock: socket.socket, message: Any) -> None:
    sock.send(pickle.dumps(message))


def recv_message(sock: socket.socket) -> Any:
    """The next message, or None when the other end has gone."""
    data = sock.recv(MAX_MESSAGE)
    return pickle.loads(data) if data else None


def write_frame(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(fd: int) -> Any:
    """Read one length-prefixed pickle from a pipe; raises EOFError when the writer has gone."""
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    return pickle.loads(_read_exactly(fd, length))


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise EOFError("the other end of the pipe has gone")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
