"""nbval that travels and still sees (tests/nbval.cfg).

- Durations are compared by category: the sanitizer's buckets are the ones closekit prints.
- The stored outputs of every chapter pass the sanitizers under another kernel build string and
  other microsecond timings.
- What carries the lesson is not masked: an arrow drawn the other way, or a 1 s wait turned into
  1 ms, fails, both through the sanitizers here and in a real nbval run.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from wire_traces import lingering_close

from closekit.lang import use
from closekit.render import kernel_path, sequence_diagram
from closekit.transcript import CATEGORIES, approx, format_duration, html_transcript, story

TESTS = Path(__file__).parent
REPO = TESTS.parent
CFG = TESTS / "nbval.cfg"


@functools.cache
def sanitizers() -> tuple[tuple[str, str], ...]:
    """The (regex, replace) pairs exactly as nbval reads them from the file (read once: the file does not
    change during a run, and the tests below sanitize thousands of strings)."""
    from nbval.plugin import get_sanitize_patterns

    pairs = get_sanitize_patterns(CFG.read_text(encoding="utf-8"))
    assert len(pairs) == CFG.read_text(encoding="utf-8").count("\nregex: "), "a rule nbval would not read"
    return tuple(pairs)


def sanitize(text: str) -> str:
    for regex, replace in sanitizers():  # as nbval does: re.sub, in the file's order
        text = re.sub(regex, replace, text)
    return text


def _durations():
    value = 0.0001
    while value < 40:
        yield value
        value *= 1.013


def test_printed_durations_sanitize_to_the_category_closekit_prints():
    bounds = [bound for bound, _ in CATEGORIES[:-1]]
    checked = 0
    for seconds in _durations():
        if any(abs(seconds - b) < 0.0006 or abs(seconds - b) / b < 0.006 for b in bounds):
            continue  # printed with one decimal, a value this close to a bound may round across it
        # as nbval compares them: the category closekit prints (below 9.5 ms, its first two as one)
        assert sanitize(f"[returned after {format_duration(seconds)}]") == sanitize(
            f"[returned after {approx(seconds)}]"
        )
        assert sanitize(approx(seconds)) == (approx(seconds) if seconds >= 0.0095 else "under 10 ms"), seconds
        checked += 1
    assert checked > 800


def test_a_clock_reading_is_masked_and_a_duration_is_not():
    trace = lingering_close()
    text = sanitize(trace.transcript())
    assert "\nT  client" in text and "[returned after ≈ 1 s]" in text
    html = sanitize(html_transcript(trace))
    assert not re.search(r'<td class="t"[^>]*>\d', html)
    assert "returned after ≈ 1 s" in html


# ---- the stored outputs travel ------------------------------------------------------------------------
def _outputs(notebook: Path):
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")]
            texts += [v for k, v in output.get("data", {}).items() if k in ("text/plain", "text/html")]
            for text in texts:
                if isinstance(text, str) and text:
                    yield index, text


def _stamped_kernel(notebook: Path) -> str:
    """The kernel the notebook's outputs come from, as its stamp says (closekit.book stamp)."""
    return nbformat.read(notebook, as_version=4).metadata["closekit"]["outputs"]["kernel"]


def _this_machine(kernel: str) -> str:
    """The forms in which an output names the kernel it ran on (chapter 7's stored ledger names the builds
    its columns were recorded on, which are the same on every machine)."""
    return rf"(kernel|内核)[ =]{re.escape(kernel)}"


def _elsewhere(text: str, kernel: str) -> str:
    """The same output as another machine prints it: another kernel build, clocks a little later,
    durations a few per cent longer (and a few microseconds: bucket bounds stay far away)."""
    text = re.sub(_this_machine(kernel), r"\1 6.1.0-57-cloud-amd64", text)

    def later(match: re.Match) -> str:
        value = float(match[1]) * 1.03 + 0.1
        return f"{value:.1f} ms"

    def longer(match: re.Match) -> str:
        return f"{float(match[1]) * 1.02:.2f} s"

    return re.sub(r"(?<![\d.])(\d+\.\d) ms", later, re.sub(r"(?<![\d.])(\d+\.\d\d) s\b", longer, text))


