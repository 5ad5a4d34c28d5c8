"""The claims ledger: every check can fail, reads only what its claim says it needs, and is pinned.

- Each claim's check holds (or, where Linux differs from the book, fails) on its own scenario, as
  pinned in EXPECTED; if the kernel or closekit changes how a teardown behaves, a verdict flips here.
- Each check fails on its claim's counter-scenario: a check that cannot fail is caught.
- Each check fails on the look-alikes of its claim (tests/lookalikes.py): experiments whose outcome
  resembles the claim's while the kernel took another path, so a check that judges the outcome
  rather than the mechanism (which abort counter moved, which process read, which call blocked,
  which connection) is caught.
- Each "differs" check holds on its own trace edited to show what the book describes: a check that
  can never hold is caught too.
- Stripped of what a fallback mode cannot see, a trace gives each claim either the same verdict or
  "cannot be judged here", never a different one: no check leans on data it did not declare.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lookalikes import FOOLED, LOOKALIKES

import closekit
from closekit import claims
from closekit import query as q
from closekit.errors import ExperimentError, NotHereError, SyncTimeoutError
from closekit.sandbox.client import Lab
from closekit.trace import Segment, StateChange, Syscall, Trace

ROOT = Path(__file__).resolve().parents[1]

# What each claim gives on Linux 6.18 (mode netns): "holds", or "differs" where the book's words do
# not describe Linux (the claim then says what Linux does instead).
DIFFERS = {
    "active-closer-time-wait",
    "shut-rd-discards-later-data",
    "shut-rd-discards-queued-data",
    "linger-timeout-rst",
    "old-duplicate-delivered",
    "linger-timeout-ewouldblock",
    "linger-nonblocking-ewouldblock",
    "shutdown-lingers",
    "table-close-default-fin",
    "table-linger-positive",
}
EXPECTED = {c.id: "differs" if c.id in DIFFERS else "holds" for c in claims.CLAIMS}
IDS = [c.id for c in claims.CLAIMS]


@pytest.fixture(scope="module")
def verdicts() -> dict[str, claims.Verdict]:
    return {v.claim.id: v for v in claims.verify()}


# ---- the ledger as data ---------------------------------------------------------------------------
def test_claim_ids_are_unique():
    assert len(IDS) == len(set(IDS))


def test_every_section_of_the_document_has_claims():
    sections = {c.section for c in claims.CLAIMS}
    assert {"1", "2", "3.1", "3.2.1", "3.2.2", "3.2.3", "4.1", "4.2", "5", "6"} <= sections


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=IDS)
def test_a_claim_names_library_scenarios_what_it_needs_and_its_chapter(claim):
    library = closekit.scenarios()
    assert claim.scenario in library and claim.counter in library and claim.counter != claim.scenario
    assert claim.needs and claim.needs <= set(claims.NEEDS)
    assert (ROOT / "notebooks" / claim.chapter).is_file()


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=IDS)
def test_every_claim_is_judged_in_a_cell_of_its_chapter(claim):
    cells = json.loads((ROOT / "notebooks" / claim.chapter).read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert f'"{claim.id}"' in code, f"{claim.id} is not judged in notebooks/{claim.chapter}"


def test_a_claim_that_differs_on_linux_explains_what_linux_does():
    for c in claims.CLAIMS:
        if c.id in DIFFERS:
            assert c.linux_text and "(" in c.linux_text, f"{c.id}: cite the kernel function"


# ---- verdicts on the live kernel -----------------------------------------------------------------
@pytest.mark.parametrize("claim_id", IDS)
def test_pinned_verdict(verdicts, claim_id):
    v = verdicts[claim_id]
    if not v.judged:
        pytest.skip(f"cannot be judged in mode {v.mode}")
    assert v.status == EXPECTED[claim_id], f"{claim_id}: {v.evidence}"


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=IDS)
def test_every_check_fails_on_its_counter_scenario(live, claim):
    held, evidence = claim.check(live(claim.counter))
    assert held is False, f"{claim.id} also holds on {claim.counter}: {evidence}"
    assert evidence.strip()


_lookalike_traces: dict[str, Trace] = {}


def _lookalike(name: str) -> Trace:
    """One live run of a look-alike, shared by the claims it must defeat."""
    if name not in _lookalike_traces:
        try:
            _lookalike_traces[name] = closekit.run(LOOKALIKES[name][1])
        except NotHereError as e:
            pytest.skip(f"{name} needs what this machine's mode lacks: {e}")
    return _lookalike_traces[name]


@pytest.mark.live
@pytest.mark.parametrize(
    ("name", "claim_id"),
    [(name, cid) for name, ids in FOOLED.items() for cid in ids],
    ids=[f"{LOOKALIKES[name][0]}:{name}:{cid}" for name, ids in FOOLED.items() for cid in ids],
)
def test_a_check_is_not_fooled_by_a_look_alike(name, claim_id):
    claim = claims.get(claim_id)
    held, evidence = claim.check(_lookalike(name))
    assert held is False, f"{claim_id} holds on the look-alike {name}: {evidence}"
    assert evidence.strip()


def test_every_look_alike_kind_of_the_issue_has_a_look_alike():
    kinds = {kind for kind, _ in LOOKALIKES.values()}
    assert {"reader", "connection", "abort counter", "RST cause", "blocked call", "stand-in"} <= kinds
    assert set(FOOLED) == set(LOOKALIKES)
    assert {c for ids in FOOLED.values() for c in ids} <= set(IDS)


def test_the_first_fin_s_sender_ends_in_time_wait_when_no_rst_ends_the_connection(live):
    held, evidence = claims.get("active-closer-time-wait").check(live("time-wait"))
    assert held, evidence


def test_every_verdict_has_evidence_from_the_trace(verdicts):
    for v in verdicts.values():
        assert v.judged and isinstance(v.holds, bool), v.line()
        assert v.evidence.strip() and "was not made" not in v.evidence, v.line()


def _untimed(evidence: str) -> str:
    return re.sub(r"\d+\.\d+ m?s\b", "T", evidence)


@pytest.mark.live
def test_evidence_is_the_same_on_another_run_but_for_durations(verdicts):
    """`verdicts` ran the ledger in several labs at once; these run one by one, in the default lab."""
    again = {v.claim.id: v for v in claims.verify(claims.by_section("4.1"), run=closekit.run)}
    for cid, v in again.items():
        assert _untimed(v.evidence) == _untimed(verdicts[cid].evidence)
        assert v.status == verdicts[cid].status


def _helpers() -> set[int]:
    """The pids of this process's children (the labs' helpers among them)."""
    return {int(pid) for task in os.listdir("/proc/self/task")
            for pid in open(f"/proc/self/task/{task}/children").read().split()}  # fmt: skip


@pytest.mark.live
def test_the_ledger_runs_in_more_labs_at_once_and_closes_the_ones_it_opened(monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: the ledger runs its scenarios one by one, in the default lab")
    closekit.run("close-default")  # the default lab, running before and after
    before = _helpers()
    used = set()
    run = Lab.run

    def noted(lab, scenario):
        used.add(id(lab))
        return run(lab, scenario)

    monkeypatch.setattr(Lab, "run", noted)
    ledger = [c for c in claims.CLAIMS if c.scenario in claims.SLOW_SCENARIOS]
    verdicts = claims.verify(ledger)
    assert len(used) == min(claims.AT_ONCE, len(claims.SLOW_SCENARIOS))
    assert [v.status for v in verdicts] == [EXPECTED[c.id] for c in ledger]
    assert _helpers() == before


_LABS_USED = """
import closekit
from closekit import claims
from closekit.sandbox.client import Lab

