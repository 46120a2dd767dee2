"""Rubrics: the structure (checkpoints, chains, zero credit, deductions, caps), text <-> structure, validation.

Two text forms are read, both without loss.

This project's form (what the ``rubric`` prompt up to v1 asked for)::

    1. (2 points) checkpoint of the main solution
    2. (5 points) ...
    Alternative A:
    A1. (3 points) checkpoint of another complete solution
    A2. (4 points) ...
    Zero credit:
    - work that earns nothing
    Deductions:
    - (-1 points) a specific error
    - (cap at 5/7) a major flaw: the score is at most 5

The published Markdown form (FineProofs-RL's ``rubrics`` column, and what the
``rubric`` prompt asks for from v2 on): three sections whose headings may carry
numbering, bold markers or ``#``::

    1. **Checkpoints (7 pts total)**
    **Score one chain only: the best chain subtotal counts.**
    **Chain A: induction**
    * (2 pts) checkpoint
    * (5 pts) checkpoint
    **Chain B: generating functions**
    * ...
    * **Total (max 7)**: ...
    2. **Zero-credit items**
    * work that earns nothing
    3. **Deductions**
    * **-1**: a small slip
    * **Cap at 4/7**: a major flaw

A checkpoint is any line of the checkpoints section with a point value (``2 pts``,
``(3 points)``); a line indented below a checkpoint is a detail of it, not a new
one. In the deductions section a ``cap at x/7`` line is a cap, any other line with
a point value a deduction (stored negative: the section says it is subtracted).

Nothing is dropped: every line that is not a heading and not structured is kept
in :attr:`Rubric.notes`, and the parsed :class:`Rubric` keeps the exact text it was
read from in :attr:`Rubric.text`; :meth:`Rubric.render` returns that text, so what
the judge sees is what the writer wrote (``parse_rubric(t).render() == t``).
:func:`render_rubric` re-renders the structure in this project's form; it is used
for rubrics built in code (no ``text``).

Equality of two rubrics compares the scoring structure (items, zero credit,
deductions, caps, model, prompt version), not the wording around it
(``text``, ``notes``, ``form``).

Rules checked by :func:`validate_rubric`: the main chain (the first one) has at
least two checkpoints; every checkpoint is worth 1..7 whole points; every chain
sums to exactly 7, so 7 is reachable and never exceeded (a proof is scored by its
best chain, never by adding chains); deductions are negative and each at most 7 in
size; each cap is a whole number from 0 to 6 out of 7 (a rubric may have several).

Structured form (``rubrics.structured``): the writer answers one JSON document of
:func:`rubric_schema` under a grammar (llguidance on the transformers engine,
``response_format`` on HTTP servers)::

    {"checkpoints": [{"points": 2, "description": "..."}, {"points": 5, "description": "..."}],
     "zero_credit": ["..."], "deductions": [{"points": -1, "description": "..."}],
     "caps": [{"cap": 3, "description": "..."}]}

The schema itself encodes the point rules: ``checkpoints`` is one of the ordered
compositions of 7 into 2..``max_checkpoints`` parts (an ``anyOf`` of fixed-length
tuples whose ``points`` are constants), so a constrained decoder cannot write a sum
other than 7, a single checkpoint or a checkpoint over 7; deductions are -7..-1 and
caps 0..6. :func:`parse_rubric_json` reads the document (a server may ignore the
schema), renders it in this project's form and parses and validates that text like
any other reply, so the text the judge sees is what was validated.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from fineproofs.errors import DataError

# ---------------------------------------------------------------------------
# this project's form
# ---------------------------------------------------------------------------
_MAIN = re.compile(r"^\s*(\d+)[.)]\s*\(\s*(-?\d+)\s*(?:points?|pts?)\s*\)\s*(.*?)\s*$", re.I)
_ALT_HEAD = re.compile(r"^\s*alternative\s+([A-Z])\s*:?\s*$", re.I)
_ALT = re.compile(r"^\s*([A-Z])(\d+)[.)]\s*\(\s*(-?\d+)\s*(?:points?|pts?)\s*\)\s*(.*?)\s*$", re.I)
_DED = re.compile(r"^\s*[-*]\s*\(\s*(-?\d+)\s*(?:points?|pts?)\s*\)\s*(.+?)\s*$", re.I)
_BULLET = re.compile(r"^\s*[-*]\s*(.+?)\s*$")
_POINTISH = re.compile(r"\(\s*[-−]?\d+\s*(?:points?|pts?)\s*\)", re.I)

# ---------------------------------------------------------------------------
# both forms
# ---------------------------------------------------------------------------
_MARKUP = re.compile(r"\*+|^\s*#+\s*")  # bold/italic stars, heading marks (underscores stay: LaTeX subscripts)
_LEAD = re.compile(r"^\s*(?:[-+•>]\s+|\d+[.)]\s+|\(?[ivx]+\)\s+)*", re.I)
_HEAD = re.compile(
    r"^(?P<kind>checkpoints?|scoring checkpoints|zero[- ]credit(?:\s+items?)?|deductions?)"
    r"\s*(?:\([^)]*\))?\s*:?\s*$",
    re.I,
)
_CHAIN = re.compile(r"^(?i:chain)\s+([A-Z]|\d{1,2})\b")  # marks the published form
_CHAIN_ANY = re.compile(r"^(?i:chain|alternative|approach)\s+([A-Z]|\d{1,2})\b")  # a chain heading inside it
_TOTAL = re.compile(r"^(?:sub)?total\b", re.I)
_PTS = re.compile(r"(?<![\w./])(?:([-−–])(?=\d))?(\d+)\s*(?:-\s*)?(?:pts?|points?)\b", re.I)
_SIGNED = (  # a penalty written without "pts": leading "-1: ...", trailing "...: -1", or "(-1)"
    re.compile(r"^[\s(\[_]*([-−–])\s*(\d+)\b(?!\s*/)"),
    re.compile(r"[\s:(\[]([-−–])\s?(\d+)\s*[)\]]?\s*\.?\s*$"),
    re.compile(r"\(\s*([-−–])\s*(\d+)\s*\)"),
)
_CAP = re.compile(
    r"\bcap(?:ped|s)?\b(?:\s+(?:the\s+)?(?:score|total|grade|mark))?\s*(?:at|to)\s*(?:a\s+)?"
    r"(?:max(?:imum)?\s+(?:of\s+)?)?(\d+)(?:\s*/\s*(\d+)|\s*(?:pts?|points?)\b)?",
    re.I,
)
_BULLETED = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|\(?[a-z]\))\s+", re.I)
_PARTIAL = re.compile(r"^\W*(?:partial|if only|award\b|give\b)", re.I)
_OWN_SHAPE = {
    "main": "write it as 'N. (P points) description'",
    "alt": "write it as 'A1. (P points) description' under 'Alternative A:'",
    "zero": "zero-credit lines carry no points; write them as '- description'",
    "deductions": "write it as '- (-P points) description' or '- (cap at x/7) description'",
}
_SECTION_OF = {"checkpoint": "checkpoints", "scoring": "checkpoints", "zero": "zero", "deduction": "deductions"}


@dataclass
class RubricItem:
    """One scored line: a checkpoint (1..7), a deduction (negative) or a cap (the
    most a proof can score, 0..6 out of 7, when the flaw occurs)."""

    description: str
    points: int
    chain: str = ""  # solution chain; "" = main chain of this project's form


@dataclass
class Rubric:
    problem_id: str
    items: list[RubricItem]
    zero_credit: list[str] = field(default_factory=list)
    deductions: list[RubricItem] = field(default_factory=list)
    model: str = ""
    prompt_version: str = ""
    caps: list[RubricItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list, compare=False)  # lines kept as written, not structured
    text: str = field(default="", compare=False)  # the exact text parsed and validated ("" = built in code)
    form: str = field(default="own", compare=False)  # "own" or "published"

    def render(self) -> str:
        """The text FineProofs-RL stores in its ``rubrics`` column and the judge sees:
        the text as written when there is one, else the structure in this project's form."""
        return self.text if self.text else render_rubric(self)

    @property
    def chains(self) -> dict[str, list[RubricItem]]:
        """Checkpoints by chain label, in order of appearance (the first is the main chain)."""
        out: dict[str, list[RubricItem]] = {}
        for it in self.items:
            out.setdefault(it.chain, []).append(it)
        return out

    @property
    def cap(self) -> int | None:
        """The lowest cap of the rubric (the strictest), or None without caps."""
        return min((c.points for c in self.caps), default=None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rubric:
        """Inverse of :func:`dataclasses.asdict` (e.g. after a JSON round trip)."""
        d = dict(d)
        for key in ("items", "deductions", "caps"):
            d[key] = [RubricItem(**i) if isinstance(i, dict) else i for i in d.get(key) or []]
        return cls(**d)


class RubricError(DataError):
    """The text is not a valid 7-point rubric; the message says why (fed back to the writer)."""


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------


def parse_rubric(text: str, problem_id: str = "") -> Rubric:
    """A validated :class:`Rubric` from either text form; ``text`` is kept exactly.

    Raises :class:`RubricError` with a message fit to be fed back to the writer."""
    lines = text.splitlines()
    rubric = _parse_published(lines, problem_id) if _is_published(lines) else _parse_own(lines, problem_id)
    rubric.text = text
    validate_rubric(rubric)
    return rubric


def _plain(line: str) -> str:
    """A line without Markdown emphasis, heading marks, bullets or list numbers."""
    return _LEAD.sub("", _MARKUP.sub("", line)).strip()


def _heading(line: str) -> str | None:
    m = _HEAD.match(_plain(line))
    if not m:
        return None
    return _SECTION_OF[re.split(r"[\s-]", m.group("kind").lower())[0].rstrip("s")]


def _is_published(lines: list[str]) -> bool:
    return any(_heading(ln) == "checkpoints" or _CHAIN.match(_plain(ln)) for ln in lines)


def _parse_own(lines: list[str], problem_id: str) -> Rubric:
    r = Rubric(problem_id=problem_id, items=[], form="own")
    section = "main"
    current: RubricItem | None = None  # a checkpoint whose description may continue on the next lines
    for raw in lines:
        line = raw.strip()
        if not line:
            current = None
            continue
        if _ALT_HEAD.match(line):
            section = "alt"
            continue
        head = _heading(line)
        if head in ("zero", "deductions"):
            section = head
            continue
        if section in ("main", "alt") and _own_checkpoint(r, line, section, current):
            current = r.items[-1] if r.items else None
            continue
        current = None
        if section == "zero" and (m := _BULLET.match(line)):
            r.zero_credit.append(m.group(1))
        elif section == "deductions" and (m := _DED.match(line)):
            r.deductions.append(RubricItem(m.group(2), int(m.group(1))))
        elif section == "deductions" and (cap := _cap_item(line)):
            r.caps.append(cap)
        elif _POINTISH.search(line):
            # a line that looks like a scored line but does not parse is an error, not chatter
            raise RubricError(f"cannot read the line {line!r}: {_OWN_SHAPE[section]}")
        else:
            r.notes.append(raw)
    return r


def _own_checkpoint(r: Rubric, line: str, section: str, current: RubricItem | None) -> bool:
    """Adds the checkpoint (or the continuation of the last one) on ``line``; False if it is neither."""
    if section == "main" and (m := _MAIN.match(line)):
        r.items.append(RubricItem(m.group(3), int(m.group(2)), ""))
        return True
    if m := _ALT.match(line):
        r.items.append(RubricItem(m.group(4), int(m.group(3)), m.group(1).upper()))
        return True
    if current is not None and not _POINTISH.search(line) and not _CAP.search(line):
        current.description = f"{current.description} {line}".strip()
        return True
    return False


def _body(line: str) -> str:
    """A line without emphasis and without its bullet or list number (a leading '-' is a bullet, not a sign)."""
    return _BULLETED.sub("", _MARKUP.sub("", line), count=1)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _describe(line: str, m: re.Match | None = None) -> str:
    """The description of a scored line: the line without its bullet, emphasis and point value."""
    s = line if m is None else f"{line[: m.start()]} {line[m.end() :]}"
    s = _LEAD.sub("", _MARKUP.sub("", s))
    s = re.sub(r"\(\s*\)|\[\s*\]", " ", s)
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"\s+([.,;:])", r"\1", s)
    s = re.sub(r"[,;:]+(?=\.)", "", s).strip(" \t:;,|-–—")
    return s


