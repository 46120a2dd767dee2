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
template); a paraphrase needs matching formulas plus distinctive words, or rich prose
mostly shared; all benchmark constants must be present in either case.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.data import Document

from fineproofs.filters.base import ProblemFilter
from fineproofs.filters.canonical import canonical, ngrams, shingles

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

    def as_dict(self) -> dict:
        return {"benchmark": self.benchmark, "benchmark_id": self.benchmark_id, "method": self.method, "score": round(self.score, 4)}


def _rows(path: str) -> list[dict]:
    if path.startswith("hf:"):
        from fineproofs.pipelines.sources.rows import iter_dataset

        spec, _, split = path[3:].partition("@")
        return [row for _, row in iter_dataset(spec, split or "train")]
    p = Path(path)
    if p.suffix == ".csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            return list(csv.DictReader(f))
    if p.suffix in (".jsonl", ".json"):
        out = []
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        return out
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    raise ValueError(f"benchmark file {path}: expected .csv, .jsonl or .parquet")


def load_benchmark(path: str, text_field: str | None = None, id_field: str | None = None) -> list[BenchmarkProblem]:
    """Problems of one benchmark file; its name is the file stem."""
    rows = _rows(path)
    name = path[3:] if path.startswith("hf:") else Path(path).stem
    if not rows:
        return []
    cols = list(rows[0])
    tf = text_field or next((c for c in TEXT_FIELDS if c in cols), None)
    idf = id_field or next((c for c in ID_FIELDS if c in cols), None)
    if tf is None:
        raise ValueError(f"benchmark {path}: no problem column (tried {TEXT_FIELDS}); columns are {cols}")
    out = []
    for i, r in enumerate(rows):
        text = str(r.get(tf) or "").strip()
        if text:
            out.append(BenchmarkProblem(name, str(r.get(idf)) if idf and r.get(idf) else f"{name}:{i}", text))
    return out


@dataclass
class _Feats:
    ngrams: set  # word n-grams of the full canonical stream
    shingles: set  # character shingles of the compact text
    prose: set  # prose words
    prose3: set  # prose word 3-grams
    math: set  # anonymised formula 4-grams
    numbers: set  # numeric constants other than 0, 1, 2


