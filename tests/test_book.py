"""The book: built from the stored notebooks (nothing executed), then read in a real browser.

Two builds, each into a temporary folder and served from 127.0.0.1:

- **the course's own book** (both editions): it builds without a Sphinx warning; in Chromium every
  page loads with no error and no request leaving the machine, every diagram of the stored outputs
  is there as a loaded, visible picture, every link inside the book reaches a page and an anchor
  that exist, search finds TIME_WAIT, and a chapter reads on a 390 px wide phone;
- **a small book made here** with a Chinese edition and hostile outputs: the language switch links
  each page to its counterpart, Chinese search works, outputs run no script, and the link checker
  finds the broken link planted in it.

Plus, without a browser: the sanitizer, the rule that the editions share their code cells, and the
stamps that say which kernel and day each notebook's outputs come from.
Screenshots go to build/screenshots/ for a reviewer.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import http.server
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("nh3", reason="the book extra is not installed (pip install -e '.[book]')")

from closekit.book import editions, provenance
from closekit.book.build import build
from closekit.book.sanitize import clean
from closekit.errors import EditionDriftError

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
BOOK = editions.load()
DEFAULT = BOOK.editions[0]
TRANSLATIONS = [(e, nb) for e in BOOK.editions[1:] for nb in e.chapters(REPO)]
ALL_CHAPTERS = [nb for e in BOOK.editions for nb in e.chapters(REPO)]
PHONE = {"width": 390, "height": 844}


def _id(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# ---- the sanitizer ------------------------------------------------------------------------------
HOSTILE = {
    "script": "<p>a</p><script>window.__pwned = 1</script>",
    "event handler": '<img src="x.png" onerror="window.__pwned = 2">',
    "javascript link": '<a href="javascript:window.__pwned = 3">x</a>',
    "data link": '<a href="data:text/html,<script>window.__pwned = 4</script>">x</a>',
    "iframe": '<iframe srcdoc="<script>parent.__pwned = 5</script>"></iframe>',
    "svg script": "<svg><script>window.__pwned = 6</script><circle r='1'/></svg>",
    "svg handler": '<svg onload="window.__pwned = 7"><rect width="1" height="1"/></svg>',
    "style that loads": "<style>@import url(http://192.0.2.1/x.css); td{color:red}</style>",
    "style attribute that loads": '<td style="background:url(http://192.0.2.1/x.png);color:red">x</td>',
    "form": '<form action="http://192.0.2.1/"><input name="q"><button>go</button></form>',
    "object": '<object data="x.swf"></object><embed src="x.swf">',
    "meta refresh": '<meta http-equiv="refresh" content="0;url=http://192.0.2.1/">',
    "base": '<base href="http://192.0.2.1/">',
    "link": '<link rel="stylesheet" href="http://192.0.2.1/x.css">',
    "broken markup": "<scr<script>ipt>window.__pwned = 8</script><img/src='x'/onerror=window.__pwned=9>",
}


@pytest.mark.parametrize("html", HOSTILE.values(), ids=HOSTILE.keys())
def test_sanitized_output_html_can_neither_run_nor_load_anything(html):
    safe = clean(html, picture=lambda svg: "_diagrams/x.svg")
    assert not re.search(r"<(script|iframe|object|embed|form|input|meta|base|link|svg)\b", safe, re.I), safe
    assert not re.search(r"\son\w+\s*=|javascript:|data:text|url\(|@import|192\.0\.2\.1", safe, re.I), safe


def test_an_inline_svg_diagram_becomes_a_picture_and_transcript_styles_stay():
    svg = '<svg width="10pt" viewBox="0 0 10 10"><title>state&#45;client</title><rect width="5"/></svg>'
    html = f'<style>.ck-t .rst{{color:#b00}}</style><figure style="display:inline-block">{svg}</figure>'
    pictures = []
    safe = clean(html, picture=lambda text: pictures.append(text) or "_diagrams/p.svg")
    assert safe == (
        '<style>.ck-t .rst{color:#b00}</style><figure style="display:inline-block">'
        '<img class="ck-diagram" src="_diagrams/p.svg" alt="diagram: state-client"></figure>'
    )
    assert pictures[0].startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"')


def test_the_stored_transcripts_keep_their_table_and_colours():
    stored = json.loads((REPO / "notebooks" / "00-start-here.ipynb").read_text())
    html = next(
        "".join(o["data"]["text/html"])
        for c in stored["cells"]
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    )
    safe = clean(html)
    # transcripts carry their colours as inline styles (JupyterLab drops <style> from untrusted outputs)
    assert '<table class="ck-t">' in safe and re.search(r'<td class="fin" style="[^"]*color:#05a', safe)
    assert safe.count("<tr>") == html.count("<tr>")


# ---- editions and provenance --------------------------------------------------------------------
def _notebook(cells: list[tuple[str, str]], **metadata) -> dict:
    return {
        "cells": [
            {"cell_type": kind, "id": f"c{i}", "metadata": {}, "source": text,
             **({"outputs": [], "execution_count": None} if kind == "code" else {})}
            for i, (kind, text) in enumerate(cells)
        ],
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip


def test_code_drift_ignores_the_words_and_names_the_code_that_changed(tmp_path):
    en, zh = tmp_path / "en.ipynb", tmp_path / "zh.ipynb"
    en.write_text(
        json.dumps(_notebook([("markdown", "# Close"), ("code", "import closekit"), ("code", 'closekit.run("a")')]))
    )
    same = _notebook(
        [
            ("markdown", "# 关闭\n\n半关闭"),
            ("code", "import closekit\n"),
            ("markdown", "多一段"),
            ("code", 'closekit.run("a")'),
        ]
    )
    zh.write_text(json.dumps(same))
    assert editions.code_drift(en, zh) == []

    changed = copy.deepcopy(same)
    changed["cells"][3]["source"] = 'closekit.run("b")'
    zh.write_text(json.dumps(changed))
    [problem] = editions.code_drift(en, zh)
    assert (
        problem.startswith("code cell 2 differs")
        and '-closekit.run("a")' in problem
        and '+closekit.run("b")' in problem
    )

    extra = copy.deepcopy(same)
    extra["cells"].append(
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": "x = 1"}
    )
    zh.write_text(json.dumps(extra))
    [problem] = editions.code_drift(en, zh)
    assert "has 2 code cells" in problem and "has 3" in problem and "x = 1" in problem


def _write(path: Path, cells: list[tuple[str, str]]) -> Path:
    notebook = _notebook(cells)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"ran {cell['source']}"}]
            cell["execution_count"] = 1
    path.write_text(json.dumps(notebook))
    return path


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


def test_sync_gives_a_translation_the_new_code_and_keeps_its_words_beside_their_experiments(tmp_path):
    en = _write(tmp_path / "en.ipynb", [("markdown", "# Close"), ("code", "a = 1"), ("markdown", "Then:"),
                                        ("code", 'run("x")'), ("code", "print(a)")])  # fmt: skip
    zh = _write(tmp_path / "zh.ipynb", [("markdown", "# 关闭"), ("code", "a = 1"), ("markdown", "然后"),
                                        ("markdown", "看输出。"), ("code", 'run("x")'), ("code", "print(a)"),
                                        ("markdown", "小结")])  # fmt: skip
    edited = json.loads(en.read_text())
    edited["cells"][3]["source"] = 'run("x", quick=True)'
    edited["cells"][3]["metadata"] = {"tags": ["NBVAL_IGNORE_OUTPUT"]}
    en.write_text(json.dumps(edited))
    assert editions.sync_code(en, zh, write=False).differs and _cells(zh)[4] == ("code", 'run("x")')

    done = editions.sync_code(en, zh)
    assert (done.changed, done.added, done.dropped, done.written) == ((2,), (), (), True)
    assert _cells(zh) == [("markdown", "# 关闭"), ("code", "a = 1"), ("markdown", "然后"), ("markdown", "看输出。"),
                          ("code", 'run("x", quick=True)'), ("code", "print(a)"), ("markdown", "小结")]  # fmt: skip
    code = [c for c in json.loads(zh.read_text())["cells"] if c["cell_type"] == "code"]
    assert [bool(c["outputs"]) for c in code] == [True, False, True]  # the changed cell must be run again
    assert code[1]["metadata"] == {"tags": ["NBVAL_IGNORE_OUTPUT"]}  # nbval markers follow the original
    assert editions.code_drift(en, zh) == []
    assert not editions.sync_code(en, zh).differs


def test_sync_names_the_cells_a_translator_must_write_for_and_accept_brings_them_in(tmp_path):
    en = _write(tmp_path / "en.ipynb", [("markdown", "# Close"), ("code", "import closekit"),
                                        ("markdown", "One:"), ("code", 'closekit.run("one")'),
                                        ("markdown", "Two:"), ("code", 'closekit.run("two")')])  # fmt: skip
    zh = _write(tmp_path / "zh.ipynb", [("markdown", "# 关闭"), ("code", "import closekit"),
                                        ("markdown", "第一个"), ("code", 'closekit.run("one")')])  # fmt: skip
    with pytest.raises(EditionDriftError) as raised:
        editions.sync_code(en, zh)
    message = str(raised.value)
    assert "has 3 code cells, the translation 2" in message
    assert 'new in the original: code cell 3: closekit.run("two")' in message
    assert _cells(zh)[-1] == ("code", 'closekit.run("one")')  # untouched

    done = editions.sync_code(en, zh, accept=True)
    assert (done.added, done.review) == ((3,), (3,))
    assert editions.untranslated(zh) == [5]
    assert _cells(zh)[-2:] == [("markdown", "Two:"), ("code", 'closekit.run("two")')]
    assert json.loads(zh.read_text())["cells"][-2]["metadata"]["closekit"] == {"untranslated": True}

    # the original drops its first experiment: the words written for it move on, nothing is lost
    dropped = json.loads(en.read_text())
    del dropped["cells"][2:4]
    en.write_text(json.dumps(dropped))
    done = editions.sync_code(en, zh, accept=True)
    assert (done.dropped, done.review) == ((2,), (2,))
    assert [text for kind, text in _cells(zh)] == ["# 关闭", "import closekit", "第一个", "Two:", 'closekit.run("two")']


def test_pairing_follows_an_edited_cell_past_a_new_one():
    old = ['closekit.run("a")', 'trace = closekit.run("million-bytes")\nprint(trace)', "x"]
    new = ['closekit.run("a")', "from closekit.render import sequence_diagram",
           'trace = closekit.run("million-bytes")\nprint(trace.summary())', "x"]  # fmt: skip
    assert editions.pair_cells(old, new) == [(0, 0), (None, 1), (1, 2), (2, 3)]
    assert editions.pair_cells(["a", "b"], ["a"]) == [(0, 0), (1, None)]


@pytest.mark.parametrize("translation", [nb for _, nb in TRANSLATIONS] or [None], ids=lambda p: _id(p) if p else "none")
def test_a_translated_chapter_runs_exactly_the_code_of_the_original(translation):
    if translation is None:
        pytest.skip("no translated chapters yet (notebooks/zh/ is empty)")
    original = REPO / DEFAULT.notebooks / translation.name
    assert original.is_file(), f"{_id(translation)} has no original: editions use the same file names"
    assert editions.code_drift(original, translation) == []


@pytest.mark.parametrize("translation", [nb for _, nb in TRANSLATIONS] or [None], ids=lambda p: _id(p) if p else "none")
def test_a_translated_chapter_has_no_words_left_in_the_original_language(translation):
    if translation is None:
        pytest.skip("no translated chapters yet (notebooks/zh/ is empty)")
    assert editions.untranslated(translation) == [], "sync --accept brought these in: translate them"


@pytest.mark.parametrize("notebook", ALL_CHAPTERS, ids=_id)
def test_every_chapter_names_the_kernel_and_day_of_its_outputs(notebook):
    assert provenance.stale(notebook) is None, provenance.stale(notebook)
    stamp = provenance.read(notebook)
    assert re.fullmatch(r"\d+\.\d+\S*", stamp.kernel) and re.fullmatch(r"\d{4}-\d\d-\d\d", stamp.date), stamp


def test_stamp_takes_the_day_the_cells_ran_and_catches_a_later_run(tmp_path):
    path = tmp_path / "c.ipynb"
    notebook = _notebook([("code", "1")])
    notebook["cells"][0]["metadata"]["execution"] = {"iopub.execute_input": "2026-01-02T03:04:05Z"}
    path.write_text(json.dumps(notebook))
    assert "no record" in provenance.stale(path)
    assert provenance.stamp(path, kernel="6.1.0-test") == provenance.Provenance("6.1.0-test", "2026-01-02")
    assert provenance.stale(path) is None
    rerun = json.loads(path.read_text())
    rerun["cells"][0]["metadata"]["execution"]["iopub.execute_input"] = "2026-02-03T00:00:00Z"
    path.write_text(json.dumps(rerun))
    assert "executed on 2026-02-03 but stamped for 2026-01-02" in provenance.stale(path)


# ---- a browser on a served book -----------------------------------------------------------------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; course.sh installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Site:
    root: Path
    url: str
    pages: dict[str, list[str]]
    warnings: list[str]
    seconds: float
    outside: list[str] = field(default_factory=list)  # requests that tried to leave the machine


@contextlib.contextmanager
def built(repo: Path, out: Path):
    result = build(out, repo=repo)
    with serve(out) as url:
        yield Site(out, url, result.pages, result.warnings, result.seconds)


@contextlib.contextmanager
def pages(browser, site: Site):
    """open(path, viewport) -> a loaded page of `site`; its errors, and any request that tries to
    leave the machine, are recorded (and refused: the book must work offline)."""
    contexts = []

    def route(r) -> None:
        if r.request.url.startswith((site.url, "data:")):
            r.continue_()
        else:
            site.outside.append(r.request.url)
            r.abort()

    def open_(path: str, viewport: dict | None = None):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
        contexts.append(context)
        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.problems = []
        page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
        page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
        response = page.goto(site.url + path, wait_until="load")
        assert response and response.ok, f"{path}: HTTP {response.status if response else '?'}"
        return page

    try:
        yield open_
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):  # a crawl closes its pages as it goes
                context.close()


def shot(page, name: str) -> None:
    folder = REPO / "build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


READ_PAGE = """() => {
  const visible = e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
                         return r.width > 20 && r.height > 20 && s.visibility !== 'hidden' && s.display !== 'none'; };
  return {
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    pictures: [...document.querySelectorAll('div.cell_output img')].map(i => ({
        src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0, visible: visible(i)})),
    scripts: [...document.querySelectorAll('script')].map(s => s.getAttribute('src') || 'inline'),
    outputScripts: document.querySelectorAll('div.cell_output script, article script').length,
    handlers: [...document.querySelectorAll('article *')]
                .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
    pwned: window.__pwned ?? null,
  };
}"""


@dataclass
class Crawl:
    seen: dict[str, dict] = field(default_factory=dict)  # page path -> what READ_PAGE found
    broken: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # errors in the pages' consoles


def crawl(site: Site, open_page) -> Crawl:
    """Open every page of every edition (in one tab, one after the other); then check every link
    that stays in the book: the file it names exists, and so does the anchor on that page."""
    found = Crawl()
    page = None
    for lang, names in site.pages.items():
        for name in names:
            path = f"{lang}/{name}.html"
            if page is None:
                page = open_page(path)
            else:
                page.problems.clear()
                response = page.goto(site.url + path, wait_until="load")
                assert response and response.ok, f"{path}: HTTP {response.status if response else '?'}"
            found.seen[path] = page.evaluate(READ_PAGE)
            found.problems += [f"{path}: {p}" for p in page.problems]
    for path, seen in found.seen.items():
        for href in seen["links"]:
            if not href.startswith(site.url):
                continue  # JupyterLab, Binder: outside the book
            target, _, anchor = urllib.parse.unquote(href[len(site.url) :]).partition("#")
            target = target.split("?")[0] or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if not (site.root / target).is_file():
                found.broken.append(f"{path}: {href} (no such file)")
            elif anchor and target.endswith(".html"):
                ids = found.seen[target]["ids"] if target in found.seen else []
                if anchor not in ids:
                    found.broken.append(f"{path}: {href} (no #{anchor} there)")
    return found


def expected_pictures(notebook: Path) -> int:
    """The diagrams a chapter's stored outputs hold: image outputs, and SVGs or images in HTML outputs."""
    count = 0
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if any(m in data for m in ("image/svg+xml", "image/png", "image/jpeg", "image/gif")):
                count += 1
            elif "text/html" in data:
                count += len(re.findall(r"<(svg|img)\b", "".join(data["text/html"])))
    return count


