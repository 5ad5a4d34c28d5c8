"""A time-sequence diagram of a trace, drawn to a time scale as SVG (graphviz cannot place things on
a time axis, so this picture is laid out here, in plain Python).

Two lifelines, client and server, time running down, as in the timing figures of the source
document (§3.2.x, after UNP 7.5):

- each segment is an arrow from (sender, when it left) to (receiver, when it arrived): level when
  the wire did not delay it, slanted when it did; one the wire dropped ends in a cross half-way, one
  it held (never delivered) in a bar; a duplicate the wire injected is dashed and starts on the wire;
- a call that blocked is a bar on its caller's lifeline from its start to its return, labelled at
  both ends, so "close() returns at once" (a tick) and "close() returns after the ACK" (a bar that
  reaches the ACK's arrival) look different at a glance;
- states and signals are written beside the lifeline when they were observed.

The scale is `PX_PER_MS` where events are sparse. Events closer together than a line of text are
spread apart (time stretches there, it never runs backwards), and an idle stretch that would be
taller than `MAX_GAP_PX` is shortened to a break marked ⋯ with its real length, so a 1 s linger and
a 40 ms delayed ACK both fit. A run of plain data/ACK segments is one shaded band.

`sequence_diagram(trace)` returns a Picture: PNG for notebooks, the SVG, and a text form that says
the same in lines (arrows with their direction and fate, blocked calls with the category of their
duration), which is what nbval compares.
"""

from __future__ import annotations

import html
import itertools
import math
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from closekit.lang import pad, text, word, wrap
from closekit.lang import width as columns
from closekit.render.picture import MAX_WIDTH, SvgPicture
from closekit.trace import ENDPOINTS, Segment, Signal, StateChange, Syscall
from closekit.transcript import (
    Plan,
    Told,
    _result,
    approx,
    call_text,
    causal_times,
    conn_at,
    conn_tag,
    describe_segment,
    flight_shown,
    format_duration,
    format_ms,
    header_lines,
    notice,
    plan,
    retransmissions,
    returned_text,
    run_summary,
    state_text,
    wait_threshold,
    who,
)

if TYPE_CHECKING:
    from closekit.trace import Trace

PX_PER_MS = 2.0  # vertical pixels per millisecond where events are sparse
MAX_GAP_PX = 200.0  # an idle stretch taller than this (100 ms) is shortened to a break
BREAK_PX = 40.0
LINE = 14.5  # height of a line of side text
FONT = 11.5  # px, monospace: every label's width is known without a font library
CHAR = 0.61 * FONT  # advance of one monospace character (DejaVu Sans Mono: 0.602 em)
SEG_FONT = 11.0
SEG_CHAR = 0.61 * SEG_FONT
MARGIN = 10.0
GUTTER = 60.0  # the time column
GAP = 8.0  # between a lifeline and its side text
WIRE_MIN = 230.0
BAND_CHAR = 0.6 * 10  # a bulk band's words: 10 px sans-serif, at most this wide a character
BAND_MAX = 400.0  # a band widens the wire up to this, then its words wrap
# CJK families last: a Chinese label's characters come from them where the Latin fonts have none
CJK = "WenQuanYi Micro Hei Mono, WenQuanYi Micro Hei, Noto Sans Mono CJK SC, Noto Sans CJK SC"
MONO = f"DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, {CJK}, monospace"
SANS = f"DejaVu Sans, Helvetica, Arial, Liberation Sans, {CJK}, sans-serif"
COLOURS = {"RST": "#c0392b", "FIN": "#1f5fbf", "SYN": "#2e8b57"}
BAR = "#1f5fbf"
STATE = "#2e7d32"
ERROR = "#b00020"
GREY = "#777777"


# ---- the drawing model: what is drawn, independent of where ----------------------------------------
@dataclass
class _Item:
    """Something drawn at time `t`, in one column ("client", "server" or "wire"), `lines` tall."""

    t: float
    column: str
    lines: list[str]
    y: float = 0.0
    words: str = ""  # the text form's line (clock-free); lines may be wrapped for the picture


@dataclass
class _Call(_Item):
    process: str = ""
    css: str = "call"
    end: _Call | None = None  # a blocked call's return, drawn at its own time
    start: _Call | None = None  # on a return: the call it ends


