"""Figure dependence: a statement that needs a picture the text does not carry
("in the figure below", an ``[asy]`` drawing, ``\\includegraphics``) cannot be
solved from text alone → quarantined (or only annotated when ``drop`` is off)."""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep

_FIGURE = re.compile(
    r"\[asy\]|\\includegraphics|\\begin\{(?:tikzpicture|figure|picture)\}|<img\b|\[img\]|"
    r"\b(?:in|from|see|using) the (?:figure|diagram|picture|image|drawing)\b|"
    r"\b(?:figure|diagram|picture) (?:below|above|shown)\b|\bshown (?:below|above|in the (?:figure|diagram))\b|"
    r"\bas shown\b|\bpictured\b",
    re.I,
)


def figure_reference(text: str) -> str:
    m = _FIGURE.search(text)
    return m.group(0) if m else ""


class FigureDependence(ProblemStep):
    name = "figure"
    stage = "classified"

    def __init__(self, exclusion_writer=None, drop: bool = True):
        super().__init__(exclusion_writer)
        self.drop = drop

    def decide(self, doc: Document) -> tuple[bool, str]:
        ref = figure_reference(doc.text)
        doc.metadata["figure_dependent"] = bool(ref)
        if ref:
            return (not self.drop), f"figure_dependent ({ref!r})"
        return True, ""
