"""The operations of one training step of a GPT-2-style model, each with its FLOPs, bytes and GEMM shape.

Shapes follow nanoGPT's layout (``flopscalc.model``): per block LayerNorm, fused QKV linear, attention core,
output projection, residual add, LayerNorm, MLP up, GELU, MLP down, residual add; then the final LayerNorm,
the LM head and the cross-entropy over the vocabulary. A linear y = x W (x: t x d_in) costs a forward GEMM
(t, d_out, d_in), an input-gradient GEMM (t, d_in, d_out) and a weight-gradient GEMM (d_in, d_out, t)
([1] sec. 2.1: backward = 2 x forward). GEMM FLOPs are 2 m n k ([2] App.); the attention core's FLOPs come
from `flopscalc.flops` (causal pairs when a fused kernel skips masked blocks, the full T x T otherwise).
Memory-bound kernels move the bytes listed at each op: every element read and written once, at the storage
width of the precision (2 bytes in 16-bit modes, 4 in fp32), fp32 where PyTorch's autocast computes in fp32.

References
----------
[1] Kaplan et al. 2020, arXiv:2001.08361, sec. 2.1.
[2] Narayanan et al. 2021, arXiv:2104.04473, Appendix ("A_{m x k} X_{k x n} requires 2mkn FLOPs").
[3] Dao 2023, "FlashAttention-2", arXiv:2307.08691, Algorithm 2 (backward): S = Q K^T is recomputed from
    Q, K and the saved logsumexp, then dV, dP, dQ, dK: five matmuls against the forward's two.
[4] PyTorch autocast op reference (torch.amp docs, "CUDA Ops that can autocast to float32"): layer_norm,
    softmax, log_softmax, nll_loss and cross_entropy run in float32 under autocast.
[5] Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW), Algorithm 2: the update reads
    the parameter, gradient, first and second moments and writes parameter and both moments.
[6] Korthikanti et al. 2022, arXiv:2205.05198, sec. 4.1 (selective recomputation of the attention core).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..flops import Recompute, forward_flops_per_token
from ..memory.settings import FP32_BYTES, HALF_BYTES, MemoryPrecision, Optimizer, TrainingSetup
from ..model import ModelConfig, count_params

# Bytes the optimizer moves per parameter it updates, as (read, write) element widths ([5] for AdamW:
# parameter, gradient, m, v read; parameter, m, v written). Mixed precision keeps fp32 parameters and states.
OPTIMIZER_RW_ELEMENTS = {
    Optimizer.adamw: (4, 3),  # [5] Algorithm 2
    Optimizer.adamw8bit: (4, 3),  # same tensors; the two states are 1 byte each (see _optimizer_bytes)
    Optimizer.sgd: (3, 2),  # parameter, gradient, momentum read; parameter, momentum written
    Optimizer.lion: (3, 2),  # one momentum buffer (Chen et al. 2023, Algorithm 2)
    Optimizer.adafactor: (3, 2),  # factored second moment: vectors only, counted as one state
    Optimizer.none: (0, 0),
}
# Dropout keeps a one-byte mask per element for the backward pass (torch.nn.functional.dropout, bool mask).
DROPOUT_MASK_BYTES = 1
# The one fitted number of the model: measured over predicted tokens/s, median over the fit subset named in
# docs/performance_model.md (the 9 MosaicML A100-80GB rows at sequence 2048 of data/published_throughput.csv,
# priced with this factor at 1.0: median 0.758). It stands for what the roofline sum leaves out (sustained
# clocks below boost, framework and allocator overhead, communication kernels slowing compute). Errors are
# reported on the other rows only; tests/test_perf_validation.py re-derives it from the CSV.
SUSTAINED_FRACTION = 0.76
# Embedding and LM-head weights are read in fp32 under mixed precision ([4]: the master weights are fp32).
MASTER_BYTES = FP32_BYTES


class OpClass(str, Enum):
    gemm = "gemm"
    attention = "attention"
    memory = "memory-bound"
    optimizer = "optimizer"


class Phase(str, Enum):
    forward = "forward"
    backward = "backward"
    recompute = "recompute"
    step = "optimizer step"


@dataclass(frozen=True)
class Op:
    """One kernel (or a few fused ones) of the step, per occurrence; ``count`` occurrences per step per GPU."""

    name: str
    op_class: OpClass
    phase: Phase
    flops: float  # FLOP per occurrence
    bytes_moved: float  # DRAM bytes per occurrence
    count: int  # occurrences per optimizer step on one GPU
    kernels: int = 1  # kernel launches per occurrence
    gemm_shape: tuple[int, int, int, int] | None = None  # (m, n, k, batch) of a GEMM
    flash: bool = False  # a fused attention kernel (priced at the flash efficiency)


@dataclass(frozen=True)
class StepOptions:
    """Implementation choices that change the step's memory traffic, not its FLOPs."""

    fused_loss: bool = False  # one kernel reads the logits once and writes their gradient (llm.c's classifier)
    dropout: bool = False  # dropout on the residual branches (and the attention probabilities without flash)
    # Share of the priced kernel time a real training loop sustains (framework, clocks, overlap interference);
    # FITTED, see SUSTAINED_FRACTION. 1.0 gives the unfitted roofline sum.
    sustained_fraction: float = 0.0  # 0 means "use SUSTAINED_FRACTION"

    @property
    def sustained(self) -> float:
        return self.sustained_fraction or SUSTAINED_FRACTION


