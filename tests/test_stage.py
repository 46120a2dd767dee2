"""The Stage protocol and the build's one bookkeeping helper: items stream through a
chain of stages in bounded chunks, every stage's results, failures and counts are
recorded the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fineproofs.pipelines.stage import Failed, LLMStage, Recorder, Work
from fineproofs.records import Problem


class Tagger(LLMStage):
    """A stand-in stage: fails every third problem, notes when each chunk ran."""

    key_name = "problem_id"

    def __init__(self, name: str, log: list, chunk: int = 2):
        self.name, self.log, self.chunk = name, log, chunk

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:
        self.log.append((self.name, [w.problem.statement for w in chunk]))
        for w in chunk:
            n = int(w.problem.statement.split()[-1])
            if n % 3 == 0:
                yield Failed(w.id, f"no_luck: {n} is a multiple of 3")
            else:
                w.problem.category += self.name
        yield from chunk

    def records(self, work: Work) -> list[dict]:
        return [] if self.name not in work.problem.category else [{"problem_id": work.id, "stage": self.name}]


def _works(n: int) -> list[Work]:
    return [Work(Problem(statement=f"Prove statement number {i}", source="t")) for i in range(1, n + 1)]


def test_items_stream_through_chained_stages(tmp_path):
    log: list = []
    counts: dict = {}
    dropped: dict = {}
    with Recorder(tmp_path, counts, dropped) as rec:
        items = iter(_works(6))
        for stage in (Tagger("a", log), Tagger("b", log)):
            items = rec.through(stage, items)
        out = list(items)
    assert len(out) == 6  # every item passes on; failures are records beside it
    # streaming: stage b sees the first chunk before stage a has processed the whole input
    assert [name for name, _ in log][:3] == ["a", "b", "a"]
    assert counts == {"a": 4, "b": 4}
    assert dropped == {"a": {"no_luck": 2}, "b": {"no_luck": 2}}
    q = [json.loads(x) for x in (tmp_path / "quarantine" / "llm.jsonl").read_text().splitlines()]
    assert len(q) == 4 and {x["stage"] for x in q} == {"a", "b"}
    assert all(x["reason"].startswith("no_luck: ") and "problem_id" in x for x in q)
    stage_a = (tmp_path / "stages" / "a.jsonl").read_text().splitlines()
    assert len(stage_a) == 4


def test_a_crash_leaves_no_half_written_stage_file(tmp_path):
    class Boom(Tagger):
        def process(self, chunk):
            yield from super().process(chunk)
            raise RuntimeError("engine died")

    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "a.jsonl").write_text("previous run\n")
    try:
        with Recorder(tmp_path, {}, {}) as rec:
            list(rec.through(Boom("a", []), iter(_works(4))))
    except RuntimeError:
        pass
    assert (tmp_path / "stages" / "a.jsonl").read_text() == "previous run\n"
    assert not list((tmp_path / "stages").glob("*.tmp"))


def test_the_quarantine_lists_failures_in_stage_order_whatever_the_interleaving(tmp_path):
    """Stages run interleaved (here chunk by chunk; in a build, in threads of their own):
    the quarantine still lists stage a's failures, in input order, then stage b's, so two
    builds of the same inputs write the same file."""
    with Recorder(tmp_path, {}, {}) as rec:
        items = iter(_works(9))
        for stage in (Tagger("a", []), Tagger("b", [])):
            items = rec.through(stage, items)
        list(items)
    q = [json.loads(x) for x in (tmp_path / "quarantine" / "llm.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in q] == ["a"] * 3 + ["b"] * 3
    assert [x["reason"] for x in q[:3]] == [f"no_luck: {n} is a multiple of 3" for n in (3, 6, 9)]
    assert not list((tmp_path / "quarantine").glob("*tmp*"))  # the per-stage parts leave nothing behind
