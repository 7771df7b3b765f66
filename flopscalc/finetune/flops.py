"""FLOPs of one fine-tuning token: frozen base, adapters, recomputation, and QLoRA's dequantization bytes.

Full fine-tuning is pre-training's count (`flopscalc.flops.training_flops_per_token`). With a frozen base
(LoRA, QLoRA) every matmul still runs forward, and backward computes only the gradients something needs:

- a frozen linear computes its input gradient (2 d_in d_out per token) when its input needs a gradient, never a
  weight gradient (the 2 x forward of Kaplan et al. 2020, sec. 2.1, drops to 1 x);
- an adapter (Hu et al. 2021, eq. 3) runs A (2 d_in r) and B (2 r d_out) forward; backward computes dB, the
  gradient of the r-wide intermediate, dA, and the gradient of its input when that needs one;
- the attention core computes dQ and dK from the scores and dP and dV from the values product only for the
  inputs that need them (all of them after the first adapter);
- the LM head computes its input gradient only; the frozen embedding nothing.

Which tensors need a gradient is `activations.layer_flow`. The attention core is counted as ``flopscalc.flops``
counts it (full T x T unless ``causal``); FlopCounterMode on the peft model checks the total
(tests/test_finetune_peft.py). QLoRA dequantizes every 4-bit weight to bf16 before each matmul that uses it
(bitsandbytes ``MatMul4Bit``: forward and input gradient; again in the recomputed forward): memory-bound bytes,
not FLOPs (`dequant_bytes_per_token`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..flops import FLOPS_PER_MAC, Recompute, forward_flops_per_token, training_flops_per_token
from ..memory.settings import HALF_BYTES
from ..model import ModelConfig
from .activations import LayerFlow, inputs_needing_grad, layer_flow
from .adapters import Method, Quant, linear_shapes, quantized_bytes


@dataclass(frozen=True)
class FinetuneFlops:
    """FLOPs per token of one fine-tuning step (FLOP / token)."""

    base_forward: float  # every matmul of the frozen (or trained) model
    adapter_forward: float  # A and B of every adapter
    backward: float  # what backward computes (input gradients; weight gradients of trained tensors)
    recompute: float  # the forward re-run by gradient checkpointing

    @property
    def model_flops_per_token(self) -> float:
        return self.base_forward + self.adapter_forward + self.backward

    @property
    def hardware_flops_per_token(self) -> float:
        return self.model_flops_per_token + self.recompute


def _linear_backward(cfg: ModelConfig, flow: LayerFlow, targets: tuple[str, ...], rank: int) -> float:
    """One block's backward matmul MACs per token, frozen linears and adapters (multiply-accumulates)."""
    shapes = linear_shapes(cfg)
    needs_input = inputs_needing_grad(flow)
    macs = 0.0
    for name, (d_in, d_out) in shapes.items():
        if needs_input[name]:
            macs += d_in * d_out  # frozen weight: input gradient only
        if name in targets:
            macs += 2 * rank * d_out + rank * d_in  # dB, d(A x), dA
            if needs_input[name]:
                macs += rank * d_in  # the adapter's share of the input gradient
    return macs


def core_backward_flops_per_token(cfg: ModelConfig, flow: LayerFlow, seq_len, causal: bool) -> float:
    """One block's attention-core backward FLOPs per token: dQ, dK from Q K^T; dP, dV from P V."""
    fwd = forward_flops_per_token(cfg, seq_len, causal=causal)
    scores, values = fwd.attn_scores / cfg.n_layer, fwd.attn_values / cfg.n_layer
    probs = flow.q or flow.k  # softmax output needs a gradient
    return scores * (flow.q + flow.k) + values * (probs + flow.v)


def finetune_flops_per_token(cfg: ModelConfig, setup, *, causal: bool = False) -> FinetuneFlops:
    """FLOPs per token of one fine-tuning step of ``cfg`` under ``setup`` (a `FinetuneSetup`)."""
    s = setup.seq_len
    if setup.method is Method.full:
        t = training_flops_per_token(cfg, s, recompute=setup.recompute, causal=causal)
        return FinetuneFlops(t.forward_flops_per_token, 0.0, t.backward_flops_per_token,
                             t.recompute_flops_per_token)
    fwd = forward_flops_per_token(cfg, s, causal=causal)
    gated = cfg.mlp.n_matrices == 3
    shapes = linear_shapes(cfg)
    adapter_fwd = FLOPS_PER_MAC * cfg.n_layer * sum(setup.rank * (shapes[t][0] + shapes[t][1])
                                                    for t in setup.targets)  # Hu et al. 2021 eq. 3: A, then B
    recompute = setup.recompute is Recompute.full
    # checkpointing with peft: enable_input_require_grads makes the first layer's input need a gradient
    first = layer_flow(setup.targets, recompute, gated)
    later = layer_flow(setup.targets, True, gated)
    per_layer = [first] + [later] * (cfg.n_layer - 1)
    backward = sum(FLOPS_PER_MAC * _linear_backward(cfg, f, setup.targets, setup.rank)
                   + core_backward_flops_per_token(cfg, f, s, causal) for f in per_layer)
    if per_layer[-1].stream_out:
        backward += FLOPS_PER_MAC * cfg.n_embd * cfg.vocab_size  # LM head: input gradient only
    redo = (fwd.blocks + adapter_fwd) if recompute else 0.0  # every block's forward again, adapters included
    return FinetuneFlops(fwd.total, adapter_fwd, backward, redo)


def dequant_bytes_per_token(cfg: ModelConfig, setup) -> float:
    """Bytes QLoRA's dequantization moves per token (memory-bound; bytes / token).

    Each dequantization reads the stored weight (4-bit data and constants) and writes it in bf16; it happens per
    micro-batch for the forward, the input gradient and, with checkpointing, the recomputed forward.
    """
    if setup.method is not Method.qlora:
        return 0.0
    stored, n = quantized_bytes(cfg, Quant(setup.quant), double_quant=setup.double_quant)
    passes = 3 if setup.recompute is Recompute.full else 2  # forward, input gradient (+ recomputed forward)
    return passes * (stored + HALF_BYTES * n) / (setup.micro_batch * setup.seq_len)
