"""Write the course's navigation cells: previous/next and contents on every chapter, chapter <-> exercise links.

The cells are generated, not written by hand, so that they survive any rewrite of the chapters' prose:
each carries `metadata.closekit.generated`, and a run replaces exactly those cells (and nothing else)
with what the current files say. Titles are read from each notebook's first heading.

The chapters of every edition get them in the edition's language: notebooks/ (English) and
notebooks/zh/ (Chinese). A Chinese chapter links the Chinese exercise (`ex01-close-zh` …) where it
exists and the English one until then, so a run after the Chinese exercises arrive switches the links.

    python tools/navigation.py           # rewrite the cells in notebooks/ and exercises/solutions/
    python tools/navigation.py --check   # exit 1 if a notebook's navigation is out of date (CI)

Student versions (exercises/student/) get theirs from their instructor version through
`nbgrader generate_assignment`. An exercise's editions in other languages (`ex01-close-zh`, see
tools/exercise_editions.py) link their edition's chapters (`notebooks/zh/`) by number.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from closekit.lang import edition_name

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = ROOT / "exercises" / "solutions"
STUDENT = "exercises/student"

# Which chapters each exercise practises (the instructor guide's table says the same).
EXERCISES: dict[str, tuple[int, ...]] = {
    "ex01-close": (1, 5),
    "ex02-shutdown": (2,),
    "ex03-linger": (3, 4),
    "ex04-when-close-returns": (4,),
    "ex05-what-the-peer-sees": (5,),
    "ex06-fix": (6,),
}
KEY = "closekit"
# The line an exercise's edition puts under its title, and how it names chapter N.
EDITION_WORDS = {"zh": ("对应章节：", "第 {number} 章")}


def title(path: Path) -> str:
    """The notebook's first heading, without the '#'."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


class Edition:
    """One language of the chapters: their folder, what its exercises are called, the words of its cells."""

    def __init__(self, folder: Path, suffix: str, contents: str, practise: str, exercises: str, packets: str) -> None:
        self.folder = folder  # the chapters
        self.suffix = suffix  # an exercise's name in this language: EXERCISES' name + suffix
        self.contents = contents
        self.practise = practise  # {links}
        self.exercises = exercises  # the start page's list: {rows}, {up}
        self.packets = packets  # the words before a chapter's pcap download
        self.up = "../" * len(folder.relative_to(ROOT).parts)  # from a chapter to the repository's root

    def exercise(self, name: str) -> str:
        """This edition's name of an exercise, or the English one while it has none of its own."""
        own = name + self.suffix
        return own if (SOLUTIONS / own / f"{own}.ipynb").is_file() else name


ENGLISH = Edition(
    folder=NOTEBOOKS,
    suffix="",
    contents="contents",
    practise="**Practise this chapter:** {links} (graded, checked on the live kernel).",
    exercises=(
        "## Exercises\n\n"
        "Predict-then-run questions, choose-the-fix, and code of your own, each checked on the live kernel.\n"
        "Open the student versions below (your course may hand them out through nbgrader instead).\n\n"
        "| exercise | chapters |\n|---|---|\n{rows}\n\n"
        "Solutions, for self-study once you have answered, are kept apart in `exercises/solutions/` of your "
        "copy of the course — each with its answers and the verdicts this kernel gave (a class's copy has none: "
        "your instructor's feedback explains each answer). "
        "Instructors: [`{up}exercises/README.md`]({up}exercises/README.md)."
    ),
    packets=(
        "**The packets.** This chapter's last experiment as a capture file: download it, then open it in "
        "Wireshark or read it with `tcpdump -r`. (In a mode that captures nothing, or for a recorded trace, the "
        "cell says so instead.)"
    ),
)
CHINESE = Edition(
    folder=NOTEBOOKS / "zh",
    suffix="-zh",
    contents="目录",
    practise="**本章练习：** {links}（自动评分，在真实内核上检查）。",
    exercises=(
        "## 练习\n\n"
        "先预测再运行、从几种写法中选出正确的修复、自己动手写代码——每道题的答案都拿到真实内核上检查。"
        "打开下面的学生版即可作答（你的课程也可能通过 nbgrader 分发它们）。\n\n"
        "| 练习 | 对应章节 |\n|---|---|\n{rows}\n\n"
        "答案单独放在你的课程副本的 `exercises/solutions/` 中，供作答之后自学对照，"
        "每份都附有参考答案和本机内核给出的判定（课堂副本中没有答案：教师发回的反馈会解释每道题）。"
        "教师请看 [`{up}exercises/README.md`]({up}exercises/README.md)（英文）。"
    ),
    packets=(
        "**抓包文件。** 本章最后一个实验的报文，保存为抓包文件：下载后可用 Wireshark 打开，"
        "或用 `tcpdump -r` 阅读。（在不抓包的模式下，或者对于录制的记录，这个单元格会说明原因。）"
    ),
)


