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

from fineproofs import prompts
from fineproofs.config import RoleConfig
from fineproofs.engines.base import GenerationRequest, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.records import Problem, ProofSample
from fineproofs.replies import split_reasoning


class ProofGenerator:
    """``n`` proofs per problem from one role (``teacher`` with the ``distill``
    prompt, ``student`` with the ``rollout`` prompt)."""

    def __init__(self, role_name: str, role: RoleConfig, prompt_name: str, generator: CachedGenerator, n: int):
        self.role_name = role_name
        self.role = role
        self.prompt = prompts.load(prompt_name)
        self.generator = generator
        self.n = n
        self.failures: dict[str, str] = {}  # sample key -> engine failure reason (after retries)

    @property
    def stage(self) -> str:
        return "distill" if self.role_name == "teacher" else "rollouts"

    def run(self, problems: list[Problem]) -> list[ProofSample]:
        sp = sampling_of(self.role)
        reqs = [GenerationRequest(self.prompt.render(problem=p.statement), self.n, sp) for p in problems]
        replies = self.generator.run(reqs, stage=self.stage, prompt_version=self.prompt.version)
        out: list[ProofSample] = []
        for p, samples in zip(problems, replies):
            for j, r in enumerate(samples):
                if not r.ok:  # stored as failed (retried by the next run), quarantined here
                    self.failures[f"{p.id}:{self.role_name}:{j}"] = r.reason
                    continue
                split = split_reasoning(r.text)
                out.append(
                    ProofSample(
                        problem_id=p.id,
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
                )
        return out
