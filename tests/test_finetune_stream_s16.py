"""Fine-tuning time prices the residual stream at the width the fine-tuning memory engine counts it: 16-bit on a
bf16 LoRA base (and QLoRA with --bf16-adapters, qlora.py's bf16 model), fp32 after peft's QLoRA upcast (review of
stop 16: LoRA was priced with PyTorch AMP's fp32 stream, 3-5% slow)."""

from __future__ import annotations

import pytest

from flopscalc.finetune.activations import lora_activation_bytes
from flopscalc.finetune.memory import FinetuneSetup
from flopscalc.model import get_preset
from flopscalc.perf.finetune_ops import finetune_step_ops

STREAM_CASTS = ("norm 1 output cast to 16-bit", "residual grad cast to 16-bit (2)")


@pytest.mark.parametrize("kw, fp32_stream", [({"method": "lora"}, False), ({"method": "qlora"}, True),
                                             ({"method": "qlora", "bf16_adapters": True}, False)])
def test_stream_casts_follow_the_memory_engines_residual_width(kw, fp32_stream):
    cfg = get_preset("llama-3.1-8b")
    setup = FinetuneSetup(micro_batch=1, seq_len=1024, **kw)
    names = {o.name for o in finetune_step_ops(cfg, setup)}
    assert all((c in names) == fp32_stream for c in STREAM_CASTS)
    # the memory engine's saved residual-stream checkpoints under full recomputation: 4 or 2 bytes per element
    full = FinetuneSetup(micro_batch=1, seq_len=1024, recompute="full", **kw)
    per_element = lora_activation_bytes(cfg, full).checkpoints / (cfg.n_layer * 1024 * cfg.n_embd)
    assert per_element == pytest.approx(4 if fp32_stream else 2)
