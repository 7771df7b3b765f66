"""Fine-tuning plans: invariants of the planner (hypothesis), the issue's done-when commands, and bad input.

The engine's numbers are checked against peft/transformers/bitsandbytes in test_finetune_peft.py and
test_finetune_quant.py; here: what the planner does with them (fit searches, fixes, tokens and time).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import invoke_json, one_command_app
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import UsageError
from flopscalc.finetune.adapters import TARGETS, parse_targets
from flopscalc.finetune.memory import FinetuneSetup, finetune_memory
from flopscalc.finetune.plan import largest_micro_batch, largest_seq_len, plan_finetune
from flopscalc.hardware import get_gpu
from flopscalc.hf_config import read_hf_config
from flopscalc.model import get_preset

ROOT = Path(__file__).resolve().parents[1]
LLAMA_JSON = str(ROOT / "data" / "configs" / "llama-3.1-8b.json")
GIB = 2.0**30


@pytest.fixture(scope="module")
def llama():
    return read_hf_config(LLAMA_JSON)


@pytest.fixture(scope="module")
def gpu():
    return get_gpu("4070ti")


# ------------------------------------------------------------------ memory ordering and limits


def test_methods_order_by_memory_and_paging_spills_exactly_the_optimizer_state(llama):
    peaks = {m: finetune_memory(llama, FinetuneSetup(method=m)).peak_bytes for m in ("full", "lora", "qlora")}
    assert peaks["full"] > peaks["lora"] > peaks["qlora"]
    plain = finetune_memory(llama, FinetuneSetup())
    paged = finetune_memory(llama, FinetuneSetup(paged=True))
    assert paged.peak_bytes == plain.peak_bytes  # paging changes where state may live, not the peak
    assert plain.required_bytes() - paged.required_bytes() == plain.component_bytes()["optimizer_state"]


@given(rank=st.integers(1, 256), targets=st.sets(st.sampled_from(TARGETS), min_size=1))
@settings(max_examples=40, deadline=None)
def test_adapter_memory_grows_with_rank_and_targets(rank, targets):
    cfg = get_preset("llama-3.1-8b")
    t = parse_targets(sorted(targets))
    small = finetune_memory(cfg, FinetuneSetup(rank=rank, targets=t))
    big = finetune_memory(cfg, FinetuneSetup(rank=rank + 1, targets=t))
    assert big.n_trainable > small.n_trainable and big.peak_bytes > small.peak_bytes
    assert small.n_trainable % cfg.n_layer == 0  # the same adapters in every layer


def test_eight_bit_optimizer_is_a_quarter_of_adamw_on_large_adapters(llama):
    # 8-bit AdamW: 2 bytes + 8 bytes per 256 elements against 8 bytes (Dettmers et al. 2022b, sec. 2)
    a = finetune_memory(llama, FinetuneSetup(rank=64)).component_bytes()["optimizer_state"]
    b = finetune_memory(llama, FinetuneSetup(rank=64, optimizer="adamw8bit")).component_bytes()["optimizer_state"]
    assert b / a == pytest.approx((2 + 8 / 256) / 8, rel=1e-4)


# ------------------------------------------------------------------ fit searches


@given(seq=st.sampled_from([128, 256, 512, 1024]), method=st.sampled_from(["lora", "qlora"]),
       gpu_name=st.sampled_from(["4070ti", "4090", "a100-80gb"]))
@settings(max_examples=12, deadline=None)
def test_largest_micro_batch_and_sequence_fit_and_one_more_does_not(seq, method, gpu_name):
    cfg = get_preset("llama-3.1-8b")
    g = get_gpu(gpu_name)
    setup = FinetuneSetup(method=method, seq_len=seq)
    usable = g.memory_bytes
    b = largest_micro_batch(cfg, setup, usable)
    if b:
        assert finetune_memory(cfg, replace(setup, micro_batch=b)).required_bytes() <= usable
    assert finetune_memory(cfg, replace(setup, micro_batch=b + 1)).required_bytes() > usable
    s = largest_seq_len(cfg, setup, usable)
    if 0 < s < cfg.block_size:
        assert finetune_memory(cfg, replace(setup, micro_batch=1, seq_len=s)).required_bytes() <= usable
        assert finetune_memory(cfg, replace(setup, micro_batch=1, seq_len=s + 1)).required_bytes() > usable


def test_every_fix_fits_and_full_points_to_qlora(llama, gpu):
    plan = plan_finetune(llama, FinetuneSetup(method="full"), gpu, n_dataset_tokens=50e6, n_epochs=3)
    assert not plan.fits and plan.fixes
    for f in plan.fixes:
        target = get_gpu(f.gpu) if f.gpu else gpu
        assert finetune_memory(llama, f.setup).required_bytes() <= target.memory_bytes
    assert ("method full -> qlora",) in [f.changes for f in plan.fixes]
    assert plan.cheapest_method.value == "qlora"
    # why not: weights, gradients and AdamW state alone exceed the card, whatever the batch or sequence
    assert plan.memory.states_bytes > gpu.memory_bytes


# ------------------------------------------------------------------ tokens and time


@given(tokens=st.floats(1e6, 1e10), epochs=st.floats(0.5, 10), factor=st.floats(1.5, 8))
@settings(max_examples=25, deadline=None)
def test_time_is_linear_in_dataset_tokens_times_epochs(tokens, epochs, factor):
    cfg, g = get_preset("llama-3.1-8b"), get_gpu("4070ti")
    a = plan_finetune(cfg, FinetuneSetup(), g, n_dataset_tokens=tokens, n_epochs=epochs, packing=True)
    b = plan_finetune(cfg, FinetuneSetup(), g, n_dataset_tokens=tokens * factor, n_epochs=epochs, packing=True)
    # whole sequences (review r11): at micro-batch 1 without accumulation each sequence is one pass and one update,
    # so the time is linear in the sequences, which exceed tokens x epochs / 512 by less than (epochs + 1) sequences
    assert b.time_s / b.n_sequences == pytest.approx(a.time_s / a.n_sequences, rel=1e-9)
    assert 0 <= a.processed_tokens - tokens * epochs < (epochs + 1) * 512


@given(mean=st.integers(16, 512))
@settings(max_examples=25, deadline=None)
def test_padding_costs_seq_over_mean(mean):
    cfg, g = get_preset("llama-3.1-8b"), get_gpu("4070ti")
    packed = plan_finetune(cfg, FinetuneSetup(), g, n_dataset_tokens=1e8, packing=True)
    padded = plan_finetune(cfg, FinetuneSetup(), g, n_dataset_tokens=1e8, mean_sequence_tokens=mean)
    # one whole sequence per example (review r11): ceil(1e8 / mean) against ceil(1e8 / 512), each at one pass
    assert padded.n_sequences == -(-10**8 // mean) and packed.n_sequences == -(-10**8 // 512)
    assert padded.time_s / packed.time_s == pytest.approx(padded.n_sequences / packed.n_sequences, rel=1e-9)
    # padding is 1 - mean / seq exactly (review r14); the part-filled last sequence is the round-up, apart
    assert padded.padding_fraction == 1 - mean / 512
    assert padded.processed_tokens == pytest.approx(1e8 * 512 / mean + padded.roundup_tokens, rel=1e-12)
    assert 0 <= padded.roundup_tokens < 512


def test_compute_time_is_flops_over_peak_times_efficiency(llama, gpu):
    plan = plan_finetune(llama, FinetuneSetup(), gpu, n_dataset_tokens=1e8, packing=True, efficiency=0.5)
    assert plan.compute_s == pytest.approx(plan.total_flops / (gpu.bf16_flop_per_s * 0.5), rel=1e-12)
    # the padded run prices the attention core with causal pairs, as fused kernels run it (flopscalc.flops)
    dense = plan_finetune(llama, FinetuneSetup(), gpu, n_dataset_tokens=1e8, packing=True, efficiency=0.5)
    assert dense.flops == plan.flops


# ------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def app():
    from flopscalc.cli import finetune as cli_finetune

    return one_command_app(cli_finetune)


def run_json(app, *args) -> dict:
    return invoke_json(app, "finetune", *args)


def test_done_when_qlora_on_a_4070ti_fits_in_12_gb(app):
    out = run_json(app, "--config", LLAMA_JSON, "--gpu", "4070ti", "--method", "qlora", "--rank", "16",
                   "--targets", "all-linear", "--dataset-tokens", "50M", "--epochs", "3")
    assert out["fits"] and out["peak_bytes"] <= 12 * GIB
    assert out["components_bytes"]["quant_constants"] > 0 and out["components_bytes"]["gradients"] > 0
    assert out["max_micro_batch"] >= 1 and out["max_seq_len"] >= 512
    assert out["n_trainable_params"] == 32 * 16 * (4096 * 4 + 2 * 1024 + 4096 * 2 + 3 * (4096 + 14336))
    assert out["time_s"] > 0


def test_done_when_full_explains_and_names_what_fits(app):
    out = run_json(app, "--config", LLAMA_JSON, "--gpu", "4070ti", "--method", "full", "--dataset-tokens", "50M")
    assert not out["fits"] and out["states_bytes"] > out["capacity_bytes"]
    assert out["cheapest_method"] == "qlora"
    assert ["method full -> qlora"] in [f["changes"] for f in out["fixes"]]


@pytest.mark.parametrize("option,value,field", [
    ("--rank", "64", "n_trainable_params"), ("--targets", "q,v", "n_trainable_params"),
    ("--seq", "256", "peak_bytes"), ("--micro-batch", "2", "peak_bytes"), ("--optimizer", "adamw8bit", "peak_bytes"),
    ("--no-checkpointing", None, "peak_bytes"), ("--bf16-adapters", None, "peak_bytes"),
    ("--quant", "int8", "peak_bytes"), ("--no-double-quant", None, "peak_bytes"), ("--paged", None, "required_bytes"),
    ("--epochs", "2", "time_s"), ("--packing", None, "notes"), ("--mean-sequence-tokens", "200", "time_s"),
    ("--efficiency", "0.3", "time_s"), ("--gpu", "4090", "time_s"),
])
def test_every_option_moves_a_computed_field(app, option, value, field):
    base = ["--model", "llama-3.1-8b", "--gpu", "4070ti", "--dataset-tokens", "10M"]
    before = run_json(app, *base)[field]
    args = [a for a in base if a not in ("--gpu", "4070ti")] if option == "--gpu" else base
    after = run_json(app, *args, option, *([value] if value else []))[field]
    assert after != before


@pytest.mark.parametrize("args,match", [
    (["--method", "full", "--rank", "8"], "full fine-tuning trains every weight"),
    (["--method", "lora", "--quant", "nf4"], "QLoRA's frozen weights"),
    (["--targets", "qkv"], "not one of q, k, v"),
    (["--rank", "0"], "positive whole number"),
    (["--packing", "--mean-sequence-tokens", "100"], "give one of the two"),
    (["--mean-sequence-tokens", "4096"], "mean sequence length"),
    (["--optimizer", "sgd"], "adamw, adamw8bit"),
    (["--epochs", "0"], "epochs must be positive"),
])
def test_bad_input_is_one_usage_error(app, args, match):
    with pytest.raises(UsageError, match=match):
        app.main(args=["finetune", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--dataset-tokens", "10M", *args],
                 standalone_mode=False)


def test_bad_input_exits_2_with_one_line_through_the_cli(capsys):
    from flopscalc import cli

    code = cli.run(["finetune", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--dataset-tokens", "10M",
                    "--method", "full", "--rank", "8"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "full fine-tuning" in err


def test_the_table_report_says_why_and_what_fits(monkeypatch, capsys):
    from flopscalc import cli

    monkeypatch.setenv("COLUMNS", "120")
    assert cli.run(["finetune", "--config", LLAMA_JSON, "--gpu", "4070ti", "--method", "full",
                    "--dataset-tokens", "50M"]) == 0
    out = capsys.readouterr().out
    assert "does not fit" in out and "which no batch or sequence change shrinks" in out
    assert "method full -> qlora" in out and "first method that fits" in out
    assert cli.run(["finetune", "--config", LLAMA_JSON, "--gpu", "4070ti", "--dataset-tokens", "50M"]) == 0
    out = capsys.readouterr().out
    assert "fits:" in out and "quantization constants" in out and "adapter inputs" in out and "time:" in out


def test_mixture_of_experts_is_full_only_and_says_why():
    cfg, g = get_preset("mixtral-8x7b"), get_gpu("4070ti")
    with pytest.raises(UsageError, match="mixture of experts"):
        finetune_memory(cfg, FinetuneSetup(method="lora"))
    plan = plan_finetune(cfg, FinetuneSetup(method="full"), g, n_dataset_tokens=1e7)
    # 46.7B parameters x 16 bytes of AMP states (~700 GiB) exceed any one GPU in the database; no LoRA fix either
    assert not plan.fits and plan.fixes == () and plan.cheapest_method is None


@pytest.mark.parametrize("gpu,expected", [("4070ti", "qlora"), ("h100", "lora")])
def test_without_method_the_plan_names_the_first_method_that_fits(capsys, gpu, expected):
    """Issue 15: the answer names the cheapest method that fits. Checked against each method asked for by name:
    every method before the chosen one does not fit at micro-batch 1, the chosen one does."""
    from flopscalc.cli import run

    base = ["finetune", "--config", "data/configs/llama-3.1-8b.json", "--gpu", gpu, "--dataset-tokens", "50M",
            "--json"]
    assert run(base) == 0
    auto = json.loads(capsys.readouterr().out)
    assert auto["method_chosen_automatically"] is True
    assert auto["setup"]["method"] == expected
    order = ["full", "lora", "qlora"]
    for m in order[: order.index(expected) + 1]:
        assert run([*base, "--method", m]) == 0
        named = json.loads(capsys.readouterr().out)
        assert named["method_chosen_automatically"] is False
        assert named["fits"] is (m == expected), m
