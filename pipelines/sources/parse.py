"""Parse step: a raw source document becomes a problem document (``text`` = the
statement, ``metadata["solutions"]``), or is quarantined with the reason
(unreadable input, redirect page, no problem section, empty problem)."""

from __future__ import annotations

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep
from fineproofs.pipelines.sources.errors import ParseError
from fineproofs.pipelines.sources.wiki import parse_wiki_page


class ParseFilter(ProblemStep):
    name = "parse"
    stage = "parsed"

    def decide(self, doc: Document) -> tuple[bool, str]:
        meta = doc.metadata
        if err := meta.get("raw_error"):
            return False, err
        if meta.get("format") == "wiki":
            try:
                doc.text, meta["solutions"] = parse_wiki_page(doc.text)
            except ParseError as e:
                return False, e.reason
        meta.setdefault("solutions", [])
        if not doc.text or not doc.text.strip():
            return False, "empty_problem"
        return True, ""
