"""Broken-LaTeX check: unbalanced braces, an odd number of ``$`` or an environment
that is opened but never closed make a statement unusable → quarantined."""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep

_ESCAPED = re.compile(r"\\[{}$]")
_BEGIN = re.compile(r"\\begin\{([^{}]*)\}")  # [^{}]: an unclosed \begin{ stops at the next brace (linear)
_END = re.compile(r"\\end\{([^{}]*)\}")


def latex_problem(text: str) -> str:
    """Empty string when the markup is sound, else what is wrong."""
    t = _ESCAPED.sub("", text)
    if _unbalanced(t):
        return "unbalanced_braces"
    if t.count("$") % 2:
        return "unbalanced_dollars"
    begins = _BEGIN.findall(t)
    ends = _END.findall(t)
    if sorted(begins) != sorted(ends):
        return "unclosed_environment"
    return ""


def _unbalanced(t: str) -> bool:
    """Braces close before they open, or stay open (scans brace runs, not every character)."""
    depth = 0
    for m in _BRACES.finditer(t):
        for ch in m.group(0):
            depth += 1 if ch == "{" else -1
            if depth < 0:
                return True
    return depth != 0


_BRACES = re.compile(r"[{}]+")


class LatexSanity(ProblemStep):
    name = "latex"

    def decide(self, doc: Document) -> tuple[bool, str]:
        problem = latex_problem(doc.text)
        return (False, f"broken_latex: {problem}") if problem else (True, "")
