"""Scenarios: packetdrill-like timelines of lines for two endpoints and the processes they fork.

By default a scenario starts connected, as two programs would: the server listens and blocks in
accept(), the client connects, and the first line starts once both calls have returned
(`start="connected"`). With `start="listening"` only the server listens and the client holds a
fresh socket: the lines connect and accept themselves, so what happens before accept() can be a
lesson too.

Then each process runs its own lines as its program would: the next as soon as its previous one
returned, and a call that blocks (a recv() waiting for data, a lingering close()) blocks in the
kernel until the kernel wakes it. Lines of different processes run side by side; nothing waits for
the network to settle. Order between processes comes only from what the scenario says:

- a sync point (`wait_recv_queue`, `wait_state`, `wait_segment`, `wait_acked`, `wait_done`,
  `wait_blocked`), a condition the kernel can be asked about, holds every line after it until it
  holds. It is judged once every process has returned from its lines before it, or sleeps in the
  kernel in the last of them (blocked in a call that waits: then what it waits for can only come
  from the lines after);
- `release(side)` (the wire hands over segments a rule kept back) and `at_once(a, b)` (calls of
  different processes whose segments cross on the wire) are the lab's steps, held and holding the
  same way.

So a transcript shows every wait a scenario has: the calls that blocked, and the sync points.
A scenario is plain data: it crosses into the lab as JSON and is validated there again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from closekit import steps as st
from closekit.errors import ScenarioError, text
from closekit.link import Link
from closekit.settings import Settings
from closekit.steps import AtOnce, Holder, Step, SyncPoint, Where, iter_steps

STARTS = ("connected", "listening")
MAX_BYTES = st.MAX_BYTES
MAX_TIME_LIMIT = 60.0
MAX_STEPS = 200
MAX_DESCRIPTION = 1000  # characters, as a trace may carry (closekit.trace_schema)


@dataclass(frozen=True)
class Options:
    """Socket options applied before the connection is made (recorded as setsockopt calls)."""

    server_rcvbuf: int | None = None
    client_sndbuf: int | None = None
    server_sndbuf: int | None = None
    client_rcvbuf: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Scenario:
    """A named, described timeline; `section` names the part of the source document it backs.

    `link` is what the wire between the endpoints does (closekit.link), `settings` what the
    scenario changes from the kernel's defaults (closekit.settings).
    """

    name: str
    description: str
    steps: tuple[Step, ...]
    section: str = ""
    options: Options = Options()
    sync_timeout: float = 3.0
    time_limit: float = 10.0
    link: Link = Link()  # noqa: RUF009 (frozen)
    settings: Settings = Settings()  # noqa: RUF009 (frozen)
    start: str = "connected"

    def __post_init__(self) -> None:
        if isinstance(self.steps, list):
            object.__setattr__(self, "steps", tuple(self.steps))
        validate(self)

    @property
    def sides(self) -> list[str]:
        """Every process of the scenario: client, server, then forked children in order."""
        return list(self._owners)

    def endpoint_of(self, process: str) -> str:
        """The endpoint whose sockets `process` holds (a forked child holds its parent's)."""
        return self._owners[process]

    @cached_property
    def _owners(self) -> dict[str, str]:
        owners = {"client": "client", "server": "server"}
        for s in iter_steps(self.steps):
            if isinstance(s, st.Fork):
                owners[s.child] = owners[s.side]
        return owners

    def missing_in(self, mode: str) -> list[str]:
        """What this scenario needs that lab mode `mode` does not give (empty: it can run there)."""
        missing = []
        if not self.link.is_default and mode != "netns":
            missing.append(text("run.missing.wire", link=self.link.describe()))
        elif any(isinstance(s, AtOnce) for s in self.steps) and mode != "netns":
            missing.append(text("run.missing.wire_at_once"))
        if not self.settings.is_default and mode not in ("netns", "netns-loopback"):
            missing.append(text("run.missing.settings", settings=self.settings.describe()))
        if mode == "host-nocapture" and any(isinstance(s, st.WaitSegment) for s in iter_steps(self.steps)):
            missing.append(text("run.missing.segments"))
        return missing

    def missing_words(self, mode: str) -> str:
        """What missing_in() names, as one phrase ("" when nothing is missing)."""
        words = ""
        for need in self.missing_in(mode):
            words = text("run.both", first=words, second=need) if words else need
        return words

    def script(self) -> str:
        """The scenario as packetdrill-like lines, one step a line."""
        return "\n".join(s.describe() for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "section": self.section,
            "start": self.start,
            "options": self.options.to_dict(),
            "sync_timeout": self.sync_timeout,
            "time_limit": self.time_limit,
            "link": self.link.to_dict(),
            "settings": self.settings.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Scenario:
        """A scenario from its JSON form, validated as if written by hand (an error names what is wrong)."""
        if not isinstance(data, dict) or set(data) - set(_SCENARIO_KEYS) or not {"name", "steps"} <= set(data):
            raise ScenarioError(text("refusal.scenario_dict", keys=", ".join(_SCENARIO_KEYS)))
        steps = data["steps"]
        if not isinstance(steps, list) or len(steps) > MAX_STEPS:
            raise ScenarioError(text("refusal.scenario_steps_list", most=MAX_STEPS))
        options = data.get("options", {})
        if not isinstance(options, dict) or set(options) - {f.name for f in fields(Options)}:
            raise ScenarioError(text("refusal.options_dict", keys=", ".join(f.name for f in fields(Options))))
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            section=data.get("section", ""),
            start=data.get("start", "connected"),
            options=Options(**options),
            sync_timeout=data.get("sync_timeout", 3.0),
            time_limit=data.get("time_limit", 10.0),
            link=Link.from_dict(data.get("link", {})),
            settings=Settings.from_dict(data.get("settings", {})),
            steps=tuple(step_from_dict(s, nested=False) for s in steps),
        )

    @classmethod
    def remembered(cls, data: Any) -> Scenario:
        """from_dict, validating a scenario once: the last one made is kept by its JSON text (an exact
        key), so the same scenario run again (a cell run twice) is not validated again."""
        try:
            key = json.dumps(data)
        except (TypeError, ValueError):
            return cls.from_dict(data)  # not JSON: from_dict says what is wrong
        made = _MADE.get(key)
        if made is None:
            made = cls.from_dict(data)
            _MADE.clear()
            _MADE[key] = made
        return made


_MADE: dict[str, Scenario] = {}  # the last scenario Scenario.remembered made, by its JSON text
_SCENARIO_KEYS = ("name", "description", "section", "start", "options", "sync_timeout", "time_limit", "link",
                  "settings", "steps")  # fmt: skip


def step_from_dict(data: Any, nested: bool) -> Step:
    """One step from its JSON form ({"step": "send", "side": "client", "nbytes": 6})."""
    if not isinstance(data, dict) or not isinstance(data.get("step"), str) or data["step"] not in st.STEP_TYPES:
        raise ScenarioError(text("refusal.step_dict", allowed=", ".join(st.STEP_TYPES), data=f"{data!r:.80}"))
    cls = st.STEP_TYPES[data["step"]]
    allowed = {f.name for f in fields(cls)}
    given = {k: v for k, v in data.items() if k != "step"}
    if set(given) - allowed:
        taken, given_keys = ", ".join(sorted(allowed)), ", ".join(sorted(given))
        raise ScenarioError(text("refusal.step_keys", step=data["step"], allowed=taken, given=given_keys))
    if cls is AtOnce:
        if nested or not isinstance(given.get("steps"), list):
            raise ScenarioError(text("refusal.at_once_list"))
        given["steps"] = tuple(step_from_dict(s, nested=True) for s in given["steps"])
    elif cls is st.WaitSegment and isinstance(given.get("flags"), list):
        given["flags"] = tuple(given["flags"])
    if not isinstance(given.get("side"), str):
        raise ScenarioError(text("refusal.step_side", step=data["step"]))
    try:
        return cls(**given)
    except TypeError as e:
        raise ScenarioError(text("refusal.step_type_error", step=data["step"], error=e)) from None


# ---- validation ---------------------------------------------------------------------------------
def validate(scenario: Scenario) -> None:
    """Reject what can be known to be wrong before anything runs, naming the line and what is allowed."""
    _check_header(scenario)
    holders = {
        "client": Holder("client", "connected" if scenario.start == "connected" else "unconnected"),
        "server": Holder("server", "connected" if scenario.start == "connected" else "none", listener=True),
    }
    counted = 0
    sleeps: dict[str, float] = {}
    for i, step in enumerate(scenario.steps, 1):
        where = Where(i, scenario.name)
        _check_type(step, where, top=True)
        where = where.of(step)
        parts = step.steps if isinstance(step, AtOnce) else (step,)
        counted += len(parts)
        if counted > MAX_STEPS:
            raise ScenarioError(text("refusal.too_many_steps", scenario=repr(scenario.name), most=MAX_STEPS))
        if isinstance(step, AtOnce):
            _check_at_once(step, where)
        for part in parts:
            _check_step(part, where if part is step else where.within(part), scenario, holders)
            if isinstance(part, st.Sleep):
                sleeps[part.side] = sleeps.get(part.side, 0.0) + part.seconds
    for process, slept in sleeps.items():
        if slept >= scenario.time_limit:
            raise ScenarioError(
                text("refusal.sleeps_total", scenario=repr(scenario.name), process=process, slept=f"{slept:g}",
                     limit=f"{scenario.time_limit:g}", most=f"{MAX_TIME_LIMIT:g}")
            )  # fmt: skip


def _check_header(scenario: Scenario) -> None:
    if not isinstance(scenario.name, str) or not scenario.name or len(scenario.name) > 100:
        raise ScenarioError(text("refusal.name", most=100))
    if not isinstance(scenario.description, str) or not isinstance(scenario.section, str):
        raise ScenarioError(text("refusal.description_type", scenario=repr(scenario.name)))
    if len(scenario.description) > MAX_DESCRIPTION:
        length = len(scenario.description)
        raise ScenarioError(
            text("refusal.description_long", scenario=repr(scenario.name), length=length, most=MAX_DESCRIPTION)
        )
    if len(scenario.section) > 40:
        raise ScenarioError(text("refusal.section_long", scenario=repr(scenario.name), most=40))
    if not isinstance(scenario.steps, tuple) or not scenario.steps:
        raise ScenarioError(text("refusal.no_steps", scenario=repr(scenario.name)))
    if type(scenario.options) is not Options:
        options = f"{scenario.options!r:.80}"
        raise ScenarioError(text("refusal.options_type", scenario=repr(scenario.name), options=options))
    if type(scenario.link) is not Link:
        raise ScenarioError(text("refusal.link_type", scenario=repr(scenario.name), link=f"{scenario.link!r:.80}"))
    if type(scenario.settings) is not Settings:
        raise ScenarioError(text("refusal.settings_type", scenario=repr(scenario.name)))
    if scenario.start not in STARTS:
        start, allowed = f"{scenario.start!r:.40}", ", ".join(STARTS)
        raise ScenarioError(text("refusal.start", scenario=repr(scenario.name), allowed=allowed, start=start))
    st.check_number("sync_timeout", scenario.sync_timeout, 0.01, st.MAX_SECONDS)
    st.check_number("time_limit", scenario.time_limit, 0.1, MAX_TIME_LIMIT)
    for f in fields(Options):
        value = getattr(scenario.options, f.name)
        if value is not None:
            st.check_int(f.name, value, 1, MAX_BYTES)
    # re-check what a frozen dataclass may have been given behind its back
    Link.__post_init__(scenario.link)
    Settings.__post_init__(scenario.settings)


def _check_type(step: Any, where: Where, top: bool) -> None:
    if type(step) not in st.STEP_TYPES.values():
        allowed = ", ".join(st.STEP_TYPES)
        raise ScenarioError(text("refusal.not_a_step", where=where, step=f"{step!r:.80}", allowed=allowed))
    if not isinstance(step.side, str) or not step.side or len(step.side) > 40:
        raise ScenarioError(text("refusal.side_name", where=where))
    if isinstance(step, AtOnce):
        if not top:
            raise ScenarioError(text("refusal.at_once_nested", where=where))
        if not isinstance(step.steps, tuple) or len(step.steps) < 2:
            raise ScenarioError(text("refusal.at_once_two", where=where))
        for part in step.steps:
            _check_type(part, where, top=False)


def _check_at_once(step: AtOnce, where: Where) -> None:
    for part in step.steps:
        if part.lab or isinstance(part, st.Fork | st.Exit):
            raise ScenarioError(text("refusal.at_once_part", where=where, step=part.describe()))
    sides = [p.side for p in step.steps]
    if len(set(sides)) != len(sides):
        raise ScenarioError(text("refusal.at_once_sides", where=where))


def _check_step(step: Step, where: Where, scenario: Scenario, holders: dict[str, Holder]) -> None:
    if isinstance(step, st.Release):
        step.check(where, scenario, holders["client"])
        return
    if step.side not in holders:
        raise ScenarioError(
            text("refusal.unknown_side", where=where, side=repr(step.side), processes=str(sorted(holders)))
        )
    holder = holders[step.side]
    if holder.exited and not isinstance(step, SyncPoint):
        raise ScenarioError(text("refusal.exited", where=where, side=repr(step.side)))
    step.check(where, scenario, holder)
    if step.needs_socket:
        if isinstance(step, st.Close) and step.listener:
            if not holder.listener:
                raise ScenarioError(text("refusal.no_listener", where=where, side=repr(step.side)))
        elif holder.conn not in ("connected", "unconnected"):
            why = _conn_words(holder.conn)
            raise ScenarioError(text("refusal.no_socket", where=where, side=repr(step.side), why=why))
    if isinstance(step, st.WaitDone | st.WaitBlocked) and not holder.lines:
        raise ScenarioError(text("refusal.nothing_to_wait", where=where, side=repr(step.side)))
    if not step.lab:
        holder.lines += 1
    step.advance(where, holder, holders)


def _conn_words(conn: str) -> str:
    if conn == "none":
        return text("refusal.conn_none")
    return text("refusal.conn_closed") if conn == "closed" else conn
