"""Structured rubrics: the schema's grammar admits only valid 7-point rubrics (checked
token by token with llguidance, and by sampling a random model under it), the JSON
reply is still validated in code, the writer sends the schema to HTTP servers (a
stand-in that ignores it gets retried; one that rejects it falls back to text), and
(slow) the embedded model writes valid rubrics for the bundled demo problems."""

from __future__ import annotations

import json

import pytest
from faultproxy import FaultServer

from fineproofs.config import EngineConfig, RoleConfig, RubricConfig, SamplingConfig
from fineproofs.engines.base import GenerationRequest, SamplingParams
from fineproofs.engines.http_engine import HTTPEngine
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.rubrics import RubricWriter
from fineproofs.pipelines.stage import Failed, Work
from fineproofs.records import Problem
from fineproofs.rubric import RubricError, parse_rubric, parse_rubric_json, rubric_schema
from fineproofs.store import ResponseStore


def _doc(points, zero=(), deductions=(), caps=()) -> str:
    obj = {
        "checkpoints": [{"points": p, "description": f"step {i} of the proof"} for i, p in enumerate(points, 1)],
        "zero_credit": list(zero),
        "deductions": [{"points": p, "description": d} for p, d in deductions],
        "caps": [{"cap": c, "description": d} for c, d in caps],
    }
    return json.dumps(obj)


def _compact(doc: str) -> str:
    """The document as the constrained decoder writes it (no optional whitespace but ': ' and ', ')."""
    return json.dumps(json.loads(doc), separators=(", ", ": "))


# ----- the schema -----


@pytest.mark.parametrize("k, count", [(2, 6), (4, 6 + 15 + 20), (5, 6 + 15 + 20 + 15), (7, 2**6 - 1)])
def test_schema_enumerates_exactly_the_ways_to_make_7(k, count):
    chains = rubric_schema(max_checkpoints=k)["properties"]["checkpoints"]["anyOf"]
    tuples = [tuple(int(ref["$ref"][-1]) for ref in c["prefixItems"]) for c in chains]
    assert len(tuples) == len(set(tuples)) == count
    assert all(sum(t) == 7 and 2 <= len(t) <= k for t in tuples)
    assert all(c["items"] is False and c["minItems"] == c["maxItems"] == len(c["prefixItems"]) for c in chains)
    with pytest.raises(ValueError):
        rubric_schema(max_checkpoints=1)


# ----- reading the JSON reply -----


def test_json_rubric_is_rendered_validated_and_round_trips():
    doc = _doc([2, 4, 1], zero=["Checking n = 1 only."], deductions=[(-1, "A sign slip.")], caps=[(3, "No lemma.")])
    r = parse_rubric_json(doc, "p1")
    assert [i.points for i in r.items] == [2, 4, 1] and r.problem_id == "p1"
    assert [d.points for d in r.deductions] == [-1] and r.cap == 3 and r.zero_credit == ["Checking n = 1 only."]
    text = r.render()
    assert text.startswith("1. (2 points) step 1 of the proof\n2. (4 points)")
    assert parse_rubric(text, "p1") == r  # what the judge sees is the validated rubric


@pytest.mark.parametrize(
    "doc, why",
    [
        (_doc([2, 4]), "add up to 6 points"),
        (_doc([2, 6]), "add up to 8 points"),
        (_doc([7]), "at least 2 checkpoints"),
        (_doc([12, -5]), "worth 12 points"),
        (_doc([3, 4], deductions=[(1, "a bonus")]), "between -7 and -1"),
        (_doc([3, 4], caps=[(7, "no cap at all")]), "from 0 to 6"),
        (_doc([3, 4])[:60], "not a complete JSON rubric"),  # cut at max_tokens inside the checkpoints
        (_doc([3, 4]) + " and more", "text after"),
        ('{"checkpoints": [{"points": true, "description": "x"}, {"points": 6, "description": "y"}]}', "whole number"),
        ('{"checkpoints": [], "score": 7}', "unknown keys"),
        ("[1, 2]", "must be an object"),
        ('{"checkpoints": [{"points": 3, "description": " "}, {"points": 4, "description": "y"}]}', "no description"),
    ],
)
def test_json_rubric_rules_are_checked_in_code(doc, why):
    """A server may ignore the schema: the reply is validated like any text reply."""
    with pytest.raises(RubricError, match=why):
        parse_rubric_json(doc)


