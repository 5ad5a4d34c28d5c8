"""Grade submissions where no student code can reach the verdict: `python -m closekit.exercises.regrade`.

nbgrader's autograde runs a submission's cells and its grade cells in one kernel, so an answer cell can
patch whatever a grade cell calls (closekit's result classes included) and a wrong answer then passes.
This grader runs in a fresh interpreter and never executes a student's cell. It takes the notebook's
cells from the instructor's source version, as nbgrader does for locked cells, and runs them here; an
answer cell it only reads, as data: a prediction's `q1.answer("B")`, steps and scenarios built from
closekit's own constructors with literal arguments, a function's `def` (compiled, never called: the
function runs only in the lab's sandbox, as always). An answer cell that does anything else is not
read, and says why; its question then scores as unanswered.

    python -m closekit.exercises.regrade ex01-close [--course exercises] [--student ID] [--gradebook]
    python -m closekit.exercises.regrade --notebook SOURCE.ipynb SUBMISSION.ipynb
"""

from __future__ import annotations
import __future__

import argparse
import ast
import contextlib
import functools
import importlib
import io
import json
import linecache
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closekit import lang
from closekit.errors import CloseKitError, ExerciseError

MODULES = ("closekit", "closekit.steps", "closekit.scenario", "closekit.link", "closekit.settings", "closekit.library")
MAX_NUMBER = 1 << 63
MAX_ITEMS = 1000  # in a tuple or list an answer builds


@dataclass(frozen=True)
class Graded:
    """One grade cell of a notebook, as regraded: `points` of `out_of`, and why not all (empty: passed)."""

    grade_id: str
    points: float
    out_of: float
    message: str = ""


@dataclass
class Regraded:
    """A notebook's grade cells, and the answer cells that could not be read (grade_id -> why)."""

    graded: list[Graded] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)

    @property
    def points(self) -> float:
        return sum(g.points for g in self.graded)


def regrade(source: Path, submission: Path) -> Regraded:
    """Run `source` (the instructor's notebook) with the answers read from `submission`, here."""
    cells = _cells(source)
    answers = {_grade_id(c): _text(c) for c in _cells(submission) if _meta(c).get("solution")}
    namespace: dict[str, Any] = {"__name__": "closekit_regrade"}
    done = Regraded()
    with lang.use(lang.detect(cwd=submission.resolve().parent)), contextlib.redirect_stdout(io.StringIO()):
        for cell in cells:
            meta, grade_id = _meta(cell), _grade_id(cell)
            if meta.get("solution"):
                try:
                    read_answer(answers.get(grade_id, ""), namespace, grade_id)
                except ExerciseError as e:
                    done.unread[grade_id] = str(e)
                continue
            error = _run(_text(cell), namespace, grade_id)
            if meta.get("grade"):
                out_of = float(meta.get("points", 0))
                done.graded.append(Graded(grade_id, 0.0 if error else out_of, out_of, error or ""))
    return done


def _run(code: str, namespace: dict[str, Any], grade_id: str) -> str | None:
    """Run one of the instructor's cells; what it raised, in a line (None if nothing)."""
    try:
        exec(compile(code, f"<{grade_id or 'cell'}>", "exec"), namespace)
    except AssertionError as e:
        return str(e) or "the check failed"
    except Exception as e:  # the notebook goes on, as nbgrader's does
        return f"{type(e).__name__}: {e}"
    return None


