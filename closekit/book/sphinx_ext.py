"""The Sphinx side of the book: safe outputs, the frame around each page, links out of the book.

Loaded by the book's Sphinx configuration (closekit/book/conf/conf.py); it reads the frame that
closekit.book.build staged beside the sources (``_closekit_book.json``):

- every raw HTML fragment (stored text/html outputs, raw cells, HTML in markdown) is sanitized by
  :func:`closekit.book.sanitize.clean`; inline SVG diagrams become files under ``_diagrams/``;
- each page starts with its frame (the kernel and date of its outputs, JupyterLab, exercises) and the
  language switch, which the sidebar shows too;
- a link in a chapter to a file of the repository outside the chapters (``../exercises/``) opens that
  file in JupyterLab, as it does when the chapter is read there; a link to a chapter a translation
  does not have yet goes to the default edition's page. A link to nothing stays a warning.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from functools import cache
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.search.zh import SearchChinese
from sphinx.transforms.post_transforms import SphinxPostTransform

from closekit.book.build import DATA
from closekit.book.sanitize import clean

DIAGRAMS = "_diagrams"


@cache
def _frame(srcdir: str) -> dict[str, Any]:
    path = Path(srcdir, DATA)
    return json.loads(path.read_text()) if path.is_file() else {"headers": {}, "switches": {}}


def _root(docname: str) -> str:
    """The relative path from a page to the site's root."""
    return "../" * docname.count("/")


def _sanitize(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    folder = Path(app.outdir, DIAGRAMS)

    def picture(svg: str) -> str:
        data = svg.encode()
        name = hashlib.sha256(data).hexdigest()[:20] + ".svg"
        folder.mkdir(exist_ok=True)
        if not (folder / name).exists():
            (folder / name).write_bytes(data)
        return f"{_root(docname)}{DIAGRAMS}/{name}"

    for raw in list(doctree.findall(nodes.raw)):
        if "html" in raw.get("format", "").split():
            safe = nodes.raw("", clean(raw.astext(), picture), format="html")
            safe["classes"] = raw.get("classes", [])
            raw.replace_self(safe)


def _page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: nodes.document | None) -> None:
    frame = _frame(str(app.srcdir))
    switch = frame["switches"].get(pagename, "")
    context["ck_switch"] = switch
    if "body" in context:
        context["body"] = switch + frame["headers"].get(pagename, "") + context["body"]


class OutsideLinks(SphinxPostTransform):
    """Links from a chapter to files that are not pages of this edition, resolved as a reader
    expects; MyST's resolver (priority 9, after this) warns about whatever is left:

    - `[the exercises](../exercises/)`: a file of the repository outside the chapters opens in
      JupyterLab, as the same link does when the chapter is read there;
    - `[chapter 1](01-close.ipynb)` in a translation that has no chapter 1 yet: the default
      edition's page."""

    default_priority = 8

    def run(self, **kwargs: Any) -> None:
        frame = _frame(str(self.env.srcdir))
        if "repo" not in frame:
            return
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") or "://" in node["reftarget"]:
                continue
            target, _, anchor = node["reftarget"].partition("#")
            here = posixpath.dirname(posixpath.join(frame["notebooks"], node["refdoc"]))
            path = posixpath.normpath(posixpath.join(here, target))
            if path.startswith("..") or posixpath.isabs(path):
                continue
            uri = self._translation_fallback(frame, path, node["refdoc"])
            if uri is None and not path.startswith(frame["notebooks"] + "/") and Path(frame["repo"], path).exists():
                uri = frame["lab"].format(path=path)
            if uri is not None:
                uri += f"#{anchor}" if anchor else ""
                node.replace_self(nodes.reference("", "", *node.children, refuri=uri, internal=False))

    @staticmethod
    def _translation_fallback(frame: dict[str, Any], path: str, refdoc: str) -> str | None:
        fallback = frame.get("fallback")
        if not fallback or not path.startswith(frame["notebooks"] + "/") or not path.endswith(".ipynb"):
            return None
        name = path[len(frame["notebooks"]) + 1 :]
        if not Path(frame["repo"], fallback["notebooks"], name).is_file():
            return None
        return f"{_root(refdoc)}../{fallback['lang']}/{name[: -len('.ipynb')]}.html"


class ChineseSearch(SearchChinese):
    """Sphinx's Chinese search (jieba for Chinese words, the English stemmer for Latin ones).
    Sphinx 9.0 names the stemmer's JavaScript class after `language_name` ("ChineseStemmer"), which
    does not exist, so search fails in the browser (sphinx-doc/sphinx#14229, fixed by #14416 after
    9.0.4): the class it loads is the English one."""

    language_name = "English"


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_search_language(ChineseSearch)
    app.connect("doctree-resolved", _sanitize)
    app.connect("html-page-context", _page)
    app.add_post_transform(OutsideLinks)
    return {"parallel_read_safe": True, "parallel_write_safe": False}
