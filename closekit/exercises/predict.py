"""Predict, then run: a multiple-choice question that the live kernel answers.

The correct choice is never stored: a private function of the trace computes it after the run, so the
verdict is whatever this kernel did. A prediction is made before the run and locks with it; nothing
on the exercise tells the answer before that (no public truth(), no recipe outcomes before a choice).

A click on "Run it" answers exactly as `q.answer(key)` does, and the answer is also written into the
notebook's answer cell (closekit.exercises._notebook), since the document is what nbgrader grades.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import closekit
from closekit.claims import NEEDS, SEGMENTS, STATES, SYSCALLS, observed
from closekit.errors import CloseKitError, ExerciseError, NotHereError
from closekit.exercises import _notebook, _widget
from closekit.exercises.checks import Requirement
from closekit.exercises.code import scenario_for
from closekit.exercises.outcome import outcome
from closekit.exercises.results import PredictionResult, pending, verdict_html
from closekit.lang import text
from closekit.recorded import load
from closekit.scenario import Scenario
from closekit.trace import Trace


class _Choice:
    """What Predict and ChooseFix share: choices, an answer that locks once the kernel has spoken."""

    def __init__(self, question: str, choices: Mapping[str, str], section: str, points: float) -> None:
        if not isinstance(question, str) or not question:
            raise ExerciseError("an exercise needs a question (a non-empty str)")
        if not isinstance(choices, Mapping) or len(choices) < 2:
            raise ExerciseError("an exercise needs at least two choices, as a dict {key: text}")
        self.question = question
        self.choices = {str(k): str(v) for k, v in choices.items()}
        self.section = section
        self.points = float(points)
        self.prediction: str | None = None
        self._result: PredictionResult | None = None
        self._ui: dict[str, Any] | None = None

    # ---- answering -----------------------------------------------------------------------
    def answer(self, key: str) -> None:
        """Record your choice (a key of `choices`, e.g. "B"); fixed once the experiment has run."""
        found = self._key(key)
        if self._result is not None and self._result.prediction != found:
            raise ExerciseError(text("predict.locked", chosen=repr(self._result.prediction)))
        self.prediction = found
        if self._ui is not None:
            self._ui["radio"].value = found

    def _key(self, key: Any) -> str:
        keys = ", ".join(repr(k) for k in self.choices)
        if not isinstance(key, str):
            raise ExerciseError(text("predict.not_a_str", keys=keys, given=repr(key)))
        for k in self.choices:
            if k.lower() == key.strip().lower():
                return k
        raise ExerciseError(text("predict.not_a_choice", given=repr(key), keys=keys))

    def _locked_prediction(self) -> str | None:
        """The prediction to check, refusing one changed (by assignment) after the run."""
        if self.prediction is None:
            return None
        key = self._key(self.prediction)
        if self._result is not None and self._result.prediction != key:
            raise ExerciseError(text("predict.locked_changed", chosen=repr(self._result.prediction), now=repr(key)))
        return key

    @property
    def result(self) -> PredictionResult:
        """The verdict of the last run (a not-passed result saying so before any run)."""
        if self._result is not None:
            return self._result
        return PredictionResult(False, self._not_answered() if self.prediction is None else text("predict.not_run"))

    def _not_answered(self) -> str:
        keys = ", ".join(self.choices)
        return text("predict.not_answered", keys=keys, first=repr(next(iter(self.choices))))

    def _failed_run(self, error: CloseKitError) -> PredictionResult:
        return PredictionResult(False, text("predict.failed_run", error=error), self.points)

    def _see(self) -> str:
        return text("predict.see", section=self.section) if self.section else ""

    # ---- widget --------------------------------------------------------------------------
    def _build_ui(self) -> dict[str, Any]:
        w = _widget.ipywidgets()
        radio = w.RadioButtons(
            options=[(f"{k}) {v}", k) for k, v in self.choices.items()],
            value=self.prediction,
            layout=w.Layout(width="max-content"),
        )
        button = w.Button(description=text("predict.run"), button_style="primary", icon="play")
        output = w.Output()
        status = w.HTML()

        def clicked(_button: Any) -> None:
            if radio.value is None:
                _widget.show_html(output, verdict_html(False, text("predict.choose_first")))
                return
            try:
                self.answer(radio.value)
            except CloseKitError as e:
                _widget.show_html(output, verdict_html(False, str(e)))
                return
            _notebook.record(self, radio.value, box, status)  # the document is what gets graded
            try:
                self.run()
            except CloseKitError as e:
                _widget.show_html(output, verdict_html(False, str(e)))

        button.on_click(clicked)
        box = w.VBox([w.HTML(f"<b>{html.escape(self.question)}</b>"), radio, button, status, output])
        self._ui = {"box": box, "radio": radio, "button": button, "output": output, "status": status}
        if self._result is not None:
            self._show(self._result)
        return self._ui

    def _show(self, result: PredictionResult, extra_html: str = "") -> None:
        if self._ui is None:
            return
        self._ui["radio"].disabled = True
        self._ui["button"].description = text("predict.run_again")
        _widget.show_html(self._ui["output"], result._repr_html_() + extra_html)

    @property
    def widget(self) -> Any:
        """The ipywidgets view: radio buttons, a "Run it" button, and the verdict with the transcript."""
        return (self._ui or self._build_ui())["box"]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return _widget.mimebundle(self.widget, f"{type(self).__name__}: {self.question}", self._static_html())

    def _static_html(self) -> str:
        """The question and its choices without a widget: what nbgrader's feedback and other viewers show."""
        items = "".join(f"<li><b>{html.escape(k)})</b> {html.escape(v)}</li>" for k, v in self.choices.items())
        return (
            f'<div class="closekit-question"><b>{html.escape(self.question)}</b>'
            f'<ul style="list-style:none;padding-left:1em">{items}</ul></div>'
        )