@dataclass
class _Tag(_Item):
    css: str = "state"


@dataclass
class _Arrow(_Item):
    segment: Segment | None = None
    arrived: float | None = None
    into: int | None = None  # a duplicate: the connection it reached


@dataclass
class _Band(_Item):
    segments: list[Segment] = field(default_factory=list)


@dataclass
class _Break:
    y0: float
    y1: float
    seconds: float


def _model(trace: Trace) -> list[_Item]:
    """What the picture shows, at the times the clock-free forms tell them (`causal_times`): a
    segment arrives after the link's delay, what it brought and what it woke right after it."""
    p = plan(trace, clock_free=True)
    told = causal_times(trace)
    resent = retransmissions(trace)
    items: list[_Item] = []
    for group in p.groups:
        e = group[0]
        if len(group) > 1:
            segments = [s for s in group if isinstance(s, Segment)]
            tag = f"{conn_tag(segments[0].conn)} " if p.several else ""
            summary, words = run_summary(segments), run_summary(segments, exact=False)
            band = _Band(e.t, "wire", [f"{tag}{summary[0]}", *summary[1:]], segments=segments)
            band.words = "; ".join([f"{tag}{words[0]}", *words[1:]])
            items += [band, _Item(segments[-1].t, "ghost", [])]
        elif isinstance(e, Syscall):
            items += _calls(trace, e, p, told)
        elif isinstance(e, Segment):
            label = (f"{conn_tag(e.conn)} " if p.several else "") + describe_segment(e, id(e) in p.windows)
            words = (f"{conn_tag(e.conn)} " if p.several else "") + describe_segment(e, id(e) in p.windows, False)
            if id(e) in resent:
                again = text("render.resent")
                label, words = label + again, words + again
            if e.fate == "duplicate":
                label += text("render.copied")
            into = conn_at(trace, e.t) if e.fate == "duplicate" else None
            arrived = told.arrival(e)
            items.append(_Arrow(told.time(e), "wire", [label], words=words, segment=e, arrived=arrived, into=into))
            if arrived is not None:
                items.append(_Item(arrived, "ghost", []))
        elif isinstance(e, StateChange):
            items.append(_Tag(told.time(e), trace.endpoint_of(e.side), [state_text(e, p.several)], css="state"))
        elif isinstance(e, Signal):
            items.append(_Tag(e.t, trace.endpoint_of(e.side), [f"{who(e.side)}: {e.signal}"], css="signal"))
    # stable: at one instant, things keep the trace's order and returns come after what they waited for
    return sorted(items, key=lambda item: item.t)


def _calls(trace: Trace, e: Syscall, p: Plan, told: Told) -> list[_Item]:
    """A call as drawn: a tick, or a bar from its start to its return (labelled at both ends). A sleep
    long enough to see is a grey bar with one label: a busy process, not a wait for the network."""
    side = trace.endpoint_of(e.side)
    by = "" if e.side in ENDPOINTS else f"{e.side}: "
    css = "err" if e.errno else "call"
    if id(e) in p.waits:
        start = f"{by}{call_text(e)} …"
        call = _Call(e.t, side, [start], words=text("render.blocks", call=start), process=e.side, css="call")
        returned = f"{by}{call_text(e)}{_result(e)}"
        took = returned_text(trace, e, False, p.waits[id(e)]).strip("[]")
        exact = text("render.returned_after", call=returned, took=format_duration(e.duration))
        call.end = _Call(told.returned(e), side, [exact], words=text("render.returned", call=returned, took=took),
                         process=e.side, css=css, start=call)  # fmt: skip
        return [call, call.end]
    said = by + call_text(e) + _result(e)
    if e.call == "sleep" and e.duration >= wait_threshold(trace):
        busy = text("render.busy", call=said, took=approx(e.duration))
        call = _Call(e.t, side, [said], words=busy, process=e.side, css="busy")
        call.end = _Call(e.t + e.duration, side, [], process=e.side, css="busy", start=call)
        return [call, call.end]
    return [_Call(e.t, side, [said], words=said, process=e.side, css=css)]


# ---- layout ------------------------------------------------------------------------------------
@dataclass
class _Layout:
    width: float
    x_client: float
    x_server: float
    top: float
    bottom: float
    knots: list[tuple[float, float]]
    breaks: list[_Break]
    title: list[tuple[str, str]]  # (css, text) lines
    side_width: dict[str, float]


