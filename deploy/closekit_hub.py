"""A class's JupyterHub on one machine: where things live, the accounts and folders it needs, the spawner's hooks.

    python deploy/closekit_hub.py setup        # as root, with the hub's Python (bash course.sh hub runs it)
    python deploy/closekit_hub.py configs      # only the environment's nbgrader and student configs (install.sh)

`setup` is idempotent; it reads the roster (`$CLOSEKIT_HUB_SRV/roster.csv`: id,role,first_name,last_name,email;
role is student or instructor) and makes, for what is missing:

- a Unix account per person (`useradd`, home 0700: a student's files are theirs alone; PAM logs them in, so
  give each a password with `passwd`), instructors in the Unix group `formgrade-<course>`;
- the course folder `$SRV/course` (the instructor versions with solutions, the released versions, the
  gradebook), root:formgrade-<course>, 2770: instructors share it, students cannot enter it; the solutions
  the closekit package carries in the hub's environment get the same group and 0750;
- the exchange `$SRV/exchange` (1777, as nbgrader requires) with the course's inbound (2773: students hand
  in, cannot list), outbound and feedback made in advance, so no student can claim the course's name first;
- the environment's nbgrader config (`$PREFIX/etc/jupyter/nbgrader_config.py`): the exchange, the course id,
  student ids and courses from the hub (nbgrader's JupyterHubAuthPlugin), fetched assignments into
  `~/closekit/exercises/student` (where the chapters link them), and the course's own config for whoever
  can read it: instructors, through `~/closekit-course`, a link to the course folder in their home (the
  formgrader only works on a course inside the folder its server serves);
- the students' Jupyter config (`$PREFIX/etc/jupyter-student`): Formgrader, Create Assignment and the course
  list switched off in their servers;
- the roster imported into the gradebook (`nbgrader db student import`).

jupyterhub_config.py imports this module for the same settings and for `copy_course`, the first-login hook.
"""

from __future__ import annotations

import csv
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROLES = ("student", "instructor")
COLUMNS = ("id", "role", "first_name", "last_name", "email")
# The server's Jupyter pieces a student must not have: nbgrader's instructor tools.
STUDENT_SERVER_EXTENSIONS_OFF = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")
STUDENT_LAB_PLUGINS_OFF = (
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
)
COURSE_COPY = "closekit"  # a student's copy of the course, in their home
START_PAGE = f"/lab/tree/{COURSE_COPY}/notebooks/00-start-here.ipynb"
CHAPTERS = f"/hub/user-redirect/lab/tree/{COURSE_COPY}/{{path}}"  # CLOSEKIT_CHAPTERS: each reader's own copy


def server_args(cull_idle: int = 1200) -> list[str]:
    """The options of every student's server, here and in the Z2JH image (tests/test_z2jh.py compares)."""
    return [
        # Kernels talk over Unix sockets in the student's private runtime folder: with TCP, 40 servers starting
        # together picked the same "free" ports (Address already in use, kernels dead or left behind).
        "--KernelManager.transport=ipc",
        # A kernel idle for `cull_idle` seconds is stopped, open tab or not: each holds ~60 MB, and a class
        # opens many. Looked for five times per idle period, at most once a minute: stopped within a fifth of
        # `cull_idle` past it.
        f"--MappingKernelManager.cull_idle_timeout={cull_idle}",
        f"--MappingKernelManager.cull_interval={min(60, max(1, cull_idle // 5))}",
        "--MappingKernelManager.cull_connected=True",
        # JupyterLab's checkpoints out of the assignment folders (nbgrader's submit listed them as EXTRA).
        "--FileContentsManager.checkpoints_class=closekit.exercises.checkpoints.RootCheckpoints",
    ]


@dataclass(frozen=True)
class Site:
    """Where the hub's pieces live; every field comes from the environment, so a test can run its own hub."""

    prefix: Path  # the Python environment every server runs (readable by all)
    srv: Path  # the course folder, the exchange, the roster, the hub's own state
    course_id: str
    ip: str
    port: int

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] = os.environ) -> Site:
        return cls(
            prefix=Path(environ.get("CLOSEKIT_HUB_PREFIX", "/opt/closekit")),
            srv=Path(environ.get("CLOSEKIT_HUB_SRV", "/srv/closekit")),
            course_id=environ.get("CLOSEKIT_COURSE_ID", "closekit"),
            ip=environ.get("CLOSEKIT_HUB_IP", ""),
            port=int(environ.get("CLOSEKIT_HUB_PORT", "8000")),
        )

    @property
    def course(self) -> Path:
        return self.srv / "course"

    @property
    def exchange(self) -> Path:
        return self.srv / "exchange"

    @property
    def roster(self) -> Path:
        return self.srv / "roster.csv"

    @property
    def state(self) -> Path:
        return self.srv / "hub"

    @property
    def course_link(self) -> str:
        """In an instructor's home, the link to the course folder (the formgrader's root must hold it)."""
        return f"{self.course_id}-course"

    @property
    def instructors(self) -> str:
        return f"formgrade-{self.course_id}"

    @property
    def students(self) -> str:
        return f"nbgrader-{self.course_id}"

    @property
    def student_config(self) -> Path:
        return self.prefix / "etc" / "jupyter-student"


