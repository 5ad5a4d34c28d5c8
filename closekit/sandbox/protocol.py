"""Messages across the lab's boundaries: JSON only, size-limited, checked on arrival.

Two boundaries carry data a sandboxed process could have forged:
- endpoint -> helper: each endpoint process runs scenario steps and students' functions, so what
  it reports (its syscalls and their results) is parsed as JSON within MAX_ENDPOINT_MESSAGE bytes
  and checked against the record schema below before it enters a trace;
- helper -> notebook: the helper reads those records and the wire, so its replies are JSON frames
  too, and the notebook rebuilds the Trace with Trace.from_dict, which checks every field.
Nothing that crosses is executed or unpickled: at worst a student's function makes its own
experiment's trace say something wrong.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any, BinaryIO

from closekit import records
from closekit.errors import ProtocolError

MAX_ENDPOINT_MESSAGE = 64 * 1024
MAX_RECORDS = 256  # in one reply
MAX_NAME = 200  # characters of a function's name in a limit reply
# The sandbox's limits an endpoint reports by name (closekit.sandbox.core words them): a scenario's function
# that was refused a fork(), ran out of memory, filled the private /tmp, wrote too large a file or returned
# too long a result; and a fork line the process limit refused.
LIMITS = ("processes", "memory", "tmp", "file_size", "result_size", "fork")
MAX_FRAME = 64 * 1024 * 1024  # helper <-> notebook
# Segments one experiment may put on the wire: the helper holds each (~2 KB with its trace event) until
# the trace is sent, and a trace's JSON carries ~640 bytes of each, so this keeps both within MAX_FRAME.
# A 16 MiB send() into the smallest receive buffer takes ~58,000.
MAX_SEGMENTS = 75_000
_LENGTH = struct.Struct("!I")
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_CREDENTIALS = socket.CMSG_SPACE(_UCRED.size)


# ---- sockets between the helper and the endpoints (SOCK_SEQPACKET: one datagram, one message) ----
def channel_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)


def send_message(sock: socket.socket, message: Any) -> None:
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_ENDPOINT_MESSAGE:
        raise ProtocolError(f"a message of {len(data)} bytes is over the limit of {MAX_ENDPOINT_MESSAGE}")
    sock.send(data)


def recv_message(sock: socket.socket, who: str, with_pid: bool = False) -> Any:
    """The next message from `who`, or None when it has gone. Oversized or malformed: ProtocolError.

    `with_pid` (the socket has SO_PASSCRED on): (message, pid) instead, the sender's pid as the
    kernel vouches for it (SCM_CREDENTIALS, in this process's PID namespace; None if absent)."""
    data, ancillary, flags, _address = sock.recvmsg(MAX_ENDPOINT_MESSAGE, _CREDENTIALS if with_pid else 0)
    if flags & socket.MSG_TRUNC:
        raise ProtocolError(f"the {who} process sent a message larger than {MAX_ENDPOINT_MESSAGE // 1024} KiB")
    message = parse_json(data, who) if data else None
    if not with_pid:
        return message
    credentials = [d for level, kind, d in ancillary if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)]
    pid = _UCRED.unpack(credentials[0])[0] if credentials and len(credentials[0]) == _UCRED.size else None
    return message, pid


def parse_json(data: bytes, who: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError(f"the {who} process sent something that is not a JSON message") from None


# ---- pipes between the notebook and the helper: length-prefixed JSON frames --------------------
def write_frame(stream: BinaryIO, message: Any) -> None:
    """Send one frame; ProtocolError, with nothing sent, for one over MAX_FRAME."""
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_FRAME:
        raise ProtocolError(
            f"a message of {len(data)} bytes is over the limit of {MAX_FRAME} between the lab and the notebook"
        )
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(fd: int, who: str = "helper") -> Any:
    """One frame from a pipe; EOFError when the writer has gone, ProtocolError for a bad frame."""
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    if length > MAX_FRAME:
        raise ProtocolError(f"the lab's {who} announced a message of {length} bytes, over the limit of {MAX_FRAME}")
    return parse_json(_read_exactly(fd, length), f"lab's {who}")


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("the other end of the pipe has gone")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ---- what an endpoint may report --------------------------------------------------------------
def check_reply(message: Any, who: str, t_low: float, t_high: float) -> tuple[str, list[dict[str, Any]]]:
    """(kind, records) of an endpoint's reply, every record checked; ProtocolError otherwise.

    kind is "done" (the records of one line), "started" (it is making the call of the last line it
    was handed), "hello" (a forked child is ready), "crash" (the endpoint's own code failed: records
    hold one {"message"}) or "limit" (a resource limit was hit: records hold one {"limit", "function",
    "length"}, `limit` one of LIMITS).
    Times must lie within [t_low, t_high] (the experiment so far, on the monotonic clock).
    """
    if not isinstance(message, dict) or message.get("kind") not in ("done", "hello", "started", "crash", "limit"):
        raise ProtocolError(f"the {who} process sent a message of no known kind")
    kind = message["kind"]
    if kind in ("hello", "started"):
        return kind, []
    if kind == "crash":
        text = message.get("message")
        if not isinstance(text, str):
            raise ProtocolError(f"the {who} process sent a crash message without text")
        return kind, [{"message": text[: records.MAX_TEXT]}]
    if kind == "limit":
        return kind, [_check_limit(message, who)]
    reported = message.get("records")
    if not isinstance(reported, list) or len(reported) > MAX_RECORDS:
        raise ProtocolError(f"the {who} process sent a reply without a list of at most {MAX_RECORDS} records")
    return kind, [_check_record(r, who, t_low, t_high) for r in reported]


def _check_limit(message: dict[str, Any], who: str) -> dict[str, Any]:
    """A limit reply: which of LIMITS, the function that hit it (or None) and a result's length (or None)."""
    limit, function, length = message.get("limit"), message.get("function"), message.get("length")
    if (
        set(message) != {"kind", "limit", "function", "length"}
        or limit not in LIMITS
        or not (function is None or (isinstance(function, str) and len(function) <= MAX_NAME))
        or not (length is None or (type(length) is int and length >= 0))
    ):
        raise ProtocolError(f"the {who} process sent a limit message of no known form")
    return {"limit": limit, "function": function, "length": length}


def _check_record(r: Any, who: str, t_low: float, t_high: float) -> dict[str, Any]:
    """One record against its kind's fields (closekit.records), all of which an endpoint sends; its
    times within the experiment so far."""
    kind = r.get("kind") if isinstance(r, dict) else None
    if not isinstance(kind, str) or kind not in records.REPORTED:
        raise ProtocolError(f"the {who} process sent a record of unknown kind")
    fields = records.REPORTED[kind]
    if set(r) != {"kind", *(f.name for f in fields)}:
        raise ProtocolError(f"the {who} process sent a {kind} record with keys {sorted(map(str, r))[:10]}")
    try:
        checked = records.check(fields, r)
    except records.Invalid as e:
        raise ProtocolError(f"the {who} process sent a {kind} record whose {e}") from None
    if kind == "syscall":
        if checked["slept"] is None:
            raise ProtocolError(f"the {who} process reported a call without saying whether it slept")
        if checked["queued"] is not None and checked["queued"] > checked["duration"]:
            raise ProtocolError(f"the {who} process reported an impossible time waiting for a CPU")
        if checked["duration"] > t_high - t_low + 1:
            raise ProtocolError(f"the {who} process reported an impossible duration")
    if "t" in checked and not t_low <= checked["t"] <= t_high:
        raise ProtocolError(f"the {who} process reported a time outside the experiment")
    return {"kind": kind, **checked}
