"""Fine-tuning's loss is transformers' ``ForCausalLMLoss``, which upcasts the logits (``logits.float()``) before the
cross-entropy, so CUDA autocast's split of the loss (bf16 log-softmax, fp32 nll_loss copy: memory.settings [12])
does not arise there: the LoRA/QLoRA estimate saves fp32 log-probabilities, on CUDA as on the CPU. Checked against
what transformers' own loss saves for backward (saved_tensors_hooks on the CPU)."""

from __future__ import annotations

import pytest

from flopscalc.memory import MemoryPrecision, TrainingSetup
from flopscalc.memory.activations import loss_saved_bytes
from flopscalc.memory.settings import Device

B, S, V = 2, 16, 1000


def _saved_logit_sized_bytes(torch, loss_fn, dtype) -> int:
    logits = torch.randn(B, S, V, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, V, (B, S))
    seen = {}

    def pack(t):
        if t.numel() == B * S * V or t.numel() == (B * S) * V:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(logits, labels, V).backward()
    return sum(seen.values())


def test_transformers_loss_saves_fp32_log_probs_and_the_estimate_counts_them():
    torch = pytest.importorskip("torch")
    loss_utils = pytest.importorskip("transformers.loss.loss_utils")
    saved = _saved_logit_sized_bytes(torch, loss_utils.ForCausalLMLoss, torch.bfloat16)
    assert saved == 4 * B * S * V  # fp32 log-probabilities, nothing in bf16
    setup = TrainingSetup(micro_batch=B, seq_len=S, precision=MemoryPrecision.bf16_mixed, device=Device.cuda)
    est = loss_saved_bytes(setup, B * S, V, upcast_logits=True)
    assert est - saved == pytest.approx(8 * B * S + 4)  # + int64 targets and the fp32 scalar
    # the trainer's own loss on CUDA saves more (the bf16 log-softmax and nll_loss's fp32 copy): the two differ
    assert loss_saved_bytes(setup, B * S, V) > est
