"""A class on the hub of deploy/, for real: JupyterHub with its proxy, three real Unix accounts (an instructor and
two students) logging in through the login form, their servers spawned as them, and nbgrader's whole loop
through the hub's own APIs (Formgrader's and the Assignment List's, as their buttons call them):
release -> fetch -> answer -> submit -> collect -> autograde -> feedback. Then, as a student, what they must
not reach.

The hub is started the documented way, `bash course.sh hub` (on this test's own folder, port and course id),
which puts this checkout's closekit into the hub's environment (`$CLOSEKIT_HUB_PREFIX`, /opt/closekit) that
`bash course.sh test` set up. Needs root (it makes accounts and the hub runs servers as them). Everything it
makes (accounts, homes, the hub's folder, processes) is removed at the end, and leftovers of an interrupted run
at the start.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "deploy"))
from hubclient import Person  # noqa: E402
from localhub import LocalHub  # noqa: E402

PREFIX = Path(os.environ.get("CLOSEKIT_HUB_PREFIX", "/opt/closekit"))
COURSE = "ckhubtest"  # its own course id, so its groups never touch a real class's
INSTRUCTOR, ALICE, BOB = "ckhub-teacher", "ckhub-alice", "ckhub-bob"
ASSIGNMENT = "ex01-close"
FETCHED = f"closekit/exercises/student/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
CULL_IDLE = 8  # seconds: a kernel left idle is culled within CULL_IDLE + 1 (the interval: CULL_IDLE // 5, at least 1)

pytestmark = [
    pytest.mark.hub,
    pytest.mark.skipif(sys.platform != "linux", reason="JupyterHub's local spawner and PAM: Linux"),
]


def test_the_readmes_hub_steps_are_the_ones_this_test_takes():
    """README.md's steps for a hub, in order: a roster from the example, `bash course.sh hub`, a password per
    account. LocalHub takes the same ones (its roster, the same command, chpasswd); the example roster reads."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running a class on JupyterHub") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    steps = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert steps == [
        "mkdir -p /srv/closekit && cp deploy/roster.example.csv /srv/closekit/roster.csv",
        "bash course.sh hub",
        "passwd student01",
    ]
    import closekit_hub

    people = closekit_hub.read_roster(REPO / "deploy" / "roster.example.csv")
    assert {m.role for m in people} == {"student", "instructor"} and "student01" in {m.id for m in people}


@pytest.mark.parametrize(
    ("row", "says"),
    [("s1,teacher,,,", "role 'teacher'; allowed: student, instructor"),
     ("Bob,student,,,", "is not a login name"), ("../x,student,,,", "is not a login name")],
)  # fmt: skip
def test_a_bad_roster_row_is_refused_in_one_line_naming_it(tmp_path, row, says):
    import closekit_hub

    roster = tmp_path / "roster.csv"
    roster.write_text(f"id,role,first_name,last_name,email\n{row}\n")
    with pytest.raises(SystemExit) as refused:
        closekit_hub.read_roster(roster)
    assert str(refused.value).startswith(f"{roster}:2: ") and says in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.fixture(scope="module")
def hub():
    if os.geteuid() != 0:
        pytest.skip("the hub makes Unix accounts and starts servers as them: run as root (CI does)")
    if not (PREFIX / "bin" / "jupyterhub").exists() or shutil.which("configurable-http-proxy") is None:
        pytest.skip(f"no hub environment at {PREFIX} or no configurable-http-proxy: bash course.sh test installs them")
    roster = [(INSTRUCTOR, "instructor"), (ALICE, "student"), (BOB, "student")]
    with LocalHub(roster, COURSE, PREFIX, cull_idle=CULL_IDLE, start_timeout=180) as hub:
        yield hub


def _as(hub: LocalHub, name: str, code: str, notebook: str = "closekit/notebooks/01-close.ipynb") -> str:
    """Run `code` in a kernel of `name`'s own server, as JupyterLab does; what it printed."""
    kernel = hub.person(name).kernel(notebook)
    try:
        reply = kernel.run(code)
    finally:
        kernel.close()
    assert reply.error is None, f"{name}: {reply.error}\n{reply.text}"
    return reply.text


