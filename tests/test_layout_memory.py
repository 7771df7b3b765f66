"""Memory per GPU under parallel layouts against Korthikanti et al. 2022 (arXiv:2205.05198) and Megatron-LM's docs."""

from __future__ import annotations

import pytest

from flopscalc.errors import UsageError
from flopscalc.flops import Recompute
from flopscalc.layout import Layout, activation_bytes_per_layer, layout_memory
from flopscalc.layout.memory import in_flight_micro_batches
from flopscalc.model import ModelConfig

# Korthikanti et al. 2022, Table 3: (heads a, hidden h, layers L, tensor-parallel t) of the four models
KORTHIKANTI_T3 = {"22B": (64, 6144, 48, 8), "175B": (96, 12288, 96, 8), "530B": (128, 20480, 105, 8),
                  "1T": (160, 25600, 128, 8)}
S, B = 2048, 1


def _gpt(a, h, L):
    return ModelConfig(n_layer=L, n_head=a, n_embd=h, vocab_size=51200, block_size=S)


# Table 2 of Korthikanti et al. 2022: activation bytes per layer, written as the paper prints them
TABLE_2 = {
    "no parallelism": ({"tp": 1}, lambda s, b, h, a, t: s * b * h * (34 + 5 * a * s / h)),
    "tensor parallel (baseline)": ({}, lambda s, b, h, a, t: s * b * h * (10 + 24 / t + 5 * a * s / (h * t))),
    "tensor + sequence parallel": ({"sequence_parallel": True},
                                   lambda s, b, h, a, t: s * b * h / t * (34 + 5 * a * s / h)),
    "tensor parallel + selective": ({"recompute": Recompute.selective},
                                    lambda s, b, h, a, t: s * b * h * (10 + 24 / t)),
    "tensor + sequence parallel + selective": ({"sequence_parallel": True, "recompute": Recompute.selective},
                                               lambda s, b, h, a, t: s * b * h / t * 34),
    "full recompute": ({"tp": 1, "recompute": Recompute.full}, lambda s, b, h, a, t: 2 * s * b * h),
}


@pytest.mark.parametrize("model", KORTHIKANTI_T3)
@pytest.mark.parametrize("row", TABLE_2)
def test_activations_per_layer_equal_korthikanti_table_2(model, row):
    a, h, L, t = KORTHIKANTI_T3[model]
    kwargs, formula = TABLE_2[row]
    kw = {"tp": t, **kwargs}
    got = activation_bytes_per_layer(_gpt(a, h, L), S, B, **kw)
    assert got == pytest.approx(formula(S, B, h, a, kw["tp"]), rel=1e-12)


@pytest.mark.parametrize(("model", "saving"), [("175B", 0.70), ("530B", 0.65)])
def test_selective_recompute_saves_what_korthikanti_sec_4_1_states(model, saving):
    """Sec. 4.1: selective recomputation cuts activation memory by 70% for GPT-3 and 65% for MT-NLG."""
    a, h, L, t = KORTHIKANTI_T3[model]
    cfg = _gpt(a, h, L)
    full = activation_bytes_per_layer(cfg, S, B, tp=t, sequence_parallel=True)
    sel = activation_bytes_per_layer(cfg, S, B, tp=t, sequence_parallel=True, recompute=Recompute.selective)
    assert round(1 - sel / full, 2) == saving


def test_first_stage_holds_one_model_of_activations_under_1f1b():
    """Korthikanti sec. 4.3: with m >= p the first stage stores p micro-batches of L/p layers = L layers' worth."""
    a, h, L, t = KORTHIKANTI_T3["175B"]
    cfg = _gpt(a, h, L)
    per_layer = activation_bytes_per_layer(cfg, S, B, tp=t, sequence_parallel=True, recompute=Recompute.selective)
    lay = Layout(tp=t, pp=8, n_micro=64, sequence_parallel=True, recompute=Recompute.selective)
    mem = layout_memory(cfg, lay, S, dropout=False)
    assert mem.stage == "first"
    assert per_layer > per_layer_no_dropout(cfg, t)
    assert mem.activations == pytest.approx(per_layer_no_dropout(cfg, t) * L)


def per_layer_no_dropout(cfg, t):
    return activation_bytes_per_layer(cfg, S, B, tp=t, sequence_parallel=True, recompute=Recompute.selective,
                                      dropout=False)