def test_a_reply_cut_after_its_checkpoints_keeps_them():
    full = _doc([2, 5], zero=["Only n = 1."], deductions=[(-1, "A slip in the last step.")], caps=[(2, "No proof.")])
    cut = full[: full.index("A slip") + 3]  # max_tokens reached inside the deductions
    r = parse_rubric_json(cut)
    assert [i.points for i in r.items] == [2, 5] and r.zero_credit == ["Only n = 1."]
    assert r.deductions == [] and r.caps == [] and parse_rubric(r.render()) == r


def test_heading_only_zero_credit_items_are_left_out():
    r = parse_rubric_json(_doc([3, 4], zero=["Zero credit:", "Checkpoints", "  ", "Only small cases."]))
    assert r.zero_credit == ["Only small cases."] and parse_rubric(r.render()) == r


# ----- the grammar (llguidance) -----


def _matcher(tok, schema):
    pytest.importorskip("llguidance")
    import llguidance
    import llguidance.hf

    compact = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
    grammar = llguidance.LLMatcher.grammar_from_json_schema({**schema, "x-guidance": compact})
    lt = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok), eos_token=tok.eos_token_id)
    return llguidance.LLMatcher(lt, grammar, log_level=0)


@pytest.mark.parametrize(
    "doc, accepted",
    [
        (_doc([2, 5]), True),
        (_doc([1, 1, 1, 4], zero=["x"], deductions=[(-2, "y")], caps=[(0, "z")]), True),
        (_doc([2, 4]), False),  # sums to 6
        (_doc([4, 4]), False),  # sums to 8
        (_doc([7]), False),  # one checkpoint
        (_doc([12, -5]), False),  # a checkpoint over 7
        (_doc([3, 4], deductions=[(-9, "y")]), False),
        (_doc([3, 4], caps=[(7, "y")]), False),
    ],
)
def test_grammar_admits_only_valid_rubrics(tiny, doc, accepted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    m = _matcher(tok, rubric_schema(max_checkpoints=4, description_chars=40))
    text = _compact(doc)
    ok = all(m.consume_token(t) for t in tok(text, add_special_tokens=False).input_ids)
    assert (ok and m.is_accepting()) is accepted
    with pytest.raises(RubricError) if not accepted else _nothing():
        parse_rubric_json(text)  # the code agrees with the grammar


def test_grammar_bounds_the_number_of_checkpoints(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    m = _matcher(tok, rubric_schema(max_checkpoints=4))
    ids = tok(_compact(_doc([1, 1, 1, 1, 3])), add_special_tokens=False).input_ids
    assert not all(m.consume_token(t) for t in ids)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_random_model_under_the_grammar_writes_only_valid_rubrics(tiny):
    """A randomly initialised model samples arbitrary paths through the grammar: every
    finished reply must be a valid rubric (nothing else is reachable)."""
    pytest.importorskip("llguidance")
    from fineproofs.engines.transformers_engine import TransformersEngine

    eng = TransformersEngine(str(tiny), batch_size=8, threads=1)
    schema = rubric_schema(max_checkpoints=4, description_chars=8, max_lines=1)
    sp = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=400, seed=3, json_schema=schema)
    reqs = [GenerationRequest([{"role": "user", "content": "Write a rubric."}], n=8, sampling=sp)]
    [(_, comps)] = list(eng.generate(reqs))
    finished = [c for c in comps if c.finish_reason == "stop"]
    assert len(finished) >= 4, [c.text for c in comps]
    sums = set()
    for c in finished:
        r = parse_rubric_json(c.text)
        sums.add(tuple(i.points for i in r.items))
    assert all(sum(s) == 7 for s in sums)


# ----- the writer over HTTP (a stand-in server) -----


def _writer(url, tmp_path, **cfg):
    role = RoleConfig(
        engine=EngineConfig(kind="http", model="fake-model", endpoints=[url]), sampling=SamplingConfig(max_tokens=256)
    )
    engine = HTTPEngine.from_config(role.engine)
    gen = CachedGenerator(engine, ResponseStore(tmp_path / "s.sqlite"), progress=False)
    return RubricWriter(role, RubricConfig(prefill="1. (", **cfg), gen), engine


def _problems(n=2):
    return [
        Work(Problem(statement=f"Prove that {k} + {k} = {2 * k}.", source="t", solutions=["Add."])) for k in range(n)
    ]


def test_http_writer_sends_the_schema_and_no_prefill(tmp_path):
    with FaultServer(reply_fn=lambda *a: _doc([3, 4], zero=["Guessing."])) as srv:
        writer, engine = _writer(srv.url, tmp_path, structured=True, max_checkpoints=4, description_chars=60)
        with engine:
            out = list(writer.process(_problems()))
    assert not [x for x in out if isinstance(x, Failed)]
    assert all(w.rubric is not None and w.rubric_attempts == 1 for w in out)
    body = srv.received[0]
    assert body["response_format"]["json_schema"]["schema"] == rubric_schema(4, 60)
    assert body["messages"][-1]["role"] == "user" and "JSON object" in body["messages"][-1]["content"]
    assert writer.prompt_version.endswith("+rubric-json-v1")


def test_http_writer_retries_a_server_that_ignores_the_schema(tmp_path):
    """A server that does not enforce the schema: the bad sum is caught in code and the
    error goes back to the writer; the second reply is valid."""

    def reply(messages, prefill, seed, index):
        return _doc([2, 5]) if "rejected" in messages[-1]["content"] else _doc([2, 4])

    with FaultServer(reply_fn=reply) as srv:
        writer, engine = _writer(srv.url, tmp_path, structured=True)
        with engine:
            out = list(writer.process(_problems(1)))
    (w,) = out
    assert w.rubric is not None and w.rubric_attempts == 2
    assert "add up to 6 points" in srv.received[1]["messages"][-1]["content"]


def test_http_writer_quarantines_after_the_last_attempt(tmp_path):
    with FaultServer(reply_fn=lambda *a: _doc([7])) as srv:
        writer, engine = _writer(srv.url, tmp_path, structured=True, max_attempts=2)
        with engine:
            out = list(writer.process(_problems(1)))
    fail, w = out
    assert isinstance(fail, Failed) and fail.reason.startswith("invalid_rubric: the main solution needs at least 2")
    assert w.rubric is None and len(srv.received) == 2


def test_http_writer_reads_text_where_the_server_rejects_the_schema(tmp_path):
    class Rejecting(FaultServer):
        async def _fake(self, body):
            if "response_format" in body:
                return 400, json.dumps({"error": {"message": "response_format is not supported"}}).encode()
            return await super()._fake(body)

    text = "1. (3 points) Adds the numbers.\n2. (4 points) Concludes."
    with Rejecting(reply_fn=lambda *a: text) as srv:
        writer, engine = _writer(srv.url, tmp_path, structured=True)
        with engine:
            (w,) = list(writer.process(_problems(1)))
    assert w.rubric is not None and w.rubric.render() == text


def test_structured_off_keeps_prefill_prompt_and_keys(tmp_path):
    with FaultServer(reply_fn=lambda *a: "3 points) A.\n2. (4 points) B.") as srv:
        writer, engine = _writer(srv.url, tmp_path)
        with engine:
            (w,) = list(writer.process(_problems(1)))
    body = srv.received[0]
    assert "response_format" not in body and body["messages"][-1] == {"role": "assistant", "content": "1. ("}
    assert writer.prompt_version == "rubric-v2+rubric-retry-v3" and w.rubric is not None


# ----- the embedded model -----


@pytest.mark.slow
def test_embedded_model_writes_valid_rubrics_for_the_demo(embedded_engine, tmp_path):
    pytest.importorskip("llguidance")
    from fineproofs.config import load_profile
    from fineproofs.pipelines.ingest import run_ingest

    prof = load_profile("embedded")
    assert prof.rubrics.structured
    problems = run_ingest(prof, tmp_path / "out", benchmarks=[]).problems[:4]
    gen = CachedGenerator(embedded_engine, ResponseStore(tmp_path / "s.sqlite"), progress=False)
    writer = RubricWriter(prof.rubric_writer, prof.rubrics, gen, prof.prompts)
    out = list(writer.process([Work(p) for p in problems]))
    valid = [w for w in out if isinstance(w, Work) and w.rubric is not None]
    assert len(valid) >= 3, [x for x in out if isinstance(x, Failed)]
    for w in valid:
        back = parse_rubric(w.rubric.render(), w.id)  # the text the judge sees is the validated rubric
        assert (back.items, back.zero_credit, back.deductions, back.caps) == (
            w.rubric.items, w.rubric.zero_credit, w.rubric.deductions, w.rubric.caps)  # fmt: skip
        assert sum(i.points for i in w.rubric.items) == 7 and len(w.rubric.items) <= 4


def test_latex_with_single_backslashes_survives_json():
    r"""A small model writes `\theta` inside a JSON string: read as LaTeX, not as a tab + "heta"."""
    doc = (
        r'{"checkpoints": [{"points": 3, "description": "Shows \theta = \frac{a}{b} and \\beta"}, '
        r'{"points": 4, "description": "Uses \nabla f and \right)"}], "zero_credit": [], "deductions": [], "caps": []}'
    )
    r = parse_rubric_json(doc)
    assert [i.description for i in r.items] == [r"Shows \theta = \frac{a}{b} and \beta", r"Uses \nabla f and \right)"]