def act_bytes(precision: MemoryPrecision) -> int:
    """Storage width of one activation element (bytes): fp32, or 16-bit under autocast or pure bf16."""
    return FP32_BYTES if precision is MemoryPrecision.fp32 else HALF_BYTES


def _linear_ops(name, t, d_in, d_out, a, n, phase_fwd):
    """Forward, input-gradient and weight-gradient GEMMs of one linear applied to t tokens, ``n`` times a step."""
    def gemm(label, phase, m, nn, k):
        moved = a * (m * k + k * nn + m * nn)  # read A and B, write C once (NVIDIA GEMM guide ch. 2)
        return Op(f"{name} {label}", OpClass.gemm, phase, 2.0 * m * nn * k, moved, n, 1, (m, nn, k, 1))

    ops = [gemm("fwd", phase_fwd, t, d_out, d_in)]
    if phase_fwd is Phase.forward:
        ops += [gemm("dgrad", Phase.backward, t, d_in, d_out), gemm("wgrad", Phase.backward, d_in, d_out, t)]
    return ops


def _attention_ops(cfg, setup, seq, batch, a, n, phase, options, *, backward):
    """Attention core of one layer for ``batch`` sequences: fused (flash) or spelled out (math path)."""
    heads, hd = cfg.n_head, cfg.head_dim
    t, d_attn = batch * seq, cfg.n_head * cfg.head_dim
    fwd = forward_flops_per_token(cfg, seq, causal=setup.flash)  # flash kernels skip fully masked blocks
    scores = fwd.attn_scores / cfg.n_layer * t  # Q K^T of one layer (FLOP)
    values = fwd.attn_values / cfg.n_layer * t  # P V of one layer (FLOP)
    if setup.flash:
        if not backward:
            return [Op("flash attention fwd", OpClass.attention, phase, scores + values, 4 * a * t * d_attn, n,
                       flash=True)]
        # [3] Alg. 2: recompute S (one fwd matmul), then 4 gradient matmuls = 2x forward
        flops = 2.0 * (scores + values) + scores
        return [Op("flash attention bwd", OpClass.attention, Phase.backward, flops, 8 * a * t * d_attn, n,
                   flash=True)]
    tt = batch * heads * seq * seq  # elements of the score matrix
    drop = options.dropout
    if not backward:
        ops = [
            Op("attn QK^T", OpClass.attention, phase, scores, a * (2 * t * d_attn + tt), n, 1,
               (seq, seq, hd, batch * heads)),
            Op("attn mask+softmax", OpClass.memory, phase, 0.0, a * 4 * tt, n, 2),  # masked_fill, softmax
            Op("attn PV", OpClass.attention, phase, values, a * (tt + 2 * t * d_attn), n, 1,
               (seq, hd, seq, batch * heads)),
        ]
        if drop:
            ops.append(Op("attn dropout", OpClass.memory, phase, 0.0, (2 * a + DROPOUT_MASK_BYTES) * tt, n))
        return ops
    ops = [
        Op("attn dP=dO V^T", OpClass.attention, Phase.backward, scores, a * (2 * t * d_attn + tt), n, 1,
           (seq, seq, hd, batch * heads)),
        Op("attn dV=P^T dO", OpClass.attention, Phase.backward, values, a * (tt + 2 * t * d_attn), n, 1,
           (seq, hd, seq, batch * heads)),
        Op("attn softmax bwd", OpClass.memory, Phase.backward, 0.0, a * 3 * tt, n),
        Op("attn dQ=dS K", OpClass.attention, Phase.backward, scores, a * (tt + 2 * t * d_attn), n, 1,
           (seq, hd, seq, batch * heads)),
        Op("attn dK=dS^T Q", OpClass.attention, Phase.backward, values, a * (tt + 2 * t * d_attn), n, 1,
           (seq, hd, seq, batch * heads)),
    ]
    if drop:
        ops.append(Op("attn dropout bwd", OpClass.memory, Phase.backward, 0.0, (2 * a + DROPOUT_MASK_BYTES) * tt, n))
    return ops


