"""Settings a scenario changes from the kernel's defaults: per-namespace sysctls and route options.

Experiments run with the kernel as it ships. A lesson that needs something else (a short
FIN_WAIT_2 timeout, a route that acknowledges at once) declares it here; the transcript header,
the trace's JSON (`settings`) and every diagram title show it, so what a student sees is never a
tuned kernel passing for the default one. Settings apply to both endpoints' namespaces and are
put back to the defaults after the experiment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from closekit.errors import ScenarioError, text

# Per-network-namespace sysctls a scenario may change: (lowest, highest, what it governs). The ranges
# keep an experiment's kernel memory and timers bounded: TCP's memory (tcp_mem) is the whole host's, so
# no socket may be given buffers beyond BUFFER_MAX, and no timer may keep an orphan for long.
BUFFER_MAX = 8 * 1024 * 1024  # bytes; the kernel's own defaults are 6 MiB (tcp_rmem) and 4 MiB (tcp_wmem)
SYSCTLS: dict[str, tuple[int, int, str]] = {
    "net.ipv4.tcp_fin_timeout": (1, 600, "seconds an orphaned socket stays in FIN_WAIT_2"),
    "net.ipv4.tcp_orphan_retries": (0, 15, "retransmissions an orphaned socket makes before it gives up (0 means 8)"),
    "net.ipv4.tcp_retries2": (0, 15, "retransmissions before an established connection is given up"),
    "net.ipv4.tcp_syn_retries": (1, 10, "SYN retransmissions before connect() fails"),
    "net.ipv4.tcp_synack_retries": (0, 10, "SYN-ACK retransmissions before a half-open connection is dropped"),
    "net.ipv4.tcp_rmem": (1, BUFFER_MAX, "receive buffer: minimum, initial, maximum bytes"),
    "net.ipv4.tcp_wmem": (1, BUFFER_MAX, "send buffer: minimum, initial, maximum bytes"),
    "net.ipv4.tcp_abort_on_overflow": (0, 1, "reset connections a full accept queue cannot take"),
    "net.ipv4.tcp_rfc1337": (0, 1, "1: TIME_WAIT ignores RSTs instead of being ended by them (RFC 1337)"),
    "net.ipv4.tcp_timestamps": (0, 2, "the timestamps option (PAWS protects against old duplicates with it)"),
    "net.ipv4.tcp_sack": (0, 1, "selective acknowledgements"),
    "net.ipv4.tcp_autocorking": (0, 1, "holding small writes back while earlier ones are queued"),
    "net.ipv4.tcp_tw_reuse": (0, 2, "reusing a TIME_WAIT 4-tuple for a new outgoing connection"),
    "net.ipv4.tcp_keepalive_time": (1, 32767, "seconds idle before keepalive probes start"),
    "net.core.somaxconn": (0, 4096, "the largest accept queue listen() may ask for"),
}
# Route metrics on the route to the peer (as `ip route … quickack 1 rto_min 50ms` would set).
ROUTE_OPTIONS: dict[str, tuple[int, int, str]] = {
    "quickack": (0, 1, "acknowledge at once instead of delaying ACKs"),
    "rto_min": (1, 120_000, "the smallest retransmission timeout, in milliseconds"),
}
_VALUE = re.compile(r"^\d{1,10}( \d{1,10}){0,2}$")
_THREE = ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")


@dataclass(frozen=True)
class Settings:
    """Sysctls (name -> value as written to /proc/sys) and route options (name -> integer).

    Give them as dicts: Settings(sysctls={"net.ipv4.tcp_fin_timeout": "5"}, route={"quickack": 1}).
    """

    sysctls: tuple[tuple[str, str], ...] = ()
    route: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sysctls", _pairs("sysctls", self.sysctls, str))
        object.__setattr__(self, "route", _pairs("route", self.route, int))
        check_settings(self)

    @property
    def is_default(self) -> bool:
        return not self.sysctls and not self.route

    def describe(self) -> str:
        """'kernel defaults', or e.g. 'net.ipv4.tcp_fin_timeout=5; route quickack 1'."""
        if self.is_default:
            return "kernel defaults"
        parts = [f"{name}={value}" for name, value in self.sysctls]
        parts += [f"route {name} {value}" for name, value in self.route]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from the kernel's defaults: {} for none."""
        data: dict[str, Any] = {}
        if self.sysctls:
            data["sysctls"] = dict(self.sysctls)
        if self.route:
            data["route"] = dict(self.route)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Settings:
        if not isinstance(data, dict) or set(data) - {"sysctls", "route"}:
            raise ScenarioError(text("refusal.settings_dict"))
        return cls(sysctls=data.get("sysctls", {}), route=data.get("route", {}))

    def sysctl(self, name: str) -> str | None:
        return dict(self.sysctls).get(name)


def _pairs(what: str, value: Any, kind: type) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, dict):
        value = tuple(value.items())
    if not isinstance(value, tuple | list) or not all(isinstance(p, tuple | list) and len(p) == 2 for p in value):
        raise ScenarioError(text("refusal.settings_pairs", what=what, value=repr(value)))
    pairs = tuple((name, v) for name, v in value)
    for name, v in pairs:
        if not isinstance(name, str) or isinstance(v, bool) or not isinstance(v, kind):
            raise ScenarioError(
                text("refusal.settings_pair", what=what, name=repr(name), value=repr(v), kind=kind.__name__)
            )
    return tuple(sorted(pairs))


def check_settings(settings: Settings) -> None:
    for name, value in settings.sysctls:
        if name not in SYSCTLS:
            raise ScenarioError(text("refusal.sysctl_unknown", name=repr(name), allowed=", ".join(SYSCTLS)))
        low, high, _what = SYSCTLS[name]
        if not _VALUE.match(value) or len(value.split()) != (3 if name in _THREE else 1):
            shape = text("refusal.sysctl_three") if name in _THREE else text("refusal.sysctl_one")
            raise ScenarioError(
                text("refusal.sysctl_value", name=name, value=repr(value), shape=shape, low=low, high=high)
            )
        numbers = [int(n) for n in value.split()]
        if not all(low <= n <= high for n in numbers) or numbers != sorted(numbers):
            order = text("refusal.sysctl_order") if name in _THREE else ""
            raise ScenarioError(
                text("refusal.sysctl_range", name=name, value=repr(value), low=low, high=high, order=order)
            )
    for name, value in settings.route:
        if name not in ROUTE_OPTIONS:
            raise ScenarioError(text("refusal.route_unknown", name=repr(name), allowed=", ".join(ROUTE_OPTIONS)))
        low, high, _what = ROUTE_OPTIONS[name]
        if not low <= value <= high:
            raise ScenarioError(text("refusal.route_range", name=name, value=value, low=low, high=high))
