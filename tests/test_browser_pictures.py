"""What a student sees of the stored pictures, in a real browser, before running anything.

A notebook opened fresh from a clone is untrusted: JupyterLab then renders no stored SVG and
sanitizes HTML. This test serves a fresh copy of notebooks/ from a JupyterLab started with a
private data directory (so no notebook is trusted), loads it once at 1440x900 and opens each
chapter in turn from the File menu, with the file browser open, as a student's laptop shows it,
and checks, without running a cell:

- every stored picture is an image that loaded, not text or a repr;
- no picture is wider than the notebook's column (nothing cut, no sideways scrolling);
- the transcript table keeps its colours (inline styles survive the sanitizer);
- a control notebook with a stored SVG shows its text fallback: the session really is untrusted.

Screenshots go to build/screenshots/ for a reviewer. Debian's /usr/bin/chromium, headless; no
browser is downloaded. Skipped (with the reason) when Chromium or Playwright is missing.
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
# The notebooks served; another folder (e.g. an older checkout's) shows what this test catches.
NOTEBOOKS = Path(os.environ.get("CLOSEKIT_BROWSER_NOTEBOOKS", REPO / "notebooks"))
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
VIEWPORT = {"width": 1440, "height": 900}
SERVER_START = 60.0
UI = 30_000  # ms
CHAPTERS = sorted(p.name for p in NOTEBOOKS.glob("0*.ipynb"))
PICTURE_TYPES = ("image/png", "image/svg+xml")


def _stored_pictures(name: str) -> int:
    """Outputs that hold a diagram in any form: a PNG, an SVG, or HTML with inline SVG."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    outputs = [o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", [])]
    return sum(any(t in d for t in PICTURE_TYPES) or "<svg" in "".join(d.get("text/html", "")) for d in outputs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


CONTROL = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": 1,
            "id": "svg",
            "metadata": {},
            "source": "picture",
            "outputs": [
                {
                    "output_type": "execute_result",
                    "execution_count": 1,
                    "metadata": {},
                    "data": {
                        "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
                        '<rect width="40" height="40" fill="red"/></svg>',
                        "text/plain": "SVG-FALLBACK-TEXT",
                    },
                }
            ],
        }
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


