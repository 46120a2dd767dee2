r"""Retrieval of the benchmark problems nearest to a statement, by what survives rewording.

A paraphrase (a forum restatement, a translated booklet, renamed variables, summands in
another order) shares few word n-grams with the problem it copies, but it keeps the
mathematics and the distinctive vocabulary. Every statement (both sides, through
:func:`~fineproofs.filters.canonical.canonical`) becomes a bag of features of four views:

- ``terms``: the top-level terms of every formula, letters anonymised, numbers kept
  (``1+2^x+2^{2x+1}=y^2`` → ``2^v``, ``2^{2v+1}``, ``v^2``): the same bag whatever the
  order of the summands or the names of the variables;
- ``math``: formula token 3-grams, letters anonymised (structure inside a term);
- ``words``: prose words, stemmed, synonyms folded, stop words out; and their bigrams;
- ``numbers``: constants other than 0, 1, 2.

Each feature weighs its IDF over the index (smoothed as if among at least
:data:`MIN_DOCS` problems, so a small index keeps the scale of a real one). The
similarity of a benchmark problem ``b`` to a statement ``q`` is, per view, the
IDF-weighted share of ``b``'s features found in ``q`` (containment: framing around a
copy does not dilute it), blended into one score in [0, 1] (:meth:`Retriever.score`).
Candidates come from an inverted index over the rarer features; :meth:`Retriever.search`
returns the ``k`` best as :class:`Neighbour` (index, score, per-view shares).

An optional embedding endpoint (an OpenAI-compatible ``/v1/embeddings``, e.g. vLLM)
adds a cosine view through :class:`EmbeddingClient`; the vectors of the index are
computed once. Linear in the length of a statement; the index is built once per run.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from fineproofs.errors import DataError
from fineproofs.filters.canonical import Canonical, canonical, ngrams

MIN_DOCS = 460  # IMO-Bench's size: IDF of a small index is smoothed to this scale
VIEWS = ("terms", "math", "words", "bigrams", "numbers")
# how much each view counts in the blended score (sums to 1)
WEIGHTS = {"terms": 0.3, "math": 0.2, "words": 0.3, "bigrams": 0.1, "numbers": 0.1}
_TRIVIAL = {"v", ",", "'", "(", ")", "{", "}"}
_SYMMETRIC = {"terms", "math"}
# a term that is only point or variable names (``v v v``, ``angle v v v``) says nothing
_NAMES = re.compile(r"(?:(?:angle|triangle|overline|overarc|arc|odot|square) )?v(?: v)*")


@dataclass(frozen=True)
class Features:
    """The feature bag of one statement: ``(view, feature)`` pairs."""

    feats: frozenset
    numbers: frozenset

    @classmethod
    def of(cls, c: Canonical) -> Features:
        f: set = {("terms", t) for t in c.terms if not _NAMES.fullmatch(t)}
        f |= {("math", g) for g in ngrams(c.anon, 3) if sum(t not in _TRIVIAL for t in g) >= 2}
        f |= {("words", w) for w in c.prose}
        f |= {("bigrams", g) for g in ngrams(c.prose, 2) if len(g) == 2}
        f |= {("numbers", n) for n in c.numbers}
        return cls(frozenset(f), frozenset(c.numbers))


@dataclass
class Neighbour:
    """A benchmark problem near a statement: its position in the index, the blended
    score, and the share of each view (``embedding`` when an endpoint is used)."""

    index: int
    score: float
    views: dict[str, float] = field(default_factory=dict)


class Retriever:
    """IDF-weighted containment search over an index of statements."""

    def __init__(
        self,
        texts: Sequence[str],
        weights: dict[str, float] | None = None,
        embedder=None,
        canon: Sequence[Canonical] | None = None,
    ):
        """``canon``: the canonical forms of ``texts`` when the caller has them already."""
        self.weights = dict(weights or WEIGHTS)
        self.docs = [Features.of(c) for c in (canon if canon is not None else map(canonical, texts))]
        n = max(MIN_DOCS, len(self.docs))
        df: dict = defaultdict(int)
        for d in self.docs:
            for f in d.feats:
                df[f] += 1
        scale = n / max(1, len(self.docs))  # frequencies as shares: a small index weighs like a large one
        self.idf = {f: math.log((n + 1) / (c * scale + 0.5)) * _size(f) for f, c in df.items()}
        self.default_idf = math.log((n + 1) / 0.5)
        self.once = math.log((n + 1) / (scale + 0.5))
        # the inverted index holds the features rarer than 5% of the index (at least 3 problems)
        cap = max(3, len(self.docs) // 20)
        self.postings: dict = defaultdict(list)
        self.mass: list[dict[str, float]] = []
        for i, d in enumerate(self.docs):
            m: dict[str, float] = defaultdict(float)
            for f in d.feats:
                m[f[0]] += self.idf[f]
                if df[f] <= cap:
                    self.postings[f].append(i)
            self.mass.append(dict(m))
        self.embedder = embedder
        self._vectors = embedder.embed(list(texts)) if embedder is not None and texts else None

    def features(self, text: str) -> Features:
        return Features.of(canonical(text))

    def views(self, i: int, q: Features) -> dict[str, float]:
        """Per view, how much of index problem ``i`` is in ``q``: for the formula views the
        IDF-weighted Dice overlap (a formula ``q`` adds counts against it: a longer problem
        on the same template is another problem), for the prose views the IDF-weighted
        share of ``i``'s features found in ``q`` (forum framing around a copy adds words,
        not formulas). -1 where ``i`` has no feature of the view."""
        shared: dict[str, float] = defaultdict(float)
        for f in self.docs[i].feats & q.feats:
            shared[f[0]] += self.idf[f]
        qmass: dict[str, float] = defaultdict(float)
        for f in q.feats:
            if f[0] in _SYMMETRIC:
                qmass[f[0]] += self.idf.get(f, self.default_idf * _size(f))
        tot = self.mass[i]
        # the shared formula terms in units of a term seen once in the index: how much
        # distinctive mathematics the two statements have in common, not just its share
        out = {"terms_mass": shared["terms"] / self.once}
        for v in VIEWS:
            if not tot.get(v):
                out[v] = -1.0
            elif v in _SYMMETRIC:
                out[v] = 2 * shared[v] / (tot[v] + qmass[v])
            else:
                out[v] = shared[v] / tot[v]
        return out

    def score(self, views: dict[str, float]) -> float:
        """The blended score: a view the benchmark problem lacks (no formula, no constant)
        gives its weight to the others."""
        num = den = 0.0
        for v, w in self.weights.items():
            x = views.get(v, -1.0)
            if x >= 0:
                num += w * x
                den += w
        return num / den if den else 0.0

    def candidates(self, q: Features, top: int) -> list[int]:
        """Index problems sharing rare features with ``q``, the ``top`` by shared IDF mass."""
        mass: dict[int, float] = defaultdict(float)
        for f in q.feats:
            for i in self.postings.get(f, ()):
                mass[i] += self.idf[f]
        return sorted(mass, key=lambda i: (-mass[i], i))[:top]

    def search(self, text: str | Features, k: int = 3, pool: int = 12, vector=None) -> list[Neighbour]:
        """The ``k`` index problems nearest to ``text``, best first (ties by position)."""
        q = text if isinstance(text, Features) else self.features(text)
        pool_ids = set(self.candidates(q, pool))
        if self._vectors is not None:
            if vector is None:
                vector = self.embedder.embed([text])[0] if isinstance(text, str) else None
            if vector is not None:
                sims = [_cosine(vector, v) for v in self._vectors]
                pool_ids |= set(sorted(range(len(sims)), key=lambda i: -sims[i])[:k])
        out = []
        for i in pool_ids:
            views = self.views(i, q)
            if self._vectors is not None and vector is not None:
                views["embedding"] = _cosine(vector, self._vectors[i])
            out.append(Neighbour(i, self.score(views), views))
        out.sort(key=lambda n: (-n.score, n.index))
        return out[:k]


def _size(f: tuple) -> float:
    """A formula term weighs by its length (``2 ^ {2 v + 1}`` tells more than ``v ^ 2``):
    1 for three tokens or fewer, up to 2."""
    if f[0] != "terms":
        return 1.0
    n = f[1].count(" ") + 1
    return min(2.0, max(1.0, n / 3))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class EmbeddingClient:
    """Vectors from an OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM, TEI, hosted).

    ``base_url`` is the server root or its ``/v1``; ``model`` the served model name.
    Requests are batched (``batch`` inputs each); a failed request raises
    :class:`~fineproofs.errors.DataError` naming the endpoint, so a run that was asked
    for embeddings never silently goes without them."""

    def __init__(self, base_url: str, model: str, batch: int = 64, timeout: float = 60.0, api_key: str = ""):
        root = base_url.rstrip("/")
        self.url = root + ("/embeddings" if root.endswith("/v1") else "/v1/embeddings")
        self.model, self.batch, self.timeout, self.api_key = model, batch, timeout, api_key

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for s in range(0, len(texts), self.batch):
            chunk = texts[s : s + self.batch]
            body = json.dumps({"model": self.model, "input": chunk}).encode()
            headers = {"Content-Type": "application/json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            req = urllib.request.Request(self.url, body, headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data = json.loads(r.read())
                rows = sorted(data["data"], key=lambda d: d["index"])
                vecs = [list(map(float, d["embedding"])) for d in rows]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise DataError(f"embedding endpoint {self.url}: {type(e).__name__}: {e}") from None
            if len(vecs) != len(chunk):
                raise DataError(f"embedding endpoint {self.url}: {len(vecs)} vectors for {len(chunk)} inputs")
            out.extend(vecs)
        return out
