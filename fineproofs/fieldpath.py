"""Field expressions: where a problem field lives in a table row.

A source's column mapping (``sources.columns``) maps a problem field to an expression,
parsed once when the profile loads (:func:`parse` raises ``ValueError`` with the reason,
which the profile loader reports as a :class:`~fineproofs.errors.ConfigError`):

- ``problem``: a top-level column (spaces and most punctuation are fine: ``Short Answer``);
- ``metadata.path``: a key of a nested struct (dict);
- ``tags[2]``, ``tags[-1]``, ``a.b[0].c``: an element of a list (negative counts from the end);
- ``year(EXPR)``: the first year 1900-2099 written in the text at EXPR (``"2022 Contests"``
  gives 2022; a whole number passes through), empty when there is none;
- ``segment(EXPR, I)``: the I-th ``/``-separated part of the text at EXPR (negative from
  the end): ``segment(metadata.path, -2)`` of ``"A/2022 Contests/IMO/123.json"`` is ``IMO``;
- ``A | B | C``: the first alternative with a non-empty value (else the first that
  resolved at all, e.g. to ``""``).

Nothing else: no code runs. An expression that does not resolve on a row (a key that
is absent, an index out of range, ``None`` on the way, a struct where a list is
expected) has the value ``None``: the field is left empty, and the caller decides
whether that is fatal (a row without a statement). Extractors pass a value that is not
text (a struct, a list) through unchanged, so the caller's type checks name it.

Config keys are dotted too (``grading.judges``, ``trainer.learning_rate``):
:func:`dig` reads one from a config (models and mappings alike) and :func:`set_dotted`
writes one into a config's data, for every override and table that names a setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# the problem fields a mapping may name (the keys of ``sources.columns``)
PROBLEM_FIELDS = (
    "problem",
    "solution",
    "answer",
    "question_type",
    "source",
    "competition",
    "category",
    "year",
    "url",
    "licence",
    "candidates",
    "path",
)
FUNCTIONS = {"year": 1, "segment": 2}  # name -> number of arguments
YEAR_RE = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_NAME = r"[^.\[\]|(),]+"
_STEP = re.compile(rf"\s*(?:(?P<name>{_NAME})|\[\s*(?P<index>-?\d+)\s*\])")
_CALL = re.compile(r"\s*(?P<func>[A-Za-z_]\w*)\s*\(")
_INDEX = re.compile(r"\s*\[\s*(-?\d+)\s*\]")
_INT = re.compile(r"\s*(-?\d+)\s*")


@dataclass(frozen=True)
class Path:
    """``a.b[0]``: keys and list indices from the row down."""

    steps: tuple[str | int, ...]

    def get(self, row: Any) -> Any:
        cur = row
        for s in self.steps:
            if isinstance(s, int):
                if not isinstance(cur, (list, tuple)) or not -len(cur) <= s < len(cur):
                    return None
                cur = cur[s]
            else:
                if not isinstance(cur, dict) or s not in cur:
                    return None
                cur = cur[s]
        return cur


@dataclass(frozen=True)
class Call:
    """``year(EXPR)`` / ``segment(EXPR, I)``."""

    func: str
    arg: Expr
    index: int = 0

    def get(self, row: Any) -> Any:
        v = self.arg.get(row)
        if self.func == "year":
            return year_in(v)
        if isinstance(v, str):
            parts = [p.strip() for p in v.split("/")]
            return parts[self.index] if -len(parts) <= self.index < len(parts) else None
        return v  # not text: passed through for the caller's type check


@dataclass(frozen=True)
class Expr:
    """Alternatives, first non-empty wins; ``text`` is the expression as written."""

    terms: tuple[Path | Call, ...]
    text: str

    def get(self, row: Any) -> Any:
        """The first non-empty alternative; else the first that resolved (``""``, ``[]``);
        else None (nothing resolved)."""
        found = None
        for t in self.terms:
            v = t.get(row)
            if not _empty(v):
                return v
            found = v if found is None else found
        return found


def year_in(v: Any) -> Any:
    """The first year 1900-2099 in ``v`` (text), ``v`` itself when it is a number, else None."""
    if isinstance(v, str):
        m = YEAR_RE.search(v)
        return int(m.group(0)) if m else None
    return v


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple, dict)) and not v)


def parse(text: str) -> Expr:
    """Parse a field expression; ``ValueError`` says what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            "empty field expression: write a column name such as `problem` or a path such as `metadata.path`"
        )
    expr, pos = _alternatives(text, 0)
    if pos != len(text):
        raise ValueError(_at(text, pos, "unexpected text"))
    return expr


