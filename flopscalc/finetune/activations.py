"""Activations a LoRA / QLoRA step saves for backward, and which tensors need a gradient at all.

Autograd records an operation only when one of its inputs requires a gradient, and a recorded operation saves
only what the gradients it must produce need (PyTorch's generated autograd: ``mm`` saves ``mat2`` for the input
gradient, ``self`` for the weight gradient). With the base frozen:

- a frozen linear saves nothing but its weight (a parameter, not an activation); an adapter's ``lora_A`` saves its
  input, ``lora_B`` the r-wide intermediate (Hu et al. 2021, eq. 3: h = W0 x + B A x);
- the frozen token embedding records nothing (no ids saved); the frozen LM head saves no input;
- a norm with a frozen gain saves its input and statistics only (transformers' RMSNorm computes in fp32 and saves
  the fp32 input and rsqrt; the normalised tensor is kept only for the gain's gradient);
- in the first block the residual stream does not require a gradient yet: everything before the first adapter
  records nothing, and after it only what depends on an adapter's output (`LayerFlow`);
- SwiGLU silu(g) * u saves g and u when g needs a gradient and silu(g) when u does (Shazeer 2020, eq. 6).

Under bf16 autocast peft casts each adapter's input to the adapter's fp32 (``_cast_input_dtype``) and autocast
casts it back to bf16 for ``lora_A``: every adapted linear saves its own bf16 copy of its input. In fp32 the
adapters of q, k and v share one saved input (the norm's output), as gate and up do.

With gradient checkpointing (transformers: one ``checkpoint`` per decoder layer) each layer keeps its input, and
the backward re-runs one layer at a time: its activations are counted once on top (the recompute peak).
Checked against saved-tensor bytes of peft-wrapped transformers models in fp32 on CPU (tests/test_finetune_peft.py).
Symbols: T = b s tokens, d width, f MLP width, r rank.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..flops import Recompute
from ..memory.activations import loss_saved_bytes
from ..memory.precision import MemoryPrecision
from ..memory.settings import FP32_BYTES, HALF_BYTES, TrainingSetup
from ..model import ModelConfig, Norm, Position


@dataclass(frozen=True)
class LayerFlow:
    """What needs a gradient inside one block, given whether its input (the residual stream) does."""

    stream_in: bool
    q: bool
    k: bool
    v: bool
    attention: bool  # the attention core's inputs (any of q, k, v)
    stream_mid: bool  # after the attention residual add
    gate: bool
    up: bool
    stream_out: bool


def layer_flow(targets: tuple[str, ...], stream_in: bool, gated: bool = True) -> LayerFlow:
    """Which tensors of one block need a gradient (an adapter's output always does)."""
    t = set(targets)
    q, k, v = (stream_in or x in t for x in ("q", "k", "v"))
    attention = q or k or v
    mid = stream_in or attention or "o" in t
    up = mid or "up" in t
    gate = (mid or "gate" in t) if gated else up
    out = mid or gate or up or "down" in t
    return LayerFlow(stream_in, q, k, v, attention, mid, gate, up, out)


def inputs_needing_grad(flow: LayerFlow) -> dict[str, bool]:
    """Whether each block linear's input needs a gradient (its input-gradient matmul runs, ``lora_A`` saves its
    weight for it)."""
    return {"q": flow.stream_in, "k": flow.stream_in, "v": flow.stream_in, "o": flow.attention,
            "gate": flow.stream_mid, "up": flow.stream_mid, "down": flow.gate or flow.up}


@dataclass(frozen=True)
class LoraActivations:
    """Bytes saved for backward in one LoRA step, whole model, by component (bytes)."""

    norms: float  # norm inputs (fp32) and their statistics
    adapter_inputs: float  # what lora_A saves: its input (shared in fp32, a bf16 copy each under autocast)
    adapter_hidden: float  # what lora_B saves: the r-wide intermediate
    attention: float  # RoPE cos/sin, Q, K, V, SDPA output and logsumexp
    mlp: float  # gated-MLP tensors
    checkpoints: float  # layer inputs kept by gradient checkpointing
    loss: float  # fp32 log-probabilities, targets, loss scalar

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _layer(cfg: ModelConfig, flow: LayerFlow, targets: tuple[str, ...], tokens: int, rank: int,
           bf16: bool) -> dict[str, float]:
    """One block's saved bytes, given what needs a gradient."""
    d, f, dq, dkv = cfg.n_embd, cfg.n_inner, cfg.d_attn, cfg.d_kv
    m = HALF_BYTES if bf16 else FP32_BYTES  # matmul outputs: bf16 under autocast
    stats = 1 if cfg.norm is Norm.rmsnorm else 2  # rsqrt, or mean and rstd
    norm = tokens * d * FP32_BYTES + stats * tokens * FP32_BYTES  # transformers' norms save the fp32 input
    t = set(targets)

    def inputs(names: tuple[str, ...], width: int) -> float:
        n = sum(1 for x in names if x in t)
        return tokens * width * m * (n if bf16 else min(n, 1))  # a cast copy each, or one shared storage

    gated = cfg.mlp.n_matrices == 3
    if gated:
        mlp = (2 * flow.gate + flow.up) * tokens * f * m  # silu saves g; the product saves u (g grad) and silu(g)
    else:
        mlp = flow.up * tokens * f * m  # the activation saves its input
    attention = 0.0
    if flow.attention:  # SDPA saves Q, K, V, its output and a fp32 logsumexp per head and token
        attention = tokens * (dq + 2 * dkv) * m + tokens * dq * m + FP32_BYTES * tokens * cfg.n_head
    o_input = 0.0
    if "o" in t:  # lora_A of o: SDPA's output itself in fp32 (same storage when SDPA saved it), a cast under autocast
        o_input = tokens * dq * m if (bf16 or not flow.attention) else 0.0
    return {
        "norms": (norm if flow.stream_in else 0.0) + (norm if flow.stream_mid else 0.0),
        "adapter_inputs": inputs(("q", "k", "v"), d) + o_input + inputs(("gate", "up"), d) + inputs(("down",), f),
        "adapter_hidden": len(targets) * tokens * rank * m,  # lora_A's output, saved by lora_B
        "attention": attention,
        "mlp": mlp,
    }


def lora_activation_bytes(cfg: ModelConfig, setup) -> LoraActivations:
    """Saved activations of one LoRA / QLoRA step (bytes per GPU); ``setup`` is a `FinetuneSetup`."""
    from .memory import Compute, Method

    b, s, L = setup.micro_batch, setup.seq_len, cfg.n_layer
    tokens = b * s
    bf16 = setup.compute is Compute.bf16
    gated = cfg.mlp.n_matrices == 3
    # residual dtype: the embedding's (bf16 LoRA base or qlora.py; fp32 after peft's QLoRA upcast, or an fp32 run)
    r = HALF_BYTES if (bf16 and (setup.method is Method.lora or setup.bf16_adapters)) else FP32_BYTES
    stats = 1 if cfg.norm is Norm.rmsnorm else 2
    final_norm = tokens * cfg.n_embd * FP32_BYTES + stats * tokens * FP32_BYTES
    train = TrainingSetup(micro_batch=b, seq_len=s, device=setup.device,
                          precision=MemoryPrecision.bf16_mixed if bf16 else MemoryPrecision.fp32)
    # transformers' ForCausalLMLoss upcasts the logits (``logits.float()``): fp32 log-probabilities, on CUDA too
    loss = loss_saved_bytes(train, tokens, cfg.vocab_size, upcast_logits=True)
    later = _layer(cfg, layer_flow(setup.targets, True, gated), setup.targets, tokens, setup.rank, bf16)
    if setup.recompute is Recompute.full:
        # enable_input_require_grads: the first layer's input needs a gradient too, so every layer is a "later" one
        per = later
        rope_b = 2 * s * cfg.head_dim * r if cfg.pos is Position.rope else 0.0
        return LoraActivations(norms=per["norms"] + final_norm, adapter_inputs=per["adapter_inputs"],
                               adapter_hidden=per["adapter_hidden"], attention=per["attention"] + rope_b,
                               mlp=per["mlp"], checkpoints=L * tokens * cfg.n_embd * r, loss=loss)
    first_flow = layer_flow(setup.targets, False, gated)
    first = _layer(cfg, first_flow, setup.targets, tokens, setup.rank, bf16)
    totals = {k: first[k] + (L - 1) * later[k] for k in later}
    rope_used = (first_flow.q or first_flow.k) or L > 1  # cos/sin are saved by q * cos once any q needs a gradient
    rope_b = 2 * s * cfg.head_dim * r if (cfg.pos is Position.rope and rope_used) else 0.0
    return LoraActivations(norms=totals["norms"] + final_norm, adapter_inputs=totals["adapter_inputs"],
                           adapter_hidden=totals["adapter_hidden"], attention=totals["attention"] + rope_b,
                           mlp=totals["mlp"], checkpoints=0.0, loss=loss)