# ---- the course's own book ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx", reason="the book extra is not installed (pip install -e '.[book]')")
    with built(REPO, tmp_path_factory.mktemp("book") / "site") as site:
        yield site


@pytest.fixture
def open_page(browser, site):
    with pages(browser, site) as open_:
        yield open_


@pytest.fixture(scope="module")
def course_crawl(browser, site):
    """One pass over every page of the course's book, read by several tests."""
    with pages(browser, site) as open_:
        return crawl(site, open_)


def test_the_book_builds_every_chapter_of_every_edition_without_a_warning(site):
    assert site.warnings == []
    for edition in BOOK.editions:
        chapters = [nb.stem for nb in edition.chapters(REPO)]
        assert set(chapters) <= set(site.pages[edition.lang])
        assert {"index", "search"} <= set(site.pages[edition.lang])
    assert {"00-start-here", "07-summary", "90-gallery"} <= set(site.pages[DEFAULT.lang])
    assert site.seconds < 60, f"the book took {site.seconds:.0f} s to build"


def test_every_page_loads_shows_its_diagrams_and_has_no_broken_link(site, course_crawl):
    assert course_crawl.broken == [], "\n".join(course_crawl.broken)
    assert course_crawl.problems == [], "\n".join(course_crawl.problems)
    assert site.outside == [], f"pages asked for things outside the book: {site.outside}"
    for edition in BOOK.editions:
        for notebook in edition.chapters(REPO):
            seen = course_crawl.seen[f"{edition.lang}/{notebook.stem}.html"]
            pictures = seen["pictures"]
            assert len(pictures) == expected_pictures(notebook), f"{_id(notebook)}: {pictures}"
            assert all(p["loaded"] and p["visible"] for p in pictures), [
                p for p in pictures if not (p["loaded"] and p["visible"])
            ]
    assert sum(len(s["pictures"]) for s in course_crawl.seen.values()) > 50  # the gallery alone has 72


