"""The operations of one training step of a decoder-only transformer, each with its FLOPs, bytes and GEMM shape.

Every block `flopscalc.model.ModelConfig` describes (GPT-2, Llama-style, Qwen2, Gemma, OLMo, GPT-NeoX, mixtures of
experts), in the layout of its reference implementation: per block a norm, the fused Q/K/V linear (output width
d_attn + 2 d_kv: grouped-query attention [7]), optional q/k norm, RoPE, the attention core, the output projection,
a residual add, a norm, the MLP (2 linears and GELU, or gate/up/down and the gated product [8]; or a router,
dispatch, the routed experts, combine and shared experts [9]) and a residual add (a parallel block [10] adds both
branches in one); then the final norm, the LM head over the model's vocabulary and the cross-entropy.

A linear y = x W (x: t x d_in) costs a forward GEMM (t, d_out, d_in), an input-gradient GEMM (t, d_in, d_out)
and a weight-gradient GEMM (d_in, d_out, t) ([1] sec. 2.1: backward = 2 x forward); a bias is added in the
GEMM's epilogue and its gradient is a separate reduction over the tokens. GEMM FLOPs are 2 m n k ([2] App.);
the attention core's FLOPs come from `flopscalc.flops` (causal pairs when a fused kernel skips masked blocks).
The op FLOPs sum to `flopscalc.flops`'s exact count for every block (tests/test_perf_model.py). Memory-bound
kernels move the bytes listed at each op: every element read and written once, at the storage width of the
precision (2 bytes in 16-bit modes, 4 in fp32), fp32 where the reference implementation computes in fp32.

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
[7] Ainslie et al. 2023, "GQA", arXiv:2305.13245, sec. 2.2; meta-llama/llama ``model.py`` ``repeat_kv`` (also
    torchtitan's and transformers' eager attention): keys and values copied to every query head of their group.
[8] Shazeer 2020, "GLU Variants Improve Transformer", arXiv:2002.05202, eq. 6: (act(x W) * x V) W2.
[9] Jiang et al. 2024, "Mixtral of Experts", arXiv:2401.04088, sec. 2.1 (router x W_g, softmax over the top-k
    logits, weighted sum of the k experts); transformers' ``MixtralSparseMoeBlock``: per expert, the routed
    rows are gathered (index_select), run through the expert, scaled by their weight and ``index_add_``-ed back.
[10] Black et al. 2022, "GPT-NeoX-20B", arXiv:2204.06745, sec. 2.1 (x + Attn(LN1(x)) + FF(LN2(x))).
[11] meta-llama/llama ``model.py`` ``apply_rotary_emb``: q and k cast to fp32, multiplied by the complex
     rotation, cast back (``xq.float()`` ... ``type_as(xq)``); torchtitan's Llama keeps the same function.
[12] PyTorch ``native_layer_norm`` returns (out, mean, rstd); ``_fused_rms_norm`` returns (out, rstd): one
     fp32 statistic per row fewer (Zhang & Sennrich 2019, arXiv:1910.07467: no mean).
[13] PyTorch ``aten/src/ATen/native/cuda/layer_norm_kernel.cu``: the backward launches the dX kernel and, for the
     gain and bias, ``GammaBetaBackwardCUDAKernel(M, N, dY, X, mean, rstd, dg, db)``, which reads dY, X and the
     statistics a second time (NVIDIA/apex PR #1037: a backward that "reads the large input tensors dout and x
     only once" was the fused kernel's speed-up over the two-pass one).
[14] mosaicml/composer ``composer/optim/decoupled_weight_decay.py``, ``DecoupledAdamW.adamw``: a Python loop over
     the parameters, each updated by eager in-place ops (``param.mul_`` for weight decay when it is nonzero,
     ``exp_avg.mul_(beta1).add_``, ``exp_avg_sq.mul_(beta2).addcmul_``, ``exp_avg_sq.sqrt() / ...``, ``.add_(eps)``,
     ``param.addcdiv_``); the optimizer of llm-foundry's MPT yamls (``decoupled_adamw``, ``weight_decay: 0.0``).
[15] PyTorch ``torch.nn.utils.clip_grad_norm_`` (and FSDP's ``clip_grad_norm_``): the norm of each gradient, then
     every gradient ``mul_`` by the clamped coefficient, unconditionally (a test on it would synchronize host and
     device); the MPT yamls' ``gradient_clipping: {clipping_type: norm, clipping_threshold: 1.0}``.
[16] Dao-AILab/flash-attention ``csrc/flash_attn/flash_api.cpp``: ``head_size_rounded = round_multiple(head_size,
     32)``, kernels instantiated for head dims 32, 64, ..., 256 (``flash_fwd_hdim{32..256}``); the Triton kernel
     (``flash_attn/flash_attn_triton.py``): ``BLOCK_HEADDIM = max(triton.next_power_of_2(d), 16)``. A head of 112
     (MPT-30B: 7168 / 64) runs in 128-wide tiles either way, its padding computed as zeros.
[17] Dao-AILab/flash-attention v1.0.7 ``flash_attn/losses/cross_entropy.py`` (``CrossEntropyLoss``: saves the logits
     and one fp32 log-sum-exp per row; ``inplace_backward=False`` by default) and ``csrc/xentropy``: the forward
     reads each row twice (max and sum, then the sum of exponentials), the backward reads it once and writes the
     gradient in the logits' dtype (``at::empty_like(logits)``): 4 passes in 2 kernels. llm.c's fused classifier
     writes its gradient in place in one kernel (3 passes; `LossKernel.llmc`, [19]).
[18] mosaicml/composer ``trainer.py`` (0.16.3) ``_eval_train_metrics``: after each micro-batch's backward, under
     autocast and no_grad, each train metric runs ``torch.nn.CrossEntropyLoss`` on the logits
     (``composer/metrics/nlp.py``); llm-foundry's MPT has two, LanguageCrossEntropy and LanguagePerplexity.
[19] karpathy/llm.c ``llmc/fused_classifier.cuh``, ``fused_classifier_kernel5``: one block per row computes the
     softmax's max and sum in one online pass (``prepare_softmax_blockwide3``), the loss, then reads the row again
     ("same logits read again below, hopefully still in cache") and overwrites it with the gradient: 3 passes over
     the 16-bit logits in one kernel (2 from DRAM where the second read hits L2; the model prices 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from ..flops import Recompute, forward_flops_per_token
from ..memory.settings import (
    FP32_BYTES,
    HALF_BYTES,
    INDEX_BYTES,
    LossKernel,
    MemoryPrecision,
    Optimizer,
    TrainingSetup,
)
from ..model import Mlp, ModelConfig, Norm, Position, QkNorm, count_params, default_train_seq
from ..model.counts import mlp_unit_params

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
# Composer's DecoupledAdamW ([14]) steps one parameter tensor at a time in eager ops (weight decay 0, as the MPT
# yamls set it): exp_avg.mul_ (read + write 2 elements), .add_(grad) (3), exp_avg_sq.mul_ (2), .addcmul_(grad, grad)
# (3), .sqrt() (2), / sqrt(bias_correction2) (2), .add_(eps) (2), param.addcdiv_(exp_avg, denom) (4): 20 fp32
# elements per parameter in 8 kernels, where a fused AdamW moves 7 ([5]) in one.
COMPOSER_ADAMW_RW_ELEMENTS, COMPOSER_ADAMW_KERNELS = 20, 8
# Gradient clipping by global norm ([15]): a norm reads every gradient, then every gradient is multiplied by the
# clamped coefficient (read + write): 3 elements per parameter, 2 kernels. The MPT yamls clip (norm, 1.0).
GRAD_CLIP_RW_ELEMENTS, GRAD_CLIP_KERNELS = 3, 2
# The one fitted number of the model: the share of their priced rate the GEMMs sustain in a real training loop
# (clocks below boost under load, framework and allocator overhead, communication kernels taking SMs), fitted as
# the value at which the median of measured / predicted tokens/s over the fit subset named in
# docs/performance_model.md is 1 (the 9 MosaicML A100-80GB rows at sequence 2048 of
# data/published_throughput.csv: 0.808, by bisection; 0.806 before the compute beside hidden collectives was
# slowed (`perf.parallel` [11]), 0.797 before their loss kernel and train metrics were priced, 2026-11-28).
# Those rows spend 80-95% of their priced time in GEMMs, so the fraction scales the GEMMs only; attention and
# memory-bound kernels keep their sourced rates. (Until 2026-11 it scaled every kernel, 0.76: that also slowed the
# attention kernel, which the long-sequence rows reject.) Errors are reported on the other rows only;
# tests/test_perf_validation.py re-derives it from the CSV.
SUSTAINED_FRACTION = 0.81
# Embedding and LM-head weights are read in fp32 under mixed precision ([4]: the master weights are fp32).
MASTER_BYTES = FP32_BYTES
# fp32 statistics a norm kernel writes per normalised row ([12]): LayerNorm mean and rstd, RMSNorm rstd.
NORM_STATS = {Norm.layernorm: 2, Norm.layernorm_plain: 2, Norm.rmsnorm: 1}
# Kernels of the eager gated product act(g) * u ([8]): the activation, then the multiply; backward: the two
# gradients of the multiply and the activation's backward.
GATED_FWD_KERNELS, GATED_BWD_KERNELS = 2, 3


class AttentionKernel(str, Enum):
    """Which fused attention kernel runs (their rates differ per GPU: `perf.device`)."""

    flash2 = "flash2"  # FlashAttention-2 CUDA kernels: flash-attn 2, PyTorch SDPA's flash backend, cuDNN's
    triton = "triton"  # FlashAttention in Triton (flash_attn_triton.py; llm-foundry's attn_impl: triton)


class OptimizerKernel(str, Enum):
    """How the optimizer step runs: its FLOPs are nil, its bytes per parameter differ."""

    fused = "fused"  # one pass per tensor ([5]): torch AdamW(fused=True), llm.c's kernel
    composer = "composer"  # Composer's eager DecoupledAdamW loop, then clipping by norm ([14], [15]): llm-foundry


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
    head_dim: int | None = None  # a fused attention kernel's head dimension (its tiles: `kernel_head_dim`)


@dataclass(frozen=True)
class StepOptions:
    """Implementation choices that change the step's memory traffic, not its FLOPs. Whether the loss is fused, by
    which kernel, and whether dropout runs are the setup's (``TrainingSetup.fused_loss``, ``.loss_kernel``,
    ``.dropout``: the memory engine reads them there too); these are the choices only the step time depends on."""

    # cross-entropy passes a trainer runs over the logits per micro-batch for its training metrics (fp32 under
    # autocast, no backward) [18]: Composer with llm-foundry's MPT runs 2
    metric_ce_passes: int = 0
    # Share of the GEMMs' priced rate a real training loop sustains (clocks, framework, overlap interference);
    # FITTED, see SUSTAINED_FRACTION. 1.0 gives the unfitted roofline sum.
    sustained_fraction: float = 0.0  # 0 means "use SUSTAINED_FRACTION"
    attention_kernel: AttentionKernel = AttentionKernel.flash2  # the fused kernel when setup.flash
    optimizer_kernel: OptimizerKernel = OptimizerKernel.fused  # how the AdamW step runs

    @property
    def sustained(self) -> float:
        return self.sustained_fraction or SUSTAINED_FRACTION


def act_bytes(precision: MemoryPrecision) -> int:
    """Storage width of one activation element (bytes): fp32, or 16-bit under autocast or pure bf16."""
    return FP32_BYTES if precision is MemoryPrecision.fp32 else HALF_BYTES


def _mem(name, phase, bytes_moved, n, kernels=1):
    return Op(name, OpClass.memory, phase, 0.0, bytes_moved, n, kernels)


def _linear_ops(name, t, d_in, d_out, a, n, phase_fwd, bias=False):
    """Forward, input-gradient and weight-gradient GEMMs of one linear applied to t tokens, ``n`` times a step.

    A bias rides in the forward GEMM's epilogue; its gradient is a reduction of the output gradient over the
    tokens (autograd's addmm backward: ``grad.sum(0)``), read once.
    """
    def gemm(label, phase, m, nn, k):
        moved = a * (m * k + k * nn + m * nn)  # read A and B, write C once (NVIDIA GEMM guide ch. 2)
        return Op(f"{name} {label}", OpClass.gemm, phase, 2.0 * m * nn * k, moved, n, 1, (m, nn, k, 1))

    ops = [gemm("fwd", phase_fwd, t, d_out, d_in)]
    if phase_fwd is Phase.forward:
        ops += [gemm("dgrad", Phase.backward, t, d_in, d_out), gemm("wgrad", Phase.backward, d_in, d_out, t)]
        if bias:
            ops.append(_mem(f"{name} bias grad", Phase.backward, a * t * d_out + FP32_BYTES * d_out, n))
    return ops


def _norm(name, norm, rows, elems, a, n, phase, *, backward=False):
    """A norm of ``rows`` rows (``elems`` elements in all): read x, write y and its fp32 statistics ([12]);
    backward: one kernel reads x, dy and the statistics and writes dx, and a norm with a gain runs a second
    kernel that reads x, dy and the statistics again to reduce the gain (and bias) gradients ([13])."""
    stats = NORM_STATS[norm] * FP32_BYTES * rows
    if backward:
        if norm is Norm.layernorm_plain:  # no gain, no bias: the dx kernel only
            return _mem(f"{name} bwd", Phase.backward, 3 * a * elems + stats, n)
        return _mem(f"{name} bwd", Phase.backward, (3 + 2) * a * elems + 2 * stats, n, 2)  # [13] dx; dgamma, dbeta
    return _mem(name, phase, 2 * a * elems + stats, n)


def _qk_norm_rows(cfg, t):
    """Rows (q rows + k rows) the q/k norm normalises: one per token (OLMo 2, over all heads) or per head (Qwen3)."""
    return 2 * t if cfg.qk_norm is QkNorm.full else t * (cfg.n_head + cfg.kv_heads)


def _rope(cfg, t, a, n, phase):
    """RoPE on q and k ([11]): cast to fp32, complex multiply, cast back; no FLOPs counted (element-wise)."""
    elems = t * (cfg.d_attn + cfg.d_kv)
    if a == FP32_BYTES:  # fp32 storage: the casts are no-ops, one multiply per tensor
        return _mem("rope q,k", phase, 2 * FP32_BYTES * elems, n, 2)
    return _mem("rope q,k (fp32)", phase, (2 * a + 4 * FP32_BYTES) * elems, n, 6)  # [11] cast, mul, cast back


@lru_cache(maxsize=1024)  # a pure function; each step asks for it in its forward, recomputation and backward
def _forward_flops(cfg: ModelConfig, seq: int, causal: bool):
    return forward_flops_per_token(cfg, seq, causal=causal)


def kernel_head_dim(head_dim: int, kernel: AttentionKernel) -> int:
    """The head dimension a fused attention kernel computes at ([16]): FlashAttention-2 rounds it up to a multiple
    of 32, the Triton kernel to a power of two (at least 16); the tiles' extra columns cost time, not model FLOPs
    (`perf.step.op_efficiency` lowers the kernel's efficiency by head_dim / kernel_head_dim)."""
    if kernel is AttentionKernel.triton:
        return max(16, 1 << (head_dim - 1).bit_length())  # [16] next_power_of_2
    return -(-head_dim // 32) * 32  # [16] round_multiple(head_size, 32)


def _attention_ops(cfg, setup, seq, batch, a, n, phase, options, *, backward):
    """Attention core of one layer for ``batch`` sequences: fused (flash) or spelled out (math path).

    Grouped-query keys and values are first copied to every query head ([7] ``repeat_kv``); the core then
    runs as multi-head attention over n_head heads, so its FLOPs are flopscalc.flops's (every query head scores).
    """
    heads, hd = cfg.n_head, cfg.head_dim
    t, d_attn, d_kv = batch * seq, cfg.d_attn, cfg.d_kv
    fwd = _forward_flops(cfg, seq, setup.flash)  # flash kernels skip fully masked blocks
    scores = fwd.attn_scores / cfg.n_layer * t  # Q K^T of one layer (FLOP)
    values = fwd.attn_values / cfg.n_layer * t  # P V of one layer (FLOP)
    ops = []
    if d_kv != d_attn:  # [7] repeat_kv: read K and V, write them per query head; backward sums the copies
        label = "repeat_kv bwd (sum)" if backward else "repeat_kv"
        ops.append(_mem(label, Phase.backward if backward else phase, a * t * (2 * d_kv + 2 * d_attn), n, 2))
    if setup.flash:  # the head dimension sets the kernel's tile width ([16], `kernel_head_dim`)
        if not backward:
            return ops + [Op("flash attention fwd", OpClass.attention, phase, scores + values, 4 * a * t * d_attn,
                             n, flash=True, head_dim=hd)]
        # [3] Alg. 2: recompute S (one fwd matmul), then 4 gradient matmuls = 2x forward
        flops = 2.0 * (scores + values) + scores
        return ops + [Op("flash attention bwd", OpClass.attention, Phase.backward, flops, 8 * a * t * d_attn, n,
                         flash=True, head_dim=hd)]
    tt = batch * heads * seq * seq  # elements of the score matrix
    drop = setup.dropout  # on the attention probabilities: the spelled-out path only
    if not backward:
        ops += [
            Op("attn QK^T", OpClass.attention, phase, scores, a * (2 * t * d_attn + tt), n, 1,
               (seq, seq, hd, batch * heads)),
            _mem("attn mask+softmax", phase, a * 4 * tt, n, 2),  # masked_fill, softmax
            Op("attn PV", OpClass.attention, phase, values, a * (tt + 2 * t * d_attn), n, 1,
               (seq, hd, seq, batch * heads)),
        ]
        if cfg.pos is Position.alibi:  # ALiBi: a bias added to every score (Press et al. 2022, sec. 3)
            ops.append(_mem("alibi bias add", phase, a * 2 * tt, n))
        if drop:
            ops.append(_mem("attn dropout", phase, (2 * a + DROPOUT_MASK_BYTES) * tt, n))
        return ops
    ops += [
        Op("attn dP=dO V^T", OpClass.attention, Phase.backward, scores, a * (2 * t * d_attn + tt), n, 1,
           (seq, seq, hd, batch * heads)),
        Op("attn dV=P^T dO", OpClass.attention, Phase.backward, values, a * (tt + 2 * t * d_attn), n, 1,
           (seq, hd, seq, batch * heads)),
        _mem("attn softmax bwd", Phase.backward, a * 3 * tt, n),
        Op("attn dQ=dS K", OpClass.attention, Phase.backward, scores, a * (tt + 2 * t * d_attn), n, 1,
           (seq, hd, seq, batch * heads)),
        Op("attn dK=dS^T Q", OpClass.attention, Phase.backward, values, a * (tt + 2 * t * d_attn), n, 1,
           (seq, hd, seq, batch * heads)),
    ]
    if drop:
        ops.append(_mem("attn dropout bwd", Phase.backward, (2 * a + DROPOUT_MASK_BYTES) * tt, n))
    return ops


def _dense_mlp(label, cfg, t, width, a, n, phase, *, backward):
    """One MLP of hidden width ``width`` on t rows: GELU's 2 linears, or the gated MLP's 3 ([8])."""
    d, bias = cfg.n_embd, cfg.has_mlp_bias
    if backward:  # the GEMM gradients come with `_linear_ops`; only the activation's backward here
        if cfg.mlp is Mlp.gelu:
            return [_mem(f"{label}gelu bwd", Phase.backward, 3 * a * t * width, n)]  # read x, dy; write dx
        # d(act(g) * u): du = dh act(g), d act = dh u, dg = act'(g) d act: read dh, g, u, act(g); write du, dg...
        return [_mem(f"{label}{cfg.mlp.value} product bwd", Phase.backward, 9 * a * t * width, n, GATED_BWD_KERNELS)]
    if cfg.mlp is Mlp.gelu:
        return (_linear_ops(f"{label}mlp up", t, d, width, a, n, phase, bias)
                + [_mem(f"{label}gelu", phase, 2 * a * t * width, n)]
                + _linear_ops(f"{label}mlp down", t, width, d, a, n, phase, bias))
    return (_linear_ops(f"{label}mlp gate", t, d, width, a, n, phase, bias)
            + _linear_ops(f"{label}mlp up", t, d, width, a, n, phase, bias)
            # [8] act(g) then * u: read g, write act(g); read act(g) and u, write h
            + [_mem(f"{label}{cfg.mlp.value} product", phase, 5 * a * t * width, n, GATED_FWD_KERNELS)]
            + _linear_ops(f"{label}mlp down", t, width, d, a, n, phase, bias))


def expert_rows(n_tokens: int, cfg: ModelConfig) -> list[tuple[int, int]]:
    """(rows, experts with that many rows) when ``n_tokens`` x top_k (token, expert) pairs spread evenly.

    Uniform routing is the assumption (what a load-balancing loss aims for: Fedus et al. 2021, arXiv:2101.03961,
    sec. 2.2); the rows add up to n_tokens x top_k exactly, so the FLOPs equal flopscalc.flops's.
    """
    q, r = divmod(n_tokens * cfg.top_k, cfg.n_expert)
    return [(rows, k) for rows, k in ((q + 1, r), (q, cfg.n_expert - r)) if rows and k]


def _moe_ops(cfg, t, a, n, phase, *, backward):
    """Router, dispatch, routed experts, combine and shared experts of one layer ([9])."""
    d, e, k = cfg.n_embd, cfg.n_expert, cfg.top_k
    pairs = t * k
    probs = FP32_BYTES * t * e  # [9] softmax of the router logits in fp32
    ops = []
    if backward:
        ops.append(_mem("router softmax bwd", Phase.backward, 3 * probs, n))
        # index_add_ backward gathers the output gradient per pair; the weighting's two gradients (expert output,
        # weight); index_select backward scatter-adds the pair gradients into the input gradient (read-modify-write)
        ops.append(_mem("moe combine bwd", Phase.backward, a * (2 + 4) * pairs * d, n, 3 * e))
        ops.append(_mem("moe dispatch bwd (scatter-add)", Phase.backward, 3 * a * pairs * d, n, e))
        for rows, count in expert_rows(t, cfg):
            ops += _dense_mlp("expert ", cfg, rows, cfg.expert_inner, a, n * count, phase, backward=True)
        if cfg.n_shared_expert:
            ops += _dense_mlp("shared ", cfg, t, cfg.n_shared_expert * cfg.shared_expert_inner, a, n, phase,
                              backward=True)
            if cfg.shared_expert_gate:
                ops.append(_mem("shared gate sigmoid*x bwd", Phase.backward, a * (3 * t * d + 2 * t), n, 2))
        return ops
    ops += _linear_ops("router", t, d, e, a, n, phase, cfg.router_bias)
    # softmax in fp32, top-k: read logits, write probabilities; read them, write k weights (fp32) and ids (int64)
    ops.append(_mem("router softmax+top-k", phase, a * t * e + 2 * probs + pairs * (FP32_BYTES + INDEX_BYTES), n, 2))
    ops.append(_mem("moe dispatch (gather)", phase, 2 * a * pairs * d + INDEX_BYTES * pairs, n, e))
    for rows, count in expert_rows(t, cfg):
        ops += _dense_mlp("expert ", cfg, rows, cfg.expert_inner, a, n * count, phase, backward=False)
    # [9] scale each pair by its weight (read, write), index_add_ into the output (read pair, read-modify-write row)
    ops.append(_mem("moe combine (weight, index_add)", phase, 5 * a * pairs * d, n, 2 * e))
    if cfg.n_shared_expert:  # always-on experts, one MLP of their summed width on every token
        ops += _dense_mlp("shared ", cfg, t, cfg.n_shared_expert * cfg.shared_expert_inner, a, n, phase,
                          backward=False)
        if cfg.shared_expert_gate:  # Qwen2-MoE: sigmoid(x W_g) * shared(x), then added to the routed output
            ops += _linear_ops("shared gate", t, d, 1, a, n, phase)
            ops.append(_mem("shared gate sigmoid*x", phase, a * (2 * t * d + 2 * t), n, 2))
        ops.append(_mem("shared + routed add", phase, 3 * a * t * d, n))
    return ops


def _mlp_block(cfg, t, a, n, phase, *, backward=False):
    if cfg.is_moe:
        return _moe_ops(cfg, t, a, n, phase, backward=backward)
    return _dense_mlp("", cfg, t, cfg.n_inner, a, n, phase, backward=backward)


def _residual_ops(cfg, t, a, n, phase, *, backward):
    """Residual adds: two of read 2, write 1 per block; a parallel block adds both branches at once ([10])."""
    d = cfg.n_embd
    kind = "residual grad adds" if backward else "residual adds"
    ph = Phase.backward if backward else phase
    if cfg.parallel_block:  # x + attn + mlp: read three, write one (and its gradient: a three-way sum)
        return [_mem(f"{kind} (parallel, 1)", ph, 4 * a * t * d, n)]
    return [_mem(f"{kind} (2)", ph, 2 * 3 * a * t * d, n, 2)]


def _block_forward(cfg, setup, seq, batch, a, n, phase, options):
    """One block's forward ops (``n`` = occurrences per step over all layers and micro-batches)."""
    t, d, d_attn = batch * seq, cfg.n_embd, cfg.d_attn
    ops = [_norm("norm 1", cfg.norm, t, t * d, a, n, phase)]
    ops += _linear_ops("qkv", t, d, d_attn + 2 * cfg.d_kv, a, n, phase, cfg.has_qkv_bias)  # [7]
    if cfg.qk_norm is not QkNorm.none:
        ops.append(_norm("qk norm", Norm.rmsnorm, _qk_norm_rows(cfg, t), t * (d_attn + cfg.d_kv), a, n, phase))
    if cfg.pos is Position.rope:
        ops.append(_rope(cfg, t, a, n, phase))
    ops += _attention_ops(cfg, setup, seq, batch, a, n, phase, options, backward=False)
    ops += _linear_ops("attn proj", t, d_attn, d, a, n, phase, cfg.has_out_bias)
    ops.append(_norm("norm 2", cfg.norm, t, t * d, a, n, phase))
    ops += _mlp_block(cfg, t, a, n, phase)
    ops += _residual_ops(cfg, t, a, n, phase, backward=False)
    if setup.dropout:  # on the residual branches
        ops += [_mem("dropout (2 per block)", phase, 2 * (2 * a + DROPOUT_MASK_BYTES) * t * d, n, 2)]
    return ops


def _block_backward_memory(cfg, setup, seq, batch, a, n, options):
    """Memory-bound backward kernels of one block (the GEMMs come with `_linear_ops`)."""
    t, d = batch * seq, cfg.n_embd
    ops = _mlp_block(cfg, t, a, n, Phase.backward, backward=True)
    ops += [_norm("norm 1", cfg.norm, t, t * d, a, n, Phase.backward, backward=True),
            _norm("norm 2", cfg.norm, t, t * d, a, n, Phase.backward, backward=True)]
    if cfg.qk_norm is not QkNorm.none:  # RMSNorm on q and k (OLMo 2, Qwen3)
        ops.append(_norm("qk norm", Norm.rmsnorm, _qk_norm_rows(cfg, t), t * (cfg.d_attn + cfg.d_kv), a, n,
                         Phase.backward, backward=True))
    if cfg.pos is Position.rope:  # the rotation's backward rotates the gradients back: the same traffic
        rope = _rope(cfg, t, a, n, Phase.backward)
        ops.append(Op(rope.name + " bwd", rope.op_class, Phase.backward, 0.0, rope.bytes_moved, n, rope.kernels))
    ops += _residual_ops(cfg, t, a, n, Phase.backward, backward=True)
    if setup.dropout:
        ops.append(_mem("dropout bwd (2)", Phase.backward, 2 * (2 * a + DROPOUT_MASK_BYTES) * t * d, n, 2))
    return ops


def step_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Every operation of one optimizer step on one GPU, with its count (layers x micro-batches): the passes of
    every micro-batch (`pass_ops`), then the weight casts, gradient accumulation and update (`update_ops`)."""
    return pass_ops(cfg, setup, options) + update_ops(cfg, setup, options)


# The fields of `TrainingSetup` that `pass_ops` reads (with the model and `PASS_OPTION_FIELDS`): a step's passes are the
# same for every optimizer, ZeRO stage, GPU count and offload (`perf.step` prices them once for all of those).
PASS_FIELDS = ("micro_batch", "seq_len", "grad_accum", "precision", "recompute", "flash", "dropout", "fused_loss",
               "loss_kernel")
# The fields of `StepOptions` that `pass_ops` reads (the others price its ops: `perf.step`, or build `update_ops`).
PASS_OPTION_FIELDS = ("metric_ce_passes",)


def pass_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """The forward, loss, recomputation and backward of every micro-batch of one step (counts: layers x
    micro-batches), in `step_ops`'s order; they read only `PASS_FIELDS` of ``setup``."""
    return forward_ops(cfg, setup, options) + recompute_ops(cfg, setup, options) + backward_ops(cfg, setup, options)


def _pass_shape(cfg: ModelConfig, setup: TrainingSetup):
    """(seq, micro-batch, tokens per micro-batch, activation bytes, embedding weight bytes, position tables,
    occurrences of a block op per step, of a model op per step)."""
    seq = setup.seq_len or default_train_seq(cfg)
    b, acc = setup.micro_batch, setup.grad_accum
    w = MASTER_BYTES if setup.precision is not MemoryPrecision.bf16_pure else HALF_BYTES
    return seq, b, b * seq, act_bytes(setup.precision), w, 1 if cfg.pos_embedding else 0, cfg.n_layer * acc, acc


def forward_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Embedding, blocks (with their GEMMs' gradients), final norm, LM head and the loss, of every micro-batch;
    the same under every recomputation."""
    options = options or StepOptions()
    seq, b, t, a, w, pos, per_layer, acc = _pass_shape(cfg, setup)
    d, V = cfg.n_embd, cfg.vocab_size
    ops = [Op("embedding gather", OpClass.memory, Phase.forward, 0.0, (1 + pos) * w * t * d + a * t * d, acc, 1 + pos)]
    ops += _block_forward(cfg, setup, seq, b, a, per_layer, Phase.forward, options)
    ops.append(_norm("final norm", cfg.norm, t, t * d, a, acc, Phase.forward))
    ops += _linear_ops("lm head", t, d, V, a, acc, Phase.forward)  # tied or untied: the same GEMMs
    # ---- loss: [4] autocast runs cross-entropy in fp32 (cast, log_softmax, nll; backward mirrors it)
    # one fp32 cross-entropy forward: cast to fp32; log_softmax read + write (nll reads a row's target) [4]
    fp32_ce_fwd = (a + FP32_BYTES) * t * V + 2 * FP32_BYTES * t * V
    if setup.fused_loss and setup.loss_kernel is LossKernel.llmc:  # [19]: one kernel, 3 passes, in place
        ops += [_mem("fused classifier (online softmax read)", Phase.forward, a * t * V, acc),
                _mem("fused classifier (read, gradient in place)", Phase.backward, 2 * a * t * V, acc, 0)]
    elif setup.fused_loss:  # [17]: two reads forward; a read and a 16-bit write backward
        ops += [_mem("fused cross-entropy fwd", Phase.forward, 2 * a * t * V, acc),
                _mem("fused cross-entropy bwd", Phase.backward, 2 * a * t * V, acc)]
    else:
        loss_bwd = 2 * FP32_BYTES * t * V + (FP32_BYTES + a) * t * V  # softmax grad; cast back
        ops += [_mem("cross-entropy fwd (fp32)", Phase.forward, fp32_ce_fwd, acc, 3),
                _mem("cross-entropy bwd (fp32)", Phase.backward, loss_bwd, acc, 2)]
    if options.metric_ce_passes:  # [18]: the same fp32 forward per pass, no backward
        ops.append(_mem("train-metric cross-entropy (fp32)", Phase.forward, options.metric_ce_passes * fp32_ce_fwd,
                        acc, 3 * options.metric_ce_passes))
    return ops


def recompute_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Recomputation: [6] selective re-runs the attention core; full re-runs every block's forward."""
    options = options or StepOptions()
    seq, b, _, a, _, _, per_layer, _ = _pass_shape(cfg, setup)
    if setup.recompute is Recompute.full:
        return _block_forward(cfg, setup, seq, b, a, per_layer, Phase.recompute, options)
    if setup.recompute is Recompute.selective:
        return _attention_ops(cfg, setup, seq, b, a, per_layer, Phase.recompute, options, backward=False)
    return []


def backward_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """The backward's attention core and memory-bound kernels (the block GEMMs' gradients come with their forward
    GEMMs, `forward_ops`); the same under every recomputation."""
    options = options or StepOptions()
    seq, b, t, a, w, pos, per_layer, acc = _pass_shape(cfg, setup)
    d = cfg.n_embd
    ops = _attention_ops(cfg, setup, seq, b, a, per_layer, Phase.backward, options, backward=True)
    ops += _block_backward_memory(cfg, setup, seq, b, a, per_layer, options)
    ops.append(_norm("final norm", cfg.norm, t, t * d, a, acc, Phase.backward, backward=True))
    ops.append(Op("embedding scatter-add", OpClass.memory, Phase.backward, 0.0, (1 + pos) * (a + 2 * w) * t * d,
                  acc, 1 + pos))
    return ops


def update_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """What a step adds to its passes: autocast's weight casts, the fp32 gradient accumulation and the optimizer
    update (its kernel from ``options``), in `step_ops`'s order."""
    return _precision_ops(cfg, setup, setup.grad_accum) + _optimizer_ops(cfg, setup, options)


def linears_per_layer(cfg: ModelConfig) -> int:
    """Weight matrices of one block as the reference modules hold them (kernels of per-tensor casts and updates)."""
    attn = 2  # fused qkv, output projection
    if not cfg.is_moe:
        return attn + cfg.mlp.n_matrices
    shared = (cfg.mlp.n_matrices + (1 if cfg.shared_expert_gate else 0)) if cfg.n_shared_expert else 0
    return attn + 1 + cfg.n_expert * cfg.mlp.n_matrices + shared  # router, every expert, shared experts


def _cast_weights(cfg: ModelConfig, setup: TrainingSetup) -> int:
    """Weights autocast casts in one forward: those multiplied, every expert that receives a token included."""
    pc = count_params(cfg)
    if not cfg.is_moe:
        return pc.matmul
    tokens = setup.micro_batch * (setup.seq_len or default_train_seq(cfg))
    used = min(cfg.n_expert, tokens * cfg.top_k)  # uniform routing (`expert_rows`)
    expert_w = mlp_unit_params(cfg, cfg.expert_inner)[0]
    return pc.matmul + cfg.n_layer * (used - cfg.top_k) * expert_w


def _precision_ops(cfg, setup, acc):
    """Autocast's weight casts and the fp32 gradient accumulation of mixed precision (PyTorch AMP)."""
    if not setup.precision.mixed:
        return []
    pc = count_params(cfg)
    n_forwards = acc * (2 if setup.recompute is Recompute.full else 1)
    kernels = linears_per_layer(cfg) * cfg.n_layer + 1
    ops = []
    if not setup.deepspeed_style:  # PyTorch AMP: fp32 weights, cast to 16-bit for every forward
        ops.append(_mem("autocast weight casts", Phase.forward, _cast_weights(cfg, setup) * (FP32_BYTES + HALF_BYTES),
                        n_forwards, kernels))
    # 16-bit weight gradients accumulated into fp32 .grad: read 16-bit, read-modify-write fp32; ZeRO >= 2 keeps
    # only this GPU's gradient partition (Rajbhandari et al. 2020, sec. 5.2, P_os+g), so it accumulates that shard
    grads = pc.total / setup.n_gpus if setup.zero_stage >= 2 else pc.total
    ops.append(_mem("grad accumulate to fp32", Phase.backward, grads * (HALF_BYTES + 2 * FP32_BYTES), acc,
                    kernels))
    return ops


def _optimizer_bytes(setup: TrainingSetup) -> float:
    """Bytes the optimizer moves per parameter it updates ([5] for AdamW)."""
    reads, writes = OPTIMIZER_RW_ELEMENTS[setup.optimizer]
    if setup.optimizer is Optimizer.adamw8bit:  # parameter and gradient fp32, states 1 byte each
        return 2 * FP32_BYTES + 2 * 1 + FP32_BYTES + 2 * 1
    width = HALF_BYTES if setup.precision is MemoryPrecision.bf16_pure else FP32_BYTES
    extra = HALF_BYTES if setup.deepspeed_style else 0  # the 16-bit copy of the updated weights
    return (reads + writes) * width + extra


def _optimizer_ops(cfg, setup, options: StepOptions | None = None) -> list[Op]:
    if setup.optimizer is Optimizer.none or setup.offload_optimizer:  # offload: the CPU runs it (offload.py)
        return []
    n = count_params(cfg).total
    shard = n / setup.n_gpus if setup.zero_stage >= 1 else n  # ZeRO >= 1 updates this GPU's partition only
    if options is not None and options.optimizer_kernel is OptimizerKernel.composer:
        if setup.optimizer is not Optimizer.adamw:
            raise ValueError(f"optimizer kernel 'composer' is Composer's DecoupledAdamW; got {setup.optimizer.value}")
        width = HALF_BYTES if setup.precision is MemoryPrecision.bf16_pure else FP32_BYTES
        return [Op("adamw update (Composer, eager)", OpClass.optimizer, Phase.step, 0.0,  # [14]
                   COMPOSER_ADAMW_RW_ELEMENTS * width * shard, 1, COMPOSER_ADAMW_KERNELS),
                Op("gradient clipping by norm", OpClass.optimizer, Phase.step, 0.0,  # [15]
                   GRAD_CLIP_RW_ELEMENTS * width * shard, 1, GRAD_CLIP_KERNELS)]
    return [Op(f"{setup.optimizer.value} update", OpClass.optimizer, Phase.step, 0.0,
               _optimizer_bytes(setup) * shard, 1, 1)]
