"""One Chinese vocabulary: every concept has one term (closekit/lang/glossary.toml), no banned variant
appears anywhere in the Chinese material, and no line of Chinese prose is broken between two Chinese
characters (Markdown turns such a break into a stray space, in JupyterLab and in the book)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = tomllib.loads((ROOT / "closekit" / "lang" / "glossary.toml").read_text(encoding="utf-8"))["term"]
NOTEBOOKS = sorted((ROOT / "notebooks" / "zh").glob("*.ipynb")) + sorted(ROOT.glob("exercises/*/*-zh/*.ipynb"))
CATALOGS = sorted((ROOT / "closekit" / "lang").glob("*zh*.toml"))
CJK = "\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"  # characters, and full-width punctuation
BROKEN = re.compile(f"[{CJK}]\n[{CJK}]")


def _texts(path: Path) -> list[tuple[str, str]]:
    """(where, text) of a Chinese file: a catalog whole, a notebook's cells (source and outputs)."""
    if path.suffix == ".toml":
        return [(path.name, path.read_text(encoding="utf-8"))]
    out = []
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        out.append((f"{path.name} cell {i}", "".join(cell["source"])))
        for output in cell.get("outputs", []):
            for value in [output.get("text", ""), *output.get("data", {}).values()]:
                words = "".join(value) if isinstance(value, list) else value if isinstance(value, str) else ""
                out.append((f"{path.name} cell {i} output", words))
    return out


def test_every_term_has_one_chinese_word_its_banned_variants_and_a_note_in_each_language():
    seen: set[str] = set()
    for term in GLOSSARY:
        assert {"en", "zh", "banned", "note_en", "note_zh"} <= set(term), term
        assert term["zh"] not in seen and all(re.compile(b) for b in term["banned"])
        assert not any(re.search(b, term["zh"]) for b in term["banned"]), term["zh"]
        seen.add(term["zh"])


@pytest.mark.parametrize("path", [*NOTEBOOKS, *CATALOGS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_banned_variant_appears_in_the_chinese_material(path):
    found = [
        f"{where}: {match.group(0)!r} (say {term['zh']}) in …{text[max(0, match.start() - 15) : match.end() + 15]}…"
        for where, text in _texts(path)
        for term in GLOSSARY
        for banned in term["banned"]
        for match in re.finditer(banned, text)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_chinese_prose_is_not_broken_between_two_chinese_characters(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    broken = [
        f"cell {i}: …{match.group(0)!r}…"
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "markdown"
        for match in BROKEN.finditer("".join(cell["source"]))
    ]
    assert not broken, "\n".join(broken)


def test_the_check_sees_a_banned_variant_and_a_broken_line():
    assert any(re.search(b, "设置延迟时间为 1 秒") for t in GLOSSARY for b in t["banned"])
    assert not any(re.search(b, "设置逗留时间为 1 秒，问候语") for t in GLOSSARY for b in t["banned"])
    assert BROKEN.search("这是一行\n被折断的话")
    assert not BROKEN.search("a line\n不算") and not BROKEN.search("一段。\n\n新段")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_each_edition_of_the_book_has_the_glossary_page(lang):
    from closekit.book import editions, frame

    edition = next(e for e in editions.load().editions if e.lang == lang)
    page = frame.glossary(edition)
    assert page.startswith(f"# {edition.text['glossary']}\n")
    assert all(f"| {t['en']} | {t['zh']} |" in page for t in GLOSSARY)
    assert all(t["note_zh" if lang == "zh" else "note_en"] in page for t in GLOSSARY)
    assert "(?!" not in page  # a banned pattern is shown as the word it bans
