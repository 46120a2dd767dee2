"""Training configs across the admitted versions, GPU fast paths with their fallbacks, and
the multi-GPU launch files: everything checkable on a CPU machine."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from click.testing import CliRunner

from fineproofs.config import ConfigError
from fineproofs.train import config as tcfg
from fineproofs.train import config_path, fastpath
from fineproofs.train.config import (
    build_trl_args,
    bundled_configs,
    check_stage_config,
    load_stage_config,
    translate_trainer_keys,
)

# ---------------------------------------------------------------------------
# renamed TrainingArguments keys
# ---------------------------------------------------------------------------


def _fields_without(monkeypatch, *names):
    real = tcfg.trainer_fields

    def fields(stage):
        return real(stage) - set(names)

    monkeypatch.setattr(tcfg, "trainer_fields", fields)


def test_new_checkpointing_name_is_read_by_an_older_transformers(monkeypatch):
    # transformers 5.17 knows only gradient_checkpointing
    _fields_without(monkeypatch, "activation_checkpointing", "activation_checkpointing_kwargs")
    out = translate_trainer_keys("sft", {"activation_checkpointing": True, "max_length": 64})
    assert out == {"gradient_checkpointing": True, "max_length": 64}
    tcfg.validate_trainer_keys("sft", {"activation_checkpointing": True})  # no error


def test_old_checkpointing_name_becomes_the_new_one_where_both_exist():
    if "activation_checkpointing" not in tcfg.trainer_fields("sft"):
        pytest.skip("installed transformers predates activation_checkpointing")
    out = translate_trainer_keys("sft", {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {}})
    assert out == {"activation_checkpointing": True, "activation_checkpointing_kwargs": {}}


def test_both_names_disagreeing_is_one_clear_error():
    with pytest.raises(ConfigError, match="same switch and disagree"):
        translate_trainer_keys("sft", {"gradient_checkpointing": True, "activation_checkpointing": False})


def test_unknown_key_still_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="did you mean trainer.max_length"):
        load_stage_config("sft", "embedded", ["trainer.max_lenght=3"])


@pytest.mark.parametrize("stage", ["sft", "rl", "rc", "eval"])
def test_every_shipped_config_builds_its_trl_args(stage):
    names = bundled_configs(stage)
    assert "paper" in names and "embedded" in names
    for name in names:
        lines = check_stage_config(stage, name)
        if stage != "eval":
            assert any(line.startswith("trl.") for line in lines), lines


def test_train_check_command_validates_all_shipped_configs():
    from fineproofs.cli import cli as main

    res = CliRunner().invoke(main, ["train", "check"])
    assert res.exit_code == 0, res.output
    assert "sft paper: ok" in res.output and "rc paper: ok" in res.output
    assert "config(s) valid" in res.output


def test_train_check_fails_on_a_bad_config(tmp_path):
    from fineproofs.cli import cli as main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {attn_implementation: [flash_attn_9000]}\ntrainer: {max_length: 8}\n")
    res = CliRunner().invoke(main, ["train", "check", "--stage", "sft", "-c", str(bad)])
    assert res.exit_code != 0
    assert "flash_attn_9000" in res.output


# ---------------------------------------------------------------------------
# fast paths
# ---------------------------------------------------------------------------


def test_unknown_attention_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="unknown attention 'flash'"):
        load_stage_config("sft", "embedded", ["model.attn_implementation=[flash, sdpa]"])
    with pytest.raises(ConfigError, match="empty list"):
        load_stage_config("sft", "embedded", ["model.attn_implementation=[]"])


def test_liger_switch_must_be_a_bool():
    with pytest.raises(ConfigError, match="use_liger_kernel"):
        fastpath.check_fast_paths(None, {"use_liger_kernel": "yes"})


def test_paper_config_on_a_cpu_machine_falls_back_and_says_what_it_costs(monkeypatch):
    monkeypatch.setattr(fastpath, "_has_cuda", lambda: False)
    cfg = load_stage_config("sft", "paper")
    rep = fastpath.check_fast_paths(cfg.model.attn_implementation, cfg.trainer)
    assert rep.attention_wanted[-1] == "sdpa" and rep.attention == "sdpa_packed"
    assert rep.liger_wanted and not rep.liger
    notes = "\n".join(rep.notes)
    assert "flash_attention_2 unavailable: no CUDA GPU visible" in notes and "cost:" in notes
    assert "use_liger_kernel turned off" in notes


def test_first_available_attention_wins(monkeypatch):
    monkeypatch.setattr(fastpath, "_has_cuda", lambda: True)
    monkeypatch.setattr(fastpath, "_has_module", lambda name: name != "flash_attn" and name != "flash_attn_interface")
    rep = fastpath.check_fast_paths(["flash_attention_3", "flash_attention_2", "flex_attention", "sdpa"], {})
    assert rep.attention == "flex_attention"
    monkeypatch.setattr(fastpath, "_has_cuda", lambda: False)
    assert fastpath.check_fast_paths(["flex_attention", "eager"], {}).attention == "eager"
    assert any("flash-attn package is not installed" in n for n in rep.notes)


def test_liger_switch_is_turned_off_in_the_trl_args_when_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(fastpath, "_has_module", lambda name: name != "liger_kernel")
    args = build_trl_args("sft", {"use_liger_kernel": True, "max_length": 32}, tmp_path)
    assert args.use_liger_kernel is False


def test_model_load_falls_back_when_an_attention_fails_to_load(monkeypatch, caplog):
    from fineproofs.train.common import load_with_attention
    from fineproofs.train.config import ModelSpec

    monkeypatch.setattr(fastpath, "_has_cuda", lambda: True)
    monkeypatch.setattr(fastpath, "_has_module", lambda name: True)
    tried = []

    def load(attn_implementation=None):
        tried.append(attn_implementation)
        if attn_implementation != "sdpa":
            raise ImportError(f"{attn_implementation} was built for another torch")
        return "model"

    spec = ModelSpec(attn_implementation=["flash_attention_2", "flex_attention"])
    with caplog.at_level("WARNING"):
        assert load_with_attention(load, spec) == "model"
    assert tried == ["flash_attention_2", "flex_attention", "sdpa"]
    assert "failed to load" in caplog.text


def test_packed_sequences_stay_separate_under_sdpa(tiny):
    """Padding-free packing (TRL's BFD) feeds documents back to back with restarting
    position_ids and no attention mask; the fallback attention must keep them apart:
    the packed forward gives each document the logits of its own forward. Only without a KV
    cache (transformers builds the block mask for training-style calls): TRL's SFTTrainer
    passes ``use_cache=False``, and so does this test."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation="sdpa").eval()
    a = torch.randint(5, 200, (1, 11))
    b = torch.randint(5, 200, (1, 7))
    with torch.no_grad():
        sep_a = model(input_ids=a, use_cache=False).logits
        sep_b = model(input_ids=b, use_cache=False).logits
        packed = model(
            input_ids=torch.cat([a, b], dim=1),
            position_ids=torch.cat([torch.arange(11), torch.arange(7)]).unsqueeze(0),
            use_cache=False,
        ).logits
        leaky = model(input_ids=torch.cat([a, b], dim=1), use_cache=False).logits  # one long document
    torch.testing.assert_close(packed[:, :11], sep_a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[:, 11:], sep_b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(leaky[:, 11:], sep_b, atol=1e-3)


# ---------------------------------------------------------------------------
# multi-GPU launch files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["accelerate_zero3.yaml", "accelerate_fsdp.yaml"])
def test_accelerate_launch_files_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(config_path(name)))
    assert cfg.num_processes == 8 and cfg.num_machines == 1
    if name == "accelerate_zero3.yaml":
        assert cfg.distributed_type.value == "DEEPSPEED"
        ds = cfg.deepspeed_config["deepspeed_config_file"]
        assert config_path(ds).is_file()
    else:
        assert cfg.distributed_type.value == "FSDP"
        assert cfg.fsdp_config["fsdp_version"] == 2


def test_deepspeed_file_is_zero3_with_trainer_owned_sizes():
    raw = json.loads(config_path("deepspeed_zero3.json").read_text())  # deepspeed itself is not a dependency
    zero = raw["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert raw["bf16"]["enabled"] == "auto"
    # every batch/clip size is left to the Trainer ("auto"), so one file serves every config
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert raw[key] == "auto"


@pytest.mark.parametrize("stage", ["sft", "rl", "rc"])
def test_paper_configs_name_a_shipped_launch_file(stage):
    cfg = load_stage_config(stage, "paper")
    assert cfg.gpus >= 8 and config_path(cfg.accelerate_config).is_file()


# ---------------------------------------------------------------------------
# sdpa_packed: one fused-attention call per packed document
# ---------------------------------------------------------------------------


def _pair(tiny):
    import torch
    from transformers import AutoModelForCausalLM

    from fineproofs.train.packed_attention import register

    register()
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation="sdpa").eval()
    packed = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation="sdpa_packed").eval()
    assert packed.config._attn_implementation == "sdpa_packed"
    return ref, packed


