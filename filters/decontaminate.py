"""Decontamination against benchmark problems (IMO-ProofBench / AnswerBench CSVs, any
user CSV / JSONL / parquet, or a Hub dataset ``hf:<id>``).

Both sides go through the same :func:`~fineproofs.filters.canonical.canonical`
normalisation (markup, delimiters, unicode math, synonyms, variables anonymised). A
candidate is compared only with the benchmark problems sharing the most rare
features (inverted index), using these signals:

- ``ngram``: share of the benchmark's word n-grams (``ngram``, default 8) found in
  the candidate (containment, so forum framing around a copy does not dilute it);
- ``shingle``: share of the benchmark's character shingles found in the candidate;
- ``prose`` / ``prose3``: IDF-weighted share of the benchmark's prose words / word
  3-grams (IDF over all benchmark problems, so template phrasing such as "find all
  functions such that" weighs little);
- ``math``: IDF-weighted share of the benchmark's formula 4-grams (letters
  anonymised), the part a paraphrase keeps and a template-sharing problem changes;
- ``numbers``: share of the benchmark's constants (numbers other than 0, 1, 2).

:meth:`Decontaminator.decide` combines them: a copy needs the distinctive prose
backed by ``ngram``/``shingle``/formulas (formulas alone when the prose is mere
template), or every character shingle of the statement (a verbatim copy, even with its
math delimiters stripped); a paraphrase needs matching formulas plus distinctive words,
or rich prose mostly shared; all benchmark constants must be present in either case, and
a candidate that brings formulas of its own is another problem on the same template.

What survives rewording is found by retrieval (:mod:`fineproofs.filters.retrieval`): the
``neighbours`` benchmark problems nearest by canonical formula terms (renamed variables,
reordered summands, moved terms, ``a | b`` written as a fraction), formula 3-grams,
IDF-weighted words and constants, optionally an embedding endpoint.
:meth:`Decontaminator.paraphrase_score` turns a neighbour's views into one score and the
offline rule takes ``retrieval_threshold`` (0.55, chosen on the project's probe set:
``bench/bench_decontam.py``) for "the same problem reworded" (method ``retrieval``).
:meth:`Decontaminator.match_many` sends the candidates left to an LLM verifier
(:mod:`fineproofs.filters.verify`; method ``verifier``, with the model's reason).

IDF is computed over the index with document frequencies taken as shares of a
460-problem index (IMO-Bench's size), so a small user benchmark, or the 30 probe
references alone, weighs template words as little as a large one does, and adding
benchmark rows does not change what one problem's words weigh against each other.

Benchmarks are validated before any work (:func:`load_benchmark`,
:func:`load_benchmarks`): a missing, unreadable or malformed file, or any row that
cannot be read or has no problem text, raises :class:`~fineproofs.errors.DataError`
naming the file and the line; no row is skipped. Rows to check go through
:meth:`Decontaminator.check_rows`, which returns a :class:`RowVerdict` per row: a row
that cannot be read or lacks the text field is an *error*, never "not contaminated".
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datatrove.data import Document

from fineproofs.errors import DataError
from fineproofs.filters.base import ProblemStep
from fineproofs.filters.canonical import Canonical, canonical, ngrams, shingles
from fineproofs.filters.retrieval import Features, Neighbour, Retriever
from fineproofs.tables import TableRow, benchmark_rows

log = logging.getLogger(__name__)
_TRIVIAL = {"v", ",", "'"}
TEXT_FIELDS = ("Problem", "problem", "statement", "question", "text", "prompt")
ID_FIELDS = ("Problem ID", "problem_id", "id", "ID", "uid")


@dataclass(frozen=True)
class BenchmarkProblem:
    benchmark: str
    id: str
    text: str


@dataclass
class Match:
    benchmark: str
    benchmark_id: str
    method: str
    score: float
    signals: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # the verifier's short reason (method "verifier"), or why it could not answer

    def as_dict(self) -> dict:
        d = {
            "benchmark": self.benchmark,
            "benchmark_id": self.benchmark_id,
            "method": self.method,
            "score": round(self.score, 4),
        }
        if self.reason:
            d["reason"] = self.reason
        return d


def load_benchmark(path: str, text_field: str | None = None, id_field: str | None = None) -> list[BenchmarkProblem]:
    """Problems of one benchmark file (CSV / JSONL / parquet / ``hf:<id>``); its name is the
    file stem. :class:`DataError` (one line, naming the file and the line) when the file is
    missing, unreadable or malformed, has no problem column, or a row has no problem text."""
    rows = benchmark_rows(path)
    name = path[3:] if path.startswith("hf:") else Path(path).stem
    if not rows:
        raise DataError(f"benchmark {path} has no rows: nothing to decontaminate against")
    cols = list(rows[0][1])
    tf = text_field or next((c for c in TEXT_FIELDS if c in cols), None)
    idf = id_field or next((c for c in ID_FIELDS if c in cols), None)
    if tf is None:
        raise DataError(f"benchmark {path}: no problem column (tried {', '.join(TEXT_FIELDS)}); columns are {cols}")
    out = []
    for i, (line, r) in enumerate(rows):
        text = r.get(tf)
        if not isinstance(text, str) or not text.strip():
            what = "has no" if text is None or text == "" or tf not in r else f"has a non-text ({type(text).__name__})"
            raise DataError(f"benchmark {path}:{line}: row {what} {tf!r} problem text")
        pid = r.get(idf) if idf else None
        out.append(BenchmarkProblem(name, str(pid) if pid not in (None, "") else f"{name}:{i}", text.strip()))
    return out


def load_benchmarks(paths: Iterable[str]) -> list[list[BenchmarkProblem]]:
    """:func:`load_benchmark` for every file, all validated before returning."""
    return [load_benchmark(p) for p in paths]


@dataclass
class RowVerdict:
    """The decontamination verdict on one input row: ``error`` set (the row could not be
    checked: unreadable, no text field, text not a string) or ``match`` (None: clean)."""

    line: int
    row: dict[str, Any] | None
    match: Match | None = None
    error: str = ""

    @property
    def contaminated(self) -> bool | None:
        """True/False once checked; None when the row could not be checked."""
        return None if self.error else self.match is not None

    def output_row(self) -> dict[str, Any]:
        """The row with ``contaminated`` and ``contamination`` (only for checked rows)."""
        if self.error:
            raise ValueError(f"line {self.line} was not checked: {self.error}")
        return dict(
            self.row or {},
            contaminated=self.match is not None,
            contamination=self.match.as_dict() if self.match else None,
        )


@dataclass
class _Feats:
    ngrams: set  # word n-grams of the full canonical stream
    shingles: set  # character shingles of the compact text
    prose: set  # prose words
    prose3: set  # prose word 3-grams
    math: set  # anonymised formula 4-grams
    numbers: set  # numeric constants other than 0, 1, 2
    terms: set  # formula terms with an operator or a letter (canonical.terms, no bare numbers)
    mass: dict = field(default_factory=dict)  # IDF mass per kind, computed once per statement


class Decontaminator:
    """Index of benchmark problems; :meth:`match` returns the best :class:`Match` or None."""

    def __init__(
        self,
        problems: list[BenchmarkProblem],
        ngram: int = 8,
        ngram_overlap: float = 0.5,
        shingle_similarity: float = 0.6,
        shingle_size: int = 8,
        weighted_overlap: float = 0.6,
        math_overlap: float = 0.75,
        paraphrase_words: float = 0.3,
        max_df: float = 0.05,
        retrieval: bool = True,
        retrieval_threshold: float = 0.55,
        formula_weight: float = 0.6,
        formula_mass: float = 4.0,
        retrieval_math: float = 0.3,
        neighbours: int = 3,
        embedder=None,
    ):
        self.problems = problems
        self.use_retrieval = retrieval
        self.t_retrieval, self.w_formula, self.formula_mass = retrieval_threshold, formula_weight, formula_mass
        self.t_rmath = retrieval_math
        self.top_k = neighbours
        self.n, self.k = ngram, shingle_size
        self.t_ngram, self.t_shingle, self.t_weighted = ngram_overlap, shingle_similarity, weighted_overlap
        self.t_math, self.t_para = math_overlap, paraphrase_words
        canon = [canonical(p.text) for p in problems]
        self.feats = [self._feats(c) for c in canon]
        self.retriever = Retriever([p.text for p in problems], embedder=embedder, canon=canon) if retrieval else None
        # IDF over the benchmark problems; small user benchmarks are smoothed as if
        # among ~460 problems (IMO-Bench size) so the absolute thresholds keep meaning
        n = max(460, len(problems))
        scale = n / max(1, len(problems))
        self.idf: dict[str, dict] = {}
        self.df: dict[str, Counter] = {}
        for kind in ("prose", "prose3", "math"):
            df = self.df[kind] = Counter(g for f in self.feats for g in getattr(f, kind))
            # document frequencies scaled to the smoothed size: a word in 2/3 of a small
            # index is as common as in 2/3 of a large one (template words weigh little)
            self.idf[kind] = {g: math.log((n + 1) / (c * scale + 0.5)) for g, c in df.items()}
        self.default_idf = math.log((n + 1) / 0.5)
        # the IDF of a word found once, relative to a full-size index: the unit in which the
        # absolute prose/formula masses of :meth:`decide` are written (1 from 460 problems up)
        self.unit = math.log((n + 1) / (scale + 0.5)) / math.log((n + 1) / 1.5)
        max_count = max(2, int(max_df * len(problems)))
        self.index: dict = defaultdict(list)
        for i, f in enumerate(self.feats):
            for kind in ("prose", "prose3", "math"):
                for g in getattr(f, kind):
                    if self.df[kind][g] <= max_count:
                        self.index[(kind, g)].append(i)

    def _feats(self, text: str | Canonical) -> _Feats:
        c = canonical(text) if isinstance(text, str) else text
        return _Feats(
            ngrams(c.words, self.n),
            shingles(c.compact, self.k),
            set(c.prose),
            ngrams(c.prose, 3),
            {g for g in ngrams(c.anon, 4) if sum(t not in _TRIVIAL for t in g) >= 2},
            c.numbers,
            {t for t in c.terms if not t.isdigit()},
        )

    def _w(self, kind: str, b: set, c: set) -> float:
        idf = self.idf[kind]
        tot = sum(idf.get(g, self.default_idf) for g in b)
        return sum(idf.get(g, self.default_idf) for g in b & c) / tot if tot else 0.0

    def _mass(self, kind: str, grams: set) -> float:
        idf = self.idf[kind]
        return sum(idf.get(g, self.default_idf) for g in grams)

    def _total(self, f: _Feats, kind: str) -> float:
        m = f.mass.get(kind)
        if m is None:
            m = f.mass[kind] = self._mass(kind, getattr(f, kind))
        return m

    def signals(self, b: _Feats, c: _Feats) -> dict[str, float]:
        pm = self._mass("prose3", b.prose3 & c.prose3)
        mm = self._mass("math", b.math & c.math)
        p1m = self._mass("prose", b.prose & c.prose)
        pt, mt, p1t = self._total(b, "prose3"), self._total(b, "math"), self._total(b, "prose")
        return {
            "pm": pm,
            "pt": pt,
            "mm": mm,
            "mt": mt,
            "p1m": p1m,
            "p1t": p1t,
            "ngram": len(b.ngrams & c.ngrams) / len(b.ngrams) if b.ngrams else 0.0,
            "shingle": len(b.shingles & c.shingles) / len(b.shingles) if b.shingles else 0.0,
            "prose": p1m / p1t if p1t else 0.0,
            "prose3": pm / pt if pt else 0.0,
            "math": mm / mt if b.math and mt else 0.0,
            "numbers": len(b.numbers & c.numbers) / len(b.numbers) if b.numbers else -1.0,
            "chars": float(len(b.shingles)),
            # formulas of the candidate the benchmark problem lacks; constants it adds
            "extra_math": self._total(c, "math") - mm,
            "extra_terms": float(len(c.terms - b.terms)),
            "terms": float(len(b.terms)),
        }

    def decide(self, b: _Feats, s: dict[str, float]) -> tuple[str, float] | None:
        """``(method, score)`` when the signals say "same problem".

        - copy: the distinctive prose 3-grams are there (``prose3``), backed by a
          textual signal (``ngram``/``shingle``) or the formulas; when the prose is
          mere template (little prose information) the formulas must match;
        - paraphrase with formulas: formulas match and enough distinctive words;
        - paraphrase in words: rich prose mostly shared and the same constants.
        Constants (numbers ≥ 3) of the benchmark problem must all be present. A candidate
        that adds formulas of its own (more than half the benchmark problem's formula mass
        and ten rare 4-grams' worth) is a longer problem on the same template, not a copy;
        a words-only paraphrase may add few formula terms of its own either (at most half as
        many as the benchmark problem has: none to a problem stated in words).
        """
        p1 = s["p1m"] / s["p1t"] if s["p1t"] else 0.0
        p3 = s["pm"] / s["pt"] if s["pt"] else 0.0
        numbers_ok = s["numbers"] < 0 or s["numbers"] >= 0.99
        if not numbers_ok:
            return None
        hits = []
        backed = s["ngram"] >= self.t_ngram or s["shingle"] >= 0.75 * self.t_shingle or s["math"] >= self.t_math
        if s["shingle"] >= 0.95 and s["ngram"] >= self.t_ngram and s["chars"] >= 40:
            # verbatim (every character shingle of a statement of some length is there): a copy
            # however much of it is template; catches copies whose math lost its delimiters
            hits.append(("shingle", s["shingle"]))
        own_math = s["extra_math"] > 0.5 * s["mt"] + 10 * self.unit * self.default_idf
        # formula terms of its own, unless the text itself is there (a disguise reflows formulas)
        own_terms = s["extra_terms"] > max(2.0, s["terms"]) and s["shingle"] < 0.8
        if (
            p3 >= self.t_weighted
            and backed
            and not own_math
            and not own_terms
            and (s["p1t"] >= 12 * self.unit or s["math"] >= self.t_math)
        ):
            method = max(("ngram", s["ngram"]), ("shingle", s["shingle"]), ("weighted", p3), key=lambda x: x[1])
            hits.append(method)
        if s["math"] >= self.t_math and p1 >= self.t_para and s["math"] + p1 >= 1.2:
            hits.append(("math+words", (s["math"] + p1) / 2))
        if (
            p1 >= 0.5
            and s["p1t"] >= 30 * self.unit
            and (s["math"] >= 0.5 or s["mt"] < 30 * self.unit)
            and not own_math
            and s["extra_terms"] <= 0.5 * s["terms"]
        ):
            hits.append(("weighted", p1))
        return max(hits, key=lambda h: h[1]) if hits else None

    def candidates(self, c: _Feats, top: int = 8) -> list[int]:
        """Benchmark problems sharing rare features, the ``top`` by shared IDF mass."""
        mass: dict[int, float] = defaultdict(float)
        for kind in ("prose", "prose3", "math"):
            idf = self.idf[kind]
            for g in getattr(c, kind):
                for i in self.index.get((kind, g), ()):
                    mass[i] += idf[g]
        best = sorted(mass, key=lambda i: (-mass[i], i))[:top]
        return sorted(best)

    @classmethod
    def from_files(cls, paths: Iterable[str], **params) -> Decontaminator:
        """An index over every problem of the benchmark files (validated first)."""
        return cls([p for ps in load_benchmarks(paths) for p in ps], **params)

    def check_row(self, row: Any, text_field: str, line: int = 0) -> RowVerdict:
        """The verdict on one input row; a row without ``text_field`` (or with a value that
        is not text) is an error, never "not contaminated"."""
        if not isinstance(row, dict):
            return RowVerdict(line, None, error=f"malformed_row: not an object ({type(row).__name__})")
        text = row.get(text_field)
        if text is None:
            return RowVerdict(line, row, error=f"missing_text_field: no {text_field!r} in this row")
        if not isinstance(text, str):
            return RowVerdict(line, row, error=f"bad_field: {text_field!r} is {type(text).__name__}, expected text")
        return RowVerdict(line, row, self.match(text))

    def check_rows(
        self, rows: Iterable[TableRow | tuple[int, dict | None, str]], text_field: str
    ) -> Iterator[RowVerdict]:
        """Verdicts for ``(line, row, error)`` rows (e.g. :func:`fineproofs.tables.iter_table`);
        reader errors pass through as errors."""
        for line, row, err in rows:
            yield RowVerdict(line, None, error=err) if err else self.check_row(row, text_field, line)

    def paraphrase_score(self, views: dict[str, float]) -> float:
        """How surely a retrieved neighbour is the same problem reworded, from its views
        (:meth:`~fineproofs.filters.retrieval.Retriever.views`), 0 when it cannot be:

        - every constant of the benchmark problem must be there, and it must have formula
          terms, whose 3-gram structure is shared at least ``retrieval_math``;
        - the formula evidence is the terms' Dice overlap, discounted when the shared terms
          weigh less than ``formula_mass`` terms seen once (a few generic terms such as
          ``v^2`` prove nothing);
        - the score is ``formula_weight`` × formula evidence + the rest × the share of the
          benchmark problem's distinctive words found; or, when the terms match at least
          0.75 and 0.4 of the words are there, the larger of the two.

        A problem without formulas scores 0: words alone cannot tell a reworded copy from
        another question on the same setup offline; that is the verifier's work."""
        n, m, t = views.get("numbers", -1.0), views.get("math", -1.0), views.get("terms", -1.0)
        if 0 <= n < 0.99 or 0 <= m < self.t_rmath or t < 0:
            return 0.0
        words = max(0.0, views.get("words", 0.0))
        if t >= 0.75 and words >= 0.4:  # every formula term there and many of the words
            return max(t, words)
        formula = t * min(1.0, views.get("terms_mass", 0.0) / self.formula_mass)
        return self.w_formula * formula + (1 - self.w_formula) * words

    def paraphrase(self, views: dict[str, float]) -> bool:
        """The offline verdict on a retrieved neighbour: :meth:`paraphrase_score` at least
        ``retrieval_threshold`` (chosen on the project's probe set, see
        ``bench/bench_decontam.py``)."""
        return self.paraphrase_score(views) >= self.t_retrieval

    def neighbours(self, text: str | Canonical, k: int | None = None) -> list[tuple[BenchmarkProblem, Neighbour]]:
        """The ``k`` (default ``neighbours``) benchmark problems nearest to ``text`` by the
        retrieval views, best first: the candidates a verifier is asked about."""
        if self.retriever is None or not self.problems or not text:
            return []
        q = Features.of(canonical(text) if isinstance(text, str) else text)
        vector = None
        if self.retriever.embedder is not None:
            vector = self.retriever.embedder.embed([text if isinstance(text, str) else " ".join(text.words)])[0]
        found = self.retriever.search(q, k or self.top_k, vector=vector)
        return [(self.problems[n.index], n) for n in found]

    def match(self, text: str) -> Match | None:
        if not self.problems or not text:
            return None
        c = canonical(text)
        best = self._match_lexical(c)
        if best is not None or self.retriever is None:
            return best
        for p, n in self.neighbours(c if self.retriever.embedder is None else text):
            if self.paraphrase(n.views):
                return Match(p.benchmark, p.id, "retrieval", self.paraphrase_score(n.views), n.views)
        return None

    def match_many(
        self, texts: list[str], verifier=None, floor: float = 0.2, *, offline: bool = True
    ) -> list[Match | None]:
        """:meth:`match` for every text; with a ``verifier``
        (:class:`~fineproofs.filters.verify.SameProblemVerifier`), every text left
        unmatched sends its retrieved neighbours (at most ``neighbours``, blended score at
        least ``floor``) to it, all pairs in one batch. A pair judged the same problem is a
        match of method ``verifier`` carrying the model's reason; a pair the model could not
        judge (after its retries) is a match of method ``undecided`` carrying why, so a
        problem nobody cleared is never taken for clean. ``offline=False``: the texts are
        known to have no offline match (only the verifier runs)."""
        out = [self.match(t) if offline and isinstance(t, str) else None for t in texts]
        if verifier is None:
            return out
        pairs: list[tuple[str, str]] = []
        owners: list[tuple[int, BenchmarkProblem, Neighbour]] = []
        for i, (t, m) in enumerate(zip(texts, out)):
            if m is None and isinstance(t, str) and t:
                for p, n in self.neighbours(t):
                    if n.score >= floor:
                        pairs.append((t, p.text))
                        owners.append((i, p, n))
        verdicts = verifier.verify(pairs) if pairs else []
        undecided: dict[int, Match] = {}
        for (i, p, n), v in zip(owners, verdicts):
            if v.same and (out[i] is None or n.score > out[i].score):
                out[i] = Match(p.benchmark, p.id, "verifier", n.score, n.views, reason=v.reason)
            elif v.same is None and i not in undecided:
                undecided[i] = Match(p.benchmark, p.id, "undecided", n.score, n.views, reason=v.failure)
        for i, m in undecided.items():
            if out[i] is None:
                out[i] = m
        return out

    def _match_lexical(self, text: str | Canonical) -> Match | None:
        c = self._feats(text)
        best: Match | None = None
        for i in self.candidates(c):
            s = self.signals(self.feats[i], c)
            d = self.decide(self.feats[i], s)
            if d and (best is None or d[1] > best.score):
                p = self.problems[i]
                best = Match(p.benchmark, p.id, d[0], d[1], s)
        return best


_MATCH_KEYS = (
    "ngram",
    "ngram_overlap",
    "shingle_similarity",
    "shingle_size",
    "weighted_overlap",
    "math_overlap",
    "paraphrase_words",
)


def decontam_settings(cfg) -> dict[str, Any]:
    """Every :class:`Decontaminator` keyword a profile's
    :class:`~fineproofs.config.DecontamConfig` sets: the matching rules and the retrieval
    settings, the embedding client included."""
    from fineproofs.filters.retrieval import EmbeddingClient

    out: dict[str, Any] = {k: getattr(cfg, k) for k in _MATCH_KEYS}
    out |= {
        "retrieval": cfg.retrieval,
        "retrieval_threshold": cfg.retrieval_threshold,
        "neighbours": cfg.neighbours,
    }
    if cfg.embeddings_url:
        out["embedder"] = EmbeddingClient(cfg.embeddings_url, cfg.embeddings_model)
    return out


class DecontaminationFilter(ProblemStep):
    """Quarantine problems matching a benchmark problem (reason ``contaminated``);
    the match (benchmark, benchmark_id, method, score) goes on the document."""

    name = "decontaminate"
    stage = "decontaminated"

    def __init__(self, benchmark_files: list[str], exclusion_writer=None, **params):
        super().__init__(exclusion_writer)
        self.benchmark_files = list(benchmark_files)
        self.params = params
        self._problems = [p for ps in load_benchmarks(self.benchmark_files) for p in ps]  # validated before any work
        self._dec: Decontaminator | None = None

    @property
    def decontaminator(self) -> Decontaminator:
        if self._dec is None:
            self._dec = Decontaminator(self._problems, **self.params)
        return self._dec

    def filter(self, doc: Document):
        self.decontaminator  # noqa: B018 -- built outside the per-document guard: a broken index stops the run
        return super().filter(doc)

    def decide(self, doc: Document) -> tuple[bool, str]:
        m = self.decontaminator.match(doc.text)
        if m is None:
            return True, ""
        doc.metadata["contamination"] = m.as_dict()
        return False, f"contaminated: {m.benchmark}/{m.benchmark_id} ({m.method} {m.score:.2f})"
