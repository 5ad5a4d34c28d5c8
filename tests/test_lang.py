"""The language layer: which language a notebook speaks, catalogs that cannot drift apart, and the
exercises, widgets, checkers and verdicts actually speaking Chinese where a Chinese notebook runs."""

from __future__ import annotations

import ast
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

import closekit
from closekit import claims, cli, lang
from closekit.errors import ExperimentError, LanguageError, MessageError, NotHereError, ScenarioError, SyncTimeoutError
from closekit.exercises import WriteCode, catalog
from closekit.link import Link, drop
from closekit.sandbox.client import Lab
from closekit.scenario import Scenario
from closekit.settings import Settings
from closekit.steps import at_once, call, close, send, shutdown, wait_state
from closekit.trace import Trace

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "closekit"
FIXTURES = Path(__file__).parent / "fixtures"


def plain_close(sock, data):
    sock.sendall(data)
    sock.close()


# ---- which language -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("environ", "cwd", "expected"),
    [
        ({}, "/course/notebooks", "en"),
        ({}, "/course/notebooks/zh", "zh"),  # the Chinese chapters
        ({}, "/course/notebooks/zh/extra", "zh"),  # anywhere under a folder named zh
        ({}, "/course/exercises/student/ex01-close-zh", "zh"),  # a Chinese assignment
        ({}, "/srv/autograded/alice/ex01-close-zh", "zh"),  # nbgrader's copy of it
        ({}, "/course/exercises/student/ex01-close", "en"),
        ({}, "/home/zhang/ex01-close", "en"),  # 'zh' inside a name is not a folder named zh
        ({"CLOSEKIT_LANG": "en"}, "/course/notebooks/zh", "en"),  # the variable wins
        ({"CLOSEKIT_LANG": "zh"}, "/course/notebooks", "zh"),
        ({"CLOSEKIT_LANG": ""}, "/course/notebooks/zh", "zh"),  # set but empty: as if unset
    ],
)
def test_the_language_comes_from_the_variable_else_the_notebooks_folder(environ, cwd, expected):
    assert lang.detect(environ, cwd) == expected


@pytest.mark.parametrize("value", ["fr", "ZH", "zh_CN", "chinese"])
def test_a_language_closekit_does_not_speak_is_an_error_naming_the_ones_it_does(value):
    with pytest.raises(LanguageError, match=rf"CLOSEKIT_LANG is '{value}'; the languages are: en, zh"):
        lang.detect({"CLOSEKIT_LANG": value}, "/course/notebooks")


