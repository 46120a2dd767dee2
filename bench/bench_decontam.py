"""Decontamination quality on the project's own probe set (run on demand, not in tests).

    python bench/bench_decontam.py               # every detector, every index
    python bench/bench_decontam.py --sweep       # also the offline threshold's neighbourhood

The probe set (``fineproofs/data/decontam/probes.json``, :mod:`fineproofs.filters.probes`):
30 references written for fineproofs, 9 kinds of mechanical disguise of each, 40
paraphrases, 40 unrelated negatives. Each detector runs with the references indexed
alone and beside IMO-ProofBench and IMO-AnswerBench (``../shared/data/imobench``, when
present). Detectors:

- ``8-gram``: a plain 8-gram matcher of the kind open-r1 ships (lower-cased whitespace
  tokens, flagged when half of a benchmark problem's 8-grams are in the text);
- ``13-gram``: a plain check flagging any shared 13-gram of lower-cased words;
- ``lexical``: fineproofs' n-gram / shingle / IDF-weighted rules alone (``retrieval=False``);
- ``retrieval``: the default offline detector (lexical + retrieval with the offline rule);
- ``+verifier``: the retrieval's candidates also judged by a model, here a stand-in
  server on loopback (tests/faultproxy.FaultServer) that answers like a perfect judge
  (it knows which statements are the same problem), so the row measures the candidate
  generation, i.e. the best the LLM path can reach, not a model's judgement.

With the IMO-Bench files it also prints the recall on disguised copies of every
ProofBench problem and on the older IMO-Bench paraphrases (``tests/data/ingest``) with
ProofBench alone and with AnswerBench beside it, and the share of AnswerBench rows
caught with their ``$`` stripped, and the detector's time per problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "data" / "ingest"))

from fineproofs.filters.canonical import ngrams  # noqa: E402
from fineproofs.filters.decontaminate import BenchmarkProblem, Decontaminator, load_benchmark  # noqa: E402
from fineproofs.filters.probes import KindResult, disguise, load_probes, measure, summary  # noqa: E402

IMOBENCH = ROOT.parent / "shared" / "data" / "imobench"


def plain_ngram(n: int, share: float):
    """A detector factory: flag when ``share`` of a benchmark problem's word n-grams are in
    the text (``share`` 0: any shared n-gram)."""

    def build(index: list[BenchmarkProblem]):
        grams = [(p.id, ngrams(p.text.lower().split(), n)) for p in index]

        def find(text: str) -> str | None:
            g = ngrams(text.lower().split(), n)
            best = max(((len(g & b) / len(b), pid) for pid, b in grams if b), default=(0.0, None))
            return best[1] if (best[0] >= share if share else best[0] > 0) else None

        return find

    return build


def fineproofs(**params):
    def build(index: list[BenchmarkProblem]):
        dec = Decontaminator(index, **params)

        def find(text: str) -> str | None:
            m = dec.match(text)
            return m.benchmark_id if m else None

        return find

    return build


def with_verifier(truth: dict[str, str | None], floor: float):
    """Retrieval + the verifier path against a stand-in OpenAI-compatible server on
    loopback whose replies are a perfect judge's (``truth``: statement -> problem id)."""
    from faultproxy import FaultServer

    from fineproofs.config import EngineConfig
    from fineproofs.engines.http_engine import HTTPEngine
    from fineproofs.filters.verify import SameProblemVerifier
    from fineproofs.generation import CachedGenerator
    from fineproofs.store import ResponseStore

    def reply(messages, prefill, seed, index):
        user = messages[-1]["content"]
        a = user.split("<<<A>>>")[1].strip()
        b = user.split("<<<B>>>")[1].strip()
        same = truth.get(a) is not None and truth.get(a) == truth.get(b)
        return json.dumps({"same": same, "reason": "same statement reworded" if same else "another problem"})

    def build(index: list[BenchmarkProblem]):
        import tempfile

        dec = Decontaminator(index)
        srv = FaultServer(reply_fn=reply, model="stand-in").start()
        engine = HTTPEngine.from_config(EngineConfig(kind="http", model="stand-in", endpoints=[srv.url]))
        store = ResponseStore(Path(tempfile.mkdtemp()) / "store.sqlite")
        verifier = SameProblemVerifier(CachedGenerator(engine, store, progress=False))
        engine.__enter__()

        def find(text: str) -> str | None:
            (m,) = dec.match_many([text], verifier, floor=floor)
            return m.benchmark_id if m and m.method != "undecided" else None

        def close() -> None:
            engine.__exit__(None, None, None)
            srv.stop()

        find.close = close  # type: ignore[attr-defined]
        return find

    return build