def test_no_page_runs_a_script_from_a_stored_output(course_crawl):
    for path, seen in course_crawl.seen.items():
        assert seen["outputScripts"] == 0 and seen["handlers"] == 0, path
        theirs = [s for s in seen["scripts"] if s != "inline" and not s.startswith(("_static/", "searchindex.js"))]
        assert theirs == [], (path, theirs)  # only Sphinx's and the theme's own


def test_each_chapter_names_its_outputs_kernel_and_links_jupyterlab_and_exercises(site, open_page):
    page = open_page(f"{DEFAULT.lang}/01-close.html")
    frame = page.locator(".ck-frame")
    stamp = provenance.read(REPO / DEFAULT.notebooks / "01-close.ipynb")
    assert f"Linux {stamp.kernel}, {stamp.date}" in frame.inner_text()
    assert frame.locator("a.ck-open-lab").get_attribute("href") == BOOK.lab.format(path="notebooks/01-close.ipynb")
    exercises = [a.get_attribute("href") for a in frame.locator("a.ck-exercise").all()]
    assert exercises == [BOOK.lab.format(path=DEFAULT.exercises.format(name=n)) for n in BOOK.exercises["01-close"]]
    # the start page's link to the instructor guide (../exercises/README.md in notebooks/, one level
    # more in a translation's folder) opens it in JupyterLab, as it does inside JupyterLab
    for edition in BOOK.editions:
        if (REPO / edition.notebooks / "00-start-here.ipynb").is_file():
            start = open_page(f"{edition.lang}/00-start-here.html")
            assert start.locator(f'article a[href="{BOOK.lab.format(path="exercises/README.md")}"]').count() == 1