def _block_forward(cfg, setup, seq, batch, a, n, phase, options):
    """One block's forward ops (``n`` = occurrences per step over all layers and micro-batches)."""
    t, d, f, d_attn = batch * seq, cfg.n_embd, cfg.n_inner, cfg.n_head * cfg.head_dim
    ops = [Op("layernorm 1", OpClass.memory, phase, 0.0, 2 * a * t * d, n)]
    ops += _linear_ops("qkv", t, d, 3 * d_attn, a, n, phase)
    ops += _attention_ops(cfg, setup, seq, batch, a, n, phase, options, backward=False)
    ops += _linear_ops("attn proj", t, d_attn, d, a, n, phase)
    ops += [Op("residual add 1", OpClass.memory, phase, 0.0, 3 * a * t * d, n),
            Op("layernorm 2", OpClass.memory, phase, 0.0, 2 * a * t * d, n)]
    ops += _linear_ops("mlp up", t, d, f, a, n, phase)
    ops += [Op("gelu", OpClass.memory, phase, 0.0, 2 * a * t * f, n)]
    ops += _linear_ops("mlp down", t, f, d, a, n, phase)
    ops += [Op("residual add 2", OpClass.memory, phase, 0.0, 3 * a * t * d, n)]
    if options.dropout:
        ops += [Op("dropout (2 per block)", OpClass.memory, phase, 0.0, 2 * (2 * a + DROPOUT_MASK_BYTES) * t * d, n, 2)]
    return ops


def _block_backward_memory(cfg, setup, seq, batch, a, n, options):
    """Memory-bound backward kernels of one block (the GEMMs come with `_linear_ops`)."""
    t, d, f = batch * seq, cfg.n_embd, cfg.n_inner
    ops = [
        Op("gelu bwd", OpClass.memory, Phase.backward, 0.0, 3 * a * t * f, n),  # read x, dy; write dx
        Op("layernorm bwd (2)", OpClass.memory, Phase.backward, 0.0, 2 * 3 * a * t * d, n, 2),
        Op("residual grad adds (2)", OpClass.memory, Phase.backward, 0.0, 2 * 3 * a * t * d, n, 2),
    ]
    if options.dropout:
        ops.append(Op("dropout bwd (2)", OpClass.memory, Phase.backward, 0.0,
                      2 * (2 * a + DROPOUT_MASK_BYTES) * t * d, n, 2))
    return ops


