"""Checking trace data field by field before a Trace is built from it.

Trace data reaches a notebook from the lab's helper (which read it from sandboxed processes and
the wire) and from JSON files recorded elsewhere. Either way it is data, never code: it is
checked against the schema the README documents, with sizes bounded, and the first thing wrong
is named.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from closekit import records, tcp
from closekit.errors import CloseKitError, TraceFormatError
from closekit.scenario import MAX_DESCRIPTION

MAX_EVENTS = 500_000
MAX_JSON = 64 * 1024 * 1024  # characters of a trace's JSON text (as the lab's frames to the notebook)
MAX_DIGITS = 30  # of a number in it (Python would spend quadratic time on a long one)
TOP_KEYS = {"scenario", "description", "kernel", "mode", "unobserved", "counters", "link", "settings",
            "processes", "setup_until", "disturbed", "events"}  # fmt: skip
STATES = tcp.STATES
# what a process reported (closekit.records), with the process that reported it and whether its word is
# all there is (forgeable); and what the lab itself saw
_REPORTED = {"syscall": records.SYSCALL, "signal": records.SIGNAL}
_FIELDS = {
    **{kind: {"kind", "side", "forgeable", *(f.name for f in fields)} for kind, fields in _REPORTED.items()},
    "segment": {"kind", "t", "src", "flags", "seq", "ack", "len", "win", "conn", "arrived", "fate", "raw"},
    "state": {"kind", "t", "side", "state", "conn"},
    "wait": {"kind", "t", "side", "step"},
}
_REQUIRED = {
    **{
        kind: {"kind", "side", *(f.name for f in fields if f.default is records.REQUIRED)}
        for kind, fields in _REPORTED.items()
    },
    "segment": {"kind", "t", "src", "flags", "seq", "ack", "len", "win"},
    "state": {"kind", "t", "side", "state"},
    "wait": {"kind", "t", "side", "step"},
}


def parse_json(text: Any) -> Any:
    """A trace's JSON text as data, or a TraceFormatError saying in one line why it is not."""
    if not isinstance(text, str | bytes | bytearray):
        raise TraceFormatError(f"Trace.from_json takes JSON text (a str), not {type(text).__name__}")
    if len(text) > MAX_JSON:
        raise TraceFormatError(f"the trace's JSON text has {len(text)} characters; at most {MAX_JSON}")
    try:
        return json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except RecursionError:
        reason = "its arrays or objects are nested too deeply"
    except json.JSONDecodeError as e:
        reason = f"{e.msg} at line {e.lineno} column {e.colno}"
    except ValueError as e:
        reason = str(e)[:200]
    raise TraceFormatError(
        f"the text is not a trace's JSON: {reason}; Trace.from_json reads what Trace.to_json() and "
        "`closekit run NAME --json` write"
    )


