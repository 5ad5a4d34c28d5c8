"""The course as a student meets it: JupyterLab in a real browser (Debian's Chromium, driven by Playwright).

One JupyterLab server, started from this environment on a free port with a random token, serves a
temporary copy of notebooks/ and exercises/ (running cells must not write outputs or checkpoints into
the repository). The test then does what a student does and checks what is on the screen:

- the start page, Run > Run All Cells: the transcript table with its RST row;
- a notebook drawing diagrams: the state diagram (an SVG image) and a gallery (inline SVG), with the
  lit path's colour and its numbered event;
- an exercise: click a prediction, press *Run it*, read the verdict;
- and nowhere a traceback, a stderr output or "Error displaying widget".

Screenshots of each view go to pytest's tmp_path and to build/screenshots/ for a reviewer.
Skipped (with the reason) when Chromium or Playwright is missing; `bash course.sh test` installs both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CLOSEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIT = "#1f5fbf"  # closekit.render.states.LIT: the colour of the path the trace took
EXERCISE = "ex01-close"
SERVER_START = 60.0  # s; JupyterLab answers in ~3 s here
CELL_RUN = 60_000  # ms for a notebook's cells to finish (they take a few seconds)
UI = 30_000  # ms for the interface to show something


def _notebook(*sources: str) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in sources
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# A notebook of two diagrams: the state diagram (graphviz -> image/svg+xml, shown as an <img>) and the
# gallery of one experiment (HTML with inline <svg>). Written at test time, so nbval never collects it.
DIAGRAMS = _notebook(
    "import closekit\nfrom closekit.render import gallery, state_diagram",
    'state_diagram(closekit.run("linger-zero"), "client")',
    'gallery("linger-zero")',
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _our_processes(marker: str) -> list[int]:
    """Processes whose command line or environment names `marker` (our private runtime folder): the
    kernels we started and what they started (closekit's sandbox helper)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if any(marker.encode() in (entry / part).read_bytes() for part in ("cmdline", "environ")):
                pids.append(int(entry.name))
    return pids


class Lab:
    """A running JupyterLab server on 127.0.0.1, and how to reach it."""

    def __init__(self, root: Path, port: int, token: str, process: subprocess.Popen, log: Path) -> None:
        self.root, self.port, self.token, self.process, self.log = root, port, token, process, log

    def url(self, path: str) -> str:
        """The notebook at `path` in a workspace of its own (no tabs restored from another test)."""
        workspace = f"ws-{secrets.token_hex(4)}"
        return f"http://127.0.0.1:{self.port}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()


def _stop(lab: Lab, runtime: Path) -> None:
    """Shut the server down, pass or fail: politely (its kernels with it), then by force."""
    with contextlib.suppress(OSError):
        lab.api("shutdown", method="POST")
    try:
        lab.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(lab.process.pid, signal.SIGKILL)
            lab.process.wait()
    # Kernels run in sessions of their own; any the server left behind is named by our runtime folder.
    for pid in _our_processes(str(runtime)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; course.sh installs it as root)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install -e '.[test]')")

    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "course"
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    exercise = REPO / "exercises" / "source" / EXERCISE
    if exercise.is_dir():
        shutil.copytree(exercise, root / "exercises" / EXERCISE, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _write(root / "browser" / "diagrams.ipynb", DIAGRAMS)

    # A private Jupyter home: no user settings, workspaces or news prompts leak in or out.
    settings = base / "settings"
    _write(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
    _write(
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    runtime = base / "runtime"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "PYTHONUNBUFFERED": "1",
    }
    token = secrets.token_hex(16)
    port = _free_port()
    log = base / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(root, port, token, process, log)
    try:
        deadline = time.monotonic() + SERVER_START
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                json.loads(server.api("status"))
                break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        _stop(server, runtime)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where screenshots go: a tmp folder, copied to build/screenshots/ at the end for a reviewer."""
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    public = REPO / "build" / "screenshots"
    public.mkdir(parents=True, exist_ok=True)
    for png in folder.glob("*.png"):
        shutil.copy2(png, public / png.name)


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, shots, request):
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    page.set_default_timeout(UI)
    page.page_errors = []
    page.on("pageerror", lambda e: page.page_errors.append(str(e)))
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failed_before:  # the call's report is in before teardown
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shots / f"FAILED-{request.node.name}.png"))
        context.close()


# ---- what a student does ------------------------------------------------------------------------
def open_notebook(page, lab: Lab, path: str):
    """Open a notebook and wait until its kernel is up and idle; returns the notebook panel."""
    page.goto(lab.url(path))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    kernel_idle(page)
    return panel


def kernel_idle(page, timeout: float = CELL_RUN) -> None:
    page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        timeout=timeout
    )


def menu(page, top: str, item: str) -> None:
    """Click `item` in the menu bar's `top` menu, as a student does."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{top}$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{item}$"))
    page.locator(".lm-Menu-item", has=label).click()


def clear_outputs(page, panel) -> None:
    """Edit > Clear Outputs of All Cells: the notebooks are stored with outputs (nbval compares them),
    so whatever is on screen afterwards was produced by this run on this kernel."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    panel.locator(".jp-CodeCell .jp-OutputArea-output").first.wait_for(state="detached")


def run_all(page, panel) -> None:
    """Run > Run All Cells, from the menu bar, then wait until every code cell has run."""
    clear_outputs(page, panel)
    menu(page, "Run", "Run All Cells")
    wait_cells_ran(page, panel)


def wait_cells_ran(page, panel, count: int | None = None) -> None:
    """Wait until the first `count` (default all) code cells show an execution number and the kernel is idle."""
    page.wait_for_function(
        """([panel, count]) => {
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                .slice(0, count ?? undefined);
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        arg=[panel.element_handle(), count],
        timeout=CELL_RUN,
    )
    kernel_idle(page)


def screenshot(page, target, shots: Path, name: str) -> Path:
    """What the student sees with `target` scrolled into view."""
    target.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # let the scroll settle and fonts paint
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def assert_no_errors(page, panel) -> None:
    """No traceback, no stderr output, no widget that failed to render, no uncaught page error."""
    stderr = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    if stderr.count():
        pytest.fail("an output area shows stderr or a traceback:\n" + "\n---\n".join(stderr.all_inner_texts()))
    text = panel.locator(".jp-OutputArea").all_inner_texts()
    for bad in ("Traceback", "Error displaying widget", "Error rendering", "Widget Javascript not detected"):
        assert not any(bad in t for t in text), f"{bad!r} on screen:\n" + "\n".join(text)
    assert not page.page_errors, f"errors in the page: {page.page_errors}"


# ---- the tests ----------------------------------------------------------------------------------
def test_start_page_runs_and_shows_the_transcript_with_its_rst(page, lab, shots):
    panel = open_notebook(page, lab, "notebooks/00-start-here.ipynb")
    run_all(page, panel)
    table = panel.locator(".jp-OutputArea-output table.ck-t").first
    table.wait_for()
    rst = table.locator("tr:has(td.rst)")  # the segment's cell is marked (and drawn red), not the row
    assert rst.count() >= 1, "the transcript has no RST row"
    assert re.search(r"\bR\.", rst.first.inner_text()), rst.first.inner_text()  # tcpdump's flags: R.
    assert rst.first.locator("td.rst").evaluate("td => getComputedStyle(td).color") == "rgb(187, 0, 0)"
    screenshot(page, table, shots, "00-start-here-transcript")
    # the cell that questions the trace prints the server and ECONNRESET
    out = "\n".join(panel.locator(".jp-OutputArea-output").all_inner_texts())
    assert "first RST sent by: server" in out
    assert "ECONNRESET" in out
    assert_no_errors(page, panel)


def test_diagrams_render_with_the_lit_path(page, lab, shots):
    panel = open_notebook(page, lab, "browser/diagrams.ipynb")
    run_all(page, panel)
    outputs = panel.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output")
    # graphviz's image/svg+xml: JupyterLab shows it as an <img> of the SVG
    image = outputs.locator('img[src^="data:image/svg+xml"]').first
    image.wait_for()
    svg = page.evaluate(
        """src => { const [head, body] = src.split(',', 2);
                    return head.endsWith(';base64') ? decodeURIComponent(escape(atob(body)))
                                                    : decodeURIComponent(body); }""",
        image.get_attribute("src"),
    )
    assert "<svg" in svg and LIT in svg, "the state diagram has no lit path"
    assert "SO_LINGER 0" in svg, "the lit edge does not name the event the trace saw"
    box = image.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, f"the diagram is not visible: {box}"
    screenshot(page, image, shots, "diagram-state-linger-zero")

    # the gallery: inline <svg> elements in the HTML output, one per picture
    gallery = panel.locator(".jp-CodeCell").nth(2).locator(".closekit-gallery")
    gallery.wait_for()
    figures = gallery.locator("figure svg")
    assert figures.count() >= 3, "the gallery shows fewer than three diagrams"
    html = gallery.inner_html()
    assert LIT in html and "SO_LINGER 0" in html
    assert figures.first.bounding_box()["width"] > 100
    screenshot(page, gallery, shots, "diagram-gallery-linger-zero")
    assert_no_errors(page, panel)


def _solution_key(notebook: Path, variable: str) -> str | None:
    """The answer the exercise's source notebook gives between BEGIN/END SOLUTION, e.g. q1.answer("B")."""
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        if "BEGIN SOLUTION" in source:
            found = re.search(rf'{variable}\.answer\("(\w+)"\)', source.split("BEGIN SOLUTION", 1)[1])
            if found:
                return found.group(1)
    return None


def test_exercise_prediction_by_clicking(page, lab, shots):
    path = lab.root / "exercises" / EXERCISE / f"{EXERCISE}.ipynb"
    if not path.is_file():
        pytest.skip(f"no exercise notebook exercises/source/{EXERCISE}/ yet")
    panel = open_notebook(page, lab, f"exercises/{EXERCISE}/{EXERCISE}.ipynb")
    # A student runs the cells from the top with Shift-Enter up to the first question's widget (not
    # further: the source notebook's next cell answers in code, which would lock the prediction).
    screenshot(page, panel.locator(".jp-Cell").first, shots, "exercise-opened")
    clear_outputs(page, panel)
    cells = panel.locator(".jp-Cell")
    stored = json.loads(path.read_text())["cells"]
    assert cells.count() == len(stored)
    sources = ["".join(c["source"]) for c in stored]
    show = next((i for i, s in enumerate(sources) if re.search(r"\bq1\s*=\s*catalog\.", s)), None)
    assert show is not None, "no cell makes the first question (q1 = catalog...)"
    cells.first.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")  # command mode
    for _ in range(show + 1):
        page.keyboard.press("Shift+Enter")
    code_cells = sum(1 for c in stored[: show + 1] if c["cell_type"] == "code")
    wait_cells_ran(page, panel, code_cells)

    widget = cells.nth(show).locator(".jp-OutputArea-output .widget-vbox").first
    widget.wait_for()
    radios = widget.locator(".widget-radio-box label")
    assert radios.count() >= 2, "the question shows fewer than two choices"
    solution = _solution_key(path, "q1")
    key = solution or "A"
    radios.filter(has_text=re.compile(rf"^\s*{key}\)")).first.click()
    screenshot(page, widget, shots, "exercise-prediction-chosen")
    widget.get_by_role("button", name="Run it").click()

    verdict = widget.locator(".widget-output", has_text=re.compile(r"[✔✘]")).first
    verdict.wait_for(timeout=CELL_RUN)
    text = verdict.inner_text()
    assert re.search(r"Your prediction (held|did not hold)", text), f"no verdict on screen: {text!r}"
    if solution:  # the source notebook's own answer must be judged right by this kernel
        assert "Your prediction held" in text, text
    widget.get_by_role("button", name="Run again").wait_for()
    assert widget.locator("input[type=radio]:disabled").count() == radios.count(), "the prediction did not lock"
    screenshot(page, verdict, shots, "exercise-verdict")
    assert_no_errors(page, panel)
