"""Memory of very deep models: the optimizer-state count must not enumerate every layer's tensors.

Found by running ``flopscalc memory --config cfg.json --gpu h100`` on a config.json with
``num_hidden_layers: 10**30``: the command never returned (it listed 10**30 x 9 tensor shapes). Reference: the
named tensor list `param_shapes` (itself checked against ``model.named_parameters()`` of the reference module and
of ``transformers`` modules in tests/test_memory_measured.py and tests/test_arch_memory.py), summed tensor by
tensor; the depth-independent count must equal it exactly.
"""

from __future__ import annotations

import math
import signal

import pytest

from flopscalc.memory import Optimizer
from flopscalc.memory.settings import (
    ADAM8BIT_BLOCK_ELEMENTS,
    ADAM8BIT_MIN_8BIT_ELEMENTS,
    FP32_BYTES,
    OPTIMIZER_STEP_BYTES,
)
from flopscalc.memory.states import optimizer_state_bytes, param_shapes
from flopscalc.model import ModelConfig, get_preset

CONFIGS = [
    get_preset("gpt2"),
    get_preset("llama-3.1-8b"),
    get_preset("mixtral-8x7b"),
    ModelConfig(n_layer=3, n_head=4, n_embd=64, vocab_size=100, block_size=32, mlp="swiglu", norm="rmsnorm",
                position="rope", bias=False, n_expert=4, top_k=2, n_shared_expert=1, shared_expert_gate=True),
]


def _by_tensor(cfg: ModelConfig, optimizer: Optimizer, state_bytes: int) -> float:
    """Optimizer state summed over every named tensor (the definition, one tensor at a time)."""
    shapes = [s for _, s in param_shapes(cfg)]
    if optimizer is Optimizer.adamw:
        return sum(2 * state_bytes * math.prod(s) + OPTIMIZER_STEP_BYTES for s in shapes)
    if optimizer in (Optimizer.sgd, Optimizer.lion):
        return sum(state_bytes * math.prod(s) for s in shapes)
    if optimizer is Optimizer.adafactor:
        return sum(state_bytes * (s[0] + s[1] if len(s) == 2 else math.prod(s)) + OPTIMIZER_STEP_BYTES
                   for s in shapes)
    total = 0
    for s in shapes:
        k = math.prod(s)
        total += (2 * (k + FP32_BYTES * math.ceil(k / ADAM8BIT_BLOCK_ELEMENTS)) if k >= ADAM8BIT_MIN_8BIT_ELEMENTS
                  else 2 * FP32_BYTES * k)
    return total


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name or "moe")
@pytest.mark.parametrize("optimizer", [o for o in Optimizer if o is not Optimizer.none], ids=str)
def test_optimizer_state_equals_tensor_by_tensor_sum(cfg, optimizer):
    assert optimizer_state_bytes(cfg, optimizer, 4) == _by_tensor(cfg, optimizer, 4)


def _alarm(signum, frame):  # pragma: no cover - only when the bug is back
    raise TimeoutError("optimizer_state_bytes enumerates every layer")


def test_absurd_depth_is_answered_not_enumerated():
    cfg = ModelConfig(n_layer=10**30, n_head=32, n_embd=4096)
    one = ModelConfig(n_layer=1, n_head=32, n_embd=4096)
    two = ModelConfig(n_layer=2, n_head=32, n_embd=4096)
    per_layer = optimizer_state_bytes(two, Optimizer.adamw, 4) - optimizer_state_bytes(one, Optimizer.adamw, 4)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        deep = optimizer_state_bytes(cfg, Optimizer.adamw, 4)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    # linear in depth: one layer's state x (10**30 - 1) above the one-layer model
    assert deep == pytest.approx(optimizer_state_bytes(one, Optimizer.adamw, 4) + (10**30 - 1) * per_layer,
                                 rel=1e-12)


def test_sequence_past_a_rope_models_context_warns_and_within_it_does_not():
    # was: 'flopscalc memory --config llama3-8b.json --seq 100000' printed 100k-token memory without a word that
    # Llama 3 8B's config says max_position_embeddings 8192
    from flopscalc.memory import TrainingSetup, estimate_memory

    cfg = get_preset("llama-3.1-8b")
    past = estimate_memory(cfg, TrainingSetup(seq_len=cfg.block_size + 1))
    within = estimate_memory(cfg, TrainingSetup(seq_len=cfg.block_size))
    assert any(f"{cfg.block_size:,}" in w and "context" in w for w in past.warnings)  # the shared sentence (model.sequence)
    assert not any("context" in w for w in within.warnings)