def _cap_item(line: str, chain: str = "") -> RubricItem | None:
    """The cap on ``line`` (``cap at x/7``), or None; a cap out of anything but 7 is an error."""
    m = _CAP.search(_MARKUP.sub("", line))
    if not m:
        return None
    if m.group(2) and m.group(2) != "7":
        raise RubricError(f"the cap in {line.strip()!r} is out of {m.group(2)}; write caps out of 7, as 'cap at x/7'")
    return RubricItem(_describe(_MARKUP.sub("", line), m), int(m.group(1)), chain)


def _parse_published(lines: list[str], problem_id: str) -> Rubric:
    r = Rubric(problem_id=problem_id, items=[], form="published")
    section, chain, item_indent = "", "", -1
    for raw in lines:
        if not raw.strip():
            continue
        plain = _plain(raw)
        if head := _heading(raw):
            section, chain, item_indent = head, "", -1
            continue
        if m := _CHAIN_ANY.match(plain):
            section, chain, item_indent = "checkpoints", m.group(1).upper(), -1
            continue
        if section == "checkpoints":
            item_indent = _published_checkpoint(r, raw, chain, item_indent)
        elif section == "zero" and _BULLETED.match(raw):
            r.zero_credit.append(_describe(raw))
        elif section != "deductions" or not _published_deduction(r, raw):
            r.notes.append(raw)  # kept as written: not a heading and nothing to score
    return r


