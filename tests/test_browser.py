"""The course as a student meets it: JupyterLab in a real browser (Debian's Chromium, driven by Playwright).

One JupyterLab server, started from this environment on a free port with a random token, serves a
temporary copy of notebooks/ and exercises/ (running cells must not write outputs or checkpoints into
the repository). The test then does what a student does and checks what is on the screen:

- the start page, Run > Run All Cells: the transcript table with its RST row;
- a notebook drawing diagrams: the state diagram (an SVG image) and a gallery (inline SVG), with the
  lit path's colour and its numbered event;
- an exercise as nbgrader hands it out: generate -> release -> fetch (exchange and student home in the
  test's temp folder), Run All in the browser (every cell runs, unanswered questions say so), click one
  right and one wrong prediction, save, reload, submit, collect, autograde: the grade is the clicks';
- the formgrader finds the course although the server was started in another folder, and no news popup;
- and nowhere a traceback, a stderr output or "Error displaying widget".

Under load (`pytest -n 2` beside other work) a notebook can take minutes to run: waits follow progress
(a cell finishing restarts the clock) instead of one fixed timeout, and a cell that fails is reported at
once with its output, so slowness is tolerated and failures are not hidden.

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
from jupyterlab_ui import menu

pytestmark = pytest.mark.browser

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
ABORT = "#c0392b"  # closekit.render.sequence.COLOURS["RST"]: an RST
RGB = {colour: [int(colour[i : i + 2], 16) for i in (1, 3, 5)] for colour in (LIT, ABORT)}
EXERCISE = "ex01-close"
SERVER_START = 120.0  # s; JupyterLab answers in ~3 s here, far longer on a loaded machine
STALL = 120.0  # s without any cell finishing before a run counts as stuck (cells take ms to seconds)
CELL_RUN = 300_000  # ms: the longest a whole notebook may take, however steadily it progresses
UI = 60_000  # ms for the interface to show something


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
        self.env: dict[str, str] = {}

    def nbgrader(self, cwd: Path, *args: str) -> str:
        """An nbgrader command as the instructor or a student types it, in this server's environment."""
        done = subprocess.run(
            [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"nbgrader {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stderr

    def url(self, path: str) -> str:
        """The notebook at `path` in a workspace of its own (no tabs restored from another test)."""
        workspace = f"ws-{secrets.token_hex(4)}"
        return f"http://127.0.0.1:{self.port}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET") -> bytes:
        """The server's REST API at /api/`path` (or at /`path` for a path that starts with a slash)."""
        url = path if path.startswith("/") else f"/api/{path}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{url}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
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

    from closekit.exercises import jupyter_setup

    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"  # what the server shows: the course, and a student's home beside it
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "exchange", "submitted", "autograded", "feedback", "*.db")
    shutil.copytree(REPO / "notebooks", root / "course" / "notebooks", ignore=ignore)
    shutil.copytree(REPO / "exercises", root / "course" / "exercises", ignore=ignore)
    (root / "home").mkdir()
    _write(root / "browser" / "diagrams.ipynb", DIAGRAMS)

    # closekit's Jupyter pieces, installed as course.sh does but into a prefix of the test's own (the
    # answer-writing extension, no news popup), and nbgrader pointed at the course copy.
    prefix, config = base / "prefix", base / "config"
    jupyter_setup.install(prefix=prefix, course=root / "course" / "exercises", config_dir=config)
    # A private Jupyter home: no user settings or workspaces leak in or out (no news setting either:
    # the course's own overrides must keep the popup away).
    settings = base / "settings"
    _write(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
    runtime = base / "runtime"
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "CLOSEKIT_EXCHANGE": str(base / "exchange"),
        # the environment's own nbgrader config (course.sh registers the repository's course) loads this copy
        "CLOSEKIT_COURSE_CONFIG": str(root / "course" / "exercises" / "nbgrader_config.py"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    token = secrets.token_hex(16)
    port = _free_port()
    log = base / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.extra_labextensions_path={prefix / 'share/jupyter/labextensions'}",
        f"--LabApp.app_settings_dir={prefix / 'share/jupyter/lab/settings'}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    with open(log, "wb") as out:
        process = subprocess.Popen(  # started outside the course: the formgrader must find it anyway
            command, cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(root, port, token, process, log)
    server.env = env
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


def kernel_idle(page, timeout: float = STALL * 1000) -> None:
    page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        timeout=timeout
    )


def clear_outputs(page, panel) -> None:
    """Edit > Clear Outputs of All Cells: the notebooks are stored with outputs (nbval compares them),
    so whatever is on screen afterwards was produced by this run on this kernel."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    panel.locator(".jp-CodeCell .jp-OutputArea-output").first.wait_for(state="detached")


def run_all(page, panel) -> None:
    """Run > Run All Cells, from the menu bar, then wait until every code cell has run.

    On a loaded machine the menu's command was once lost (no cell queued, the kernel idle): if nothing
    has even started (JupyterLab marks a queued cell [*] at once) after 10 s, the student's obvious next
    move — choosing Run All again — is made once. Cells that start and then fail or hang are not retried.
    """
    clear_outputs(page, panel)
    menu(page, "Run", "Run All Cells")
    started = """panel => [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
        .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""
    try:
        page.wait_for_function(started, arg=panel.element_handle(), timeout=10_000)
    except Exception:
        menu(page, "Run", "Run All Cells")
    wait_cells_ran(page, panel)


def wait_cells_ran(page, panel, count: int | None = None) -> None:
    """Wait until the first `count` (default all) code cells show an execution number and the kernel is idle.

    The clock restarts whenever another cell finishes, so a slow machine is waited for as long as the
    run progresses (up to CELL_RUN in all); a run that stops progressing for STALL seconds fails, naming
    the cell it stopped at and what that cell shows.
    """
    handle = panel.element_handle()
    count_done = """([panel, count]) => {
        const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].slice(0, count ?? undefined);
        const done = prompts.filter(p => /\\[\\d+\\]/.test(p.textContent)).length;
        return [done, prompts.length];
    }"""
    start = last_change = time.monotonic()
    last = -1
    while True:
        done, total = page.evaluate(count_done, [handle, count])
        now = time.monotonic()
        if total and done == total:
            break
        if done != last:
            last, last_change = done, now
        if now - last_change > STALL or (now - start) * 1000 > CELL_RUN:
            stuck = panel.locator(".jp-CodeCell").nth(done)
            shown = stuck.inner_text()[-1500:] if stuck.count() else ""
            pytest.fail(
                f"cells stopped running: {done} of {total} ran in {now - start:.0f} s; cell {done + 1}:\n{shown}"
            )
        page.wait_for_timeout(500)
    kernel_idle(page)


def screenshot(page, target, shots: Path, name: str) -> Path:
    """What the student sees with `target` scrolled into view."""
    target.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # let the scroll settle and fonts paint
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def assert_no_errors(page, panel, failing: frozenset[int] = frozenset()) -> None:
    """No traceback, no stderr output, no widget that failed to render, no uncaught page error — except
    in the cells numbered in `failing` (0-based: an unanswered exercise's test cells fail by design)."""
    cells = [c for i, c in enumerate(panel.locator(".jp-Cell").all()) if i not in failing]
    stderr = [
        t
        for c in cells
        for t in c.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    ]
    if stderr:
        pytest.fail("an output area shows stderr or a traceback:\n" + "\n---\n".join(stderr))
    text = [t for c in cells for t in c.locator(".jp-OutputArea").all_inner_texts()]
    for bad in ("Traceback", "Error displaying widget", "Error rendering", "Widget Javascript not detected"):
        assert not any(bad in t for t in text), f"{bad!r} on screen:\n" + "\n".join(text)
    assert not page.page_errors, f"errors in the page: {page.page_errors}"


# ---- the tests ----------------------------------------------------------------------------------
def test_start_page_runs_and_shows_its_first_experiment_and_picture(page, lab, shots):
    panel = open_notebook(page, lab, "course/notebooks/00-start-here.ipynb")
    run_all(page, panel)
    table = panel.locator(".jp-OutputArea-output table.ck-t").first
    table.wait_for()
    fin = table.locator("tr:has(td.fin)")  # the segment's cell is marked (and drawn blue), not the row
    assert fin.count() >= 1, "the transcript has no FIN row"
    assert re.search(r"\bF\.", fin.first.inner_text()), fin.first.inner_text()  # tcpdump's flags: F.
    assert fin.first.locator("td.fin").evaluate("td => getComputedStyle(td).color") == "rgb(0, 85, 170)"
    screenshot(page, table, shots, "00-start-here-transcript")
    picture = panel.locator(".jp-OutputArea-output img").first  # the same trace, drawn
    picture.wait_for()
    assert picture.evaluate("img => img.complete && img.naturalWidth > 0")
    # the cell that questions the trace names the first FIN's sender and the states
    out = "\n".join(panel.locator(".jp-OutputArea-output").all_inner_texts())
    assert "the first FIN was sent by: client" in out
    assert "TIME_WAIT" in out and "active-closer-time-wait: holds" in out
    assert_no_errors(page, panel)


# In the browser, the pixels of a loaded PNG: its size, how many are the lit path's blue (LIT), how many
# an RST's red (ABORT), read back through a canvas (a data: URL is same-origin: the canvas is not tainted).
PNG_PIXELS = """([img, LIT, ABORT]) => new Promise(resolve => {
    const read = () => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const g = canvas.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
        const near = (i, [r, gr, b]) =>
            Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - gr) < 30 && Math.abs(d[i + 2] - b) < 30;
        let lit = 0, abort = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (near(i, LIT)) lit++;
            if (near(i, ABORT)) abort++;
        }
        const r = img.getBoundingClientRect(), a = img.closest('.jp-OutputArea-output').getBoundingClientRect();
        resolve({width: img.naturalWidth, height: img.naturalHeight, lit, abort,
                 shown: r.width, right: r.right, columnRight: a.right});
    };
    if (img.complete && img.naturalWidth) read(); else img.addEventListener('load', read);
})"""


def _saved_cells(path: Path, until, timeout: float = UI / 1000) -> list[dict]:
    """The cells of a notebook as JupyterLab saved it, once `until(cells)` holds (the save lands a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ValueError, KeyError, IndexError):  # not written yet, or half written
            cells = json.loads(path.read_text())["cells"]
            if until(cells):
                return cells
        assert time.monotonic() < deadline, f"{path.name} was not saved with its outputs"
        time.sleep(0.2)


def test_diagrams_render_with_the_lit_path(page, lab, shots):
    panel = open_notebook(page, lab, "browser/diagrams.ipynb")
    run_all(page, panel)
    outputs = panel.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output")
    # a Picture's PNG (it shows untrusted too), drawn with the lit path in the lit colour
    image = outputs.locator('img[src^="data:image/png"]').first
    image.wait_for()
    pixels = page.evaluate(PNG_PIXELS, [image.element_handle(), RGB[LIT], RGB[ABORT]])
    assert pixels["width"] > 200 and pixels["height"] > 200, f"the diagram is not a picture: {pixels}"
    assert pixels["lit"] > 500, f"the state diagram has no lit path: {pixels}"
    assert pixels["shown"] > 100 and pixels["right"] <= pixels["columnRight"] + 1, f"it does not fit: {pixels}"
    screenshot(page, image, shots, "diagram-state-linger-zero")

    # the gallery: one PNG per picture (sequence, each side's states, the kernel's close path)
    gallery = panel.locator(".jp-CodeCell").nth(2).locator('.jp-OutputArea-output img[src^="data:image/png"]')
    gallery.first.wait_for()
    assert gallery.count() >= 4, "the gallery shows fewer than four diagrams"
    shown = [page.evaluate(PNG_PIXELS, [gallery.nth(i).element_handle(), RGB[LIT], RGB[ABORT]])
             for i in range(gallery.count())]  # fmt: skip
    assert all(p["width"] > 200 and p["right"] <= p["columnRight"] + 1 for p in shown), shown
    assert shown[0]["abort"] > 50, "the sequence picture has no red RST"
    screenshot(page, gallery.first, shots, "diagram-gallery-linger-zero")
    assert_no_errors(page, panel)

    # what the pictures say in words is their text/plain, stored beside the PNG: the lit path, step by step
    menu(page, "File", "Save Notebook")
    cells = _saved_cells(lab.root / "browser" / "diagrams.ipynb", until=lambda cells: len(cells[2]["outputs"]) >= 4)
    (state,) = [o for o in cells[1]["outputs"] if "image/png" in o.get("data", {})]
    words = "".join(state["data"]["text/plain"])
    assert "ESTABLISHED ──close, SO_LINGER 0──▶ CLOSED" in words and "ends in CLOSED" in words, words
    gallery_words = "".join("".join(o["data"]["text/plain"]) for o in cells[2]["outputs"] if "data" in o)
    assert "client ──R. " in gallery_words and "SO_LINGER {on, 0}? yes" in gallery_words


def answer_cell(panel, grade_id_index: int):
    """The text of the code editor of cell `grade_id_index` (0-based, all cells)."""
    return panel.locator(".jp-Cell").nth(grade_id_index).locator(".jp-InputArea-editor").inner_text()


def click_prediction(page, widget, key: str) -> str:
    """Choose `key`, press Run it, wait for the verdict and for the answer to be saved; returns the verdict."""
    widget.locator(".widget-radio-box label").filter(has_text=re.compile(rf"^\s*{key}\)")).first.click()
    widget.get_by_role("button", name="Run it").click()
    widget.locator(".closekit-recorded", has_text="Saved in the notebook").wait_for(timeout=STALL * 1000)
    verdict = widget.locator(".widget-output", has_text=re.compile(r"Your prediction (held|did not hold)")).first
    verdict.wait_for(timeout=STALL * 1000)
    return verdict.inner_text()


def test_clicked_answers_are_graded_after_release_fetch_submit_collect_autograde(page, lab, shots):
    """The issue's student: fetch, Run All, click, save, reopen, submit; the instructor's grade is the clicks."""
    course = lab.root / "course" / "exercises"
    lab.nbgrader(course, "generate_assignment", EXERCISE, "--force")
    lab.nbgrader(course, "release_assignment", EXERCISE, "--force")
    home = lab.root / "home"
    lab.nbgrader(home, "fetch_assignment", EXERCISE)
    path = f"home/{EXERCISE}/{EXERCISE}.ipynb"
    cells = json.loads((home / EXERCISE / f"{EXERCISE}.ipynb").read_text())["cells"]
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in cells]

    panel = open_notebook(page, lab, path)
    run_all(page, panel)  # the released notebook, nothing answered: every cell runs all the same
    outputs = panel.locator(".jp-Cell").nth(ids.index("q2-run")).inner_text()
    assert "not answered yet" in outputs, outputs
    screenshot(page, panel.locator(".jp-Cell").nth(ids.index("q1-show")), shots, "exercise-run-all-unanswered")

    q1 = panel.locator(".jp-Cell").nth(ids.index("q1-show")).locator(".widget-vbox").first
    held = click_prediction(page, q1, "B")  # right: the server's RST makes recv() fail with ECONNRESET
    assert "Your prediction held" in held, held
    assert 'q1.answer("B")' in answer_cell(panel, ids.index("q1-answer"))
    screenshot(page, q1, shots, "exercise-clicked-right")
    q2 = panel.locator(".jp-Cell").nth(ids.index("q2-show")).locator(".widget-vbox").first
    missed = click_prediction(page, q2, "A")  # wrong: the parent's close() of a shared socket sends nothing
    assert "Your prediction did not hold" in missed, missed
    assert q2.locator("input[type=radio]:disabled").count() == 3, "the prediction did not lock"
    screenshot(page, q2, shots, "exercise-clicked-wrong")
    tests = frozenset(i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade"))
    assert_no_errors(page, panel, failing=tests)
    menu(page, "File", "Save Notebook")
    assert not page.get_by_text("official Jupyter news").count(), "the news popup greets the student"

    # reopen: the answers are in the document, not only in the kernel that has gone
    panel = open_notebook(page, lab, path)
    assert 'q1.answer("B")' in answer_cell(panel, ids.index("q1-answer"))
    assert 'q2.answer("A")' in answer_cell(panel, ids.index("q2-answer"))
    screenshot(page, panel.locator(".jp-Cell").nth(ids.index("q1-answer")), shots, "exercise-reopened")

    lab.nbgrader(home, "submit", EXERCISE)
    lab.nbgrader(course, "collect", EXERCISE)
    lab.nbgrader(course, "autograde", EXERCISE)
    (student,) = [p.name for p in (course / "submitted").iterdir()]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(EXERCISE, student)
        grades = {g.name: g.score for g in gradebook.find_submission_notebook(EXERCISE, EXERCISE, student).grades}
        assert (submission.score, submission.max_score) == (1, 5), grades
    assert grades["q1-test"] == 1 and grades["q2-test"] == 0

    # the formgrader found the course, although the server was started outside it
    listed = json.loads(lab.api("/formgrader/api/assignments"))
    assert EXERCISE in [a["name"] for a in listed], listed
