"""Base class of every problem filter: a datatrove ``BaseFilter`` that records its
decision on the document (``metadata["decisions"]``) and, when it drops, leaves the
reason for the exclusion writer (the quarantine)."""

from __future__ import annotations

from abc import abstractmethod

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter


class ProblemStep(BaseFilter):
    """Subclasses implement :meth:`decide` → ``(keep, reason)``; a kept document may
    carry a reason too (an annotation such as ``multi_part``)."""

    name = "problem filter"
    stage = "clean"  # ingest stage this filter's drops are counted under

    def __init__(self, exclusion_writer=None):
        super().__init__(exclusion_writer=exclusion_writer)

    @abstractmethod
    def decide(self, doc: Document) -> tuple[bool, str]: ...

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        try:
            keep, reason = self.decide(doc)
        except Exception as e:  # a filter must never crash the pipeline
            keep, reason = False, f"{self.name}_error: {type(e).__name__}: {e}"[:300]
        doc.metadata.setdefault("decisions", []).append({"step": self.name, "kept": bool(keep), "reason": reason})
        if not keep:
            doc.metadata["stage"] = self.stage
            return False, reason
        return True
