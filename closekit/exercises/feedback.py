"""Chapter links in the feedback nbgrader hands back, pointed at where the student reads it.

An exercise links its chapters relatively (the navigation line, "See chapter N" in a verdict): right where the
notebook was run, wrong in the feedback, which nbgrader makes from the instructor's `autograded/` folder and a
student fetches two folders below the assignment (`exercises/student/NAME/feedback/<time>/NAME.html` in their
copy of the course). This nbconvert preprocessor, in `GenerateFeedback.preprocessors` (the course's
nbgrader_config.py), rewrites every link to a chapter, in the markdown and in the outputs, into the base the
course configured (CLOSEKIT_CHAPTERS: a hub's user-redirect, a published book), or else into the relative path
from that fetched feedback to the chapter in the student's copy.
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from closekit.course import ASSIGNMENTS
from closekit.exercises.results import configured_chapter_link

# a link's target that is a chapter: a relative path (../…, no scheme) to notebooks/[edition/]NN-name.ipynb
_TARGET = re.compile(r"(?:\.\./[^\"()\s:]*?)?notebooks/((?:[a-z]{2}/)?\d\d-[\w-]+\.ipynb)")
_MARKDOWN = re.compile(r"\]\((" + _TARGET.pattern + r")\)")
_HTML = re.compile(r'href="(' + _TARGET.pattern + r')"')
# from <copy>/exercises/student/NAME/feedback/<time>/ up to the copy
_UP = "../" * (len(ASSIGNMENTS.parts) + 3)


def feedback_href(chapter: str) -> str:
    """Where the feedback links `chapter` ("05-x.ipynb" or "zh/05-x.ipynb")."""
    return configured_chapter_link(chapter) or f"{_UP}notebooks/{chapter}"


def relink(text: str) -> str:
    text = _MARKDOWN.sub(lambda m: f"]({feedback_href(m.group(2))})", text)
    return _HTML.sub(lambda m: f'href="{feedback_href(m.group(2))}"', text)


class ChapterLinks(Preprocessor):
    enabled = Bool(True, help="on when listed (nbconvert's preprocessors are off unless enabled)").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = relink(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data:
                data["text/html"] = relink(data["text/html"])
        return cell, resources