def test_a_student_logs_in_to_the_course_start_page_in_a_private_copy(hub):
    alice = hub.person(ALICE)
    landing = alice.http.get(f"{hub.url}/user/{ALICE}/", allow_redirects=False, timeout=60)
    assert landing.headers["Location"].rstrip("?").endswith("/lab/tree/closekit/notebooks/00-start-here.ipynb")
    assert alice.get("api/contents/closekit/notebooks/00-start-here.ipynb").status_code == 200
    assert alice.get("api/contents/closekit/notebooks/zh/01-close.ipynb").status_code == 200
    home = Path(pwd.getpwnam(ALICE).pw_dir)
    assert home.stat().st_mode & 0o777 == 0o700
    copy = home / "closekit"
    assert copy.stat().st_uid == pwd.getpwnam(ALICE).pw_uid  # copied as the student, not as root
    assert not (copy / "exercises" / "solutions").exists()  # a class's copy: assignments come through nbgrader


def test_a_students_experiments_run_in_mode_netns_with_kernels_over_ipc(hub, tun_open_to_users):
    out = _as(hub, ALICE, (
        "import os, closekit.doctor\n"
        "from ipykernel.kernelapp import IPKernelApp\n"
        "text, status = closekit.doctor.report()\n"
        "print(os.getuid(), status, IPKernelApp.instance().transport)\n"
        "print(text)\n"
    ))  # fmt: skip
    uid, status, transport = out.splitlines()[0].split()
    assert int(uid) == pwd.getpwnam(ALICE).pw_uid and transport == "ipc"
    assert status == "0" and "experiments will run in mode: netns" in out, out
    trace = _as(hub, ALICE, "import closekit\nt = closekit.run('close-unread')\nprint(t.mode, t.first('RST').src)")
    assert trace.split() == ["netns", "server"]


def test_formgrader_and_create_assignment_are_the_instructors_only(hub):
    student, instructor = hub.person(BOB), hub.person(INSTRUCTOR)
    assert student.get("formgrader").status_code == 404
    assert instructor.get("formgrader").status_code == 200

    def disabled(person: Person) -> set[str]:
        page = person.get("lab").text
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
        return set(config.get("disabledExtensions", []))

    off = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"}
    assert off <= disabled(student)
    assert not off & disabled(instructor)


@pytest.fixture(scope="module")
def graded(hub):
    """The whole loop, as the instructor's and the students' buttons do it; what each step answered."""
    teacher, alice, bob = hub.person(INSTRUCTOR), hub.person(ALICE), hub.person(BOB)
    steps = {"assign": teacher.formgrader(f"assignment/{ASSIGNMENT}/assign")}
    steps["release"] = teacher.formgrader(f"assignment/{ASSIGNMENT}/release")
    for student in (alice, bob):
        steps[f"fetch-{student.name}"] = student.assignments("fetch", COURSE, ASSIGNMENT)
    notebook = alice.notebook(FETCHED)  # alice answers q1 the way a click does: the answer cell, saved
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "q1-answer":
            cell["source"] = 'q1.answer("B")'
    alice.save(FETCHED, notebook)
    alice.save(FETCHED, notebook)  # twice: a checkpoint exists, as after any JupyterLab session
    for student in (alice, bob):
        steps[f"submit-{student.name}"] = student.assignments("submit", COURSE, ASSIGNMENT)
    steps["collect"] = teacher.formgrader(f"assignment/{ASSIGNMENT}/collect")
    for student in (ALICE, BOB):
        steps[f"autograde-{student}"] = teacher.formgrader(f"submission/{ASSIGNMENT}/{student}/autograde")
    steps["feedback"] = teacher.formgrader(f"assignment/{ASSIGNMENT}/generate_feedback")
    steps["release_feedback"] = teacher.formgrader(f"assignment/{ASSIGNMENT}/release_feedback")
    steps["fetch_feedback"] = alice.assignments("fetch_feedback", COURSE, ASSIGNMENT)
    return steps


def test_release_fetch_submit_collect_autograde_feedback_through_the_hub(hub, graded):
    for step, answer in graded.items():
        assert answer.get("success", True) is True, f"{step}: {json.dumps(answer)[:1500]}"
    fetched = [a for a in graded[f"fetch-{BOB}"]["value"] if a["status"] == "fetched"]
    assert [a["path"] for a in fetched] == [FETCHED.rsplit("/", 1)[0]]
    teacher = hub.person(INSTRUCTOR)
    submissions = teacher.get(f"formgrader/api/submissions/{ASSIGNMENT}").json()
    scores = {s["student"]: (s["score"], s["max_score"]) for s in submissions}
    assert scores == {ALICE: (1.0, 5.0), BOB: (0.0, 5.0)}  # student ids are the hub's login names
    roster = {s["id"] for s in teacher.get("formgrader/api/students").json()}
    assert roster == {ALICE, BOB}