def _published_checkpoint(r: Rubric, raw: str, chain: str, item_indent: int) -> int:
    """Adds the checkpoint on ``raw`` or keeps the line as a note; returns the indent of the last checkpoint."""
    if cap := _cap_item(raw, chain):  # a cap written among the checkpoints is still a cap
        r.caps.append(cap)
        return item_indent
    plain, body = _plain(raw), _body(raw)
    m = _PTS.search(body)
    detail = item_indent >= 0 and _indent(raw) > item_indent and _BULLETED.match(raw)
    if m is None or detail or _TOTAL.match(plain) or _PARTIAL.match(plain):
        r.notes.append(raw)
        return item_indent
    points = int(m.group(2)) * (-1 if m.group(1) else 1)
    r.items.append(RubricItem(_describe(body, m), points, chain))
    return _indent(raw)


def _published_deduction(r: Rubric, raw: str) -> bool:
    """Adds the cap or deduction on ``raw``; False when the line carries neither."""
    if cap := _cap_item(raw):
        r.caps.append(cap)
        return True
    body = _body(raw)
    m = _PTS.search(body) or next((m for rx in _SIGNED if (m := rx.search(body))), None)
    if not m:
        return False
    r.deductions.append(RubricItem(_describe(body, m), -int(m.group(2))))
    return True


