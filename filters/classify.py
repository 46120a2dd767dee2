"""Proof-vs-answer classification by rules.

- explicit proof verbs ("prove", "show that", "demonstrate") → ``proof``;
- justification questions ("find all", "determine all", "does there exist",
  "is it possible", "determine whether") → ``proof`` (the answer needs a proof);
- computation questions ("find the number", "how many", "compute", "what is") or a
  source-tagged word problem whose answer is a short closed form (sympy-normalised,
  see :mod:`fineproofs.filters.answers`) → ``answer``.

Problems whose type is not in ``keep`` are quarantined with the type as reason.
"""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.answers import normalise_answer
from fineproofs.filters.base import ProblemStep

_PROOF = re.compile(r"\b(prove|show(?:\s+that)?|demonstrate|verify that|establish|justify)\b", re.I)
_JUSTIFY = re.compile(
    r"\b(find all|determine all|find every|determine every|describe all|characteri[sz]e|does there exist|do there exist|"
    r"is there|are there|is it (?:possible|true)|can (?:one|we|the|it)|determine whether|decide whether|determine if)\b",
    re.I,
)
_COMPUTE = re.compile(
    r"\b(find the (?:number|value|sum|product|remainder|area|length|least|smallest|largest|greatest|maximum|minimum)|"
    r"how many|compute|calculate|evaluate|what is|what are|find|determine)\b",
    re.I,
)
_ANSWER_TYPES = {"math-word-problem", "answer", "mcq", "multiple-choice", "numerical", "short-answer"}


def classify(statement: str, answer: str = "", hint: str = "") -> str:
    """``"proof"`` or ``"answer"``."""
    if _PROOF.search(statement) or _JUSTIFY.search(statement):
        return "proof"
    if hint.lower() in _ANSWER_TYPES or _COMPUTE.search(statement):
        return "answer"
    if answer and normalise_answer(answer) is not None:
        return "answer"
    return "proof" if hint.lower() == "proof" else "answer"


class QuestionTypeClassifier(ProblemStep):
    name = "classify"
    stage = "classified"

    def __init__(self, exclusion_writer=None, keep: tuple[str, ...] = ("proof",)):
        super().__init__(exclusion_writer)
        self.keep = tuple(keep)

    def decide(self, doc: Document) -> tuple[bool, str]:
        meta = doc.metadata
        qtype = classify(doc.text, meta.get("answer", ""), meta.get("question_type", ""))
        meta["question_type"] = qtype
        if qtype == "answer" and (norm := normalise_answer(meta.get("answer", ""))) is not None:
            meta["answer_normalised"] = norm
        if qtype not in self.keep:
            return False, f"question_type={qtype}"
        return True, f"question_type={qtype}"
