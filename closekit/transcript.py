"""A trace as a packetdrill-like transcript: plain text for terminals, an HTML table for notebooks.

One list of rows feeds every form (`rows`), so the text, the HTML table and the clock-free `story`
tell the same things in the same order:

- a call that blocked is shown where it starts ("close() …") and again where it returns, with its
  result and how long it took, so the segments sent while it waited sit between the two. "Blocked"
  means longer than the scheduler's noise (`wait_threshold`): 50 ms on a link without delay (a
  loaded machine stretches a 6-byte send() to several ms), 1.5 one-way delays on a delayed one;
  calls that never wait for the network (fork, setsockopt, sleep …) are never split;
- a segment's window is shown only where it carries the story: a zero window, and the window that
  reopens it; a long run of plain data/ACK segments is one row saying how many, how many bytes and
  the sequence range;
- a segment the wire did not simply deliver says so (dropped, held, a duplicate it injected), and
  one that took noticeably long to arrive says after how long;
- the header names the kernel, the mode, the link (delay, rules) and any setting the scenario
  changed.

Clock readings appear only in the time column (`<td class="t">` in HTML, the line start in text),
and durations as `12.3 ms` / `1.02 s`; a duration compared across runs is a category
(`category`: "at once", "after ≈ 40 ms", "after ≈ 1 s"), the same buckets
tests/nbval.cfg maps printed durations to.
"""

from __future__ import annotations

import bisect
import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from closekit.trace import Event, Segment, Signal, StateChange, Syscall, Trace

BLOCKED = 0.005  # shorter than this is "at once" (the first duration category)
LOOPBACK_NOISE = 0.05  # without a delay on the link, a call this long waited for something
NEVER_WAITS = frozenset({"sleep", "fork", "exit", "setsockopt", "getsockopt", "fcntl", "listen"})
IN_FLIGHT = 0.0005  # a segment that took this long to arrive says so
RUN = 6  # this many plain data/ACK segments in a row are collapsed into one row
SETUP_CALLS = ("listen", "connect", "accept")

# Duration categories: (upper bound in seconds, label). Bounds sit between the waits the course
# shows (loopback calls, a 10 ms wire's round trip, the 40 ms delayed ACK, a 200 ms RTO, a 0.3 s busy
# peer, a 1 s linger, a 5 s linger), so that jitter does not move a duration to its neighbour.
CATEGORIES = (
    (0.005, "under 5 ms"),
    (0.015, "≈ 10 ms"),
    (0.030, "≈ 20 ms"),
    (0.070, "≈ 40 ms"),
    (0.150, "≈ 0.1 s"),
    (0.250, "≈ 0.2 s"),
    (0.400, "≈ 0.3 s"),
    (0.700, "≈ 0.5 s"),
    (1.500, "≈ 1 s"),
    (3.000, "≈ 2 s"),
    (7.500, "≈ 5 s"),
    (15.00, "≈ 10 s"),
    (float("inf"), "over 15 s"),
)


def format_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else format_ms(seconds)


def approx(seconds: float) -> str:
    """A duration as its category's label: "under 5 ms", "≈ 40 ms", "≈ 1 s"."""
    bounds = [bound for bound, _ in CATEGORIES]
    return CATEGORIES[bisect.bisect_right(bounds, seconds)][1]


def category(seconds: float) -> str:
    """How long something took, as words that are the same on every run: "at once" or "after ≈ 1 s"."""
    return "at once" if seconds < BLOCKED else f"after {approx(seconds)}"


def duration_category(seconds: float) -> str:
    """The ledger's coarser wording (closekit.claims): "at once" below 0.1 s, else "after ≈ 1.0 s"."""
    return "at once" if seconds < 0.1 else f"after ≈ {round(seconds, 1)} s"


def _took(seconds: float, exact: bool) -> str:
    return f"after {format_duration(seconds)}" if exact else category(seconds)


# ---- one event as words ----------------------------------------------------------------------------
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


def call_text(e: Syscall) -> str:
    """`close()`, `setsockopt(SO_LINGER, {onoff=1, linger=1})`: the call as made, without its result."""
    return f"{e.call}({_args(e)})"


def wait_threshold(trace: Trace) -> float:
    """How long a call must last to count as blocked in this trace: above the scheduler's noise, and
    on a delayed link above one one-way delay (a call that waited for the peer waited a round trip)."""
    delay = float((trace.link or {}).get("delay") or 0.0)
    return LOOPBACK_NOISE if delay <= 0 else max(BLOCKED, 1.5 * delay)


