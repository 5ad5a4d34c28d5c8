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

from closekit.errors import ScenarioError

# Per-network-namespace sysctls a scenario may change, and what each governs.
SYSCTLS: dict[str, str] = {
    "net.ipv4.tcp_fin_timeout": "seconds an orphaned socket stays in FIN_WAIT_2",
    "net.ipv4.tcp_orphan_retries": "retransmissions an orphaned socket makes before it gives up (0 means 8)",
    "net.ipv4.tcp_retries2": "retransmissions before an established connection is given up",
    "net.ipv4.tcp_syn_retries": "SYN retransmissions before connect() fails",
    "net.ipv4.tcp_synack_retries": "SYN-ACK retransmissions before a half-open connection is dropped",
    "net.ipv4.tcp_rmem": "receive buffer: minimum, initial, maximum bytes",
    "net.ipv4.tcp_wmem": "send buffer: minimum, initial, maximum bytes",
    "net.ipv4.tcp_abort_on_overflow": "reset connections a full accept queue cannot take",
    "net.ipv4.tcp_rfc1337": "1: TIME_WAIT ignores RSTs instead of being ended by them (RFC 1337)",
    "net.ipv4.tcp_timestamps": "the timestamps option (PAWS protects against old duplicates with it)",
    "net.ipv4.tcp_sack": "selective acknowledgements",
    "net.ipv4.tcp_autocorking": "holding small writes back while earlier ones are queued",
    "net.ipv4.tcp_tw_reuse": "reusing a TIME_WAIT 4-tuple for a new outgoing connection",
    "net.ipv4.tcp_keepalive_time": "seconds idle before keepalive probes start",
    "net.core.somaxconn": "the largest accept queue listen() may ask for",
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
            raise ScenarioError("settings are a dict with keys sysctls and route")
        return cls(sysctls=data.get("sysctls", {}), route=data.get("route", {}))

    def sysctl(self, name: str) -> str | None:
        return dict(self.sysctls).get(name)


def _pairs(what: str, value: Any, kind: type) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, dict):
        value = tuple(value.items())
    if not isinstance(value, tuple | list) or not all(isinstance(p, tuple | list) and len(p) == 2 for p in value):
        raise ScenarioError(f"settings {what} must be a dict of name -> value, not {value!r}")
    pairs = tuple((name, v) for name, v in value)
    for name, v in pairs:
        if not isinstance(name, str) or isinstance(v, bool) or not isinstance(v, kind):
            raise ScenarioError(f"settings {what}: {name!r} -> {v!r} must map a name to a {kind.__name__}")
    return tuple(sorted(pairs))


def check_settings(settings: Settings) -> None:
    for name, value in settings.sysctls:
        if name not in SYSCTLS:
            raise ScenarioError(
                f"sysctl {name!r} cannot be set by a scenario; the ones allowed are: {', '.join(SYSCTLS)}"
            )
        if not _VALUE.match(value) or (name in _THREE) != (len(value.split()) == 3):
            shape = "three numbers, e.g. '4096 131072 6291456'" if name in _THREE else "one whole number"
            raise ScenarioError(f"sysctl {name}={value!r}: the value is {shape}")
    for name, value in settings.route:
        if name not in ROUTE_OPTIONS:
            raise ScenarioError(f"route option {name!r} is not one of {', '.join(ROUTE_OPTIONS)}")
        low, high, _what = ROUTE_OPTIONS[name]
        if not low <= value <= high:
            raise ScenarioError(f"route option {name}={value} is out of range: allowed {low} to {high}")