@pytest.mark.parametrize("edition", BOOK.editions[1:], ids=lambda e: e.lang)
def test_a_translated_chapter_offers_its_own_exercises_or_else_the_originals(site, open_page, edition):
    if not (REPO / edition.notebooks / "01-close.ipynb").is_file():
        pytest.skip(f"no {edition.lang} chapter 1 yet")
    frame = open_page(f"{edition.lang}/01-close.html").locator(".ck-frame")
    expected = []
    for name in BOOK.exercises["01-close"]:
        own = edition.exercises.format(name=name)
        expected.append(BOOK.lab.format(path=own if (REPO / own).is_file() else DEFAULT.exercises.format(name=name)))
    assert [a.get_attribute("href") for a in frame.locator("a.ck-exercise").all()] == expected
    assert frame.locator("a.ck-open-lab").get_attribute("href") == BOOK.lab.format(
        path=f"{edition.notebooks}/01-close.ipynb"
    )


def test_the_front_door_opens_the_default_edition(site, open_page):
    page = open_page("")
    page.wait_for_url(f"{site.url}{DEFAULT.lang}/index.html")
    assert page.locator("article h1").inner_text().startswith(DEFAULT.title)


def test_search_finds_time_wait(site, open_page):
    page = open_page(f"{DEFAULT.lang}/search.html?q=TIME_WAIT")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for()
    hits = {a.get_attribute("href").split("#")[0].split("?")[0] for a in results.all()}
    assert "03-so-linger.html" in hits, hits
    shot(page, "book-search-time-wait")