def blocked(e: Syscall, threshold: float = LOOPBACK_NOISE) -> bool:
    """Did the call wait for something (`threshold`: see `wait_threshold`)?"""
    return e.duration >= threshold and e.call not in NEVER_WAITS


def describe_syscall(e: Syscall, exact_times: bool = True, threshold: float = LOOPBACK_NOISE) -> str:
    """`close() = 0`, `recv(…until EOF) = 4096, then ECONNRESET`, and for a call that blocked how long
    (`[returned after 1.02 s]`, or with `exact_times=False` its category, `[returned after ≈ 1 s]`)."""
    text = call_text(e) + _result(e)
    if blocked(e, threshold):
        text += f"  [returned {_took(e.duration, exact_times)}]"
    return text


def describe_segment(e: Segment, window: bool | None = None) -> str:
    """tcpdump/packetdrill notation: `F. 7:7(0) ack 1`; the window only if `window` (default: when 0)."""
    ack = f" ack {e.ack}" if "ACK" in e.flags else ""
    show = e.win == 0 if window is None else window
    return f"{e.tcpdump_flags or '-'} {e.seq}:{e.seq + e.len}({e.len}){ack}" + (f" win {e.win}" if show else "")


FATE_WORDS = {
    "dropped": "dropped by the wire",
    "held": "held by the wire, never delivered",
    "duplicate": "a duplicate the wire injected",
}


def fate_text(e: Segment, exact: bool = True) -> str:
    """What the wire did with a segment, if worth saying: `[dropped by the wire]`, `[arrives after 10.0 ms]`."""
    if e.fate in FATE_WORDS and (e.fate != "duplicate" or e.arrived is None):
        return f"[{FATE_WORDS[e.fate]}]"
    words = [FATE_WORDS[e.fate]] if e.fate == "duplicate" else []
    if e.arrived is not None and e.arrived - e.t >= IN_FLIGHT:
        flight = e.arrived - e.t
        words.append(f"arrives after {format_duration(flight) if exact else approx(flight)}")
    return f"[{', '.join(words)}]" if words else ""


def windows_shown(segments: Iterable[Segment]) -> set[int]:
    """ids of the segments whose window carries the story: a zero window, and the next one from the
    same side (the window reopening)."""
    shown: set[int] = set()
    last_zero: dict[tuple[str, int], bool] = {}
    for s in segments:
        key = (s.src, s.conn)
        if s.win == 0 or last_zero.get(key):
            shown.add(id(s))
        last_zero[key] = s.win == 0
    return shown


def plain(e: Event) -> bool:
    """A data or pure-ACK segment the wire delivered as sent, with an unremarkable window."""
    return isinstance(e, Segment) and not {"SYN", "FIN", "RST"} & set(e.flags) and e.fate == "delivered" and e.win != 0


def runs(events: Iterable[Event]) -> list[list[Event]]:
    """Events grouped: a run of `RUN` or more consecutive plain segments is one group, anything else
    stands alone."""
    groups: list[list[Event]] = []
    pending: list[Event] = []
    for e in events:
        if plain(e):
            pending.append(e)
            continue
        groups.extend([pending] if len(pending) >= RUN else [[p] for p in pending])
        pending = []
        groups.append([e])
    groups.extend([pending] if len(pending) >= RUN else [[p] for p in pending])
    return groups


def run_summary(segments: list[Segment]) -> list[str]:
    """A collapsed run in words: how many segments, then one line per direction."""
    lines = [f"{len(segments)} data/ACK segments"]
    for src in dict.fromkeys(s.src for s in segments):
        mine = [s for s in segments if s.src == src]
        data = sum(s.len for s in mine)
        arrow = f"{src} → {mine[0].dst}"
        if data:
            lines.append(
                f"{arrow}: {len(mine)} carrying {data:,} bytes, seq {mine[0].seq}:{mine[-1].seq + mine[-1].len}"
            )
        else:
            lines.append(f"{arrow}: {len(mine)} ACKs, last ack {mine[-1].ack}")
    return lines