# ---- answers, read as data ------------------------------------------------------------------------
def read_answer(code: str, namespace: dict[str, Any], grade_id: str = "answer") -> None:
    """Read a student's answer cell into `namespace` without running it, all or nothing: ExerciseError
    names the first line that is not an answer the regrader reads, and then nothing of the cell counts."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError) as e:
        raise ExerciseError(f"the answer cell does not parse: {getattr(e, 'msg', e)}") from None
    read = dict(namespace)
    answers: list[tuple[Any, str]] = []
    for node in tree.body:
        answers += _statement(node, code, read, grade_id)
    for exercise, key in answers:
        exercise.answer(key)
    namespace.update(read)


def _statement(node: ast.stmt, code: str, namespace: dict[str, Any], grade_id: str) -> list[tuple[Any, str]]:
    """Read one statement into `namespace`; the (exercise, key) it answers, if it is `q1.answer("B")`."""
    from closekit.exercises.predict import _Choice

    if isinstance(node, ast.Pass | ast.Import) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
        return []  # an import serves a function's body, which runs in the sandbox with imports of its own
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        namespace[node.targets[0].id] = _value(node.value, namespace)
        return []
    if isinstance(node, ast.ImportFrom) and node.module in MODULES and node.level == 0:
        module = importlib.import_module(node.module)
        for alias in node.names:
            namespace[alias.asname or alias.name] = _allowed(getattr(module, alias.name, None), alias.name, node)
        return []
    if isinstance(node, ast.FunctionDef):
        namespace[node.name] = _function(node, code, grade_id)
        return []
    call = node.value if isinstance(node, ast.Expr) else None
    if (
        isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "answer"
        and isinstance(call.func.value, ast.Name) and isinstance(namespace.get(call.func.value.id), _Choice)
        and len(call.args) == 1 and not call.keywords and isinstance(call.args[0], ast.Constant)
    ):  # fmt: skip
        return [(namespace[call.func.value.id], call.args[0].value)]
    raise ExerciseError(f"line {node.lineno}: {_shown(node, code)} is not an answer the regrader reads")


def _value(node: ast.expr, namespace: dict[str, Any]) -> Any:
    """The value of an expression made of literals, names already read, closekit's constructors and
    + - * << on numbers and sequences; anything else is refused."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        items: list[Any] = []
        for item in node.elts:
            if isinstance(item, ast.Starred):
                items.extend(_sequence(_value(item.value, namespace), item))
            else:
                items.append(_value(item, namespace))
        return _bounded(tuple(items) if isinstance(node, ast.Tuple) else items, node)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k, namespace): _value(v, namespace) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.Name):
        if node.id not in namespace:
            raise ExerciseError(f"line {node.lineno}: {node.id} is not defined in an answer cell or the setup cell")
        return _allowed(namespace[node.id], node.id, node)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
        owner = _value(node.value, namespace)
        if getattr(owner, "__name__", None) in MODULES and type(owner).__name__ == "module":
            return _allowed(getattr(owner, node.attr, None), node.attr, node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        number = _value(node.operand, namespace)
        if _number(number):
            return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.LShift):
        return _arithmetic(node, _value(node.left, namespace), _value(node.right, namespace))
    if isinstance(node, ast.Call) and not any(isinstance(a, ast.Starred) for a in node.args):
        function = _value(node.func, namespace)
        if function in _constructors() and all(k.arg is not None for k in node.keywords):
            args = [_value(a, namespace) for a in node.args]
            kwargs = {k.arg: _value(k.value, namespace) for k in node.keywords}
            try:
                return function(*args, **kwargs)
            except (CloseKitError, TypeError) as e:
                raise ExerciseError(f"line {node.lineno}: {e}") from None
    raise ExerciseError(f"line {node.lineno}: {type(node).__name__} is not something the regrader evaluates")


def _arithmetic(node: ast.BinOp, left: Any, right: Any) -> Any:
    """+ - * << on numbers (within MAX_NUMBER, shifts of at most 64), + on two tuples or two lists."""
    op = type(node.op)
    result = None
    if _number(left) and _number(right):
        if op is not ast.LShift:
            result = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}[op](left, right)
        elif isinstance(left, int) and isinstance(right, int) and 0 <= right <= 64:
            result = left << right
    elif op is ast.Add and type(left) is type(right) and isinstance(left, tuple | list):
        result = _bounded(left + right, node)
    if result is None or (_number(result) and abs(result) > MAX_NUMBER):
        raise ExerciseError(f"line {node.lineno}: this arithmetic is not something the regrader evaluates")
    return result


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _sequence(value: Any, node: ast.AST) -> tuple[Any, ...]:
    if not isinstance(value, tuple | list):
        raise ExerciseError(f"line {node.lineno}: only a tuple or list may be unpacked here")  # type: ignore[attr-defined]
    return tuple(value)


def _bounded(items: Any, node: ast.AST) -> Any:
    if len(items) > MAX_ITEMS:
        raise ExerciseError(f"line {node.lineno}: more than {MAX_ITEMS} items")  # type: ignore[attr-defined]
    return items


def _function(node: ast.FunctionDef, code: str, grade_id: str) -> Callable[..., Any]:
    """The function a `def` defines, made without running anything of it: no decorators, only literal
    defaults, annotations kept as text. Its source is kept where inspect.getsource finds it, since the
    lab sends the source into the sandbox, where alone it runs."""
    defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
    if node.decorator_list or not all(isinstance(d, ast.Constant) for d in defaults):
        raise ExerciseError(f"line {node.lineno}: a function with decorators or computed defaults is not read")
    source = ast.get_source_segment(code, node, padded=False) or ""
    filename = f"<closekit regrade {grade_id} {node.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    made: dict[str, Any] = {}
    flags = __future__.annotations.compiler_flag
    exec(compile(source, filename, "exec", flags=flags, dont_inherit=True), made)  # defines it; runs no body
    return made[node.name]