class Lab:
    def __init__(self, root: Path, port: int, token: str, process: subprocess.Popen) -> None:
        self.root, self.port, self.token, self.process = root, port, token, process

    def url(self, path: str) -> str:
        workspace = f"ws-{secrets.token_hex(4)}"
        return f"http://127.0.0.1:{self.port}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; course.sh installs it as root)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install -e '.[test]')")
    base = tmp_path_factory.mktemp("untrusted-lab")
    root = base / "course"
    shutil.copytree(NOTEBOOKS, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _write(root / "control" / "svg.ipynb", CONTROL)
    settings = base / "settings"
    _write(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
    _write(
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),  # a fresh notary database: nothing is trusted
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    }
    token, port = secrets.token_hex(16), _free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = base / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(root, port, token, process)
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
        with contextlib.suppress(OSError):
            server.api("shutdown", method="POST")
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
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


@pytest.fixture(scope="module")
def page(browser, lab):
    """One JupyterLab, loaded once, in which every notebook is opened in turn, as a student opens one
    chapter after another (loading the app is most of what a page costs the browser)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI)
    try:
        page.goto(lab.url(""))
        page.locator(".lm-MenuBar-item", has_text=re.compile("^File$")).wait_for()
        yield page
    finally:
        context.close()


def open_notebook(page, path: str):
    """Open a notebook as a student does (File > Open from Path…, which also shows it in the file
    browser), alone in the main area, with the file browser open beside it; no cell is run."""
    page.keyboard.press("Escape")  # whatever a failed test left open
    if page.locator(".jp-NotebookPanel").count():
        menu(page, "File", "Close All Tabs")
        discard = page.locator(".jp-Dialog button", has_text=re.compile("^Discard$"))
        deadline = time.monotonic() + UI / 1000
        while page.locator(".jp-NotebookPanel").count():
            assert time.monotonic() < deadline, "File > Close All Tabs left a notebook open"
            if discard.is_visible():  # JupyterLab may mark a notebook changed on opening: keep the file as stored
                discard.click()
            page.wait_for_timeout(100)
    menu(page, "File", "Open from Path…")
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input").fill(path)
    dialog.locator("input").press("Enter")
    dialog.wait_for(state="detached")
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    tab.filter(has_text=re.compile(rf"^{re.escape(Path(path).name)}$")).wait_for()
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    browser_panel = page.locator("#filebrowser")
    if not browser_panel.is_visible():
        page.locator('.jp-SideBar [data-id="filebrowser"]').first.click()
    browser_panel.wait_for(state="visible")
    page.wait_for_timeout(500)  # let the layout settle
    return panel


def test_the_session_is_untrusted_so_stored_svg_is_not_shown(page, shots):
    panel = open_notebook(page, "control/svg.ipynb")
    output = panel.locator(".jp-OutputArea-output").first
    output.wait_for()
    assert "SVG-FALLBACK-TEXT" in output.inner_text()
    assert panel.locator(".jp-OutputArea-output img").count() == 0
    page.screenshot(path=str(shots / "untrusted-control-svg.png"))


@pytest.mark.parametrize("name", [n for n in CHAPTERS if _stored_pictures(n)])
def test_every_stored_picture_shows_and_fits_the_column(page, shots, name):
    panel = open_notebook(page, f"notebooks/{name}")
    expected = _stored_pictures(name)
    images = panel.locator('.jp-OutputArea-output img[src^="data:image/png"]')
    page.wait_for_function(
        """([panel, n]) => {
            const imgs = [...panel.querySelectorAll('.jp-OutputArea-output img[src^="data:image/png"]')];
            return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=[panel.element_handle(), expected],
        timeout=UI,
    )  # times out when a stored diagram does not show as an image (untrusted SVG, a repr, text soup)
    assert images.count() == expected
    text = "\n".join(panel.locator(".jp-OutputArea-output").all_inner_texts())
    assert not re.search(r"<closekit\.|picture: .* at 0x|Diagram at 0x", text), "a repr instead of a picture"
    for index in range(expected):
        image = images.nth(index)
        image.scroll_into_view_if_needed()
        size = image.evaluate(
            """img => { const area = img.closest('.jp-OutputArea-output');
                        const r = img.getBoundingClientRect(), a = area.getBoundingClientRect();
                        return {width: r.width, height: r.height, right: r.right, column: a.width,
                                columnRight: a.right, scrolls: area.scrollWidth > area.clientWidth + 1}; }"""
        )
        assert size["width"] > 200 and size["height"] > 100, f"picture {index} is not visible: {size}"
        assert size["right"] <= size["columnRight"] + 1 and not size["scrolls"], f"picture {index} overflows: {size}"
        if index == 0:
            page.wait_for_timeout(200)
            page.screenshot(path=str(shots / f"untrusted-{Path(name).stem}.png"))


def test_the_transcript_table_keeps_its_colours_untrusted(page, shots):
    panel = open_notebook(page, "notebooks/00-start-here.ipynb")
    table = panel.locator(".jp-OutputArea-output table.ck-t").first
    table.wait_for()
    fin = table.locator("td.fin").first  # the start page's first experiment is an orderly close
    assert re.search(r"\bF\.", fin.inner_text())
    assert fin.evaluate("td => getComputedStyle(td).color") == "rgb(0, 85, 170)"
    width = table.evaluate("t => [t.getBoundingClientRect().width, t.closest('.jp-OutputArea-output').clientWidth]")
    assert width[0] <= width[1] + 1, f"the transcript is wider than the column: {width}"
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "untrusted-00-transcript.png"))