# ---- rows: what every form shows ----------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One line of a transcript: when, who, a marker and the words; `css` says how HTML colours it.

    Markers: ' ' a call, '…' a call that blocks (it returns in a later row), '=' its return, '>' a
    segment, '»' a collapsed run of segments, '~' a state, '!' a signal.
    """

    t: float
    who: str
    marker: str
    text: str
    css: str
    event: Event | None = None


def rows(trace: Trace, exact: bool = True) -> list[Row]:
    """The trace as rows in time order; durations exact, or as categories with `exact=False`."""
    shown = windows_shown(trace.segments())
    threshold = wait_threshold(trace)
    out: list[Row] = []
    returns: list[Row] = []
    for group in runs(trace.events):
        e = group[0]
        if len(group) > 1:
            segments = [s for s in group if isinstance(s, Segment)]
            text = "\u00d7 " + "\n".join(run_summary(segments))  # "times 62 data/ACK segments"
            out.append(Row(e.t, "client ⇄ server", "»", text, "bulk", e))
        elif isinstance(e, Syscall) and blocked(e, threshold):
            out.append(Row(e.t, e.side, "…", f"{call_text(e)} …", "call", e))
            text = f"{call_text(e)}{_result(e)}  [returned {_took(e.duration, exact)}]"
            returns.append(Row(e.t + e.duration, e.side, "=", text, "err" if e.errno else "ret", e))
        elif isinstance(e, Syscall):
            out.append(Row(e.t, e.side, " ", describe_syscall(e, exact, threshold), "err" if e.errno else "call", e))
        elif isinstance(e, Segment):
            text = describe_segment(e, window=id(e) in shown)
            fate = fate_text(e, exact)
            css = "rst" if e.has("RST") else "fin" if e.has("FIN") else "syn" if e.has("SYN") else "seg"
            if e.fate != "delivered":
                css += " lost" if e.lost else " dup"
            out.append(Row(e.t, f"{e.src} > {e.dst}", ">", text + (f"  {fate}" if fate else ""), css, e))
        elif isinstance(e, StateChange):
            out.append(Row(e.t, e.side, "~", f"state {_state(e)}", "st", e))
        elif isinstance(e, Signal):
            out.append(Row(e.t, e.side, "!", f"signal {e.signal}", "err", e))
    # A return goes after everything that happened by then: stable sort, returns last among equals.
    return sorted(out + returns, key=lambda row: row.t)


def one_line(text: str) -> str:
    """A row's words on one line (a collapsed run has one line per direction in HTML)."""
    return text.replace("\n", "; ")


def _state(e: StateChange) -> str:
    if e.conn == 0:
        return f"{e.state} (listening socket)"
    return e.state if e.conn == 1 else f"{e.state} (connection {e.conn})"


# ---- the header --------------------------------------------------------------------------------
def link_text(trace: Trace) -> str:
    """The link between the endpoints in words: delay, rate and rules as the trace records them."""
    link = trace.link or {}
    if not link:
        return "link: loopback, no delay"
    parts = []
    delay = link.get("delay")
    parts.append(f"one-way delay {format_duration(float(delay))}" if delay else "no delay")
    if link.get("rate"):
        parts.append(f"rate {link['rate']}")
    rules = link.get("rules") or []
    if rules:
        parts.append("rules: " + "; ".join(_rule_text(r) for r in rules))
    extra = {k: v for k, v in link.items() if k not in ("delay", "rate", "rules") and v not in (None, "", [], {})}
    parts.extend(f"{k} {v}" for k, v in extra.items())
    return "link: " + ", ".join(parts)


def _rule_text(rule: Any) -> str:
    if isinstance(rule, str):
        return rule
    if isinstance(rule, dict):
        for key in ("text", "describe", "description"):
            if isinstance(rule.get(key), str):
                return rule[key]
        return " ".join(f"{k}={v}" for k, v in rule.items() if v not in (None, "", [], {}))
    return str(rule)


