"""Memory estimator: published figures, invariants, bad input, the seed's claim 6, and the CLI.

Measured-byte validation on the reference module lives in ``tests/test_memory_measured.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.flops import Recompute
from flopscalc.hardware import get_gpu
from flopscalc.memory import (
    Device,
    MemoryPrecision,
    Optimizer,
    TrainingSetup,
    estimate_memory,
    fits,
    max_micro_batch,
    suggest_fixes,
)
from flopscalc.model import PRESETS, ModelConfig, count_params
from tests.conftest import cli_json

GIB = 2**30
XL = PRESETS["gpt2-xl"]


def _setup(**kw) -> TrainingSetup:
    return TrainingSetup(**{"micro_batch": 1, "seq_len": 1024, **kw})


# ------------------------------------------------------------------ published figures


def test_mixed_adamw_model_states_are_16_bytes_per_param():
    """ZeRO (Rajbhandari et al. 2020, sec. 3.1): mixed-precision Adam needs 2 + 2 + 12 = 16 bytes/param,
    "at least 24 GB" for GPT-2 1.5B. PyTorch AMP splits them 4 (fp32 params) + 4 (fp32 grads) + 8 (m, v)."""
    b = estimate_memory(XL, _setup())
    n = count_params(XL).total
    assert b.model_states_bytes / n == pytest.approx(16, rel=1e-4)  # step scalars add ~1e-6
    assert b.model_states_bytes > 24e9


@pytest.mark.parametrize("stage, paper_gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_stages_reproduce_zero_paper_figure_1(stage, paper_gb):
    """ZeRO Fig. 1: 7.5B parameters, 64 GPUs, K = 12: 120, 31.4, 16.6, 1.9 GB per GPU (rounded to 0.1 GB)."""
    b = estimate_memory(XL, _setup(n_gpus=64, zero_stage=stage))
    per_param = b.model_states_bytes / count_params(XL).total
    assert per_param * 7.5e9 / 1e9 == pytest.approx(paper_gb, rel=0.02)


def _per_layer(cfg: ModelConfig, setup: TrainingSetup) -> float:
    """Activation bytes of one layer: the difference between L+1 and L layers."""
    more = cfg.with_(n_layer=cfg.n_layer + 1)
    return estimate_memory(more, setup).activations.total - estimate_memory(cfg, setup).activations.total


@pytest.mark.parametrize("flash", [False, True])
@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl"])
def test_per_layer_activations_match_korthikanti_without_dropout(name, flash):
    """Korthikanti et al. 2022 eq. 1: s b h (34 + 5 a s / h) bytes at 16 bit. The reference module has no
    dropout, which removes 2 s b h (two dropout masks) and 3 a s^2 b (attention dropout mask and output);
    fused attention removes the remaining 2 a s^2 b (their sec. 4.1). Left: LayerNorm statistics, the
    causal mask and the logsumexp, under 1%."""
    cfg = PRESETS[name]
    s, b, h, a = 1024, 4, cfg.n_embd, cfg.n_head
    setup = _setup(micro_batch=b, seq_len=s, precision=MemoryPrecision.bf16_pure, flash=flash)
    paper = s * b * h * (34 + 5 * a * s / h) - 2 * s * b * h - 3 * a * s * s * b - (2 * a * s * s * b if flash else 0)
    assert _per_layer(cfg, setup) == pytest.approx(paper, rel=0.01)


def test_full_recompute_keeps_two_bytes_per_sbh_per_layer():
    """Korthikanti et al. 2022 sec. 4: with full recomputation only each layer's input, 2 s b h bytes, is kept."""
    setup = _setup(micro_batch=4, precision=MemoryPrecision.bf16_pure, recompute=Recompute.full)
    assert _per_layer(XL, setup) == 2 * 1024 * 4 * XL.n_embd


def test_eight_bit_adam_is_a_quarter_of_adamw_state():
    """Dettmers et al. 2022: two 8-bit states instead of two fp32 ones (plus a small absmax per block)."""
    a = estimate_memory(XL, _setup(optimizer=Optimizer.adamw8bit)).states.optimizer_state_bytes
    f = estimate_memory(XL, _setup()).states.optimizer_state_bytes
    assert a / f == pytest.approx(0.25, rel=0.03)


