"""SFT stage: TRL SFTTrainer on FineProofs-SFT rows, assistant-only loss, packing, resume.

Fast tests use a tiny random Llama with a tokenizer trained on the fly; the slow one
runs the embedded SmolLM2-135M on a synthetic build output."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import TrainerCallback

from fineproofs.config import ConfigError
from fineproofs.train.config import load_stage_config


class Interrupt(TrainerCallback):
    """Kill the run right after checkpoint N is written (a crash mid-training)."""

    def __init__(self, after: int):
        self.after = after

    def on_save(self, args, state, control, **kw):
        if state.global_step >= self.after:
            raise KeyboardInterrupt(f"simulated interruption after step {state.global_step}")


def _cfg(tiny, **trainer):
    sets = [f"model.name={tiny}", "trainer.max_length=96", "trainer.per_device_train_batch_size=2"]
    sets += [f"trainer.{k}={v}" for k, v in trainer.items()]
    return load_stage_config("sft", "embedded", sets)


def test_sft_tiny_runs_and_resumes(tiny, run_dir, tmp_path):
    from fineproofs.train.sft import run_sft

    out = tmp_path / "sft"
    cfg = _cfg(tiny, max_steps=4, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        run_sft(cfg, out, data=str(run_dir / "sft"), callbacks=[Interrupt(2)])
    assert (out / "checkpoint-2").is_dir() and not (out / "final").exists()
    res = run_sft(cfg, out, data=str(run_dir / "sft"))
    print("\n" + res.summary())
    assert res.resumed_from and res.resumed_from.endswith("checkpoint-2")
    assert res.global_step == 4 and res.steps_this_run == 2
    assert (out / "final" / "config.json").exists() and (out / "final" / "chat_template.jinja").exists()
    record = json.loads((out / "fineproofs_train.json").read_text())
    assert record["result"]["global_step"] == 4
    losses = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert losses and all(x == x for x in losses)  # finite


def test_assistant_only_mask_covers_exactly_the_assistant_turn(tiny):
    from transformers import AutoTokenizer

    from fineproofs.train.templates import training_chat_template

    tok = AutoTokenizer.from_pretrained(tiny)
    tmpl = training_chat_template(tok)
    msgs = [{"role": "user", "content": "Prove x"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nP"}]
    enc = tok.apply_chat_template(
        msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=tmpl
    )
    kept = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert kept == "<think>\nr\n</think>\n\nP<|im_end|>"


def test_config_errors_are_clear(tiny):
    with pytest.raises(ConfigError, match="did you mean trainer.learning_rate"):
        load_stage_config("sft", "embedded", ["trainer.lerning_rate=1e-5"])
    with pytest.raises(ConfigError, match="unknown sft config"):
        load_stage_config("sft", "nope")
    with pytest.raises(ConfigError, match="model.dtype"):
        load_stage_config("sft", "embedded", ["model.dtype=int3"])
    paper = load_stage_config("sft", "paper")
    assert paper.model.name == "Qwen/Qwen3-4B-Thinking-2507" and paper.trainer["assistant_only_loss"]
    from fineproofs.train.data import load_split

    with pytest.raises(ConfigError, match="not found"):
        load_split(paper.data, "sft", "/nonexistent/run")


@pytest.mark.slow
def test_sft_embedded_smollm2(run_dir, tmp_path):
    from fineproofs.train.sft import run_sft

    # the paper config's dtype: a float32 SmolLM2 with its AdamW state took the suite to 3 GiB
    cfg = load_stage_config(
        "sft", "embedded", ["trainer.max_steps=2", "trainer.max_length=192", "model.dtype=bfloat16"]
    )
    res = run_sft(cfg, tmp_path / "sft", data=str(run_dir / "sft"))
    print("\n" + res.summary())
    assert res.global_step == 2 and (tmp_path / "sft" / "final" / "model.safetensors").exists()


def test_overlong_samples_are_left_out_and_counted_never_truncated(tiny):
    """A sample longer than max_length would lose its proof and end token to packing."""
    import datasets
    from transformers import AutoTokenizer

    from fineproofs.train.data import drop_overlong

    tok = AutoTokenizer.from_pretrained(str(tiny))
    short = [{"role": "user", "content": "Prove it."}, {"role": "assistant", "content": "Done."}]
    long = [{"role": "user", "content": "Prove it."}, {"role": "assistant", "content": "step " * 400}]
    ds = datasets.Dataset.from_list([{"messages": short}, {"messages": long}, {"messages": short}])
    kept, dropped = drop_overlong(ds, tok, 64)
    assert dropped == 1 and len(kept) == 2
    assert all(r["messages"] == short for r in kept)
    assert drop_overlong(ds, tok, None) == (ds, 0)
    with pytest.raises(ConfigError, match="max_length"):
        drop_overlong(datasets.Dataset.from_list([{"messages": long}]), tok, 64)
