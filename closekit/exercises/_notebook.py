"""A clicked answer goes into the notebook document, because the document is what nbgrader grades.

nbgrader's autograde re-executes a submitted notebook from its cells: an answer that exists only in
the kernel (set by a widget) is not seen, and the question scores zero. So a click does two things:
the kernel records the answer and runs the experiment (the verdict appears at once), and the
`closekit-answers` JupyterLab extension (closekit/exercises/labextension) writes the same answer as
code — `q1.answer("C")` — into the question's answer cell and saves the notebook. Clicking and typing
then give the same document, and the document is graded.

Why this design (the options weighed):
- the kernel's `set_next_input` payload edits a cell only in reply to executing a cell, and a click
  executes none;
- a widget's own front-end code (ipywidgets or anywidget) sees its output area, not the notebook
  model, unless JupyterLab is started with `expose_app_in_browser` (every server would need it);
- ipylab drives JupyterLab commands, which act on the active cell, not on a given one;
- so: a comm from the kernel to a 150-line JupyterLab plugin (plain JS, no build step, installed
  with closekit) that finds the question by its widget and edits the cell through the notebook model.

Where the plugin is missing (another front end), the comm is refused and the widget says to type the
answer into the cell; nothing is lost silently.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable
from typing import Any

from closekit.lang import text

TARGET = "closekit.answer"

# Replaced in tests: (target_name, data) -> a comm with on_msg/on_close, or None where there is no kernel.
open_comm: Callable[[str, dict[str, Any]], Any] | None = None


def variable_name(obj: object) -> str | None:
    """The notebook variable bound to `obj` (`q1` for `q1 = catalog.close_unread()`), if any."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        shell = None
    namespace = shell.user_ns if shell is not None else vars(sys.modules["__main__"])
    for name, value in list(namespace.items()):
        if value is obj and not name.startswith("_"):
            return name
    return None


def answer_source(name: str, key: str) -> str:
    return f'{text("notebook.header")}\n{name}.answer("{key}")'


def _note(kind: str, text: str) -> str:
    colour = {"ok": "#1a7f37", "wait": "#57606a", "warn": "#9a6700"}[kind]
    return f'<div class="closekit-recorded" style="color:{colour};font-size:90%">{text}</div>'


def _default_comm(target: str, data: dict[str, Any]) -> Any:
    try:
        from comm import create_comm
    except ImportError:  # pragma: no cover - ipykernel >= 6.22 brings comm
        return None
    return create_comm(target_name=target, data=data)


def record(exercise: object, key: str, view: Any, status: Any) -> None:
    """Ask the front end to write `<name>.answer("<key>")` into the answer cell below `view`'s cell.

    `status` (an ipywidgets.HTML) says what happened: pending, saved, or what to type instead.
    """
    name = variable_name(exercise)
    if name is None:
        status.value = _note("warn", text("notebook.no_variable", key=html.escape(key)))
        return
    code = f'{name}.answer("{key}")'
    yourself = text("notebook.yourself", code=html.escape(code))
    state = {"answered": False}

    def replied(msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data", {}) or {}
        state["answered"] = True
        if data.get("ok"):
            where = text("notebook.new_cell") if data.get("inserted") else text("notebook.answer_cell")
            status.value = _note("ok", text("notebook.saved", where=where, code=html.escape(code)))
        else:
            reason = html.escape(str(data.get("reason", text("notebook.refused"))))
            status.value = _note("warn", text("notebook.not_written", reason=reason, yourself=yourself))

    def closed(_msg: Any) -> None:
        if not state["answered"]:
            status.value = _note("warn", text("notebook.no_extension", yourself=yourself))

    status.value = _note("wait", text("notebook.writing", code=html.escape(code)))
    comm = (open_comm or _default_comm)(
        TARGET, {"model_id": getattr(view, "model_id", None), "name": name, "source": answer_source(name, key)}
    )
    if comm is None:
        closed(None)
        return
    comm.on_msg(replied)
    comm.on_close(closed)
