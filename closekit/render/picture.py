"""A drawn picture and the forms it is shown in: PNG for notebooks, SVG for files, words for text.

A notebook opened fresh from a clone is untrusted, and JupyterLab then renders no stored
image/svg+xml (nor inline <svg> in HTML, which its sanitizer strips); it does render image/png.
So a Picture's notebook bundle is a PNG, rasterized at `SCALE` times its size so that it stays
sharp on high-density screens and shown at its size through the output's metadata, plus a
text/plain form: what the picture says, one line per thing drawn. nbval skips PNG and compares
that text, so the text carries the lesson (arrow directions, fates, lit edges, duration categories)
and no clock reading. The SVG stays available for files (`closekit run --svg`) and the book.

Pictures are drawn to fit a notebook column: `MAX_WIDTH` CSS pixels (JupyterLab's column is about
800 px at 1440x900 with the file browser open); a wider drawing is shown scaled down to it.
"""

from __future__ import annotations

import base64
import functools
import re
from pathlib import Path
from typing import Any

from closekit.errors import CloseKitError

MAX_WIDTH = 780  # CSS px a picture may take in a notebook column
SCALE = 2  # PNG pixels per CSS pixel
RASTER_HINT = (
    "the resvg-py package is not installed, so this picture has no PNG form (JupyterLab shows PNG "
    "in untrusted notebooks, SVG only in trusted ones): pip install 'closekit[lab]'"
)


class Picture:
    """One diagram: its SVG, a PNG of it, its size in CSS pixels, and what it says in words.

    `kind` names the drawing ("sequence", "states", "kernel-path"); `str(picture)` is the text form.
    Subclasses say how the SVG and PNG are made.
    """

    kind = "picture"
    scale: float = SCALE  # PNG pixels per CSS pixel (the gallery, which shows many, uses 1)

    def __init__(self, title: str, text: str) -> None:
        self.title = title
        self.text = text

    # ---- what subclasses provide -------------------------------------------------------------
    @property
    def svg(self) -> str:
        raise NotImplementedError

    def _png(self) -> bytes:
        raise NotImplementedError

    # ---- derived ---------------------------------------------------------------------------------
    @functools.cached_property
    def size(self) -> tuple[float, float]:
        """(width, height) in CSS pixels, as the SVG declares them."""
        return svg_size(self.svg)

    @property
    def width(self) -> float:
        return self.size[0]

    @property
    def height(self) -> float:
        return self.size[1]

    @property
    def shown_size(self) -> tuple[int, int]:
        """The size a notebook shows the picture at: its own, or scaled down to `MAX_WIDTH`."""
        width, height = self.size
        factor = min(1.0, MAX_WIDTH / width) if width else 1.0
        return round(width * factor), round(height * factor)

    @functools.cached_property
    def png(self) -> bytes:
        """The picture as PNG, `scale` pixels per CSS pixel (CloseKitError if it cannot be made here)."""
        return self._png()

    def save(self, path: str | Path) -> Path:
        """Write the picture to `path`: SVG, PNG or text (.txt), by the file's suffix."""
        out = Path(path)
        if out.suffix == ".png":
            out.write_bytes(self.png)
        elif out.suffix == ".txt":
            out.write_text(self.text + "\n", encoding="utf-8")
        else:
            out.write_text(self.svg, encoding="utf-8")
        return out

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        try:
            png = self.png
        except CloseKitError as error:
            return {"text/plain": f"[{error}]\n{self.text}"}, {}
        width, height = self.shown_size
        data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": self.text}
        return data, {"image/png": {"width": width, "height": height}}

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:  # no memory address: reprs end up in compared outputs
        return f"<{self.kind} picture: {self.title}>"


class SvgPicture(Picture):
    """A picture drawn as SVG by closekit itself; its PNG comes from resvg."""

    def __init__(self, kind: str, title: str, text: str, svg: str) -> None:
        super().__init__(title, text)
        self.kind = kind
        self._svg = svg

    @property
    def svg(self) -> str:
        return self._svg

    def _png(self) -> bytes:
        return rasterize(self._svg, self.scale)


def rasterize(svg: str, scale: float = SCALE, sans: str | None = None) -> bytes:
    """PNG of an SVG, `scale` pixels per CSS pixel, on white.

    Text is drawn without subpixel positioning: it looks the same at 2x and the PNG is a third of
    the size. Shapes are antialiased at 2x; at 1x (the gallery's many pictures) they are not, which
    halves the PNG again. `sans` names the family generic sans-serif text gets (graphviz
    lays text out with fontconfig's match for its font, so its pictures pass that match).
    """
    try:
        import resvg_py
    except ImportError as error:
        raise CloseKitError(RASTER_HINT) from error
    options = {"monospace_family": installed("DejaVu Sans Mono", "Liberation Mono")}
    family = sans or installed("DejaVu Sans", "Liberation Sans")
    if family:  # graphviz writes "sans-Serif", which resvg takes for a family name: make it the default too
        options["sans_serif_family"] = options["font_family"] = family
    return bytes(
        resvg_py.svg_to_bytes(
            svg_string=svg,
            zoom=scale,
            background="#ffffff",
            shape_rendering="geometric_precision" if scale > 1 else "crisp_edges",
            text_rendering="optimize_speed",
            **{k: v for k, v in options.items() if v},
        )
    )


@functools.cache
def installed(*families: str) -> str | None:
    """The first of `families` fontconfig knows (None: let resvg pick), so a PNG uses the metrics the
    layout assumed."""
    names = {name.strip() for line in _fontconfig("fc-list", ":", "family").splitlines() for name in line.split(",")}
    return next((f for f in families if f in names), None)


@functools.cache
def font_match(family: str) -> str | None:
    """The family fontconfig substitutes for `family` (what graphviz's text layout used)."""
    return _fontconfig("fc-match", "-f", "%{family[0]}", family).strip() or None


def _fontconfig(*command: str) -> str:
    import shutil
    import subprocess

    if not shutil.which(command[0]):
        return ""
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def in_px(svg: str) -> str:
    """The SVG with its root width/height in CSS pixels (graphviz writes points, which resvg refuses)."""
    root = re.search(r"<svg\b[^>]*>", svg)
    if not root:
        return svg
    tag = re.sub(r'\b(width|height)="([\d.]+)pt"', lambda m: f'{m[1]}="{float(m[2]) * 4 / 3:.2f}px"', root[0])
    return svg[: root.start()] + tag + svg[root.end() :]


_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)(pt|px)?"[^>]*?\bheight="([\d.]+)(pt|px)?"')


def svg_size(svg: str) -> tuple[float, float]:
    """(width, height) in CSS pixels from an SVG's root element (graphviz writes points: 1 pt = 4/3 px)."""
    found = _SIZE.search(svg)
    if not found:
        return 0.0, 0.0
    factor = 4 / 3 if found[2] == "pt" else 1.0
    return float(found[1]) * factor, float(found[3]) * factor
