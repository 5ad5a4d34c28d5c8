"""closekit as a package: the wheel and sdist `python -m build` makes carry the course (chapters of both editions,
the exercises, their solutions, the instructor guide), and a fresh environment that installs the wheel runs it:
`closekit lab` copies the course out of the package and serves its start page, and an experiment runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from closekit import course

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_lists_every_folder_of_the_course():
    """data-files does not recurse: each folder of the course needs its own line in pyproject.toml."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {p for patterns in data.values() for p in patterns}
    folders = {f"{p.parent.as_posix()}/*.ipynb" for p in course.files(REPO) if p.suffix == ".ipynb"}
    assert folders <= shipped, f"add to [tool.setuptools.data-files]: {sorted(folders - shipped)}"
    for target, patterns in data.items():
        for pattern in patterns:
            if pattern.startswith(("notebooks/", "exercises/")):
                assert target == f"share/closekit/{Path(pattern).parent.as_posix()}", (target, pattern)
    assert {*course.INSTRUCTOR} <= shipped


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Built from a copy of the files git tracks, as a fresh clone has them (and so that no other build in the
    checkout, such as the hub's install, shares its build folders)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    try:
        tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout: the package is built from the files git tracks")
    for name in tracked.decode().split("\0"):
        if name and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    return out


def test_the_sdist_and_the_wheel_carry_the_course(built):
    (sdist,) = built.glob("closekit-*.tar.gz")
    (wheel,) = built.glob("closekit-*.whl")
    expected = [p.as_posix() for p in course.files(REPO)] + list(course.INSTRUCTOR)
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert set(expected) <= in_sdist, sorted(set(expected) - in_sdist)
    with zipfile.ZipFile(wheel) as z:
        in_wheel = {n.split(".data/data/share/closekit/", 1)[1] for n in z.namelist() if "/share/closekit/" in n}
    assert set(expected) <= in_wheel, sorted(set(expected) - in_wheel)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_fresh_environment_installs_the_wheel_and_runs_the_course(built, tmp_path):
    """The README's install command, into a new venv: the lab extra's dependencies from the index, closekit from
    the wheel; then the course is found in the package, copied, served at its start page, and experiments run.
    (--no-compile: the bytecode pip writes is not what this test is about, and it was a third of its CPU.)"""
    (wheel,) = built.glob("closekit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", f"{wheel}[lab]"], check=True,
                   capture_output=True, timeout=900)  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path / "home"), "JUPYTER_TOKEN": "closekit-test"}
    env.pop("CLOSEKIT_CHAPTERS", None)
    (tmp_path / "home").mkdir()
    where = subprocess.run([str(python), "-m", "closekit.course", "where"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, check=True).stdout.strip()  # fmt: skip
    assert Path(where) == venv / "share" / "closekit"
    run = subprocess.run([str(venv / "bin" / "closekit"), "run", "close-unread"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0 and "RST" in run.stdout, run.stderr

    port = _free_port()
    lab = subprocess.Popen(
        [str(venv / "bin" / "closekit"), "lab", "--no-browser", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    import requests

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                start = requests.get(f"http://127.0.0.1:{port}/", allow_redirects=False, timeout=5)
                break
            except requests.ConnectionError:
                assert lab.poll() is None, lab.stdout.read()
                assert time.monotonic() < deadline, "closekit lab did not answer in 120 s"
                time.sleep(0.5)
        assert start.headers["Location"].rstrip("?").endswith("/lab/tree/notebooks/00-start-here.ipynb")
        api = requests.get(f"http://127.0.0.1:{port}/api/contents/notebooks/00-start-here.ipynb",
                           params={"token": "closekit-test"}, timeout=30)  # fmt: skip
        assert api.status_code == 200 and api.json()["type"] == "notebook"
        copy = tmp_path / "home" / "closekit"
        assert (copy / "exercises" / "student" / "ex01-close" / "ex01-close.ipynb").is_file()
        assert (copy / "notebooks" / "zh" / "01-close.ipynb").is_file()
    finally:
        os.killpg(lab.pid, 15)
        lab.wait(timeout=30)
    printed = lab.stdout.read()
    assert f"http://localhost:{port}/lab/tree/notebooks/00-start-here.ipynb?token=" in printed, printed[-2000:]
