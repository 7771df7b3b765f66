"""The operations of one transformer block, each with its FLOPs, bytes and GEMM shape (see `perf.ops`).

Per block a norm, the fused Q/K/V linear (grouped-query attention [7]), optional q/k norm, RoPE [11], the attention
core (fused [3, 16] or spelled out), the output projection, a residual add, a norm, the MLP (2 linears and GELU, or
the gated MLP [8]; or a router, dispatch, the routed experts, combine and shared experts [9]) and a residual add (a
parallel block [10] adds both branches in one); the backward's memory-bound kernels beside them (norms [12, 13]).
A linear's forward, input-gradient and weight-gradient GEMMs come together ([1] sec. 2.1; 2 m n k FLOPs, [2] App.).

References
----------
One numbering for the step's op modules (`perf.ops`, `perf.op_kinds`, `perf.block_ops`): each lists the
references its code cites.

[1] Kaplan et al. 2020, arXiv:2001.08361, sec. 2.1.
[2] Narayanan et al. 2021, arXiv:2104.04473, Appendix ("A_{m x k} X_{k x n} requires 2mkn FLOPs").
[3] Dao 2023, "FlashAttention-2", arXiv:2307.08691, Algorithm 2 (backward): S = Q K^T is recomputed from
    Q, K and the saved logsumexp, then dV, dP, dQ, dK: five matmuls against the forward's two.
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
[16] Dao-AILab/flash-attention ``csrc/flash_attn/flash_api.cpp``: ``head_size_rounded = round_multiple(head_size,
     32)``, kernels instantiated for head dims 32, 64, ..., 256 (``flash_fwd_hdim{32..256}``); the Triton kernel
     (``flash_attn/flash_attn_triton.py``): ``BLOCK_HEADDIM = max(triton.next_power_of_2(d), 16)``. A head of 112
     (MPT-30B: 7168 / 64) runs in 128-wide tiles either way, its padding computed as zeros.
[20] The residual stream's dtype under autocast with fp32 parameters (PyTorch AMP; the reference trainer, nanoGPT):
     the embedding returns its fp32 weight's dtype and ``x + branch`` promotes fp32 + bf16 to fp32 (PyTorch "Tensor
     Attributes", type promotion: the higher float category and size wins), so the stream stays fp32; autocast's
     CUDA fp32 list holds ``layer_norm`` (fp32 in, fp32 out) and its lower-precision list ``linear``/``addmm``, which
     casts the norm's fp32 output to bf16 (``_to_copy``) before each linear (torch.amp docs, "Autocast Op
     Reference"). In the backward the bf16 input gradient is cast back to fp32 (``ToCopyBackward0``), the norm's
     backward runs in fp32, the stream's two gradients are summed in fp32 (``add``) and cast to bf16 for the branch
     (``add``'s backward to its bf16 operand). Measured per op with a TorchDispatchMode on the reference module
     (tests/test_perf_fp32_residual_s16.py). Whether the stream is fp32: `memory.activations.residual_bytes`.
"""

from __future__ import annotations

from functools import lru_cache

from ..flops import forward_flops_per_token
from ..memory.settings import FP32_BYTES, HALF_BYTES, INDEX_BYTES
from ..model import Mlp, ModelConfig, Norm, Position, QkNorm
from .gemm import misaligned
from .op_kinds import AttentionKernel, Op, OpClass, Phase
from .op_kinds import memory_op as _mem

# Dropout keeps a one-byte mask per element for the backward pass (torch.nn.functional.dropout, bool mask).
DROPOUT_MASK_BYTES = 1
# fp32 statistics a norm kernel writes per normalised row ([12]): LayerNorm mean and rstd, RMSNorm rstd.
NORM_STATS = {Norm.layernorm: 2, Norm.layernorm_plain: 2, Norm.rmsnorm: 1}
# Kernels of the eager gated product act(g) * u ([8]): the activation, then the multiply; backward: the two
# gradients of the multiply and the activation's backward.
GATED_FWD_KERNELS, GATED_BWD_KERNELS = 2, 3


def _linear_ops(name, t, d_in, d_out, a, n, phase_fwd, bias=False):
    """Forward, input-gradient and weight-gradient GEMMs of one linear applied to t tokens, ``n`` times a step.

    A bias rides in the forward GEMM's epilogue; its gradient is a reduction of the output gradient over the
    tokens (autograd's addmm backward: ``grad.sum(0)``), read once.
    """
    # every operand's row length is d_in or d_out (the activations are row-major, t rows), in all three GEMMs
    bad = a == HALF_BYTES and misaligned((d_in, d_out), a)

    def gemm(label, phase, m, nn, k):
        moved = a * (m * k + k * nn + m * nn)  # read A and B, write C once (NVIDIA GEMM guide ch. 2)
        return Op(f"{name} {label}", OpClass.gemm, phase, 2.0 * m * nn * k, moved, n, 1, (m, nn, k, 1),
                  misaligned=bad)

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


