"""Stage 3, RL with a reasoning cache (RC), and the RC loop used at test time.

**The loop.** A rollout chain is ``T`` turns. Turn ``t`` conditions only on the
problem and the current summary ``s_{t-1}`` (``s_0`` is empty: turn 1 sees the ``rc_reason``
prompt with an empty summary section); the policy reasons and writes a proof; then a frozen summariser
(the paper: Qwen3-4B-Instruct-2507) compresses the previous summary plus this
turn's reasoning into a new short first-person summary ``s_t`` that *replaces*
``s_{t-1}``. The context of any turn is therefore bounded by
``|problem prompt| + |summary| + max_completion_length`` whatever ``T`` is, while
the total reasoning spent on the problem grows linearly with ``T``
(:func:`context_figures`, ``tests/test_train_rc.py``).

**Training** (after CMU-AIRe/QED-Nano ``training/conf/qed_nano_rc.yaml``): for each
problem of a batch the current policy runs one chain of ``rc.turns`` turns, giving
the states ``s_0 .. s_T``; ``rc.states_per_problem`` of them are drawn (without
replacement) and **each drawn state is its own GRPO group**: ``num_generations``
attempts from that state, each graded by the rubric judge
(:class:`~fineproofs.train.reward.RubricReward`, same rules as stage 2). This is TRL's
``GRPOTrainer`` with a ``rollout_func`` (:class:`ReasoningCacheRollout`): TRL hands
it the batch's prompts (``num_generations`` consecutive copies per group); it
returns, per row, the token ids of the state prompt and of the attempt. The dataset
row of each problem is repeated ``states_per_problem`` times so each copy becomes
one state-group. Generation goes through the trainer's own backend
(``model.generate`` on CPU, TRL's vLLM integration with ``use_vllm``); the
summariser is any fineproofs engine (``rc.summarizer``), its replies kept in
``<output_dir>/rc_store.sqlite``. Multi-process runs: every process runs the chains
of its own prompt slice; keep ``per_device_train_batch_size`` a multiple of
``num_generations`` so no group is split across processes.

**Prompts** (``fineproofs/prompts``; the release's structure, this project's words;
``prompts: {rc_reason: FILE, rc_summarize: FILE}`` in a config replaces either):

- ``rc_reason``: one user turn with the problem, a "summary of the earlier attempt"
  section (empty at the first turn: state ``s_0`` uses the same prompt with nothing in
  it, as the release's RC actor does) and the instructions (solve from scratch without
  a summary; with one, improve on it: check it, prove it another way, try another
  strategy, or continue it). The reply is split at ``</think>`` like any rollout: the
  text after it is the turn's proof.
- ``rc_summarize``: problem, the earlier summary and the latest turn's reasoning ->
  a detailed first-person summary of at most two paragraphs (plus a word cap when
  ``summary_max_words`` is set; the release has none) that relates the new attempt to
  the earlier summary and adds no reasoning of its own. The reply is the summary (a
  thinking block, if the summariser emits one, is dropped); an empty reply or a
  summariser failure keeps the previous summary.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fineproofs import prompts
from fineproofs.config import RoleConfig
from fineproofs.engines.base import GenerationRequest, sampling_of
from fineproofs.errors import ConfigError
from fineproofs.generation import CachedGenerator
from fineproofs.prompts import Prompt
from fineproofs.replies import join_reasoning, split_reasoning
from fineproofs.store import ResponseStore

log = logging.getLogger(__name__)

# What the summary section holds before any summary exists: empty in training (the
# release's RC actor), a short note at test time (the release's RC agent writes one too)
NO_SUMMARY_TRAIN = ""
NO_SUMMARY_EVAL = "(no earlier attempt)"


def state_messages(
    problem: str, summary: str = "", *, prompt: Prompt | None = None, empty: str = NO_SUMMARY_TRAIN
) -> list[dict[str, str]]:
    """The policy's prompt at a state (problem + current summary). ``prompt`` replaces the
    packaged ``rc_reason``; a file may name the summary ``{summary}`` or, as the release's
    files do, ``{curr_summary}``."""
    text = summary.strip() or empty
    msgs = (prompt or prompts.load("rc_reason")).render(problem=problem, summary=text, curr_summary=text)
    msgs[-1]["content"] = msgs[-1]["content"].rstrip()
    return msgs


def summarize_messages(
    problem: str,
    previous: str,
    reasoning: str,
    max_words: int | None = None,
    *,
    prompt: Prompt | None = None,
    empty: str = NO_SUMMARY_TRAIN,
) -> list[dict[str, str]]:
    """The summariser's prompt; ``{existing_summary}`` (the release's name) is filled too."""
    rule = f", and at most {max_words} words long" if max_words else ""
    prev = previous.strip() or empty
    return (prompt or prompts.load("rc_summarize")).render(
        problem=problem, previous_summary=prev, existing_summary=prev, reasoning=reasoning.strip(), length_rule=rule
    )


def clean_summary(text: str) -> str:
    split = split_reasoning(text)
    body = split.proof if not split.unterminated else ""
    return body.strip()


@dataclass
class Turn:
    turn: int  # 1-based
    state_summary: str  # the summary this turn conditioned on
    text: str  # the policy's reply
    prompt_tokens: int
    completion_tokens: int
    failed: str = ""  # the engine's reason when this turn could not be generated

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def thinking(self) -> str:
        """What the summariser reads: the turn's reasoning only, as in QED-Nano; the whole
        reply for a policy that does not think in tags (there is nothing else to keep)."""
        split = split_reasoning(self.text)
        return split.reasoning or self.text


@dataclass
class Chain:
    problem: str
    turns: list[Turn] = field(default_factory=list)
    summaries: list[str] = field(default_factory=lambda: [""])  # s_0 .. s_T
    summary_failures: int = 0

    @property
    def total_reasoning_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.turns)

    @property
    def max_context_tokens(self) -> int:
        return max((t.context_tokens for t in self.turns), default=0)


# generate(list of message lists) -> list of (text, prompt_tokens, completion_tokens)
# (states, turn) -> (text, prompt tokens, completion tokens[, failure reason]) per state
GenerateFn = Callable[..., list[tuple]]
# summarize(list of (problem, previous summary, reasoning)) -> list of new summaries (None = failed)
SummarizeFn = Callable[[list[tuple[str, str, str]]], list[str | None]]


def run_chains(
    problems: list[str],
    turns: int,
    generate: GenerateFn,
    summarize: SummarizeFn,
    summarize_last: bool = True,
    *,
    prompt: Prompt | None = None,
    empty: str = NO_SUMMARY_TRAIN,
) -> list[Chain]:
    """One RC chain per problem, all problems batched turn by turn (``prompt``: the
    ``rc_reason`` template, packaged by default; ``empty``: the summary section's text
    before any summary exists)."""
    chains = [Chain(p) for p in problems]
    for t in range(1, turns + 1):
        current = [c.summaries[-1] for c in chains]
        gens = generate(
            [state_messages(c.problem, s, prompt=prompt, empty=empty) for c, s in zip(chains, current)], turn=t
        )
        for c, s, (text, pt, ct, *failed) in zip(chains, current, gens):
            c.turns.append(Turn(t, s, text, pt, ct, failed[0] if failed else ""))
        if t == turns and not summarize_last:
            break
        # a turn that could not be generated is not summarised: the next turn keeps the old summary
        todo = [i for i, c in enumerate(chains) if not c.turns[-1].failed]
        got = summarize([(chains[i].problem, current[i], chains[i].turns[-1].thinking) for i in todo]) if todo else []
        new: list[str | None] = [None] * len(chains)
        for i, n in zip(todo, got):
            new[i] = n
        for c, s, n in zip(chains, current, new):
            if c.turns[-1].failed:
                c.summaries.append(s)
            elif n:
                c.summaries.append(n)
            else:
                c.summary_failures += 1
                c.summaries.append(s)
    return chains


def context_figures(chains: list[Chain]) -> dict[str, float]:
    """Token counts: context per turn (bounded) vs total reasoning (linear in T)."""
    if not chains:
        return {}
    turns = [t for c in chains for t in c.turns]
    no_cache = [c.turns[0].prompt_tokens + c.total_reasoning_tokens for c in chains if c.turns]
    return {
        "turns": max(len(c.turns) for c in chains),
        "max_context_tokens": max(c.max_context_tokens for c in chains),
        "mean_context_tokens": sum(t.context_tokens for t in turns) / len(turns),
        "mean_total_reasoning_tokens": sum(c.total_reasoning_tokens for c in chains) / len(chains),
        "mean_no_cache_context_tokens": sum(no_cache) / max(len(no_cache), 1),
        "summary_failures": sum(c.summary_failures for c in chains),
    }


class Summarizer:
    """The frozen summariser behind any fineproofs engine, with a response store."""

    def __init__(
        self,
        role: RoleConfig,
        engine,
        store: ResponseStore,
        max_words: int | None = None,
        *,
        prompt: Prompt | None = None,
        empty: str = NO_SUMMARY_TRAIN,
    ):
        self.role = role
        self.generator = CachedGenerator(engine, store, progress=False)
        self.prompt = prompt or prompts.load("rc_summarize")
        self.max_words = max_words
        self.empty = empty
        self.sample_index = 0

    def __call__(self, items: list[tuple[str, str, str]]) -> list[str | None]:
        sp = sampling_of(self.role)
        reqs = [
            GenerationRequest(
                summarize_messages(p, prev, r, self.max_words, prompt=self.prompt, empty=self.empty), 1, sp
            )
            for p, prev, r in items
        ]
        replies = self.generator.run(
            reqs, stage="rc_summarize", prompt_version=self.prompt.version, first_sample=self.sample_index
        )
        out = []
        for (r,) in replies:
            out.append(clean_summary(r.text) or None if r.ok else None)
        return out


def engine_generate(
    generator: CachedGenerator,
    role: RoleConfig,
    *,
    sample_index: int = 0,
    stage: str = "rc_reason",
    prompt_version: str | None = None,
) -> GenerateFn:
    """A :data:`GenerateFn` over a fineproofs engine (test-time RC, benchmarks);
    ``prompt_version`` (the store key) defaults to the packaged ``rc_reason``'s."""
    version = prompt_version or prompts.load("rc_reason").version
    sp = sampling_of(role)

    def generate(msgs_list, turn: int = 1):
        reqs = [GenerationRequest(m, 1, sp) for m in msgs_list]
        # each turn its own sample index: a turn whose state did not change (failed summary)
        # is a new draw, not a replay of the previous turn from the store
        index = sample_index if turn == 1 else sample_index * 1000 + turn
        replies = generator.run(reqs, stage=stage, prompt_version=version, first_sample=index)
        return [
            (
                join_reasoning(r.text, r.reasoning) if r.ok else "",
                r.prompt_tokens,
                r.completion_tokens,
                "" if r.ok else r.reason,
            )
            for (r,) in replies
        ]

    return generate


