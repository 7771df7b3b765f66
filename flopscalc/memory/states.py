"""Model states per GPU: weights, fp32 master weights, 16-bit weight copies, gradients, optimizer state.

Byte counts follow what the code that trains does (PyTorch AMP at ZeRO stage 0; DeepSpeed's layout under
ZeRO stages 1-3 and offload), checked in ``tests/test_memory_measured.py`` against storage sizes of the
reference module after an optimizer step. References [1]-[8] are those of `flopscalc.memory.settings`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from ..model import ModelConfig, Norm, QkNorm, block_params, count_params
from .precision import MemoryPrecision
from .settings import (
    ADAM8BIT_BLOCK_ELEMENTS,
    ADAM8BIT_MIN_8BIT_ELEMENTS,
    FP32_BYTES,
    FSDP_UNSHARDED_UNITS,
    HALF_BYTES,
    OPTIMIZER_STEP_BYTES,
    ZERO_BUCKET_ELEMENTS,
    Optimizer,
    TrainingSetup,
    kept,
)


def param_shapes(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Every parameter tensor of the model, named and shaped as PyTorch holds them.

    GPT-2's layout (``ModelConfig.is_gpt2_layout``, the predicate that makes the trainer build `GPT`): the reference
    module's names and its fused QKV (the test compares this list with ``model.named_parameters()``). Other blocks,
    a GELU/LayerNorm parallel block (Pythia) included: Llama-style names (separate q/k/v/o, gate/up/down, one tensor per expert matrix as Mixtral's
    original release). Linear weights are (out, in) as ``nn.Linear`` stores them; a tied LM head is the token
    embedding. The optimizer-state formulas need the shapes (per-tensor step counters, Adafactor's factored
    moments, 8-bit blocks); their element count equals `count_params`.
    """
    if not cfg.is_gpt2_layout:
        return _general_shapes(cfg)
    d, f, V = cfg.n_embd, cfg.n_inner, cfg.vocab_size
    shapes: list[tuple[str, tuple[int, ...]]] = [("wte.weight", (V, d))]
    if cfg.pos_embedding:
        shapes.append(("wpe.weight", (cfg.block_size, d)))

    def ln(prefix: str) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{prefix}.weight", (d,))] + ([(f"{prefix}.bias", (d,))] if cfg.bias else [])

    def linear(prefix: str, n_in: int, n_out: int) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{prefix}.weight", (n_out, n_in))] + ([(f"{prefix}.bias", (n_out,))] if cfg.bias else [])

    for i in range(cfg.n_layer):
        p = f"h.{i}"
        shapes += ln(f"{p}.ln_1") + linear(f"{p}.attn.c_attn", d, 3 * d) + linear(f"{p}.attn.c_proj", d, d)
        shapes += ln(f"{p}.ln_2") + linear(f"{p}.mlp.c_fc", d, f) + linear(f"{p}.mlp.c_proj", f, d)
    shapes += ln("ln_f")
    if not cfg.tie_embeddings:
        shapes.append(("lm_head.weight", (V, d)))
    return shapes


