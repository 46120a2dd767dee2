"""Length bounds on the statement (characters after markup normalisation)."""

from __future__ import annotations

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep


class LengthFilter(ProblemStep):
    name = "length"

    def __init__(self, exclusion_writer=None, min_chars: int = 20, max_chars: int = 8000):
        super().__init__(exclusion_writer)
        self.min_chars, self.max_chars = min_chars, max_chars

    def decide(self, doc: Document) -> tuple[bool, str]:
        n = len(doc.text)
        if n < self.min_chars:
            return False, f"too_short ({n} < {self.min_chars} chars)"
        if n > self.max_chars:
            return False, f"too_long ({n} > {self.max_chars} chars)"
        return True, ""