@dataclass(frozen=True)
class Member:
    id: str
    role: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


def read_roster(path: Path) -> list[Member]:
    """The roster's people; one line naming the row and what is allowed when a row is wrong."""
    if not path.is_file():
        raise SystemExit(f"no roster at {path}: write one (columns {', '.join(COLUMNS)}; role student or instructor)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    members = []
    for n, row in enumerate(rows, start=2):
        name, role = (row.get("id") or "").strip(), (row.get("role") or "").strip()
        if not name.replace("-", "").replace("_", "").isalnum() or not name[:1].isalpha() or name != name.lower():
            raise SystemExit(f"{path}:{n}: id {name!r} is not a login name (lower-case letters, digits, - and _)")
        if role not in ROLES:
            raise SystemExit(f"{path}:{n}: role {role!r}; allowed: {', '.join(ROLES)}")
        members.append(Member(name, role, *(row.get(c, "").strip() for c in COLUMNS[2:])))
    return members


def _run(*command: str | Path) -> None:
    subprocess.run([str(c) for c in command], check=True, stdout=subprocess.DEVNULL)


def _group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run("groupadd", name)
        return grp.getgrnam(name).gr_gid


def ensure_account(member: Member, site: Site) -> pwd.struct_passwd:
    """The member's Unix account, with a private home (0700); an instructor joins the instructors' group and
    gets a link to the course folder in their home."""
    instructors = site.instructors
    try:
        account = pwd.getpwnam(member.id)
    except KeyError:
        _run("useradd", "--create-home", "--shell", "/bin/bash", member.id)
        account = pwd.getpwnam(member.id)
    os.chmod(account.pw_dir, 0o700)
    if member.role == "instructor" and member.id not in grp.getgrnam(instructors).gr_mem:
        _run("usermod", "--append", "--groups", instructors, member.id)
    link = Path(account.pw_dir) / site.course_link
    if member.role == "instructor" and not link.is_symlink() and not link.exists():
        link.symlink_to(site.course)
        os.lchown(link, account.pw_uid, account.pw_gid)
    return account


def _share(path: Path, gid: int, dirs: int, files: int) -> None:
    """root:gid ownership and modes over a tree (the course folder is the instructors' together)."""
    for folder, _subdirs, names in os.walk(path):
        os.chown(folder, 0, gid)
        os.chmod(folder, dirs)
        for name in names:
            os.chown(os.path.join(folder, name), 0, gid)
            os.chmod(os.path.join(folder, name), files)


def setup_course(site: Site, gid: int) -> None:
    """The instructors' course folder, copied from the course closekit carries; files already there stay."""
    from closekit import course

    source = course.root()
    site.course.mkdir(parents=True, exist_ok=True)
    for relative in [*course.files(source), *map(Path, course.INSTRUCTOR)]:
        if relative.parts[0] != "exercises":
            continue  # the chapters are the students' copies' business
        target = site.course / relative.relative_to("exercises")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, target)
    _share(site.course, gid, 0o2770, 0o660)
    packaged = source / "exercises" / "solutions"
    if packaged.is_dir() and str(source).startswith(str(site.prefix)):
        _share(packaged, gid, 0o2750, 0o640)  # the wheel's copy of the solutions: instructors only
        os.chmod(packaged.parent, 0o755)


def setup_exchange(site: Site, gid: int) -> None:
    """nbgrader's exchange, the course's folders in it made by root for the instructors' group."""
    site.exchange.mkdir(parents=True, exist_ok=True)
    os.chmod(site.exchange, 0o1777)  # nbgrader insists on 777; the sticky bit keeps names their owners'
    modes = {"": 0o2775, "outbound": 0o2775, "inbound": 0o2773, "feedback": 0o2773}
    for name, mode in modes.items():
        folder = site.exchange / site.course_id / name
        folder.mkdir(exist_ok=True)
        os.chown(folder, 0, gid)
        os.chmod(folder, mode)


