"""FineProofs-SFT's shape as published: self-evaluation sections stripped in every form the
release strips, a ``category`` from the published set on every row (the ``category``
stage: source tags, the LLM classifier with retries and a documented fallback, the
keyword rule), the forum posts shown to the problem filter, the ``default`` pick, and
about 1.8 rows a problem in ``all`` at the paper's settings (a stand-in teacher over HTTP).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fineproofs.config import CategoryConfig, EngineConfig, RoleConfig, SamplingConfig, SFTSplitConfig, load_profile
from fineproofs.engines.base import Completion, Engine, GenerationRequest
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.category import (
    CategoryError,
    CategoryStage,
    category_schema,
    from_keywords,
    from_tags,
    parse_category,
)
from fineproofs.pipelines.splits import build_sft, category_rule, read_inputs
from fineproofs.pipelines.stage import Failed, Recorder, Work
from fineproofs.records import PUBLISHED_CATEGORIES, Grade, Problem, ProofSample
from fineproofs.replies import split_reasoning, strip_self_evaluation
from fineproofs.store import ResponseStore

sys.path.insert(0, str(Path(__file__).parent))

LABELS = list(PUBLISHED_CATEGORIES)
# what QED-Nano's evaluation code cuts (eval/src/imobench/evaluation.py), as a check on rows
RELEASE_STRIP = re.compile(r"(?ms)^#+\s*[*\s]*(?:(?:Self|Final)\s*[*\s]*){0,2}Evaluation\b.*$")
ANY_EVAL_HEADING = re.compile(r"(?im)^\s*(?:#+|\*\*)\s*[*\s]*(?:(?:self|final)[\s*-]*){0,2}evaluation\b")

# -- the self-evaluation strip ------------------------------------------------------------------

PROOF = "Let $n$ be even.\n\n## Solution\nBy induction on $n$ the claim holds.\nHence done."


@pytest.mark.parametrize(
    "heading",
    [
        "# Evaluation",  # the release's docstring forms
        "## Self Evaluation",
        "### Final Evaluation",
        "## **Self Evaluation**",  # bold markers inside the heading
        "# **Final Evaluation**",
        "## Final Self Evaluation",  # up to two of Self / Final
        "#### Evaluation: 1 point",  # anything after the word
        "##Self Evaluation",  # no space after the hashes
        "## SelfEvaluation",  # \s* between the words allows none
        "## Self-Evaluation",  # beyond the release: a hyphen, other cases
        "## self evaluation",
        "**Self-evaluation**",  # DeepSeek-Math-V2's unheaded forms
        "Here is my evaluation of the solution:",
        "Evaluation of the above proof",
    ],
)
def test_every_self_evaluation_form_is_stripped(heading):
    text = f"{PROOF}\n\n{heading}\nThe proof above is complete and rigorous.\n\n<score>1</score>"
    assert strip_self_evaluation(text) == PROOF
    split = split_reasoning(f"<think>\nplan\n</think>\n\n{text}")
    assert split.proof == PROOF and split.reasoning == "plan"


def test_release_forms_agree_with_the_release_pattern():
    for heading in ("# Evaluation", "## Self Evaluation", "### Final Evaluation", "## **Self Evaluation**"):
        text = f"{PROOF}\n{heading}\nok"
        assert strip_self_evaluation(text) == RELEASE_STRIP.sub("", text).strip()


@pytest.mark.parametrize(
    "text",
    [
        PROOF,
        PROOF + "\n## Evaluating the sum\nWe compute $S = 3$.",  # a heading about evaluating something
        PROOF + "\n## Evaluations\nnot the word itself",
        PROOF + " The evaluation of the sum gives 3.",  # the word in prose
        "The self evaluation of this sum is easy.",  # at the start, not a heading
    ],
)
def test_proof_text_is_kept(text):
    assert strip_self_evaluation(text) == text.rstrip()


def test_a_heading_at_the_start_leaves_an_empty_proof():
    assert strip_self_evaluation("# Evaluation\nnothing else") == ""


# -- the category rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag, label",
    [
        ("Number Theory", "Number Theory"),
        ("number theory", "Number Theory"),
        ("Inequalities", "Algebra"),
        ("Functional Equations", "Algebra"),
        ("Polynomials", "Algebra"),
        ("Inequality", "Algebra"),  # the wiki reader's label
        ("Combinatorics", "Combinatorics"),
        ("Logic and Puzzles", "Combinatorics"),
        ("Probability", "Combinatorics"),
        ("Geometry", "Geometry"),
        ("Plane Geometry", "Geometry"),
        ("Other", None),
        ("", None),
        ("Section 3", None),
    ],
)
def test_source_tags_map_onto_the_published_labels(tag, label):
    assert from_tags(tag, LABELS) == label


@pytest.mark.parametrize(
    "statement, label",
    [
        ("In triangle $ABC$ the circumcircle meets the angle bisector at $D$. Prove $AD = BD$.", "Geometry"),
        ("Prove that $n^5 - n$ is divisible by 30 for every integer $n$; is $p$ prime?", "Number Theory"),
        ("A board of $8 \\times 8$ cells is coloured in two colours. How many ways ...", "Combinatorics"),
        ("Let $a, b, c$ be positive reals. Prove the inequality $a^2 + b^2 \\ge 2ab$.", "Algebra"),
        ("Prove it.", "Algebra"),  # no word at all: the first label, never empty
    ],
)
def test_keyword_rule_always_answers(statement, label):
    assert from_keywords(statement, LABELS) == label


@pytest.mark.parametrize(
    "answer, label",
    [
        ('{"category": "Geometry"}', "Geometry"),
        ('```json\n{"category": "number  theory"}\n```', "Number Theory"),
        (' {"category": "ALGEBRA"} ', "Algebra"),
    ],
)
def test_classifier_answers_parse(answer, label):
    assert parse_category(answer, LABELS) == label


@pytest.mark.parametrize(
    "answer, why",
    [
        ("Geometry", "not one JSON object"),
        ('{"category": "Topology"}', "not one of"),
        ('{"category": "Geometry", "why": "circles"}', "exactly the key"),
        ('{"label": "Geometry"}', "exactly the key"),
        ('{"category": 3}', "must be text"),
        ('["Geometry"]', "exactly the key"),
        ("", "not one JSON object"),
    ],
)
def test_classifier_answers_refused(answer, why):
    with pytest.raises(CategoryError, match=why):
        parse_category(answer, LABELS)


def test_schema_is_an_enum_of_the_labels():
    s = category_schema(LABELS)
    assert s["properties"]["category"]["enum"] == LABELS and s["required"] == ["category"]


# -- the category stage -----------------------------------------------------------------------


class Scripted(Engine):
    """Replies from a script, in order (str or Completion); records every request."""

    model_id = "scripted-classifier"

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        for i, r in enumerate(requests):
            self.requests.append(r)
            out = []
            for _ in range(r.n):
                item = self.replies.pop(0)
                out.append(item if isinstance(item, Completion) else Completion(item))
            yield i, out


def _stage(engine, tmp_path, **cfg) -> CategoryStage:
    role = RoleConfig(engine=EngineConfig(model="x"), sampling=SamplingConfig(max_tokens=64))
    gen = CachedGenerator(engine, ResponseStore(tmp_path / "store.sqlite"), progress=False)
    return CategoryStage(CategoryConfig(classifier="llm", **cfg), role, gen)


def _problem(n: int, **kw) -> Problem:
    return Problem(statement=f"Prove that statement number {n} holds for all $x$.", source="t", **kw)


def _run(stage: CategoryStage, problems):
    out = list(stage.run([Work(p) for p in problems]))
    works = [x for x in out if isinstance(x, Work)]
    return works, [x for x in out if isinstance(x, Failed)], {w.id: stage.records(w) for w in works}


def test_tags_first_then_the_classifier_with_a_schema(tmp_path):
    engine = Scripted(['{"category": "Geometry"}'])
    stage = _stage(engine, tmp_path)
    tagged, untagged = _problem(1, category="Inequalities"), _problem(2)
    works, failed, recs = _run(stage, [tagged, untagged])
    assert not failed and len(works) == 2
    assert recs[tagged.id][0]["category"] == "Algebra" and recs[tagged.id][0]["method"] == "tags"
    assert recs[untagged.id][0] | {"model": "x"} == {
        "problem_id": untagged.id,
        "category": "Geometry",
        "method": "llm",
        "attempts": 1,
        "failure": "",
        "model": "x",
        "prompt_version": "category-v1+json",
    }
    (req,) = engine.requests  # the tagged problem was never sent
    assert req.sampling.json_schema == category_schema(LABELS)
    assert untagged.statement in req.messages[-1]["content"] and "{{" not in req.messages[-1]["content"]


def test_bad_replies_are_retried_under_new_samples(tmp_path):
    engine = Scripted(["Geometry, I think.", '{"category": "Topology"}', '{"category": "Number Theory"}'])
    works, failed, recs = _run(_stage(engine, tmp_path), [_problem(1)])
    (rec,) = recs[works[0].id]
    assert not failed and rec["category"] == "Number Theory" and rec["attempts"] == 3


def test_exhausted_retries_fall_back_to_the_keyword_rule_recorded(tmp_path):
    p = Problem(statement="In triangle $ABC$ prove that the circumcircle passes through $H'$.", source="t")
    engine = Scripted(["no idea"] * 2)
    stage = _stage(engine, tmp_path, max_attempts=2)
    works, failed, recs = _run(stage, [p])
    (rec,) = recs[p.id]
    assert not failed
    assert rec["category"] == "Geometry" and rec["method"] == "keywords_after_failure"
    assert (
        rec["failure"].startswith("unparseable_category: not one JSON object")
        and "(after 2 attempts)" in rec["failure"]
    )
    assert stage.tally["by_keywords_after_failure"] == 1


def test_quarantine_on_failure_drops_the_problem_from_sft(tmp_path):
    p, q = _problem(1), _problem(2)
    engine = Scripted(["bad", '{"category": "Algebra"}'])
    stage = _stage(engine, tmp_path, max_attempts=1, on_failure="quarantine")
    with Recorder(tmp_path, {}, {}) as rec:
        works = list(rec.through(stage, [Work(p), Work(q)]))
    assert len(works) == 2  # every item passes on
    quarantined = [json.loads(x) for x in (tmp_path / "quarantine" / "llm.jsonl").read_text().splitlines()]
    assert [(x["stage"], x["problem_id"]) for x in quarantined] == [("category", p.id)]
    assert quarantined[0]["reason"].startswith("unparseable_category")
    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "problems.jsonl").write_text("".join(json.dumps(x.to_dict()) + "\n" for x in (p, q)))
    inputs = read_inputs(tmp_path / "problems" / "problems.jsonl", [tmp_path / "stages"], "sft")
    assert inputs.categories == {q.id: "Algebra"} and inputs.uncategorised == {p.id}
    samples = [ProofSample(x.id, "teacher", 0, "m", "r", "A proof.", "stop") for x in (p, q)]
    grades = [Grade(s.key, 7, "g", "ok") for s in samples]
    res = build_sft([p, q], samples, grades, {}, SFTSplitConfig(min_grade=0), tmp_path / "out", {},
                    categories=inputs.categories, uncategorised=inputs.uncategorised)  # fmt: skip
    assert res.rows == {"default": 1, "all": 1} and res.dropped == {"no_category": 1}
    (row,) = pq.read_table(res.configs["all"]).to_pylist()
    assert row["category"] == "Algebra"


def test_engine_failure_is_counted_and_the_row_keeps_a_category(tmp_path):
    engine = Scripted([Completion("", status="failed", reason="http 503")] * 3)
    p = _problem(1)
    works, failed, recs = _run(_stage(engine, tmp_path), [p])
    (f,) = failed
    assert f.reason == "engine_failure: http 503"
    assert recs[p.id][0]["category"] in LABELS  # the keyword rule meanwhile


def test_rerun_from_the_store_sends_nothing(tmp_path):
    engine = Scripted(['{"category": "Combinatorics"}'])
    _run(_stage(engine, tmp_path), [_problem(1)])
    again = Scripted([])
    _, _, recs = _run(_stage(again, tmp_path), [_problem(1)])
    assert again.requests == []  # answered from the store
    assert next(iter(recs.values()))[0]["category"] == "Combinatorics"


def test_rule_classifier_needs_no_model_and_never_leaves_a_row_empty():
    stage = CategoryStage(CategoryConfig(classifier="rule"))
    works, failed, recs = _run(stage, [_problem(1), _problem(2, category="Number Theory")])
    assert not failed
    assert [recs[w.id][0]["method"] for w in works] == ["keywords", "tags"]
    assert all(recs[w.id][0]["category"] in LABELS for w in works)
    assert category_rule(_problem(3, category="Other")) in LABELS


def test_profiles_choose_the_classifier():
    assert load_profile("embedded").category.classifier == "rule"
    paper = load_profile("paper").category
    assert (paper.classifier, paper.structured, paper.on_failure) == ("llm", True, "rule")
    assert tuple(paper.labels) == PUBLISHED_CATEGORIES


# -- the default pick --------------------------------------------------------------------------


def test_default_pick_best_or_first(tmp_path):
    p = _problem(1)
    samples = [ProofSample(p.id, "teacher", j, "m", "r", f"Proof {j}.", "stop") for j in range(3)]
    grades = [Grade(s.key, g, "g", "ok") for s, g in zip(samples, (1, 7, 6))]
    out = {}
    for pick in ("best", "first"):
        cfg = SFTSplitConfig(min_grade=0, default_pick=pick)
        res = build_sft([p], samples, grades, {}, cfg, tmp_path / pick, {})
        (row,) = pq.read_table(res.configs["default"]).to_pylist()
        out[pick] = (row["proof"], row["gemini-3-pro-grade"], res.rows["all"])
    assert out == {"best": ("Proof 1.", 7, 3), "first": ("Proof 0.", 1, 3)}


# -- the forum posts reach the problem filter ---------------------------------------------------


def test_forum_posts_and_path_reach_the_problem_filter(tmp_path):
    from fineproofs.config import ProblemFilterConfig, SourcesConfig
    from fineproofs.pipelines.problem_filter import ProblemFilter
    from fineproofs.pipelines.sources.rows import map_row

    aops = json.loads((Path(__file__).parent / "data" / "sources" / "aops_sample.jsonl").read_text().splitlines()[0])
    cols = SourcesConfig.model_validate({"preset": "aops"}).paths[0].columns
    r = map_row(aops, cols)
    assert r["candidates"] == aops["candidates"] and r["path"] == aops["metadata"]["path"]
    p = Problem(
        statement=r["problem"], source="aops", solutions=r["solutions"], candidates=r["candidates"], path=r["path"]
    )
    assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p  # problems.jsonl keeps them

    class Echo(Engine):
        model_id = "echo"
        seen: list = []

        def generate(self, requests):
            for i, req in enumerate(requests):
                self.seen.append(req.messages)
                yield i, [Completion("```json\n{}\n```")] * req.n

    engine = Echo()
    role = RoleConfig(engine=EngineConfig(model="x"))
    gen = CachedGenerator(engine, ResponseStore(tmp_path / "s.sqlite"), progress=False)
    list(ProblemFilter(role, ProblemFilterConfig(enabled=True, max_attempts=1), gen).run([Work(p)]))
    user = engine.seen[0][-1]["content"]
    assert all(post in user for post in aops["candidates"]) and aops["metadata"]["path"] in user


def test_ingest_keeps_the_forum_posts(tmp_path):
    import yaml

    from fineproofs.pipelines.ingest import run_ingest

    data = load_profile("embedded").model_dump()
    data["sources"] = {"paths": [{"path": str(Path(__file__).parent / "data" / "sources" / "aops_sample.jsonl"),
                                  "preset": "aops"}]}  # fmt: skip
    data["filters"]["keep_question_types"] = ["proof", "answer"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    res = run_ingest(load_profile(str(tmp_path / "p.yaml")), tmp_path / "run")
    by = {p.statement[:20]: p for p in res.problems}
    lake = next(p for s, p in by.items() if s.startswith("Let $a,b,c$"))
    assert lake.candidates == ["Use $a^2+1 \\ge 2a$ and sum.", "Nice problem!"]
    assert lake.path.endswith("2811904.json")


# -- a paper-shaped SFT build against stand-in servers -------------------------------------------

EVAL_TAILS = (
    "# Evaluation",
    "## Final Evaluation",
    "## Self Evaluation",
    "**Self-evaluation**",
    "### **Final Evaluation**",
)


def _h(*parts) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12], 16)


def stand_in(messages, prefill, seed, index):
    """The oracle for every role, but a teacher in DeepSeek-Math-V2's shape (a proof, then a
    self-evaluation section under one of the headings the release strips; about 9 % of its
    samples cut at max_tokens inside the thinking block) and a category classifier that
    answers in JSON, one reply in five not."""
    from oracle import oracle_reply

    h = _h(messages, prefill, seed, index)
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"] if messages else ""
    if "sort olympiad problems by subject" in system:
        if h % 5 == 0:
            return "It is about numbers, mostly."
        return json.dumps({"category": LABELS[h % 4]})
    if not system and not user.startswith("Generate a rigorous proof"):  # the teacher (distill prompt)
        if h % 11 == 0:
            return "<think>\nLet me try small cases first. " + "Then n = 3 ... " * 20  # cut while thinking
        tail = EVAL_TAILS[h % len(EVAL_TAILS)]
        return (
            f"<think>\nPlan {h % 1000}.\n</think>\n\n## Solution\nProof ({h % 10007}). By induction the claim holds.\n\n"
            f"{tail}\nThe proof is complete and rigorous.\n\n\\boxed{{1}}"
        )
    return oracle_reply(messages, prefill, seed, index)


WORDS = (
    "integer sequence polygon prime circle function board colouring graph inequality triangle divisor "
    "polynomial tournament digit chord tangent matrix permutation subset lattice parity vertex modulo "
    "median square orbit weight token game grid path cycle residue root real bound"
).split()


def _problems_file(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        h = _h("problem", i)
        words = " ".join(WORDS[(h >> (5 * k)) % len(WORDS)] for k in range(9))
        row = {
            "problem": f"Problem {i}. Prove that every {words} admits a structure of order {1000 + 37 * i} "
            f"for all values above {h % 997}, and show the bound {i * i + 3} cannot be improved.",
            "solution": f"We argue by induction on the order; case {i} reduces to the smaller ones. {words}.",
        }
        if i % 3 == 0:  # a third carry the source's own subject tag (as AI-MO/olympiads does)
            row["problem_type"] = ("Inequalities", "Geometry", "Number Theory", "Combinatorics")[i % 4]
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_paper_shaped_sft_build_has_the_published_shape(tmp_path, monkeypatch):
    from buildkit import PAPER_MODELS, paper_profile_file
    from faultproxy import FaultServer

    from fineproofs.pipelines.build import Build

    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    src = _problems_file(tmp_path / "problems.jsonl", 90)
    with FaultServer(model=PAPER_MODELS, reply_fn=stand_in) as server:
        overrides = {
            "sources": {"paths": [str(src)]},
            "filters": {"near_dup_threshold": 1.0, "drop_figure_dependent": False},
            "problem_filter": {"enabled": False},  # the filter's drops are not what is measured here
        }
        prof = load_profile(str(paper_profile_file(tmp_path, server.url, student_samples=2, overrides=overrides)))
        assert prof.teacher_samples == 2 and prof.splits.sft.keep_truncated is False  # the paper's settings
        out = tmp_path / "sft"
        res = Build(prof, out, "sft", progress=False).run()
        categories = [json.loads(x) for x in (out / "stages" / "category.jsonl").read_text().splitlines()]
        received = [b for b in server.received if "sort olympiad" in json.dumps(b["messages"])]
    problems = res.counts["decontaminated"]
    assert problems >= 80
    all_rows = [r for f in sorted(out.glob("data/all/*.parquet")) for r in pq.read_table(f).to_pylist()]
    default_rows = [r for f in sorted(out.glob("data/default/*.parquet")) for r in pq.read_table(f).to_pylist()]
    ratio = len(all_rows) / len(default_rows)
    print(
        f"\nall {len(all_rows)} rows / default {len(default_rows)} problems = {ratio:.3f} (published 7,777 / 4,281 = 1.817)"
    )
    assert 1.7 <= ratio <= 1.95
    assert res.dropped["split"].get("truncated", 0) == 2 * problems - len(all_rows)  # the only loss
    # every row: a published category, no evaluation section in the proof
    assert all(r["category"] in PUBLISHED_CATEGORIES for r in all_rows + default_rows)
    assert not [r["proof"] for r in all_rows if ANY_EVAL_HEADING.search(r["proof"]) or "\\boxed{1}" in r["proof"]]
    assert all(RELEASE_STRIP.sub("", r["proof"]).strip() == r["proof"] for r in all_rows)
    assert all(r["messages"][1]["content"].endswith(r["proof"]) for r in all_rows)
    # the category stage: tags for the tagged third, the classifier for the rest, retried
    methods = {c["method"] for c in categories}
    assert {"tags", "llm"} <= methods and len(categories) == problems
    assert sum(c["method"] == "tags" for c in categories) == len(range(0, 90, 3))
    assert any(c["attempts"] > 1 for c in categories if c["method"] == "llm")
    assert all(b.get("response_format", {}).get("type") == "json_schema" for b in received)


# -- the embedded build -------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_sft_build_rows_have_a_category_and_no_evaluation(tmp_path, imobench):
    import yaml

    from fineproofs.pipelines.build import Build

    data = load_profile("embedded").model_dump()
    for role in ("teacher", "student", "rubric_writer"):
        data[role]["sampling"]["max_tokens"] = 48
    data["student_samples"] = 2
    data["teacher_samples"] = 2
    data["grading"]["calibration"] = {}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(data))
    prof = load_profile(str(tmp_path / "tiny.yaml"))
    out = tmp_path / "sft"
    Build(prof, out, "sft", limit=2, progress=False, benchmarks=[str(imobench / "proofbench_v2.csv")]).run()
    categories = [json.loads(x) for x in (out / "stages" / "category.jsonl").read_text().splitlines()]
    assert categories and all(c["category"] in PUBLISHED_CATEGORIES for c in categories)
    assert {c["method"] for c in categories} <= {"tags", "keywords"}
    proofs = [json.loads(x)["proof"] for x in (out / "stages" / "distill.jsonl").read_text().splitlines()]
    assert proofs and not [p for p in proofs if ANY_EVAL_HEADING.search(p)]
    rows = [r for f in sorted(out.glob("data/*/*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert all(r["category"] in PUBLISHED_CATEGORIES for r in rows)
    assert not [r["proof"] for r in rows if ANY_EVAL_HEADING.search(r["proof"])]
