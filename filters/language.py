"""Language filter: keep English statements. A cheap, dependency-free test on the
prose (math removed): share of Latin letters and of common English function words."""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep
from fineproofs.text import split_math

_WORD = re.compile(r"[^\W\d_]+", re.U)
_EN = set(
    "the a an of and or to in is are be that for all with by on if then let prove show find "
    "there this which each every such as at from its it any not no two one number numbers where "
    "integer integers real positive points triangle given determine whether".split()
)


def _prose(text: str) -> str:
    """``text`` with every formula replaced by a blank (linear, see :func:`split_math`)."""
    return " ".join(split_math(text)[::2])


def english_score(text: str) -> tuple[float, float]:
    """``(latin letter share, English function-word share)`` of the prose."""
    prose = _prose(text)
    words = _WORD.findall(prose)
    if not words:
        return 1.0, 1.0
    letters = "".join(words)
    latin = sum(c.isascii() for c in letters) / len(letters)
    en = sum(w.lower() in _EN for w in words) / len(words)
    return latin, en


class LanguageFilter(ProblemStep):
    name = "language"

    def __init__(self, exclusion_writer=None, min_latin: float = 0.8, min_english: float = 0.12):
        super().__init__(exclusion_writer)
        self.min_latin, self.min_english = min_latin, min_english

    def decide(self, doc: Document) -> tuple[bool, str]:
        latin, en = english_score(doc.text)
        words = len(_WORD.findall(_prose(doc.text)))
        if latin < self.min_latin or (words >= 8 and en < self.min_english):
            return False, f"not_english (latin={latin:.2f}, function_words={en:.2f})"
        return True, ""
