"""The other ways in: conda (environment.yml), Binder/repo2docker (apt.txt), and the `closekit lab` command.

What can be checked without conda or Docker: the files parse, the conda route installs what the pip
route installs (same names, same bounds), apt.txt has the system packages course.sh installs, and
the command that opens the course answers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"graphviz": "python-graphviz", "build": "python-build"}
# Left to pip (environment.yml's `pip: - -e .[test]` installs them), with the reason.
PIP_ONLY = {
    "playwright": "the PyPI wheel ships its driver; conda-forge names it playwright-python",
    "resvg-py": "a PyPI wheel with resvg built in (no system library); not packaged on conda-forge",
}
# course.sh's system packages that Binder does not need: conda brings Python's venv, and the
# browser only serves the test suite.
NOT_ON_BINDER = {"python3-venv", "chromium"}


def _split(requirement: str) -> tuple[str, str]:
    """'jupyterlab>=4,<5' -> ('jupyterlab', '>=4,<5'); extras and spaces dropped, names lower-cased."""
    found = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*(.*)", requirement)
    assert found, requirement
    return found.group(1).lower().replace("_", "-"), found.group(2).replace(" ", "")


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


@pytest.fixture(scope="module")
def conda(environment) -> dict[str, str]:
    return dict(_split(d) for d in environment["dependencies"] if isinstance(d, str))


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _course_sh_packages() -> list[str]:
    text = (REPO / "course.sh").read_text()
    found = re.search(r"^SYSTEM_PACKAGES=\(([^)]*)\)", text, re.M)
    assert found, "course.sh has no SYSTEM_PACKAGES=(...)"
    return found.group(1).split()


def test_environment_yml_is_conda_forge_and_installs_closekit_from_the_repo(environment, conda):
    assert environment["name"] == "closekit"
    assert environment["channels"] == ["conda-forge"]
    pip = [d for d in environment["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1 and set(pip[0]) == {"pip"}, "one pip: section"
    assert "pip" in conda, "pip itself must be listed for the pip: section"
    assert any(re.fullmatch(r"-e\s+\.\[test\]", line.strip()) for line in pip[0]["pip"]), pip[0]["pip"]
    for must in ("python", "jupyterlab", "ipywidgets", "python-graphviz", "graphviz", "nbval", "nbgrader"):
        assert must in conda, f"environment.yml lacks {must}"


def test_conda_packages_cover_the_pip_extras_with_the_same_bounds(conda, project):
    assert conda["python"] == project["requires-python"]
    extras = project["optional-dependencies"]
    wanted = [_split(r) for extra in ("lab", "book", "test") for r in extras[extra] if not r.startswith("closekit")]
    assert wanted, "pyproject has no lab/book/test extras"
    for name, bounds in wanted:
        if name in PIP_ONLY:
            assert CONDA_NAME.get(name, name) not in conda
            continue
        conda_name = CONDA_NAME.get(name, name)
        assert conda_name in conda, f"{name} (pyproject) is missing from environment.yml as {conda_name}"
        assert conda[conda_name] == bounds, (
            f"{conda_name}: environment.yml says {conda[conda_name]!r}, pyproject {bounds!r}"
        )


def test_the_dot_binary_and_tcpdump_come_with_conda_too(conda):
    assert "graphviz" in conda  # conda-forge's graphviz is the binary; python-graphviz the wrapper
    assert "tcpdump" in conda


def test_apt_txt_lists_what_course_sh_installs():
    apt = [line.split("#")[0].strip() for line in (REPO / "apt.txt").read_text().splitlines()]
    apt = [line for line in apt if line]
    wanted = [p for p in _course_sh_packages() if p not in NOT_ON_BINDER]
    assert wanted, "course.sh installs nothing?"
    assert sorted(apt) == sorted(wanted)


def test_course_sh_checks_every_system_package_it_names():
    text = (REPO / "course.sh").read_text()
    setup = text[text.index("system_setup() {") :]
    setup = setup[: setup.index("\n}\n")]
    checked = re.findall(r"missing\+=\(([\w.-]+)\)", setup)
    assert sorted(checked) == sorted(_course_sh_packages())


def test_closekit_lab_help_answers():
    script = Path(sys.executable).with_name("closekit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "closekit"]
    out = subprocess.run([*command, "lab", "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    for option in ("--dir", "--port", "--no-browser"):
        assert option in out