@pytest.mark.parametrize(("p", "v", "m"), [(8, 3, 64), (4, 2, 8), (35, 3, 280)])
def test_interleaving_scales_in_flight_by_korthikanti_sec_4_3(p, v, m):
    assert in_flight_micro_batches(Layout(pp=p, interleave=v, n_micro=m)) == pytest.approx(p * (1 + (p - 1) / (p * v)))


def test_fewer_micro_batches_than_stages_hold_fewer():
    assert in_flight_micro_batches(Layout(pp=8, n_micro=3)) == 3


@pytest.mark.parametrize(("zero", "d", "bytes_per_param"), [(0, 4, 18), (1, 4, 6 + 12 / 4), (1, 64, 6 + 12 / 64)])
def test_state_bytes_per_parameter_equal_megatron_distributed_optimizer_table(zero, d, bytes_per_param):
    """Megatron-LM docs (dist_optimizer.md): bf16 params, fp32 grads: 18 bytes, or 6 + 12/d distributed."""
    cfg = _gpt(16, 1024, 4)
    # TP 2: a layout Megatron-LM runs (a plain DDP/FSDP one is the memory engine's, below)
    mem = layout_memory(cfg, Layout(tp=2, dp=d, zero_stage=zero), 1024, dropout=False)
    assert (mem.weights + mem.gradients + mem.optimizer) / mem.n_params_per_gpu == pytest.approx(bytes_per_param)


def test_zero3_shards_every_state_over_data_parallel_ranks():
    cfg = _gpt(16, 1024, 8)
    one = layout_memory(cfg, Layout(tp=2, dp=1, zero_stage=0), 1024, dropout=False)
    many = layout_memory(cfg, Layout(tp=2, dp=16, zero_stage=3), 1024, dropout=False)
    assert many.gradients == pytest.approx(one.gradients / 16)
    assert many.optimizer == pytest.approx(one.optimizer / 16)


@pytest.mark.parametrize("zero", [0, 3])
@pytest.mark.parametrize("recompute", list(Recompute))
@pytest.mark.parametrize("flash", [True, False])
@pytest.mark.parametrize("fused_loss", [False, True])
def test_a_layout_flopscalc_train_runs_is_the_memory_engines_estimate(zero, recompute, flash, fused_loss):
    # plain DDP / FSDP (Layout.engine: flopscalc train) is priced by the memory engine, which the measured-bytes
    # and published-run tests check, not by Korthikanti's count of Megatron-LM's kernels: the two disagreed by
    # 30-60% for the same FSDP run (gpt2-xl, 64 GPUs, micro-batch 4 x 8: 11.7 against 17.1 GiB)
    from flopscalc.memory import TrainingSetup, estimate_memory
    from flopscalc.model import get_preset

    cfg = get_preset("gpt2-xl")
    lay = Layout(dp=64, zero_stage=zero, micro_batch=4, n_micro=8, recompute=recompute)
    mem = layout_memory(cfg, lay, 1024, flash=flash, dropout=False, fused_loss=fused_loss)
    est = estimate_memory(cfg, TrainingSetup(micro_batch=4, seq_len=1024, recompute=recompute, flash=flash,
                                             grad_accum=8, n_gpus=64, zero_stage=zero, fused_loss=fused_loss))
    assert mem.total == pytest.approx(est.peak_bytes, rel=1e-12)


def test_the_search_prices_the_memory_of_the_loss_kernel_it_times():
    # `--search --fused-loss` times a fused cross-entropy kernel; the DDP/FSDP layouts it ranks are priced with it
    # too (gpt2-xl on 8 A100s, FSDP at micro-batch 8: 29.3 GiB, 4.0 GiB less than PyTorch's fp32 cross-entropy:
    # its b s V log-probabilities and two loss-backward gradients, docs/memory.md); the Megatron layouts keep theirs
    from flopscalc.hardware import get_gpu
    from flopscalc.layout import cluster_for
    from flopscalc.layout.search import search_layouts
    from flopscalc.layout.spec import Engine
    from flopscalc.model import get_preset

    cfg = get_preset("gpt2-xl")
    res = search_layouts(cfg, cluster_for(get_gpu("a100-80gb"), 8), 1024, 64, top=50,
                         fused_loss=True)
    assert {r.layout.engine() is Engine.megatron for r in res.ranked} == {True, False}
    arch = get_gpu("a100-80gb").architecture  # the search prices the A100's cuBLAS workspace
    for r in res.ranked:
        plain = layout_memory(cfg, r.layout, 1024, flash=True, dropout=False, gpu_architecture=arch)
        if r.layout.engine() is Engine.megatron:
            assert r.memory == plain
        else:
            assert r.memory == layout_memory(cfg, r.layout, 1024, flash=True, dropout=False, fused_loss=True,
                                             gpu_architecture=arch)
            assert r.memory.total < plain.total


