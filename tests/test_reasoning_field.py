"""Reasoning returned apart from the answer (vLLM reasoning parsers, gpt-oss), end to end:
HTTP engine -> CachedGenerator -> response store -> split_reasoning; the inline
``<think>`` form; old stores; store keys for the new sampling knobs."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import fields

import pytest
from faultproxy import FaultServer

from fineproofs.config import RoleConfig, SamplingConfig
from fineproofs.engines.base import Completion, GenerationRequest, SamplingParams, sampling_of
from fineproofs.engines.http_engine import HTTPEngine
from fineproofs.generation import CachedGenerator
from fineproofs.replies import split_reasoning
from fineproofs.store import COLUMNS, ResponseStore, StoredResponse, request_key

ANALYSIS = "The rubric says <score>7</score> for a full proof, but step 2 has a gap."
ANSWER = "Step 2 is unjustified.\n<score>3</score>"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def score(text: str) -> int | None:
    found = re.findall(r"<score>(\d+)</score>", text)
    return int(found[0]) if len(found) == 1 else None  # strict: exactly one score tag


def _run(srv: FaultServer, store: ResponseStore, reqs: list[GenerationRequest]):
    with HTTPEngine("fake-model", [srv.url]) as eng:
        return CachedGenerator(eng, store, progress=False).run(reqs, stage="judge", prompt_version="v1")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_separate_reasoning_never_reaches_the_answer(tmp_path, field):
    srv = FaultServer(reply_fn=lambda *a: ANSWER, reasoning_fn=lambda *a: ANALYSIS, reasoning_field=field)
    reqs = [GenerationRequest(user("grade this proof"), n=2)]
    with srv, ResponseStore(tmp_path / "store.sqlite") as store:
        [[a, b]] = _run(srv, store, reqs)
        calls = len(srv.received)
        again = _run(srv, store, reqs)
        assert len(srv.received) == calls  # a re-run sends nothing
    for r in (a, b, *again[0]):
        assert (r.text, r.reasoning) == (ANSWER, ANALYSIS)
        split = split_reasoning(r.text, r.reasoning)
        assert split.answer == ANSWER and split.reasoning == ANALYSIS and not split.unterminated
        assert score(split.answer) == 3
    with ResponseStore(tmp_path / "store.sqlite") as store:  # persisted, not only in memory
        assert store.get(a.key).reasoning == ANALYSIS and store.get(a.key).text == ANSWER


def test_inline_think_form_still_splits(tmp_path):
    inline = f"<think>\n{ANALYSIS}\n</think>\n\n{ANSWER}"
    with FaultServer(reply_fn=lambda *a: inline) as srv, ResponseStore(tmp_path / "s.sqlite") as store:
        [[r]] = _run(srv, store, [GenerationRequest(user("grade"))])
    assert (r.text, r.reasoning) == (inline, "")
    split = split_reasoning(r.text, r.reasoning)
    assert (split.reasoning, split.answer, score(split.answer)) == (ANALYSIS, ANSWER, 3)


def test_server_ignoring_n_still_gives_every_sample_its_reasoning(tmp_path):
    srv = FaultServer(
        honor_n=False,
        reply_fn=lambda m, p, seed, i: f"{ANSWER} #{seed}",
        reasoning_fn=lambda m, p, seed, i: f"{ANALYSIS} #{seed}",
    )
    with srv, ResponseStore(tmp_path / "s.sqlite") as store:
        [rs] = _run(srv, store, [GenerationRequest(user("grade"), n=3)])
    assert len(rs) == 3 and len({r.text for r in rs}) == 3
    assert all(r.ok and r.reasoning.endswith(r.text.rsplit("#", 1)[1]) for r in rs)


def test_truncated_in_thinking_has_no_answer_and_says_so(tmp_path):
    srv = FaultServer(reply_fn=lambda *a: "", reasoning_fn=lambda *a: ANALYSIS, finish_reason="length")
    with srv, ResponseStore(tmp_path / "s.sqlite") as store:
        [[r]] = _run(srv, store, [GenerationRequest(user("grade"))])
    assert r.ok and r.finish_reason == "length" and r.truncated and r.reasoning == ANALYSIS
    split = split_reasoning(r.text, r.reasoning)
    assert split.answer == "" and split.unterminated and score(split.answer) is None


def test_split_reasoning_forms():
    s = split_reasoning("<think>inline</think>\nanswer", "apart")
    assert (s.reasoning, s.answer) == ("apart\n\ninline", "answer")
    s = split_reasoning("plain answer <score>3</score>", "")
    assert (s.reasoning, s.answer, s.unterminated) == ("", "plain answer <score>3</score>", False)
    s = split_reasoning("<think>cut", "")
    assert (s.answer, s.unterminated) == ("", True)


# ----- store: one shared definition, migration -----


def test_stored_response_copies_every_completion_field():
    assert {f.name for f in fields(Completion)} == set(COLUMNS) - {"key", "stage", "model"}
    c = Completion("answer", "length", 3, 4, "ok", "", 0.5, reasoning="why")
    r = StoredResponse.from_completion(c, key="k", stage="s", model="m")
    assert {f: getattr(r, f) for f in COLUMNS if f not in ("key", "stage", "model")} == {
        f.name: getattr(c, f.name) for f in fields(Completion)
    }


OLD_SCHEMA = """
CREATE TABLE responses (
    key TEXT PRIMARY KEY, stage TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', text TEXT NOT NULL DEFAULT '', finish_reason TEXT NOT NULL DEFAULT '',
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0, request TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE planned (key TEXT PRIMARY KEY, stage TEXT NOT NULL);
"""


def _old_store(path, n=3):
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for i in range(n):  # how the old engine stored a reasoning server's reply: re-wrapped inline
        db.execute(
            "INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f"k{i}",
                "judge",
                "m",
                "ok",
                "",
                f"<think>\nthought {i}\n</think>\n\nanswer {i}",
                "stop",
                5,
                6,
                0.25,
                "{}",
                0.0,
            ),
        )
    db.commit()
    db.close()


def test_old_store_is_migrated_without_loss(tmp_path):
    path = tmp_path / "store.sqlite"
    _old_store(path)
    with ResponseStore(path) as st:
        old = st.get_many(["k0", "k1", "k2"])
        assert st.count() == 3 and [st.summary()[0][k] for k in ("done", "completion_tokens")] == [3, 18]
        st.put(StoredResponse("new", "judge", "m", "ok", "", "answer", "stop", 1, 2, reasoning="apart"), {})
    for i, r in enumerate(old[f"k{i}"] for i in range(3)):
        assert (r.text, r.reasoning, r.prompt_tokens, r.cost) == (
            f"<think>\nthought {i}\n</think>\n\nanswer {i}",
            "",
            5,
            0.25,
        )
        split = split_reasoning(r.text, r.reasoning)
        assert (split.reasoning, split.answer) == (f"thought {i}", f"answer {i}")
    with ResponseStore(path) as st:  # reopening an already migrated store is a no-op
        assert st.count() == 4 and st.get("new").reasoning == "apart" and st.get("k1").text.endswith("answer 1")


def test_read_only_old_store_is_still_readable(tmp_path):
    path = tmp_path / "store.sqlite"
    _old_store(path, 1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")  # as fineproofs leaves it, so a read-only open works
    db.close()
    uri = f"file:{path}?mode=ro"
    st = ResponseStore.__new__(ResponseStore)  # the migration path, on a connection that cannot write
    st.path, st._db = path, sqlite3.connect(uri, uri=True)
    try:
        select = st._migrate()
        row = st._db.execute(f"SELECT {select} FROM responses").fetchone()
    finally:
        st._db.close()
    assert StoredResponse(*row).reasoning == "" and StoredResponse(*row).text.endswith("answer 0")


def test_foreign_database_is_a_clear_error(tmp_path):
    from fineproofs.errors import DataError

    db = sqlite3.connect(tmp_path / "x.sqlite")
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY)")
    db.close()
    with pytest.raises(DataError, match="not a (usable )?fineproofs response store"):
        ResponseStore(tmp_path / "x.sqlite")


# ----- store keys and the new sampling knobs -----

MSGS = [{"role": "user", "content": "hi"}]


def _key(sp: SamplingParams, **kw) -> str:
    base = dict(model="m", revision="r", prompt_version="v1", messages=MSGS, prefill="", sample_index=0)
    return request_key(**{**base, **kw, "sampling": sp.to_dict()})


def test_store_keys_unchanged_when_new_knobs_are_unset():
    # computed with the code before top_k / reasoning_effort / extra_body existed
    assert _key(SamplingParams()) == "4cb9eaf358ec97aeb5b12624247db638f8e300b7460d9f8e6da8ea1491024a21"
    assert _key(
        SamplingParams(0.5, 0.9, 77, 3), prefill="go", sample_index=2, template_kwargs={"enable_thinking": True}
    ) == ("9d34bdfd14c425e31d31f9393413db2c3ff9a47de8e631e486ce6f139b28c09a")
    assert _key(sampling_of(RoleConfig())) == _key(SamplingParams())


def test_store_keys_change_when_a_knob_is_set():
    base = _key(SamplingParams())
    keys = {
        _key(SamplingParams(top_k=20)),
        _key(SamplingParams(reasoning_effort="high")),
        _key(SamplingParams(extra_body={"min_p": 0.1})),
        base,
    }
    assert len(keys) == 4


def test_sampling_config_knobs():
    role = RoleConfig(sampling=SamplingConfig(top_k=20, reasoning_effort="medium", extra_body={"min_p": 0.1}))
    sp = sampling_of(role)
    assert (sp.top_k, sp.reasoning_effort, sp.extra_body) == (20, "medium", {"min_p": 0.1})
    assert hash(sp) == hash(SamplingParams(top_k=20, reasoning_effort="medium"))  # hashable despite the dict
    with pytest.raises(ValueError, match="reasoning_effort"):
        SamplingConfig(reasoning_effort="max")
    with pytest.raises(ValueError, match="extra_body may not set"):
        SamplingConfig(extra_body={"model": "other"})


def test_transformers_batches_order_mixed_knobs():
    from fineproofs.engines.transformers_engine import _sort_key

    sps = [SamplingParams(top_k=5), SamplingParams(), SamplingParams(extra_body={"a": 1}), SamplingParams(top_k=5)]
    order = sorted(range(len(sps)), key=lambda i: _sort_key(sps[i]))  # None vs int, dicts: no TypeError
    assert abs(order.index(0) - order.index(3)) == 1  # identical params end up in one batch