class Predict(_Choice):
    """A question about what the kernel will do, answered by running `scenario` live.

    `truth(trace)` returns the key of the choice that describes what happened; `explain(trace)`
    says it in a sentence. Both are kept private and asked only of the trace of a judged run.
    `needs` is what `truth` must see (closekit.claims.NEEDS; by default the calls and the sockets'
    states, which every mode observes; `requires_capture=True` adds the segments). Where this
    machine's mode does not see it, a built-in scenario is judged on its recorded trace, and says
    so; any other answer is kept, to be graded where the lab runs (never marked wrong here).
    """

    def __init__(
        self,
        question: str,
        choices: Mapping[str, str],
        scenario: str | Scenario,
        truth: Callable[[Trace], str],
        explain: Callable[[Trace], str] | None = None,
        section: str = "",
        points: float = 1.0,
        requires_capture: bool = False,
        needs: Iterable[str] = (SYSCALLS, STATES),
    ) -> None:
        super().__init__(question, choices, section, points)
        self.scenario = closekit.get(scenario) if isinstance(scenario, str) else scenario
        if not isinstance(self.scenario, Scenario):
            raise ExerciseError("Predict needs a scenario: a built-in name or a closekit.Scenario")
        if not callable(truth):
            raise ExerciseError("Predict needs truth: a function of the trace returning a choice key")
        self._truth = truth  # private: the answer is read from a trace only after the prediction is made
        self._explain = explain
        self.needs = frozenset(needs) | ({SEGMENTS} if requires_capture else frozenset())

    def run(self) -> PredictionResult:
        """Run the experiment on the live kernel and judge the prediction against what it did."""
        prediction = self._locked_prediction()
        if prediction is None:
            return PredictionResult(False, self._not_answered(), self.points, prediction=None)
        built_in = closekit.scenarios().get(self.scenario.name) == self.scenario
        try:  # a built-in scenario by its name: where the lab cannot run it, its recorded trace comes back
            trace = closekit.run(self.scenario.name if built_in else self.scenario)
        except NotHereError as e:
            message = text("predict.saved", key=prediction, choice=self.choices[prediction], why=e)
            self._result = pending(message, self.points, None, PredictionResult, prediction=prediction)  # type: ignore[assignment]
            self._show(self._result)
            return self._result
        except CloseKitError as e:
            return self._failed_run(e)
        result = self._judge(prediction, trace)
        self._result = result
        summary = f"<summary>{text('predict.transcript')}</summary>"
        self._show(result, f"<details open>{summary}{trace._repr_html_()}</details>")
        return result

    def _judge(self, prediction: str, trace: Trace) -> PredictionResult:
        if any(c.forgeable for c in trace.syscalls()):  # truth() reads calls: none may be a process's own word
            return PredictionResult(False, text("predict.forgeable"), self.points, trace, prediction=prediction)
        missing = [NEEDS[n] for n in self.needs if n not in observed(trace)]
        if missing:
            why = text("predict.unseen", mode=trace.mode, missing=text("verdict.and").join(missing))
            recorded = (
                load(self.scenario.name, why) if closekit.scenarios().get(self.scenario.name) == self.scenario else None
            )
            if recorded is None:
                message = text("predict.saved", key=prediction, choice=self.choices[prediction], why=why)
                return pending(message, self.points, trace, PredictionResult, prediction=prediction)  # type: ignore[return-value]
            trace = recorded
        truth = self._truth(trace)
        if truth not in self.choices:
            raise ExerciseError(f"the exercise's truth() returned {truth!r}, which is not a choice key")
        why = text("predict.why", explain=self._explain(trace)) if self._explain else ""
        said = {"key": prediction, "choice": self.choices[prediction], "why": why, "see": self._see()}
        if truth == prediction:
            message = text("predict.held", **said)
        else:
            message = text("predict.did_not_hold", truth=truth, truth_choice=self.choices[truth], **said)
        if trace.recorded:
            message = text("predict.from_recording", notice=trace.notice) + message
        return PredictionResult(truth == prediction, message, self.points, trace, prediction=prediction, truth=truth)


