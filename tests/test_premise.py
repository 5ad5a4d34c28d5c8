"""A scenario's premises: they hold on this kernel, and a run where one did not is no verdict.

Also what `closekit verify` does when a scenario cannot run or a run did not do a claim's step: every
claim is still reported, with its JSON, and the exit status says some have no evidence.
"""

from __future__ import annotations

import json

import pytest

import closekit
from closekit import claims, premise
from closekit.cli import main
from closekit.errors import SyncTimeoutError
from closekit.library import FULL_BYTES, PREMISES
from closekit.trace import Trace


def _edited(trace: Trace, edit) -> Trace:
    data = trace.to_dict()
    data["events"] = [e for e in data["events"] if edit(e) is not None]
    return Trace.from_dict(data)


@pytest.mark.parametrize("name", sorted(PREMISES))
def test_every_declared_premise_holds_on_this_kernel(live, name):
    trace = live(name)
    results = premise.check(trace)
    assert [r.premise.id for r in results] == [p.id for p in PREMISES[name]]
    for r in results:
        assert r.holds is not False, r.line()


def test_the_full_window_leaves_data_queued_behind_a_shut_window(live):
    by_id = {r.premise.id: r for r in premise.check(live("close-full-window"))}
    assert by_id["client-sent-all"].evidence == f"send({FULL_BYTES:,}) = {FULL_BYTES:,}"
    assert "advertised win 0" in by_id["server-window-shut"].evidence
    assert by_id["client-data-queued"].holds


def test_a_window_that_never_shut_makes_the_verdict_a_failed_premise_not_a_verdict(live):
    def reopen(e):
        if e["kind"] == "segment" and e["src"] == "server" and e["win"] == 0:
            e["win"] = 2896
        return e

    trace = _edited(live("close-full-window"), reopen)
    claim = next(c for c in claims.CLAIMS if c.scenario == "close-full-window")
    v = claims.judge(claim, trace)
    assert v.holds is None and v.status == "premise did not hold"
    assert "shut" in v.evidence and "win 2,896" in v.evidence
    assert v.line().startswith(f"[{claim.section}] {claim.id}: not judged")


def test_a_send_that_took_less_than_asked_fails_its_premise(live):
    def short(e):
        if e["kind"] == "syscall" and e["call"] == "send" and e["args"].get("nbytes") == FULL_BYTES:
            e["result"] = 18824
        return e

    results = {r.premise.id: r for r in premise.check(_edited(live("linger-timeout"), short))}
    assert results["client-sent-all"].holds is False
    assert results["client-sent-all"].evidence == f"send({FULL_BYTES:,}) = 18,824"


def test_a_run_without_the_step_a_claim_asks_about_is_not_evidence(live):
    trace = live("shutdown-shared")
    after = next(c for c in trace.syscalls("server", "shutdown")).t

    def no_recv(e):  # every client recv() whose answer came after the shutdown (it was blocked across it)
        made = (
            e["kind"] == "syscall" and e["side"] == "client" and e["call"] == "recv" and e["t"] + e["duration"] > after
        )
        return None if made else e

    v = claims.judge("shutdown-ignores-refcount", _edited(trace, no_recv))
    assert v.status == "not evidence" and v.holds is None
    assert "made no recv()" in v.evidence


@pytest.mark.live
def test_verify_reports_every_claim_when_one_scenario_fails():
    ledger = claims.by_section("2")
    failing = "shutdown-wr-queued"
    assert any(c.scenario == failing for c in ledger)

    def run(name: str) -> Trace:
        if name == failing:
            raise SyncTimeoutError("the sync point wait_done(client) was not met within 3.0 s")
        return closekit.run(name)

    verdicts = claims.verify(ledger, run=run)
    assert [v.claim.id for v in verdicts] == [c.id for c in ledger]
    for v in verdicts:
        if v.claim.scenario == failing:
            assert v.status == "could not run here"
            assert "wait_done(client) was not met" in v.evidence and "the experiment needs:" in v.evidence
        else:
            assert v.judged, v.line()
    report = json.loads(claims.to_json(verdicts))
    assert report["total"] == len(ledger) and report["mode"]
    assert report["could_not_run"] == sum(c.scenario == failing for c in ledger)


@pytest.mark.live
def test_the_verify_command_prints_its_json_and_exits_1_when_a_scenario_fails(monkeypatch, capsys):
    real = closekit.run

    def run(name, lab=None):
        if name == "shutdown-rd":
            raise SyncTimeoutError("wait_recv_queue(client, 5) was not met within 3.0 s")
        return real(name, lab)

    monkeypatch.setattr(closekit, "run", run)
    assert main(["verify", "--json", "--section", "2"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == len(claims.by_section("2"))
    assert {v["status"] for v in report["verdicts"] if v["scenario"] == "shutdown-rd"} == {"could not run here"}