# ------------------------------------------------------------------ the seed's claim 6


def test_seed_claim_6_gpt2_xl_does_not_fit_a_4070ti_and_what_would():
    """Seed: "training 1.5B needs ~50 GB+; the 4070 Ti has 12 GB". Mixed bf16 + AdamW, seq 1024: ~25.2 GiB at
    micro-batch 1 (model states alone 23.2 GiB) and ~48 GiB (51.7 GB) at 8. 8-bit Adam + full recompute +
    micro-batch 1 is NOT enough under PyTorch AMP (fp32 weights and grads stay: ~15.9 GiB); optimizer
    offload is (ZeRO-Offload keeps only 16-bit weights and gradients on the GPU)."""
    gpu = get_gpu("4070ti")
    peaks = {mb: estimate_memory(XL, _setup(micro_batch=mb)).peak_bytes for mb in range(1, 9)}
    # more than ZeRO's 16 bytes per parameter of model states (Rajbhandari et al. 2020 sec. 3.1): 24.9 GB
    assert peaks[1] > 16 * 1_557_611_200 > 12 * GIB
    assert peaks[8] > 50e9  # the seed's "~50 GB+" holds from micro-batch 7 up
    assert not any(fits(estimate_memory(XL, _setup(micro_batch=mb)), gpu).fits for mb in peaks)
    assert max_micro_batch(XL, _setup(), gpu) == 0

    seed_fix = _setup(optimizer=Optimizer.adamw8bit, recompute=Recompute.full)
    assert estimate_memory(XL, seed_fix).peak_bytes > 14 * GIB
    assert fits(estimate_memory(XL, replace(seed_fix, offload_optimizer=True)), gpu).fits

    advice = suggest_fixes(XL, _setup(micro_batch=8), gpu)
    assert advice.fixes and advice.reason is None
    assert all(f.peak_bytes <= gpu.memory_bytes for f in advice.fixes)
    assert any("offload" in c for c in advice.fixes[0].changes)
    assert suggest_fixes(XL, _setup(), gpu).fixes[0].changes == ("optimizer offload to CPU",)
    costs = [f.cost for f in advice.fixes]
    assert costs == sorted(costs)


def test_nothing_fits_says_why():
    tiny = replace(get_gpu("4070ti"), memory_bytes=2 * GIB)
    advice = suggest_fixes(XL, _setup(), tiny)
    assert not advice.fixes and "weights, gradients and optimizer state" in advice.reason


# ------------------------------------------------------------------ invariants


@settings(max_examples=40, deadline=None)
@given(mb=st.integers(1, 64), prec=st.sampled_from(list(MemoryPrecision)), rec=st.sampled_from(list(Recompute)),
       flash=st.booleans(), opt=st.sampled_from(list(Optimizer)))
def test_peak_grows_with_micro_batch(mb, prec, rec, flash, opt):
    """Non-decreasing and convex in the micro-batch (flat while gradients are the larger end of backward);
    increasing and convex with gradient accumulation, where both ends add up (on CUDA the start of backward is the
    largest of three moments around the loss, each linear in the micro-batch, so not one straight line)."""
    s = TrainingSetup(micro_batch=mb, seq_len=256, precision=prec, recompute=rec, flash=flash, optimizer=opt)

    def peaks(setup):
        return [estimate_memory(PRESETS["gpt2"], replace(setup, micro_batch=k)).peak_bytes for k in (mb, mb + 1, mb + 2)]

    p = peaks(s)
    assert p[0] <= p[1] <= p[2]
    assert p[2] - p[1] >= (p[1] - p[0]) * (1 - 1e-9)
    q = peaks(replace(s, grad_accum=2))
    assert q[0] < q[1] < q[2]
    assert q[2] - q[1] >= (q[1] - q[0]) * (1 - 1e-9)
    r = peaks(replace(s, grad_accum=2, device=Device.cpu))  # the CPU sums every buffer of the loss: one line
    assert r[2] - r[1] == pytest.approx(r[1] - r[0], rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(mb=st.integers(1, 16), prec=st.sampled_from(list(MemoryPrecision)), flash=st.booleans())
def test_recompute_and_flash_only_save(mb, prec, flash):
    def act(**kw):
        return estimate_memory(PRESETS["gpt2"], _setup(micro_batch=mb, precision=prec, **kw)).activations.total

    assert act(recompute=Recompute.full) < act(recompute=Recompute.selective) <= act(flash=flash)
    assert act(flash=True) < act(flash=False)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 512), opt=st.sampled_from([o for o in Optimizer if o is not Optimizer.none]))
