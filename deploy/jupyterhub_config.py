"""JupyterHub for a class taking closekit on one machine (`bash course.sh hub` starts it with this file).

One server per student, spawned as the student's own Unix account (PAM logs them in), on the environment
`$CLOSEKIT_HUB_PREFIX` (/opt/closekit) that `course.sh hub` installs; the course folder, exchange and roster in
`$CLOSEKIT_HUB_SRV` (/srv/closekit), made by `deploy/closekit_hub.py setup`. deploy/README.md says why each
setting is here.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from closekit_hub import CHAPTERS, START_PAGE, Site, copy_course, read_roster, server_args

c = get_config()  # noqa: F821 (traitlets provides it)
site = Site.from_env()
members = read_roster(site.roster)
bin_dir = site.prefix / "bin"

# ---- where the hub listens, and its own state (one port given; the hub's and the proxy's APIs beside it) --
c.JupyterHub.ip = site.ip
c.JupyterHub.port = site.port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = site.port + 1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{site.port + 2}"
c.ConfigurableHTTPProxy.pid_file = str(site.state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{site.state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(site.state / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every server it spawned

# ---- who may log in: the roster's real Unix accounts, by their password (PAM) -----------------------------
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = {m.id for m in members}
# nbgrader's course groups: who is in the course, and who grades it (nbgrader's JupyterHubAuthPlugin reads them).
c.JupyterHub.load_groups = {
    site.students: {"users": [m.id for m in members if m.role == "student"]},
    site.instructors: {"users": [m.id for m in members if m.role == "instructor"]},
}
# A server's token may read its own user's groups (the plugin asks the hub which courses its user is in).
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "read:users:name!user",
    "read:users:groups!user",
]

# ---- each student's server ---------------------------------------------------------------------------------
c.Spawner.cmd = [str(bin_dir / "jupyterhub-singleuser")]
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = START_PAGE
c.Spawner.pre_spawn_hook = copy_course  # the course into ~/closekit on first login, as the student
# kernels over ipc, idle kernels culled (CLOSEKIT_HUB_CULL_IDLE seconds, 20 minutes), checkpoints apart
c.Spawner.args = server_args(int(os.environ.get("CLOSEKIT_HUB_CULL_IDLE", "1200")))
instructors = {m.id for m in members if m.role == "instructor"}


def _jupyter_config_path(spawner) -> str:
    """Students' servers read the config that switches off nbgrader's instructor tools; instructors' do not."""
    return "" if spawner.user.name in instructors else str(site.student_config)


c.Spawner.environment = {
    "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
    "CLOSEKIT_EXCHANGE": str(site.exchange),
    # "See chapter N" in a notebook or in feedback opens the chapter in the reader's own copy of the course.
    "CLOSEKIT_CHAPTERS": CHAPTERS,
    "JUPYTER_CONFIG_PATH": _jupyter_config_path,
}
# 40 servers starting at once on 2 cores took up to 66 s to answer.
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180

# ---- servers nobody uses are stopped after an hour (their memory back to the class) -----------------------
c.JupyterHub.services = [
    {"name": "idle-culler", "command": [str(bin_dir / "python"), "-m", "jupyterhub_idle_culler", "--timeout=3600"]}
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
