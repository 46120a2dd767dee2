"""The rubric reward: the judge's 0-7 grade / 7, through fineproofs' own grading.

:class:`RubricReward` is a TRL reward function (``reward_funcs=[RubricReward(...)]``).
For each completion of a GRPO batch:

1. the text after the last ``</think>`` is the proof, as written (the release's
   ``remove_reasoning``); a completion that is empty, whose ``<think>`` block never
   closes (with ``grading.require_thinking_close``, the chat template opened it: no
   ``</think>`` at all), or (``require_eos``) that hit the length limit without an
   end-of-sequence token is **unterminated: reward 0.0**, and the judge is not asked.
   ``require_eos: false`` (the release) grades a completion cut at the length limit on
   the answer it reached;
2. every other proof of the batch goes to :class:`fineproofs.judging.Grader`
   in **one call**: the ``grade`` prompt (or ``prompts.grade`` of the config), the same
   injection guard (proof fenced as data, score tags neutralised, flags recorded) and
   the build's ``<score>N</score>`` parsing (``grading.score_parse``: ``strict``, or
   ``first`` as the release reads it); the judge is sampled with ``judge.sampling``,
   ``reasoning_effort`` included. The engine does the fan-out
   (an OpenAI-compatible vLLM/SGLang server: concurrent requests; in process:
   batched generation), and the reward function is ``async`` (run on TRL's event
   loop in a worker thread), so grading never serialises the batch;
3. reward = grade / 7. A judge failure (engine error or unparseable reply) is
   retried by the Grader (``grading.max_attempts``); if it still fails the reward is
   ``None``. TRL 1.16 turns ``None`` into NaN, leaves it out of the group's mean and
   std (``nanmean``/``nanstd``) and sets its advantage to 0;
   :class:`fineproofs.train.rl.FineproofsGRPOTrainer` additionally zeroes its
   completion mask, so the sample is out of the loss and out of the token
   normaliser: **masked out of the update, never rewarded 0**.

Every judge reply is kept in a :class:`~fineproofs.store.ResponseStore`
(``<output_dir>/judge_store.sqlite``), so a resumed run does not pay twice for a grade.

The rubric is the RL row's ``rubrics`` text: parsed with
:func:`fineproofs.rubric.parse_rubric` when it is in fineproofs' format and
passed through verbatim otherwise (the published dataset's free-form rubrics).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

from fineproofs.config import GradingConfig, RoleConfig
from fineproofs.engines.base import Engine
from fineproofs.generation import CachedGenerator
from fineproofs.judging import GradeJob, Grader
from fineproofs.prompts import Prompt
from fineproofs.records import Problem, ProofSample, Rubric
from fineproofs.replies import THINK_CLOSE, answer_of
from fineproofs.rubric import RubricError, parse_rubric
from fineproofs.store import ResponseStore

log = logging.getLogger(__name__)


class RawRubric(Rubric):
    """A rubric kept as the text it came in (not in fineproofs' checkpoint format)."""

    def __init__(self, text: str, problem_id: str = ""):
        super().__init__(problem_id=problem_id, items=[])
        self.text = text

    def render(self) -> str:
        return self.text


def rubric_from_text(text: str | None, problem_id: str = "") -> Rubric | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return parse_rubric(text, problem_id)
    except RubricError:
        return RawRubric(text, problem_id)


def completion_text(completion) -> str:
    """The assistant text of a TRL completion (conversational or plain)."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")
    return completion or ""


def proof_or_none(text: str, think_opened: bool = False) -> str | None:
    """The gradable proof of a reply (the text after its last ``</think>``, as written), or
    None when it is empty or unterminated. ``think_opened``: the prompt opened the thinking
    block, so a reply without ``</think>`` ended inside it."""
    if think_opened and THINK_CLOSE not in text:
        return None
    answer = answer_of(text)
    return answer or None


class ReleaseNamedPrompt(Prompt):
    """A judge prompt that also fills the placeholder names of the release's evaluator
    prompts (``{marking_scheme}``, ``{solution}``, ``{human_solution}``), so a config's
    ``prompts: {grade: <the release's v1.md>}`` renders as the release renders it."""

    def render(self, **values: str) -> list[dict[str, str]]:
        extra = {
            "marking_scheme": values.get("rubric", ""),
            "solution": values.get("proof", ""),
            "human_solution": values.get("reference", "").strip(),
        }
        return super().render(**{**extra, **values})


class RubricReward:
    """TRL reward function: rubric-judge grade / 7 (None when the judge fails)."""

    __name__ = "rubric_judge"

    def __init__(
        self,
        judge: RoleConfig,
        grading: GradingConfig,
        store_path: str | Path,
        *,
        require_eos: bool = True,
        engine: Engine | None = None,
        policy_label: str = "policy",
        prompt_files: dict[str, str] | None = None,
    ):
        if engine is None:
            from fineproofs.engines import make_engine

            engine = make_engine(judge.engine)
        self.engine = engine
        self.store = ResponseStore(store_path)
        self.generator = CachedGenerator(engine, self.store, progress=False)
        self.grader = Grader("judge", judge, grading, self.generator, prompt_files=prompt_files)
        if self.grader.prompt.path:  # a user file: the release's placeholder names work too
            self.grader.prompt = ReleaseNamedPrompt(**vars(self.grader.prompt))
        self.think_opened = grading.require_thinking_close
        self.require_eos = require_eos
        self.policy_label = policy_label
        self.eos_token_ids: set[int] = set()  # set by the runner from the trainer's tokenizer/model
        self.totals: Counter = Counter()
        self.last: dict[str, float] = {}

    # TRL calls this with every dataset column as a keyword (problem, rubrics, ...)
    async def __call__(
        self, prompts=None, completions=None, completion_ids=None, problem=None, rubrics=None, log_metric=None, **kwargs
    ) -> list[float | None]:
        terminated = None
        if self.require_eos and completion_ids is not None and self.eos_token_ids:
            terminated = [bool(ids) and ids[-1] in self.eos_token_ids for ids in completion_ids]
        texts = [completion_text(c) for c in completions]
        rewards = await asyncio.to_thread(self.score, texts, list(problem), list(rubrics), terminated)
        if log_metric is not None:
            for k, v in self.last.items():
                log_metric(f"judge/{k}", v)
        return rewards

    def score(
        self, texts: list[str], problems: list[str], rubrics: list[str], terminated: list[bool] | None = None
    ) -> list[float | None]:
        """Rewards for one batch: 0.0 unterminated, grade/7, or None (judge failed)."""
        n = len(texts)
        out: list[float | None] = [None] * n
        jobs, slots = [], []
        n_unterminated = 0
        for i, (text, prob, rub) in enumerate(zip(texts, problems, rubrics)):
            proof = proof_or_none(text, self.think_opened)
            if proof is None or (terminated is not None and not terminated[i]):
                out[i] = 0.0
                n_unterminated += 1
                continue
            p = Problem(statement=prob, source="train")
            sample = ProofSample(p.id, "student", i, self.policy_label, "", proof, "stop")
            jobs.append(GradeJob(p, rubric_from_text(rub, p.id), sample))
            slots.append(i)
        failed = flagged = 0
        if jobs:
            grades = self.grader.run(jobs)  # the whole batch in one call
            for i, g in zip(slots, grades):
                if g.flags:
                    flagged += 1
                if g.status == "ok" and g.score is not None:
                    out[i] = g.score / 7.0
                else:
                    failed += 1
                    log.warning("judge failed for sample %d, masked out of the update: %s", i, g.reason)
        self.last = {
            "graded_frac": len(jobs) / max(n, 1),
            "unterminated_frac": n_unterminated / max(n, 1),
            "failed_frac": failed / max(n, 1),
            "flagged_frac": flagged / max(n, 1),
        }
        self.totals.update(
            samples=n, graded=len(jobs) - failed, unterminated=n_unterminated, failed=failed, flagged=flagged
        )
        return out

    def close(self) -> None:
        self.store.close()
        self.engine.close()
