"""Sphinx configuration of the book; `python -m closekit.book build` stages the sources and sets
language and html_title per edition (see closekit/book/build.py)."""

from pathlib import Path

project = "closekit"
author = "closekit"
extensions = ["myst_nb", "closekit.book.sphinx_ext"]

# Stored outputs, as they are: the book never runs a notebook.
nb_execution_mode = "off"
# No live widgets and no JavaScript from a CDN: a widget shows its text form.
nb_ipywidgets_js = {}
# Which form of an output to show. A picture wins over an HTML or text form of the same thing;
# JavaScript, widget views and LaTeX (which would load MathJax from a CDN) are never shown.
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "application/javascript", None),
    ("html", "text/latex", None),
    ("html", "image/svg+xml", 10),
    ("html", "image/png", 20),
    ("html", "image/jpeg", 30),
    ("html", "image/gif", 40),
    ("html", "text/html", 50),
    ("html", "text/markdown", 60),
    ("html", "text/plain", 100),
]
myst_heading_anchors = 3  # [see below](#some-heading) links work, as they do in JupyterLab

root_doc = "index"
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["closekit-book.css"]
templates_path = ["_templates"]
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "ck-switch.html",
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/scroll-end.html",
    ]
}
# Chinese search splits words with jieba; this list keeps the course's terms whole (半关闭 is one
# word to search for, not 半 + 关闭). Other languages ignore the option.
html_search_options = {"dict": str(Path(__file__).with_name("zh_words.txt"))}
html_copy_source = False  # the notebooks are in the repository; the book is for reading
html_show_sourcelink = False
html_last_updated_fmt = None
