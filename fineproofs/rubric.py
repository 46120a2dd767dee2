"""Rubrics: the structure (checkpoints, chains, zero credit, deductions), text <-> structure, validation.

Text form (what the rubric prompt asks for and what FineProofs-RL's ``rubrics``
column stores)::

    1. (2 points) checkpoint of the main solution
    2. (5 points) ...
    Alternative A:
    A1. (3 points) checkpoint of another complete solution
    A2. (4 points) ...
    Zero credit:
    - work that earns nothing
    Deductions:
    - (-1 points) a specific error

Rules checked by :func:`validate_rubric`: at least two main checkpoints; every
checkpoint worth 1..7 whole points; every chain (main and each alternative) sums to
exactly 7, so 7 is reachable and never exceeded (a proof is scored by its best
chain); deductions are negative and each at most 7 in size.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field

_MAIN = re.compile(r"^\s*(\d+)[.)]\s*\(\s*(-?\d+)\s*points?\s*\)\s*(.*?)\s*$", re.I)
_ALT_HEAD = re.compile(r"^\s*alternative\s+([A-Z])\s*:?\s*$", re.I)
_ALT = re.compile(r"^\s*([A-Z])(\d+)[.)]\s*\(\s*(-?\d+)\s*points?\s*\)\s*(.*?)\s*$")
_ZERO_HEAD = re.compile(r"^\s*zero[ -]credit\s*:?\s*$", re.I)
_DED_HEAD = re.compile(r"^\s*deductions?\s*:?\s*$", re.I)
_DED = re.compile(r"^\s*[-*]\s*\(\s*(-?\d+)\s*points?\s*\)\s*(.+?)\s*$", re.I)
_BULLET = re.compile(r"^\s*[-*]\s*(.+?)\s*$")


@dataclass
class RubricItem:
    description: str
    points: int
    chain: str = ""  # alternative solution chain; empty = main chain


@dataclass
class Rubric:
    problem_id: str
    items: list[RubricItem]
    zero_credit: list[str] = field(default_factory=list)
    deductions: list[RubricItem] = field(default_factory=list)
    model: str = ""
    prompt_version: str = ""

    def render(self) -> str:
        """The text form FineProofs-RL stores in its ``rubrics`` column."""
        return render_rubric(self)



class RubricError(ValueError):
    """The text is not a valid 7-point rubric; the message says why (fed back to the writer)."""


def parse_rubric(text: str, problem_id: str = "") -> Rubric:
    items: list[RubricItem] = []
    zero: list[str] = []
    deds: list[RubricItem] = []
    section = "main"
    current: RubricItem | None = None  # a checkpoint whose description may continue on the next lines
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            current = None
            continue
        if _ALT_HEAD.match(line):
            section = "alt"
            continue
        if _ZERO_HEAD.match(line):
            section = "zero"
            continue
        if _DED_HEAD.match(line):
            section = "ded"
            continue
        if section in ("main", "alt"):
            if section == "main" and (m := _MAIN.match(line)):
                current = RubricItem(m.group(3), int(m.group(2)), "")
                items.append(current)
                continue
            if m := _ALT.match(line):
                current = RubricItem(m.group(4), int(m.group(3)), m.group(1).upper())
                items.append(current)
                continue
            if current is not None and not re.search(r"\(\s*-?\d+\s*points?\s*\)", line, re.I):
                current.description = f"{current.description} {line}".strip()
                continue
        current = None
        if section == "zero" and (m := _BULLET.match(line)):
            zero.append(m.group(1))
            continue
        elif section == "ded" and (m := _DED.match(line)):
            deds.append(RubricItem(m.group(2), int(m.group(1))))
            continue
        # anything else is chatter around the scheme; lines that look like a
        # checkpoint but do not parse are errors, not chatter
        if re.search(r"\(\s*-?\d+\s*points?\s*\)", line, re.I):
            raise RubricError(f"cannot read the line {line!r}: write it as 'N. (P points) description'")
    rubric = Rubric(problem_id=problem_id, items=items, zero_credit=zero, deductions=deds)
    validate_rubric(rubric)
    return rubric


def validate_rubric(r: Rubric) -> None:
    main = [i for i in r.items if not i.chain]
    if len(main) < 2:
        raise RubricError(f"the main solution needs at least 2 checkpoints, found {len(main)}")
    chains: dict[str, list[RubricItem]] = {}
    for it in r.items:
        chains.setdefault(it.chain, []).append(it)
        if not 1 <= it.points <= 7:
            raise RubricError(f"checkpoint {it.description!r} is worth {it.points} points; each must be 1 to 7")
        if not it.description.strip():
            raise RubricError("a checkpoint has no description")
    for name, its in chains.items():
        total = sum(i.points for i in its)
        if total != 7:
            label = "the main solution" if not name else f"alternative {name}"
            raise RubricError(f"the checkpoints of {label} add up to {total} points, they must add up to 7")
    for d in r.deductions:
        if not -7 <= d.points <= -1:
            raise RubricError(f"deduction {d.description!r} is {d.points} points; it must be between -7 and -1")


def render_rubric(r: Rubric) -> str:
    lines = []
    main = [i for i in r.items if not i.chain]
    for n, it in enumerate(main, 1):
        lines.append(f"{n}. ({it.points} points) {it.description}")
    alts = sorted({i.chain for i in r.items if i.chain})
    for a in alts:
        lines.append(f"Alternative {a}:")
        for n, it in enumerate([i for i in r.items if i.chain == a], 1):
            lines.append(f"{a}{n}. ({it.points} points) {it.description}")
    if r.zero_credit:
        lines.append("Zero credit:")
        lines += [f"- {z}" for z in r.zero_credit]
    if r.deductions:
        lines.append("Deductions:")
        lines += [f"- ({d.points} points) {d.description}" for d in r.deductions]
    return "\n".join(lines)


def rubric_hash(texts) -> str:
    """A short fingerprint of a set of rubric texts (order-free), for provenance."""
    import hashlib

    return hashlib.sha256("\n\n".join(sorted(texts)).encode()).hexdigest()[:16]
