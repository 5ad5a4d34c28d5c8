"""The book's frame around each chapter: where its outputs come from, and where to go from it.

Pure functions from the configuration (``book.toml``) and what the build found in the repository to
small pieces of HTML and MyST: the line above a chapter (kernel and date of its outputs, "Open in
JupyterLab", Binder, the chapter's exercises, the other editions) and the cover page of an edition.
Every page of an edition sits at the top of its folder (``en/01-close.html``), so the relative links
here are the same from every page.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from closekit.book.editions import Book, Edition
from closekit.book.provenance import Provenance

__all__ = ["GLOSSARY", "Exercise", "chapter_header", "cover", "glossary", "outputs_line", "switch"]


@dataclass(frozen=True)
class Exercise:
    name: str
    path: str  # repository path of its student version
    download: str | None  # the site-relative copy of it, if the build found the file


def _link(href: str, text: str, css: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{escape(v)}"' for k, v in attrs.items())
    return f'<a class="{css}" href="{escape(href)}"{extra}>{escape(text)}</a>'


def outputs_line(edition: Edition, stamps: Sequence[Provenance | None]) -> str:
    """One sentence naming the kernel(s) and date(s) of the outputs shown (plain text)."""
    known = [s for s in stamps if s]
    if not known:
        return edition.text["outputs_unknown"]
    kernels = sorted({s.kernel for s in known})
    dates = sorted({s.date for s in known})
    if len(kernels) == 1 and len(dates) == 1 and len(known) == len(stamps):
        return edition.text["outputs"].format(kernel=kernels[0], date=dates[0])
    return edition.text["outputs_many"].format(
        kernels=", ".join(f"Linux {k}" for k in kernels), first=dates[0], last=dates[-1]
    )


def switch(book: Book, edition: Edition, page: str, pages: dict[str, Sequence[str]]) -> str:
    """Links to the other editions: to this page's counterpart where it has one, else to their cover.
    `pages` maps each edition's lang to its chapter pages."""
    links = []
    for other in book.editions:
        if other.lang == edition.lang:
            continue
        shared = ("index", "search", "genindex", GLOSSARY)  # pages every edition has
        target = page if page in pages.get(other.lang, ()) or page in shared else "index"
        links.append(
            _link(f"../{other.lang}/{target}.html", other.name, "ck-lang", hreflang=other.language, lang=other.language)
        )
    return f'<nav class="ck-switch" aria-label="language">{" · ".join(links)}</nav>' if links else ""


def chapter_header(
    book: Book, edition: Edition, notebook_path: str, stamp: Provenance | None, exercises: Sequence[Exercise]
) -> str:
    """The lines above a chapter: its outputs' provenance, JupyterLab/Binder, its exercises."""
    text = edition.text
    links = [_link(book.lab.format(path=notebook_path), text["open_lab"], "ck-open-lab")]
    if book.binder:
        links.append(_link(book.binder.format(path=notebook_path), text["open_binder"], "ck-open-binder"))
    if exercises:
        items = []
        for exercise in exercises:
            item = _link(book.lab.format(path=exercise.path), exercise.name, "ck-exercise")
            if exercise.download:
                item += f" ({_link(exercise.download, text['download'], 'ck-download', download='')})"
            items.append(item)
        links.append(f'<span class="ck-exercises">{escape(text["exercises"])}: {", ".join(items)}</span>')
    return (
        '<div class="ck-frame">'
        f'<p class="ck-outputs">{escape(outputs_line(edition, [stamp]))} '
        f'<span class="ck-note">{escape(text["outputs_note"])}</span></p>'
        f'<p class="ck-links">{" · ".join(links)}</p>'
        "</div>"
    )


def cover(book: Book, edition: Edition, chapters: Sequence[str], stamps: Sequence[Provenance | None]) -> str:
    """An edition's cover page (MyST markdown): what the book is, its outputs, the chapter list.
    An edition with no chapters yet says so, and sends the reader to the default edition."""
    text = edition.text
    lines = [f"# {edition.title}", ""]
    if chapters:
        lines += [
            text["cover"],
            "",
            outputs_line(edition, stamps),
            "",
            "```{toctree}",
            f":caption: {text['chapters']}",
            ":maxdepth: 1",
            "",
        ]
        lines += [*chapters, "```"]
    else:
        default = book.editions[0]
        lines += [
            '<div class="ck-placeholder">',
            "",
            text["placeholder"],
            "",
            f'<a href="../{default.lang}/index.html">{escape(text["read_other"])}</a>',
            "",
            "</div>",
        ]
    return "\n".join(lines) + "\n"


GLOSSARY = "glossary"  # the page name of the course's vocabulary in every edition
_TERMS = Path(__file__).resolve().parents[1] / "lang" / "glossary.toml"


def glossary(edition: Edition) -> str:
    """The glossary page (MyST): each concept's English term, its one Chinese term, the variants the
    Chinese edition does not use, and what it means here, in the edition's language."""
    terms = tomllib.loads(_TERMS.read_text(encoding="utf-8"))["term"]
    text = edition.text
    note = "note_zh" if edition.lang == "zh" else "note_en"
    lines = [f"# {text['glossary']}", "", text["glossary_intro"].strip(), ""]
    heads = (text["glossary_en"], text["glossary_zh"], text["glossary_not"], text["glossary_means"])
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|---|---|---|---|")
    for term in terms:
        shown = "、".join(b.replace("(?!语)", "") for b in term["banned"])
        cells = (term["en"], term["zh"], shown, term[note])
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
