"""Contamination a paraphrase cannot hide: canonical formula terms, retrieval of the nearest
benchmark problems, the offline rule measured on the project's own probe set, and the LLM
verifier of candidates against stand-ins on loopback (an OpenAI-compatible chat server
that answers like a model, a stdlib ``/v1/embeddings`` server).

Everything here runs on data the project owns (``fineproofs/data/decontam/probes.json``);
the figures with IMO-Bench indexed beside it are checked when ``../shared/data/imobench``
is present and skipped otherwise.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from faultproxy import FaultServer

from fineproofs.config import DecontamConfig, EngineConfig, load_profile
from fineproofs.engines.http_engine import HTTPEngine
from fineproofs.errors import DataError
from fineproofs.filters.canonical import canonical
from fineproofs.filters.decontaminate import BenchmarkProblem, Decontaminator, load_benchmark
from fineproofs.filters.probes import PROBE_BENCHMARK, load_probes, measure, summary, table
from fineproofs.filters.retrieval import EmbeddingClient, Retriever
from fineproofs.filters.verify import SCHEMA, SameParseError, SameProblemVerifier, parse_same
from fineproofs.generation import CachedGenerator
from fineproofs.store import ResponseStore

IMOBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "imobench"
PROOF, ANSWER = IMOBENCH / "proofbench_v2.csv", IMOBENCH / "answerbench_v2.csv"
needs_imobench = pytest.mark.skipif(
    not (PROOF.exists() and ANSWER.exists()), reason="IMO-Bench CSVs not available (../shared/data/imobench)"
)


@pytest.fixture(scope="module")
def probes():
    return load_probes()


# -- canonical formula terms ------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        (r"$1+2^x+2^{2x+1}=y^2$", r"$n^2=2^{2m+1}+2^m+1$"),  # summands reordered, sides swapped, renamed
        (r"$p^2-2q^2=1$", r"$r^2=2s^2+1$"),  # a summand moved across the equation
        (r"$\frac{2^n+1}{n^2}$", r"$k^2\mid 2^k+1$"),  # a divisibility written as a fraction
        (r"$a_{n+1}=a_n+\frac{1}{a_n}$", r"$x_{k+1}=x_k+1/x_k$"),  # \frac vs /, braces around a subscript
        (r"$\frac32$", r"$\frac{3}{2}$"),  # TeX's brace-less arguments
    ],
)
def test_rewritten_formulas_share_their_canonical_terms(a, b):
    ta, tb = set(canonical(a).terms), set(canonical(b).terms)
    assert ta & tb, (ta, tb)
    assert max(ta, key=len) in tb or max(tb, key=len) in ta


def test_different_formulas_on_one_template_do_not():
    a, b = canonical(r"$1+2^x+2^{2x+1}=y^2$").terms, canonical(r"$2^m+1=n^2$").terms
    assert "2 ^ ( 2 v + 1 )" in a and "2 ^ ( 2 v + 1 )" not in b
    assert not {t for t in a if t.startswith("eq ")} & {t for t in b if t.startswith("eq ")}


def test_phrases_a_rewording_swaps_are_folded():
    a = canonical("the centre of its circumscribed circle; natural numbers; relatively prime; a perfect square").prose
    assert a == canonical("the circumcenter; positive integers; coprime; a square").prose


# -- retrieval --------------------------------------------------------------------------


def test_retrieval_ranks_the_reworded_problem_first(probes):
    refs, ps = probes
    r = Retriever([x.text for x in refs])
    paraphrases = [p for p in ps if p.kind.startswith("paraphrase")]
    top1 = sum(1 for p in paraphrases if refs[r.search(p.text, 1)[0].index].id == p.expected)
    top3 = sum(1 for p in paraphrases if p.expected in {refs[n.index].id for n in r.search(p.text, 3)})
    assert top1 >= 0.85 * len(paraphrases) and top3 >= 0.95 * len(paraphrases), (top1, top3)


def test_views_are_shares_and_a_small_index_weighs_like_a_large_one(probes):
    refs, _ = probes
    small, large = Retriever([x.text for x in refs[:5]]), Retriever([x.text for x in refs])
    for r in (small, large):
        (n,) = r.search(refs[0].text, 1)
        assert n.index == 0 and n.views["terms"] == pytest.approx(1.0) and n.views["words"] == pytest.approx(1.0)
        assert all(v <= 1.0 + 1e-9 for k, v in n.views.items() if k != "terms_mass")


# -- the offline rule on the project's own probe set ------------------------------------


def test_probe_set_is_the_projects_own(probes):
    refs, ps = probes
    assert len(refs) == 30 and {r.benchmark for r in refs} == {PROBE_BENCHMARK}
    kinds = {p.kind.split(":")[0] for p in ps}
    assert {"paraphrase", "negative", "no-dollars", "rename", "forum", "wiki"} <= kinds
    assert sum(p.kind.startswith("paraphrase") for p in ps) == 40 and sum(p.kind == "negative" for p in ps) == 40


def test_offline_detector_on_the_probe_set_alone():
    s = summary(measure([]))
    print("\nprobe set, references indexed alone:", json.dumps({k: v for k, v in s.items() if k != "kinds"}))
    assert s["disguise_recall"] == 1.0
    assert s["paraphrase_recall"] >= 0.85
    assert s["false_positives"] <= 1  # 30 rows make a flat IDF: one template-sharing negative slips through
    # the retrieval is what catches the paraphrases: the lexical rules alone get half
    assert summary(measure([], retrieval=False))["paraphrase_recall"] <= 0.5


@needs_imobench
def test_offline_detector_with_both_benchmarks_indexed():
    bench = load_benchmark(str(PROOF)) + load_benchmark(str(ANSWER))
    res = measure(bench)
    s = summary(res)
    print("\nprobe set beside ProofBench + AnswerBench:\n" + "\n".join(table(res)))
    assert s["disguise_recall"] == 1.0
    assert s["paraphrase_recall"] >= 0.9
    assert s["false_positives"] == 0


@needs_imobench
def test_answerbench_beside_proofbench_keeps_proofbench_recall():
    """Finding 1: more benchmark rows must not make the detector worse on ProofBench."""
    from fineproofs.filters.probes import DISGUISES

    sys.path.insert(0, str(Path(__file__).parent / "data" / "ingest"))
    from decontam_probes import PARAPHRASES

    pb, ab = load_benchmark(str(PROOF)), load_benchmark(str(ANSWER))
    import random

    rng = random.Random(1)
    probes = []
    for steps in DISGUISES.values():
        for p in pb:
            t = p.text
            for s in steps:
                t = s(t, rng)
            probes.append((p.id, t))
    probes += [(bid, t) for bid, t in PARAPHRASES.items() if bid.startswith("PB-")]
    hits = {}
    for label, index in (("PB", pb), ("PB+AB", pb + ab)):
        dec = Decontaminator(index)
        hits[label] = [bool((m := dec.match(t)) and m.benchmark_id == bid) for bid, t in probes]
    assert sum(hits["PB+AB"]) >= sum(hits["PB"]) >= 0.98 * len(probes)


@needs_imobench
def test_answerbench_copies_without_dollars_are_caught():
    """Finding 2: a copy of an AnswerBench row with its ``$`` stripped, in forum framing."""
    pb, ab = load_benchmark(str(PROOF)), load_benchmark(str(ANSWER))
    dec = Decontaminator(pb + ab)
    missed = [
        p.id for p in ab if not ((m := dec.match("Saw this: " + p.text.replace("$", ""))) and m.benchmark_id == p.id)
    ]
    assert len(missed) <= 0.01 * len(ab), missed


def test_copies_without_delimiters_are_caught_on_own_data(probes):
    refs, _ = probes
    dec = Decontaminator(refs)
    for r in refs:
        for t in (
            r.text.replace("$", ""),
            re.sub(r"\$([^$]*)\$", r"\\(\1\\)", r.text).replace("\\(", "").replace("\\)", ""),
        ):
            m = dec.match("Can someone help: " + t + " Thanks.")
            assert m is not None and m.benchmark_id == r.id, t


def test_a_threshold_of_one_is_no_paraphrase_rule():
    s = summary(measure([], retrieval_threshold=1.0))
    assert s["paraphrase_recall"] < summary(measure([]))["paraphrase_recall"]


# -- the LLM verifier ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, same",
    [
        ('{"same": true, "reason": "identical up to names"}', True),
        ('```json\n{"same": false, "reason": "other constant"}\n```', False),
        ('  {"reason": "same equation", "same": true}  ', True),
    ],
)
def test_parse_same_accepts(reply, same):
    assert parse_same(reply)[0] is same


@pytest.mark.parametrize(
    "reply",
    [
        '{"same": "yes", "reason": "x"}',
        '{"same": true}',
        '{"same": true, "reason": ""}',
        '{"same": true, "reason": "x", "confidence": 0.9}',
        "They are the same problem.",
        '```json\n{"same": true, "reason": "a"}\n```\n```json\n{"same": false, "reason": "b"}\n```',
        "[true]",
    ],
)
def test_parse_same_refuses(reply):
    with pytest.raises(SameParseError):
        parse_same(reply)


def _pair(user: str) -> tuple[str, str]:
    return user.split("<<<A>>>")[1].strip(), user.split("<<<B>>>")[1].strip()


class Judge:
    """Replies of a stand-in model that knows which statements are the same problem
    (``truth``: statement -> problem id): a thinking block, then the JSON; the first answer
    to every pair is chatter without JSON when ``sloppy`` (so the retry path runs)."""

    def __init__(self, truth: dict[str, str | None], sloppy: bool = False):
        self.truth, self.sloppy = truth, sloppy

    def __call__(self, messages, prefill, seed, index):
        a, b = _pair(messages[-1]["content"])
        if self.sloppy and index == 0 and seed % 2 == 0:
            return "<think>\nHmm.\n</think>\nI believe these are the same problem."
        same = self.truth.get(a) is not None and self.truth.get(a) == self.truth.get(b)
        why = "the same equation with renamed variables" if same else "a different condition"
        return "<think>\nCompare the conditions.\n</think>\n" + json.dumps({"same": same, "reason": why})


def _verifier(tmp_path, url: str, model: str = "fake-model", attempts: int = 2):
    engine = HTTPEngine.from_config(EngineConfig(kind="http", model=model, endpoints=[url], max_retries=2))
    store = ResponseStore(tmp_path / "verify.sqlite")
    return SameProblemVerifier(CachedGenerator(engine, store, progress=False), max_attempts=attempts), engine


def test_verifier_over_http_structured_output_and_store(tmp_path, probes):
    refs, ps = probes
    truth = {p.text: p.expected for p in ps} | {r.text: r.id for r in refs}
    para = [p for p in ps if p.kind.startswith("paraphrase")][:4]
    neg = [p for p in ps if p.kind == "negative"][:2]
    pairs = [(p.text, next(r.text for r in refs if r.id == p.expected)) for p in para]
    pairs += [(n.text, refs[0].text) for n in neg]
    with FaultServer(reply_fn=Judge(truth, sloppy=True)) as srv:
        verifier, engine = _verifier(tmp_path, srv.url, attempts=3)
        with engine:
            verdicts = verifier.verify(pairs + pairs[:1])  # a repeated pair is asked once
            sent = len(srv.received)
            again = verifier.verify(pairs)
        body = srv.received[0]
    assert [v.same for v in verdicts] == [True] * 4 + [False] * 2 + [True]
    assert all(v.reason for v in verdicts) and any(v.attempts == 2 for v in verdicts)
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "<<<A>>>" in body["messages"][-1]["content"]
    assert [v.same for v in again] == [v.same for v in verdicts[:6]] and len(srv.received) == sent  # from the store


def test_a_verifier_that_never_answers_leaves_the_pair_undecided(tmp_path, probes):
    refs, ps = probes
    with FaultServer(reply_fn=lambda *a: "No idea, sorry.") as srv:
        verifier, engine = _verifier(tmp_path, srv.url)
        with engine:
            (v,) = verifier.verify([(ps[0].text, refs[0].text)])
    assert v.same is None and v.failure.startswith("unparseable_verdict") and "after 2 attempts" in v.failure


def test_verifier_catches_what_the_offline_rule_leaves(tmp_path, probes):
    """Retrieval's candidates + a model that judges well: the paraphrases the offline rule
    misses are caught, the negatives stay clean, the reason is kept in the match."""
    refs, ps = probes
    dec = Decontaminator(refs)
    para = [p for p in ps if p.kind.startswith("paraphrase")]
    neg = [p for p in ps if p.kind == "negative"]
    missed = [p for p in para if not ((m := dec.match(p.text)) and m.benchmark_id == p.expected)]
    assert missed
    truth = {p.text: p.expected for p in ps} | {r.text: r.id for r in refs}
    clean_negs = [n for n in neg if dec.match(n.text) is None]
    with FaultServer(reply_fn=Judge(truth)) as srv:
        verifier, engine = _verifier(tmp_path, srv.url)
        with engine:
            got = dec.match_many([p.text for p in missed] + [n.text for n in clean_negs], verifier)
        per_problem = len(srv.received) / (len(missed) + len(clean_negs))
    caught = [m for p, m in zip(missed, got) if m and m.benchmark_id == p.expected]
    assert len(caught) >= len(missed) - 1, [p.expected for p in missed]
    assert all(m.method == "verifier" and m.as_dict()["reason"] for m in caught)
    assert all(m is None for m in got[len(missed) :])
    assert per_problem <= dec.top_k  # the verifier sees at most `neighbours` candidates per problem


def test_verify_contamination_in_a_build(tmp_path, probes):
    """The paper path: the verifier role's verdicts remove problems and are quarantined with
    their reason; a re-run asks nothing again."""
    from fineproofs.pipelines.decontam_verify import QUARANTINE, verifier_role, verify_contamination
    from fineproofs.records import Problem

    refs, ps = probes
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": r.id, "problem": r.text}) + "\n" for r in refs))
    prof = load_profile("paper").with_overrides(benchmarks=[str(bench)])
    assert verifier_role(prof) is prof.judge
    truth = {p.text: p.expected for p in ps} | {r.text: r.id for r in refs}
    dec = Decontaminator(load_benchmark(str(bench)))
    floor = prof.decontamination.verify_floor

    def candidate(p) -> bool:  # its own reference among the candidates the verifier is asked about
        return any(q.id == p.expected and n.score >= floor for q, n in dec.neighbours(p.text))

    hard = [p for p in ps if p.kind.startswith("paraphrase") and dec.match(p.text) is None and candidate(p)][:3]
    clean = [p for p in ps if p.kind == "negative" and dec.match(p.text) is None][:3]
    assert len(hard) == 3
    problems = [Problem(statement=p.text, source="t") for p in hard + clean]
    with FaultServer(reply_fn=Judge(truth)) as srv:
        engine = HTTPEngine.from_config(EngineConfig(kind="http", model="fake-model", endpoints=[srv.url]))
        gen = CachedGenerator(engine, ResponseStore(tmp_path / "store.sqlite"), progress=False)
        with engine:
            kept, flagged = verify_contamination(prof, problems, gen, tmp_path)
            sent = len(srv.received)
            verify_contamination(prof, problems, gen, tmp_path)
        assert len(srv.received) == sent
    assert [p.statement for p in kept] == [p.text for p in clean]
    assert {f["benchmark_id"] for f in flagged} == {p.expected for p in hard}
    rows = [json.loads(x) for x in (tmp_path / QUARANTINE).read_text().splitlines()]
    assert len(rows) == len(hard) and all(r["method"] == "verifier" and r["reason"] and r["statement"] for r in rows)


def test_decontamination_config():
    with pytest.raises(ValueError, match="no decontamination.verifier role"):
        DecontamConfig(verify_with="verifier")
    with pytest.raises(ValueError, match="go together"):
        DecontamConfig(embeddings_url="http://127.0.0.1:1")
    assert load_profile("paper").decontamination.verify_with == "judge"
    assert load_profile("paper").decontamination.neighbours <= 3
    assert load_profile("embedded").decontamination.verify_with == ""


# -- the embedding endpoint ------------------------------------------------------------


class _Embeddings(BaseHTTPRequestHandler):
    """A stdlib stand-in for an OpenAI-compatible ``/v1/embeddings``: a hashed bag of
    lower-cased words per input (not a model; enough to rank near statements first)."""

    calls = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        if self.path != "/v1/embeddings" or body.get("model") != "emb":
            self.send_response(404)
            self.end_headers()
            return
        data = []
        for i, text in enumerate(body["input"]):
            v = [0.0] * 64
            for w in re.findall(r"[a-z]+", text.lower()):
                v[sum(map(ord, w)) % 64] += 1.0
            data.append({"object": "embedding", "index": i, "embedding": v})
        out = json.dumps({"object": "list", "data": data, "model": "emb"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def embeddings_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_embedding_view(embeddings_url, probes):
    refs, ps = probes
    client = EmbeddingClient(embeddings_url, "emb", batch=7)
    assert len(client.embed([r.text for r in refs])) == len(refs)
    dec = Decontaminator(refs, embedder=client)
    p = next(p for p in ps if p.kind.startswith("paraphrase"))
    (best, n), *_ = dec.neighbours(p.text)
    assert best.id == p.expected and 0 < n.views["embedding"] <= 1
    with pytest.raises(DataError, match="embedding endpoint"):
        EmbeddingClient(embeddings_url, "other-model").embed(["x"])


def test_benchmark_problem_list_stays_plain():
    # the probe references never enter a build's index: only measure() adds them
    assert BenchmarkProblem("b", "1", "t").benchmark != PROBE_BENCHMARK


def test_the_card_reports_the_probe_figures(tmp_path):
    """The figures measured in the build (ingest's report) reach the card as a table."""
    from test_splits import make_run

    from fineproofs.cards.card import CardFacts, write_card

    figures = summary(measure([]))
    run = make_run(tmp_path / "r", "rl")
    write_card(
        run,
        load_profile("paper"),
        CardFacts(
            split="rl",
            rows={"default": 1},
            counts={},
            dropped={},
            decontaminated=True,
            decontam_report={"benchmarks": {"mine": {"problems": 30, "flagged": 0}}, "methods": ["retrieval"],
                             "flagged": [], "probes": figures},
            rubric_hash="",
            source_licences={"x": "MIT"},
            rename={},
            benchmark_args=[],
            limit=None,
        ),
    )  # fmt: skip
    text = (run / "README.md").read_text()
    para = figures["kinds"]["paraphrase"]
    assert f"| paraphrase | {para['probes']} | {para['caught']} |" in text
    assert f"| negative | 40 | {figures['false_positives']} |" in text
    assert f"{figures['paraphrase_recall']} on paraphrases" in text
    assert "judged by the `judge` role's model" in text


def test_decontaminate_cli_prints_the_probe_table_and_verifies(tmp_path, probes):
    from click.testing import CliRunner

    from fineproofs.cli.ingest import decontaminate

    refs, ps = probes
    bench = tmp_path / "bench.csv"
    import csv

    with open(bench, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Problem ID", "Problem"])
        w.writerows((r.id, r.text) for r in refs)
    dec = Decontaminator(load_benchmark(str(bench)))
    hard = next(
        p
        for p in ps
        if p.kind.startswith("paraphrase")
        and dec.match(p.text) is None
        and any(q.id == p.expected and n.score >= 0.2 for q, n in dec.neighbours(p.text))
    )
    neg = next(p for p in ps if p.kind == "negative" and dec.match(p.text) is None)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"problem": hard.text}) + "\n" + json.dumps({"problem": neg.text}) + "\n")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(decontaminate, [str(inp), "--against", str(bench), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "paraphrase" in res.output and "negative" in res.output and "recall" in res.output
    assert [json.loads(x)["contaminated"] for x in out.read_text().splitlines()] == [False, False]
    truth = {p.text: p.expected for p in ps} | {r.text: r.id for r in refs}
    with FaultServer(reply_fn=Judge(truth)) as srv:
        args = [str(inp), "--against", str(bench), "-o", str(out), "--no-probes"]
        res = CliRunner().invoke(decontaminate, [*args, "--verify-url", srv.url, "--verify-model", "fake-model"])
    assert res.exit_code == 0, res.output
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert got[0]["contaminated"] and got[0]["contamination"]["benchmark_id"] == hard.expected
    assert got[0]["contamination"]["method"] == "verifier" and got[0]["contamination"]["reason"]
    assert got[1]["contaminated"] is False
    assert "paraphrase" not in res.output  # --no-probes