def test_zero3_shards_model_states_exactly(n, opt):
    """Per-GPU model states x n_gpus = the unsharded total under ZeRO-3 (Rajbhandari et al. 2020, sec. 5)."""
    one = estimate_memory(XL, _setup(zero_stage=3, optimizer=opt))
    many = estimate_memory(XL, _setup(zero_stage=3, n_gpus=n, optimizer=opt))
    assert many.model_states_bytes * n == pytest.approx(one.model_states_bytes, rel=1e-9)


def test_max_micro_batch_is_the_edge():
    gpu = get_gpu("4070ti")
    s = _setup(seq_len=1024)
    b = max_micro_batch(PRESETS["gpt2"], s, gpu)
    assert b >= 1
    assert fits(estimate_memory(PRESETS["gpt2"], replace(s, micro_batch=b)), gpu).fits
    assert not fits(estimate_memory(PRESETS["gpt2"], replace(s, micro_batch=b + 1)), gpu).fits


def test_offload_moves_optimizer_to_cpu():
    on = estimate_memory(XL, _setup(offload_optimizer=True))
    off = estimate_memory(XL, _setup())
    n = count_params(XL).total
    assert on.states.optimizer_state_bytes == 0 and on.states.master_weights_bytes == 0
    assert on.states.weights_bytes == 2 * n and on.states.gradients_bytes == 2 * n  # ZeRO-Offload sec. 4.1
    assert on.cpu_offload_bytes == pytest.approx(16 * n, rel=1e-4)  # fp32 master, m, v, fp32 grads
    assert on.peak_bytes < off.peak_bytes


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kw, words", [
    ({"micro_batch": 0}, "micro-batch"),
    ({"zero_stage": 4}, "ZeRO stage"),
    ({"offload_optimizer": True, "optimizer": Optimizer.none}, "offload"),
    ({"precision": "fp8"}, "precision"),
    ({"allocator_overhead_fraction": 1.5}, "allocator"),
    ({"seq_len": 0}, "sequence"),
])
def test_bad_settings_raise_one_line(kw, words):
    with pytest.raises(UsageError, match=words) as e:
        TrainingSetup(**kw)
    assert "\n" not in str(e.value)


def test_sequence_longer_than_context_is_an_error():
    with pytest.raises(UsageError, match="longer than the model's context"):
        estimate_memory(PRESETS["gpt2"], TrainingSetup(seq_len=2048))


def test_zero3_on_one_gpu_is_a_warning_not_an_error():
    b = estimate_memory(XL, _setup(zero_stage=3))
    assert any("one GPU" in w for w in b.warnings)
    assert not estimate_memory(XL, _setup(zero_stage=3, n_gpus=8)).warnings


# ------------------------------------------------------------------ CLI


def test_cli_json_matches_api(capsys):
    d = cli_json(capsys, "memory", "--model", "gpt2-xl", "--gpu", "4070ti", "--micro-batch", "2", "--seq", "1024")
    b = estimate_memory(XL, _setup(micro_batch=2, gpu_architecture="Ada Lovelace"))  # the 4070 Ti's cuBLAS workspace
    assert d["peak_bytes"] == pytest.approx(b.peak_bytes)
    assert sum(d["components_bytes"].values()) == pytest.approx(d["peak_bytes"])
    assert d["components_bytes"]["activations"] == pytest.approx(sum(d["activations_bytes"].values()))
    assert d["fits"] is False and d["max_micro_batch"] == 0 and d["fixes"]
    assert d["capacity_bytes"] == 12 * GIB


def test_cli_fits_small_model(capsys):
    d = cli_json(capsys, "memory", "--model", "gpt2", "--gpu", "4070ti", "--micro-batch", "4", "--seq", "512")
    assert d["fits"] is True and d["max_micro_batch"] >= 4 and d["fixes"] == [] and d["headroom_bytes"] > 0


