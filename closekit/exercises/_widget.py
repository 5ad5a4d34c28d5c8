"""The widget side of an exercise, kept apart so that `import closekit` never imports ipywidgets.

Every widget is optional: each exercise also answers from code, which is what nbgrader runs.
"""

from __future__ import annotations

from typing import Any

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def ipywidgets() -> Any:
    import ipywidgets as w

    return w


def show_html(output: Any, html_text: str) -> None:
    """Replace what an Output widget shows, without going through the kernel's display hook.

    Setting `outputs` directly works the same with a browser attached and headless (nbgrader),
    and never turns into a cell output that nbval would compare.
    """
    output.outputs = (
        {"output_type": "display_data", "data": {"text/html": html_text, "text/plain": ""}, "metadata": {}},
    )


def mimebundle(widget: Any, text: str, static_html: str = "") -> dict[str, Any]:
    """The widget's display data with a fixed `text/plain`: ipywidgets' own repr lists every child
    and its state, which changes between versions and runs (and nbval compares it).

    `static_html` is what a viewer without the widget shows instead: nbconvert (nbgrader's feedback)
    falls back to it when it does not render widgets, where the widget would leave an empty cell."""
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    out = {WIDGET_MIME: data[WIDGET_MIME], "text/plain": text}
    if static_html:
        out["text/html"] = static_html
    return out