def test_a_chapter_reads_on_a_phone(site, open_page):
    """390 px wide: nothing makes the page scroll sideways; a wide output (a transcript) scrolls
    inside its own box; the prose keeps a readable size; JupyterLab is one tap from the top."""
    for chapter in ("00-start-here", "90-gallery"):
        page = open_page(f"{DEFAULT.lang}/{chapter}.html", viewport=PHONE)
        layout = page.evaluate("""() => {
            const outputs = [...document.querySelectorAll('div.cell_output .output, div.cell_output img')];
            return {page: document.scrollingElement.scrollWidth,
                    text: parseFloat(getComputedStyle(document.querySelector('article section > p')).fontSize),
                    outside: outputs.filter(o => o.getBoundingClientRect().right > innerWidth + 0.5).length,
                    stuck: outputs.filter(o => o.scrollWidth > o.clientWidth + 1 &&
                                          !['auto', 'scroll'].includes(getComputedStyle(o).overflowX)).length,
                    lab: document.querySelector('.ck-frame a.ck-open-lab').getBoundingClientRect().bottom};
        }""")
        assert layout["page"] <= PHONE["width"], f"{chapter} scrolls sideways: {layout}"
        assert layout["outside"] == 0 and layout["stuck"] == 0, f"{chapter}: an output does not fit: {layout}"
        assert layout["text"] >= 14, layout
        assert 0 < layout["lab"] < PHONE["height"], "the JupyterLab link is not on the first screen"
        shot(page, f"book-phone-{chapter}")


