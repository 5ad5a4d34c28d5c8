"""Bad input gets one clear line naming what is wrong and what is allowed (issue 20's list), never a raw
TypeError, RecursionError or traceback, and a scenario is refused before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import closekit
from closekit import steps as s
from closekit.errors import ScenarioError, TraceFormatError
from closekit.scenario import MAX_DESCRIPTION, Scenario
from closekit.trace import Trace


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text, text
    return text


def test_a_setsockopt_option_that_is_not_a_name_is_refused_naming_the_options():
    with pytest.raises(ScenarioError) as caught:
        Scenario("x", "", steps=(s.setsockopt("client", [], 1),))  # type: ignore[arg-type]
    assert "option [] is not one of TCP_USER_TIMEOUT" in one_line(caught.value)


@pytest.mark.parametrize("option", [{}, set(), ["SO_ERROR"]], ids=["dict", "set", "list"])
def test_an_unhashable_option_is_refused_for_getsockopt_and_setsockopt(option):
    for step in (s.setsockopt("client", option, 1), s.getsockopt("client", option)):
        with pytest.raises(ScenarioError, match="is not one of"):
            Scenario("x", "", steps=(step,))


@pytest.mark.live
def test_a_description_the_trace_could_not_carry_is_refused_before_anything_runs():
    with pytest.raises(ScenarioError) as caught:
        Scenario("x", "d" * (MAX_DESCRIPTION + 1), steps=(s.close("client"),))
    assert one_line(caught.value).endswith(
        f"has {MAX_DESCRIPTION + 1} characters; at most {MAX_DESCRIPTION} (a trace carries it)"
    )
    Scenario("x", "d" * MAX_DESCRIPTION, steps=(s.close("client"),))  # the limit itself is allowed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{bad", "Expecting property name enclosed in double quotes at line 1 column 2"),
        ("[" * 100_000, "nested too deeply"),
        ("1" * 5000, "a number of 5000 digits (a trace's numbers have at most 30)"),
        ('{"t": NaN}', "NaN is not a number JSON allows"),
        ("", "Expecting value at line 1 column 1"),
    ],
    ids=["broken", "nested", "long-number", "nan", "empty"],
)
def test_text_that_is_not_a_traces_json_gets_one_line(text, reason):
    with pytest.raises(TraceFormatError) as caught:
        Trace.from_json(text)
    line = one_line(caught.value)
    assert line.startswith("the text is not a trace's JSON: ") and reason in line
    assert "closekit run NAME --json" in line


def test_from_json_names_what_it_takes():
    with pytest.raises(TraceFormatError, match="takes JSON text \\(a str\\), not dict"):
        Trace.from_json({})  # type: ignore[arg-type]


def _trace_data() -> dict:
    return {
        "scenario": "x", "kernel": "k", "mode": "netns", "counters": {},
        "processes": {"client": "client", "server": "server", "kid": "server"},
        "events": [{"kind": "syscall", "t": 0, "side": "kid", "call": "close", "args": {}, "result": 0,
                    "errno": None, "duration": 0}],
    }  # fmt: skip


@pytest.mark.parametrize("kind", [[], {}, 7, None], ids=["list", "dict", "int", "null"])
def test_an_event_whose_kind_is_not_a_name_is_refused(kind):
    data = _trace_data()
    data["events"][0]["kind"] = kind
    with pytest.raises(TraceFormatError, match="kind is one of syscall, signal, segment, state, wait"):
        Trace.from_dict(data)


@pytest.mark.parametrize("event", ["syscall", "signal"])
def test_a_side_that_is_not_a_process_of_the_trace_is_refused_before_a_renderer_meets_it(event):
    data = _trace_data()
    if event == "signal":
        data["events"][0] = {"kind": "signal", "t": 0, "side": "ghost", "signal": "SIGPIPE"}
    else:
        data["events"][0]["side"] = "ghost"
    with pytest.raises(TraceFormatError) as caught:
        Trace.from_dict(data)
    assert one_line(caught.value) == "event 0: side 'ghost' is not a process of the trace (client, server, kid)"


def test_a_listed_process_and_an_older_traces_child_are_accepted():
    assert Trace.from_dict(_trace_data()).endpoint_of("kid") == "server"
    older = _trace_data()
    del older["processes"]
    older["events"][0]["side"] = "server-child"
    assert Trace.from_dict(older).endpoint_of("server-child") == "server"
    older["events"][0]["side"] = "kid"
    with pytest.raises(TraceFormatError, match="side 'kid' is not a process of the trace \\(client, server\\)"):
        Trace.from_dict(older)


def test_every_recorded_trace_still_loads():
    from closekit.recorded import load, recordable

    for name, scenario in closekit.scenarios().items():
        recorded = load(name, "test") if recordable(scenario) else None
        assert recorded is None or Trace.from_json(json.dumps(recorded.to_dict())) == recorded


@pytest.mark.parametrize("port", ["-5", "99999999", "0", "http", " 8", "8.0"])
def test_closekit_lab_refuses_a_port_that_is_not_one_before_starting_anything(port):
    for args in (["--port", port], [f"--port={port}"]):
        out = subprocess.run([sys.executable, "-m", "closekit", "lab", "--no-browser", *args], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr == f"closekit: --port {port} is not a TCP port: give a whole number from 1 to 65535\n"