def row(name: str, res: dict[str, KindResult]) -> str:
    s = summary(res)
    return (
        f"{name:<12} disguises {s['disguise_recall']:.3f} ({s['disguise_probes']})  "
        f"paraphrases {s['paraphrase_recall']:.3f} ({round(s['paraphrase_recall'] * s['paraphrase_probes'])}"
        f"/{s['paraphrase_probes']})  false positives {s['false_positives']}/{s['negatives']}"
    )


def imobench_checks(pb: list[BenchmarkProblem], ab: list[BenchmarkProblem]) -> None:
    from decontam_probes import PARAPHRASES

    copies = [(c.kind, c.expected, c.text) for c in disguise(pb)]
    para = [(bid, t) for bid, t in PARAPHRASES.items() if bid.startswith("PB-")]
    print("\nIMO-ProofBench probes, ProofBench indexed alone vs beside AnswerBench:")
    for label, index in (("PB", pb), ("PB+AB", pb + ab)):
        dec = Decontaminator(index)
        hit = sum(1 for _, bid, t in copies if (m := dec.match(t)) and m.benchmark_id == bid)
        ph = sum(1 for bid, t in para if (m := dec.match(t)) and m.benchmark_id == bid)
        print(f"  {label:<6} disguised copies {hit}/{len(copies)}   paraphrases {ph}/{len(para)}")
    dec = Decontaminator(pb + ab)
    allp = list(PARAPHRASES.items())
    ph = sum(1 for bid, t in allp if (m := dec.match(t)) and m.benchmark_id == bid)
    print(f"  older IMO-Bench paraphrases (tests/data/ingest), both indexed: {ph}/{len(allp)}")
    stripped = [("Saw this one: " + p.text.replace("$", "") + " Any idea?", p.id) for p in ab]
    caught = sum(1 for t, bid in stripped if (m := dec.match(t)) and m.benchmark_id == bid)
    print(f"  AnswerBench rows with their $ stripped, in forum framing: {caught}/{len(stripped)} caught")
    t0 = time.perf_counter()
    for _, _, t in copies:
        dec.match(t)
    ms = (time.perf_counter() - t0) / len(copies) * 1000
    print(f"  detector time, both indexed: {ms:.2f} ms per problem")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", action="store_true", help="recall/FP around the offline threshold")
    ap.add_argument("--floor", type=float, default=0.2, help="verifier candidates' least retrieval score")
    args = ap.parse_args()
    indexes: list[tuple[str, list[BenchmarkProblem]]] = [("own probes only", [])]
    pb = ab = None
    if (IMOBENCH / "proofbench_v2.csv").exists() and (IMOBENCH / "answerbench_v2.csv").exists():
        pb = load_benchmark(str(IMOBENCH / "proofbench_v2.csv"))
        ab = load_benchmark(str(IMOBENCH / "answerbench_v2.csv"))
        indexes.append(("+ ProofBench + AnswerBench", pb + ab))
    else:
        print(f"({IMOBENCH} not found: the probe set is indexed alone)")
    refs, probes = load_probes()
    for label, extra in indexes:
        truth: dict[str, str | None] = {p.text: p.expected for p in probes}
        truth.update({r.text: r.id for r in refs + extra})
        print(f"\nindex: {len(refs)} probe references {label} ({len(refs) + len(extra)} problems)")
        detectors = [
            ("8-gram", plain_ngram(8, 0.5)),
            ("13-gram", plain_ngram(13, 0.0)),
            ("lexical", fineproofs(retrieval=False)),
            ("retrieval", fineproofs()),
            ("+verifier", with_verifier(truth, args.floor)),
        ]
        for name, det in detectors:
            opened = []

            def tracked(index, det=det, opened=opened):
                f = det(index)
                opened.append(f)
                return f

            res = measure(extra, detector=tracked)
            for f in opened:
                if hasattr(f, "close"):
                    f.close()
            print(row(name, res))
        if args.sweep:
            print("  offline threshold sweep (retrieval):")
            for th in (0.45, 0.5, 0.55, 0.6, 0.65):
                print("   ", f"{th:.2f}", row("", measure(extra, retrieval_threshold=th)).strip())
    if pb is not None and ab is not None:
        imobench_checks(pb, ab)


if __name__ == "__main__":
    main()
