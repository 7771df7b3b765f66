"""llm.c's fused classifier writes the logits' gradient over the logits (review leftovers, item d).

The reference is llm.c's own allocation, transcribed from karpathy/llm.c ``train_gpt2.cu`` at commit 00247dc
(``fill_in_activation_sizes``: the 23 activation tensors ``malloc_and_point_activations`` allocates in one block;
``floatX`` is bf16, 2 bytes; ``float`` 4). Its one buffer ``output`` holds the logits
(``matmul_forward_cublaslt(acts.output, acts.lnf, params.wte, ...)``) and then their gradient
(``fused_classifier(acts.output, acts.losses, dloss, ...)``, which "replaces logits with logit gradients",
``llmc/fused_classifier.cuh``; ``matmul_backward(..., acts.output, acts.lnf, params.wte, ...)`` reads it there).
Nothing else in the list grows with the vocabulary, so the vocabulary's share of llm.c's activation memory is one
b x T x Vp 16-bit buffer: the engine's, for ``loss_kernel=llmc``, must be the same; flash-attn's kernel writes a
second one (``at::empty_like(logits)``).
"""

from __future__ import annotations

import dataclasses

import pytest

from flopscalc.memory import LossKernel, TrainingSetup, estimate_memory
from flopscalc.memory.activations import logits_buffer_bytes
from flopscalc.model import ModelConfig
from flopscalc.perf.validation import published_rows, row_config

BF16, FP32 = 2, 4  # llm.c's floatX (bf16 build) and float


def llmc_activation_bytes(B: int, T: int, C: int, L: int, NH: int, Vp: int, recompute: int = 1) -> dict[str, int]:
    """Bytes of each tensor of llm.c's ``fill_in_activation_sizes`` (train_gpt2.cu @00247dc, cuDNN build)."""
    sizes = {
        "encoded": (B * T * C, BF16),
        "ln1": (L * B * T * C if recompute < 2 else 0, BF16),
        "ln1_mean": (L * B * T, FP32), "ln1_rstd": (L * B * T, FP32),
        "atty": (L * B * T * C, BF16),
        "att": (L * B * NH * T, FP32),  # cuDNN's fp32 statistics
        "attproj": (L * B * T * C, BF16), "residual2": (L * B * T * C, BF16),
        "ln2": (L * B * T * C if recompute < 2 else 0, BF16),
        "ln2_mean": (L * B * T, FP32), "ln2_rstd": (L * B * T, FP32),
        "fch": (L * B * T * 4 * C, BF16),
        "fch_gelu": ((L if recompute < 1 else 1) * B * T * 4 * C, BF16),
        "fcproj": (L * B * T * C, BF16), "residual3": (L * B * T * C, BF16),
        "lnf": (B * T * C, BF16), "lnf_mean": (B * T, FP32), "lnf_rstd": (B * T, FP32),
        "losses": (B * T, FP32),
        "qkvr": (L * B * T * 3 * C, BF16),
        "output": (B * T * max(3 * C, NH * T, Vp), BF16),  # the logits, then their gradient, in place
        "scratch_bt4c": (B * T * 4 * C, BF16), "scratch_btc": (B * T * C, BF16),
    }
    assert len(sizes) == 23  # NUM_ACTIVATION_TENSORS
    return {name: n * width for name, (n, width) in sizes.items()}


LLMC_ROWS = [r for r in published_rows() if r["run"].startswith("llmc-")]


def _engine_vocab_bytes(cfg: ModelConfig, setup: TrainingSetup) -> float:
    """What the engine holds for one micro-batch beside the weights: activations, logits and loss transients."""
    m = estimate_memory(cfg, setup)
    return m.activations.total + m.logits_bytes + m.loss_transient_bytes


@pytest.mark.parametrize("row", LLMC_ROWS, ids=lambda r: r["run"])
def test_the_vocabularys_memory_is_llmcs_one_output_buffer(row):
    cfg, setup, _ = row_config(row)
    assert setup.fused_loss and setup.loss_kernel is LossKernel.llmc
    B, T, C, L, NH = setup.micro_batch, setup.seq_len, cfg.n_embd, cfg.n_layer, cfg.n_head
    dv = 128  # llm.c pads the vocabulary to a multiple of 128
    for V in (cfg.vocab_size, 2 * cfg.vocab_size):
        base = llmc_activation_bytes(B, T, C, L, NH, V)
        more = llmc_activation_bytes(B, T, C, L, NH, V + dv)
        grown = {k for k in base if more[k] != base[k]}
        assert grown == {"output"}  # one buffer for the logits and their gradient
        source = sum(more.values()) - sum(base.values())
        small, large = cfg.with_(vocab_size=V), cfg.with_(vocab_size=V + dv)
        assert _engine_vocab_bytes(large, setup) - _engine_vocab_bytes(small, setup) == source
        # the logits and the gradient together are llm.c's output buffer, exactly
        logits, transient = logits_buffer_bytes(large, setup, T)
        assert logits + transient == more["output"]
        # flash-attn's kernel writes its gradient into a tensor of its own: one more such buffer
        other = dataclasses.replace(setup, loss_kernel=LossKernel.flash_attn)
        assert sum(logits_buffer_bytes(large, other, T)) == 2 * more["output"]


def test_the_in_place_gradient_lowers_the_llmc_peak_by_one_logits_buffer():
    row = LLMC_ROWS[0]  # GPT-2 124M, micro-batch 64 x 1024 on A100 80GB
    cfg, setup, _ = row_config(row)
    flash = dataclasses.replace(setup, loss_kernel=LossKernel.flash_attn)
    a, b = estimate_memory(cfg, setup), estimate_memory(cfg, flash)
    logits = setup.micro_batch * setup.seq_len * cfg.vocab_size * BF16
    assert b.loss_transient_bytes - a.loss_transient_bytes == logits
    assert a.peak_bytes < b.peak_bytes
