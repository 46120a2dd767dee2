"""The stored rubric without the writer's lead-in (``rubrics.keep_lead_in: false``, the
``paper`` profile), as QED-Nano's scheme_generation.py keeps a scheme from "Checkpoints" on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fineproofs.config import EngineConfig, RoleConfig, RubricConfig, SamplingConfig, load_profile
from fineproofs.engines.base import Completion, Engine, GenerationRequest
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.rubrics import RubricWriter, cut_lead_in
from fineproofs.pipelines.stage import Work
from fineproofs.records import Problem
from fineproofs.store import ResponseStore

SCHEME = """1. **Checkpoints (7 pts total)**
* (3 pts) Reduces to the case $a = b$.
* (4 pts) Proves the key estimate.

2. **Zero-credit items**
* Numerical checks.

3. **Deductions**
* **-1**: a slip in the equality case."""
LEAD = "Here is a grading scheme for this problem, following the reference solution.\n\n"


class Fixed(Engine):
    model_id = "fixed-writer"

    def __init__(self, text: str):
        self.text = text

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        for i, r in enumerate(requests):
            yield i, [Completion(self.text)] * r.n


@pytest.mark.parametrize(
    "reply, kept",
    [
        (LEAD + SCHEME, SCHEME),
        ("<b>Scheme</b>\n### Checkpoints (7 pts total)\n- (7 pts) all", "### Checkpoints (7 pts total)\n- (7 pts) all"),
        (SCHEME, SCHEME),  # nothing before it
        ("1. (3 points) a\n2. (4 points) b", "1. (3 points) a\n2. (4 points) b"),  # no "Checkpoints": kept whole
        ('{"checkpoints": []}', '{"checkpoints": []}'),  # JSON replies are not cut
    ],
)
def test_cut_lead_in(reply, kept):
    assert cut_lead_in(reply) == kept


@pytest.mark.parametrize("keep, stored", [(True, LEAD + SCHEME), (False, SCHEME)])
def test_the_stored_rubric_is_what_the_judge_sees(tmp_path, keep, stored):
    role = RoleConfig(engine=EngineConfig(model="x"), sampling=SamplingConfig(max_tokens=64))
    gen = CachedGenerator(Fixed(LEAD + SCHEME), ResponseStore(tmp_path / "s.sqlite"), progress=False)
    writer = RubricWriter(role, RubricConfig(keep_lead_in=keep), gen)
    w = Work(Problem(statement="Prove that $a^2 + b^2 \\ge 2ab$ for reals $a, b$.", source="t", solutions=["AM-GM."]))
    (out,) = [x for x in writer.run([w]) if isinstance(x, Work)]
    (rec,) = writer.records(out)
    assert rec["rubric"] == stored == out.rubric.render()
    assert [i.points for i in out.rubric.items] == [3, 4]


def test_paper_cuts_the_lead_in():
    assert load_profile("paper").rubrics.keep_lead_in is False
    assert load_profile("embedded").rubrics.keep_lead_in is True
