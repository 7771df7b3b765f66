"""The residual stream's dtype under full recomputation, measured: what ``torch.utils.checkpoint`` keeps at each
block's input follows the weights (an embedding's output and ``add`` are in no autocast list), so 16-bit weights
under autocast (DeepSpeed's bf16 engine, FSDP ``param_dtype=bf16``: `TrainingSetup.deepspeed_style`) keep 2 bytes
an element where PyTorch AMP's fp32 weights keep 4.

Only the checkpoints are compared here: on a CPU, autocast has no fp32 ``layer_norm`` (CUDA's fp32 list has), so a
norm fed a 16-bit residual saves a 16-bit input there, which the estimator (CUDA's policy for the norms under mixed
precision) does not model; the block inputs are the same on both devices.
"""

from __future__ import annotations

import pytest

from flopscalc.flops import Recompute
from flopscalc.memory import Device, MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.model import ModelConfig

torch = pytest.importorskip("torch")

SHAPES = [  # (config, micro-batch, sequence)
    (ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=512), 2, 32),
    (ModelConfig(n_layer=3, n_head=8, n_embd=256, block_size=128, vocab_size=2000, tie_embeddings=False), 4, 64),
]
# (weights cast to bf16, autocast on, setup fields): PyTorch AMP, 16-bit weights via ZeRO or via offload, pure bf16
WEIGHTS = {
    "amp": (False, True, {"precision": MemoryPrecision.bf16_mixed}),
    "zero2": (True, True, {"precision": MemoryPrecision.bf16_mixed, "zero_stage": 2}),
    "offload": (True, True, {"precision": MemoryPrecision.bf16_mixed, "offload_optimizer": True}),
    "pure": (True, False, {"precision": MemoryPrecision.bf16_pure}),
}


def kept_by_checkpoint(cfg, batch, seq, *, bf16_weights, autocast, monkeypatch) -> int:
    """Bytes of the distinct storages non-reentrant ``checkpoint`` keeps alive (its tensor inputs) in one forward +
    backward of the reference module under full recomputation, on CPU."""
    from torch.utils.checkpoint import checkpoint as real_checkpoint

    import flopscalc.train.model as ref

    kept = {}

    def checkpoint(fn, *args, **kwargs):
        for a in args:
            if torch.is_tensor(a):
                kept[a.untyped_storage().data_ptr()] = a.untyped_storage().nbytes()
        return real_checkpoint(fn, *args, **kwargs)

    monkeypatch.setattr(ref, "checkpoint", checkpoint)
    torch.manual_seed(0)
    model = ref.GPT(cfg, attention="sdpa", recompute=Recompute.full.value)
    if bf16_weights:
        model = model.to(torch.bfloat16)
    idx = torch.randint(0, cfg.vocab_size, (batch, seq))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        _, loss = model(idx, idx)
    loss.backward()
    return sum(kept.values())


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_checkpointed_block_inputs_follow_the_weights_dtype(shape, weights, monkeypatch):
    cfg, batch, seq = SHAPES[shape]
    bf16_weights, autocast, fields = WEIGHTS[weights]
    measured = kept_by_checkpoint(cfg, batch, seq, bf16_weights=bf16_weights, autocast=autocast,
                                  monkeypatch=monkeypatch)
    setup = TrainingSetup(micro_batch=batch, seq_len=seq, recompute=Recompute.full, device=Device.cpu, **fields)
    assert estimate_memory(cfg, setup).activations.checkpoints == measured
    # the limit case the change is about: per element, 2 bytes with 16-bit weights, 4 with AMP's fp32 weights
    assert measured == cfg.n_layer * batch * seq * cfg.n_embd * (2 if bf16_weights else 4)
