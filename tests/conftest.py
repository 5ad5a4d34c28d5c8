"""Shared fixtures: live traces, each built-in scenario run once per test session."""

from __future__ import annotations

import pytest

import closekit
from closekit.trace import Trace

_traces: dict[str, Trace] = {}


@pytest.fixture(scope="session")
def live():
    """live(name) -> the Trace of one run of a built-in scenario on this kernel (cached)."""

    def get(name: str) -> Trace:
        if name not in _traces:
            _traces[name] = closekit.run(name)
        return _traces[name]

    return get
