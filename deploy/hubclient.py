"""A person at a browser, as code: log in to the hub, reach one's server, run a notebook's cells, use nbgrader.

Everything goes through the public APIs the browser uses: the hub's login form and REST API, the server's
contents, sessions and kernel-channel (websocket) APIs, and nbgrader's Assignment List and Formgrader
handlers. tests/test_hub.py and benchmarks/classroom.py drive a class with it. Needs `requests` and
`websocket-client` (both come with JupyterHub and JupyterLab).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
import websocket


class HubError(RuntimeError):
    """The hub or a server answered something other than what a working class gets."""


@dataclass
class Reply:
    """What running one cell gave: its outputs as text, the error if any, and how long it took."""

    text: str
    error: str | None
    seconds: float
    outputs: list[dict] = field(default_factory=list)


class Person:
    """One account logged in to the hub (a student or an instructor), with a token for their own server."""

    def __init__(self, hub: str, name: str, password: str) -> None:
        self.hub = hub.rstrip("/")
        self.name = name
        self.password = password
        self.http = requests.Session()
        self.token = ""

    # ---- the hub -----------------------------------------------------------------------------------------
    def login(self) -> requests.Response:
        """The login form, as a browser posts it; the hub then starts this person's server."""
        self.http.get(f"{self.hub}/hub/login", timeout=60)
        xsrf = self.http.cookies.get("_xsrf", "")
        reply = self.http.post(
            f"{self.hub}/hub/login?next=",
            data={"username": self.name, "password": self.password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=120,
        )
        if reply.status_code != 302:
            raise HubError(f"{self.name}: login answered {reply.status_code}, not a redirect")
        self.http.get(f"{self.hub}/hub/spawn", timeout=300, allow_redirects=False)
        made = self.http.post(
            f"{self.hub}/hub/api/users/{self.name}/tokens",
            json={"note": "closekit hubclient", "expires_in": 7200},
            headers={"X-XSRFToken": self.http.cookies.get("_xsrf", "")},
            timeout=60,
        )
        if made.status_code != 201:
            raise HubError(f"{self.name}: a token was refused ({made.status_code}: {made.text[:200]})")
        self.token = made.json()["token"]
        self.http.headers["Authorization"] = f"token {self.token}"
        return reply

    def wait_ready(self, timeout: float = 300) -> float:
        """Block until this person's server answers; returns when (time.monotonic()) it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            user = self.http.get(f"{self.hub}/hub/api/users/{self.name}", timeout=60).json()
            server = user.get("servers", {}).get("")
            if server and server.get("ready"):
                return time.monotonic()
            if not user.get("pending") and not server:
                self.http.post(f"{self.hub}/hub/api/users/{self.name}/server", timeout=60)
            time.sleep(0.25)
        raise HubError(f"{self.name}: the server was not ready after {timeout:.0f} s")

    # ---- their server ------------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.hub}/user/{self.name}/{path.lstrip('/')}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url(path), timeout=kw.pop("timeout", 120), **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.url(path), timeout=kw.pop("timeout", 600), **kw)

    def notebook(self, path: str) -> dict:
        reply = self.get(f"api/contents/{path}")
        if reply.status_code != 200:
            raise HubError(f"{self.name}: {path}: {reply.status_code}")
        return reply.json()["content"]

    def save(self, path: str, notebook: dict) -> None:
        reply = self.http.put(
            self.url(f"api/contents/{path}"), json={"type": "notebook", "content": notebook}, timeout=120
        )
        if reply.status_code not in (200, 201):
            raise HubError(f"{self.name}: saving {path}: {reply.status_code} {reply.text[:200]}")

    def kernel(self, path: str) -> Kernel:
        """A kernel for the notebook at `path`, as JupyterLab opens one (a session; the kernel starts in the
        notebook's folder)."""
        reply = self.post(
            "api/sessions", json={"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook",
                                  "kernel": {"name": "python3"}},
        )  # fmt: skip
        if reply.status_code != 201:
            raise HubError(f"{self.name}: no kernel for {path}: {reply.status_code} {reply.text[:200]}")
        session = reply.json()
        return Kernel(self, session["kernel"]["id"], session["id"])

    # ---- nbgrader, as its JupyterLab panels call it ----------------------------------------------------------
    def assignments(self, action: str, course: str, assignment: str) -> Any:
        """Assignment List: fetch, submit or fetch_feedback (a student's buttons)."""
        reply = self.post(f"assignments/{action}", data={"course_id": course, "assignment_id": assignment})
        if reply.status_code != 200:
            raise HubError(f"{self.name}: {action} {assignment}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def formgrader(self, path: str) -> Any:
        """Formgrader's API (an instructor's buttons): e.g. assignment/ex01-close/release."""
        reply = self.post(f"formgrader/api/{path}", headers={"X-XSRFToken": self._server_xsrf()})
        if reply.status_code != 200:
            raise HubError(f"{self.name}: formgrader {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def _server_xsrf(self) -> str:
        self.get("api/status")
        return self.http.cookies.get("_xsrf", path=f"/user/{self.name}/") or self.http.cookies.get("_xsrf", "")

    def stop(self) -> None:
        self.http.delete(f"{self.hub}/hub/api/users/{self.name}/server", timeout=120)


class Kernel:
    """One kernel of a person's server, driven over its websocket as JupyterLab does."""

    def __init__(self, person: Person, kernel_id: str, session_id: str) -> None:
        self.person = person
        self.id = kernel_id
        self.session_id = session_id
        url = person.url(f"api/kernels/{kernel_id}/channels").replace("http", "ws", 1)
        self.ws = websocket.create_connection(url, header=[f"Authorization: token {person.token}"], timeout=600)

    def run(self, code: str, timeout: float = 300) -> Reply:
        msg_id = uuid.uuid4().hex
        message = {
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.person.name,
                       "session": self.session_id, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }  # fmt: skip
        start = time.monotonic()
        self.ws.send(json.dumps(message))
        outputs: list[dict] = []
        error = None
        while True:
            if time.monotonic() - start > timeout:
                raise HubError(f"{self.person.name}: a cell ran longer than {timeout:.0f} s")
            reply = json.loads(self.ws.recv())
            if reply.get("parent_header", {}).get("msg_id") != msg_id or reply.get("channel") != "iopub":
                continue
            kind, content = reply["msg_type"], reply["content"]
            if kind in ("stream", "execute_result", "display_data"):
                outputs.append(content)
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        text = "".join(
            o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs
        )  # what a reader sees
        return Reply(text, error, time.monotonic() - start, outputs)

    def close(self) -> None:
        self.ws.close()
        self.person.http.delete(self.person.url(f"api/sessions/{self.session_id}"), timeout=120)