used = set()
run = Lab.run


def noted(lab, scenario):
    used.add(id(lab))
    return run(lab, scenario)


Lab.run = noted
verdicts = claims.verify(claims.CLAIMS[:12])
print(len(used), sum(not v.recorded for v in verdicts))
"""


@pytest.mark.live
def test_in_a_host_mode_the_ledger_runs_one_experiment_at_a_time():
    """There the experiments share the machine's loopback and its ports with every other program."""
    env = {**os.environ, "CLOSEKIT_SANDBOX": "host-nocapture", "CLOSEKIT_LANG": "en"}
    out = subprocess.run([sys.executable, "-c", _LABS_USED], capture_output=True, text=True, env=env, timeout=300)
    if out.returncode and "not allowed" in out.stderr:
        pytest.skip(f"this machine cannot run mode host-nocapture: {out.stderr.strip().splitlines()[-1]}")
    labs, live = out.stdout.split()
    assert (labs, int(live) >= 6) == ("1", True), out.stderr


def test_the_slow_scenarios_the_ledger_starts_first_are_ledger_scenarios():
    assert set(claims.SLOW_SCENARIOS) <= {c.scenario for c in claims.CLAIMS}


def test_every_ledger_scenario_that_lasts_a_second_is_started_first(live):
    lasting = {c.scenario for c in claims.CLAIMS if live(c.scenario).events[-1].t > 0.5}
    odd = lasting ^ set(claims.SLOW_SCENARIOS)  # shown timed: a run that lasted unlike its kind is the news
    assert not odd, "\n\n".join(live(name).transcript() for name in sorted(odd))