# ---- a small book with a Chinese edition and hostile outputs ------------------------------------
RAN = "2026-03-04T05:06:07.000000Z"
STAMP = {"closekit": {"outputs": {"kernel": "6.1.0-small", "date": RAN[:10]}}}
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60"><rect width="120" height="60"/>{}</svg>'


def _shown(data: dict) -> dict:
    """A display_data output holding `data` (MIME type -> content)."""
    return {"output_type": "display_data", "metadata": {}, "data": data}


HOSTILE_OUTPUTS = [
    _shown({"text/html": '<p class="ck-hostile">hostile output</p><script>window.__pwned = 1</script>'
                           '<b onmouseover="window.__pwned = 2">hover</b>'
                           '<a href="javascript:window.__pwned = 3">click</a>', "text/plain": "<HTML>"}),
    _shown({"application/javascript": "window.__pwned = 4", "text/plain": "<JS>"}),
    _shown({"text/markdown": "**md** <script>window.__pwned = 5</script>", "text/plain": "<MD>"}),
    _shown({"image/svg+xml": SVG.format("<script>window.__pwned = 6</script>"), "text/plain": "<Digraph>"}),
    _shown({"text/html": f'<div class="closekit-gallery"><figure>{SVG.format("<title>seq</title>")}</figure></div>',
              "text/plain": "<Gallery>"}),
    _shown({"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
              "text/plain": "Predict: a widget's text form"}),
]  # fmt: skip
WIDGETS = {
    "application/vnd.jupyter.widget-state+json": {"state": {"abc": {"model_name": "VBoxModel"}}, "version_major": 2}
}


