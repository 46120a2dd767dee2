"""A tiny, randomly initialised causal LM with a tokenizer trained on the fly.

For smoke tests of the training stages (``pytest``, ``bench/bench_train_gpu.py``) and
for trying a config quickly: a 2-layer Llama (hidden size 48 by default) and a
byte-level BPE tokenizer trained on a few proof-like texts, with a ChatML chat
template that carries ``{% generation %}`` markers (so TRL's ``assistant_only_loss``
works). It learns nothing useful; it exercises every code path in seconds.
"""

from __future__ import annotations

from pathlib import Path

from fineproofs.train.templates import chatml_training_template

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "Generate a rigorous proof to the following question:",
    "Prove that for every positive integer n the number n^3 - n is divisible by 6.",
    "<think>\nLet me factor n^3 - n = (n-1) n (n+1), three consecutive integers.\n</think>\n\n",
    "Proof. Among three consecutive integers one is even and one is divisible by 3, hence 6 divides the product.",
    "Show that the sum of the first n odd numbers equals n^2. We use induction on n.",
    "Let a, b, c be positive reals with abc = 1. Prove that a + b + c >= 3 by AM-GM.",
    "Summary of my work so far: I proved the base case and reduced the claim to a lemma.",
    "Grade the proof below. <score>7</score> <score>0</score> The proof is complete.",
    "I showed that the function is linear; I tried substituting x = 0 but it did not help.",
]


def make_tiny_model(
    out_dir: str | Path, hidden_size: int = 48, layers: int = 2, vocab_size: int = 512, seed: int = 0
) -> Path:
    """Write a tiny model + tokenizer to ``out_dir`` (reused if already there)."""
    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    hf_tok.chat_template = chatml_training_template(default_system=None)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    hf_tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


# ---------------------------------------------------------------------------
# synthetic FineProofs splits in the build's run-directory layout
# ---------------------------------------------------------------------------

PROBLEMS = [
    "Prove that for every positive integer n the number n^3 - n is divisible by 6.",
    "Show that the sum of the first n odd numbers equals n^2.",
    "Let a, b, c be positive reals with abc = 1. Prove that a + b + c >= 3.",
    "Prove that there are infinitely many primes.",
]

RUBRIC = (
    "1. (3 points) Reduces the claim to a statement about consecutive integers or uses induction correctly.\n"
    "2. (4 points) Completes the argument rigorously."
)


def write_synthetic_run(run_dir: str | Path, n: int = 8) -> Path:
    """A run directory with ``data/{all,default}`` SFT shards and an RL shard
    (``data/default`` of ``<run_dir>/rl``), with the exact fineproofs features."""
    import datasets

    from fineproofs.records import RL_FEATURES, SFT_FEATURES, Message, RLRow, SFTRow, to_row

    run = Path(run_dir)
    sft_rows, rl_rows = [], []
    for i in range(n):
        prob = PROBLEMS[i % len(PROBLEMS)]
        reasoning = f"Attempt {i}: factor and check small cases."
        proof = f"Proof {i}. The claim follows by a direct argument; every step is justified."
        content = f"<think>\n{reasoning}\n</think>\n\n{proof}"
        sft_rows.append(
            to_row(
                SFTRow(
                    prob,
                    reasoning,
                    proof,
                    "Number Theory",
                    "demo",
                    7,
                    0.5,
                    "demo",
                    [Message(role="user", content=prob), Message(role="assistant", content=content)],
                )
            )
        )
        scores = [i % 8, (i + 3) % 8]
        rewards = [s / 7 for s in scores]
        mean = sum(rewards) / 2
        std = (sum((r - mean) ** 2 for r in rewards) / 2) ** 0.5
        rl_rows.append(to_row(RLRow(prob, "demo", RUBRIC, scores, rewards, 2, mean, std)))
    for config, rows in (("all", sft_rows), ("default", sft_rows[: len(PROBLEMS)])):
        p = run / "sft" / "data" / config / "train-00000-of-00001.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows, features=SFT_FEATURES).to_parquet(str(p))
    p = run / "rl" / "data" / "default" / "train-00000-of-00001.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rl_rows[: len(PROBLEMS)], features=RL_FEATURES).to_parquet(str(p))
    return run