def test_durations_are_verdicts(verdicts):
    assert "after blocking 1." in verdicts["linger-timeout-ewouldblock"].evidence  # the linger time, not at once
    assert "once the ACK of its FIN had arrived, before anything else came from the server: yes" in (
        verdicts["return-linger-after-ack"].evidence
    )
    assert (
        "the ACK of its FIN came back only after it had returned: yes"
        in verdicts["return-default-before-read"].evidence
    )
    assert "within a tenth of the linger time" in verdicts["exit-lingers-in-background"].evidence


# ---- what a mode cannot see ----------------------------------------------------------------------
def _as_seen_in(trace: Trace, mode: str) -> Trace:
    """The trace with only what `mode` observes: no counters in host, and no segments either in
    host-nocapture."""
    events = trace.events if mode != "host-nocapture" else tuple(e for e in trace.events if not isinstance(e, Segment))
    return dataclasses.replace(trace, mode=mode, counters={}, events=events)


@pytest.mark.parametrize("mode", ["host", "host-nocapture"])
def test_a_fallback_mode_gives_the_same_verdict_or_none(verdicts, live, mode):
    for claim in claims.CLAIMS:
        full = verdicts[claim.id]
        if claim.needs & {claims.WIRE}:
            continue  # such a scenario never runs in a fallback mode: its recording is judged instead
        seen = claims.judge(claim, _as_seen_in(live(claim.scenario), mode))
        if seen.judged:
            assert seen.status == full.status, f"{claim.id} in mode {mode}: {seen.evidence}"
        else:
            assert seen.outcome().startswith(f"cannot be judged here (mode {mode}, without ")
            assert "does not hold" not in seen.line()


# Each claim's scenario run in a fallback mode for real (not a trace stripped of what the mode lacks):
# loopback dates states differently, and a check must not read that as the kernel's doing.
_VERIFY_IN_MODE = """
import json, sys
import closekit
from closekit import claims
from closekit.errors import CloseKitError
out = {}
for claim in claims.CLAIMS:
    try:
        out[claim.id] = claims.judge(claim, closekit.run(claim.scenario)).status
    except CloseKitError as e:  # e.g. a capture that dropped segments on a busy machine: not a verdict
        out[claim.id] = "not run: " + str(e)
print(json.dumps(out))
"""


