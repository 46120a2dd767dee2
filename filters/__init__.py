"""Ingest filters, one concern per module, each a datatrove pipeline step; drops go
to the step's ``exclusion_writer`` (the quarantine) with their reason."""

from fineproofs.filters.base import ProblemStep
from fineproofs.filters.classify import QuestionTypeClassifier
from fineproofs.filters.decontaminate import DecontaminationFilter, Decontaminator, load_benchmark
from fineproofs.filters.figure import FigureDependence
from fineproofs.filters.language import LanguageFilter
from fineproofs.filters.latex import LatexSanity
from fineproofs.filters.length import LengthFilter
from fineproofs.filters.markup import MarkupNormaliser, normalise_markup
from fineproofs.filters.multipart import MultiPartDetector
from fineproofs.filters.separate import StatementSolutionSeparator
from fineproofs.filters.solution import RequireSolution

__all__ = [
    "DecontaminationFilter",
    "Decontaminator",
    "FigureDependence",
    "LanguageFilter",
    "LatexSanity",
    "LengthFilter",
    "MarkupNormaliser",
    "MultiPartDetector",
    "ProblemStep",
    "QuestionTypeClassifier",
    "RequireSolution",
    "StatementSolutionSeparator",
    "load_benchmark",
    "normalise_markup",
]