# ---------------------------------------------------------------------------
# validation and rendering
# ---------------------------------------------------------------------------


def _chain_label(r: Rubric, name: str, main: str) -> str:
    if name == main:
        return "the main solution" if not name else f"the main solution (chain {name})"
    return f"alternative {name}" if r.form == "own" else f"chain {name}"


def validate_rubric(r: Rubric) -> None:
    """Raises :class:`RubricError` saying which rule ``r`` breaks (see the module docstring)."""
    chains = r.chains
    main = r.items[0].chain if r.items else ""
    if len(chains.get(main, [])) < 2:
        where = "" if not main else f" (chain {main})"
        raise RubricError(f"the main solution{where} needs at least 2 checkpoints, found {len(chains.get(main, []))}")
    for it in r.items:
        if not 1 <= it.points <= 7:
            raise RubricError(f"checkpoint {it.description!r} is worth {it.points} points; each must be 1 to 7")
        if not it.description.strip():
            raise RubricError("a checkpoint has no description")
    for name, its in chains.items():
        total = sum(i.points for i in its)
        if total != 7:
            label = _chain_label(r, name, main)
            raise RubricError(f"the checkpoints of {label} add up to {total} points, they must add up to 7")
    for d in r.deductions:
        if not -7 <= d.points <= -1:
            raise RubricError(f"deduction {d.description!r} is {d.points} points; it must be between -7 and -1")
    for c in r.caps:
        if not 0 <= c.points <= 6:
            raise RubricError(
                f"cap {c.description!r} is at {c.points}/7; a cap must be a whole number from 0 to 6 out of 7"
            )