class Decontaminator:
    """Index of benchmark problems; :meth:`match` returns the best :class:`Match` or None."""

    def __init__(self, problems: list[BenchmarkProblem], ngram: int = 8, ngram_overlap: float = 0.5,
                 shingle_similarity: float = 0.6, shingle_size: int = 8, weighted_overlap: float = 0.6,
                 math_overlap: float = 0.75, paraphrase_words: float = 0.3, max_df: float = 0.05):
        self.problems = problems
        self.n, self.k = ngram, shingle_size
        self.t_ngram, self.t_shingle, self.t_weighted = ngram_overlap, shingle_similarity, weighted_overlap
        self.t_math, self.t_para = math_overlap, paraphrase_words
        self.feats = [self._feats(p.text) for p in problems]
        # IDF over the benchmark problems; small user benchmarks are smoothed as if
        # among ~460 problems (IMO-Bench size) so the absolute thresholds keep meaning
        n = max(460, len(problems))
        self.idf: dict[str, dict] = {}
        for kind in ("prose", "prose3", "math"):
            df = Counter(g for f in self.feats for g in getattr(f, kind))
            self.idf[kind] = {g: math.log((n + 1) / (c + 0.5)) for g, c in df.items()}
        self.default_idf = math.log((n + 1) / 0.5)
        max_count = max(2, int(max_df * len(problems)))
        self.index: dict = defaultdict(list)
        for i, f in enumerate(self.feats):
            for kind in ("prose", "prose3", "math"):
                for g in getattr(f, kind):
                    if self.idf[kind][g] >= math.log((n + 1) / (max_count + 0.5)):
                        self.index[(kind, g)].append(i)

    def _feats(self, text: str) -> _Feats:
        c = canonical(text)
        return _Feats(ngrams(c.words, self.n), shingles(c.compact, self.k), set(c.prose), ngrams(c.prose, 3),
                      {g for g in ngrams(c.anon, 4) if sum(t not in _TRIVIAL for t in g) >= 2}, c.numbers)

    def _w(self, kind: str, b: set, c: set) -> float:
        idf = self.idf[kind]
        tot = sum(idf.get(g, self.default_idf) for g in b)
        return sum(idf.get(g, self.default_idf) for g in b & c) / tot if tot else 0.0

    def _mass(self, kind: str, grams: set) -> float:
        idf = self.idf[kind]
        return sum(idf.get(g, self.default_idf) for g in grams)

    def signals(self, b: _Feats, c: _Feats) -> dict[str, float]:
        return {
            "pm": self._mass("prose3", b.prose3 & c.prose3), "pt": self._mass("prose3", b.prose3),
            "mm": self._mass("math", b.math & c.math), "mt": self._mass("math", b.math),
            "p1m": self._mass("prose", b.prose & c.prose), "p1t": self._mass("prose", b.prose),
            "ngram": len(b.ngrams & c.ngrams) / len(b.ngrams) if b.ngrams else 0.0,
            "shingle": len(b.shingles & c.shingles) / len(b.shingles) if b.shingles else 0.0,
            "prose": self._w("prose", b.prose, c.prose),
            "prose3": self._w("prose3", b.prose3, c.prose3),
            "math": self._w("math", b.math, c.math) if b.math else 0.0,
            "numbers": len(b.numbers & c.numbers) / len(b.numbers) if b.numbers else -1.0,
        }

    def decide(self, b: _Feats, s: dict[str, float]) -> tuple[str, float] | None:
        """``(method, score)`` when the signals say "same problem".

        - copy: the distinctive prose 3-grams are there (``prose3``), backed by a
          textual signal (``ngram``/``shingle``) or the formulas; when the prose is
          mere template (little prose information) the formulas must match;
        - paraphrase with formulas: formulas match and enough distinctive words;
        - paraphrase in words: rich prose mostly shared and the same constants.
        Constants (numbers ≥ 3) of the benchmark problem must all be present.
        """
        p1 = s["p1m"] / s["p1t"] if s["p1t"] else 0.0
        p3 = s["pm"] / s["pt"] if s["pt"] else 0.0
        numbers_ok = s["numbers"] < 0 or s["numbers"] >= 0.99
        if not numbers_ok:
            return None
        hits = []
        backed = s["ngram"] >= self.t_ngram or s["shingle"] >= 0.75 * self.t_shingle or s["math"] >= self.t_math
        if p3 >= self.t_weighted and backed and (s["p1t"] >= 12 or s["math"] >= self.t_math):
            method = max(("ngram", s["ngram"]), ("shingle", s["shingle"]), ("weighted", p3), key=lambda x: x[1])
            hits.append(method)
        if s["math"] >= self.t_math and p1 >= self.t_para and s["math"] + p1 >= 1.2:
            hits.append(("math+words", (s["math"] + p1) / 2))
        if p1 >= 0.5 and s["p1t"] >= 30 and (s["math"] >= 0.5 or s["mt"] < 30):
            hits.append(("weighted", p1))
        return max(hits, key=lambda h: h[1]) if hits else None

    def candidates(self, c: _Feats, top: int = 16) -> list[int]:
        """Benchmark problems sharing rare features, the ``top`` by shared IDF mass."""
        mass: dict[int, float] = defaultdict(float)
        for kind in ("prose", "prose3", "math"):
            idf = self.idf[kind]
            for g in getattr(c, kind):
                for i in self.index.get((kind, g), ()):
                    mass[i] += idf[g]
        best = sorted(mass, key=lambda i: (-mass[i], i))[:top]
        return sorted(best)

    def match(self, text: str) -> Match | None:
        if not self.problems or not text:
            return None
        c = self._feats(text)
        best: Match | None = None
        for i in self.candidates(c):
            s = self.signals(self.feats[i], c)
            d = self.decide(self.feats[i], s)
            if d and (best is None or d[1] > best.score):
                p = self.problems[i]
                best = Match(p.benchmark, p.id, d[0], d[1], s)
        return best


class DecontaminationFilter(ProblemFilter):
    """Quarantine problems matching a benchmark problem (reason ``contaminated``);
    the match (benchmark, benchmark_id, method, score) goes on the document."""

    name = "decontaminate"
    stage = "decontaminated"

    def __init__(self, benchmark_files: list[str], exclusion_writer=None, **params):
        super().__init__(exclusion_writer)
        self.benchmark_files = list(benchmark_files)
        self.params = params
        self._dec: Decontaminator | None = None

    @property
    def decontaminator(self) -> Decontaminator:
        if self._dec is None:
            probs = [p for f in self.benchmark_files for p in load_benchmark(f)]
            self._dec = Decontaminator(probs, **self.params)
        return self._dec

    def decide(self, doc: Document) -> tuple[bool, str]:
        m = self.decontaminator.match(doc.text)
        if m is None:
            return True, ""
        doc.metadata["contamination"] = m.as_dict()
        return False, f"contaminated: {m.benchmark}/{m.benchmark_id} ({m.method} {m.score:.2f})"