def _json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number of {len(digits.lstrip('-'))} digits (a trace's numbers have at most {MAX_DIGITS})")
    return int(digits)


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def load_trace(cls: type, data: Any) -> Any:
    """cls(**checked fields of data) — cls is closekit.trace.Trace."""
    from closekit.link import Link
    from closekit.settings import Settings
    from closekit.trace import ENDPOINTS, FATES, MODES, SEGMENT_FLAGS, Segment, Signal, StateChange, Syscall, Wait

    if not isinstance(data, dict):
        raise TraceFormatError("trace data must be a JSON object")
    _keys("the trace", data, TOP_KEYS, {"scenario", "kernel", "mode", "counters", "events"})
    scenario, kernel = _text("scenario", data["scenario"], 200), _text("kernel", data["kernel"], 200)
    if data["mode"] not in MODES:
        raise TraceFormatError(f"mode {data['mode']!r} is not one of {', '.join(MODES)}")
    counters = data["counters"]
    if not isinstance(counters, dict) or len(counters) > 1000:
        raise TraceFormatError("counters must be an object of at most 1000 counters")
    for name, value in counters.items():
        _text("a counter's name", name, 80)
        _whole(f"counter {name}", value, -(1 << 62), 1 << 62)
    unobserved = data.get("unobserved", [])
    if not isinstance(unobserved, list) or len(unobserved) > 10:
        raise TraceFormatError("unobserved must be a list of at most 10 texts")
    try:
        link = Link.from_dict(data.get("link") or {}).to_dict()
        settings = Settings.from_dict(data.get("settings") or {}).to_dict()
    except CloseKitError as e:
        raise TraceFormatError(f"the trace's link or settings: {e}") from None
    processes = data.get("processes", {})
    if not isinstance(processes, dict) or len(processes) > 50:
        raise TraceFormatError("processes must be an object of at most 50 process names")
    for name, endpoint in processes.items():
        _text("a process name", name, 40)
        if endpoint not in ENDPOINTS:
            raise TraceFormatError(f"process {name!r} must belong to the client or the server, not {endpoint!r}")
    events = data["events"]
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise TraceFormatError(f"events must be a list of at most {MAX_EVENTS} events")
    built = []
    for i, e in enumerate(events):
        where = f"event {i}"
        if not isinstance(e, dict) or not isinstance(e.get("kind"), str) or e["kind"] not in _FIELDS:
            raise TraceFormatError(f"{where} must be an object whose kind is one of {', '.join(_FIELDS)}")
        kind = e["kind"]
        _keys(where, e, _FIELDS[kind], _REQUIRED[kind])
        t = _number(where, e["t"], field="t")
        if kind in _REPORTED:
            try:
                fields = records.check(_REPORTED[kind], e, allowed=frozenset({"side", "forgeable"}))
            except records.Invalid as err:
                raise TraceFormatError(f"{where}: {err}") from None
            event = Syscall if kind == "syscall" else Signal
            built.append(event(**fields, side=_process(where, e["side"], processes),
                               forgeable=_flag(f"{where}: forgeable", e.get("forgeable", False))))  # fmt: skip
        elif kind == "segment":
            flags = e["flags"]
            if not isinstance(flags, list) or any(f not in SEGMENT_FLAGS for f in flags) or len(flags) > 6:
                raise TraceFormatError(f"{where}: flags must be a list of {', '.join(SEGMENT_FLAGS)}")
            if e["src"] not in ENDPOINTS:
                raise TraceFormatError(f"{where}: src must be client or server")
            fate = e.get("fate", "delivered")
            if fate not in FATES:
                raise TraceFormatError(f"{where}: fate must be one of {', '.join(FATES)}")
            arrived = e.get("arrived")
            built.append(Segment(
                t=t, src=e["src"], flags=tuple(flags), seq=_whole(where, e["seq"], 0, (1 << 32) - 1, "seq"),
                ack=_whole(where, e["ack"], 0, (1 << 32) - 1, "ack"), len=_whole(where, e["len"], 0, 1 << 17, "len"),
                win=_whole(where, e["win"], 0, 1 << 31, "win"), raw=_raw(where, e.get("raw")),
                conn=_whole(where, e.get("conn", 1), 1, 1000, "conn"),
                arrived=None if arrived is None else _number(where, arrived, field="arrived"), fate=fate,
            ))  # fmt: skip
        elif kind == "state":
            if e["side"] not in ENDPOINTS or e["state"] not in STATES:
                raise TraceFormatError(f"{where}: a state event names client or server and one of {', '.join(STATES)}")
            built.append(
                StateChange(
                    t=t, side=e["side"], state=e["state"], conn=_whole(where, e.get("conn", 1), 0, 1000, "conn")
                )
            )
        elif kind == "wait":
            side, step = _text(f"{where}: side", e["side"], 40), _text(f"{where}: step", e["step"], 400)
            built.append(Wait(t=t, side=side, step=step))
    return cls(
        scenario=scenario, kernel=kernel, mode=data["mode"], counters=dict(counters), events=tuple(built),
        description=_text("description", data.get("description", ""), MAX_DESCRIPTION),
        unobserved=tuple(_text("unobserved", u, 300) for u in unobserved),
        link=link, settings=settings, processes=dict(processes),
        setup_until=None if data.get("setup_until") is None else _number("setup_until", data["setup_until"]),
        disturbed=_text("disturbed", data.get("disturbed", ""), 500),
    )  # fmt: skip


def _process(where: str, side: Any, processes: dict[str, str]) -> str:
    """A syscall's or signal's process: an endpoint or a process the trace lists (in a trace recorded
    before processes were listed, a child named `<endpoint>-…`), so that every reader knows its endpoint."""
    from closekit.trace import ENDPOINTS

    side = _text(f"{where}: side", side, 40)
    if side in ENDPOINTS or side in processes or (not processes and side.partition("-")[0] in ENDPOINTS):
        return side
    known = ", ".join(dict.fromkeys([*ENDPOINTS, *processes]))
    raise TraceFormatError(f"{where}: side {side!r} is not a process of the trace ({known})")


def _keys(where: str, d: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    if d.keys() <= allowed and d.keys() >= required:
        return
    unknown = set(d) - allowed
    if unknown:
        raise TraceFormatError(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown))[:5])}")
    missing = required - set(d)
    if missing:
        raise TraceFormatError(f"{where} lacks {', '.join(sorted(missing))}")


def _text(what: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise TraceFormatError(f"{what} must be a text of at most {limit} characters")
    return value


def _number(what: str, value: Any, low: float = -1e9, field: str = "") -> float:
    """`value` as a float; `what` (and its `field`, joined only to say what is wrong) names it."""
    if type(value) is float and low <= value < math.inf:  # (the common case, without a call)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        what = f"{what}: {field}" if field else what
        raise TraceFormatError(f"{what} must be a finite number" + (f" of at least {low}" if low > -1e9 else ""))
    return float(value)


def _whole(what: str, value: Any, low: int, high: int, field: str = "") -> int:
    """`value`, a whole number within [low, high]; `what` (and its `field`) names it."""
    if type(value) is int and low <= value <= high:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        what = f"{what}: {field}" if field else what
        raise TraceFormatError(f"{what} must be a whole number from {low} to {high}")
    return value


def _flag(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TraceFormatError(f"{what} must be true or false")
    return value


def _raw(where: str, raw: Any) -> bytes:
    if raw is None:
        return b""
    if not isinstance(raw, str) or len(raw) > 4096:
        raise TraceFormatError(f"{where}: raw must be base64 text of at most 4096 characters")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise TraceFormatError(f"{where}: raw is not base64") from None