@pytest.mark.live
@pytest.mark.parametrize("mode", ["netns-loopback", "host", "host-nocapture"])
def test_no_claim_does_not_hold_in_a_fallback_mode(mode):
    env = {**os.environ, "CLOSEKIT_SANDBOX": mode, "CLOSEKIT_LANG": "en"}
    out = subprocess.run([sys.executable, "-c", _VERIFY_IN_MODE], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode and "not allowed" in out.stderr:
        pytest.skip(f"this machine cannot run mode {mode}: {out.stderr.strip().splitlines()[-1]}")
    statuses = json.loads(out.stdout)
    judged = {cid: s for cid, s in statuses.items() if s in ("holds", "differs", "does not hold")}
    assert len(judged) >= len(statuses) // 4, statuses  # most claims were judged (live, or from a recording)
    assert {cid: s for cid, s in judged.items() if s != EXPECTED[cid]} == {}


def test_counters_are_not_blamed_on_the_kernel_in_mode_host(live):
    v = claims.judge("close-unread-before-linger-zero", _as_seen_in(live("close-unread-linger-zero"), "host"))
    assert v.holds is None
    assert v.line() == (
        "[4.1] close-unread-before-linger-zero: cannot be judged here (mode host, without the kernel's TCP counters)"
    )
    assert claims.judge("close-unread-rst", _as_seen_in(live("close-unread"), "host")).status == "holds"


def test_segments_are_not_blamed_on_the_kernel_in_mode_host_nocapture(live):
    v = claims.judge("linger-zero-rst", _as_seen_in(live("linger-zero"), "host-nocapture"))
    assert v.holds is None and "without the segments on the wire" in v.line()


def test_a_recorded_trace_says_its_verdict_is_from_the_recording():
    from closekit.recorded import load

    trace = load("return-linger", "a test")
    assert trace is not None
    v = claims.judge("return-linger-after-ack", trace)
    assert v.line().startswith("[3.2.2] return-linger-after-ack: holds, from the recording — ")


def test_a_missed_sync_point_gets_one_more_run_and_the_verdict_comes_from_it():
    from closekit.recorded import load

    recorded = load("return-linger", "a test")
    asked: list[str] = []

    def run(name: str) -> Trace:
        asked.append(name)
        if len(asked) == 1:
            raise SyncTimeoutError("sync point wait_acked('client') was not met within 3 s")
        return recorded

    (v,) = claims.verify([claims.get("return-linger-after-ack")], run=run)
    assert asked == ["return-linger", "return-linger"]
    assert v.holds is True and v.why == ""


@pytest.mark.parametrize(
    "error, runs",
    [(SyncTimeoutError("sync point wait_acked('client') was not met within 3 s"), 2),
     (ExperimentError("the lab's helper process ended"), 1)],
)  # fmt: skip
def test_a_scenario_that_keeps_failing_could_not_run_here_and_only_a_missed_sync_point_is_run_again(error, runs):
    asked: list[str] = []

    def run(name: str) -> Trace:
        asked.append(name)
        raise error

    (v,) = claims.verify([claims.get("return-linger-after-ack")], run=run)
    assert len(asked) == runs
    assert v.holds is None and v.why == claims.NOT_RUN and str(error) in v.evidence


# ---- a "differs" check can hold: the book's behaviour, edited into the real trace -----------------------
def _edit(trace: Trace, call: Syscall | Segment | StateChange, **changes: object) -> Trace:
    events = tuple(dataclasses.replace(e, **changes) if e is call else e for e in trace.events)
    return dataclasses.replace(trace, events=events)


def _bsd_linger_timeout(trace: Trace, nonblocking: bool = False) -> Trace:
    close = q.call(trace, "client", "close")
    trace = _edit(trace, close, result=-1, errno="EWOULDBLOCK", **({"duration": 0.0001} if nonblocking else {}))
    close = q.call(trace, "client", "close")
    fin = q.first(trace, "FIN", "client")
    rst = dataclasses.replace(fin, t=q.end(close), flags=("RST", "ACK"), arrived=q.end(close))
    read = q.call(trace, "server", q.READ_TO_EOF)
    events = [dataclasses.replace(e, result=4344, errno="ECONNRESET") if e is read else e for e in trace.events]
    events.append(rst)
    return dataclasses.replace(trace, events=tuple(sorted(events, key=lambda e: e.t)))


def _book(claim_id: str, trace: Trace) -> Trace:
    """`trace` edited to show what the book says happens."""
    if claim_id in ("shut-rd-discards-later-data", "shut-rd-discards-queued-data"):
        sh = next(c for c in q.calls(trace, "client", "shutdown") if c.args["how"] == "SHUT_RD")
        late = [c for c in q.calls_after(trace, "client", sh, "recv") if c.result]
        return _edit(trace, late[0], result=0)
    if claim_id in ("linger-timeout-rst", "linger-timeout-ewouldblock", "table-linger-positive"):
        return _bsd_linger_timeout(trace)
    if claim_id == "linger-nonblocking-ewouldblock":
        return _bsd_linger_timeout(trace, nonblocking=True)
    if claim_id == "old-duplicate-delivered":  # the server's TCP takes the bytes (its ACK moves on), recv() gets them
        dup = next(s for s in trace.segments() if s.fate == "duplicate")
        reply = next(s for s in q.segments(trace, "server", "ACK", conn=2) if s.t >= dup.arrived)
        trace = _edit(trace, reply, ack=reply.ack + dup.len)
        r = next(c for c in q.calls(trace, "server", "recv") if c.t >= dup.arrived)
        return _edit(trace, r, result=dup.len, errno=None)
    if claim_id == "shutdown-lingers":
        sh = q.call(trace, "client", "shutdown")
        ack = q.ack_of(trace, q.first(trace, "FIN", "client"))
        return _edit(trace, sh, duration=ack.arrived - sh.t + 0.001, slept=True)
    if claim_id == "active-closer-time-wait":  # the RST left the first FIN's sender in TIME_WAIT after all
        last = [e for e in trace.events if isinstance(e, StateChange) and e.side == "client"][-1]
        return _edit(trace, last, state="TIME_WAIT")
    if claim_id == "table-close-default-fin":
        rst = q.first(trace, "RST", "server")
        events = tuple(dataclasses.replace(e, flags=("FIN", "ACK")) if e is rst else e for e in trace.events)
        return dataclasses.replace(trace, events=events)
    raise AssertionError(f"no book version of {claim_id}")


@pytest.mark.parametrize("claim_id", sorted(DIFFERS))
def test_a_check_that_differs_on_linux_holds_where_the_book_would(live, claim_id):
    claim = claims.get(claim_id)
    assert claim.check(live(claim.scenario))[0] is False
    held, evidence = claim.check(_book(claim_id, live(claim.scenario)))
    assert held, evidence


# ---- reports -------------------------------------------------------------------------------------
def test_judge_accepts_an_id_and_a_trace(live):
    v = claims.judge("linger-zero-rst", live("linger-zero"))
    assert v.holds and "ECONNRESET" in v.evidence and v.outcome() == "holds"


def test_reports(verdicts):
    vs = list(verdicts.values())
    text = claims.table(vs)
    assert "differs on Linux " in text and "Where Linux differs" in text and "does not hold" not in text
    assert f"{len(vs)} claims: {len(vs) - len(DIFFERS)} hold, {len(DIFFERS)} differ on Linux " in text
    assert "Linux " not in claims.table(vs, with_kernel=False).splitlines()[0]
    html = claims.verdicts_html(vs)
    assert html.count("<tr>") == len(vs) + 1
    data = json.loads(claims.to_json(vs))
    assert data["total"] == len(vs) and data["differs"] == len(DIFFERS) and data["cannot_be_judged"] == 0
    assert {d["id"] for d in data["verdicts"]} == set(EXPECTED)
    assert all(d["counter_scenario"] and d["needs"] for d in data["verdicts"])


def test_unknown_claim_lists_the_ids():
    with pytest.raises(KeyError, match="linger-zero-rst"):
        claims.get("no-such-claim")