def _general_shapes(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """`param_shapes` for blocks other than GPT-2's (Llama-style names)."""
    d, V, hd = cfg.n_embd, cfg.vocab_size, cfg.head_dim
    shapes: list[tuple[str, tuple[int, ...]]] = [("embed_tokens.weight", (V, d))]
    if cfg.pos_embedding:
        shapes.append(("wpe.weight", (cfg.block_size, d)))

    def norm(prefix: str, width: int = d) -> list[tuple[str, tuple[int, ...]]]:
        if cfg.norm is Norm.layernorm_plain:
            return []
        bias = cfg.norm is Norm.layernorm and cfg.bias
        return [(f"{prefix}.weight", (width,))] + ([(f"{prefix}.bias", (width,))] if bias else [])

    def linear(prefix: str, n_in: int, n_out: int, bias: bool) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{prefix}.weight", (n_out, n_in))] + ([(f"{prefix}.bias", (n_out,))] if bias else [])

    def mlp(prefix: str, width: int) -> list[tuple[str, tuple[int, ...]]]:
        bias = cfg.has_mlp_bias
        gate = linear(f"{prefix}.gate_proj", d, width, bias) if cfg.mlp.n_matrices == 3 else []
        return gate + linear(f"{prefix}.up_proj", d, width, bias) + linear(f"{prefix}.down_proj", width, d, bias)

    for i in range(cfg.n_layer):
        p = f"layers.{i}"
        shapes += norm(f"{p}.input_layernorm")
        shapes += linear(f"{p}.self_attn.q_proj", d, cfg.d_attn, cfg.has_qkv_bias)
        shapes += linear(f"{p}.self_attn.k_proj", d, cfg.d_kv, cfg.has_qkv_bias)
        shapes += linear(f"{p}.self_attn.v_proj", d, cfg.d_kv, cfg.has_qkv_bias)
        shapes += linear(f"{p}.self_attn.o_proj", cfg.d_attn, d, cfg.has_out_bias)
        if cfg.qk_norm is QkNorm.full:
            shapes += [(f"{p}.self_attn.q_norm.weight", (cfg.d_attn,)), (f"{p}.self_attn.k_norm.weight", (cfg.d_kv,))]
        elif cfg.qk_norm is QkNorm.head:
            shapes += [(f"{p}.self_attn.q_norm.weight", (hd,)), (f"{p}.self_attn.k_norm.weight", (hd,))]
        shapes += norm(f"{p}.post_attention_layernorm")
        if not cfg.is_moe:
            shapes += mlp(f"{p}.mlp", cfg.n_inner)
            continue
        shapes += linear(f"{p}.mlp.gate", d, cfg.n_expert, cfg.router_bias)
        for e in range(cfg.n_expert):
            shapes += mlp(f"{p}.mlp.experts.{e}", cfg.expert_inner)
        for e in range(cfg.n_shared_expert):
            shapes += mlp(f"{p}.mlp.shared_experts.{e}", cfg.shared_expert_inner)
        if cfg.shared_expert_gate:
            shapes.append((f"{p}.mlp.shared_expert_gate.weight", (1, d)))
    shapes += norm("norm")
    if not cfg.tie_embeddings:
        shapes.append(("lm_head.weight", (V, d)))
    return shapes


@functools.lru_cache(maxsize=256)
def _shapes_only(cfg: ModelConfig) -> tuple[tuple[tuple[int, ...], int], ...]:
    """`param_shapes` without names, as (shape, how many tensors have it), cached: the planner asks for the same
    model many times. Every block is alike, so one block's tensors are listed once with multiplicity ``n_layer``:
    the cost does not grow with depth (a config with 10**30 layers is answered, not enumerated)."""
    one = param_shapes(dataclasses.replace(cfg, n_layer=1)) if cfg.n_layer > 1 else param_shapes(cfg)
    layer_prefix = "h.0." if cfg.is_gpt2_layout else "layers.0."
    return tuple((s, cfg.n_layer if name.startswith(layer_prefix) else 1) for name, s in one)


def n_cast_params(cfg: ModelConfig) -> int:
    """Parameters autocast copies to 16 bit: every linear's weight and bias and the LM head.

    Embedding lookups and LayerNorm run in fp32 under autocast (PyTorch AMP op lists), so ``wte``
    (unless it is the tied LM head), ``wpe`` and LayerNorm parameters are not cast. A mixture of experts casts
    every expert (a batch of tokens reaches them all) and its router (``count_params`` puts it in ``mlp``).
    """
    pc = count_params(cfg)
    return pc.attention + pc.mlp + cfg.vocab_size * cfg.n_embd  # linears + LM head (tied or not)


def n_params_per_layer(cfg: ModelConfig) -> int:
    """Parameters of one transformer block (count)."""
    return block_params(cfg)


@functools.lru_cache(maxsize=1024)
def optimizer_state_bytes(cfg: ModelConfig, optimizer: Optimizer, state_bytes: int) -> float:
    """Optimizer state of the whole model, unsharded (bytes).

    Parameters
    ----------
    state_bytes : int
        Bytes per element of full-precision states: 4 with fp32 or master weights, 2 when PyTorch keeps
        states in the parameters' bf16 (pure bf16).
    """
    shapes = _shapes_only(cfg)
    n = sum(math.prod(s) * m for s, m in shapes)
    n_tensors = sum(m for _, m in shapes)
    if optimizer is Optimizer.none:
        return 0.0
    if optimizer is Optimizer.adamw:
        return 2 * state_bytes * n + OPTIMIZER_STEP_BYTES * n_tensors  # m and v ([1] sec. 3.1) + step
    if optimizer in (Optimizer.sgd, Optimizer.lion):
        return state_bytes * n  # one momentum buffer (torch SGD momentum_buffer; [5] Alg. 2)
    if optimizer is Optimizer.adafactor:
        per = [m * ((s[0] + s[1]) if len(s) == 2 else math.prod(s)) for s, m in shapes]  # row + col ([4] sec. 3)
        return state_bytes * sum(per) + OPTIMIZER_STEP_BYTES * n_tensors
    if optimizer is Optimizer.adamw8bit:
        total = 0.0
        for s, m in shapes:
            k = math.prod(s)
            if k >= ADAM8BIT_MIN_8BIT_ELEMENTS:
                blocks = math.ceil(k / ADAM8BIT_BLOCK_ELEMENTS)
                total += m * 2 * (k + FP32_BYTES * blocks)  # two uint8 states + fp32 absmax per block ([3])
            else:
                total += m * 2 * FP32_BYTES * k  # small tensors keep 32-bit states ([3], min_8bit_size)
        return total
    raise AssertionError(optimizer)  # pragma: no cover


def _grad_param_bytes(setup: TrainingSetup) -> tuple[int, int]:
    """Bytes per element of (parameters, gradients) under ``setup``."""
    if setup.precision is MemoryPrecision.bf16_pure or setup.deepspeed_style:
        return HALF_BYTES, HALF_BYTES
    return FP32_BYTES, FP32_BYTES


def head_gradient_bytes(cfg: ModelConfig, setup: TrainingSetup) -> float:
    """Gradient of the LM-head weight (the token embedding when tied), the first one backward allocates (bytes)."""
    _, grad_b = _grad_param_bytes(setup)
    return grad_b * cfg.vocab_size * cfg.n_embd / (setup.n_gpus if setup.zero_stage >= 2 else 1)


@dataclass(frozen=True)
class ModelStates:
    """Model states per GPU (bytes) and what offload moves to CPU memory (bytes)."""

    weights_bytes: float  # parameters as the model holds them
    master_weights_bytes: float  # separate fp32 copy (DeepSpeed-style mixed precision only)
    weight_copies_bytes: float  # 16-bit autocast cache (AMP) or unsharded units (ZeRO-3 / FSDP)
    gradients_bytes: float
    optimizer_state_bytes: float
    comm_buckets_bytes: float  # DDP gradient buckets or ZeRO reduce/gather buckets
    cpu_offload_bytes: float  # optimizer state (+ fp32 master weights and grads) in CPU memory


def model_states(cfg: ModelConfig, setup: TrainingSetup) -> ModelStates:
    """Weights, master weights, weight copies, gradients, optimizer state and buckets per GPU (bytes)."""
    # kept: the planner asks for them at every micro-batch it tries
    return kept(_KEPT, (cfg, setup.n_gpus, setup.precision, setup.zero_stage, setup.optimizer,
                        setup.offload_optimizer), lambda: _states(cfg, setup))


# The fields of `TrainingSetup` that `model_states` reads (`_states`): the same at every micro-batch.
STATE_FIELDS = ("n_gpus", "precision", "zero_stage", "optimizer", "offload_optimizer")
_KEPT: dict = {}  # (model, STATE_FIELDS) -> ModelStates


def _states(cfg: ModelConfig, setup: TrainingSetup) -> ModelStates:
    """`model_states`, reading only `STATE_FIELDS` of ``setup``."""
    n = count_params(cfg).total
    N = setup.n_gpus
    prec = setup.precision
    stage = setup.zero_stage
    if prec is MemoryPrecision.fp32:
        param_b, grad_b, state_b, master_b = FP32_BYTES, FP32_BYTES, FP32_BYTES, 0
    elif prec is MemoryPrecision.bf16_pure:
        param_b, grad_b, state_b, master_b = HALF_BYTES, HALF_BYTES, HALF_BYTES, 0
    elif setup.deepspeed_style:
        # 16-bit params and grads, fp32 master + Adam m, v in the optimizer partition ([1] sec. 3.1; [2] sec. 4.1)
        param_b, grad_b, state_b, master_b = HALF_BYTES, HALF_BYTES, FP32_BYTES, FP32_BYTES
    else:
        # PyTorch AMP: fp32 parameters are the master weights, .grad is fp32, states follow the params
        param_b, grad_b, state_b, master_b = FP32_BYTES, FP32_BYTES, FP32_BYTES, 0

    weights = param_b * n / (N if stage >= 3 else 1)  # ZeRO-3 shards parameters ([1] sec. 5.3)
    gradients = grad_b * n / (N if stage >= 2 else 1)  # ZeRO-2 shards gradients ([1] sec. 5.2)
    optimizer = optimizer_state_bytes(cfg, setup.optimizer, state_b)
    master = master_b * n if setup.optimizer is not Optimizer.none else 0.0
    sharded_opt = (optimizer + master) / (N if stage >= 1 else 1)  # ZeRO-1 shards optimizer states ([1] sec. 5.1)
    cpu = 0.0
    if setup.offload_optimizer:
        cpu = sharded_opt + (FP32_BYTES * n / (N if stage >= 2 else 1) if prec.mixed else 0.0)  # [2] sec. 4.1
        sharded_opt = 0.0
    opt_gpu = sharded_opt * optimizer / (optimizer + master) if optimizer + master else 0.0
    master_gpu = sharded_opt - opt_gpu

    if stage >= 3:
        unit = max(n_params_per_layer(cfg), cfg.vocab_size * cfg.n_embd)
        copies = FSDP_UNSHARDED_UNITS * unit * (HALF_BYTES if prec.mixed else param_b)  # [8] sec. 3.2-3.3
    elif prec.mixed and not setup.deepspeed_style:
        copies = HALF_BYTES * n_cast_params(cfg)  # autocast weight casts: cached in forward, saved for backward
    else:
        copies = 0.0

    if N == 1:
        buckets = 0.0
    elif stage == 0:
        buckets = grad_b * n  # DDP buckets copy every gradient unless gradient_as_bucket_view ([6])
    else:
        buckets = 2 * grad_b * min(ZERO_BUCKET_ELEMENTS, n)  # one reduce + one all-gather bucket ([7])
    return ModelStates(weights, master_gpu, copies, gradients, opt_gpu, buckets, cpu)
