"""Gradient accumulation on CUDA: the LM head's fresh weight gradient of a later micro-batch is a transient beside the
accumulated ``.grad`` (PyTorch's AccumulateGrad adds it in place), so the breakdown shows it as a transient and its
"not alive at the same time" row never turns positive (review of stop 16: it showed +1.80 GiB)."""

from __future__ import annotations

import itertools

import pytest

from flopscalc.memory import MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.memory.settings import Device
from flopscalc.model import get_preset


def test_accumulate_grad_adds_a_fresh_gradient_in_place():
    """The reference behaviour the estimate counts: micro-batch 2's gradient is a new tensor (seen by a hook), added
    into the existing ``.grad`` storage (same data pointer), so both exist at once."""
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.randn(64, 32))
    fresh = []
    w.register_hook(lambda g: fresh.append(g))
    x = torch.randn(8, 32)
    (x @ w.T).sum().backward()
    storage = w.grad.data_ptr()
    (x @ w.T).sum().backward()
    assert w.grad.data_ptr() == storage  # accumulated in place
    assert fresh[1].data_ptr() != storage and fresh[1].shape == w.shape  # the fresh gradient, a separate tensor


@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl", "llama-3.1-8b"])
def test_not_concurrent_row_never_positive_and_components_sum_to_the_peak(name):
    cfg = get_preset(name)
    for ga, mb, rc, dev in itertools.product((1, 2, 4), (1, 4), ("none", "selective", "full"), (Device.cuda, Device.cpu)):
        prec = MemoryPrecision.bf16_mixed if dev is Device.cuda else MemoryPrecision.fp32
        b = estimate_memory(cfg, TrainingSetup(micro_batch=mb, seq_len=512, grad_accum=ga, recompute=rc,
                                               precision=prec, device=dev))
        comp = b.component_bytes()
        assert comp["not_concurrent"] <= 0, (name, ga, mb, rc, dev)
        assert sum(comp.values()) == pytest.approx(b.peak_bytes, rel=1e-12)


def test_accumulation_keeps_the_gradients_beside_the_backward_and_shows_the_transient_on_cuda():
    """With accumulation the accumulated gradients are alive through the next micro-batch's backward, so the peak
    rises over the same micro-batch without it (on CUDA and on the CPU); on CUDA the head's
    fresh gradient is shown with the loss's buffers (its size the LM head's: vocabulary x width in the gradient dtype),
    on the CPU, whose peak is the sum of every buffer, it is not added."""
    cfg = get_preset("llama-3.1-8b")
    head = cfg.vocab_size * cfg.n_embd * 4  # fp32 gradient of the LM head (untied), AMP's gradient dtype
    for dev, prec in ((Device.cuda, MemoryPrecision.bf16_mixed), (Device.cpu, MemoryPrecision.fp32)):
        one = estimate_memory(cfg, TrainingSetup(micro_batch=1, seq_len=128, precision=prec, device=dev))
        four = estimate_memory(cfg, TrainingSetup(micro_batch=1, seq_len=128, grad_accum=4, precision=prec,
                                                  device=dev))
        assert four.peak_bytes > one.peak_bytes
        shown = four.component_bytes()["logits_buffers"] - one.component_bytes()["logits_buffers"]
        assert shown == pytest.approx(head if dev is Device.cuda else 0.0)