def _chapter(markdown: list[str], code: list[tuple[str, list]]) -> dict:
    cells = []
    for words, (source, outputs) in zip(markdown, code):
        cells.append({"cell_type": "markdown", "id": f"m{len(cells)}", "metadata": {}, "source": words})
        ran = {"execution": {"iopub.execute_input": RAN}}
        cells.append(
            {"cell_type": "code", "id": f"c{len(cells)}", "execution_count": 1, "metadata": ran, "outputs": outputs,
             "source": source}
        )  # fmt: skip
    return {"cells": cells, "metadata": {**STAMP, "widgets": WIDGETS}, "nbformat": 4, "nbformat_minor": 5}


def _small_repo(root: Path) -> Path:
    code = [("import closekit", []), ("closekit.run('x')", HOSTILE_OUTPUTS)]
    start_en = _chapter(
        ["# Start here\n\nThe half-close, then [chapter 1](01-close.ipynb) and [a planted broken link](nowhere.html).",
         "## Outputs\n\nTIME_WAIT and friends."], code)  # fmt: skip
    start_zh = _chapter(
        [
            "# 从这里开始\n\n半关闭的意思是只关闭一个方向，然后读[第一章](01-close.ipynb)。",
            "## 输出\n\n四次挥手。",
        ],
        code,
    )
    start_zh["cells"].append({"cell_type": "raw", "id": "raw", "metadata": {"format": "text/html"},
                              "source": "<b>raw cell</b><script>window.__pwned = 7</script>"})  # fmt: skip
    close_en = _chapter(["# Chapter 1 — close()"], [("x = 1", [])])
    files = {
        "notebooks/00-start-here.ipynb": start_en,
        "notebooks/01-close.ipynb": close_en,
        "notebooks/zh/00-start-here.ipynb": start_zh,
        "exercises/student/ex01-close/ex01-close.ipynb": _chapter(["# ex01"], [("pass", [])]),
    }
    for name, notebook in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(notebook, ensure_ascii=False))
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    pytest.importorskip("sphinx", reason="the book extra is not installed (pip install -e '.[book]')")
    base = tmp_path_factory.mktemp("small")
    with built(_small_repo(base / "repo"), base / "site") as site:
        yield site


