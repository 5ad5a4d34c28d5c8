"""What a chapter cell prints after it has run an experiment: the story of the trace, and verdicts.

A notebook's stored outputs are compared by nbval on every CI run, so they hold what the kernel does
the same way every time: calls and their results, segments with relative sequence numbers, states,
and verdict lines whose durations the comparison reads by category (tests/nbval.cfg).

    trace = closekit.run("linger-zero")
    print(story(trace))
    show(trace, "linger-zero-rst", "rst-gets-no-response")
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

import closekit
from closekit.claims import CLAIMS, Claim, Verdict, by_section, duration, judge
from closekit.lang import text, wrap
from closekit.trace import Trace
from closekit.transcript import story

__all__ = [
    "differences",
    "disagreements",
    "duration",
    "moments",
    "section_verdicts",
    "show",
    "show_verdicts",
    "story",
]


WIDTH = 100  # columns of a printed verdict: it wraps here, in JupyterLab and in the book alike


def show(trace: Trace, *claim_ids: str) -> None:
    """Print the verdict of each claim, judged on `trace` (the experiment the cell just ran), wrapped."""
    for claim_id in claim_ids:
        print(judge(claim_id, trace).line(width=WIDTH))


def show_verdicts(verdicts: Iterable[Verdict], indent: int = 0) -> None:
    """Print verdicts already judged, one wrapped line each, indented by `indent` spaces."""
    for verdict in verdicts:
        print(textwrap.indent(verdict.line(width=WIDTH - indent), " " * indent))


def differences(verdicts: Iterable[Verdict]) -> None:
    """For each verdict where Linux does otherwise than the book: what the book says, what was measured
    (the evidence) and what Linux does instead, wrapped, in the reader's language."""
    for v in verdicts:
        if v.status != "differs":
            continue
        print("\n    ".join(wrap(f"[{v.claim.section}] {v.claim.statement}", WIDTH - 4)))
        for label, words in ((text("verdict.measured"), v.evidence), (text("verdict.linux"), v.claim.linux or "")):
            print("    " + "\n        ".join(wrap(f"{label} {words}", WIDTH - 8)))
        print()


def section_verdicts(section: str, trace: Trace) -> list[Verdict]:
    """Judge every claim of `section` whose scenario is the one `trace` ran."""
    return [judge(c, trace) for c in by_section(section) if c.scenario == trace.scenario]


def disagreements(claims: Iterable[Claim] = CLAIMS) -> list[Claim]:
    """The claims where the book describes another system than Linux (each says what Linux does)."""
    return [c for c in claims if c.linux_text]


def moments(*runs: tuple[str, str]) -> None:
    """Run each (scenario, call) pair and print when that call returned, relative to what the
    peer did: a side-by-side of the timing figures of the document's section 3.2."""
    from closekit import query as q

    for name, call in runs:
        trace = closekit.run(name)
        c = q.call(trace, "client", call)
        if c is None:
            print(f"{name}: the client made no {call}()")
            continue
        read = q.call(trace, "server", q.READ_TO_EOF)
        fin = q.first(trace, "FIN", "client")
        ack = q.ack_of(trace, fin) if fin is not None else None
        when = []
        if ack is not None and ack.arrived is not None:
            when.append("after the ACK of its FIN" if q.end(c) >= ack.arrived else "before the ACK of its FIN")
        if read is not None:
            when.append("after the server read" if q.end(c) >= q.end(read) else "before the server read")
        print(f"{name:<22} {call}() {q.result_text(c)} after {duration(c.duration)}: {', '.join(when)}")
