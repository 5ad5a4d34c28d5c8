"""Time-free views of a trace for notebooks: what happened, in order, without clocks or ports.

A notebook's stored outputs are compared by nbval on every CI run, so they may only contain what
the kernel does the same way every time: calls and their results, segments with relative
sequence numbers, states. Durations appear only as coarse categories ("at once", "≈ 1.0 s").
"""

from __future__ import annotations

from closekit.claims import Verdict, by_section, duration, judge
from closekit.trace import Segment, Signal, StateChange, Syscall, Trace

__all__ = ["duration", "section_verdicts", "story"]

_SETUP = ("listen", "connect", "accept")


def _args(c: Syscall) -> str:
    if c.call == "recv" and c.args.get("until") == "EOF":
        return "…until EOF"
    if c.call == "setsockopt" and c.args.get("option") == "SO_LINGER":
        return f"SO_LINGER, {{on={c.args.get('l_onoff')}, linger={c.args.get('l_linger')}}}"
    return ", ".join(f"{v}" if k in ("how", "option") else f"{k}={v}" for k, v in c.args.items() if k != "timeout")


def _result(c: Syscall) -> str:
    if c.call == "epoll_wait":
        return "= " + ("|".join(c.result) if c.result else "(nothing)")
    if c.errno and isinstance(c.result, int) and c.result > 0:
        return f"= {c.result}, then {c.errno}"
    if c.errno:
        return f"= -1 {c.errno}"
    return f"= {c.result}" if c.result is not None else ""


def story(trace: Trace, handshake: bool = False, acks: bool = True) -> str:
    """The trace as lines: `side  call(args) = result`, `client > server  F. 7:7(0) ack 1`, `side ~ STATE`.

    Leaves out the connection set-up (unless `handshake`), and pure ACKs if `acks` is False. Calls
    that blocked for 0.1 s or more say for how long, rounded (shorter waits jitter between runs).
    """
    lines = []
    seen_data = handshake
    for e in trace.events:
        if isinstance(e, Syscall):
            if e.call in _SETUP and not handshake:
                continue
            if e.call == "sleep":
                lines.append(f"{e.side:<13} (busy for {e.args.get('seconds')} s)")
                continue
            blocked = f"   [returned {duration(e.duration)}]" if e.duration >= 0.1 and e.call != "fork" else ""
            lines.append(f"{e.side:<13} {e.call}({_args(e)}) {_result(e)}{blocked}".rstrip())
            seen_data = seen_data or e.call != "setsockopt"
        elif isinstance(e, Segment):
            if not handshake and e.has("SYN"):
                continue
            if not seen_data and (e.has("SYN") or (e.flags == ("ACK",) and e.len == 0)):
                continue
            if not acks and e.flags == ("ACK",) and e.len == 0:
                continue
            end = e.seq + e.len
            ack = f" ack {e.ack}" if e.has("ACK") else ""
            lines.append(f"{e.src + ' > ' + e.dst:<17}   {e.tcpdump_flags} {e.seq}:{end}({e.len}){ack} win {e.win}")
        elif isinstance(e, StateChange):
            if e.state == "ESTABLISHED" and not handshake:
                continue
            lines.append(f"{e.side:<13} ~ {e.state}")
        elif isinstance(e, Signal):
            lines.append(f"{e.side:<13} ! {e.signal}")
    return "\n".join(lines)


def section_verdicts(section: str, trace: Trace) -> list[Verdict]:
    """Judge every claim of `section` whose scenario is the one `trace` ran."""
    return [judge(c, trace) for c in by_section(section) if c.scenario_name == trace.scenario]