NOTEBOOKS = sorted((REPO / "notebooks").glob("**/*.ipynb"))  # both editions
NAME_NO_KERNEL = {"05-kernel-close-path", "07-summary"}  # the path's kernel era; the stored ledger


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.relative_to(REPO / "notebooks").as_posix() for n in NOTEBOOKS])
def test_stored_outputs_pass_under_another_kernel_and_other_timings(notebook):
    kernel, compared, named = _stamped_kernel(notebook), 0, 0
    for index, text in _outputs(notebook):
        assert sanitize(_elsewhere(text, kernel)) == sanitize(text), f"cell {index} of {notebook.name}"
        compared += 1
        named += bool(re.search(_this_machine(kernel), text))
    assert compared, f"{notebook.name} stores no outputs"
    assert named or notebook.stem in NAME_NO_KERNEL, f"no output of {notebook.name} names {kernel}: is it stamped?"


def test_stored_outputs_name_no_kernel_build_after_sanitizing():
    for notebook in NOTEBOOKS:
        kernel = _stamped_kernel(notebook)
        for index, text in _outputs(notebook):
            assert not re.search(_this_machine(kernel), sanitize(text)), f"cell {index} of {notebook.name}"


# ---- and still see ------------------------------------------------------------------------------------
FORMS = {
    "sequence words": lambda t: sequence_diagram(t).text,
    "transcript table": html_transcript,
    "story": story,
}


@pytest.mark.parametrize("form", FORMS)
def test_another_machine_compares_equal(form):
    render = FORMS[form]
    here, there = lingering_close(), lingering_close(kernel="6.1.0-18-amd64", jitter=0.0003)
    assert sanitize(render(here)) == sanitize(render(there))


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("form", [*FORMS, "text transcript"])
def test_a_busy_machines_note_is_not_compared_but_what_follows_it_is(form, lang):
    render = FORMS.get(form, lambda t: t.transcript())
    quiet = lingering_close()
    busy = dataclasses.replace(quiet, disturbed="the wire passed a segment on 22 ms late")
    with use(lang):
        assert "22 ms late" in render(busy) or form == "story"  # the note is shown where headers are
        assert sanitize(render(busy)) == sanitize(render(quiet))
        assert sanitize(render(busy)) != sanitize(render(lingering_close(close_duration=0.001)))


@pytest.mark.parametrize("form", FORMS)
def test_an_arrow_drawn_the_other_way_fails(form):
    render = FORMS[form]
    assert sanitize(render(lingering_close())) != sanitize(render(lingering_close(flip=True)))


@pytest.mark.parametrize("form", FORMS)
def test_a_one_second_wait_turned_into_one_millisecond_fails(form):
    render = FORMS[form]
    assert sanitize(render(lingering_close())) != sanitize(render(lingering_close(close_duration=0.001)))


def test_the_sequence_svg_keeps_arrow_direction_after_masking():
    a, b = (sequence_diagram(lingering_close(flip=f)).svg for f in (False, True))
    assert sanitize(a) != sanitize(b)
    assert 'class="segment s2c delivered flags-ra"' in sanitize(a)


def test_the_kernel_path_words_keep_the_branch():
    text = kernel_path(lingering_close()).text
    assert "SO_LINGER timeout > 0? yes" in text
    assert "close() waited ≈ 1 s in sk_stream_wait_close" in sanitize(text)


# ---- a real nbval run sees it fail --------------------------------------------------------------------
CELL = """import sys
sys.path.insert(0, {tests!r})
from wire_traces import lingering_close
from closekit.render import sequence_diagram
sequence_diagram(lingering_close(**{kwargs!r}))"""


