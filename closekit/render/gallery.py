"""Every picture of one experiment, one after another: the gallery notebook shows one of these per scenario."""

from __future__ import annotations

from dataclasses import dataclass

from closekit.render.kernel import kernel_path
from closekit.render.picture import Picture
from closekit.render.sequence import sequence_diagram
from closekit.render.states import drawn_sockets, state_diagram
from closekit.trace import Trace

GALLERY_SCALE = 1


@dataclass(frozen=True)
class Gallery:
    """A trace's time-sequence diagram, the state diagram of each socket (`drawn_sockets`) and the kernel
    path of its first close().

    In a notebook each picture is an output of its own (PNG and words), so every one of them shows in
    an untrusted notebook; `str(gallery)` is all their words.
    """

    trace: Trace
    pictures: tuple[Picture, ...]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for picture in self.pictures:
            display(picture)

    def __str__(self) -> str:
        return "\n\n".join(picture.text for picture in self.pictures)

    def __repr__(self) -> str:
        return f"<Gallery {self.trace.scenario!r}: {', '.join(p.kind for p in self.pictures)}>"


def gallery(scenario: str | Trace) -> Gallery:
    """Run a built-in scenario (or take a trace) and draw all its pictures, so a notebook cell stays one line."""
    import closekit

    trace = closekit.run(scenario) if isinstance(scenario, str) else scenario
    pictures: list[Picture] = [sequence_diagram(trace)]
    pictures += [state_diagram(trace, side, conn) for side, conn in drawn_sockets(trace)]
    if trace.syscalls(call="close"):
        pictures.append(kernel_path(trace))
    for picture in pictures:  # many pictures in one notebook: 1 pixel per CSS pixel keeps it small
        picture.scale = GALLERY_SCALE
    return Gallery(trace, tuple(pictures))