def test_cli_table_renders(capsys):
    assert run(["memory", "--model", "gpt2-xl", "--gpu", "4070ti", "--micro-batch", "8", "--seq", "1024"]) == 0
    out = capsys.readouterr().out
    assert "does not fit" in out and "optimizer offload" in out and "activations" in out


def test_cli_says_which_loss_and_dropout_it_priced(capsys):
    # --fused-loss and --dropout change what is saved; the settings line names them (it did not: a reader could not
    # tell a fused-loss estimate from PyTorch's), and the fused loss saves a log-sum-exp per token, not b s V
    assert run(["memory", "--model", "gpt2", "--gpu", "4070ti", "--fused-loss", "--dropout"]) == 0
    out = capsys.readouterr().out
    head = " ".join(out[:out.index("Memory per GPU")].split())  # the title and settings lines, however wrapped
    assert "fused cross-entropy" in head and "dropout" in head
    fused = cli_json(capsys, "memory", "--model", "gpt2", "--gpu", "4070ti", "--fused-loss")
    plain = cli_json(capsys, "memory", "--model", "gpt2", "--gpu", "4070ti")
    tokens, vocab = 1024, PRESETS["gpt2"].vocab_size
    # CUDA autocast (settings [12]): log_softmax's bf16 output and nll_loss's fp32 copy, against one fp32 lse per token
    assert _a(plain, "loss") - _a(fused, "loss") == pytest.approx(tokens * vocab * (2 + 4) - tokens * 4, rel=1e-12)


def _c(d, name):
    return d["components_bytes"][name]


def _a(d, name):
    return d["activations_bytes"][name]


GPT2_N = 124_439_808  # GPT-2 small with biases and a tied head (Radford et al. 2019; count_params' test pins it)
GPT2_L, GPT2_H, GPT2_S = 12, 12, 1024


# Each option against `memory --model gpt2 --gpu 4070ti` (bf16 autocast, AdamW, micro-batch 1, seq 1024): the
# computed component it must move, and which way or by how much, from a paper or a limit case. The whole peak
# must move too.
MEMORY_OPTION_MOVES = {
    # fp32: no 16-bit weight copies to cache, and matmul inputs saved at 4 bytes instead of 2 ([K] assumes 2)
    "precision": (["--precision", "fp32"], lambda a, b: _c(b, "weight_copies") == 0 < _c(a, "weight_copies")
                  and _a(b, "qkv") == 2 * _a(a, "qkv")),
    # SGD with momentum keeps one fp32 buffer per parameter, AdamW two (m, v; ZeRO sec. 3.1: K = 12 with master)
    "optimizer": (["--optimizer", "sgd"], lambda a, b: _c(b, "optimizer_state") == 4 * GPT2_N
                  and _c(a, "optimizer_state") >= 8 * GPT2_N),
    # full recompute keeps each layer's input only ([K] sec. 4: 2 s b h at 16 bit; the residual here is fp32)
    "recompute": (["--recompute", "full"], lambda a, b: _a(b, "checkpoints") == 4 * GPT2_L * GPT2_S * 768
                  and _a(b, "mlp") == _a(b, "qkv") == 0),
    # math attention saves the s x s probabilities ([K] eq. 1: the 5 a s^2 b term), flash does not
    "flash": (["--no-flash"], lambda a, b: _a(b, "attention_core") >= 2 * GPT2_L * GPT2_H * GPT2_S ** 2
              > _a(a, "attention_core")),
    # ZeRO-3 on 4 GPUs: each holds a quarter of the 16 bytes/param of model states (ZeRO sec. 5.3, Fig. 1)
    "zero": (["--n-gpus", "4", "--zero", "3"], lambda a, b: b["model_states_bytes"] == pytest.approx(
        16 * GPT2_N / 4, rel=1e-4)),
    # offload: fp32 master weights and optimizer states leave the GPU (Ren et al. 2021, sec. 4.1)
    "offload": (["--offload"], lambda a, b: _c(b, "optimizer_state") == _c(b, "master_weights") == 0
                and b["cpu_offload_bytes"] >= 12 * GPT2_N),
    # every saved activation but the position ids is per sequence ([K] eq. 1 is linear in b)
    "micro-batch": (["--micro-batch", "2"], lambda a, b: _a(b, "qkv") == 2 * _a(a, "qkv")
                    and _a(b, "loss") > 1.99 * _a(a, "loss")),
    "seq": (["--seq", "512"], lambda a, b: _a(b, "qkv") == _a(a, "qkv") / 2),  # linear in s with flash
    # additive components: exactly what was stated
    "cuda-context": (["--cuda-context", "1GiB"], lambda a, b: _c(b, "cuda_context") == GIB
                     and b["peak_bytes"] - a["peak_bytes"] == GIB - _c(a, "cuda_context")),
    "allocator-overhead": (["--allocator-overhead", "0.2"], lambda a, b: _c(b, "allocator_overhead") ==
                           pytest.approx(0.2 * b["allocated_peak_bytes"], rel=1e-12)),
    # accumulation keeps the gradients of earlier micro-batches alive through the next forward and backward
    "grad-accum": (["--grad-accum", "4"], lambda a, b: b["allocated_peak_bytes"] >= a["allocated_peak_bytes"]
                   + _c(a, "gradients") - _c(a, "activations")),
    # weights are fp32 under AMP: 4 bytes per parameter of the model asked for
    "params": (["--params", "350M"], lambda a, b: _c(b, "weights") == 4 * b["n_params"] > _c(a, "weights")),
    "shape": (["--n-layer", "6", "--n-head", "8", "--n-embd", "512"],
              lambda a, b: _c(b, "weights") == 4 * b["n_params"] < _c(a, "weights")),
}


