"""A pytest plugin: nbval's kernels talk to pytest over unix sockets in a folder of their own, not over TCP.

jupyter_client picks a kernel's five ports by binding and releasing them, and another process of the suite (a
JupyterLab, the hub, another nbval, an experiment in mode host) may take one before the kernel binds it: the
kernel dies "before replying to kernel_info" (jupyter/jupyter_client#154; once in test_degraded's runs side by
side). conftest.py registers it; a pytest started apart loads it with `-p nbval_ipc` (this folder on PYTHONPATH).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("nbval"):
        return
    import nbval.kernel
    from jupyter_client.manager import KernelManager

    folder = tempfile.mkdtemp(prefix="closekit-kernels-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    kernels = itertools.count()

    def over_ipc(**kwargs: object) -> KernelManager:
        """nbval starts each kernel in its notebook's folder: the sockets' path is absolute."""
        return KernelManager(transport="ipc", ip=os.path.join(folder, f"kernel-{next(kernels)}"), **kwargs)

    nbval.kernel.KernelManager = over_ipc  # type: ignore[attr-defined]
