"""The instructor guide (exercises/README.md), followed command by command: release -> fetch -> submit ->
collect -> autograde -> export -> feedback, with the exchange and the student's home in a temporary folder.

The commands are read from the guide itself (the ```sh blocks between its `guide-test` markers) and run in
one bash session each, so the guide cannot drift from what works. Between fetch and submit the "student"
answers the way a click does: the answer cell gets `q1.answer("B")` (and a wrong `q2.answer("A")`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closekit.exercises import jupyter_setup

pytestmark = pytest.mark.nbgrader

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "exercises" / "README.md"
ASSIGNMENT = "ex01-close"
# What a line of the guide may be: activating the environment, changing folder, or an nbgrader command.
COMMAND = (
    r"source \.venv/bin/activate|cd \S+|python -m closekit\.course copy \S+ --class"
    r"|nbgrader \w+ [\w-]+( --force)?|nbgrader export --to \S+"
)


def guide_blocks() -> list[str]:
    """The ```sh blocks between <!-- guide-test: begin --> and <!-- guide-test: end -->, in order."""
    text = GUIDE.read_text()
    region = text.split("<!-- guide-test: begin -->", 1)[1].split("<!-- guide-test: end -->", 1)[0]
    return re.findall(r"```sh\n(.*?)```", region, flags=re.S)


def course_copy(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A repository-shaped folder (exercises/ copied, .venv linked) and the environment to run the guide in."""
    repo = tmp / "repo"
    ignore = shutil.ignore_patterns("exchange", "submitted", "autograded", "feedback", "gradebook.db", "*.csv")
    shutil.copytree(REPO / "exercises", repo / "exercises", ignore=ignore)
    (repo / ".venv").symlink_to(Path(sys.prefix))
    home = tmp / "home"
    home.mkdir()
    config = tmp / "jupyter-config"  # what `bash course.sh open` registers for the environment
    jupyter_setup.install(prefix=tmp / "prefix", course=repo / "exercises", config_dir=config)
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(config),
        "CLOSEKIT_EXCHANGE": str(tmp / "exchange"),
        "CLOSEKIT_COURSE_CONFIG": str(repo / "exercises" / "nbgrader_config.py"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("CLOSEKIT_CHAPTERS", None)  # one machine: links relative to the student's copy
    return repo, env


def run_block(block: str, repo: Path, env: dict[str, str]) -> str:
    """One block of the guide, each command echoed and checked (bash -e), from the repository."""
    done = subprocess.run(
        ["bash", "-e", "-x", "-c", block], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"the guide's block failed:\n{block}\n--- stderr:\n{done.stderr[-4000:]}"
    assert "is not absolute" not in done.stderr, done.stderr  # nbgrader's warning about a relative root
    return done.stderr


def chapter_links(notebook: Path) -> list[str]:
    """The markdown links of a notebook that point to a chapter (…/notebooks/NN-….ipynb)."""
    cells = json.loads(notebook.read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return re.findall(r"\]\(([^)\s]*notebooks/[\w/-]+\.ipynb)\)", text)


def answer(notebook: Path, answers: dict[str, str]) -> None:
    """What a click does: the answer cell's code becomes `q1.answer("B")`; the notebook is saved."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    notebook.write_text(json.dumps(nb))


def test_the_instructor_guide_runs_command_by_command(tmp_path):
    blocks = guide_blocks()
    assert len(blocks) == 5, "the guide's blocks: release, fetch, submit, collect to feedback, fetch feedback"
    text = "\n".join(blocks)
    for step in ("generate_assignment", "release_assignment", "fetch_assignment", "submit", "collect",
                 "autograde", "export", "generate_feedback", "release_feedback", "fetch_feedback"):  # fmt: skip
        assert f"nbgrader {step}" in text, f"the guide has no `nbgrader {step}`"
    repo, env = course_copy(tmp_path)
    release, fetch, submit, grade, feedback = blocks

    run_block(release, repo, env)
    assert list((tmp_path / "exchange" / "closekit" / "outbound").iterdir()), "nothing released to the exchange"
    run_block(fetch, repo, env)
    fetched = tmp_path / "home" / "closekit" / "exercises" / "student" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert fetched.is_file()
    assert "BEGIN SOLUTION" not in fetched.read_text()
    links = chapter_links(fetched)
    assert links, "the fetched assignment links no chapter"
    for link in links:  # as JupyterLab resolves them: from the notebook's folder, in the student's copy
        assert (fetched.parent / link).resolve().is_file(), f"{link} does not resolve in the student's copy"
    answer(fetched, {"q1-answer": 'q1.answer("B")', "q2-answer": 'q2.answer("A")'})
    run_block(submit, repo, env)
    run_block(grade, repo, env)

    (student,) = [p.name for p in (repo / "exercises" / "submitted").iterdir()]  # the account that submitted
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{repo / 'exercises' / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT, student)
        assert (submission.score, submission.max_score) == (1, 5)  # q1 right, q2 wrong, no code
    with open(repo / "exercises" / "grades.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["student_id"] == student]
    assert [(r["assignment"], float(r["raw_score"])) for r in rows] == [(ASSIGNMENT, 1.0)]

    run_block(feedback, repo, env)
    html = next(fetched.parent.joinpath("feedback").glob(f"*/{ASSIGNMENT}.html"))
    page = html.read_text()
    # the question cells show the question and its choices, not an empty widget
    assert "What does the client&#x27;s next recv() return?" in page or "next recv() return?" in page
    assert "-1 with ECONNRESET" in page and "nothing at all" in page
    assert "Your prediction did not hold" in page  # q2's failed test shows the student's message
    links = re.findall(r'href="([^"]*notebooks/[\w/-]+\.ipynb)"', page)
    assert any("05-kernel-close-path" in link for link in links), "the feedback's 'See chapter 5' is not a link"
    for link in links:  # the navigation line and "See chapter N", from where the student reads the feedback
        assert (html.parent / link).resolve().is_file(), f"{link} does not resolve from {html.parent}"


@pytest.mark.parametrize("block", range(5))
def test_every_guide_command_is_an_nbgrader_or_shell_step(block):
    """No hand step hides in the guide's blocks: each line is a command this test can run."""
    for line in guide_blocks()[block].splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            assert re.fullmatch(COMMAND, command), command
