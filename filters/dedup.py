"""Deduplication: exact (hash of the normalised statement) + near-duplicate (datatrove
MinHash over the canonical word stream, see :mod:`fineproofs.filters.canonical`).

Stages, all datatrove steps:

1. :class:`CanonicalMinhashSignature` — datatrove's ``MinhashDedupSignature`` fed with
   canonical tokens (no spaCy needed), run right after the clean writer so signature
   ``(rank, index)`` = line ``index`` of ``clean/<rank>.jsonl``;
2. datatrove's ``MinhashDedupBuckets`` and ``MinhashDedupCluster(save_cluster_id=True)``;
3. :class:`DedupMerge` (one task) — unions exact-hash groups with MinHash clusters,
   keeps the best-sourced copy of each cluster, merges the others' solutions into it
   and quarantines them with ``exact_duplicate``/``near_duplicate`` and the kept id;
   clusters are reported in ``clusters_path``.

Both keys see through disguises: the canonical word stream folds look-alike letters
and full-width forms (see :mod:`fineproofs.filters.canonical`), and so does the exact
key (:func:`exact_key`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from fineproofs.filters.canonical import canonical
from fineproofs.records import normalise_statement, problem_id
from fineproofs.text import clean_text, fold_confusables

SOURCE_RANK = {"wiki": 3, "booklet": 3, "hub": 1}


def minhash_config(threshold: float, n_grams: int = 3) -> MinhashConfig:
    """LSH banding whose S-curve midpoint (1/b)^(1/r) sits at ``threshold``."""
    r = 8
    b = max(1, round(threshold**-r))
    return MinhashConfig(
        n_grams=n_grams, num_buckets=b, hashes_per_bucket=r, hash_config=HashConfig(precision=64, hash_fc="sha1")
    )


class CanonicalTokenizer(WordTokenizer):
    """datatrove word tokenizer over :func:`canonical` (no spaCy / NLTK needed)."""

    def __init__(self):
        super().__init__("en")

    def word_tokenize(self, text: str) -> list[str]:
        return canonical(text).words

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


class CanonicalMinhashSignature(MinhashDedupSignature):
    """MinHash signatures over canonical word n-grams (variables → ``v``); the raw
    statement goes to the tokenizer (datatrove's ``simplify_text`` would strip math)."""

    def __init__(self, output_folder, config: MinhashConfig):
        super().__init__(output_folder, config=config, language=CanonicalTokenizer())

    def get_shingles(self, text: str) -> np.ndarray:
        words = self.word_tokenizer.word_tokenize(text)
        n = self.config.n_grams
        grams = [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))] if words else []
        return np.fromiter((self._hash_func(g) for g in grams), dtype=np.uint64).reshape((-1, 1))


def exact_key(text: str) -> str:
    """The normalised statement with invisible characters dropped and look-alikes folded."""
    return normalise_statement(fold_confusables(clean_text(text)))


def source_rank(meta: dict, text: str = "") -> tuple:
    """Sort key: smaller = better-sourced copy. A total order on the copies' content (the
    locator, then the text and the whole metadata break ties), so which copy is kept never
    depends on the order the copies were read in (task count, file order)."""
    src = meta.get("source", "")
    kind = next((v for k, v in SOURCE_RANK.items() if k in src), 2 if meta.get("format") == "wiki" else 1)
    return (
        -kind,
        -bool(meta.get("url", "").startswith("http")),
        -bool(meta.get("competition")),
        -bool(meta.get("year")),
        -len(meta.get("solutions", [])),
        meta.get("locator", ""),
        text,
        json.dumps({k: v for k, v in meta.items() if not k.startswith("_")}, sort_keys=True, default=str),
    )


def _read_cluster_file(path: Path) -> dict[int, int]:
    out = {}
    if path.exists():
        data = path.read_bytes()
        for doc, cid in struct.iter_unpack("<II", data):
            out[doc] = cid
    return out


