"""Put closekit's Jupyter pieces where JupyterLab and nbgrader look for them, in this environment.

`python -m closekit.exercises.jupyter_setup` (run by `bash course.sh open|test`) installs into
`sys.prefix`:

- the `closekit-answers` JupyterLab extension (`share/jupyter/labextensions/closekit-answers/`):
  it writes the answer a student clicks into the notebook, so that nbgrader grades it;
- `share/jupyter/lab/settings/overrides.d/closekit.json`: JupyterLab's news and update check off,
  so a new student is not greeted by a "get notified about Jupyter news?" popup;
- with `--course DIR` (course.sh passes `exercises/`): `etc/jupyter/nbgrader_config.py`, which loads
  that course's `nbgrader_config.py`, so nbgrader commands and the formgrader find the course wherever
  JupyterLab or the command was started.

A wheel install (`pip install closekit`) brings the first two as data files; an editable install
(`pip install -e`, what course.sh does) does not, which is why this step exists. It is idempotent.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTENSION = "closekit-answers"
NBGRADER_CONFIG = '''"""Written by `python -m closekit.exercises.jupyter_setup`: the closekit course's nbgrader
settings, found by nbgrader and the formgrader wherever they start. Rerun it to change; CLOSEKIT_COURSE_CONFIG
names another course's nbgrader_config.py (a copy of the course, a test) for one session."""

import os

load_subconfig(os.environ.get("CLOSEKIT_COURSE_CONFIG", {config!r}))  # noqa: F821 (traitlets provides it)
'''


def install(
    prefix: Path | str = sys.prefix, course: Path | str | None = None, config_dir: Path | str | None = None
) -> list[Path]:
    """Install the extension and the settings under `prefix`; with `course`, point nbgrader at it
    (from `config_dir`, by default the environment's `etc/jupyter`). Returns the paths written.
    """
    prefix = Path(prefix)
    written = []
    target = prefix / "share" / "jupyter" / "labextensions" / EXTENSION
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    shutil.copytree(HERE / "labextension", target)
    written.append(target)

    overrides = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "closekit.json"
    overrides.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "jupyter" / "closekit.json", overrides)
    written.append(overrides)

    if course is not None:
        config = Path(course).resolve() / "nbgrader_config.py"
        if not config.is_file():
            raise SystemExit(f"no nbgrader_config.py in {config.parent}: pass the course folder (exercises/)")
        loader = Path(config_dir or prefix / "etc" / "jupyter") / "nbgrader_config.py"
        loader.parent.mkdir(parents=True, exist_ok=True)
        loader.write_text(NBGRADER_CONFIG.format(config=str(config)))
        written.append(loader)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m closekit.exercises.jupyter_setup", description=__doc__.split("\n")[0])
    p.add_argument("--prefix", default=sys.prefix, help="the environment to install into (default: this one)")
    p.add_argument("--course", help="the nbgrader course folder (exercises/) that nbgrader should find")
    p.add_argument("--config-dir", help="where nbgrader_config.py goes (default: PREFIX/etc/jupyter)")
    args = p.parse_args(argv)
    for path in install(args.prefix, args.course, args.config_dir):
        print(f"closekit: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