def render_rubric(r: Rubric) -> str:
    """The structure of ``r`` in this project's text form (notes and the original wording are not included)."""
    lines = []
    chains = r.chains
    main = r.items[0].chain if r.items else ""
    for n, it in enumerate(chains.get(main, []), 1):
        lines.append(f"{n}. ({it.points} points) {it.description}")
    for a in sorted(k for k in chains if k != main):
        lines.append(f"Alternative {a}:")
        for n, it in enumerate(chains[a], 1):
            lines.append(f"{a}{n}. ({it.points} points) {it.description}")
    if r.zero_credit:
        lines.append("Zero credit:")
        lines += [f"- {z}" for z in r.zero_credit]
    if r.deductions or r.caps:
        lines.append("Deductions:")
        lines += [f"- ({d.points} points) {d.description}" for d in r.deductions]
        lines += [f"- (cap at {c.points}/7) {c.description}" for c in r.caps]
    return "\n".join(lines)


def rubric_hash(texts) -> str:
    """A short fingerprint of a set of rubric texts (order-free), for provenance."""
    return hashlib.sha256("\n\n".join(sorted(texts)).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# structured (JSON) form
# ---------------------------------------------------------------------------
def _compositions(total: int, parts_max: int) -> list[tuple[int, ...]]:
    """Every ordered way to write ``total`` as a sum of at most ``parts_max`` positive whole numbers."""
    if total == 0:
        return [()]
    if parts_max == 0:
        return []
    return [(p, *rest) for p in range(1, total + 1) for rest in _compositions(total - p, parts_max - 1)]


def rubric_schema(max_checkpoints: int = 5, description_chars: int = 100, max_lines: int = 2) -> dict:
    """The JSON schema of a structured rubric reply (see the module docstring).

    ``checkpoints``: 2..``max_checkpoints`` items whose points add up to 7, written as
    an ``anyOf`` over the compositions of 7 (56 of them for 5 checkpoints), each a tuple
    (``prefixItems`` of ``{"points": const}`` objects, ``items: false``); descriptions are
    1..``description_chars`` characters. ``zero_credit``, ``deductions`` and ``caps`` hold at
    most ``max_lines`` items each, so a complete reply fits a small token budget."""
    if not 2 <= max_checkpoints <= 7:
        raise ValueError(f"max_checkpoints must be 2..7, not {max_checkpoints}")
    text = {"type": "string", "minLength": 1, "maxLength": description_chars}
    defs = {
        f"cp{p}": {
            "type": "object",
            "properties": {"points": {"const": p}, "description": text},
            "required": ["points", "description"],
            "additionalProperties": False,
        }
        for p in range(1, 8)
    }
    chains = [c for c in _compositions(7, max_checkpoints) if len(c) >= 2]
    checkpoints = {
        "anyOf": [
            {
                "type": "array",
                "prefixItems": [{"$ref": f"#/$defs/cp{p}"} for p in c],
                "items": False,
                "minItems": len(c),
                "maxItems": len(c),
            }
            for c in chains
        ]
    }

    def listed(item: dict) -> dict:
        return {"type": "array", "items": item, "maxItems": max_lines}

    def scored(key: str, lo: int, hi: int) -> dict:
        return {
            "type": "object",
            "properties": {key: {"type": "integer", "minimum": lo, "maximum": hi}, "description": text},
            "required": [key, "description"],
            "additionalProperties": False,
        }

    return {
        "title": "rubric",
        "type": "object",
        "properties": {
            "checkpoints": checkpoints,
            "zero_credit": listed(text),
            "deductions": listed(scored("points", -7, -1)),
            "caps": listed(scored("cap", 0, 6)),
        },
        "required": ["checkpoints", "zero_credit", "deductions", "caps"],
        "additionalProperties": False,
        "$defs": defs,
    }


def _one_line(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RubricError(f"{what} must be a string, not {type(value).__name__}")
    return " ".join(value.split())


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RubricError(f"{what} must be a whole number, not {value!r}")
    return value


def parse_rubric_json(answer: str, problem_id: str = "") -> Rubric:
    """A validated :class:`Rubric` from a structured reply (:func:`rubric_schema`).

    The document is read strictly (one JSON object, nothing after it; a fenced block is
    accepted; a reply cut at ``max_tokens`` after its complete checkpoints keeps them and
    the lists completed before the cut), turned into this project's text form and parsed back by
    :func:`parse_rubric`, so it passes the same validation as a text reply and
    ``render()`` is the validated text. Raises :class:`RubricError` saying what is wrong
    (a reply cut at ``max_tokens`` is unfinished JSON)."""
    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    text = _LATEX_IN_JSON.sub(r"\\\\", fenced.group(1) if fenced else text)
    try:
        obj, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        obj, end = _cut_after_checkpoints(text), len(text)
        if obj is None:
            raise RubricError("the reply is not a complete JSON rubric (cut short, or not JSON)") from None
    if text[end:].strip():
        raise RubricError("text after the JSON rubric")
    if not isinstance(obj, dict):
        raise RubricError("the JSON rubric must be an object")
    extra = sorted(set(obj) - {"checkpoints", "zero_credit", "deductions", "caps"})
    if extra:
        raise RubricError(f"unknown keys in the JSON rubric: {', '.join(extra)}")
    sections: dict[str, list] = {}
    for key in ("checkpoints", "zero_credit", "deductions", "caps"):
        sections[key] = obj.get(key) or []
        if not isinstance(sections[key], list):
            raise RubricError(f'"{key}" must be a list')
    r = Rubric(problem_id=problem_id, items=[])
    for i, cp in enumerate(sections["checkpoints"], 1):
        if not isinstance(cp, dict):
            raise RubricError(f"checkpoint {i} must be an object with points and description")
        r.items.append(RubricItem(_one_line(cp.get("description"), f"checkpoint {i}'s description"),
                                  _whole(cp.get("points"), f"checkpoint {i}'s points")))  # fmt: skip
    zero = [_one_line(z, "a zero-credit item") for z in sections["zero_credit"]]
    # an empty item, or one that is only a section heading ("Zero credit:"), says nothing: left out
    r.zero_credit = [z for z in zero if z and _heading(z) is None and not _CHAIN_ANY.match(_plain(z))]
    for d in sections["deductions"]:
        if not isinstance(d, dict):
            raise RubricError("a deduction must be an object with points and description")
        r.deductions.append(RubricItem(_one_line(d.get("description"), "a deduction's description"),
                                       _whole(d.get("points"), "a deduction's points")))  # fmt: skip
    for c in sections["caps"]:
        if not isinstance(c, dict):
            raise RubricError("a cap must be an object with cap and description")
        r.caps.append(RubricItem(_one_line(c.get("description"), "a cap's description"), _whole(c.get("cap"), "a cap")))
    validate_rubric(r)
    parsed = parse_rubric(render_rubric(r), problem_id)
    if _scores(parsed) != _scores(r):  # a description that reads as a scored line changed the rubric
        raise RubricError(
            f"a description reads as a heading or a scored line (read back as {_scores(parsed)}, written as "
            f"{_scores(r)}); write points only in the points fields"
        )
    return parsed


# LaTeX written with one backslash inside a JSON string (\theta, \frac, \beta, \nabla,
# \right): read as the command, not as the JSON escape \t, \f, \b, \n, \r plus letters
_LATEX_IN_JSON = re.compile(r"(?<!\\)\\(?=[bfnrt][A-Za-z])")
_CHECKPOINTS_KEY = re.compile(r'\{\s*"checkpoints"\s*:\s*')


def _cut_after_checkpoints(text: str) -> dict | None:
    """A reply cut at ``max_tokens`` after its complete ``checkpoints`` list (the schema
    writes it first): the checkpoints, and every later list that is complete; ``None``
    when the checkpoints themselves are unfinished."""
    m = _CHECKPOINTS_KEY.match(text)
    if not m:
        return None
    dec = json.JSONDecoder()
    try:
        checkpoints, pos = dec.raw_decode(text, m.end())
    except ValueError:
        return None
    obj: dict = {"checkpoints": checkpoints}
    for m in re.finditer(r',\s*"(zero_credit|deductions|caps)"\s*:\s*', text[pos:]):
        try:
            obj[m.group(1)], _ = dec.raw_decode(text, pos + m.end())
        except ValueError:
            break
    return obj


def _scores(r: Rubric) -> tuple:
    return (
        [(i.points, i.chain) for i in r.items],
        [d.points for d in r.deductions],
        [c.points for c in r.caps],
        len(r.zero_credit),
    )
