"""Progress a person can plan with: `step i/n` and the build's elapsed time on every step,
retry rounds labelled as retries (never as the step starting over), and an ETA measured
after the first completion (model load excluded), on an injected clock."""

from __future__ import annotations

import logging

from fineproofs import progress
from fineproofs.engines.base import Completion, Engine, GenerationRequest, SamplingParams
from fineproofs.generation import CachedGenerator
from fineproofs.store import ResponseStore


def test_labels_inside_and_outside_a_build():
    assert progress.label("rubrics") == "rubrics"
    with progress.build_plan(["calibrate_judge"], started=0.0):
        progress.add_steps(["rubrics", "rollouts", "grade_judge", "rubrics"])
        assert progress.label("calibrate_judge") == "step 1/4 calibrate_judge"
        assert progress.label("rubrics", attempt=2) == "step 2/4 rubrics retry 2"
        assert progress.label("grade_judge") == "step 4/4 grade_judge"
        assert progress.label("decontam_verifier") == "decontam_verifier"  # not planned: bare
        assert "(build running " in progress.where("rollouts")
    assert progress.label("rubrics") == "rubrics" and progress.where("rubrics") == "rubrics"
    progress.add_steps(["x"])  # outside a build: nothing to add to
    assert progress.label("x") == "x"


def test_start_and_stop_as_the_build_calls_them():
    progress.start(["calibrate_judge"], started=0.0)
    try:
        progress.add_steps(["rubrics"])
        assert progress.label("rubrics") == "step 2/2 rubrics"
    finally:
        progress.stop()
    assert progress.label("rubrics") == "rubrics"


def test_clock():
    assert [progress.clock(s) for s in (0, 59.6, 75, 3725)] == ["0:00", "1:00", "1:15", "1:02:05"]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_eta_ignores_the_first_completion():
    clock = Clock()
    bar = progress.StepBar(24, "rubrics", disable=True, clock_fn=clock)
    assert bar.eta() == "ETA after 1st batch"
    clock.t = 60.0  # the first batch pays for loading the model
    bar.update(1)
    for _ in range(7):  # its batch-mates come back at the same moment: no rate from them
        clock.t += 0.01
        bar.update(1)
        assert bar.eta() == "ETA after next batch"
    clock.t = 70.0  # 8 more in 10 s: 0.8 samples/s, 8 left -> 10 s
    bar.update(8)
    assert bar.eta() == "ETA 0:10"
    clock.t = 80.0
    bar.update(8)
    assert bar.eta() == "done"
    bar.close()


class Fixed(Engine):
    model_id = "fixed"
    revision = "t"

    def generate(self, requests):
        for i, r in enumerate(requests):
            yield i, [Completion("x")] * r.n


def test_a_retry_round_reads_as_a_retry(tmp_path, caplog):
    gen = CachedGenerator(Fixed(), ResponseStore(tmp_path / "s.sqlite"), progress=False)
    reqs = [GenerationRequest([{"role": "user", "content": f"q{i}"}], 1, SamplingParams()) for i in range(3)]
    with caplog.at_level(logging.INFO, logger="fineproofs.generation"), progress.build_plan(["rubrics"]):
        gen.run(reqs, stage="rubrics", prompt_version="v", first_sample=0)
        gen.run(reqs[:2], stage="rubrics", prompt_version="v", first_sample=1, attempt=1)
    first, retry = [r.getMessage() for r in caplog.records]
    assert first.startswith("step 1/1 rubrics (build running ") and first.endswith(
        "0 of 3 samples in the store, generating 3"
    )
    assert retry.startswith("step 1/1 rubrics retry 1 (build running ")
    assert retry.endswith("asking again for 2 sample(s) whose replies were rejected")
    assert "in the store, generating" not in retry


def test_the_build_plans_the_steps_its_stages_run(tmp_path):
    from fineproofs.config import load_profile
    from fineproofs.pipelines.build import Build, step_names

    for name in ("embedded", "paper"):
        for split in ("rl", "sft"):
            b = Build(load_profile(name), tmp_path / f"{name}-{split}", split, progress=False)
            stages = b.stages(lambda role: object())  # a stand-in generator: nothing is generated
            assert b._llm_steps() == step_names(stages), (name, split)