def test_the_kernels_working_directory_decides_and_use_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("CLOSEKIT_LANG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert lang.current() == "en" and lang.text("predict.run") == "Run it"
    assignment = tmp_path / "ex02-shutdown-zh"
    assignment.mkdir()
    monkeypatch.chdir(assignment)
    assert lang.current() == "zh" and lang.text("predict.run") == "运行"
    with lang.use("en"):
        assert lang.text("predict.run") == "Run it"
    assert lang.current() == "zh"
    with pytest.raises(LanguageError, match="the languages are: en, zh"), lang.use("fr"):
        pass


def test_import_closekit_reads_no_catalog():
    code = (
        "import sys, closekit; assert 'closekit.lang' not in sys.modules\n"
        "from closekit import lang; assert lang.catalog.cache_info().currsize == 0\n"
        "lang.text('predict.run'); assert lang.catalog.cache_info().currsize == 1"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- the catalogs -------------------------------------------------------------------------------
def leaves(table: dict, prefix: str = "") -> dict[str, str]:
    """Every message of a catalog by its dotted key."""
    found = {}
    for key, value in table.items():
        if isinstance(value, dict):
            found.update(leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def fields(message: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(message) if name is not None}


EN, ZH = leaves(lang.catalog("en")), leaves(lang.catalog("zh"))


def test_both_catalogs_have_the_same_keys():
    assert sorted(set(EN) - set(ZH)) == [], "in en.toml, missing from zh.toml"
    assert sorted(set(ZH) - set(EN)) == [], "in zh.toml, not in en.toml"


@pytest.mark.parametrize("key", sorted(EN))
def test_each_message_fills_the_same_fields_in_both_languages(key):
    assert fields(EN[key]) == fields(ZH[key]), f"{key}: en {fields(EN[key])}, zh {fields(ZH[key])}"
    for message in (EN[key], ZH[key]):
        assert all(name.isidentifier() for name in fields(message)), f"{key}: a brace not doubled? {message!r}"


def test_a_missing_message_fails_loudly_in_every_language():
    for code in lang.LANGUAGES:
        with lang.use(code), pytest.raises(MessageError, match=rf"no message 'predict.nope' in closekit/lang/{code}"):
            lang.text("predict.nope")
    with pytest.raises(MessageError, match="is a table, not a message"):
        lang.text("side")
    with pytest.raises(MessageError, match="not a table of messages"):
        lang.texts("predict.run")


def _used_keys() -> tuple[set[str], set[str]]:
    """Keys named in closekit's code: messages (text) and tables (texts, word). A key built at run time
    would escape this test, so every key must be a literal (or a choice between literals). A module
    speaks through closekit.lang, or through closekit.errors.text (its refusals: lang imported when raised)."""
    messages, tables = set(), set()
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "lang":
            continue
        source = path.read_text()
        speaks = "closekit.lang" in source or re.search(r"^\s*from closekit\.errors import .*\btext\b", source, re.M)
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ("text", "texts", "word") or not speaks:
                continue
            arg = node.args[0]
            options = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
            for option in options:
                assert isinstance(option, ast.Constant), f"{path}:{node.lineno}: a message key must be a literal"
                (messages if node.func.id == "text" else tables).add(option.value)
    return messages, tables


def test_every_key_the_code_names_is_in_the_catalog_and_every_message_is_used():
    messages, tables = _used_keys()
    assert sorted(messages - set(EN)) == [], "named in the code, missing from the catalogs"
    assert sorted(t for t in tables if not any(k.startswith(f"{t}.") for k in EN)) == []
    used = messages | {k for k in EN for t in tables if k.startswith(f"{t}.")}
    assert sorted(set(EN) - used) == [], "in the catalogs but used nowhere"


# ---- the claims' Chinese text ---------------------------------------------------------------------
ZH_CLAIMS = lang.claim_catalog("zh")


def test_every_claim_has_a_chinese_text_and_no_chinese_text_is_orphaned():
    ids = {c.id for c in claims.CLAIMS}
    assert sorted(ids - set(ZH_CLAIMS["claims"])) == [], "claims with no Chinese text"
    assert sorted(set(ZH_CLAIMS["claims"]) - ids) == [], "Chinese texts of claims that do not exist"
    shared = {w["linux_shared"] for w in ZH_CLAIMS["claims"].values() if "linux_shared" in w}
    assert shared == set(ZH_CLAIMS["shared"]), "a shared text used by no claim, or a claim naming none"


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=lambda c: c.id)
def test_a_claim_says_what_linux_does_instead_in_chinese_exactly_when_it_does_in_english(claim):
    words = ZH_CLAIMS["claims"][claim.id]
    assert set(words) <= {"text", "linux", "linux_shared"} and words["text"]
    assert ("linux" in words or "linux_shared" in words) == bool(claim.linux_text), claim.id
    with lang.use("zh"):
        says, linux = lang.claim_words(claim)
    assert says == words["text"] and (linux is None) == (claim.linux_text is None)
    with lang.use("zh"):
        assert (claim.statement, claim.linux) == (says, linux)  # what a chapter's code cell prints
    with lang.use("en"):
        assert (claim.statement, claim.linux) == (claim.text, claim.linux_text)
    assert says != claim.text


def test_a_claim_without_a_chinese_text_fails_loudly():
    orphan = claims.Claim("not-in-the-ledger", "1", "x", "close-default", lambda t: True)
    with lang.use("zh"), pytest.raises(MessageError, match="no text for claim 'not-in-the-ledger'"):
        lang.claim_words(orphan)
    with lang.use("en"):
        assert lang.claim_words(orphan) == ("x", None)


def test_verdicts_speak_chinese():
    trace = Trace.from_json((FIXTURES / "linger-zero.json").read_text())
    verdict = claims.judge("linger-zero-no-time-wait", trace)
    with lang.use("zh"):
        assert verdict.outcome() == "成立"
        table = claims.table([verdict])
        page = claims.verdicts_html([verdict])
    assert table.startswith("文档中的论断，在 Linux") and "\n节 " in table and "成立" in table
    assert "文档的说法" in page and "异常释放之后，关闭的一方跳过 TIME_WAIT" in page
    with lang.use("en"):
        assert verdict.outcome() == "holds" and "Claims of the document" in claims.table([verdict])


def test_every_built_in_scenario_is_described_in_chinese():
    described = lang.scenario_catalog("zh")
    assert set(described) == set(closekit.scenarios())
    with lang.use("zh"):
        assert lang.scenario_words("linger-zero", closekit.get("linger-zero").description).startswith("SO_LINGER")
        assert lang.scenario_words("linger-zero", "my own words") == "my own words"  # a student's own scenario


# ---- refusals: a scenario that is not valid is refused in the notebook's language ---------------------
CJK = re.compile(r"[\u4e00-\u9fff]")
REFUSED = [  # (a bad scenario, its refusal in English as it always was, what the Chinese one must name)
    (
        lambda: Scenario("mine", "", (send("client", 0),)),
        "step 1 of 'mine', send('client', nbytes=0): nbytes=0 is out of range: allowed 1 to 16777216",
        "场景 'mine' 的第 1 步，send('client', nbytes=0)：nbytes=0 超出范围：允许 1 到 16777216",
    ),
    (
        lambda: Scenario("mine", "", (shutdown("client", "SHUT_BOTH"),)),
        "step 1 of 'mine', shutdown('client', how='SHUT_BOTH'): how='SHUT_BOTH' is not one of SHUT_RD, SHUT_WR, "
        "SHUT_RDWR",
        "how='SHUT_BOTH' 不是 SHUT_RD, SHUT_WR, SHUT_RDWR 之一",
    ),
    (
        lambda: Scenario("mine", "", (close("client"), at_once(send("client", 1), close("server")))),
        "step 2 of 'mine', at_once(send('client', nbytes=1), close('server')): send('client', nbytes=1): 'client' "
        "holds no open socket here (it closed its descriptor); after close() only sleep, exit, wait_* and (on the "
        "client) connect steps are allowed on that process",
        "close('server')) 中的 send('client', nbytes=1)：'client' 在这里没有打开的套接字（它已经关闭了自己的描述符）",
    ),
    (
        lambda: Link(delay=9),
        "link delay=9 is out of range: allowed 0.0 to 5.0 seconds",
        "链路的 delay=9 超出范围：允许 0.0 到 5.0 秒",
    ),
    (
        lambda: drop("client", "FIN", nth=0),
        "link rule drop: nth must be a whole number from 1 to 1000000, not 0",
        "链路规则 drop 的 nth 必须是 1 到 1000000 之间的整数，而不是 0",
    ),
    (
        lambda: Settings(sysctls={"net.ipv4.tcp_fin_timeout": "601"}),
        "sysctl net.ipv4.tcp_fin_timeout='601' is out of range: allowed 1 to 600",
        "sysctl net.ipv4.tcp_fin_timeout='601' 超出范围：允许 1 到 600",
    ),
    (
        lambda: Settings(sysctls={"net.ipv4.tcp_wmem": "3 2 1"}),
        "sysctl net.ipv4.tcp_wmem='3 2 1' is out of range: allowed 1 to 8388608, in rising order (minimum, initial, "
        "maximum)",
        "sysctl net.ipv4.tcp_wmem='3 2 1' 超出范围：允许 1 到 8388608，并且从小到大排列（最小值、初始值、最大值）",
    ),
    (
        lambda: Scenario.from_dict({"name": "mine", "steps": [{"step": "send", "side": "client", "bytes": 6}]}),
        "step send takes nbytes, side, not bytes, side",
        "步骤 send 接受的是 nbytes, side，而不是 bytes, side",
    ),
]


@pytest.mark.parametrize(("build", "english", "chinese"), REFUSED)
def test_a_refused_scenario_is_refused_in_chinese_in_a_chinese_notebook_and_as_before_in_english(
    build, english, chinese
):
    with lang.use("zh"), pytest.raises(ScenarioError) as refused:
        build()
    said = str(refused.value)
    assert CJK.search(said) and chinese in said, said
    with lang.use("en"), pytest.raises(ScenarioError) as refused:
        build()
    assert str(refused.value) == english


def test_every_refusal_is_translated():
    english, chinese = lang.catalog("en")["refusal"], lang.catalog("zh")["refusal"]
    assert sorted(key for key in english if chinese[key] == english[key]) == []


def test_a_scenario_that_is_right_is_validated_without_reading_a_catalog():
    code = (
        "import sys, closekit\n"
        "from closekit.library import SCENARIOS\n"
        "[closekit.Scenario.from_dict(s.to_dict()) for s in SCENARIOS.values()]\n"
        "assert 'closekit.lang' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_chinese_table_lines_its_columns_up_by_display_width():
    trace = Trace.from_json((FIXTURES / "linger-zero.json").read_text())
    with lang.use("zh"):
        table = claims.table([claims.judge(c, trace) for c in ("linger-zero-rst", "linger-zero-no-time-wait")])
    head, rows = table.splitlines()[1], [line for line in table.splitlines() if line.startswith("3.1 ")]
    column = lang.width(head[: head.index("结论")])
    assert len(rows) == 2 and all(lang.width(row[: row.index("成立")]) == column for row in rows)
    assert all(lang.width(line) <= 102 for line in table.splitlines())  # a comma may hang over the edge
    assert "服务器的 recv()" in table and "server's" not in table  # the evidence speaks Chinese too


def test_chinese_wraps_between_characters_and_never_before_a_comma():
    lines = lang.wrap("服务器带着 6 字节未读数据调用 close()，发出的报文：R.；客户端的 recv() = -1 ECONNRESET", 30)
    assert all(lang.width(line) <= 32 for line in lines) and len(lines) > 2
    assert not any(line[0] in "，；：" for line in lines)
    assert "".join(lines).replace(" ", "").startswith("服务器带着6字节")


@pytest.mark.parametrize("columns", range(14, 40))
def test_a_line_is_never_cut_between_a_number_and_its_unit(columns):
    for said in ("close() = 0，阻塞 43.3 ms 后返回；逗留时间 1 s", "close() = 0 after blocking 43.3 ms; linger 1 s"):
        lines = lang.wrap(said, columns)
        assert not any(line.startswith(("ms", "s ")) or line == "s" for line in lines), lines
        assert " ".join(lines).replace("\u00a0", "?").count("?") == 0  # the glue never shows


# ---- the exercises in a Chinese notebook ----------------------------------------------------------
@pytest.fixture
def chinese_assignment(tmp_path, monkeypatch):
    """The kernel runs in a Chinese assignment's folder, as Jupyter, nbval and nbgrader start it."""
    monkeypatch.delenv("CLOSEKIT_LANG", raising=False)
    folder = tmp_path / "ex01-close-zh"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.live
def test_a_widget_in_a_chinese_notebook_shows_and_judges_in_chinese(chinese_assignment):
    ex = catalog.linger_zero_time_wait()
    bundle = ex._repr_mimebundle_()
    assert "最后哪一端处于 TIME_WAIT" in bundle["text/html"] and "两端都不会" in bundle["text/html"]
    assert bundle["text/plain"].startswith("Predict: 客户端把 SO_LINGER 设为 {l_onoff=1, l_linger=0}")
    assert ex._ui["button"].description == "运行"
    ex._ui["radio"].value = "C"
    ex._ui["button"].click()
    shown = ex._ui["output"].outputs[0]["data"]["text/html"]
    assert "预测正确：C) 两端都不会。客户端的 close() 发出了 RST" in shown and "交互记录" in shown
    assert "参见第 3 章（notebooks/zh/03-so-linger.ipynb）中讲 l_linger = 0 异常释放的部分。" in ex.result.message
    assert 'notebooks/zh/03-so-linger.ipynb">notebooks/zh/03-so-linger.ipynb</a>' in shown  # a link to it
    assert ex._ui["button"].description == "再次运行"
    assert repr(ex.result).startswith("通过: 预测正确")


@pytest.mark.live
def test_checkers_in_a_chinese_notebook_explain_in_chinese(chinese_assignment):
    written = catalog.no_fin_close().check((close("client"),))
    assert not written.passed and written.message.startswith("还没有做到。参见第 3 章")
    assert "✘ 客户端的 close() 异常释放连接：它的 TCP 发出 RST，不发 FIN：客户端的 close() 发出了 FIN" in (
        written.message
    )
    assert repr(written).startswith("未通过: ")
    code = WriteCode(peers=("banner",)).check(plain_close)
    assert not code.passed and code.message.startswith("send_all_then_close() 只通过了 1 个对端中的 0 个。")
    assert "✘ 先发问候语的对端：对端收到了 1,000,000 字节中的" in code.message
    assert "你这一端发出了 RST（问候语没读就关闭" in code.message
    fix = catalog.million_fix()
    fix.answer("A")
    assert "它没有达到目标（服务器收到全部 1,000,000 字节，并且没有任何一方发出 RST）" in fix.run().message


@pytest.mark.live
def test_the_same_exercise_in_an_english_notebook_speaks_english(tmp_path, monkeypatch):
    monkeypatch.delenv("CLOSEKIT_LANG", raising=False)
    monkeypatch.chdir(tmp_path)
    ex = catalog.close_shared()
    assert ex.choices == {"A": "a FIN", "B": "an RST", "C": "nothing at all"}
    ex.answer("C")
    assert ex.run().message.startswith("Your prediction held: C) nothing at all. The parent's close() sent nothing")


def quit_with_status_three(sock):
    import os

    os._exit(3)


@pytest.mark.live
def test_an_experiment_that_stops_in_a_chinese_notebook_says_why_in_chinese(chinese_assignment):
    """The lab's helper words why a run stopped in the language of the notebook that asked for it (one
    helper serves both): a sync point not met, a process that ended mid-line, and in a fallback mode
    what the mode lacks, for a student's scenario and for a built-in one's recorded trace."""
    never = Scenario("never", "", steps=(wait_state("client", "TIME_WAIT"),), sync_timeout=0.2)
    with pytest.raises(SyncTimeoutError) as caught:
        closekit.run(never)
    assert str(caught.value) == (
        "场景 'never' 中的同步点 wait_state('client', state='TIME_WAIT') 在 0.2 秒内没有满足："
        "等待 client 的套接字进入 TIME_WAIT，但它处于 ESTABLISHED"
    )
    with pytest.raises(ExperimentError) as caught:
        closekit.run(Scenario("quits", "", steps=(call("client", quit_with_status_three),)))
    assert str(caught.value) == (
        "进程 client 在运行 call('client', function='quit_with_status_three') 时退出了，退出状态 3"
    )
    with lang.use("en"), pytest.raises(SyncTimeoutError, match=r"in 'never' was not met within 0\.2 s: waited for"):
        closekit.run(never)
    lab = Lab(sandbox="host-nocapture")
    try:
        delayed = Scenario("delayed", "", steps=(close("client"),), link=Link(delay=0.01))
        with pytest.raises(NotHereError) as caught:
            closekit.run(delayed, lab=lab)
        assert str(caught.value).startswith("场景 'delayed' 需要实验环境的线路（")
        assert str(caught.value).endswith("而模式 'host-nocapture' 没有（`closekit doctor` 会说明原因）")
        recorded = closekit.run("linger-waits-for-ack", lab=lab)
    finally:
        lab.close()
    recording = Path(closekit.__file__).parent / "recorded" / "linger-waits-for-ack.json"
    on = json.loads(recording.read_text(encoding="utf-8"))["recorded_on"]  # (re-made by python -m closekit.recorded)
    assert recorded.recorded.startswith(f"于 {on} 在 Linux ")
    assert "；没有在本机运行：它需要实验环境的线路（" in recorded.recorded
    assert recorded.recorded.endswith("；本机运行的是模式 host-nocapture")


@pytest.mark.live
# ---- closekit verify --lang ---------------------------------------------------------------------
def test_verify_takes_a_language(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["verify", "--help"])
    assert done.value.code == 0 and "--lang {en,zh}" in capsys.readouterr().out
    assert cli.main(["verify", "--lang", "zh", "--section", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("文档中的论断") and "shut-wr-half-close" in out and "成立" in out
    assert "Linux 的不同之处：" in out and "SHUT_RD 会丢弃已经在套接字接收缓冲区中等待的数据。" in out
    assert cli.main(["verify", "--lang", "en", "--section", "2", "--json"]) == 0
    assert '"claim": "SHUT_WR is a half-close' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "environ", "says"),
    [
        (["verify", "--lang", "fr"], {}, "invalid choice: 'fr' (choose from 'en', 'zh')"),
        (["verify", "--section", "2"], {"CLOSEKIT_LANG": "fr"}, "CLOSEKIT_LANG is 'fr'; the languages are: en, zh"),
        (["verify", "--lang", "zh", "--section", "9"], {}, "no claims in section '9'; the sections are: 1, 2"),
    ],
)
def test_verify_refuses_a_language_or_section_it_does_not_have(argv, environ, says):
    env = {**{k: v for k, v in os.environ.items() if k != "CLOSEKIT_LANG"}, **environ}
    done = subprocess.run([sys.executable, "-m", "closekit", *argv], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and says in done.stderr and done.stdout == ""
