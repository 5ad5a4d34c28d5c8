"""Exercises checked against the live kernel: predict-then-run, choose the fix, write the scenario, write the code.

Each answers from code (`ex.answer("B")`, `ex.check(my_steps)`) as well as from its widget, and
hands back a Result with `.passed`, `.score` and `.message`, so nbgrader can grade a notebook
headless. ipywidgets is imported only when a widget is first shown.

>>> from closekit import exercises
>>> ex = exercises.catalog.close_unread()
>>> ex.answer("B"); ex.run().correct
True
"""

from __future__ import annotations

from closekit.errors import ExerciseError
from closekit.exercises import catalog
from closekit.exercises.checks import (
    Requirement,
    WriteScenario,
    all_of,
    close_aborts,
    close_blocks,
    knows_delivery,
    no_rst,
    receives_all,
)
from closekit.exercises.code import PAYLOAD_SIZE, PEERS, WriteCode
from closekit.exercises.outcome import Outcome, outcome
from closekit.exercises.predict import ChooseFix, Predict
from closekit.exercises.results import CodeResult, PeerCheck, PredictionResult, Result

__all__ = [
    "PAYLOAD_SIZE",
    "PEERS",
    "ChooseFix",
    "CodeResult",
    "ExerciseError",
    "Outcome",
    "PeerCheck",
    "Predict",
    "PredictionResult",
    "Requirement",
    "Result",
    "WriteCode",
    "WriteScenario",
    "all_of",
    "catalog",
    "close_aborts",
    "close_blocks",
    "knows_delivery",
    "no_rst",
    "outcome",
    "receives_all",
]
