"""Make the HTML a notebook stored as output safe to show in the book.

A stored output is whatever the kernel printed the last time the notebook ran; the book shows it to
readers who never ran it, so nothing in it may run code. JupyterLab refuses to render untrusted
output HTML for the same reason. Here every HTML fragment from a notebook (outputs, raw cells, raw
HTML in markdown) goes through :func:`clean`:

- an inline ``<svg>`` (the gallery's diagrams) becomes an ``<img>`` of that SVG: a picture that
  scales to the column, in which no script can run and whose styles and ids cannot leak into the page;
- a ``<style>`` block is kept only if it is plain CSS (no ``url()``, ``@import``, escapes or markup),
  so transcripts keep their colours and load nothing;
- the rest is sanitized by Ammonia (``nh3``) against an allowlist: text, tables, lists, figures and
  images; no ``<script>``, ``<iframe>``, forms, event handlers or ``javascript:`` links; ``data:``
  URLs only as ``<img>`` pictures; inline styles reduced to layout and colour properties.
"""

from __future__ import annotations

import base64
import html as markup
import re
import secrets
from collections.abc import Callable

import nh3

__all__ = ["clean", "data_url"]

# Picture: SVG text -> the URL an <img> shows it from (a file the book wrote, or a data: URL).
Picture = Callable[[str], str]

TAGS = set(nh3.ALLOWED_TAGS) - {"map", "area"}
ATTRIBUTES = {
    "*": {"class", "style", "title", "lang", "dir"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "td": {"rowspan", "colspan", "align"},
    "th": {"rowspan", "colspan", "align", "scope"},
    "ol": {"start"},
    "col": {"span"},
    "colgroup": {"span"},
}
# Elements dropped with everything inside them (the rest of a disallowed element's text is kept).
DROPPED = {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math", "form", "textarea",
           "select", "button", "frameset", "frame", "applet", "audio", "video", "canvas"}  # fmt: skip
# Inline style properties kept: layout and colour. No shorthand that can carry url() (background).
STYLE_PROPERTIES = {
    "color", "background-color", "font-weight", "font-style", "font-family", "font-size", "font-variant",
    "text-align", "text-decoration", "vertical-align", "white-space", "line-height", "letter-spacing",
    "display", "width", "max-width", "min-width", "height", "max-height", "overflow", "overflow-x",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-color", "border-style",
    "border-width", "border-radius", "border-collapse", "border-spacing",
}  # fmt: skip
URL_SCHEMES = {"http", "https", "mailto", "data"}
PICTURE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", re.I)

_SVG = re.compile(r"<svg\b.*?</svg\s*>", re.I | re.S)
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.I | re.S)
# In a <style> block: anything that loads, escapes or nests. A block containing one is dropped whole.
_UNSAFE_CSS = re.compile(r"url\s*\(|@import|@font-face|expression\s*\(|behavior|binding|javascript|\\|<", re.I)
_TITLE = re.compile(r"<title>([^<]{1,200})</title>", re.I)


def data_url(svg: str) -> str:
    """The SVG as a data: URL (for tests and single-file pages; the book writes files instead)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _attribute(tag: str, attribute: str, value: str) -> str | None:
    """Allow data: URLs only as a picture's source; never elsewhere (a data: link is a page of its own)."""
    if value.strip().lower().startswith("data:") and not (
        tag == "img" and attribute == "src" and PICTURE_DATA.match(value.strip())
    ):
        return None
    return value


def _standalone(svg: str) -> str:
    """An inline <svg> as a file of its own: it needs the SVG namespace (HTML does not)."""
    head = svg[: svg.index(">")]
    if "xmlns=" not in head:
        svg = svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg


def clean(html: str, picture: Picture = data_url) -> str:
    """`html` with nothing that can run, load or leak: see the module's docstring for what is kept."""
    token = f"ckbook{secrets.token_hex(8)}"
    kept: list[str] = []

    def keep(fragment: str) -> str:
        kept.append(fragment)
        return f"{token}x{len(kept) - 1}x"

    def svg(found: re.Match[str]) -> str:
        text = found.group(0)
        title = _TITLE.search(text)
        alt = f"diagram: {markup.unescape(title.group(1)).strip()}" if title else "diagram"
        src = picture(_standalone(text))
        return keep(f'<img class="ck-diagram" src="{markup.escape(src)}" alt="{markup.escape(alt)}">')

    def style(found: re.Match[str]) -> str:
        css = found.group(1)
        return "" if _UNSAFE_CSS.search(css) else keep(f"<style>{css}</style>")

    html = _SVG.sub(svg, html)
    html = _STYLE.sub(style, html)
    html = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=DROPPED,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute,
        url_schemes=URL_SCHEMES,
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
    )
    return re.sub(rf"{token}x(\d+)x", lambda m: kept[int(m.group(1))], html)
