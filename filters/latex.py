"""Broken-LaTeX check: unbalanced braces, an odd number of ``$`` or an environment
that is opened but never closed make a statement unusable → quarantined."""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemFilter

_ESCAPED = re.compile(r"\\[{}$]")


def latex_problem(text: str) -> str:
    """Empty string when the markup is sound, else what is wrong."""
    t = _ESCAPED.sub("", text)
    depth = 0
    for ch in t:
        depth += ch == "{"
        depth -= ch == "}"
        if depth < 0:
            return "unbalanced_braces"
    if depth:
        return "unbalanced_braces"
    if t.count("$") % 2:
        return "unbalanced_dollars"
    begins = re.findall(r"\\begin\{([^}]*)\}", t)
    ends = re.findall(r"\\end\{([^}]*)\}", t)
    if sorted(begins) != sorted(ends):
        return "unclosed_environment"
    return ""


class LatexSanity(ProblemFilter):
    name = "latex"

    def decide(self, doc: Document) -> tuple[bool, str]:
        problem = latex_problem(doc.text)
        return (False, f"broken_latex: {problem}") if problem else (True, "")
