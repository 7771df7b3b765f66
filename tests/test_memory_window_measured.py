"""The windowed trainer's mask in the memory engine, against bytes measured on the reference module (CPU).

With a sliding window shorter than the sequence the trainer calls SDPA with an explicit banded boolean mask
(`flopscalc.train.model.window_mask`); SDPA turns it into an additive T x T bias in q's dtype and saves it for
backward, one per layer (4 bytes an element in fp32, 2 under bf16 autocast or pure bf16). Recomputation (selective
or full) saves no attention core, so no bias. Measured as `tests/test_memory_measured.py` measures every activation:
exact on the pinned torch, per component.
"""

from __future__ import annotations

import pytest
from test_memory_measured import PRECISIONS, _close, _setup, measure_model

from flopscalc.flops import Recompute
from flopscalc.memory import estimate_memory
from flopscalc.model import ModelConfig

torch = pytest.importorskip("torch")


def measure(cfg, batch, seq, *, precision, recompute, flash, monkeypatch) -> dict:
    """`test_memory_measured.measure` on the reference module of any block (`train.model.build_model`)."""
    from flopscalc.train.model import build_model

    torch.manual_seed(0)
    model = build_model(cfg, attention="sdpa" if flash else "math", recompute=recompute.value)
    return measure_model(model, batch, seq, precision=precision, monkeypatch=monkeypatch)

WINDOWED = [  # (config, micro-batch, sequence): the window cuts in each
    (ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=512, attn_window=4), 1, 16),
    (ModelConfig(n_layer=3, n_head=4, n_embd=64, block_size=64, vocab_size=512, attn_window=8), 2, 32),
    (ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=512, attn_window=8, n_kv_head=2,
                 mlp="swiglu", norm="rmsnorm", position="rope", bias=False), 2, 32),  # the general block
]


@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: p.value)
@pytest.mark.parametrize("shape", range(len(WINDOWED)))
def test_windowed_activations_match_saved_tensors(shape, precision, monkeypatch):
    cfg, batch, seq = WINDOWED[shape]
    for recompute in Recompute:
        got = measure(cfg, batch, seq, precision=precision, recompute=recompute, flash=True, monkeypatch=monkeypatch)
        est = estimate_memory(cfg, _setup(batch, seq, precision, recompute, True))
        what = (f"window {cfg.attn_window} {cfg.n_embd}x{cfg.n_layer} b{batch} s{seq} {precision.value} "
                f"{recompute.value}")
        _close(got["activations"], est.activations.total, f"activations {what}")


def test_the_mask_adds_a_t_by_t_bias_per_layer_as_the_trainer_measured(monkeypatch):
    """docs/trainer.md: +2,048 bytes = 2 layers x 16^2 x 4 on a 2-layer fp32 model at T 16, W 4 (measured here too:
    the same model with and without its window)."""
    from flopscalc.memory import MemoryPrecision

    cfg, batch, seq = WINDOWED[0]
    full = cfg.with_(attn_window=None)
    fp32 = MemoryPrecision.fp32
    kw = {"precision": fp32, "recompute": Recompute.none, "flash": True, "monkeypatch": monkeypatch}
    measured = measure(cfg, batch, seq, **kw)["activations"] - measure(full, batch, seq, **kw)["activations"]
    assert measured == 2 * 16 * 16 * 4
    est = (estimate_memory(cfg, _setup(batch, seq, fp32)).activations.attention_core
           - estimate_memory(full, _setup(batch, seq, fp32)).activations.attention_core)
    assert est == measured


def test_a_window_as_long_as_the_sequence_needs_no_mask(monkeypatch):
    from flopscalc.memory import MemoryPrecision

    cfg, batch, seq = WINDOWED[0]
    whole = cfg.with_(attn_window=seq)  # W >= T: plain causal attention, is_causal, no bias
    fp32 = _setup(batch, seq, MemoryPrecision.fp32)
    est = estimate_memory(whole, fp32).activations.total
    assert est == estimate_memory(cfg.with_(attn_window=None), fp32).activations.total
    got = measure(whole, batch, seq, precision=MemoryPrecision.fp32, recompute=Recompute.none, flash=True,
                  monkeypatch=monkeypatch)
    assert got["activations"] == est