@pytest.mark.parametrize("name", list(MEMORY_OPTION_MOVES))
def test_every_option_moves_its_component(capsys, name):
    extra, moved = MEMORY_OPTION_MOVES[name]
    base = ["--gpu", "4070ti"]
    model = [] if any(o in extra for o in ("--params", "--n-layer")) else ["--model", "gpt2"]
    a = cli_json(capsys, "memory", "--model", "gpt2", *base)
    b = cli_json(capsys, "memory", *model, *base, *extra)
    assert moved(a, b)
    assert a["peak_bytes"] != b["peak_bytes"]


@pytest.mark.parametrize("argv, code", [
    (["--model", "gpt2", "--gpu", "4070ti", "--micro-batch", "0"], 2),
    (["--model", "gpt2", "--gpu", "4070ti", "--seq", "4096"], 2),
    (["--model", "gpt2", "--gpu", "4070ti", "--zero", "5"], 2),
    (["--model", "gpt2", "--gpu", "4070ti", "--optimizer", "none", "--offload"], 2),
    (["--model", "gpt2", "--gpu", "nosuchgpu"], 2),
    (["--gpu", "4070ti"], 2),
])
def test_cli_errors_are_one_line(capsys, argv, code):
    assert run(["memory", *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("flopscalc: error: ") and err.count("\n") == 1


@settings(max_examples=30, deadline=None)
@given(mb=st.integers(1, 16), prec=st.sampled_from(list(MemoryPrecision)), rec=st.sampled_from(list(Recompute)))
def test_peak_lies_between_one_end_of_backward_and_everything_at_once(mb, prec, rec):
    """Without accumulation the peak is at least each end of backward and at most their sum (accumulation); on the
    CPU, where every buffer of the loss counts at once, accumulation adds exactly the gradients to the start."""
    for device in Device:
        s = _setup(micro_batch=mb, seq_len=512, precision=prec, recompute=rec, device=device)
        one, acc = (estimate_memory(PRESETS["gpt2-medium"], s),
                    estimate_memory(PRESETS["gpt2-medium"], replace(s, grad_accum=4)))
        st_ = one.states
        persistent = st_.weights_bytes + st_.master_weights_bytes + st_.optimizer_state_bytes
        everything = (persistent + st_.gradients_bytes + st_.weight_copies_bytes + one.activations.total
                      + one.logits_bytes + one.loss_transient_bytes)
        assert one.allocated_peak_bytes >= persistent + st_.gradients_bytes
        assert one.allocated_peak_bytes >= persistent + one.activations.total + one.logits_bytes  # the loss's forward
        assert one.allocated_peak_bytes < acc.allocated_peak_bytes <= everything + one.head_gradient_bytes
        if device is Device.cpu:
            assert acc.allocated_peak_bytes == pytest.approx(everything, rel=1e-12)
