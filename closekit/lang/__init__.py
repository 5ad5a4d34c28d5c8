"""The language a student reads: which one, and the words in it.

The two editions of the course share their code cells byte for byte, so no code line can choose the
language. It is chosen where the notebook runs:

1. ``CLOSEKIT_LANG`` (``en`` or ``zh``) wins; any other non-empty value is an error naming the choices.
2. Otherwise the working directory says it. Jupyter, nbval and nbgrader (autograde, and the copies
   its commands make of an assignment folder) start a notebook's kernel in the notebook's folder, so
   a kernel whose folder is, or lies under, a folder named ``zh`` (the chapters in ``notebooks/zh/``),
   or whose folder's name ends in ``-zh`` (an assignment such as ``ex01-close-zh``), speaks Chinese.
3. Otherwise English.

:func:`use` overrides both for a block (the CLI's ``--lang``, tests). The words are data: one TOML
catalog per language beside this file (``en.toml``, ``zh.toml``), read on first use. A key missing
from the current language's catalog raises :class:`~closekit.errors.MessageError`, and the test suite
checks that both catalogs have the same keys with the same ``{fields}``. Messages are formatted with
``str.format``: a literal brace is written ``{{`` or ``}}``.

Claims keep their English text in ``closekit/claims.py``; their Chinese text is ``claims-zh.toml``,
keyed by claim id (:func:`claim_words`).

To add a language: add its code to :data:`LANGUAGES`, a ``<code>.toml`` with every key of
``en.toml``, a ``claims-<code>.toml``, and its edition in ``closekit/book/book.toml``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path

from closekit.errors import LanguageError, MessageError

TYPE_CHECKING = False  # (not typing's: the lab's helper imports this module at start, and typing costs ms)
if TYPE_CHECKING:
    from typing import Any, Protocol

    class _Claim(Protocol):
        id: str
        text: str
        linux_text: str | None


__all__ = [
    "ENV",
    "LANGUAGES",
    "catalog",
    "claim_catalog",
    "claim_words",
    "current",
    "detect",
    "edition_name",
    "pad",
    "text",
    "texts",
    "use",
    "width",
    "word",
    "wrap",
]

LANGUAGES = ("en", "zh")  # the first is the default
ENV = "CLOSEKIT_LANG"
HERE = Path(__file__).parent

_chosen: contextvars.ContextVar[str | None] = contextvars.ContextVar("closekit_lang", default=None)


def _checked(lang: str, where: str) -> str:
    if lang not in LANGUAGES:
        raise LanguageError(f"{where} is {lang!r}; the languages are: {', '.join(LANGUAGES)}")
    return lang


def detect(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> str:
    """The language by the rules above, from `environ` (default os.environ) and `cwd` (default the
    process's working directory)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(ENV, "")
    if chosen:
        return _checked(chosen, ENV)
    try:
        folder = Path(cwd if cwd is not None else os.getcwd())
    except FileNotFoundError:  # the working directory was deleted: nothing to read it from
        return LANGUAGES[0]
    for lang in LANGUAGES[1:]:
        if lang in folder.parts or folder.name.endswith(f"-{lang}"):
            return lang
    return LANGUAGES[0]


def current() -> str:
    """The language in force: the innermost :func:`use`, else :func:`detect`."""
    return _chosen.get() or detect()


@contextlib.contextmanager
def use(lang: str) -> Iterator[str]:
    """Speak `lang` inside the block, whatever the environment and the working directory say."""
    token = _chosen.set(_checked(lang, "the language"))
    try:
        yield lang
    finally:
        _chosen.reset(token)


def edition_name(name: str, lang: str) -> str:
    """The name of `lang`'s edition of an exercise: `ex01-close` is `ex01-close-zh` in Chinese."""
    return name if _checked(lang, "the language") == LANGUAGES[0] else f"{name}-{lang}"


def _toml(name: str) -> dict[str, Any]:
    """A catalog file beside this module, parsed (tomllib is imported here: the lab's helper imports this
    module at start, and most runs word nothing)."""
    import tomllib

    return tomllib.loads((HERE / name).read_text(encoding="utf-8"))


@functools.cache
def catalog(lang: str) -> dict[str, Any]:
    """The parsed catalog of `lang` (nested tables, as in its TOML file)."""
    return _toml(f"{_checked(lang, 'the language')}.toml")


def _lookup(key: str, lang: str) -> Any:
    node: Any = catalog(lang)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise MessageError(f"no message {key!r} in closekit/lang/{lang}.toml")
        node = node[part]
    return node


def text(key: str, /, **fields: object) -> str:
    """The message `key` (dotted: ``"predict.held"``) in the current language, with `fields` filled in."""
    lang = current()
    found = _lookup(key, lang)
    if not isinstance(found, str):
        raise MessageError(f"{key!r} in closekit/lang/{lang}.toml is a table, not a message: use texts()")
    return found.format(**fields)


def texts(key: str, /, **fields: object) -> dict[str, str]:
    """The table `key` of short messages (e.g. the choices of a question) in the current language, each
    with `fields` filled in."""
    lang = current()
    found = _lookup(key, lang)
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise MessageError(f"{key!r} in closekit/lang/{lang}.toml is not a table of messages")
    return {k: v.format(**fields) for k, v in found.items()}


def word(table: str, name: str) -> str:
    """`name` as the table `table` words it (``word("side", "client")``), or `name` itself if absent."""
    return texts(table).get(name, name)


def width(s: str) -> int:
    """How many columns `s` takes in a terminal: a wide (CJK) character takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def pad(s: str, columns: int) -> str:
    """`s` followed by spaces up to `columns` display columns (see `width`)."""
    return s + " " * max(columns - width(s), 0)


def wrap(s: str, columns: int) -> list[str]:
    """`s` in lines of at most `columns` display columns: at spaces where there are any, and between
    any two wide characters (Chinese has no spaces between words); never between a number and its
    unit ("43.3 ms" is one duration to a reader, and to the sanitizers that mask it)."""
    lines: list[str] = []
    line = ""
    for token in _tokens(_UNIT.sub(rf"\1{_GLUE}\2", s)):
        if line and width(line.rstrip() + token.rstrip()) > columns and token not in _NO_LINE_START:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    if line.strip():
        lines.append(line.rstrip())
    return [line.replace(_GLUE, " ") for line in lines]


_UNIT = re.compile(r"(\d) (ms|s|µs|bytes)\b")  # a number and its unit: kept on one line
_GLUE = "\u00a0"  # holds them together while the line is cut
_NO_LINE_START = frozenset("，。；：、）」』\uff01\uff1f")  # Chinese punctuation that never begins a line


def _tokens(s: str) -> list[str]:
    """Words with their trailing space, and each wide character alone."""
    out: list[str] = []
    word = ""
    for ch in s:
        if unicodedata.east_asian_width(ch) in "WF":
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        else:
            word += ch
            if ch == " ":
                out.append(word)
                word = ""
    if word:
        out.append(word)
    return out


# ---- claims --------------------------------------------------------------------------------------
@functools.cache
def claim_catalog(lang: str) -> dict[str, Any]:
    """`lang`'s claims file: ``claims`` (by claim id: text, and linux or linux_shared) and ``shared``
    (texts several claims share). The default language has none: its words are in closekit/claims.py."""
    if _checked(lang, "the language") == LANGUAGES[0]:
        return {"claims": {}, "shared": {}}
    return _toml(f"claims-{lang}.toml")


def claim_words(claim: _Claim) -> tuple[str, str | None]:
    """(what the claim says, what Linux does instead) in the current language."""
    lang = current()
    if lang == LANGUAGES[0]:
        return claim.text, claim.linux_text
    found = claim_catalog(lang)
    words = found["claims"].get(claim.id)
    if words is None:
        raise MessageError(f"no text for claim {claim.id!r} in closekit/lang/claims-{lang}.toml")
    if not claim.linux_text:
        return words["text"], None
    linux = words.get("linux") or found["shared"].get(words.get("linux_shared", ""))
    if linux is None:
        raise MessageError(f"no linux text for claim {claim.id!r} in closekit/lang/claims-{lang}.toml")
    return words["text"], linux


# ---- built-in scenarios ---------------------------------------------------------------------------
@functools.cache
def scenario_catalog(lang: str) -> dict[str, str]:
    """`lang`'s descriptions of the built-in scenarios, by name (`scenarios-<lang>.toml`); the default
    language has none: its words are the scenarios' own, in closekit/library.py."""
    if _checked(lang, "the language") == LANGUAGES[0]:
        return {}
    return _toml(f"scenarios-{lang}.toml")["scenarios"]


def scenario_words(name: str, description: str) -> str:
    """A scenario's description in the current language: a built-in scenario's translation where its
    description is the library's own, else the description as written (a student's own scenario)."""
    from closekit.library import SCENARIOS

    built_in = SCENARIOS.get(name)
    if built_in is None or built_in.description != description:
        return description
    return scenario_catalog(current()).get(name, description)
