"""A class's hub started for a while and removed again: what tests/test_hub.py and benchmarks/classroom.py run.

`LocalHub(roster)` starts the hub the documented way, `bash course.sh hub`, on a folder, port and course id of
its own, gives the roster's accounts passwords once the setup has made them, and answers `person(name)`: that
person logged in, with a running server. Leaving it stops the hub (which stops the servers and the proxy it
started), ends every process left to the roster's accounts, removes the accounts with their homes, the course's
Unix group and the folder. Accounts with the same names left by an interrupted run are removed first. Root only.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from hubclient import Person

REPO = Path(__file__).resolve().parent.parent


def free_ports() -> int:
    """A port p with p+1 and p+2 free too (the hub's API and the proxy's)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            for p in (port + 1, port + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no three free ports in a row")


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def pids_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                pass
    return pids


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): with the pid, who it is, even after a reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = _started(child)
        if started is not None:
            found[child] = started
            todo.extend(children.get(child, []))
    return found


def kill_uid(uid: int) -> None:
    """End every process of an account the hub ran (its server, kernels, the lab's helpers), by pid."""
    for _ in range(5):
        pids = pids_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


class LocalHub:
    """roster: (name, role) pairs, role student or instructor."""

    def __init__(
        self,
        roster: list[tuple[str, str]],
        course_id: str,
        prefix: Path,
        cull_idle: int = 1200,
        start_timeout: float = 300,
    ) -> None:
        self.roster, self.course_id, self.prefix = roster, course_id, prefix
        self.cull_idle, self.start_timeout = cull_idle, start_timeout
        self.passwords = {name: secrets.token_urlsafe(12) for name, _ in roster}
        self.people: dict[str, Person] = {}
        self.process: subprocess.Popen | None = None
        self.srv = Path()
        self.url = ""

    @property
    def log(self) -> Path:
        return self.srv / "hub.log"

    def log_tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if " 200 GET " not in line]
        return "\n".join(lines)[-4000:]

    def __enter__(self) -> LocalHub:
        self._remove_accounts()
        self.srv = Path(tempfile.mkdtemp(prefix="closekit-hub-"))
        os.chmod(self.srv, 0o755)
        rows = ["id,role,first_name,last_name,email", *(f"{name},{role},,," for name, role in self.roster)]
        (self.srv / "roster.csv").write_text("\n".join(rows) + "\n")
        port = free_ports()
        env = {
            **os.environ,
            "CLOSEKIT_HUB_PREFIX": str(self.prefix),
            "CLOSEKIT_HUB_SRV": str(self.srv),
            "CLOSEKIT_COURSE_ID": self.course_id,
            "CLOSEKIT_HUB_IP": "127.0.0.1",
            "CLOSEKIT_HUB_PORT": str(port),
            "CLOSEKIT_HUB_CULL_IDLE": str(self.cull_idle),
            "PATH": f"{self.prefix / 'bin'}:{os.environ['PATH']}",
        }
        try:
            with self.log.open("w") as out:  # the documented command, on a folder, port and course of its own
                command = ["bash", str(REPO / "course.sh"), "hub"]
                self.process = subprocess.Popen(
                    command, cwd=self.srv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            deadline = time.monotonic() + self.start_timeout
            while not all(exists(name) for name, _ in self.roster):  # `passwd NAME` once setup made them
                self._check(deadline, "no accounts yet")
            lines = "".join(f"{n}:{p}\n" for n, p in self.passwords.items())
            subprocess.run(["chpasswd"], input=lines, text=True, check=True)
            self.url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if requests.get(f"{self.url}/hub/api", timeout=5).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                self._check(deadline, "the hub does not answer yet")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check(self, deadline: float, what: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"bash course.sh hub exited:\n{self.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} after {self.start_timeout:.0f} s:\n{self.log_tail()}")
        time.sleep(0.3)

    def person(self, name: str, timeout: float = 120) -> Person:
        """`name` logged in through the login form, their server running."""
        if name not in self.people:
            person = Person(self.url, name, self.passwords[name])
            try:
                person.login()
                person.wait_ready(timeout=timeout)
            except Exception as e:
                raise RuntimeError(f"{name} could not log in to a running server: {e}\n{self.log_tail()}") from e
            self.people[name] = person
        return self.people[name]

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            # what the hub started (proxy, services, servers), in case the hub is gone before they are: a
            # service started where SIGINT is ignored outlives the hub's SIGINT-first stop
            started = descendants(self.process.pid)
            self.process.send_signal(signal.SIGTERM)  # the hub stops the servers and the proxy it started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            for pid, when in started.items():
                if _started(pid) == when:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.process = None
        self._remove_accounts()
        if self.srv != Path():
            shutil.rmtree(self.srv, ignore_errors=True)

    def _remove_accounts(self) -> None:
        for name, _ in self.roster:
            try:
                uid = pwd.getpwnam(name).pw_uid
            except KeyError:
                continue
            kill_uid(uid)
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        subprocess.run(["groupdel", f"formgrade-{self.course_id}"], capture_output=True)