def settings_text(trace: Trace) -> str:
    """Settings the scenario changed from the kernel's defaults, or '' when it changed none."""
    parts = []
    for group, values in (trace.settings or {}).items():
        if isinstance(values, dict):
            if values:
                parts.append(f"{group}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        elif values not in (None, "", [], {}):
            parts.append(f"{group}: {values}")
    return "settings: " + "; ".join(parts) if parts else ""


def header_lines(trace: Trace, kernel: bool = True) -> list[str]:
    """Title, then kernel · mode · link, then the changed settings (if any)."""
    title = f"{trace.scenario}: {trace.description}" if trace.description else trace.scenario
    where = [f"kernel {trace.kernel}"] if kernel else []
    where += [f"mode {trace.mode}", link_text(trace)]
    lines = [title, " · ".join(where)]
    settings = settings_text(trace)
    if settings:
        lines.append(settings)
    return lines


def counters_line(trace: Trace) -> str:
    if trace.mode != "netns":
        return "counters: not recorded in this mode"
    shown = ", ".join(f"{k} {v:+d}" for k, v in trace.counters.items())
    return f"counters: {shown or 'none moved'}"


# ---- the three forms ---------------------------------------------------------------------------
def text_transcript(trace: Trace) -> str:
    """The whole trace with times, as `closekit run` prints it."""
    lines = header_lines(trace)
    if trace.notice:
        lines.append(f"NOTE: {trace.notice}")
    for row in rows(trace):
        lines.append(f"{format_ms(row.t):>10}  {row.who:<17} {row.marker} {one_line(row.text)}")
    lines.append(counters_line(trace))
    return "\n".join(lines)


def story(trace: Trace, handshake: bool = False, acks: bool = True) -> str:
    """The trace without clocks, for outputs compared on every run: what happened, in order.

    Leaves out the connection set-up (unless `handshake`) and, if `acks` is False, pure ACKs.
    Durations are categories ("[returned after ≈ 1 s]").
    """
    lines = []
    after_setup = handshake
    for row in rows(trace, exact=False):
        e = row.event
        if not handshake and e is not None and row.marker != "»" and _is_setup(e, after_setup):
            continue
        if not acks and isinstance(e, Segment) and row.marker == ">" and e.flags == ("ACK",) and not e.len:
            continue
        if isinstance(e, Syscall) and e.call not in (*SETUP_CALLS, "setsockopt"):
            after_setup = True
        lines.append(f"{row.who:<17} {row.marker} {one_line(row.text)}")
    return "\n".join(lines)


def _is_setup(e: Event, after_setup: bool) -> bool:
    if isinstance(e, Syscall):
        return e.call in SETUP_CALLS
    if isinstance(e, StateChange):
        return e.state == "ESTABLISHED"
    if isinstance(e, Segment):
        return e.has("SYN") or (not after_setup and e.flags == ("ACK",) and not e.len)
    return False


# Inline styles only: JupyterLab's sanitizer drops <style> elements from untrusted outputs (a fresh
# clone) but keeps style attributes, so the table looks the same trusted or not.
_CELL = "padding:1px 8px;font-family:monospace;text-align:left;white-space:pre;vertical-align:top"
_COLOURS = {
    "seg": "color:#555",
    "syn": "color:#2e7d32",
    "rst": "color:#b00;font-weight:bold",
    "fin": "color:#05a;font-weight:bold",
    "st": "color:#070",
    "err": "color:#b00",
    "bulk": "color:#555;font-style:italic",
    "ret": "",
    "call": "",
}


def _style(css: str) -> str:
    first, *rest = css.split()
    extra = ";text-decoration:line-through" if "lost" in rest else ";font-style:italic" if "dup" in rest else ""
    return _CELL + ";" + _COLOURS.get(first, "") + extra


def html_transcript(trace: Trace) -> str:
    """Three columns, client | wire | server, so who did what reads at a glance; plain sanitized HTML
    (no scripts, no <style>), so it renders in untrusted notebooks too."""
    out = []
    for row in rows(trace):
        css = row.css
        text = html.escape(row.text)
        cell = f'<td class="{css}" style="{_style(css)}">'
        if row.marker in (">", "»"):
            e = row.event
            arrow = "→" if isinstance(e, Segment) and e.src == "client" else "←" if row.marker == ">" else "⇄"
            cells = f"<td></td>{cell}{arrow} {text} {arrow}</td><td></td>"
        else:
            side = trace.endpoint_of(row.who)
            prefix = "" if row.who in ("client", "server") else f"[{html.escape(row.who)}] "
            filled = f"{cell}{prefix}{text}</td>"
            cells = f"{filled}<td></td><td></td>" if side == "client" else f"<td></td><td></td>{filled}"
        out.append(f'<tr><td class="t" style="{_CELL};color:#777">{format_ms(row.t)}</td>{cells}</tr>')
    head = header_lines(trace)
    notice = (
        f'<div style="background:#fff3cd;border:1px solid #d39e00;padding:6px;margin:4px 0">⚠ '
        f"{html.escape(trace.notice)}</div>"
        if trace.notice
        else ""
    )
    th = f'style="{_CELL};font-weight:bold"'
    return (
        f'<div class="ck-transcript"><b>{html.escape(head[0])}</b><br>'
        f"<small>{'<br>'.join(html.escape(line) for line in head[1:])}</small>{notice}"
        f'<table class="ck-t"><tr><th {th}>time</th><th {th}>client</th><th {th}>wire</th><th {th}>server</th></tr>'
        f"{''.join(out)}</table><small>{html.escape(counters_line(trace))}</small></div>"
    )