def chapters(edition: Edition = ENGLISH) -> list[Path]:
    return sorted(p for p in edition.folder.glob("0*.ipynb") if re.match(r"0\d-", p.name))


def chapter_number(path: Path) -> int:
    return int(path.name[:2])


def exercise_path(name: str, kind: str = STUDENT) -> str:
    return f"{kind}/{name}/{name}.ipynb"


def cell(kind: str, text: str) -> dict:
    return {
        "cell_type": "markdown",
        "id": f"closekit-{kind}",
        "metadata": {KEY: {"generated": kind}, "tags": ["navigation"]},
        "source": text.splitlines(keepends=True),  # as nbformat stores it, so a re-executed notebook compares equal
    }


# The code of a chapter's pcap download, the same in every edition (their code cells are identical).
PCAP_CODE = (
    "from closekit.download import pcap_link\n"
    "\n"
    "pcap_link(trace) if trace.captured and not trace.recorded else print(trace.notice)"
)


def runs_experiments(path: Path) -> bool:
    """Whether the chapter runs experiments into `trace` (its last one is then the one to download)."""
    cells = json.loads(path.read_text())["cells"]
    return any(c["cell_type"] == "code" and "trace = closekit.run(" in "".join(c["source"]) for c in cells)


def pcap_cells(path: Path, edition: Edition = ENGLISH) -> list[dict]:
    """The words and the code cell that offer a chapter's packets as a download (none where no trace is run).
    nbval runs the code but leaves its output alone: the capture's bytes differ on every run."""
    if not runs_experiments(path):
        return []
    code = {
        "cell_type": "code",
        "execution_count": None,
        "id": "closekit-pcap",
        "metadata": {KEY: {"generated": "pcap"}, "tags": ["nbval-ignore-output"]},
        "outputs": [],
        "source": PCAP_CODE.splitlines(keepends=True),
    }
    return [cell("pcap-text", edition.packets), code]


def chapter_cells(path: Path, all_chapters: list[Path], edition: Edition = ENGLISH) -> tuple[dict, dict]:
    """The line under a chapter's title and the block at its end."""
    i = all_chapters.index(path)
    previous = all_chapters[i - 1] if i > 0 else None
    following = all_chapters[i + 1] if i + 1 < len(all_chapters) else None
    parts = []
    if previous is not None:
        parts.append(f"← [{title(previous)}]({previous.name})")
    if path.name != "00-start-here.ipynb":
        parts.append(f"[{edition.contents}](00-start-here.ipynb)")
    if following is not None:
        parts.append(f"[{title(following)}]({following.name}) →")
    line = " · ".join(parts)
    number = chapter_number(path)
    practice = [edition.exercise(name) for name, numbers in EXERCISES.items() if number in numbers]
    bottom = [f"---\n\n{line}"]
    if practice:
        links = ", ".join(
            f"[{title(SOLUTIONS / name / f'{name}.ipynb')}]({edition.up}{exercise_path(name)})" for name in practice
        )
        bottom.insert(0, edition.practise.format(links=links))
    top = cell("navigation-top", f"<small>{line}</small>")
    return top, cell("navigation-bottom", "\n\n".join(bottom))


def start_page_cell(edition: Edition = ENGLISH) -> dict:
    """The start page's list of exercises: the student versions, and the solutions kept apart."""
    rows = []
    for name, numbers in EXERCISES.items():
        name = edition.exercise(name)
        source = SOLUTIONS / name / f"{name}.ipynb"
        where = ", ".join(f"[{n}]({p.name})" for p in chapters(edition) for n in [chapter_number(p)] if n in numbers)
        rows.append(f"| [{title(source)}]({edition.up}{exercise_path(name)}) | {where} |")
    return cell("exercises", edition.exercises.format(rows="\n".join(rows), up=edition.up))