def test_sdpa_packed_keeps_documents_apart_and_matches_their_own_forward(tiny):
    import torch

    ref, model = _pair(tiny)
    docs = [torch.randint(5, 200, (1, n)) for n in (9, 14, 5)]
    ids = torch.cat(docs, dim=1)
    pos = torch.cat([torch.arange(d.shape[1]) for d in docs]).unsqueeze(0)
    with torch.no_grad():
        out = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        sdpa_out = ref(input_ids=ids, position_ids=pos, use_cache=False).logits
    start = 0
    for d in docs:
        with torch.no_grad():
            own = ref(input_ids=d, use_cache=False).logits
        torch.testing.assert_close(out[:, start : start + d.shape[1]], own, atol=1e-5, rtol=1e-4)
        start += d.shape[1]
    torch.testing.assert_close(out, sdpa_out, atol=1e-5, rtol=1e-4)


def test_sdpa_packed_gradients_equal_masked_sdpa(tiny):
    import torch

    ref, model = _pair(tiny)
    ref.train()
    model.train()
    ids = torch.randint(5, 200, (1, 24))
    pos = torch.cat([torch.arange(10), torch.arange(14)]).unsqueeze(0)
    grads = []
    for m in (ref, model):
        m.zero_grad()
        m(input_ids=ids, position_ids=pos, labels=ids, use_cache=False).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_sdpa_packed_on_padded_batches_and_generation_equals_sdpa(tiny):
    import torch

    ref, model = _pair(tiny)
    ids = torch.randint(5, 200, (2, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as GRPO batches and generation have
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, use_cache=False).logits
        b = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(a[0, 4:], b[0, 4:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=1e-4)
    gen = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        ga = ref.generate(input_ids=ids, attention_mask=mask, **gen)
        gb = model.generate(input_ids=ids, attention_mask=mask, **gen)
    assert torch.equal(ga, gb)


def test_paper_configs_resolve_to_sdpa_packed_without_flash_attn(monkeypatch):
    monkeypatch.setattr(fastpath, "_has_module", lambda name: name not in ("flash_attn", "flash_attn_interface"))
    monkeypatch.setattr(fastpath, "_has_cuda", lambda: True)
    for stage in ("sft", "rl", "rc"):
        cfg = load_stage_config(stage, "paper")
        assert fastpath.check_fast_paths(cfg.model.attn_implementation, cfg.trainer).attention == "sdpa_packed"


@pytest.mark.parametrize("kind", ["zero3", "fsdp"])
def test_launch_config_for_a_slurm_job_loads_from_any_directory(kind, tmp_path, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file

    from fineproofs.cli import cli

    out = tmp_path / "launch.yaml"
    res = CliRunner().invoke(cli, ["train", "launch-config", kind, "--nodes", "4", "-o", str(out)])
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(tmp_path)  # not the configs directory: the DeepSpeed path must still resolve
    cfg = load_config_from_file(str(out))
    assert cfg.num_machines == 4 and cfg.num_processes == 32
    if kind == "zero3":
        ds = cfg.deepspeed_config["deepspeed_config_file"]
        assert os.path.isabs(ds) and os.path.isfile(ds)