def step_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Every operation of one optimizer step on one GPU, with its count (layers x micro-batches)."""
    options = options or StepOptions()
    seq = setup.seq_len or cfg.block_size
    b, L, acc = setup.micro_batch, cfg.n_layer, setup.grad_accum
    t, d, V = b * seq, cfg.n_embd, cfg.vocab_size
    a = act_bytes(setup.precision)
    w = MASTER_BYTES if setup.precision is not MemoryPrecision.bf16_pure else HALF_BYTES
    per_layer = L * acc  # occurrences of a block op per step
    ops: list[Op] = []
    # ---- forward
    pos = 1 if cfg.pos_embedding else 0
    ops.append(Op("embedding gather", OpClass.memory, Phase.forward, 0.0, (1 + pos) * w * t * d + a * t * d, acc,
                  1 + pos))
    ops += _block_forward(cfg, setup, seq, b, a, per_layer, Phase.forward, options)
    ops.append(Op("final layernorm", OpClass.memory, Phase.forward, 0.0, 2 * a * t * d, acc))
    ops += _linear_ops("lm head", t, d, V, a, acc, Phase.forward)
    # ---- loss: [4] autocast runs cross-entropy in fp32 (cast, log_softmax, nll; backward mirrors it)
    if options.fused_loss:
        ops.append(Op("fused cross-entropy fwd+bwd", OpClass.memory, Phase.forward, 0.0, 2 * a * t * V, acc))
    else:
        loss_fwd = (a + FP32_BYTES) * t * V + 2 * FP32_BYTES * t * V  # cast to fp32; log_softmax read + write
        loss_bwd = 2 * FP32_BYTES * t * V + (FP32_BYTES + a) * t * V  # softmax grad; cast back
        ops += [Op("cross-entropy fwd (fp32)", OpClass.memory, Phase.forward, 0.0, loss_fwd, acc, 3),
                Op("cross-entropy bwd (fp32)", OpClass.memory, Phase.backward, 0.0, loss_bwd, acc, 2)]
    # ---- recomputation: [6] selective re-runs the attention core; full re-runs every block's forward
    if setup.recompute is Recompute.full:
        ops += _block_forward(cfg, setup, seq, b, a, per_layer, Phase.recompute, options)
    elif setup.recompute is Recompute.selective:
        ops += _attention_ops(cfg, setup, seq, b, a, per_layer, Phase.recompute, options, backward=False)
    # ---- backward (block GEMM gradients were added with their forward GEMMs)
    ops += _attention_ops(cfg, setup, seq, b, a, per_layer, Phase.backward, options, backward=True)
    ops += _block_backward_memory(cfg, setup, seq, b, a, per_layer, options)
    ops.append(Op("final layernorm bwd", OpClass.memory, Phase.backward, 0.0, 3 * a * t * d, acc))
    ops.append(Op("embedding scatter-add", OpClass.memory, Phase.backward, 0.0, (1 + pos) * (a + 2 * w) * t * d,
                  acc, 1 + pos))
    ops += _precision_ops(cfg, setup, acc)
    ops += _optimizer_ops(cfg, setup)
    return ops


def _precision_ops(cfg, setup, acc):
    """Autocast's weight casts and the fp32 gradient accumulation of mixed precision (PyTorch AMP)."""
    if not setup.precision.mixed:
        return []
    pc = count_params(cfg)
    n_forwards = acc * (2 if setup.recompute is Recompute.full else 1)
    ops = []
    if not setup.deepspeed_style:  # PyTorch AMP: fp32 weights, cast to 16-bit for every forward
        ops.append(Op("autocast weight casts", OpClass.memory, Phase.forward, 0.0,
                      pc.matmul * (FP32_BYTES + HALF_BYTES), n_forwards, 4 * cfg.n_layer + 1))
    # 16-bit weight gradients accumulated into fp32 .grad: read 16-bit, read-modify-write fp32
    ops.append(Op("grad accumulate to fp32", OpClass.memory, Phase.backward, 0.0,
                  pc.total * (HALF_BYTES + 2 * FP32_BYTES), acc, 4 * cfg.n_layer + 1))
    return ops


def _optimizer_bytes(setup: TrainingSetup) -> float:
    """Bytes the optimizer moves per parameter it updates ([5] for AdamW)."""
    reads, writes = OPTIMIZER_RW_ELEMENTS[setup.optimizer]
    if setup.optimizer is Optimizer.adamw8bit:  # parameter and gradient fp32, states 1 byte each
        return 2 * FP32_BYTES + 2 * 1 + FP32_BYTES + 2 * 1
    width = HALF_BYTES if setup.precision is MemoryPrecision.bf16_pure else FP32_BYTES
    extra = HALF_BYTES if setup.deepspeed_style else 0  # the 16-bit copy of the updated weights
    return (reads + writes) * width + extra


def _optimizer_ops(cfg, setup) -> list[Op]:
    if setup.optimizer is Optimizer.none or setup.offload_optimizer:  # offload: the CPU runs it (offload.py)
        return []
    n = count_params(cfg).total
    shard = n / setup.n_gpus if setup.zero_stage >= 1 else n  # ZeRO >= 1 updates this GPU's partition only
    return [Op(f"{setup.optimizer.value} update", OpClass.optimizer, Phase.step, 0.0,
               _optimizer_bytes(setup) * shard, 1, 1)]