def _allowed(value: Any, name: str, node: ast.AST) -> Any:
    """`value` if an answer may hold it: data, closekit's constructors and modules, an exercise object."""
    from closekit import link, scenario, settings
    from closekit.exercises.predict import _Choice

    data = (int, float, str, bool, type(None), tuple, list, dict, scenario.Step, scenario.Scenario, scenario.Options,
            settings.Settings, link.Link, link.Rule, _Choice)  # fmt: skip
    is_module = type(value).__name__ == "module" and getattr(value, "__name__", None) in MODULES
    if is_module or value in _constructors() or (isinstance(value, data) and not isinstance(value, type)):
        return value
    if callable(value) and getattr(value, "__code__", None) is not None and value.__code__.co_filename.startswith(
        "<closekit regrade "):  # fmt: skip
        return value  # a function an answer cell defined (never called here)
    line = getattr(node, "lineno", 0)
    raise ExerciseError(f"line {line}: {name} is not something an answer may use here")


@functools.cache
def _constructors() -> frozenset[Any]:
    """What an answer may call: the step constructors (not call(): a function is not data), Scenario,
    Options, Settings, Link and the link's rules."""
    from closekit import link, scenario, settings, steps

    made = {getattr(steps, name) for name in steps.__all__ if name != "call"}
    made |= {scenario.Scenario, scenario.Options, settings.Settings, link.Link, link.Rule}
    made |= {link.drop, link.delay, link.duplicate, link.hold, link.copy}
    return frozenset(made)


def _shown(node: ast.stmt, code: str) -> str:
    text = (ast.get_source_segment(code, node) or type(node).__name__).splitlines()[0]
    return repr(text if len(text) <= 80 else text[:77] + "...")


# ---- notebooks ------------------------------------------------------------------------------------
def _cells(path: Path) -> list[dict[str, Any]]:
    return [c for c in json.loads(path.read_text(encoding="utf-8")).get("cells", []) if c.get("cell_type") == "code"]


def _meta(cell: dict[str, Any]) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: dict[str, Any]) -> str:
    return str(_meta(cell).get("grade_id", ""))


def _text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


# ---- the command ----------------------------------------------------------------------------------
def submissions(course: Path, assignment: str, students: list[str]) -> list[tuple[str, Path, Path]]:
    """(student, source notebook, submitted notebook) for every submitted notebook of `assignment`."""
    found = []
    for folder in sorted((course / "submitted").glob(f"*/{assignment}")):
        student = folder.parent.name
        if students and student not in students:
            continue
        for submitted in sorted(folder.glob("*.ipynb")):
            source = course / "solutions" / assignment / submitted.name
            if source.is_file():
                found.append((student, source, submitted))
    return found


def _record(course: Path, assignment: str, student: str, notebook: str, graded: list[Graded]) -> list[str]:
    """Put the regraded points into nbgrader's gradebook as manual scores (which take precedence over
    autograde's); lines naming every cell where autograde had said otherwise."""
    from nbgrader.api import Gradebook

    differing = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for g in graded:
            grade = gradebook.find_grade(g.grade_id, notebook, assignment, student)
            if grade.auto_score is not None and grade.auto_score != g.points:
                differing.append(f"{student} {notebook} {g.grade_id}: autograde gave {grade.auto_score:g}, "
                                 f"regraded {g.points:g}")  # fmt: skip
            grade.manual_score = g.points
        gradebook.db.commit()
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closekit.exercises.regrade", description=__doc__.split("\n")[0])
    parser.add_argument("assignment", nargs="?", help="regrade every submission of this assignment")
    parser.add_argument("--course", default="exercises", help="the nbgrader course folder (default: exercises)")
    parser.add_argument("--student", action="append", default=[], help="only this student (repeatable)")
    parser.add_argument("--gradebook", action="store_true", help="write the points into nbgrader's gradebook")
    parser.add_argument("--notebook", nargs=2, metavar=("SOURCE", "SUBMISSION"), help="regrade one notebook")
    args = parser.parse_args(argv)
    course = Path(args.course).resolve()
    if args.notebook:
        jobs = [("-", Path(args.notebook[0]), Path(args.notebook[1]))]
    elif args.assignment:
        jobs = submissions(course, args.assignment, args.student)
    else:
        parser.error("give an assignment, or --notebook SOURCE SUBMISSION")
    if not jobs:
        print(f"closekit: no submissions of {args.assignment!r} under {course / 'submitted'}", file=sys.stderr)
        return 2
    differing = []
    for student, source, submitted in jobs:
        result = regrade(source, submitted)
        total = sum(g.out_of for g in result.graded)
        print(f"{student} {submitted.stem}: {result.points:g} of {total:g}")
        for g in result.graded:
            print(
                f"  {g.grade_id}: {g.points:g}/{g.out_of:g}" + (f"  {g.message.splitlines()[0]}" if g.message else "")
            )
        for grade_id, why in result.unread.items():
            print(f"  answer cell {grade_id} not read: {why}")
        if args.gradebook and student != "-":
            differing += _record(course, args.assignment, student, submitted.stem, result.graded)
    for line in differing:
        print(f"differs from autograde: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
