"""A trace as a packetdrill-like transcript: plain text for terminals, an HTML table for notebooks.

Times are printed as `12.3 ms` (one pattern, so notebook checks can mask them); everything else
in a transcript is the same on every run of a scenario.
"""

from __future__ import annotations

import html
from typing import Any

from closekit.trace import Event, Segment, Signal, StateChange, Syscall, Trace

SHOW_DURATION = 0.05  # a call that blocked longer than this shows how long (shorter is noise)


def format_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else format_ms(seconds)


def duration_category(seconds: float) -> str:
    """A duration as a stable category: loopback timings jitter by milliseconds, so only waits a
    lesson is about (>= 0.1 s: a busy peer, a linger time) are given, rounded."""
    return "at once" if seconds < 0.1 else f"after ≈ {round(seconds, 1)} s"


def _args(e: Syscall) -> str:
    if e.call == "recv" and e.args.get("until") == "EOF":
        return "…until EOF"
    if e.call == "setsockopt" and e.args.get("option") == "SO_LINGER":
        return f"SO_LINGER, {{onoff={e.args.get('l_onoff')}, linger={e.args.get('l_linger')}}}"
    bare = ("how", "option", "function")
    return ", ".join(str(v) if k in bare else f"{k}={v}" for k, v in e.args.items() if k != "timeout")


def _result(e: Syscall) -> str:
    if e.call == "epoll_wait":
        return " = " + ("|".join(e.result) if e.result else "0 (nothing ready)")
    if e.errno and isinstance(e.result, int) and e.result > 0:
        return f" = {e.result}, then {e.errno}"  # a send/recv loop that moved bytes before failing
    if e.errno:
        return f" = -1 {e.errno}"
    return "" if e.result is None else f" = {e.result}"


def describe_syscall(e: Syscall, exact_times: bool = True) -> str:
    """`close() = 0`, `recv(…until EOF) = 4096, then ECONNRESET`, with how long it blocked.

    With `exact_times` a wait shows as `[blocked 1.02 s]`; without, as a stable category
    (`[returned after ≈ 1.0 s]`), for outputs that must be the same on every run.
    """
    text = f"{e.call}({_args(e)}){_result(e)}"
    if e.duration >= (SHOW_DURATION if exact_times else 0.1) and e.call != "sleep":
        text += (
            f"  [blocked {format_duration(e.duration)}]"
            if exact_times
            else f"  [returned {duration_category(e.duration)}]"
        )
    return text


def describe_segment(e: Segment) -> str:
    """tcpdump/packetdrill notation: `F. 7:7(0) ack 1 win 65536`."""
    ack = f" ack {e.ack}" if "ACK" in e.flags else ""
    return f"{e.tcpdump_flags or '-'} {e.seq}:{e.seq + e.len}({e.len}){ack} win {e.win}"


def _arg(value: Any) -> str:
    if isinstance(value, list):
        return "|".join(value) if value else "0 (nothing ready)"
    if isinstance(value, str):
        return value
    return repr(value)


def _line(e: Event, exact_times: bool = True) -> tuple[str, str, str]:
    """(who, marker, text) for one event."""
    if isinstance(e, Syscall):
        return e.side, " ", describe_syscall(e, exact_times)
    if isinstance(e, Segment):
        return f"{e.src} > {e.dst}", ">", describe_segment(e)
    if isinstance(e, StateChange):
        return e.side, "~", f"state {e.state}"
    if isinstance(e, Signal):
        return e.side, "!", f"signal {e.signal}"
    raise TypeError(e)


def counters_line(trace: Trace) -> str:
    if trace.mode != "netns":
        return "counters: not recorded in this mode"
    shown = ", ".join(f"{k} {v:+d}" for k, v in trace.counters.items())
    return f"counters: {shown or 'none moved'}"


