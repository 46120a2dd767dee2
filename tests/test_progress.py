"""Progress a person can plan with: `step i/n` and the build's elapsed time on every step,
retry rounds labelled as retries (never as the step starting over), an ETA measured
after the first completion (model load excluded), and the whole build's ETA from each
role's measured rate, on an injected clock."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

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
    # the generator's own lines (the build line is the progress logger's, captured too when
    # an earlier test left that logger at INFO)
    first, retry = [r.getMessage() for r in caplog.records if r.name == "fineproofs.generation"]
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


# --- the whole build's ETA ---------------------------------------------------------------


def calls(stage: str, clock: Clock, batches: list[tuple[float, int]], cached: int = 0, attempt: int = 0):
    """One call of ``stage`` as CachedGenerator makes it: ``cached`` samples from the store,
    then the batches (time, samples) generated; returns the bar, still open."""
    total = sum(k for _, k in batches)
    progress.asked(stage, total + cached, total, attempt)
    bar = progress.StepBar(total, stage, attempt, disable=True, clock_fn=clock)
    for t, k in batches:
        clock.t = t
        bar.update(k)
    return bar


def eta(stage: str = "rubrics") -> str:
    """The ETA of the build line of ``stage``."""
    return progress.overall(stage).split(" elapsed, ")[1]


def test_the_build_eta_comes_from_each_role_s_rate_after_its_first_batch():
    clock = Clock()
    with progress.build_plan(["rubrics", "rollouts"], started=0.0, clock_fn=clock):
        progress.expect("rubrics", "rubric_writer", 10)
        progress.expect("rollouts", "student", 40, about=True)  # rubrics may drop problems
        assert eta() == "no ETA yet (rubrics +1: no rate yet)"
        bar = calls("rubrics", clock, [(60.0, 2)])  # the first batch: 60 s of model load
        assert eta() == "no ETA yet (rubrics +1: no rate yet)"
        clock.t = 64.0  # 4 more in 4 s: 1 sample/s; 4 rubrics left, rollouts unmeasured
        bar.update(4)
        assert eta() == "ETA ≥ 0:04 (rollouts: no rate yet)"
        assert (
            progress.overall("rubrics") == "build: step 1/2 rubrics, 1:04 elapsed, ETA ≥ 0:04 (rollouts: no rate yet)"
        )
        clock.t = 68.0
        bar.update(4)
        bar.close()
        progress.finished("rubrics")
        bar = calls("rollouts", clock, [(100.0, 10), (110.0, 5)])  # load, then 5 in 10 s
        assert eta("rollouts") == "ETA ~0:50"  # 25 left at 0.5/s; ~: rollouts still estimated
        clock.t = 130.0  # nothing back for 20 s: the rate falls with the time spent waiting
        assert eta("rollouts") == "ETA ~2:30"  # 5 in 30 s: 25 left -> 150 s
        bar.close()
        progress.finished("rollouts")
        assert progress.overall("rollouts") == "build: step 2/2 rollouts, 2:10 elapsed, all steps done"


def test_a_role_s_rate_counts_for_its_later_steps_and_cached_samples_cost_nothing():
    clock = Clock()
    with progress.build_plan(["calibrate_judge", "rollouts", "grade_judge"], started=0.0, clock_fn=clock):
        progress.expect("calibrate_judge", "judge")  # sized by its calls
        progress.expect("rollouts", "student", 20, stored=8)  # 8 already in the store
        progress.expect("grade_judge", "judge", 20, about=True)
        assert progress.build_eta() == "no ETA yet (calibrate_judge +2: not known yet)"
        assert eta("calibrate_judge") == "no ETA yet"  # the reason would not fit 80 columns
        bar = calls("calibrate_judge", clock, [(30.0, 4), (34.0, 4)], cached=12)  # judge: 1 sample/s
        bar.close()
        progress.finished("calibrate_judge")
        assert eta("rollouts") == "ETA ≥ 0:20 (rollouts: no rate yet)"  # the judge's 20 at 1/s
        bar = calls("rollouts", clock, [(40.0, 2), (44.0, 2)], cached=8)  # 2 per 4 s; 8 of 20 were cached
        assert eta("rollouts") == "ETA ~0:36"  # (20 - 8 cached - 4) / 0.5 + 20 / 1
        bar.close()


def test_steps_that_run_at_once_count_by_role_the_slowest_role():
    clock = Clock()
    with progress.build_plan(["rollouts", "grade_judge"], started=0.0, clock_fn=clock):
        progress.expect("rollouts", "student", 30, concurrent=True)
        progress.expect("grade_judge", "judge", 30, concurrent=True)
        student = calls("rollouts", clock, [(10.0, 5), (20.0, 5)])  # 0.5/s: 20 left -> 40 s
        judge = calls("grade_judge", clock, [(21.0, 5), (22.0, 5)])  # 5/s: 20 left -> 4 s
        # the student's 20 left at 5 per 12 s (its rate falls while it waits) -> 48 s; the
        # judge's 20 at 5/s take 4 s alongside, not after
        assert eta("rollouts") == "ETA 0:48"
        student.close(), judge.close()


def test_a_step_s_size_is_learnt_from_what_it_asks_per_problem():
    clock = Clock()
    with progress.build_plan(["rubrics", "grade_judge"], started=0.0, clock_fn=clock):
        progress.expect("rubrics", "rubric_writer", 8, problems=8)
        progress.expect("grade_judge", "judge", 32, about=True, problems=8)  # 4 proofs per problem, at most
        calls("rubrics", clock, [(10.0, 8), (12.0, 0)]).close()
        progress.finished("rubrics")

        def stage(items):  # half the problems reach the judge with 2 answered proofs, the rest none
            for i, x in enumerate(items):
                bar = calls("grade_judge", clock, [(clock.t + 2, 2), (clock.t + 4, 2)] if i % 2 == 0 else [])
                bar.close()
                if i == 1:  # 2 problems taken, 4 asked: 2 per problem -> 16 in all, 12 left
                    assert progress._plan.steps["grade_judge"].samples() == 16
                yield x

        assert list(progress.tracked("grade_judge", range(8), stage)) == list(range(8))
        assert progress._plan.steps["grade_judge"].finished
        assert list(progress.tracked(None, [1, 2], lambda xs: (x * 2 for x in xs))) == [2, 4]


@pytest.mark.parametrize("stage", ["grade_grader", "problem_filter", "calibrate_grader"])
@pytest.mark.parametrize("attempt", [0, 2])
def test_the_build_line_fits_80_columns(stage, attempt):
    clock = Clock()
    steps = ["calibrate_grader", "problem_filter", "rubrics", "rollouts", "grade_judge", "category", "grade_grader"]
    with progress.build_plan(steps, started=0.0, clock_fn=clock):
        for s in steps:
            progress.expect(s, s, 10**6)
        clock.t = 3 * 86400.0  # three days in
        for event in ("", "done"):
            line = progress._plan.line(stage, attempt, event)
            assert len(line) <= progress.WIDTH and line.startswith("build: step ") and "elapsed" in line
        for total in (50, 10**6):  # the bar's own ETA always; the build's only where it fits
            bar = progress.StepBar(total, stage, attempt, disable=True, clock_fn=clock)
            for build in ("build ~1:02:03", "build ≥100:00:00"):
                postfix = bar.postfix("ETA 1:02:03", build)
                line = f"{bar.desc}: 100%|{'#' * bar.MIN_BAR}| {total}/{total} [1:02:03, {postfix}]"
                assert postfix == "ETA 1:02:03" or (postfix.endswith(build) and len(line) <= progress.WIDTH)
            bar.close()
    bar = progress.StepBar(5, "rubrics", disable=True)
    assert bar.postfix("ETA 0:10", "build ~6:30") == "ETA 0:10, build ~6:30"
    assert bar.postfix("ETA 0:10", "") == "ETA 0:10"
    bar.close()


def test_a_real_build_logs_the_build_line_at_every_step(tmp_path, caplog, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from buildkit import PAPER_MODELS, paper_profile_file
    from faultproxy import FaultServer
    from oracle import oracle_reply

    from fineproofs.config import load_profile
    from fineproofs.pipelines.build import Build

    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    overrides = {"decontamination": {"benchmarks": [], "required": False}}
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as server:
        prof = load_profile(str(paper_profile_file(tmp_path, server.url, student_samples=2, overrides=overrides)))
        with caplog.at_level(logging.INFO, logger="fineproofs.progress"):
            Build(prof, tmp_path / "out", "rl", limit=2, progress=False).run()
    lines = [r.getMessage() for r in caplog.records if r.name == "fineproofs.progress"]
    names = [*(["problem_filter"] if prof.problem_filter.enabled else []), "rubrics", "rollouts", "grade_judge"]
    n = len(names)
    assert any(x.startswith(f"build: step 1/{n} {names[0]}, ") for x in lines), lines  # its first call
    for i, step in enumerate(names, start=1):  # every step ends with the line, whether it asked anything or not
        assert any(x.startswith(f"build: step {i}/{n} {step} done, ") for x in lines), (step, lines)
    assert lines[-1].endswith(" elapsed, all steps done") and all(len(x) <= 80 for x in lines)