# ---------------------------------------------------------------------------
# training: TRL rollout_func
# ---------------------------------------------------------------------------


class ReasoningCacheRollout:
    """TRL ``rollout_func``: each group of ``num_generations`` rows = one RC state."""

    def __init__(
        self,
        prompt_to_problem: dict[str, str],
        tokenizer,
        summarizer: Summarizer,
        turns: int,
        states_per_problem: int,
        seed: int = 42,
        prompt: Prompt | None = None,
    ):
        self.prompt = prompt or prompts.load("rc_reason")
        self.prompt_to_problem = prompt_to_problem
        self.tok = tokenizer
        self.summarizer = summarizer
        self.turns = turns
        self.states_per_problem = states_per_problem
        self.seed = seed
        self.chains: list[Chain] = []  # every chain run so far (for the figures)
        self.state_turns: list[int] = []

    def _prompt_ids(self, trainer, messages) -> list[int]:
        kw = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        enc = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, **kw)
        return list(enc["input_ids"])

    def _generate(self, trainer, messages_list, n: int):
        ids = [self._prompt_ids(trainer, m) for m in messages_list for _ in range(n)]
        # TRL has no public generate-from-token-ids call for a rollout_func yet: this one
        # is private, so check_trl() pins the versions whose signature it was tested on
        completion_ids, logprobs = trainer._generate_single_turn(ids, None, {}, n)
        return ids, completion_ids, logprobs

    def __call__(self, prompts_in: list, trainer) -> dict:
        mode = "train" if trainer.model.training else "eval"
        g = trainer.num_generations if mode == "train" else trainer.num_generations_eval
        groups = [prompts_in[i : i + g] for i in range(0, len(prompts_in), g)]
        problems = []
        for grp in groups:
            content = grp[0][-1]["content"] if isinstance(grp[0], list) else grp[0]
            if content not in self.prompt_to_problem:
                raise ValueError("rc rollout: a prompt that is not in the training set reached the rollout")
            problems.append(self.prompt_to_problem[content])
        unique = list(dict.fromkeys(problems))
        self.summarizer.sample_index = trainer.state.global_step  # fresh summaries each step, cached on resume

        def generate(msgs, turn: int = 1):
            ids, comp, _ = self._generate(trainer, msgs, 1)
            return [(self.tok.decode(c, skip_special_tokens=True), len(p), len(c)) for p, c in zip(ids, comp)]

        chains = dict(zip(unique, run_chains(unique, self.turns, generate, self.summarizer, prompt=self.prompt)))
        self.chains.extend(chains.values())
        rng = random.Random(hash((self.seed, trainer.state.global_step)) & 0xFFFFFFFF)
        pools: dict[str, list[int]] = {}
        chosen: list[tuple[str, int]] = []
        for p in problems:
            pool = pools.get(p)
            if not pool:
                pool = pools[p] = rng.sample(range(self.turns + 1), self.turns + 1)
            chosen.append((p, pool.pop()))
        state_msgs = [state_messages(p, chains[p].summaries[k], prompt=self.prompt) for p, k in chosen]
        prompt_ids, completion_ids, logprobs = self._generate(trainer, state_msgs, g)
        turns = [k for _, k in chosen for _ in range(g)]
        self.state_turns.extend(k for _, k in chosen)
        figs = context_figures(list(chains.values()))
        for k in ("max_context_tokens", "mean_total_reasoning_tokens", "mean_no_cache_context_tokens"):
            trainer._metrics[mode][f"rc/{k}"].append(float(figs[k]))
        trainer._metrics[mode]["rc/mean_state_index"].append(sum(k for _, k in chosen) / len(chosen))
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs, "rc_state": turns}

    def figures(self) -> dict:
        figs = context_figures(self.chains)
        figs["states_trained"] = {str(k): self.state_turns.count(k) for k in sorted(set(self.state_turns))}
        return figs