def text_transcript(trace: Trace) -> str:
    """The whole trace with times, as `closekit run` prints it."""
    lines = [f"{trace.scenario}: {trace.description}" if trace.description else trace.scenario]
    lines.append(f"kernel {trace.kernel}, mode {trace.mode}")
    if trace.notice:
        lines.append(f"NOTE: {trace.notice}")
    for e in trace.events:
        who, marker, text = _line(e)
        lines.append(f"{format_ms(e.t):>10}  {who:<17} {marker} {text}")
    lines.append(counters_line(trace))
    return "\n".join(lines)


def story(trace: Trace, handshake: bool = False, acks: bool = True) -> str:
    """The trace without clocks, for outputs compared on every run: what happened, in order.

    Leaves out the connection set-up (unless `handshake`) and, if `acks` is False, pure ACKs.
    """
    lines = []
    after_setup = handshake
    for e in trace.events:
        if not handshake and _is_setup(e, after_setup):
            continue
        if not acks and isinstance(e, Segment) and e.flags == ("ACK",) and not e.len:
            continue
        if isinstance(e, Syscall) and e.call not in (*SETUP_CALLS, "setsockopt"):
            after_setup = True
        who, marker, text = _line(e, exact_times=False)
        lines.append(f"{who:<17} {marker} {text}")
    return "\n".join(lines)


SETUP_CALLS = ("listen", "connect", "accept")


def _is_setup(e: Event, after_setup: bool) -> bool:
    if isinstance(e, Syscall):
        return e.call in SETUP_CALLS
    if isinstance(e, StateChange):
        return e.state == "ESTABLISHED"
    if isinstance(e, Segment):
        return e.has("SYN") or (not after_setup and e.flags == ("ACK",) and not e.len)
    return False


_STYLE = (
    "<style>.ck-t td{padding:1px 8px;font-family:monospace;text-align:left;white-space:pre}"
    ".ck-t .seg{color:#555}.ck-t .rst{color:#b00;font-weight:bold}.ck-t .fin{color:#05a;font-weight:bold}"
    ".ck-t .st{color:#070}.ck-t .err{color:#b00}.ck-n{background:#fff3cd;border:1px solid #d39e00;"
    "padding:6px;margin:4px 0}</style>"
)


def html_transcript(trace: Trace) -> str:
    """Three columns, client | wire | server, so who did what reads at a glance."""
    rows = []
    for e in trace.events:
        _who, _marker, text = _line(e)
        css = _css(e)
        cell = f'<td class="{css}">{html.escape(text)}</td>'
        if isinstance(e, Segment):
            arrow = "→" if e.src == "client" else "←"
            cells = f'<td></td><td class="{css}">{arrow} {html.escape(text)} {arrow}</td><td></td>'
        elif e.side == "client":  # type: ignore[union-attr]
            cells = cell + "<td></td><td></td>"
        else:
            side = e.side  # type: ignore[union-attr]
            prefix = "" if side == "server" else f"[{side}] "
            cells = f'<td></td><td></td><td class="{css}">{html.escape(prefix + text)}</td>'
        rows.append(f"<tr><td>{format_ms(e.t)}</td>{cells}</tr>")
    notice = f'<div class="ck-n">⚠ {html.escape(trace.notice)}</div>' if trace.notice else ""
    title = html.escape(f"{trace.scenario}: {trace.description}" if trace.description else trace.scenario)
    return (
        f"{_STYLE}<div><b>{title}</b><br><small>mode {trace.mode}</small>{notice}"
        f'<table class="ck-t"><tr><th>time</th><th>client</th><th>wire</th><th>server</th></tr>'
        f"{''.join(rows)}</table><small>{html.escape(counters_line(trace))}</small></div>"
    )


def _css(e: Event) -> str:
    if isinstance(e, Segment):
        return "rst" if e.has("RST") else "fin" if e.has("FIN") else "seg"
    if isinstance(e, StateChange):
        return "st"
    if isinstance(e, Signal) or (isinstance(e, Syscall) and e.errno):
        return "err"
    return ""