TAG_PAD = 10.0  # a state's box reaches this much further from the lifeline than its text, and a pixel or two
# How far a side item's ink reaches above and below its y (its first line's): a call's text (with the
# low bar of its underscores), a state's box. The layout keeps each clear of the one above it: a state
# box drawn over the line before it hid that line's underscores.
_EXTENT = {False: (5.0, 7.5), True: (10.0, 8.5)}


def _wrap(line: str, chars: int) -> list[str]:
    """Lines of at most `chars` columns (a Chinese character takes two); a call's result and how long it
    took are kept whole where they fit."""
    if columns(line) <= chars:
        return [line]
    for mark in (text("render.returned_mark"), " = "):
        head, sep, tail = line.rpartition(mark)
        if sep and len(head) >= 4:
            lines = _wrap(head, chars)
            rest = sep.lstrip(",，").strip() + " " + tail
            if columns(lines[-1]) + 1 + columns(rest) <= chars:
                return [*lines[:-1], f"{lines[-1]} {rest}"]
            return [*lines, *_wrap("  " + rest, chars)]
    spaced = line.replace("|", "| ")  # epoll's EPOLLIN|EPOLLOUT|… breaks after a bar, not inside a flag
    lines = wrap(spaced, chars - 2)
    return [(part if i == 0 else "  " + part).replace("| ", "|") for i, part in enumerate(lines)] or [line]


