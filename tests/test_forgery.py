"""Facts from the kernel, not from the accused (issue 20): a process that ran a function of the scenario's
reports what that function lets it report, so its records are marked `forgeable`, and no exercise grades
on them.

The three forgeries here each made a "write the scenario" question grade correct: a function started
with at_once() (which the exercises' guard, reading only top-level steps, let through) rewrote the
endpoint's own code, so that a read loop "returned" a million bytes nobody sent, a close() that closed
nothing "succeeded" without a FIN, and a close() that slept in user space "blocked" a second.
"""

from __future__ import annotations

import pytest
from forgeries import FORGERIES, nothing

import closekit
from closekit import steps as s
from closekit.exercises import WriteScenario, catalog, checks
from closekit.library import MILLION
from closekit.trace import Trace

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def forged() -> dict[str, Trace]:
    """Each forgery's trace: proof that it did forge the records the question would grade on."""
    traces = {name: closekit.run(closekit.Scenario(name, "", steps=steps)) for name, steps in FORGERIES.items()}
    fix, no_fin, slow = traces["write_the_fix"], traces["no_fin_close"], traces["one_second_close"]
    assert fix.syscalls("server", "recv")[0].result == MILLION and not fix.segments(flags="PSH")  # nothing sent
    assert no_fin.syscalls("client", "close")[0].result == 0 and not no_fin.segments(src="client", flags="FIN")
    assert slow.syscalls("client", "close")[0].waited >= 0.95
    return traces


@pytest.mark.parametrize("question", list(FORGERIES))
def test_a_forgery_hidden_in_at_once_is_refused_by_the_question(question, forged):
    result = getattr(catalog, question)().check(FORGERIES[question])
    assert not result.passed and "call() steps are not allowed here" in result.message


def _allowing_calls(question: str) -> WriteScenario:
    """The same question, written by an instructor who allows call() steps."""
    exercise = getattr(catalog, question)()
    return WriteScenario(exercise.task, exercise.requirements, allow_calls=True)


@pytest.mark.parametrize("question", list(FORGERIES))
def test_a_question_that_allows_calls_cannot_be_graded_on_a_forgeable_record(question, forged):
    result = _allowing_calls(question).check(FORGERIES[question])
    assert not result.passed and "cannot be checked: the " in result.message, result.message
    assert "its own word, not the kernel's" in result.message


@pytest.mark.parametrize("question", list(FORGERIES))
def test_each_requirement_judged_on_the_forged_trace_says_it_cannot_judge(question, forged):
    reading = [r for r in getattr(catalog, question)().requirements if r.reads]
    assert reading
    for requirement in reading:
        holds, seen = requirement.judge(forged[question])
        assert not holds and seen.startswith("cannot be checked: the ")


def test_a_requirement_on_the_wire_alone_still_judges_a_trace_with_calls(forged):
    assert checks.no_rst().judge(forged["write_the_fix"]) == (True, "it holds")


@pytest.mark.parametrize("side", ["client", "server"])
def test_records_from_a_process_that_ran_a_function_are_marked_from_that_step_on(side, forged):
    calls = forged["write_the_fix"].syscalls(side)
    first = next(i for i, c in enumerate(calls) if c.call == "call")
    assert first > 0 and [c.forgeable for c in calls] == [False] * first + [True] * (len(calls) - first)


def test_a_run_without_functions_has_no_forgeable_record():
    trace = closekit.run("close-unread")
    assert not any(e.forgeable for e in trace.events if hasattr(e, "forgeable"))


def test_the_mark_survives_json_and_is_checked():
    trace = closekit.run(closekit.Scenario("x", "", steps=(s.call("client", nothing), s.close("client"))))
    again = Trace.from_json(trace.to_json())
    assert [c.forgeable for c in again.syscalls("client")] == [c.forgeable for c in trace.syscalls("client")]
    assert again.syscalls("client", "close")[0].forgeable
    data = trace.to_dict()
    next(e for e in data["events"] if e["kind"] == "syscall")["forgeable"] = "no"
    with pytest.raises(closekit.errors.TraceFormatError, match="forgeable must be true or false"):
        Trace.from_dict(data)


def fork_after_code(sock):
    return "ran"


def test_a_child_forked_after_its_parent_ran_a_function_is_marked_and_one_forked_before_is_not():
    steps = (s.fork("server", "before"), s.call("server", fork_after_code), s.fork("server", "after"),
             s.close("before"), s.close("after"), s.close("server"))  # fmt: skip
    trace = closekit.run(closekit.Scenario("forks", "", steps=steps))
    assert [c.forgeable for c in trace.syscalls("before")] == [False]
    assert [c.forgeable for c in trace.syscalls("after")] == [True]


def test_a_prediction_on_a_trace_with_forgeable_records_is_not_judged(forged):
    question = catalog.close_unread()
    question.answer("A")
    result = question._judge("A", forged["no_fin_close"])
    assert not result.passed and result.truth is None and "cannot be judged" in result.message
