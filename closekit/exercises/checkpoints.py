"""JupyterLab's checkpoints kept in one folder of the server's root, not beside each notebook.

JupyterLab saves a notebook's last checkpoint into `.ipynb_checkpoints/` next to it, so an assignment folder
holds a copy a student never made: nbgrader does not hand it in (it is in `CourseDirectory.ignore`), but its
check of the submitted notebooks lists it, and every `nbgrader submit` warned
".ipynb_checkpoints/NAME-checkpoint.ipynb: EXTRA". Here the checkpoints of `a/b/NAME.ipynb` are kept in
`<root>/.ipynb_checkpoints/a/b/`, the tree mirrored so no two notebooks share one.

    jupyter lab --FileContentsManager.checkpoints_class=closekit.exercises.checkpoints.RootCheckpoints

(`closekit lab` and the hub's servers, deploy/jupyterhub_config.py, pass it.)
"""

from __future__ import annotations

import os

from jupyter_core.utils import ensure_dir_exists
from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints


class RootCheckpoints(AsyncFileCheckpoints):
    def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
        parent, name = ("/" + path.strip("/")).rsplit("/", 1)
        basename, ext = os.path.splitext(name)
        folder = os.path.join(self.root_dir, self.checkpoint_dir, *[p for p in parent.split("/") if p])
        with self.perm_to_403():
            ensure_dir_exists(folder)
        return os.path.join(folder, f"{basename}-{checkpoint_id}{ext}")