@pytest.fixture
def open_small(browser, small):
    with pages(browser, small) as open_:
        yield open_


def test_language_switch_links_each_page_to_its_counterpart(small, open_small):
    assert small.pages["zh"] == ["00-start-here", "genindex", "glossary", "index", "search"]
    expected = {
        "en/glossary.html": "zh/glossary.html",  # every edition has the glossary
        "en/00-start-here.html": "zh/00-start-here.html",
        "zh/00-start-here.html": "en/00-start-here.html",
        "en/01-close.html": "zh/index.html",  # no Chinese chapter 1 yet: its cover
        "en/index.html": "zh/index.html",
        "zh/index.html": "en/index.html",
        "en/search.html": "zh/search.html",
    }
    for path, counterpart in expected.items():
        page = open_small(path)
        switch = page.locator("a.ck-lang").first
        assert switch.evaluate("a => a.href") == small.url + counterpart, path
        page.context.close()
    page = open_small("en/00-start-here.html")
    page.locator("article a.ck-lang").click()
    page.wait_for_url(small.url + "zh/00-start-here.html")
    assert page.locator("article h1").inner_text().startswith("从这里开始")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    shot(page, "book-small-zh-chapter")


def test_stored_outputs_run_no_script_in_the_browser(small, open_small):
    for path in ("en/00-start-here.html", "zh/00-start-here.html"):
        page = open_small(path)
        page.wait_for_timeout(300)
        seen = page.evaluate(READ_PAGE)
        assert seen["pwned"] is None and not [p for p in page.problems if p.startswith("dialog")], (
            path,
            seen,
            page.problems,
        )
        assert seen["outputScripts"] == 0 and seen["handlers"] == 0, path
        assert page.locator(".ck-hostile").inner_text() == "hostile output"
        assert page.get_by_text("Predict: a widget's text form").count() == 1  # the widget's text form
        assert all(p["loaded"] and p["visible"] for p in seen["pictures"]) and len(seen["pictures"]) == 2, seen[
            "pictures"
        ]
    assert "raw cell" in page.locator("article").inner_text()
    html = "".join(p.read_text() for p in (small.root / "zh").glob("*.html"))
    assert not re.search(r"<script[^>]*>[^<]*__pwned|\son\w+\s*=[^>]*__pwned|javascript:", html)  # as text only
    assert "widget-state" not in html


def test_a_broken_link_is_found_by_sphinx_and_by_the_link_checker(small, browser):
    assert any("nowhere" in w for w in small.warnings), small.warnings
    with pages(browser, small) as open_:
        found = crawl(small, open_)
    assert found.broken == [
        f"en/00-start-here.html: {small.url}en/00-start-here.html#nowhere.html (no #nowhere.html there)"
    ]


def test_chapter_frame_offers_the_student_version_and_names_the_small_kernel(small, open_small):
    page = open_small("en/01-close.html")
    frame = page.locator(".ck-frame")
    assert "Linux 6.1.0-small, 2026-03-04" in frame.inner_text()
    # a translation's link to a chapter it does not have yet reads the default edition's
    zh_link = open_small("zh/00-start-here.html").get_by_role("link", name="第一章")
    assert zh_link.evaluate("a => a.href") == small.url + "en/01-close.html"
    assert frame.locator("a.ck-download").get_attribute("href") == "_exercises/ex01-close.ipynb"
    assert (small.root / "en" / "_exercises" / "ex01-close.ipynb").is_file()
    zh = open_small("zh/00-start-here.html")
    assert "本页输出记录于 Linux 6.1.0-small" in zh.locator(".ck-frame").inner_text()


def test_chinese_search_finds_a_chinese_term(small, open_small):
    page = open_small("zh/search.html?q=半关闭")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for()
    assert "00-start-here.html" in {a.get_attribute("href").split("#")[0].split("?")[0] for a in results.all()}