def exercise_cell(name: str) -> dict:
    links = []
    for number in EXERCISES[name]:
        chapter = next(p for p in chapters() if chapter_number(p) == number)
        links.append(f"[{title(chapter)}](../../../notebooks/{chapter.name})")
    return cell("navigation-top", "<small>Chapters: " + " · ".join(links) + "</small>")


def edition_exercise_cell(name: str, lang: str) -> dict:
    """The chapters line of an exercise's `lang` edition: its edition's chapters, named by number."""
    lead, chapter_name = EDITION_WORDS[lang]
    links = []
    for number in EXERCISES[name]:
        chapter = next(p for p in chapters() if chapter_number(p) == number)
        links.append(f"[{chapter_name.format(number=number)}](../../../notebooks/{lang}/{chapter.name})")
    return cell("navigation-top", f"<small>{lead}" + " · ".join(links) + "</small>")


def _generated(cell: dict) -> bool:
    return "generated" in cell.get("metadata", {}).get(KEY, {})


def _without_generated(cells: list[dict]) -> list[dict]:
    return [c for c in cells if not _generated(c)]


def _after_title(cells: list[dict]) -> int:
    for i, c in enumerate(cells):
        if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("# "):
            return i + 1
    return 0


def _normal(notebook: dict) -> list:
    """The cells with each source as one string (nbformat accepts a string or a list of lines)."""
    return [{**c, "source": "".join(c["source"])} for c in notebook["cells"]]


def navigate(path: Path, top: dict | None, bottom: dict | None, before_bottom: list[dict] = ()) -> bool:
    """Put `top` under the title, `before_bottom` and then `bottom` at the end of `path`; True if the file
    changed. A generated code cell whose source has not changed keeps its outputs."""
    text = path.read_text()
    notebook = json.loads(text)
    old = {c.get("id"): c for c in notebook["cells"] if _generated(c)}
    cells = _without_generated(notebook["cells"])
    if top is not None:
        cells.insert(_after_title(cells), top)
    for generated in before_bottom:
        kept = old.get(generated["id"])
        same = kept is not None and "".join(kept["source"]) == "".join(generated["source"])
        cells.append(kept if same and generated["cell_type"] == "code" else generated)
    if bottom is not None:
        cells.append(bottom)
    notebook["cells"] = cells
    new = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if _normal(json.loads(new)) == _normal(json.loads(text)):
        return False
    path.write_text(new)
    return True


Job = tuple[Path, dict | None, dict | None, list[dict]]


def edition_chapters(edition: Edition) -> list[Job]:
    """An edition's chapters: each with its navigation, its pcap download, the start page with the exercises."""
    every = chapters(edition)
    jobs: list[Job] = []
    for path in every:
        top, bottom = chapter_cells(path, every, edition)
        if path.name == "00-start-here.ipynb":
            bottom = start_page_cell(edition)
            bottom["source"] += ["\n", "\n", *chapter_cells(path, every, edition)[1]["source"]]
        jobs.append((path, top, bottom, pcap_cells(path, edition)))
    return jobs


def plan() -> list[Job]:
    jobs = edition_chapters(ENGLISH)
    for name in EXERCISES:
        jobs.append((SOLUTIONS / name / f"{name}.ipynb", exercise_cell(name), None, []))
        for lang in EDITION_WORDS:
            edition = edition_name(name, lang)
            jobs.append((SOLUTIONS / edition / f"{edition}.ipynb", edition_exercise_cell(name, lang), None, []))
    return jobs


def translated_chapters(editions: tuple[Edition, ...] = (CHINESE,)) -> list[Job]:
    """The chapters of the other editions: the same cells as plan() gives the English ones, in their words."""
    return [job for edition in editions for job in edition_chapters(edition)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    args = p.parse_args(argv)
    stale = []
    for path, top, bottom, before_bottom in [*plan(), *translated_chapters()]:
        if args.check:
            before = path.read_text()
            changed = navigate(path, top, bottom, before_bottom)
            if changed:
                path.write_text(before)
                stale.append(path)
        elif navigate(path, top, bottom, before_bottom):
            print(f"navigation: updated {path.relative_to(ROOT)}")
    if stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"navigation out of date in {names}: run python tools/navigation.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