def _stream_norm(name, norm, rows, elems, a, r, n, phase, *, backward=False):
    """A norm of the residual stream (``r`` bytes per element) feeding 16-bit linears (``a``): `_norm` at the
    stream's width, and where the two differ ([20]: fp32 stream under autocast) the cast of its output to ``a``
    bytes before the linear (read r, write a) and, backward, the cast of the linear's input gradient back to r."""
    if r == a:
        return [_norm(name, norm, rows, elems, a, n, phase, backward=backward)]
    if backward:  # [20] ToCopyBackward0: read the 16-bit gradient, write it in the stream's dtype; then the norm
        return [_mem(f"{name} grad cast to fp32", Phase.backward, (a + r) * elems, n),
                _norm(name, norm, rows, elems, r, n, phase, backward=True)]
    return [_norm(name, norm, rows, elems, r, n, phase),
            _mem(f"{name} output cast to 16-bit", phase, (r + a) * elems, n)]  # [20] autocast's _to_copy


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


def _residual_ops(cfg, t, a, r, n, phase, *, backward):
    """Residual adds: two per block, a parallel block adds both branches at once ([10]). Each reads the stream
    (``r`` bytes per element) and a branch output (``a``) and writes the stream ([20]: fp32 + bf16 promotes to
    fp32); backward, each sums the stream's two gradients (read 2, write 1, at ``r``) and, where the stream is wider
    than the branch, casts the sum to the branch's dtype (read r, write a)."""
    d = cfg.n_embd
    kind = "residual grad adds" if backward else "residual adds"
    ph = Phase.backward if backward else phase
    adds, branches = (1, 2) if cfg.parallel_block else (2, 1)  # x + attn + mlp: one add of two branches
    if not backward:  # [20] read the stream and the branch(es), write the stream
        return [_mem(f"{kind} ({adds})", ph, adds * (2 * r + branches * a) * t * d, n, adds)]
    # the parallel block's gradient is a three-way sum: read 3, write 1
    ops = [_mem(f"{kind} ({adds})", ph, adds * (2 + branches) * r * t * d, n, adds)]
    if r != a:  # [20] add's backward to its 16-bit operand: the fp32 gradient cast to bf16
        ops.append(_mem(f"residual grad cast to 16-bit ({adds})", ph, adds * (r + a) * t * d, n, adds))
    return ops


def _block_forward(cfg, setup, seq, batch, a, n, phase, options, r=None):
    """One block's forward ops (``n`` = occurrences per step over all layers and micro-batches); ``r``: bytes per
    element of the residual stream ([20]; default ``a``)."""
    t, d, d_attn = batch * seq, cfg.n_embd, cfg.d_attn
    r = r or a
    ops = _stream_norm("norm 1", cfg.norm, t, t * d, a, r, n, phase)
    ops += _linear_ops("qkv", t, d, d_attn + 2 * cfg.d_kv, a, n, phase, cfg.has_qkv_bias)  # [7]
    if cfg.qk_norm is not QkNorm.none:
        ops.append(_norm("qk norm", Norm.rmsnorm, _qk_norm_rows(cfg, t), t * (d_attn + cfg.d_kv), a, n, phase))
    if cfg.pos is Position.rope:
        ops.append(_rope(cfg, t, a, n, phase))
    ops += _attention_ops(cfg, setup, seq, batch, a, n, phase, options, backward=False)
    ops += _linear_ops("attn proj", t, d_attn, d, a, n, phase, cfg.has_out_bias)
    ops += _stream_norm("norm 2", cfg.norm, t, t * d, a, r, n, phase)
    ops += _mlp_block(cfg, t, a, n, phase)
    ops += _residual_ops(cfg, t, a, r, n, phase, backward=False)
    if setup.dropout:  # on the residual branches
        ops += [_mem("dropout (2 per block)", phase, 2 * (2 * a + DROPOUT_MASK_BYTES) * t * d, n, 2)]
    return ops


def _block_backward_memory(cfg, setup, seq, batch, a, n, options, r=None):
    """Memory-bound backward kernels of one block (the GEMMs come with `_linear_ops`); ``r`` as `_block_forward`."""
    t, d = batch * seq, cfg.n_embd
    r = r or a
    ops = _mlp_block(cfg, t, a, n, Phase.backward, backward=True)
    ops += (_stream_norm("norm 1", cfg.norm, t, t * d, a, r, n, Phase.backward, backward=True)
            + _stream_norm("norm 2", cfg.norm, t, t * d, a, r, n, Phase.backward, backward=True))
    if cfg.qk_norm is not QkNorm.none:  # RMSNorm on q and k (OLMo 2, Qwen3)
        ops.append(_norm("qk norm", Norm.rmsnorm, _qk_norm_rows(cfg, t), t * (cfg.d_attn + cfg.d_kv), a, n,
                         Phase.backward, backward=True))
    if cfg.pos is Position.rope:  # the rotation's backward rotates the gradients back: the same traffic
        rope = _rope(cfg, t, a, n, Phase.backward)
        ops.append(Op(rope.name + " bwd", rope.op_class, Phase.backward, 0.0, rope.bytes_moved, n, rope.kernels))
    ops += _residual_ops(cfg, t, a, r, n, Phase.backward, backward=True)
    if setup.dropout:
        ops.append(_mem("dropout bwd (2)", Phase.backward, 2 * (2 * a + DROPOUT_MASK_BYTES) * t * d, n, 2))
    return ops