def _alternatives(text: str, pos: int) -> tuple[Expr, int]:
    start, terms = pos, []
    while True:
        term, pos = _term(text, pos)
        terms.append(term)
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == "|":
            pos += 1
            continue
        return Expr(tuple(terms), text[start:pos].strip()), pos


def _term(text: str, pos: int) -> tuple[Path | Call, int]:
    m = _CALL.match(text, pos)
    if m:
        func = m.group("func")
        if func not in FUNCTIONS:
            raise ValueError(
                _at(
                    text,
                    m.start("func"),
                    f"unknown function {func}(): use one of " + ", ".join(f"{f}()" for f in FUNCTIONS),
                )
            )
        arg, pos = _alternatives(text, m.end())
        index = 0
        if FUNCTIONS[func] == 2:
            pos = _expect(text, pos, ",", f"{func}() takes an expression and an index, e.g. {func}(metadata.path, -2)")
            im = _INT.match(text, pos)
            if not im:
                raise ValueError(_at(text, pos, f"{func}() needs a whole-number index"))
            index, pos = int(im.group(1)), im.end()
        pos = _expect(text, pos, ")", f"{func}() is not closed")
        return Call(func, arg, index), pos
    return _path(text, pos)


def _path(text: str, pos: int) -> tuple[Path, int]:
    steps: list[str | int] = []
    while True:
        m = _STEP.match(text, pos)
        if not m or (m.group("name") is not None and not m.group("name").strip()):
            raise ValueError(_at(text, pos, "expected a column name" if not steps else "expected a key after '.'"))
        if m.group("index") is not None:
            if not steps:
                raise ValueError(_at(text, pos, "an index needs a column before it, e.g. tags[1]"))
            steps.append(int(m.group("index")))
        else:
            steps.append(m.group("name").strip())
        pos = m.end()
        while im := _INDEX.match(text, pos):
            steps.append(int(im.group(1)))
            pos = im.end()
        if pos < len(text) and text[pos] == "[":
            raise ValueError(_at(text, pos, "an index is a whole number in brackets, e.g. tags[-1]"))
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return Path(tuple(steps)), pos


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _expect(text: str, pos: int, ch: str, why: str) -> int:
    pos = _skip(text, pos)
    if pos >= len(text) or text[pos] != ch:
        raise ValueError(_at(text, pos, why))
    return pos + 1


def _at(text: str, pos: int, why: str) -> str:
    return f"bad field expression {text!r} at character {pos + 1}: {why}"


def check_mapping(mapping: dict[str, str]) -> dict[str, Expr]:
    """Every field of a column mapping parsed; ``ValueError`` naming the field otherwise."""
    out = {}
    for field, text in mapping.items():
        if field not in PROBLEM_FIELDS:
            raise ValueError(f"columns: unknown problem field {field!r}: use one of {', '.join(PROBLEM_FIELDS)}")
        try:
            out[field] = parse(text)
        except ValueError as e:
            raise ValueError(f"columns.{field}: {e}") from None
    return out


# --- dotted config keys -----------------------------------------------------------------

_STRICT = object()


def dig(obj: Any, key: str, missing: Any = _STRICT) -> Any:
    """The value at dotted ``key`` of a config: each step an attribute of a model or a key
    of a mapping (a mapping without the key gives None). A model without the attribute
    raises :class:`AttributeError`, or gives ``missing`` when that is passed."""
    node = obj
    for part in key.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif missing is _STRICT:
            node = getattr(node, part)
        else:
            node = getattr(node, part, missing)
            if node is missing:
                return missing
    return node


def set_dotted(data: dict, key: str, value: Any, *, create: bool = False) -> str:
    """Set dotted ``key`` in nested mappings ``data`` to ``value``; returns ``""``, or why it
    could not (``"x is not a mapping"``, ``"x is not a key"``). ``create``: missing mappings
    and leaves are added (free-form sections such as a training config's ``trainer:``);
    otherwise only keys already there are set."""
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        nxt = node.get(part)
        if nxt is None and create:
            nxt = node[part] = {}
        if nxt is None and part not in node:
            return f"{part} is not a key"
        if not isinstance(nxt, dict):
            return f"{part} is not a mapping"
        node = nxt
    if not create and leaf not in node:
        return f"{leaf} is not a key"
    node[leaf] = value
    return ""


__all__ = [
    "FUNCTIONS",
    "PROBLEM_FIELDS",
    "Call",
    "Expr",
    "Path",
    "check_mapping",
    "dig",
    "parse",
    "set_dotted",
    "year_in",
]
