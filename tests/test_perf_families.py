"""Step-time model beyond GPT-2's block: GQA, gated MLPs, RMSNorm, RoPE, q/k norm, biases, parallel blocks, MoE.

The FLOPs of every family are checked exactly against flopscalc.flops in tests/test_perf_model.py; here the shapes come
from the published config files and the limit cases (one expert is a dense MLP; top-k = n_expert routes every
token to every expert; n_kv_head = n_head is multi-head attention) tie the new ops to the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.flops import Recompute
from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup
from flopscalc.memory.settings import FP32_BYTES
from flopscalc.model import ALL_PRESETS, ModelConfig
from flopscalc.perf import OpClass, Phase, StepOptions, estimate_step, step_ops
from flopscalc.perf.block_ops import expert_rows

H100 = get_gpu("h100-sxm")
A100 = get_gpu("a100-sxm-80gb")
CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
UNFITTED = StepOptions(sustained_fraction=1.0)


def gemms(ops, prefix, phase=Phase.forward):
    return [o for o in ops if o.op_class is OpClass.gemm and o.name.startswith(prefix) and o.phase is phase]


def memory_bytes(ops):
    return sum(o.bytes_moved * o.count for o in ops if o.op_class is OpClass.memory)


def flops(ops):
    return sum(o.flops * o.count for o in ops)


def test_llama_qkv_gemm_has_the_published_grouped_query_width():
    # Llama 3.1 8B config.json: 32 query heads and 8 key/value heads of 4096 / 32 = 128 -> 4096 + 2 x 1024 outputs
    hf = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    hd = hf["hidden_size"] // hf["num_attention_heads"]
    width = hf["num_attention_heads"] * hd + 2 * hf["num_key_value_heads"] * hd
    ops = step_ops(ALL_PRESETS["llama-3.1-8b"], TrainingSetup(micro_batch=1, seq_len=2048))
    (qkv,) = gemms(ops, "qkv fwd")
    assert qkv.gemm_shape == (2048, width, hf["hidden_size"], 1) == (2048, 6144, 4096, 1)
    (down,) = gemms(ops, "mlp down fwd")
    assert down.gemm_shape == (2048, hf["hidden_size"], hf["intermediate_size"], 1)
    (head,) = gemms(ops, "lm head fwd")
    assert head.gemm_shape == (2048, hf["vocab_size"], hf["hidden_size"], 1)


def test_a_gated_mlp_is_three_linears_and_gelu_two():
    llama = step_ops(ALL_PRESETS["llama-2-7b"], TrainingSetup(micro_batch=1, seq_len=512))
    gpt2 = step_ops(ALL_PRESETS["gpt2"], TrainingSetup(micro_batch=1, seq_len=512))
    assert {o.name for o in gemms(llama, "mlp")} == {"mlp gate fwd", "mlp up fwd", "mlp down fwd"}
    assert {o.name for o in gemms(gpt2, "mlp")} == {"mlp up fwd", "mlp down fwd"}
    assert any(o.name == "swiglu product" for o in llama) and any(o.name == "gelu" for o in gpt2)


def test_multi_head_is_the_limit_of_grouped_query_attention():
    base = ALL_PRESETS["llama-2-7b"]  # 32 heads, 32 KV heads
    setup = TrainingSetup(micro_batch=1, seq_len=1024)
    mha, gqa, mqa = (step_ops(base.with_(n_kv_head=k), setup) for k in (32, 8, 1))
    assert not any(o.name.startswith("repeat_kv") for o in mha)  # nothing to copy
    assert any(o.name.startswith("repeat_kv") for o in gqa)
    widths = [gemms(ops, "qkv fwd")[0].gemm_shape[1] for ops in (mha, gqa, mqa)]
    assert widths == [3 * 4096, 4096 + 2 * 8 * 128, 4096 + 2 * 128]
    # the attention core is the same work: every query head scores its keys
    core = [sum(o.flops for o in ops if o.op_class is OpClass.attention) for ops in (mha, gqa, mqa)]
    assert core[0] == core[1] == core[2]


def test_rmsnorm_saves_one_fp32_statistic_per_row_against_layernorm():
    # PyTorch's native_layer_norm writes mean and rstd, the fused rms_norm rstd only (Zhang & Sennrich 2019)
    cfg = ALL_PRESETS["llama-2-7b"]
    setup = TrainingSetup(micro_batch=2, seq_len=256)
    rms, ln = step_ops(cfg, setup), step_ops(cfg.with_(norm="layernorm"), setup)
    rows = 2 * 256
    # per norm (two per block and the final one) the statistics pass three times: the forward writes them, and
    # PyTorch's two backward kernels (dX; gain and bias) each read them (aten layer_norm_kernel.cu)
    stat_passes = 3 * (2 * cfg.n_layer + 1)
    assert memory_bytes(ln) - memory_bytes(rms) == FP32_BYTES * rows * stat_passes
    assert flops(ln) == flops(rms)


def test_rope_qk_norm_and_biases_appear_only_where_the_config_has_them():
    setup = TrainingSetup(micro_batch=1, seq_len=256)
    names = {k: {o.name for o in step_ops(ALL_PRESETS[k], setup)} for k in ("gpt2", "llama-2-7b", "olmo-2-7b",
                                                                           "qwen2.5-7b")}
    assert not any("rope" in n for n in names["gpt2"]) and any("rope" in n for n in names["llama-2-7b"])
    assert any("qk norm" in n for n in names["olmo-2-7b"]) and not any("qk norm" in n for n in names["llama-2-7b"])
    # Qwen2: biases on Q, K, V only (Qwen2 report sec. 2.2.1); GPT-2: on every linear; Llama: none
    assert {n for n in names["qwen2.5-7b"] if "bias grad" in n} == {"qkv bias grad"}
    assert {n for n in names["gpt2"] if "bias grad" in n} == {"qkv bias grad", "attn proj bias grad",
                                                              "mlp up bias grad", "mlp down bias grad"}
    assert not any("bias grad" in n for n in names["llama-2-7b"])


def test_a_parallel_block_does_the_same_work_with_less_residual_traffic():
    pythia = ALL_PRESETS["pythia-1b"]
    setup = TrainingSetup(micro_batch=4, seq_len=2048)
    par, seq = step_ops(pythia, setup), step_ops(pythia.with_(parallel_block=False), setup)
    assert flops(par) == flops(seq)
    assert memory_bytes(par) < memory_bytes(seq)
    assert estimate_step(pythia, setup, A100).step_s < estimate_step(pythia.with_(parallel_block=False), setup,
                                                                     A100).step_s


def test_untied_head_runs_the_same_gemms_and_updates_more_parameters():
    cfg = ALL_PRESETS["llama-2-7b"]
    setup = TrainingSetup(micro_batch=1, seq_len=1024)
    untied, tied = estimate_step(cfg, setup, A100), estimate_step(cfg.with_(tie_embeddings=True), setup, A100)
    assert untied.class_seconds["gemm"] == tied.class_seconds["gemm"]
    assert untied.class_seconds["optimizer"] > tied.class_seconds["optimizer"]


# ---------------------------------------------------------------- mixture of experts


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 10_000), n_expert=st.integers(1, 64), data=st.data())
def test_expert_rows_spread_every_routed_pair_evenly(tokens, n_expert, data):
    top_k = data.draw(st.integers(1, n_expert))
    cfg = ModelConfig(2, 2, 64, n_expert=n_expert, top_k=top_k, mlp="swiglu")
    split = expert_rows(tokens, cfg)
    assert sum(rows * k for rows, k in split) == tokens * top_k  # every (token, expert) pair, once
    assert sum(k for _, k in split) <= n_expert
    assert max(r for r, _ in split) - min(r for r, _ in split) <= 1  # uniform routing


def test_one_expert_is_a_dense_mlp_behind_a_router():
    dense = ALL_PRESETS["mistral-7b"]
    moe = dense.with_(n_expert=1, top_k=1)
    setup = TrainingSetup(micro_batch=1, seq_len=1024)
    d_ops, m_ops = step_ops(dense, setup), step_ops(moe, setup)
    d_mlp = sorted(o.gemm_shape for o in gemms(d_ops, "mlp"))
    m_mlp = sorted(o.gemm_shape for o in gemms(m_ops, "expert mlp"))
    assert d_mlp == m_mlp  # the single expert sees every token: the dense MLP's GEMMs
    (router,) = gemms(m_ops, "router")
    assert router.gemm_shape == (1024, 1, 4096, 1)
    assert any(o.name.startswith("moe dispatch") for o in m_ops)


def test_expert_gemms_have_tokens_times_top_k_over_experts_rows_and_lose_efficiency_with_them():
    mixtral = ALL_PRESETS["mixtral-8x7b"]  # 8 experts, top-2 (Jiang et al. 2024, sec. 2.1)

    def expert_fwd(seq):
        est = estimate_step(mixtral, TrainingSetup(micro_batch=1, seq_len=seq), H100)
        return [p for p in est.ops if p.op.name == "expert mlp gate fwd"]

    (long,) = expert_fwd(4096)
    assert long.op.gemm_shape[0] == 4096 * 2 // 8 and long.op.count == 8 * mixtral.n_layer
    (short,) = expert_fwd(128)  # 32 rows per expert: a quarter of a 128-row tile
    assert short.op.gemm_shape[0] == 32
    assert short.efficiency < 0.5 * long.efficiency
    # at the same tokens, a dense MLP of the active width keeps the rows together and runs faster per FLOP
    dense = ALL_PRESETS["mistral-7b"].with_(ffn_dim=2 * 14336)
    setup = TrainingSetup(micro_batch=1, seq_len=128)
    moe_est, dense_est = estimate_step(mixtral, setup, H100, UNFITTED), estimate_step(dense, setup, H100, UNFITTED)
    assert moe_est.model_flops_per_token == pytest.approx(dense_est.model_flops_per_token, rel=1e-3)
    assert moe_est.class_seconds["gemm"] > dense_est.class_seconds["gemm"]


def test_moe_shared_experts_and_gate_from_the_qwen_config():
    from flopscalc.hf_config import read_hf_config

    cfg = read_hf_config(CONFIGS / "qwen1.5-moe-a2.7b.json")
    hf = json.loads((CONFIGS / "qwen1.5-moe-a2.7b.json").read_text())
    ops = step_ops(cfg, TrainingSetup(micro_batch=1, seq_len=1000))
    (shared_up,) = gemms(ops, "shared mlp up fwd")
    assert shared_up.gemm_shape == (1000, hf["shared_expert_intermediate_size"], hf["hidden_size"], 1)
    (gate,) = gemms(ops, "shared gate fwd")
    assert gate.gemm_shape == (1000, 1, hf["hidden_size"], 1)
    # 1000 tokens x 4 routed over 60 experts: 66.7 rows each -> 40 experts of 67 and 20 of 66
    rows = sorted((o.gemm_shape[0], o.count // cfg.n_layer) for o in gemms(ops, "expert mlp up fwd"))
    assert rows == [(66, 20), (67, 40)]


@pytest.mark.parametrize("name", ["llama-3.1-8b", "mixtral-8x7b", "qwen2.5-7b", "olmo-2-7b", "pythia-1b"])
@pytest.mark.parametrize("recompute", list(Recompute))
def test_families_keep_mfu_at_most_hfu_at_most_one_and_recompute_costs_time(name, recompute):
    cfg = ALL_PRESETS[name]
    setup = TrainingSetup(micro_batch=1, seq_len=2048, recompute=recompute, n_gpus=8, zero_stage=3)
    est = estimate_step(cfg, setup, H100, UNFITTED)
    assert 0 < est.mfu <= est.hfu <= 1
    # recomputation adds kernel time (on 8 GPUs it may hide under Mixtral's ZeRO-3 gathers, so one GPU here)
    one = estimate_step(cfg, TrainingSetup(micro_batch=1, seq_len=2048, recompute=recompute), H100, UNFITTED)
    none = estimate_step(cfg, TrainingSetup(micro_batch=1, seq_len=2048), H100, UNFITTED)
    assert (one.step_s > none.step_s) is (recompute is not Recompute.none)


def test_zero2_and_3_accumulate_only_this_gpus_gradient_partition():
    # ZeRO (Rajbhandari et al. 2020, sec. 5.2): from stage 2 each GPU keeps 1/N of the gradients; that matters
    # most for a mixture of experts, whose gradients cover every expert while a token uses two
    cfg = ALL_PRESETS["mixtral-8x7b"]

    def accumulate_bytes(zero):
        ops = step_ops(cfg, TrainingSetup(micro_batch=1, seq_len=1024, n_gpus=8, zero_stage=zero))
        (op,) = [o for o in ops if o.name == "grad accumulate to fp32"]
        return op.bytes_moved

    assert accumulate_bytes(1) == 8 * accumulate_bytes(2) == 8 * accumulate_bytes(3)


@st.composite
def family_configs(draw):
    """Small configs over every option the step model prices."""
    n_kv = draw(st.sampled_from([1, 2, 4]))
    n_head = n_kv * draw(st.integers(1, 4))
    moe = draw(st.booleans())
    n_expert = draw(st.integers(1, 16)) if moe else 0
    return ModelConfig(
        n_layer=draw(st.integers(1, 4)), n_head=n_head, n_embd=64 * n_head, n_kv_head=n_kv, vocab_size=1000,
        block_size=4096, bias=draw(st.booleans()), tie_embeddings=draw(st.booleans()),
        mlp=draw(st.sampled_from(["gelu", "swiglu", "geglu"])), norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        position=draw(st.sampled_from(["learned", "rope", "alibi", "none"])),
        qk_norm=draw(st.sampled_from(["none", "full", "head"])), parallel_block=draw(st.booleans()),
        n_expert=n_expert, top_k=draw(st.integers(1, n_expert)) if moe else 0,
        n_shared_expert=draw(st.integers(0, 2)) if moe else 0)


@settings(max_examples=60, deadline=None)
@given(cfg=family_configs(), mb=st.integers(1, 8), seq=st.sampled_from([16, 128, 1024]),
       recompute=st.sampled_from(list(Recompute)), flash=st.booleans())
def test_any_family_keeps_mfu_at_most_hfu_and_more_tokens_never_take_less_time(cfg, mb, seq, recompute, flash):
    setup = TrainingSetup(micro_batch=mb, seq_len=seq, recompute=recompute, flash=flash)
    est = estimate_step(cfg, setup, A100, UNFITTED)
    assert 0 < est.mfu <= est.hfu <= 1
    more = estimate_step(cfg, TrainingSetup(micro_batch=mb + 1, seq_len=seq, recompute=recompute, flash=flash), A100,
                         UNFITTED)
    assert more.step_s >= est.step_s * (1 - 1e-12)  # equal when every kernel sits on its launch floor


def test_a_norm_with_a_gain_reads_x_and_dy_twice_in_backward_and_a_gainless_one_once():
    # PyTorch's layer_norm_kernel.cu: the dX kernel reads x, dy and the statistics and writes dx; with a gain (and
    # bias) GammaBetaBackwardCUDAKernel reads x, dy and the statistics again. OLMo 1's LayerNorm has neither.
    cfg = ALL_PRESETS["llama-2-7b"].with_(norm="layernorm")
    setup = TrainingSetup(micro_batch=2, seq_len=256, zero_stage=1)  # 16-bit weights: a 16-bit residual stream
    rows, a = 2 * 256, 2  # bf16 activations
    elems = rows * cfg.n_embd
    stats = 2 * FP32_BYTES * rows  # LayerNorm: mean and rstd
    by_norm = {}
    for norm in ("layernorm", "layernorm_plain"):
        ops = [o for o in step_ops(cfg.with_(norm=norm), setup) if o.name == "final norm bwd"]
        assert len(ops) == 1
        by_norm[norm] = ops[0]
    assert by_norm["layernorm"].bytes_moved == 5 * a * elems + 2 * stats and by_norm["layernorm"].kernels == 2
    assert by_norm["layernorm_plain"].bytes_moved == 3 * a * elems + stats and by_norm["layernorm_plain"].kernels == 1