def _layout(trace: Trace, items: list[_Item]) -> _Layout:
    def ink(item: _Item, line: str) -> float:  # how wide a side line is drawn
        return columns(line) * CHAR + (TAG_PAD if isinstance(item, _Tag) else 0)

    longest = {side: max((ink(i, line) for i in items if i.column == side for line in i.lines), default=0.0)
               for side in ENDPOINTS}  # fmt: skip
    seg = max((columns(i.lines[0]) for i in items if isinstance(i, _Arrow)), default=0)
    band = max((columns(line) for i in items if isinstance(i, _Band) for line in i.lines), default=0)
    wire = max(WIRE_MIN, seg * SEG_CHAR + 40)
    spare = MAX_WIDTH - 6 - 2 * MARGIN - GUTTER - 2 * GAP - wire - sum(longest.values())
    wanted = min(band * BAND_CHAR + 24, BAND_MAX) - wire
    wire += max(0.0, min(wanted, spare))  # a band widens the wire only into room the sides leave
    for item in items:  # a band's words wrap inside the wire
        if isinstance(item, _Band):
            chars = int((wire - 24) // BAND_CHAR)
            item.lines = [part for line in item.lines for part in textwrap.wrap(line, chars, subsequent_indent="  ")]
    room = MAX_WIDTH - 6 - 2 * MARGIN - GUTTER - 2 * GAP - wire  # 6: rounding of label widths
    want = dict(longest)
    if want["client"] + want["server"] > room:  # share the room, each side at least what it needs up to half
        half = room / 2
        small = min(want.values())
        for side in ENDPOINTS:
            want[side] = min(want[side], max(half, room - small))
    for item in items:
        if item.column in ENDPOINTS:
            chars = max(12, int((want[item.column] - ink(item, "")) / CHAR))
            item.lines = [part for line in item.lines for part in _wrap(line, chars)]
    widths = {side: max((ink(i, line) for i in items if i.column == side for line in i.lines), default=6 * CHAR)
              for side in ENDPOINTS}  # fmt: skip
    x_client = MARGIN + GUTTER + widths["client"] + GAP
    x_server = x_client + wire
    width = max(x_server + GAP + widths["server"] + MARGIN, 360.0)

    title: list[tuple[str, str]] = []
    head = header_lines(trace)
    chars = int((width - 2 * MARGIN) // (0.6 * 12))
    title += [("title", line) for line in _wrap(head[0], chars)]
    small = int((width - 2 * MARGIN) // (0.6 * 10.5))
    for line in head[1:]:
        title += [("meta", part) for part in _wrap(line, small)]
    if notice(trace):
        title += [("notice", part) for part in _wrap(notice(trace), small)]
    top = MARGIN + len(title) * 15 + 12 + 22  # title, then the lifeline heads

    knots: list[tuple[float, float]] = []
    breaks: list[_Break] = []
    bottom: dict[str, float] = {"client": top, "server": top, "wire": top}
    y, last_t = top + 10, None
    for item in items:
        if last_t is not None:
            natural = (item.t - last_t) * 1000 * PX_PER_MS
            if natural > MAX_GAP_PX:
                breaks.append(_Break(y, y + BREAK_PX, item.t - last_t))
                natural = BREAK_PX
            y += max(natural, 0.0)
        if item.column == "wire":
            y = max(y, bottom["wire"] + 11)
            # an arrow's label sits above its line; a band's box ends below its words, clear of the next label
            bottom["wire"] = y + LINE * len(item.lines) + (8 if isinstance(item, _Band) else -9)
        elif item.column in bottom and item.lines:  # clear of what is drawn above, a box's border included
            above, below = _EXTENT[isinstance(item, _Tag)]
            y = max(y, bottom[item.column] + above + 2)
            bottom[item.column] = y + below + LINE * (len(item.lines) - 1)
        item.y = y
        knots.append((item.t, y))
        last_t = item.t
    end = max([y + 16, *bottom.values()]) + 8
    return _Layout(width, x_client, x_server, top, end, knots, breaks, title, widths)


def _y_at(knots: list[tuple[float, float]], t: float) -> float:
    """Where time `t` is drawn: linear between the surrounding items (the first item at an instant)."""
    for (t0, y0), (t1, y1) in itertools.pairwise(knots):
        if t0 <= t <= t1:
            if t1 == t0:
                return y0
            return y0 + (t - t0) / (t1 - t0) * (y1 - y0)
    if knots and t < knots[0][0]:
        return knots[0][1]
    return knots[-1][1] if knots else 0.0


# ---- drawing -----------------------------------------------------------------------------------
def _colour(segment: Segment) -> str:
    colour = next((c for f, c in COLOURS.items() if segment.has(f)), None)
    return colour or ("#333333" if segment.len else GREY)


ADVANCE = 0.602  # em: the monospace advance (DejaVu Sans Mono 1233/2048, Liberation Mono 1229/2048)


def _underlines(x: float, y: float, text: str, anchor: str, size: float, colour: str) -> str:
    """A bar under each "_" of monospace text. The font's own low line is 0.04 em thick, under one
    device pixel at 11.5 px even at 2x, and resvg's fast text drops it or not by where it falls:
    FIN_WAIT_1 read "FIN WAIT 1". These bars are a pixel thick at any scale."""
    advance = ADVANCE * size
    left = {"start": x, "end": x - len(text) * advance, "middle": x - len(text) * advance / 2}[anchor]
    return "".join(
        f'<rect x="{left + i * advance:.2f}" y="{y + 0.19 * size:.2f}" width="{advance:.2f}" '
        f'height="{max(0.05 * size, 1.0):.2f}" fill="{colour}"/>'
        for i, char in enumerate(text)
        if char == "_"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: float = FONT, colour: str = "#222",
          family: str = MONO, weight: str = "normal", css: str = "", extra: str = "") -> str:  # fmt: skip
    cls = f' class="{css}"' if css else ""
    element = (
        f'<text{cls} x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-family="{family}" font-size="{size}" '
        f'font-weight="{weight}" fill="{colour}">{html.escape(text)}</text>'
    )
    if family == MONO and "_" in text:
        element += _underlines(x, y, text, anchor, size, colour)
    return f"<g{extra}>{element}</g>" if extra else element


def _svg(trace: Trace, items: list[_Item], lay: _Layout) -> str:
    xc, xs, width = lay.x_client, lay.x_server, lay.width
    x_of = {"client": xc, "server": xs}
    out: list[str] = []
    y = MARGIN + 12
    for css, line in lay.title:
        if css == "title":
            out.append(_text(MARGIN, y, line, size=12, family=SANS, weight="bold", css="title"))
        elif css == "notice":
            out.append(f'<rect x="{MARGIN - 3}" y="{y - 11:.1f}" width="{width - 2 * MARGIN + 6:.1f}" height="15" '
                       f'fill="#fff3cd"/>')  # fmt: skip
            out.append(_text(MARGIN, y, line, size=10.5, family=SANS, colour="#7a5a00", css="notice"))
        else:
            out.append(_text(MARGIN, y, line, size=10.5, family=SANS, colour="#555", css="meta"))
        y += 15
    heads = lay.top - 14
    for side, x in x_of.items():
        out.append(f'<rect x="{x - 30:.1f}" y="{heads - 13:.1f}" width="60" height="19" rx="4" fill="#f3f3f3" '
                   f'stroke="#999"/>')  # fmt: skip
        out.append(
            _text(x, heads, word("side", side), anchor="middle", size=11.5, family=SANS, weight="bold", css="endpoint")
        )

    # lifelines, interrupted by breaks
    spans, start = [], lay.top
    for b in lay.breaks:
        spans.append((start, b.y0 + 4))
        start = b.y1 - 4
    spans.append((start, lay.bottom))
    for x in x_of.values():
        for a, b in spans:
            out.append(f'<line class="lifeline" x1="{x:.1f}" y1="{a:.1f}" x2="{x:.1f}" y2="{b:.1f}" '
                       f'stroke="#bbbbbb" stroke-width="2"/>')  # fmt: skip
    for b in lay.breaks:
        mid = (b.y0 + b.y1) / 2
        for x in x_of.values():
            for dy in (-3.0, 3.0):
                out.append(f'<line class="break" x1="{x - 7:.1f}" y1="{mid + dy + 3:.1f}" x2="{x + 7:.1f}" '
                           f'y2="{mid + dy - 3:.1f}" stroke="#999" stroke-width="1.2"/>')  # fmt: skip
        out.append(_text((xc + xs) / 2, mid + 2, f"⋯ {format_duration(b.seconds)} later ⋯", anchor="middle",
                         size=10, family=SANS, colour=GREY, css="break"))  # fmt: skip

    # time column: a clock reading where there is room for one
    last = -100.0
    for item in items:
        if item.column == "ghost" or item.y - last < 13:
            continue
        out.append(_text(MARGIN + GUTTER - 6, item.y + 4, format_ms(item.t), anchor="end", size=9.5, colour="#999",
                         css="time"))  # fmt: skip
        last = item.y

    for item in items:
        if isinstance(item, _Call) and item.end is not None:  # blocked: a bar to where it returned
            x = x_of[item.column]
            css, fill, stroke = ("busy", "#eeeeee", "#999999") if item.css == "busy" else ("blocked", "#dbe7fb", BAR)
            out.append(f'<rect class="{css}" x="{x - 4:.1f}" y="{item.y:.1f}" width="8" '
                       f'height="{max(item.end.y - item.y, 2):.1f}" fill="{fill}" stroke="{stroke}" '
                       f'stroke-width="1.2"/>')  # fmt: skip
    for item in items:
        if isinstance(item, _Band):
            out.append(_band(item, lay))
        elif isinstance(item, _Arrow):
            out.append(_arrow(item, lay, float((trace.link or {}).get("delay") or 0.0)))
    for item in items:
        if isinstance(item, (_Call, _Tag)):
            out.append(_side_text(item, x_of[item.column]))

    legend = text("render.legend", px=f"{PX_PER_MS:g}")
    ly = lay.bottom + 4
    for line in _wrap(legend, int((width - 2 * MARGIN) // (0.6 * 9.5))):
        ly += 12
        out.append(_text(MARGIN, ly, line, size=9.5, family=SANS, colour="#888", css="legend"))
    height = ly + MARGIN
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">'
        f'<rect width="100%" height="100%" fill="#ffffff"/>' + "".join(out) + "</svg>"
    )


def _side_text(item: _Call | _Tag, x: float) -> str:
    left = item.column == "client"
    tx = x - GAP if left else x + GAP
    anchor = "end" if left else "start"
    parts = []
    if isinstance(item, _Call) and item.end is None and item.start is None:
        parts.append(f'<line class="tick" x1="{x - 5:.1f}" y1="{item.y:.1f}" x2="{x + 5:.1f}" y2="{item.y:.1f}" '
                     f'stroke="#444" stroke-width="1.5"/>')  # fmt: skip
    colour = {"state": STATE, "signal": ERROR, "err": ERROR}.get(item.css, "#222")
    if isinstance(item, _Tag) and item.css == "state":
        w = max(columns(line) for line in item.lines) * CHAR + 8
        bx = tx - w if left else tx
        height = LINE * len(item.lines) + 2
        parts.append(f'<rect x="{bx:.1f}" y="{item.y - 10:.1f}" width="{w:.1f}" height="{height + 2:.1f}" rx="6" '
                     f'fill="#eef7ee" stroke="{STATE}" stroke-width="0.8"/>')  # fmt: skip
        tx += -4 if left else 4
    baseline = 3.0 if isinstance(item, _Tag) else 4.0  # a state's underscores clear its box
    for n, line in enumerate(item.lines):
        parts.append(_text(tx, item.y + baseline + n * LINE, line, anchor=anchor, colour=colour, css=item.css))
    return "".join(parts)


def _arrow(item: _Arrow, lay: _Layout, delay: float) -> str:
    s = item.segment
    assert s is not None
    xc, xs = lay.x_client, lay.x_server
    x0, x1 = (xc, xs) if s.src == "client" else (xs, xc)
    y0 = item.y
    colour = _colour(s)
    direction = "c2s" if s.src == "client" else "s2c"
    flags = "".join(f.lower()[0] for f in s.flags)
    css = f"segment {direction} {s.fate} flags-{flags or 'none'}"
    width = 1.7 if set(s.flags) & {"SYN", "FIN", "RST"} else 1.2
    dash = ""
    if s.fate == "duplicate":
        x0 = (xc + xs) / 2
        dash = ' stroke-dasharray="5,3"'
    if item.arrived is None:  # lost: ends half-way, on the slope it would have had
        xe = (x0 + x1) / 2
        ye = y0 + max(_y_at(lay.knots, item.t + delay) - y0, 0.0) / 2
    else:  # at its arrival time, but never above where it left (items at one instant are spread)
        xe, ye = x1, max(_y_at(lay.knots, item.arrived), y0)
    parts = [f'<g class="{css}">']
    parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{xe:.1f}" y2="{ye:.1f}" stroke="{colour}" '
                 f'stroke-width="{width}"{dash}/>')  # fmt: skip
    angle = math.atan2(ye - y0, xe - x0)
    if item.arrived is not None:
        ux, uy = math.cos(angle), math.sin(angle)
        px, py = -uy, ux
        tip = (xe, ye)
        a = (xe - 9 * ux + 3.5 * px, ye - 9 * uy + 3.5 * py)
        b = (xe - 9 * ux - 3.5 * px, ye - 9 * uy - 3.5 * py)
        parts.append(f'<polygon points="{tip[0]:.1f},{tip[1]:.1f} {a[0]:.1f},{a[1]:.1f} {b[0]:.1f},{b[1]:.1f}" '
                     f'fill="{colour}"/>')  # fmt: skip
    elif s.fate == "held":
        parts.append(f'<rect x="{xe - 2:.1f}" y="{ye - 7:.1f}" width="4" height="14" fill="{ERROR}"/>')
        ahead = 1 if x1 > x0 else -1
        parts.append(_text(xe + 6 * ahead, ye + 4, "held", anchor="start" if ahead > 0 else "end", size=9.5,
                           family=SANS, colour=ERROR))  # fmt: skip
    else:
        parts.append(f'<path d="M{xe - 5:.1f},{ye - 5:.1f} L{xe + 5:.1f},{ye + 5:.1f} M{xe - 5:.1f},{ye + 5:.1f} '
                     f'L{xe + 5:.1f},{ye - 5:.1f}" stroke="{ERROR}" stroke-width="2.2"/>')  # fmt: skip
        ahead = 1 if x1 > x0 else -1  # the word goes where the arrow would have gone on: clear of its label
        parts.append(_text(xe + 9 * ahead, ye + 4, "dropped", anchor="start" if ahead > 0 else "end", size=9.5,
                           family=SANS, colour=ERROR))  # fmt: skip
    # the label along the arrow, above it, starting at the sender
    label = item.lines[0]
    rot = math.degrees(math.atan2(ye - y0, xe - x0) if xe > x0 else math.atan2(y0 - ye, x0 - xe))
    anchor = "start" if xe > x0 else "end"
    lx = x0 + (6 if xe > x0 else -6)
    ly = y0 - 3 + (6 * math.tan(math.radians(rot)) if xe > x0 else -6 * math.tan(math.radians(rot)))
    if s.fate == "duplicate":  # it starts mid-wire: the label ends at the receiver, on the arrow's slope
        anchor = "end" if xe > x0 else "start"
        lx = xe + (-12 if xe > x0 else 12)
        ly = ye - 3 - 12 * abs(math.tan(math.radians(rot)))
    transform = f' transform="rotate({rot:.2f} {lx:.1f} {ly:.1f})"' if abs(rot) > 0.05 else ""
    parts.append(_text(lx, ly, label, anchor=anchor, size=SEG_FONT, colour=colour, css="label", extra=transform))
    parts.append("</g>")
    return "".join(parts)


def _band(item: _Band, lay: _Layout) -> str:
    segs = item.segments
    xc, xs = lay.x_client, lay.x_server
    first, last = segs[0], segs[-1]
    top_l, bot_l = item.y, max(_y_at(lay.knots, last.t), item.y + LINE * len(item.lines) + 6)
    arrive0 = _y_at(lay.knots, first.arrived if first.arrived is not None else first.t)
    arrive1 = max(_y_at(lay.knots, last.arrived if last.arrived is not None else last.t), bot_l)
    pts = f"{xc:.1f},{top_l:.1f} {xs:.1f},{arrive0:.1f} {xs:.1f},{arrive1:.1f} {xc:.1f},{bot_l:.1f}"
    out = [f'<g class="bulk"><polygon points="{pts}" fill="#ececec" stroke="#9a9a9a" stroke-width="1"/>']
    for n, line in enumerate(item.lines):
        out.append(_text((xc + xs) / 2, top_l + 12 + n * LINE, line, anchor="middle", size=10, family=SANS,
                         colour="#444", css="label"))  # fmt: skip
    out.append("</g>")
    return "".join(out)


# ---- words -------------------------------------------------------------------------------------
def _words(trace: Trace, items: list[_Item]) -> str:
    """The picture as lines: clock-free, durations as categories, one line per thing drawn.

    Breaks are left out: where one falls depends on how the idle time splits between two events, and
    the waits that matter are said where calls return. So are what the scheduler decides in a bulk
    transfer (segment counts, window sizes: see `closekit.transcript.run_summary`)."""
    lines = header_lines(trace)
    if notice(trace):
        lines.append(text("transcript.note", notice=notice(trace)))
    client, server = word("side", "client"), word("side", "server")
    lines.append(text("render.words_head", client=client, server=server))
    for item in items:
        if isinstance(item, _Call) and item.words:
            bar = "┃" if item.start is not None or item.end is not None else "│"
            lines.append(f"{pad(word('side', item.column), 6)} {bar} {item.words}")
        elif isinstance(item, _Tag):
            lines.append(f"{pad(word('side', item.column), 6)} ~ {' '.join(item.lines)}")
        elif isinstance(item, _Arrow):
            lines.append(_arrow_words(item))
        elif isinstance(item, _Band):
            lines.append(f"{client} ⇶⇶ {item.words} ⇶⇶ {server}")
    return "\n".join(lines)


def _arrow_words(item: _Arrow) -> str:
    s = item.segment
    assert s is not None
    label = item.words
    if s.fate == "duplicate" and item.into is not None and item.into != s.conn:
        label += text("render.copied_into", conn=conn_tag(s.conn), into=conn_tag(item.into))
    elif s.fate == "duplicate":
        label += text("render.duplicate")
    lost = "✗ " + text("transcript.fate_dropped") if s.fate == "dropped" else text("transcript.fate_held")
    client, server = word("side", "client"), word("side", "server")
    if s.src == "client":
        shaft = f"{client} ──{label}──▶ {server}" if s.arrived is not None else f"{client} ──{label}── {lost}"
    else:
        shaft = f"{client} ◀──{label}── {server}" if s.arrived is not None else f"{lost} ──{label}── {server}"
    if flight_shown(s):
        shaft += "  " + text("render.in_flight", took=approx(s.arrived - s.t))  # type: ignore[operator]
    return shaft


def sequence_diagram(trace: Trace) -> SvgPicture:
    """The trace as a time-sequence diagram to scale (SVG, PNG and words); FIN blue, RST red, SYN green."""
    items = _model(trace)
    lay = _layout(trace, items)
    title = text("render.sequence_title", scenario=trace.scenario)
    return SvgPicture("sequence", title, _words(trace, items), _svg(trace, items, lay))
