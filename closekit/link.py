"""The link between the two endpoints: a one-way delay, an optional rate, and rules for single segments.

A scenario states its link; in mode netns the lab's wire (a userspace relay between two TUN
devices, one in each endpoint's network namespace) applies it to every segment it carries. The
default link has no delay and no rules: a segment is handed over as soon as it is sent.

Rules pick segments by sender and flags and act on the nth match (and, with `count`, on the
ones after it):

    from closekit.link import Link, drop, hold
    Link(delay=0.01, rules=(drop("client", "FIN"),))          # the first FIN is lost
    Link(rules=(drop("client", "FIN", count=None),))          # every FIN from the client is lost

Everything here is plain data: it crosses into the lab as JSON and is checked again there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from closekit.errors import ScenarioError, text

ACTIONS = ("drop", "delay", "duplicate", "hold", "copy")
ENDPOINTS = ("client", "server")
FLAGS = ("SYN", "ACK", "FIN", "RST", "PSH", "URG")
MAX_DELAY = 5.0  # seconds, one way
MAX_RULES = 16
MIN_RATE, MAX_RATE = 8_000, 10_000_000_000  # bits per second


@dataclass(frozen=True)
class Rule:
    """Act on segments from `src` that carry every flag in `flags` (and payload, if `data` says so).

    `nth` is the first matching segment acted on (1: the first match); `count` how many matches
    from there on (None: every later one too). `seconds` is the extra delay of "delay" and the gap
    before the copy of "duplicate". "hold" keeps the segment back until a release() step; "copy"
    delivers it and keeps a copy that release() replays later (an old duplicate).
    """

    action: str
    src: str
    flags: tuple[str, ...] = ()
    data: bool | None = None
    nth: int = 1
    count: int | None = 1
    seconds: float = 0.0
    without: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("flags", "without"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        check_rule(self)

    def matches(self, src: str, flags: tuple[str, ...], length: int) -> bool:
        """Does a segment from `src` with these flags and payload length match (before counting)?"""
        return (
            src == self.src
            and all(f in flags for f in self.flags)
            and not any(f in flags for f in self.without)
            and (self.data is None or (length > 0) == self.data)
        )

    def applies_to(self, match_number: int) -> bool:
        """Is the match_number-th matching segment (1-based) one this rule acts on?"""
        if match_number < self.nth:
            return False
        return self.count is None or match_number < self.nth + self.count

    def describe(self) -> str:
        """E.g. 'drop the 1st FIN from the client', 'delay every data segment from the server by 50 ms'."""
        what = "+".join(self.flags) if self.flags else "segment"
        if self.without:
            what = f"{what} (without {'/'.join(self.without)})"
        if self.data is True:
            what = f"data {what}" if self.flags else "data segment"
        elif self.data is False:
            what = f"{what} without data"
        if self.count is None:
            which = f"every {what}" + (f" from the {_ordinal(self.nth)} on" if self.nth > 1 else "")
        elif self.count == 1:
            which = f"the {_ordinal(self.nth)} {what}"
        else:
            which = f"{self.count} {what}s from the {_ordinal(self.nth)} on"
        which += f" from the {self.src}"
        if self.action == "delay":
            return f"delay {which} by {ms_words(self.seconds)}"
        if self.action == "duplicate":
            return f"duplicate {which}" + (f" (the copy {ms_words(self.seconds)} later)" if self.seconds else "")
        return {
            "drop": f"drop {which}",
            "hold": f"hold back {which} until a release() step",
            "copy": f"keep a copy of {which} for a release() step to replay",
        }[self.action]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "src": self.src,
            "flags": list(self.flags),
            "data": self.data,
            "nth": self.nth,
            "count": self.count,
            "seconds": self.seconds,
            "without": list(self.without),
            "text": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Rule:
        if not isinstance(data, dict) or set(data) - {*_RULE_KEYS, "text"} or "action" not in data or "src" not in data:
            raise ScenarioError(text("refusal.rule_dict", keys=", ".join(_RULE_KEYS)))
        data = {k: v for k, v in data.items() if k != "text"}
        lists = {k: data.get(k, []) for k in ("flags", "without")}
        if not all(isinstance(v, list) for v in lists.values()):
            raise ScenarioError(text("refusal.rule_lists", flags=", ".join(FLAGS)))
        return cls(**{**data, **{k: tuple(v) for k, v in lists.items()}})


_RULE_KEYS = ("action", "src", "flags", "data", "nth", "count", "seconds", "without")


@dataclass(frozen=True)
class Link:
    """What the wire between client and server does: `delay` seconds one way, an optional `rate` in
    bits per second (segments queue behind each other), and rules for single segments."""

    delay: float = 0.0
    rate: int | None = None
    rules: tuple[Rule, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.rules, list):
            object.__setattr__(self, "rules", tuple(self.rules))
        check_link(self)

    @property
    def is_default(self) -> bool:
        """No delay, no rate, no rules: the link a mode without the lab's wire can also give."""
        return self.delay == 0 and self.rate is None and not self.rules

    @property
    def holds(self) -> bool:
        """Some rule keeps segments back for a release() step."""
        return any(r.action in ("hold", "copy") for r in self.rules)

    def describe(self) -> str:
        """'no delay'; 'one-way delay 10 ms, 1 Mbit/s; drop the 1st FIN from the client'."""
        parts = [f"one-way delay {ms_words(self.delay)}"] if self.delay else []
        if self.rate is not None:
            parts.append(rate_words(self.rate))
        parts += [r.describe() for r in self.rules]
        return "; ".join(parts) if parts else "no delay"

    def to_dict(self) -> dict[str, Any]:
        """The link as data; "text" says it in words (ignored when read back)."""
        return {"delay": self.delay, "rate": self.rate, "rules": [r.to_dict() for r in self.rules],
                "text": self.describe()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> Link:
        if not isinstance(data, dict) or set(data) - {"delay", "rate", "rules", "text"}:
            raise ScenarioError(text("refusal.link_dict"))
        rules = data.get("rules", [])
        if not isinstance(rules, list) or len(rules) > MAX_RULES:
            raise ScenarioError(text("refusal.link_rules_list", most=MAX_RULES))
        return cls(delay=data.get("delay", 0.0), rate=data.get("rate"), rules=tuple(Rule.from_dict(r) for r in rules))


# ---- constructors, named as a scenario reads ---------------------------------------------------
def drop(
    src: str, *flags: str, nth: int = 1, count: int | None = 1, data: bool | None = None, without: tuple[str, ...] = ()
) -> Rule:
    """Lose the nth segment from `src` carrying `flags` (count=None: that one and every later match)."""
    return Rule("drop", src, flags, data=data, nth=nth, count=count, without=without)


def delay(src: str, *flags: str, seconds: float, nth: int = 1, count: int | None = 1, data: bool | None = None) -> Rule:
    """Deliver the matching segment `seconds` later than the link's own delay."""
    return Rule("delay", src, flags, data=data, nth=nth, count=count, seconds=seconds)


def duplicate(
    src: str, *flags: str, after: float = 0.0, nth: int = 1, count: int | None = 1, data: bool | None = None
) -> Rule:
    """Deliver the matching segment twice, the copy `after` seconds later."""
    return Rule("duplicate", src, flags, data=data, nth=nth, count=count, seconds=after)


def hold(
    src: str, *flags: str, nth: int = 1, count: int | None = 1, data: bool | None = None, without: tuple[str, ...] = ()
) -> Rule:
    """Keep the matching segment back until a release() step hands it over (late, out of order)."""
    return Rule("hold", src, flags, data=data, nth=nth, count=count, without=without)


def copy(
    src: str, *flags: str, nth: int = 1, count: int | None = 1, data: bool | None = None, without: tuple[str, ...] = ()
) -> Rule:
    """Deliver the matching segment and keep a copy; a release() step replays the copy (an old duplicate)."""
    return Rule("copy", src, flags, data=data, nth=nth, count=count, without=without)


# ---- validation ---------------------------------------------------------------------------------
def check_rule(rule: Rule) -> None:
    if rule.action not in ACTIONS:
        raise ScenarioError(text("refusal.rule_action", action=repr(rule.action), allowed=", ".join(ACTIONS)))
    if rule.src not in ENDPOINTS:
        raise ScenarioError(text("refusal.rule_src", src=repr(rule.src)))
    for name in ("flags", "without"):
        value = getattr(rule, name)
        if not isinstance(value, tuple) or any(f not in FLAGS for f in value) or len(set(value)) != len(value):
            raise ScenarioError(text("refusal.rule_flags", name=name, flags=", ".join(FLAGS), value=repr(value)))
    if set(rule.flags) & set(rule.without):
        raise ScenarioError(text("refusal.rule_both"))
    if rule.data not in (None, True, False):
        raise ScenarioError(text("refusal.rule_data"))
    _whole("nth", rule.nth, 1, 1_000_000, rule.action)
    if rule.count is not None:
        _whole("count", rule.count, 1, 1_000_000, rule.action)
    _seconds("seconds", rule.seconds, 0.0, MAX_DELAY, rule.action)
    if rule.action == "delay" and rule.seconds <= 0:
        raise ScenarioError(text("refusal.delay_seconds"))
    if rule.action in ("hold", "copy") and rule.seconds:
        raise ScenarioError(text("refusal.held_seconds", action=rule.action))


def check_link(link: Link) -> None:
    _seconds("delay", link.delay, 0.0, MAX_DELAY)
    if link.rate is not None:
        _whole("rate", link.rate, MIN_RATE, MAX_RATE)
    if not isinstance(link.rules, tuple) or len(link.rules) > MAX_RULES:
        raise ScenarioError(text("refusal.link_rules_tuple", most=MAX_RULES))
    for r in link.rules:
        if type(r) is not Rule:
            raise ScenarioError(text("refusal.not_a_rule", rule=repr(r)))


def _whole(name: str, value: Any, low: int, high: int, action: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        what = _what(name, action)
        raise ScenarioError(text("refusal.whole", what=what, low=low, high=high, value=repr(value)))


def _seconds(name: str, value: Any, low: float, high: float, action: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        what = _what(name, action)
        raise ScenarioError(text("refusal.seconds_number", what=what, low=low, high=high, value=repr(value)))
    if not low <= value <= high:
        raise ScenarioError(text("refusal.range_seconds", what=_what(name, action), value=value, low=low, high=high))


def _what(name: str, action: str) -> str:
    """The setting a refusal names: a field of the link, or (with `action`) of one of its rules."""
    if action:
        return text("refusal.rule_field", action=action, name=name)
    return text("refusal.link_rate") if name == "rate" else text("refusal.link_delay")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ms_words(seconds: float) -> str:
    """A link setting's time: `40 ms`, `1.5 s`."""
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def rate_words(bits: int) -> str:
    """A link's rate: `2 Mbit/s`."""
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= size:
            return f"{bits / size:g} {unit}"
    return f"{bits} bit/s"