def test_tensor_and_pipeline_split_the_parameters():
    cfg = _gpt(16, 2048, 16)
    whole = layout_memory(cfg, Layout(), 1024).n_params_per_gpu
    split = layout_memory(cfg, Layout(tp=4, pp=4, n_micro=4), 1024).n_params_per_gpu
    assert whole / 16 < split < whole / 8  # norms replicated, the embedding rides on one stage


@pytest.mark.parametrize("model", KORTHIKANTI_T3)
def test_published_korthikanti_runs_fit_80_gb(model):
    """Every Table 3/5 run ran on A100 80GB: sequence parallel + selective must fit (and so full recompute)."""
    a, h, L, t = KORTHIKANTI_T3[model]
    p = {"22B": 1, "175B": 8, "530B": 35, "1T": 64}[model]
    v = {"22B": 1, "175B": 3, "530B": 3, "1T": 1}[model]
    b = 4 if model == "22B" else 1
    m = {"22B": 1, "175B": 64, "530B": 280, "1T": 512}[model]
    for rc, sp in ((Recompute.selective, True), (Recompute.full, False)):
        mem = layout_memory(_gpt(a, h, L), Layout(tp=t, pp=p, interleave=v, micro_batch=b, n_micro=m,
                                                   sequence_parallel=sp, recompute=rc), S)
        assert mem.total < 80e9


def test_bad_layouts_are_refused_in_one_line():
    with pytest.raises(UsageError, match="sequence parallelism"):
        Layout(sequence_parallel=True)
    with pytest.raises(UsageError, match="--tp 3"):
        Layout(tp=3).check_model(_gpt(16, 1024, 4), 1024)


def test_the_published_layouts_that_ran_fit_and_where_the_count_is_too_high():
    # every row of data/published_layouts.csv is a run that ran on its GPUs, so the memory a layout is priced at
    # must fit them. Korthikanti's and Narayanan's Megatron-LM runs (A100-80GB) do: 0.41-0.84 of 80 GiB. Llama 3
    # 405B's three layouts (Dubey et al. 2024 Table 4, H100-80GB) do NOT, by 2-3%: 1.027-1.030 (82 GiB, the second
    # stage's 15 micro-batches of 8 layers under 1F1B, 59.6 GiB, with the end stages a layer short as sec. 3.3.2
    # says; before that and the per-stage count, 1.10 on the first stage). Without the 5% allocator-overhead
    # assumption they fit (0.98), and with the paper's interleaving (V = 8, implied by sec. 3.3.2) in Megatron-LM's
    # order they need 1.08-1.17: Meta's run fits by what the paper does not state (its own schedule, gradient
    # accumulation, allocator; docs/memory.md "Llama 3 405B", /work/notes/s15/405b.md). Asserted as found, so a
    # change that moves it is seen (docs/parallelism.md, "Where it is weakest").
    import dataclasses

    from flopscalc.hardware import get_gpu
    from flopscalc.layout.validation import LLAMA3_INTERLEAVE_IMPLIED, published_layouts

    for row in published_layouts():
        cap = get_gpu(row.gpu_key).memory_bytes
        mem = layout_memory(row.cfg, row.layout, row.seq_len, flash=row.flash, dropout=not row.flash)
        if row.name.startswith("llama3-405b"):
            assert 1.02 < mem.total / cap < 1.035, row.name
            assert mem.stage == "second", row.name
            bare = layout_memory(row.cfg, row.layout, row.seq_len, flash=row.flash, dropout=False,
                                 fragmentation_fraction=0.0)
            assert 0.97 < bare.total / cap < 0.99, row.name
            lay = dataclasses.replace(row.layout, interleave=LLAMA3_INTERLEAVE_IMPLIED)
            interleaved = layout_memory(row.cfg, lay, row.seq_len, flash=row.flash, dropout=False)
            assert 1.07 < interleaved.total / cap < 1.17, row.name
        else:
            assert mem.total / cap <= 0.9, row.name
