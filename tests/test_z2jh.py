"""Zero to JupyterHub (deploy/z2jh/): what can be checked without Kubernetes or Docker, which this machine lacks.

The values file parses and says what the one-machine hub does (the same server options, start page, chapter
links, exchange and first-start copy); its hub-side Python compiles and, run against stand-ins for the pod
objects, mounts the course folder for instructors only and switches the instructor tools off for students; the
image recipe installs with deploy/install.sh, the script `bash course.sh hub` runs for the hub that
tests/test_hub.py exercises. Building the image and deploying the chart are not tested here (deploy/README.md).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "deploy"))
import closekit_hub  # noqa: E402

Z2JH = REPO / "deploy" / "z2jh"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((Z2JH / "config.yaml").read_text())


def test_the_servers_run_as_on_the_one_machine_hub(values):
    single = values["singleuser"]
    assert single["cmd"] == ["jupyterhub-singleuser", *closekit_hub.server_args()]
    assert single["defaultUrl"] == closekit_hub.START_PAGE
    assert single["extraEnv"]["CLOSEKIT_CHAPTERS"] == closekit_hub.CHAPTERS
    exchange = str(closekit_hub.Site.from_env({}).exchange)
    assert single["extraEnv"]["CLOSEKIT_EXCHANGE"] == exchange
    assert {"name": "exchange", "mountPath": exchange} in single["storage"]["extraVolumeMounts"]
    command = single["lifecycleHooks"]["postStart"]["exec"]["command"]
    assert command[1:] == ["-m", "closekit.course", "copy", f"/home/jovyan/{closekit_hub.COURSE_COPY}", "--class"]
    groups = values["hub"]["loadGroups"]
    assert set(groups) == {"formgrade-closekit", "nbgrader-closekit"}


def test_the_pod_is_allowed_what_mode_netns_needs(values):
    single = values["singleuser"]
    assert single["extraPodConfig"]["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert single["extraContainerConfig"]["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    assert any("tun" in name for name in single["extraContainerConfig"]["resources"]["limits"])


def _pod(volumes: list[str]) -> SimpleNamespace:
    container = SimpleNamespace(volume_mounts=[], env=[])
    return SimpleNamespace(
        spec=SimpleNamespace(containers=[container], volumes=[SimpleNamespace(name=v) for v in volumes])
    )


def test_the_hub_config_gives_instructors_the_course_and_students_neither(values, monkeypatch):
    """The extraConfig, run as the chart runs it (with `c`), against stand-ins for kubernetes_asyncio's models."""
    models = types.ModuleType("kubernetes_asyncio.client.models")
    models.V1VolumeMount = lambda **kw: SimpleNamespace(**kw)
    models.V1EnvVar = lambda **kw: SimpleNamespace(**kw)
    for name in ("kubernetes_asyncio", "kubernetes_asyncio.client"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "kubernetes_asyncio.client.models", models)
    c = Config()
    exec(compile(values["hub"]["extraConfig"]["closekit"], "extraConfig", "exec"), {"c": c})
    assert "read:users:groups!user" in c.Spawner.server_token_scopes
    hook = c.KubeSpawner.modify_pod_hook
    user = SimpleNamespace(id=7, groups=[SimpleNamespace(name="nbgrader-closekit")])
    assert c.KubeSpawner.uid(SimpleNamespace(user=user)) == c.KubeSpawner.gid(SimpleNamespace(user=user)) == 10007
    assert c.KubeSpawner.supplemental_gids(SimpleNamespace(user=user)) == []

    def spawner(group: str) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(groups=[SimpleNamespace(name=group)]))

    assert c.KubeSpawner.supplemental_gids(spawner("formgrade-closekit")) == [20000]
    teacher = hook(spawner("formgrade-closekit"), _pod(["home", "exchange", "course"]))
    assert [m.mount_path for m in teacher.spec.containers[0].volume_mounts] == ["/home/jovyan/closekit-course"]
    assert teacher.spec.containers[0].env == []
    student = hook(spawner("nbgrader-closekit"), _pod(["home", "exchange", "course"]))
    assert [v.name for v in student.spec.volumes] == ["home", "exchange"]
    assert [(e.name, e.value) for e in student.spec.containers[0].env] == [
        ("JUPYTER_CONFIG_PATH", "/opt/closekit/etc/jupyter-student")
    ]
    assert student.spec.containers[0].volume_mounts == []


def test_the_image_installs_with_the_script_the_hub_test_uses():
    dockerfile = (Z2JH / "Dockerfile").read_text()
    assert re.search(r"^RUN bash /tmp/closekit/deploy/install\.sh /opt/closekit /tmp/closekit", dockerfile, re.M)
    course_sh = (REPO / "course.sh").read_text()

    def body(function: str) -> str:
        start = course_sh[course_sh.index(f"{function}() {{") :]
        return start[: start.index("\n}\n")]

    assert 'bash deploy/install.sh "$HUB_PREFIX" .' in body("hub_environment")
    assert "hub_environment" in body("hub_setup")  # bash course.sh hub
    test = course_sh[course_sh.index("\n    test)") :]
    assert "hub_environment" in test[: test.index(";;")]  # bash course.sh test, for tests/test_hub.py
    packages = re.search(r"SYSTEM_PACKAGES=\(([^)]*)\)", course_sh).group(1).split()
    apt = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?)\\\n", dockerfile, re.S).group(1).split()
    assert set(packages) <= set(apt), f"the image lacks {set(packages) - set(apt)}"
    assert "FROM debian:" in dockerfile  # Debian's python3, what install.sh expects at /usr/bin/python3