class DedupMerge(PipelineStep):
    """Global merge of exact and MinHash duplicate groups (run as a single task)."""

    name = "🫂 dedup merge"
    type = "🫂 - DEDUP"

    def __init__(self, clean_folder: str, clusters_folder: str, tasks: int, clusters_path: str, exclusion_writer=None):
        super().__init__()
        self.clean_folder = Path(clean_folder)
        self.clusters_folder = Path(clusters_folder)
        self.tasks = tasks
        self.clusters_path = Path(clusters_path)
        self.exclusion_writer = exclusion_writer

    def _load(self) -> list[Document]:
        docs = []
        for rank in range(self.tasks):
            f = self.clean_folder / f"{rank:05d}.jsonl"
            if not f.exists():
                continue
            clusters = _read_cluster_file(self.clusters_folder / f"{rank:06d}.clusters")
            with open(f) as fh:
                for i, line in enumerate(fh):
                    d = json.loads(line)
                    doc = Document(text=d["text"], id=d["id"], metadata=d.get("metadata", {}))
                    doc.metadata["_minhash"] = f"{clusters[i]}" if i in clusters else ""
                    docs.append(doc)
        return docs

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        docs = self._load()
        parent = list(range(len(docs)))

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        method: dict[int, str] = {}
        first: dict[str, int] = {}
        for i, d in enumerate(docs):
            for key, how in (
                (hashlib.sha1(exact_key(d.text).encode()).hexdigest(), "exact"),
                ("mh" + d.metadata["_minhash"] if d.metadata["_minhash"] else "", "near"),
            ):
                if not key:
                    continue
                if key in first:
                    a, b = find(first[key]), find(i)
                    if a != b:
                        parent[b] = a
                    method[i] = method.get(i) if method.get(i) == "exact" else how
                else:
                    first[key] = i
        groups: dict[int, list[int]] = {}
        for i in range(len(docs)):
            groups.setdefault(find(i), []).append(i)
        report = []
        self.clusters_path.parent.mkdir(parents=True, exist_ok=True)
        with self.exclusion_writer if self.exclusion_writer else _Null() as writer:
            for members in groups.values():
                members.sort(key=lambda i: source_rank(docs[i].metadata, docs[i].text))
                keep, rest = docs[members[0]], [docs[i] for i in members[1:]]
                keep_id = problem_id(keep.text)
                sols = list(keep.metadata.get("solutions", []))
                seen = {normalise_statement(s) for s in sols}
                dups = []
                for _member, d in zip(members[1:], rest):
                    for s in d.metadata.get("solutions", []):
                        if normalise_statement(s) not in seen:
                            seen.add(normalise_statement(s))
                            sols.append(s)
                    if not keep.metadata.get("answer") and d.metadata.get("answer"):
                        keep.metadata["answer"] = d.metadata["answer"]
                    how = "exact" if exact_key(d.text) == exact_key(keep.text) else "near"
                    reason = f"{how}_duplicate: of {keep_id}"
                    dups.append(
                        {
                            "locator": d.metadata.get("locator", d.id),
                            "source": d.metadata.get("source", ""),
                            "method": how,
                        }
                    )
                    d.metadata.setdefault("decisions", []).append({"step": "dedup", "kept": False, "reason": reason})
                    d.metadata.update(stage="dedup", filter_reason=reason)
                    self.stat_update("dropped")
                    if writer:
                        writer.write(d, rank)
                keep.metadata["solutions"] = sols
                keep.metadata.pop("_minhash", None)
                note = f"merged {len(rest)} duplicate(s)" if rest else ""
                keep.metadata.setdefault("decisions", []).append({"step": "dedup", "kept": True, "reason": note})
                if rest:
                    keep.metadata["duplicates"] = dups
                    report.append({"id": keep_id, "kept": keep.metadata.get("locator", keep.id), "duplicates": dups})
                self.stat_update("kept")
                yield keep
        report.sort(key=lambda r: r["id"])
        self.clusters_path.write_text(json.dumps(report, indent=1))


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False
