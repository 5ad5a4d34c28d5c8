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

import errno as errno_module
import json
import math
import os
import socket
import struct
from typing import Any, BinaryIO

from closekit.errors import ProtocolError

MAX_ENDPOINT_MESSAGE = 64 * 1024
MAX_RECORDS = 256  # in one reply
MAX_TEXT = 4096  # characters of a call()'s result or any other string
MAX_FRAME = 64 * 1024 * 1024  # helper <-> notebook
# Segments one experiment may put on the wire: the helper holds each (~2 KB with its trace event) until
# the trace is sent, and a trace's JSON carries ~640 bytes of each, so this keeps both within MAX_FRAME.
# A 16 MiB send() into the smallest receive buffer takes ~58,000.
MAX_SEGMENTS = 75_000
_LENGTH = struct.Struct("!I")
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_CREDENTIALS = socket.CMSG_SPACE(_UCRED.size)

CALLS = frozenset({
    "socket", "listen", "connect", "accept", "send", "recv", "close", "shutdown", "setsockopt",
    "getsockopt", "ioctl", "fcntl", "epoll_wait", "fork", "sleep", "exit", "call",
})  # fmt: skip
SIGNALS = frozenset({"SIGPIPE", "SIGURG", "SIGIO", "SIGALRM", "SIGXFSZ", "SIGXCPU"})
ERRNO_NAMES = frozenset(errno_module.errorcode.values())
_SCALAR = (int, float, str, bool, type(None))


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
    hold one {"message"}) or "limit" (a resource limit was hit).
    Times must lie within [t_low, t_high] (the experiment so far, on the monotonic clock).
    """
    if not isinstance(message, dict) or message.get("kind") not in ("done", "hello", "started", "crash", "limit"):
        raise ProtocolError(f"the {who} process sent a message of no known kind")
    kind = message["kind"]
    if kind in ("hello", "started"):
        return kind, []
    if kind in ("crash", "limit"):
        text = message.get("message")
        if not isinstance(text, str):
            raise ProtocolError(f"the {who} process sent a {kind} message without text")
        return kind, [{"message": text[:MAX_TEXT]}]
    records = message.get("records")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise ProtocolError(f"the {who} process sent a reply without a list of at most {MAX_RECORDS} records")
    return kind, [_check_record(r, who, t_low, t_high) for r in records]


def _check_record(r: Any, who: str, t_low: float, t_high: float) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise ProtocolError(f"the {who} process sent a record that is not an object")
    kind = r.get("kind")
    if kind == "syscall":
        _keys(r, {"kind", "call", "args", "result", "errno", "t", "duration", "slept", "queued"}, who)
        if not isinstance(r["slept"], bool):
            raise ProtocolError(f"the {who} process reported a call without saying whether it slept")
        if r["queued"] is not None and (not _finite(r["queued"]) or not 0 <= r["queued"] <= r["duration"]):
            raise ProtocolError(f"the {who} process reported an impossible time waiting for a CPU")
        if r["call"] not in CALLS:
            raise ProtocolError(f"the {who} process reported an unknown call {str(r['call'])[:40]!r}")
        _time(r["t"], t_low, t_high, who)
        if not _finite(r["duration"]) or not 0 <= r["duration"] <= t_high - t_low + 1:
            raise ProtocolError(f"the {who} process reported an impossible duration")
        _args(r["args"], who)
        _result(r["result"], who)
        if r["errno"] is not None and r["errno"] not in ERRNO_NAMES:
            raise ProtocolError(f"the {who} process reported an unknown errno {str(r['errno'])[:40]!r}")
    elif kind == "signal":
        _keys(r, {"kind", "t", "signal"}, who)
        _time(r["t"], t_low, t_high, who)
        if r["signal"] not in SIGNALS:
            raise ProtocolError(f"the {who} process reported an unknown signal")
    elif kind == "port":
        _keys(r, {"kind", "role", "port"}, who)
        if r["role"] not in ("listener", "connection") or not _int(r["port"]) or not 0 < r["port"] < 65536:
            raise ProtocolError(f"the {who} process reported an impossible port")
    else:
        raise ProtocolError(f"the {who} process sent a record of unknown kind")
    return r


def _keys(r: dict[str, Any], keys: set[str], who: str) -> None:
    if set(r) != keys:
        raise ProtocolError(f"the {who} process sent a {r.get('kind')} record with keys {sorted(r)[:10]}")


def _time(t: Any, low: float, high: float, who: str) -> None:
    if not _finite(t) or not low <= t <= high:
        raise ProtocolError(f"the {who} process reported a time outside the experiment")


def _args(args: Any, who: str) -> None:
    if not isinstance(args, dict) or len(args) > 8:
        raise ProtocolError(f"the {who} process sent call arguments that are not a small object")
    for k, v in args.items():
        if len(k) > 40 or not isinstance(v, _SCALAR) or (isinstance(v, str) and len(v) > 200):
            raise ProtocolError(f"the {who} process sent a call argument that is not a short scalar")
        if isinstance(v, float) and not math.isfinite(v):
            raise ProtocolError(f"the {who} process sent a call argument that is not a finite number")


def _result(result: Any, who: str) -> None:
    if isinstance(result, list):
        if len(result) > 16 or not all(isinstance(x, str) and len(x) <= 40 for x in result):
            raise ProtocolError(f"the {who} process sent a list result that is not a short list of names")
    elif isinstance(result, str):
        if len(result) > MAX_TEXT:
            raise ProtocolError(f"the {who} process sent a result of more than {MAX_TEXT} characters")
    elif isinstance(result, float):
        if not math.isfinite(result):
            raise ProtocolError(f"the {who} process sent a result that is not a finite number")
    elif isinstance(result, int) and not isinstance(result, bool):
        if abs(result) > 1 << 63:
            raise ProtocolError(f"the {who} process sent a result too large to be a count")
    elif not isinstance(result, bool | type(None)):
        raise ProtocolError(f"the {who} process sent a result of no allowed type")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
