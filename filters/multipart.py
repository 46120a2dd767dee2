"""Multi-part detection: "(a) ... (b) ...", "(i) ... (ii) ...", "Part 1 ... Part 2"
statements are annotated (``metadata["multi_part"]``) and dropped only when asked."""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep

_PARTS = [
    re.compile(r"(?:^|\s)\(a\)\s.*?(?:^|\s)\(b\)\s", re.S | re.M),
    re.compile(r"(?:^|\s)\(i\)\s.*?(?:^|\s)\(ii\)\s", re.S | re.M),
    re.compile(r"(?:^|\n)\s*a\)\s.*?\n\s*b\)\s", re.S),
    re.compile(r"\bpart\s*(?:1|\(?a\)?)\b.*?\bpart\s*(?:2|\(?b\)?)\b", re.S | re.I),
]


def is_multi_part(text: str) -> bool:
    return any(p.search(text) for p in _PARTS)


class MultiPartDetector(ProblemStep):
    name = "multi_part"
    stage = "classified"

    def __init__(self, exclusion_writer=None, drop: bool = False):
        super().__init__(exclusion_writer)
        self.drop = drop

    def decide(self, doc: Document) -> tuple[bool, str]:
        multi = is_multi_part(doc.text)
        doc.metadata["multi_part"] = multi
        if multi:
            return (not self.drop), "multi_part"
        return True, ""
