"""Reference-solution requirement: rubric generation needs one, so problems without
any solution are quarantined when ``filters.require_solution`` is on."""

from __future__ import annotations

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep


class RequireSolution(ProblemStep):
    name = "solution"

    def __init__(self, exclusion_writer=None, required: bool = True):
        super().__init__(exclusion_writer)
        self.required = required

    def decide(self, doc: Document) -> tuple[bool, str]:
        sols = [s for s in doc.metadata.get("solutions", []) if s.strip()]
        doc.metadata["solutions"] = sols
        if not sols and self.required:
            return False, "no_solution"
        return True, "" if sols else "no_solution (kept)"
