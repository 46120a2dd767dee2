r"""LaTeX booklets and PDF-extracted booklet text.

Three layouts are recognised, in this order:

1. problem environments — ``\begin{problem}[label] ... \end{problem}`` (also
   ``exercise``/``question``/``prob``), each followed by optional ``solution``/
   ``proof`` environments; ``\section{Algebra}`` sets the category;
2. a section per problem — ``\section*{Problem 3}`` (or ``\subsection``/
   ``\paragraph``/``\item``-free variants) with ``\subsection*{Solution}``;
3. PDF-extracted text — lines starting ``Problem 3.`` / ``A1.`` and ``Solution.``.

``enumerate``/``itemize`` lists become ``(a) ...`` lines. Competition and year come
from the file name (``nlo_2022_booklet.tex`` → ``NLO``, 2022).

Linear time on any input: environments are paired with
:func:`fineproofs.text.iter_delimited` (an unterminated ``\begin{problem}`` is skipped,
never rescanned), optional ``[label]``s are at most 500 characters, and line-anchored
patterns never let a blank run span lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fineproofs.text import iter_delimited

_COMMENT = re.compile(r"(?<!\\)%[^\n]*")
_BODY = re.compile(r"\\begin\{document\}(.*?)(?:\\end\{document\}|\Z)", re.S)
_PROB_ENVS = "problem|exercise|question|prob|problema"
_SOL_ENVS = "solution|proof|soln|sol"
_ENV = re.compile(r"\\begin\{(?P<env>" + _PROB_ENVS + "|" + _SOL_ENVS + r")\*?\}(?:\[(?P<label>[^\]]{0,500})\])?", re.I)
_LIST = re.compile(r"\\begin\{(enumerate|itemize)\}(?:\[[^\]]{0,500}\])?")
_ITEM = re.compile(r"\\item(?:\[([^\]]{0,500})\])?\s*")
_LABEL = re.compile(r"\\label\{[^{}]*\}")
_SECTION = re.compile(r"\\(?P<kind>section|subsection|subsubsection|paragraph)\*?\{(?P<title>[^{}]*)\}")
_PROBLEM_TITLE = re.compile(r"^(?:problem|exercise|question)\s*(?P<label>[A-Z]?\d+[a-z]?)?\.?$", re.I)
_SOLUTION_TITLE = re.compile(r"^(?:solution|proof|answer)\b", re.I)
_TEXT_PROBLEM = re.compile(r"^[ \t]*(?:Problem\s+(?P<l1>[A-Z]?\d+)|(?P<l2>[ACGN]\d{1,2}))[.:)]\s*", re.M)
_TEXT_SOLUTION = re.compile(r"^[ \t]*(?:Solution|Proof)(?:\s*\d+)?[.:]\s*", re.M | re.I)


@dataclass
class BookletItem:
    label: str
    statement: str
    solutions: list[str] = field(default_factory=list)
    category: str = ""


def booklet_fields(path: str | Path) -> tuple[str, int | None]:
    """``nlo_2022_booklet.tex`` → ``("NLO", 2022)``."""
    stem = Path(path).stem
    year = re.search(r"(?:19|20)\d\d", stem)
    comp = re.match(r"[A-Za-z]+", stem)
    return (comp.group(0).upper() if comp else ""), (int(year.group(0)) if year else None)


def _env_end(m: re.Match) -> re.Pattern:
    return re.compile(r"\\end\{" + re.escape(m.group(1)) + r"\*?\}", re.I)


def _lists_to_text(tex: str) -> str:
    r"""``enumerate``/``itemize`` → lines ``(a) ...``; ``\item[(b)]`` keeps its label."""
    if "\\begin{" not in tex:
        return tex
    out, pos = [], 0
    for m, body_end, end in iter_delimited(tex, _LIST, lambda m: "\\end{" + m.group(1) + "}"):
        out += [tex[pos : m.start()], _items(tex[m.end() : body_end])]
        pos = end
    return "".join(out) + tex[pos:] if out else tex


def _items(body: str) -> str:
    counter = 0

    def item(m: re.Match) -> str:
        nonlocal counter
        counter += 1
        label = m.group(1) if m.group(1) is not None else f"({chr(ord('a') + (counter - 1) % 26)})"
        return "\n" + label + " "

    return _ITEM.sub(item, body).rstrip() + "\n"


def _clean(tex: str) -> str:
    tex = _lists_to_text(tex)
    tex = re.sub(r"\\(?:noindent|medskip|bigskip|smallskip|newline|par|qed|hfill)\b", " ", tex)
    tex = _LABEL.sub("", tex)
    return tex.strip()


def _category(title: str) -> str:
    t = title.strip()
    return "" if _PROBLEM_TITLE.match(t) or _SOLUTION_TITLE.match(t) else t


def _from_envs(body: str) -> list[BookletItem]:
    items: list[BookletItem] = []
    sections = [(m.start(), _category(m.group("title"))) for m in _SECTION.finditer(body)]
    counts: dict[str, int] = {}
    s, cat = 0, ""  # next section to pass; category of the last titled section passed
    for m, body_end, _ in iter_delimited(body, _ENV, _env_end):
        text = body[m.end() : body_end]
        while s < len(sections) and sections[s][0] < m.start():
            cat = sections[s][1] or cat
            s += 1
        env = m.group("env").lower()
        if env in _PROB_ENVS.split("|"):
            counts[cat] = counts.get(cat, 0) + 1
            label = (m.group("label") or "").strip() or f"{cat or 'Problem'} {counts[cat]}"
            items.append(BookletItem(label, _clean(text), [], cat))
        elif items:
            items[-1].solutions.append(_clean(text))
    return items


def _from_sections(body: str) -> list[BookletItem]:
    items: list[BookletItem] = []
    heads = list(_SECTION.finditer(body))
    category = ""
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(body)
        text = _clean(body[h.end() : end])
        title = h.group("title").strip()
        if pm := _PROBLEM_TITLE.match(title):
            items.append(BookletItem(f"Problem {pm.group('label') or len(items) + 1}", text, [], category))
        elif _SOLUTION_TITLE.match(title) and items:
            if text:
                items[-1].solutions.append(text)
        else:
            category = title
    return items


def _from_text(text: str) -> list[BookletItem]:
    items: list[BookletItem] = []
    heads = list(_TEXT_PROBLEM.finditer(text))
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        chunk = text[h.end() : end]
        parts = _TEXT_SOLUTION.split(chunk)
        items.append(
            BookletItem(h.group("l1") or h.group("l2"), parts[0].strip(), [p.strip() for p in parts[1:] if p.strip()])
        )
    return items


def split_booklet(text: str) -> list[BookletItem]:
    """A booklet's text → its problems (statements and solutions still in LaTeX)."""
    text = _COMMENT.sub("", text)
    if m := _BODY.search(text):
        text = m.group(1)
    for split in (_from_envs, _from_sections):
        if items := split(text):
            return items
    return _from_text(text)
