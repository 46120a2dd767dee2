"""Proof generation: teacher distillation (SFT) and student rollouts (RL difficulty).

Both send one prompt per problem and ``n`` samples per prompt through the
store-backed generator, then split each reply into ``reasoning_content`` and
``proof`` at the end of the thinking block:

- a reply with ``<think> ... </think>`` (or just a closing ``</think>``, as
  Qwen3-Thinking / DeepSeek chat templates open the block in the prompt): the
  reasoning is before the close, the proof after it;
- a reply with an opened but never closed block: all reasoning, no proof
  (``unterminated``);
- a reply without thinking tags (non-reasoning models such as SmolLM2): no
  reasoning, the whole reply is the proof.

A trailing self-evaluation section (DeepSeek-Math-V2 appends one) is stripped from
the proof. Truncated replies (``finish_reason == 'length'``) are kept and marked.
"""

from __future__ import annotations

from collections.abc import Iterator

from fineproofs import prompts
from fineproofs.config import RoleConfig
from fineproofs.engines.base import GenerationRequest, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.stage import Failed, LLMStage, Work, as_dicts
from fineproofs.records import ProofSample
from fineproofs.replies import THINK_CLOSE, SplitReply, split_reasoning


class ProofGenerator(LLMStage):
    """``n`` proofs per problem from one role: the ``rollouts`` stage (``student``, the
    ``rollout`` prompt, problems with a rubric only: their grades need one) or the
    ``distill`` stage (``teacher``, the ``distill`` prompt, every problem). A sample the
    engine could not produce is a :class:`Failed` (the store keeps it as failed, and
    the next run retries it)."""

    record = ProofSample

    def __init__(
        self,
        role_name: str,
        role: RoleConfig,
        prompt_name: str,
        generator: CachedGenerator,
        n: int,
        *,
        think_opened: bool = False,
        prompt_files: dict[str, str] | None = None,
    ):
        self.role_name = role_name
        self.role = role
        self.prompt = prompts.pick(prompt_name, prompt_files)
        self.generator = generator
        self.n = n
        self.student = role_name == "student"
        self.name = "rollouts" if self.student else "distill"
        self.field = "rollouts" if self.student else "proofs"
        # the chat template opens <think> in the prompt (Qwen3-Thinking): a reply without
        # </think> never left its reasoning, it has no answer (QED-Nano's rule)
        self.think_opened = think_opened

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:
        todo = [w for w in chunk if not w.dropped and (w.rubric is not None or not self.student)]
        sp = sampling_of(self.role)
        reqs = [GenerationRequest(self.prompt.render(problem=w.problem.statement), self.n, sp) for w in todo]
        replies = self.generator.run(reqs, stage=self.name, prompt_version=self.prompt.version)
        for w, samples in zip(todo, replies):
            out = getattr(w, self.field)
            for j, r in enumerate(samples):
                if not r.ok:
                    yield Failed(f"{w.id}:{self.role_name}:{j}", f"engine_failure: {r.reason}")
                    continue
                out.append(self.sample(w.id, j, r))
        yield from chunk

    def sample(self, problem_id: str, j: int, r) -> ProofSample:
        split = split_reasoning(r.text, r.reasoning)
        if self.think_opened and not split.unterminated and THINK_CLOSE not in r.text and not r.reasoning:
            split = SplitReply(r.text.strip(), "", True)
        return ProofSample(
            problem_id=problem_id,
            role=self.role_name,
            sample_index=j,
            model=self.role.engine.model,
            reasoning_content=split.reasoning,
            proof=split.proof,
            finish_reason="unterminated" if split.unterminated else r.finish_reason,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            truncated=r.finish_reason == "length" or split.unterminated,
        )

    def records(self, work: Work) -> list[dict]:
        return as_dicts(getattr(work, self.field))