# TRL versions the RC rollout was tested on (it calls GRPOTrainer._generate_single_turn,
# whose signature changed three times within trl 1.x); keep in step with pyproject.toml
TRL_TESTED = ("1.15", "1.17")
_SINGLE_TURN_PARAMS = ["prompt_ids", "images", "multimodal_fields", "num_generations"]


def check_trl() -> None:
    """Refuse, with one clear line, a TRL outside the range the RC rollout is tested on."""
    import inspect

    import trl
    from packaging.version import Version
    from trl import GRPOTrainer

    lo, hi = TRL_TESTED
    fn = getattr(GRPOTrainer, "_generate_single_turn", None)
    params = list(inspect.signature(fn).parameters)[1:5] if fn else []
    if not Version(lo) <= Version(trl.__version__) < Version(hi) or params != _SINGLE_TURN_PARAMS:
        raise ConfigError(
            f"fineproofs train rc is tested with trl>={lo},<{hi} (installed: {trl.__version__}): "
            f"pip install 'trl>={lo},<{hi}'"
        )


def rc_rollout_builder(cfg, ds, tok, pool, out: Path):
    """For :func:`fineproofs.train.rl.run_grpo`: (expanded dataset, rollout_func)."""
    check_trl()
    rc = cfg.rc
    prompt_to_problem = {row["prompt"][-1]["content"]: row["problem"] for row in ds}
    # the dataset's prompt column (the RL prompt) only keys the problem: the rollout builds
    # every state's prompt, s_0 included, from rc_reason
    k = rc.states_per_problem
    if k > rc.turns + 1:
        raise ConfigError(f"rc.states_per_problem={k} exceeds the {rc.turns + 1} states of a {rc.turns}-turn chain")
    ds = ds.select([i for i in range(len(ds)) for _ in range(k)])
    engine = pool.get(rc.summarizer.engine)
    store = ResponseStore(out / "rc_store.sqlite")
    summarizer = Summarizer(
        rc.summarizer, engine, store, rc.summary_max_words, prompt=prompts.pick("rc_summarize", cfg.prompts)
    )
    rollout = ReasoningCacheRollout(
        prompt_to_problem,
        tok,
        summarizer,
        rc.turns,
        k,
        seed=cfg.data.seed,
        prompt=prompts.pick("rc_reason", cfg.prompts),
    )
    return ds, rollout


def run_rc(cfg, output_dir, **kw):
    from fineproofs.train.rl import run_grpo

    return run_grpo(cfg, output_dir, stage="rc", rollout_builder=rc_rollout_builder, **kw)