class ChooseFix(_Choice):
    """Several teardown recipes, each run against the live peer; choose one that meets `goal`.

    A recipe is a Scenario, or a function `f(sock, data)` run as the client against the peer that
    sends a banner first (see closekit.exercises.code). Every recipe whose live trace meets the
    goal is a right answer; which ones do is decided by the runs, not by the exercise's author.
    """

    def __init__(
        self,
        question: str,
        recipes: Mapping[str, Scenario | Callable[..., Any]],
        goal: Requirement,
        section: str = "",
        points: float = 1.0,
    ) -> None:
        if not isinstance(recipes, Mapping):
            raise ExerciseError("ChooseFix needs recipes as a dict {key: Scenario or function}")
        choices = {k: _describe(r) for k, r in recipes.items()}
        super().__init__(question, choices, section, points)
        self.recipes = {str(k): r for k, r in recipes.items()}
        self.goal = goal
        self._traces: dict[str, Trace] = {}

    def _trace(self, key: str) -> Trace:
        recipe = self.recipes[key]
        scenario = recipe if isinstance(recipe, Scenario) else scenario_for(recipe, "banner")
        trace = closekit.run(scenario)
        self._traces[key] = trace
        return trace

    def try_all(self) -> RecipeTable:
        """Once your choice is judged: run every recipe and show what each achieved (bytes, RST, TIME_WAIT).

        Before that it runs nothing and says so: the outcomes would give the answer away.
        """
        if self._result is None or self._result.prediction is None:
            return RecipeTable(self.goal.text, (), note=text("choose.not_yet"))
        rows = []
        for key in self.recipes:
            try:
                trace = self._trace(key)
                rows.append((key, self.choices[key], outcome(trace).line()))
            except CloseKitError as e:
                rows.append((key, self.choices[key], text("choose.could_not_run", error=e)))
        return RecipeTable(self.goal.text, tuple(rows))

    def run(self) -> PredictionResult:
        """Run the chosen recipe live and say whether it met the goal."""
        choice = self._locked_prediction()
        if choice is None:
            return PredictionResult(False, self._not_answered(), self.points, prediction=None)
        try:
            trace = self._trace(choice)
        except NotHereError as e:
            return self._keep(choice, e, None)
        except CloseKitError as e:
            return self._failed_run(e)
        met, seen = self.goal.judge(trace)
        if met is None:
            return self._keep(choice, seen, trace)
        message = text(
            "choose.meets" if met else "choose.misses",
            key=choice,
            recipe=self.choices[choice],
            outcome=outcome(trace).line(),
            goal=self.goal.text,
            seen=seen,
            see=self._see(),
        )
        result = PredictionResult(met, message, self.points, trace, prediction=choice, truth=choice if met else None)
        self._result = result
        self._show(result, f"<details><summary>{text('predict.transcript')}</summary>{trace._repr_html_()}</details>")
        return result

    def _keep(self, choice: str, why: object, trace: Trace | None) -> PredictionResult:
        """The choice, kept to be graded where the lab runs: this machine cannot run or see the recipe."""
        message = text("predict.saved", key=choice, choice=self.choices[choice], why=why)
        self._result = pending(message, self.points, trace, PredictionResult, prediction=choice)  # type: ignore[assignment]
        self._show(self._result)  # type: ignore[arg-type]
        return self._result  # type: ignore[return-value]


class RecipeTable(tuple):
    """The outcome of every recipe, as an HTML table in a notebook (and plain lines elsewhere)."""

    def __new__(cls, goal: str, rows: tuple[tuple[str, str, str], ...], note: str = "") -> RecipeTable:
        table = super().__new__(cls, rows)
        table.goal = goal  # type: ignore[attr-defined]
        table.note = note  # type: ignore[attr-defined]
        return table

    def __repr__(self) -> str:
        if not self:
            return text("choose.table_not_yet", note=self.note)  # type: ignore[attr-defined]
        return "\n".join(f"{k}) {d}\n   {o}" for k, d, o in self)

    def _repr_html_(self) -> str:
        if not self:
            return verdict_html(False, repr(self))
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(d)}</td><td>{html.escape(o)}</td></tr>"
            for k, d, o in self
        )
        head = f"<th></th><th>{text('choose.recipe')}</th><th>{text('choose.what_happened')}</th>"
        return f"<table><tr>{head}</tr>{rows}</table>"


def _describe(recipe: Any) -> str:
    if isinstance(recipe, Scenario):
        return recipe.description or recipe.name
    if callable(recipe) and getattr(recipe, "__doc__", None):
        return recipe.__doc__.strip().splitlines()[0]
    if callable(recipe):
        return f"{recipe.__name__}(sock, data)"
    raise ExerciseError(f"a recipe is a closekit.Scenario or a function, not {type(recipe).__name__}")