def _notebook(path: Path, stored: dict, run: dict) -> None:
    from closekit.render import sequence_diagram as draw

    data, metadata = draw(lingering_close(**stored))._repr_mimebundle_()
    cell = nbformat.v4.new_code_cell(CELL.format(tests=str(TESTS), kwargs=run), execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", data=data, metadata=metadata, execution_count=1)]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


NBVAL_CASES = {
    "other-machine-passes": ({"kernel": "6.1.0-18-amd64", "jitter": 0.0003}, True),
    "flipped-arrow-fails": ({"flip": True}, False),
    "1s-wait-as-1ms-fails": ({"close_duration": 0.001}, False),
}


@pytest.fixture(scope="module")
def nbval_outcomes(tmp_path_factory) -> dict[str, list[str]]:
    """One real nbval run over one notebook per case (each notebook gets its own kernel, as if run alone):
    case -> the outcome of each of its cells ("passed", "failure", ...). One run for the three cases, and one
    for the whole session (xdist's workers share it through a locked file): most of a run is starting
    pytest, nbval and a kernel."""
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this session
    with open(shared / "nbval-itself.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "nbval-itself.json"
        if not done.is_file():
            done.write_text(json.dumps(_run_nbval(tmp_path_factory.mktemp("nbval"))))
        return json.loads(done.read_text())


def _run_nbval(folder: Path) -> dict[str, list[str]]:
    for case, (run, _) in NBVAL_CASES.items():
        _notebook(folder / f"{case}.ipynb", {}, run)
    report = folder / "report.xml"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder), "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(CFG), f"--junitxml={report}",
         *(f"{case}.ipynb" for case in NBVAL_CASES)],
        capture_output=True, text=True, cwd=folder, timeout=300,
    )  # fmt: skip
    assert report.is_file(), out.stdout[-3000:] + out.stderr[-3000:]
    outcomes: dict[str, list[str]] = {"stdout": [out.stdout[-3000:]]}
    for cell in ET.parse(report).iter("testcase"):  # classname: the notebook's file name
        failed = [child.tag for child in cell if child.tag in ("failure", "error", "skipped")]
        notebook = cell.get("classname", "").removesuffix(".ipynb")
        outcomes.setdefault(notebook, []).append(failed[0] if failed else "passed")
    return outcomes


@pytest.mark.parametrize("case", NBVAL_CASES)
def test_nbval_itself(nbval_outcomes, case):
    _, passes = NBVAL_CASES[case]
    cells = nbval_outcomes.get(case, [])
    assert len(cells) == 1, (cells, nbval_outcomes["stdout"])  # the notebook's one cell, compared
    if passes:
        assert cells == ["passed"], nbval_outcomes["stdout"]
    else:
        assert cells == ["failure"], nbval_outcomes["stdout"]  # a failed comparison, not an error


def test_a_reopened_windows_size_is_masked_and_a_zero_window_is_not():
    opened = {sanitize(f". 1:1(0) ack 4345 win {size}") for size in (2896, 65536)}
    assert opened == {". 1:1(0) ack 4345 win >0"}
    assert sanitize(". 1:1(0) ack 4345 win 0") != sanitize(". 1:1(0) ack 4345 win 2896")


def test_a_bulk_transfers_large_numbers_are_masked_and_a_small_exchange_is_not():
    one, other = (sanitize(f"client → server: {n:,} bytes, seq 1:{n + 1}; > . 14:14(0) ack {n + 1} win 0")
                  for n in (89808, 90232))  # fmt: skip
    assert one == other == "client → server: N bytes, seq 1:N; > . 14:14(0) ack N win 0"
    assert sanitize("> F. 1001:1001(0) ack 1") != sanitize("> F. 1002:1002(0) ack 1")
    assert sanitize("send(nbytes=1000) = 1000") == "send(nbytes=1000) = 1000"
    assert sanitize("> FP. 999121:1000001(880) ack 14") == sanitize("> FP. 999529:1000001(472) ack 14")
    assert sanitize("> FP. 1001:1401(400) ack 1") != sanitize("> FP. 1001:1201(200) ack 1")
