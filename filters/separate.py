"""Statement/solution separation: scraped statements often carry their solution
("... Prove that X. Solution: ..."), and solutions often open with the short answer
("Answer: 16"). Split the first off into ``solutions`` and lift the second into
``answer``."""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep

_INLINE_SOLUTION = re.compile(
    r"\n\s*(?:\*\*|__)?(?:Solution|Proof|Official solution)(?:\s*\d+)?\s*[.:]?(?:\*\*|__)?\s*(?:\n|[.:]\s)", re.I
)
_ANSWER = re.compile(r"^\s*(?:\*\*)?Answer(?:\*\*)?\s*[:.]\s*(?:\*\*)?\s*(.+?)\s*(?:\n|$)", re.I)


def split_statement(text: str) -> tuple[str, str]:
    """``(statement, embedded solution or "")``."""
    m = _INLINE_SOLUTION.search("\n" + text)
    if not m or m.start() == 0:
        return text, ""
    cut = m.start() - 1
    return text[:cut].strip(), text[cut:].strip()


def answer_from_solution(solution: str) -> str:
    m = _ANSWER.match(solution)
    if not m:
        return ""
    ans = m.group(1).strip().rstrip(".")
    return ans if len(ans) <= 200 else ""


class StatementSolutionSeparator(ProblemStep):
    name = "separate"

    def decide(self, doc: Document) -> tuple[bool, str]:
        statement, solution = split_statement(doc.text)
        sols = doc.metadata.setdefault("solutions", [])
        reason = ""
        if solution:
            doc.text = statement
            body = re.sub(r"^\W*(?:Solution|Proof|Official solution)\s*\d*\s*[.:]?\W*", "", solution, flags=re.I)
            if body and body not in sols:
                sols.insert(0, body)
            reason = "solution_split_from_statement"
        if not doc.metadata.get("answer"):
            for s in sols:
                if ans := answer_from_solution(s):
                    doc.metadata["answer"] = ans
                    break
        return (False, "empty_after_split") if not doc.text.strip() else (True, reason)
