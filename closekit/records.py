"""What a process of an experiment reports, defined once: each kind of record, its fields and their checks.

An endpoint process builds its records with `syscall()` and `signal()`; the lab checks what arrives
against the same fields (closekit.sandbox.protocol: the record is a sandboxed process's word); the
core turns a checked record into a trace event (closekit.sandbox.core); and a trace read back from
JSON checks its syscall and signal events with the same fields again (closekit.trace_schema). A field
added here is added everywhere at once.
"""

from __future__ import annotations

import errno as errno_module
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 4096  # characters of a call()'s result or any other string
CALLS = frozenset({
    "socket", "listen", "connect", "accept", "send", "recv", "close", "shutdown", "setsockopt",
    "getsockopt", "ioctl", "fcntl", "epoll_wait", "fork", "sleep", "exit", "call",
})  # fmt: skip
SIGNALS = frozenset({"SIGPIPE", "SIGURG", "SIGIO", "SIGALRM", "SIGXFSZ", "SIGXCPU"})
ERRNO_NAMES = frozenset(errno_module.errorcode.values())
_SCALAR = (int, float, str, bool, type(None))
REQUIRED = object()  # a Field's default: none, the field must be there


class Invalid(ValueError):
    """One value is not what its field allows: the message says what it must be."""


@dataclass(frozen=True)
class Field:
    """One field of a record: its name, its check (the value, or Invalid), and its value where an
    older trace left it out (required where none)."""

    name: str
    check: Callable[[Any], Any]
    default: Any = REQUIRED


def finite(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise Invalid("must be a finite number")
    return v


def seconds(v: Any) -> float:
    if finite(v) < 0:
        raise Invalid("must be a number of seconds, not negative")
    return v


def either_none(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid("must be true or false")
    return v


def one_of(names: frozenset[str] | tuple[str, ...], what: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in names:
            raise Invalid(f"is an unknown {what} ({str(v)[:40]!r})")
        return v

    return check


def arguments(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or len(v) > 8:
        raise Invalid("must be an object of at most 8 arguments")
    for k, x in v.items():
        if len(k) > 40 or not isinstance(x, _SCALAR) or (isinstance(x, str) and len(x) > 200):
            raise Invalid(f"must hold short scalars ({k[:40]!r} is not one)")
        if isinstance(x, float) and not math.isfinite(x):
            raise Invalid(f"must hold finite numbers ({k[:40]!r} is not one)")
    return dict(v)


def result(v: Any) -> Any:
    if isinstance(v, list):
        if len(v) > 16 or not all(isinstance(x, str) and len(x) <= 40 for x in v):
            raise Invalid("must be a short list of names when a list")
        return list(v)
    if isinstance(v, str) and len(v) > MAX_TEXT:
        raise Invalid(f"must have at most {MAX_TEXT} characters when a text")
    if isinstance(v, float) and not math.isfinite(v):
        raise Invalid("must be a finite number when a number")
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 1 << 63:
        raise Invalid("must be a count, not a number that large")
    if not isinstance(v, _SCALAR):
        raise Invalid("must be a number, a text, a list of names, true/false or null")
    return v


def tcp_port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 65536:
        raise Invalid("must be a TCP port")
    return v


# what a process reports, by kind ("kind" itself aside)
SYSCALL = (
    Field("t", finite),
    Field("call", one_of(CALLS, "call")),
    Field("args", arguments),
    Field("result", result),
    Field("errno", either_none(one_of(ERRNO_NAMES, "errno"))),
    Field("duration", seconds),
    Field("slept", either_none(flag), default=None),  # (None in traces recorded before it was kept)
    Field("queued", either_none(seconds), default=None),
    Field("delayed", either_none(seconds), default=None),
)
SIGNAL = (Field("t", finite), Field("signal", one_of(SIGNALS, "signal")))
PORT = (Field("role", one_of(("listener", "connection"), "role")), Field("port", tcp_port))
REPORTED = {"syscall": SYSCALL, "signal": SIGNAL, "port": PORT}
# id() of a kind's fields -> (those fields, kept so that the id stays theirs; the keys a record may have, "kind" too)
_NAMES: dict[int, tuple[tuple[Field, ...], frozenset[str]]] = {}


def check(fields: tuple[Field, ...], data: dict[str, Any], allowed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The record's fields checked (a field left out takes its default, where it has one). `allowed`:
    other keys that may be there (checked by the caller). Invalid names the first field that is wrong."""
    kept = _NAMES.get(id(fields))
    if kept is None or kept[0] is not fields:
        kept = _NAMES[id(fields)] = (fields, frozenset({"kind", *(f.name for f in fields)}))
    names = kept[1]
    if not data.keys() <= names | allowed:
        unknown = set(data) - names - allowed
        raise Invalid(f"has unknown keys: {', '.join(sorted(map(str, unknown))[:5])}")
    out = {}
    for f in fields:
        name = f.name
        if name not in data:
            if f.default is REQUIRED:
                raise Invalid(f"lacks {name}")
            out[name] = f.default
            continue
        try:
            out[name] = f.check(data[name])
        except Invalid as e:
            raise Invalid(f"{name} {e}") from None
    return out


def syscall(**values: Any) -> dict[str, Any]:
    """A syscall record as an endpoint sends it: every field of SYSCALL, by name."""
    missing = {f.name for f in SYSCALL} ^ set(values)
    if missing:
        raise TypeError(f"a syscall record has the fields of closekit.records.SYSCALL: {sorted(missing)} differ")
    return {"kind": "syscall", **values}


def signal(t: float, name: str) -> dict[str, Any]:
    return {"kind": "signal", "t": t, "signal": name}


def port(role: str, number: int) -> dict[str, Any]:
    """Which port the process's socket has: its listener's, or its connection's local one."""
    return {"kind": "port", "role": role, "port": number}
