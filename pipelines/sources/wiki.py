"""AoPS-wiki-style pages: one problem page per file (or per crawled page).

A page has ``==Problem==`` and one or more solution sections (``==Solution==``,
``==Solution 2==``, ``==Solutions==`` with ``===Solution k===`` subsections);
other sections (Remark, See Also, Video Solution) are dropped. Redirect pages and
pages without a problem section raise :class:`ParseError`. File names encode the
page title: ``/`` → ``__`` and spaces → ``_``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from fineproofs.pipelines.sources.errors import ParseError

AOPS_WIKI = "https://artofproblemsolving.com/wiki/index.php/"
_HEADING_LINE = re.compile(r"^==[^\n]*$", re.M)
_REDIRECT = re.compile(r"^\s*#REDIRECT\s*\[\[([^\]]+)\]\]", re.I)
_CATEGORY = re.compile(r"\[\[Category:\s*([^\]|]+)", re.I)
_SOLUTION = re.compile(r"^solution\b|^solutions$|^proof\b", re.I)
_TITLE = re.compile(r"^(?P<year>\d{4})\s+(?P<comp>.+?)\s+Problems?(?:/|\s)", re.I)
_CATEGORY_WORDS = ("Algebra", "Combinatorics", "Geometry", "Number Theory", "Inequality", "Functional Equation")


def title_from_filename(path: str | Path) -> str:
    return Path(path).stem.replace("__", "/").replace("_", " ")


def wiki_url(title: str, base: str = AOPS_WIKI) -> str:
    return base + quote(title.replace(" ", "_"), safe="/_()'-,.")


def title_fields(title: str) -> tuple[str, int | None]:
    """``"2021 USAMO Problems/Problem 3"`` → ``("USAMO", 2021)``."""
    m = _TITLE.match(title)
    return (m.group("comp").strip(), int(m.group("year"))) if m else ("", None)


def category_of(text: str) -> str:
    for cat in _CATEGORY.findall(text):
        for word in _CATEGORY_WORDS:
            if word.lower() in cat.lower():
                return "Inequality" if word == "Inequality" else word
    return ""


def _heading(line: str) -> tuple[int, str] | None:
    """``"== Title =="`` → ``(2, "Title")``: as many ``=`` (2 to 6) open as close; None
    when the line is not a heading. Linear (a regex with nested blank runs is not)."""
    line = line.rstrip()
    lead = len(line) - len(line.lstrip("="))
    trail = len(line) - len(line.rstrip("="))
    level = min(lead, trail, 6, len(line) // 2)
    if level < 2:
        return None
    return level, line[level : len(line) - level].strip()


def _sections(text: str) -> list[tuple[int, str, str]]:
    heads = [(m, h) for m in _HEADING_LINE.finditer(text) if (h := _heading(m.group(0)))]
    out = []
    for i, (m, (level, title)) in enumerate(heads):
        end = heads[i + 1][0].start() if i + 1 < len(heads) else len(text)
        out.append((level, title, text[m.end() : end].strip()))
    return out


def parse_wiki_page(text: str) -> tuple[str, list[str]]:
    """Wikitext of a problem page → ``(statement, solutions)`` (markup untouched)."""
    if m := _REDIRECT.match(text):
        raise ParseError("redirect", f"redirect to {m.group(1)}")
    sections = _sections(text)
    problem = [
        body for level, title, body in sections if level == 2 and title.lower() in ("problem", "problem statement")
    ]
    if not problem:
        raise ParseError("no_problem_section")
    statement = problem[0]
    solutions: list[str] = []
    i = 0
    while i < len(sections):
        level, title, body = sections[i]
        if level == 2 and _SOLUTION.match(title):
            subs = []
            j = i + 1
            while j < len(sections) and sections[j][0] > 2:
                if _SOLUTION.match(sections[j][1]):
                    subs.append(sections[j][2])
                j += 1
            if subs:  # ==Solutions== with ===Solution k=== (a shared preamble goes with each)
                solutions += [(body + "\n\n" + s).strip() for s in subs]
            elif body:
                solutions.append(body)
            i = j
            continue
        i += 1
    return statement, [s for s in solutions if s.strip()]