NBGRADER_CONFIG = '''"""Written by deploy/closekit_hub.py setup: nbgrader on this hub, for every server it runs."""

import os

from nbgrader.auth import JupyterHubAuthPlugin

c = get_config()  # noqa: F821 (traitlets provides it)
# The course's own settings (solutions folder, release folder, timeouts) for whoever may read them: instructors,
# through the link in their home (the formgrader wants the course folder inside the folder its server serves).
# First, so that what this hub says below wins.
course_config = os.path.expanduser("~/{link}/nbgrader_config.py")
if os.access(course_config, os.R_OK):
    load_subconfig(course_config)  # noqa: F821

c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.groupshared = True  # several instructors share the course folder (group {instructors})
c.Exchange.root = {exchange!r}
# Autograde runs each submission's kernel beside it, from the instructor's server, one at a time: over TCP. The
# servers' own kernels use ipc (jupyterhub_config.py), whose socket paths nbclient would make relative to the
# submission's folder while the kernel looks in its runtime folder: it never answered.
c.KernelManager.transport = "tcp"
# Courses a user is in, and their student id, come from the hub (groups {students} and {instructors}).
c.Authenticator.plugin_class = JupyterHubAuthPlugin
# Fetched assignments land in the student's copy of the course, where the chapters and the start page link them.
c.Exchange.assignment_dir = os.path.expanduser("~/{copy}/exercises/student")
'''


def write_configs(site: Site) -> None:
    etc = site.prefix / "etc" / "jupyter"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "nbgrader_config.py").write_text(
        NBGRADER_CONFIG.format(
            course_id=site.course_id,
            instructors=site.instructors,
            students=site.students,
            exchange=str(site.exchange),
            copy=COURSE_COPY,
            link=site.course_link,
        )
    )
    server = site.student_config / "jupyter_server_config.d"
    server.mkdir(parents=True, exist_ok=True)
    off = {name: False for name in STUDENT_SERVER_EXTENSIONS_OFF}
    (server / "closekit-student.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": off}}, indent=1))
    lab = site.student_config / "labconfig"
    lab.mkdir(parents=True, exist_ok=True)
    plugins = {name: True for name in STUDENT_LAB_PLUGINS_OFF}
    (lab / "page_config.json").write_text(json.dumps({"disabledExtensions": plugins}, indent=1))


NO_HUB = "nbgrader.auth.NoAuthPlugin"


def import_roster(site: Site, members: list[Member]) -> None:
    """The students into the gradebook, as `nbgrader db student import` documents."""
    students = site.course / "students.csv"
    with students.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "first_name", "last_name", "email"])
        for m in members:
            if m.role == "student":
                writer.writerow([m.id, m.first_name, m.last_name, m.email])
    nbgrader = site.prefix / "bin" / "nbgrader"
    # nbgrader runs `alembic` from PATH to make the gradebook
    env = {**os.environ, "CLOSEKIT_EXCHANGE": str(site.exchange), "PATH": f"{site.prefix / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(
        # the hub's groups come from the roster (jupyterhub_config.py): no hub to ask while setting up
        [
            str(nbgrader),
            "db",
            "student",
            "import",
            str(students),
            "--Authenticator.plugin_class=nbgrader.auth.NoAuthPlugin",
        ],
        cwd=site.course,
        env=env,
        capture_output=True,
        text=True,
        umask=0o007,
    )
    if done.returncode:
        raise SystemExit(f"nbgrader db student import {students} failed:\n{done.stderr[-2000:]}")
    _share(site.course, grp.getgrnam(site.instructors).gr_gid, 0o2770, 0o660)


def setup(site: Site) -> list[Member]:
    if os.geteuid() != 0:
        raise SystemExit("the hub's setup makes accounts and folders: run it as root")
    members = read_roster(site.roster)
    gid = _group(site.instructors)
    for member in members:
        ensure_account(member, site)
    os.chmod(site.srv, 0o755)
    site.state.mkdir(mode=0o700, exist_ok=True)
    setup_course(site, gid)
    setup_exchange(site, gid)
    write_configs(site)
    import_roster(site, members)
    return members


def copy_course(spawner) -> None:
    """Before a server starts: the course into the student's home, as the student (never as root, so no link
    a student planted in their home can point root's writes elsewhere); files already there stay theirs."""
    account = pwd.getpwnam(spawner.user.name)
    python = Site.from_env().prefix / "bin" / "python"
    subprocess.run(
        # -I: nothing from the student's home (their ~/closekit is a folder of that name) is imported
        [str(python), "-I", "-m", "closekit.course", "copy", os.path.join(account.pw_dir, COURSE_COPY), "--class"],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        cwd=account.pw_dir,
        env={"HOME": account.pw_dir, "PATH": "/usr/bin:/bin"},
        umask=0o077,
        check=True,
        capture_output=True,
    )


def main(argv: list[str]) -> int:
    site = Site.from_env()
    if argv[1:] == ["configs"]:  # the environment's part only (deploy/install.sh, the Z2JH image)
        write_configs(site)
        return 0
    if argv[1:] != ["setup"]:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    members = setup(site)
    counts = {role: sum(m.role == role for m in members) for role in ROLES}
    print(f"closekit hub: {counts['student']} students, {counts['instructor']} instructors, course in {site.course}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
