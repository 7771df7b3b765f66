"""Fine-tuning time through the per-operation model (flopscalc.perf.finetune_ops, finetune.plan).

The op list is checked against the independent FLOPs engine (finetune.flops, itself checked against
FlopCounterMode on peft models in tests/test_finetune_peft.py): the per-op FLOPs sum equals its per-step count
exactly, plus FlashAttention's documented backward re-computation of S = Q K^T (Dao 2023, Alg. 2).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from flopscalc.finetune.adapters import Method, Quant, nf4_bytes
from flopscalc.finetune.flops import dequant_bytes_per_token, finetune_flops_per_token
from flopscalc.finetune.memory import FinetuneSetup
from flopscalc.finetune.plan import plan_finetune
from flopscalc.flops import Recompute, forward_flops_per_token, training_flops_per_token
from flopscalc.hardware import get_gpu
from flopscalc.hf_config import read_hf_config
from flopscalc.perf.finetune_ops import finetune_step_ops, training_setup
from flopscalc.perf.op_kinds import OpClass, Phase
from flopscalc.perf.ops import step_ops

ROOT = Path(__file__).resolve().parents[1]
LLAMA_JSON = str(ROOT / "data" / "configs" / "llama-3.1-8b.json")


@pytest.fixture(scope="module")
def llama():
    return read_hf_config(LLAMA_JSON)


def _sum_flops(ops):
    return sum(op.flops * op.count for op in ops)


CASES = [
    (Method.lora, ("q", "v"), 8, Recompute.none),
    (Method.lora, ("q", "k", "v", "o", "gate", "up", "down"), 16, Recompute.full),
    (Method.lora, ("o", "down"), 4, Recompute.none),  # first block's q/k/v and core need no gradient
    (Method.lora, ("up",), 64, Recompute.full),
    (Method.qlora, ("q", "k", "v", "o", "gate", "up", "down"), 16, Recompute.full),
    (Method.qlora, ("k", "gate"), 32, Recompute.none),
]


@pytest.mark.parametrize("method,targets,rank,recompute", CASES)
@pytest.mark.parametrize("flash", [False, True])
def test_op_flops_equal_finetune_flops_exactly(llama, method, targets, rank, recompute, flash):
    setup = FinetuneSetup(method=method, rank=rank, targets=targets, micro_batch=2, seq_len=256,
                          recompute=recompute)
    tokens = setup.micro_batch * setup.seq_len
    expected = finetune_flops_per_token(llama, setup, causal=flash).hardware_flops_per_token * tokens
    if flash:  # Dao 2023 Alg. 2: S = Q K^T again in every layer that back-propagates into the core
        first_needs_core = recompute is Recompute.full or any(x in targets for x in ("q", "k", "v"))
        layers = llama.n_layer - (0 if first_needs_core else 1)
        expected += forward_flops_per_token(llama, setup.seq_len, causal=True).attn_scores / llama.n_layer \
            * tokens * layers
    got = _sum_flops(finetune_step_ops(llama, setup, flash=flash))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["qwen2.5-7b.json", "gemma-7b.json", "mistral-7b-v0.1.json"])
@pytest.mark.parametrize("recompute", [Recompute.none, Recompute.full])
def test_op_flops_exact_on_other_families(name, recompute):
    cfg = read_hf_config(str(ROOT / "data" / "configs" / name))
    setup = FinetuneSetup(method=Method.lora, rank=8, targets=("v", "o", "down"), micro_batch=1, seq_len=128,
                          recompute=recompute)
    expected = finetune_flops_per_token(cfg, setup, causal=False).hardware_flops_per_token * 128
    assert _sum_flops(finetune_step_ops(cfg, setup, flash=False)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("recompute", [Recompute.none, Recompute.full])
def test_full_finetune_is_the_pretraining_step(llama, recompute):
    setup = FinetuneSetup(method=Method.full, micro_batch=1, seq_len=512, recompute=recompute)
    ops = finetune_step_ops(llama, setup, flash=False)
    assert ops == step_ops(llama, training_setup(setup, flash=False))
    t = training_flops_per_token(llama, 512, recompute=recompute, causal=False)
    assert _sum_flops(ops) == pytest.approx(t.hardware_flops_per_token * 512, rel=1e-12)


def test_lora_drops_every_base_weight_gradient(llama):
    setup = FinetuneSetup(method=Method.lora, micro_batch=1, seq_len=128)
    names = [op.name for op in finetune_step_ops(llama, setup)]
    assert not [n for n in names if n.endswith("wgrad") and not n.startswith("lora")]
    assert "embedding scatter-add" not in names


@pytest.mark.parametrize("recompute", [Recompute.none, Recompute.full])
@pytest.mark.parametrize("quant,dq", [(Quant.nf4, True), (Quant.nf4, False), (Quant.int8, False)])
def test_dequantization_bytes_equal_finetune_accounting(llama, recompute, quant, dq):
    setup = FinetuneSetup(method=Method.qlora, quant=quant, double_quant=dq, micro_batch=2, seq_len=256,
                          recompute=recompute)
    ops = [op for op in finetune_step_ops(llama, setup) if op.name.startswith("dequantize")]
    got = sum(op.bytes_moved * op.count for op in ops)
    assert got == pytest.approx(dequant_bytes_per_token(llama, setup) * 2 * 256, rel=1e-12)
    assert len({op.phase for op in ops}) == (3 if recompute is Recompute.full else 2)


def test_nf4_dequant_op_reads_half_a_byte_and_writes_two_per_weight(llama):
    # limit case: 4 bits + constants read, 16 bits written (QLoRA sec. 3)
    setup = FinetuneSetup(method=Method.qlora, micro_batch=1, seq_len=128)
    op = next(o for o in finetune_step_ops(llama, setup) if o.name == "dequantize q (fwd)")
    n = llama.n_embd * llama.d_attn
    assert op.bytes_moved == nf4_bytes(n) + 2 * n
    assert 2.5 * n < op.bytes_moved < 2.6 * n


def test_optimizer_runs_over_adapters_only(llama):
    lora = FinetuneSetup(method=Method.lora, rank=16, micro_batch=1, seq_len=128)
    full = replace(lora, method=Method.full)
    opt = [o for o in finetune_step_ops(llama, lora) if o.op_class is OpClass.optimizer]
    opt_full = [o for o in finetune_step_ops(llama, full) if o.op_class is OpClass.optimizer]
    from flopscalc.finetune.adapters import count_adapters
    from flopscalc.model import count_params

    n_base = count_params(llama).total
    ratio = count_adapters(llama, lora.targets, 16, n_base).n_params / n_base
    assert opt[0].phase is Phase.step
    assert opt[0].bytes_moved / opt_full[0].bytes_moved == pytest.approx(ratio, rel=1e-12)


def _time(cfg, setup, gpu, **kw):
    return plan_finetune(cfg, setup, gpu, n_dataset_tokens=1e6, packing=True, **kw)


def test_h100_directions(llama):
    """QLoRA > LoRA (dequantization traffic, same GEMMs); full > LoRA (the base's weight-gradient GEMMs)."""
    gpu = get_gpu("h100")
    base = FinetuneSetup(method=Method.lora, rank=16, micro_batch=4, seq_len=2048)
    lora = _time(llama, base, gpu)
    qlora = _time(llama, replace(base, method=Method.qlora), gpu)
    full = _time(llama, replace(base, method=Method.full, bf16_adapters=False), gpu)
    assert lora.time_model == qlora.time_model == full.time_model == "per-operation"
    assert qlora.dequant_s > 0 == lora.dequant_s
    assert qlora.time_s > lora.time_s
    assert full.time_s > lora.time_s


def test_stated_efficiency_reproduces_constant_model(llama):
    gpu = get_gpu("h100")
    setup = FinetuneSetup(method=Method.qlora, rank=16, micro_batch=2, seq_len=1024)
    plan = _time(llama, setup, gpu, efficiency=0.4)
    assert plan.time_model == "stated"
    flops = finetune_flops_per_token(llama, setup, causal=True).hardware_flops_per_token * plan.processed_tokens
    peak = plan.peak_flop_per_s  # the GPU's bf16 dense peak (hardware database)
    expected = flops / (peak * 0.4) + dequant_bytes_per_token(llama, setup) * plan.processed_tokens \
        / gpu.memory_bandwidth_bytes_per_s
    assert plan.time_s == pytest.approx(expected, rel=1e-12)


def test_tpu_falls_back_to_constant_with_note(llama):
    gpu = next((g for g in __import__("flopscalc.hardware", fromlist=["builtin_database"]).builtin_database()
                if g.architecture.upper().startswith("TPU")), None)
    if gpu is None:
        pytest.skip("no TPU in the built-in database")
    setup = FinetuneSetup(method=Method.lora, targets=("q", "v"), micro_batch=1, seq_len=256)
    plan = _time(llama, setup, gpu)
    assert plan.time_model == "stated"
    assert any("per-operation" in n for n in plan.notes)


def test_done_when_command_reports_time_model(capsys):
    from conftest import cli_json

    out = cli_json(capsys, "finetune", "--config", LLAMA_JSON, "--gpu", "4070ti", "--method", "qlora", "--rank", "16",
                   "--targets", "all-linear", "--dataset-tokens", "50M", "--epochs", "3")
    assert out["time_model"] == "per-operation"
    assert out["fits"] is True
    assert out["time_s"] > 0
    assert out["efficiency"] is None