def test_the_feedback_reaches_the_student_with_its_chapter_links_on_the_hub(hub, graded):
    alice = hub.person(ALICE)
    folder = FETCHED.rsplit("/", 1)[0] + "/feedback"
    (stamp,) = [c["name"] for c in alice.get(f"api/contents/{folder}").json()["content"]]
    page = alice.get(f"api/contents/{folder}/{stamp}/{ASSIGNMENT}.html").json()["content"]
    assert "Score: 1.0 / 5.0" in page
    # "See chapter 5" opens the chapter in the reader's own copy, whoever they are
    assert 'href="/hub/user-redirect/lab/tree/closekit/notebooks/05-kernel-close-path.ipynb"' in page
    url = f"{hub.url}/hub/user-redirect/lab/tree/closekit/notebooks/05-kernel-close-path.ipynb"
    for _ in range(5):  # the hub's redirects, until they leave the hub for a server
        url = alice.http.get(url, allow_redirects=False, timeout=60).headers["Location"]
        url = url if url.startswith("http") else hub.url + url
        if "/hub/" not in url:
            break
    assert url.rstrip("?").endswith(f"/user/{ALICE}/lab/tree/closekit/notebooks/05-kernel-close-path.ipynb")
    assert alice.get("api/contents/closekit/notebooks/05-kernel-close-path.ipynb").status_code == 200


def test_a_submission_holds_no_checkpoint_copy(hub, graded):
    submitted = hub.srv / "course" / "submitted" / ALICE / ASSIGNMENT
    assert (submitted / f"{ASSIGNMENT}.ipynb").is_file()
    assert not list(submitted.rglob("*checkpoint*"))
    home = Path(pwd.getpwnam(ALICE).pw_dir)
    assert not (home / FETCHED).parent.joinpath(".ipynb_checkpoints").exists()


def test_a_student_cannot_read_others_work_the_solutions_or_the_gradebook(hub, graded):
    inbound = hub.srv / "exchange" / COURSE / "inbound"
    (mine,) = [p.name for p in inbound.iterdir() if p.name.startswith(f"{ALICE}+")]
    assert re.fullmatch(rf"{ALICE}\+{ASSIGNMENT}\+.+ UTC\+[\w-]{{8,}}", mine)  # a random part nobody can guess
    site = next((PREFIX / "lib").glob("python3*/site-packages"))
    solutions = PREFIX / "share" / "closekit" / "exercises" / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    private = {
        "the exchange's inbound (who handed in what)": inbound,
        "the exchange's feedback": hub.srv / "exchange" / COURSE / "feedback",
        "alice's home": Path(pwd.getpwnam(ALICE).pw_dir),
        "alice's fetched notebook": Path(pwd.getpwnam(ALICE).pw_dir) / FETCHED,
        "the collected submissions": hub.srv / "course" / "submitted" / ALICE / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "the instructor's solutions": hub.srv / "course" / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "the solutions the package carries": solutions,
        "the gradebook": hub.srv / "course" / "gradebook.db",
    }
    assert site.is_dir() and solutions.is_file()
    probe = (
        "import os\n"
        f"for what, path in {json.dumps({k: str(v) for k, v in private.items()})}.items():\n"
        "    try:\n"
        "        os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(1)\n"
        "        print('READ', what)\n"
        "    except PermissionError:\n"
        "        print('refused', what)\n"
    )
    out = _as(hub, BOB, probe)
    assert "READ" not in out, out
    assert out.count("refused") == len(private)


def test_an_idle_kernel_is_culled(hub):
    bob = hub.person(BOB)
    kernel = bob.kernel("closekit/notebooks/02-shutdown.ipynb")
    kernel.run("1")
    deadline = time.monotonic() + 4 * CULL_IDLE
    while time.monotonic() < deadline:
        if kernel.id not in {k["id"] for k in bob.get("api/kernels").json()}:
            return
        time.sleep(1)
    pytest.fail(f"the kernel left idle was still running after {4 * CULL_IDLE} s")
