"""Activations saved for backward by the reference GPT-2 module, per component, and the logits buffers.

Korthikanti et al. 2022 ([K], "Reducing Activation Recomputation in Large Transformer Models",
arXiv:2205.05198, sec. 4, eq. 1) count, per layer at 16 bit with dropout, s b h (34 + 5 a s / h) bytes:
attention 11 s b h + 5 a s^2 b, MLP 19 s b h, LayerNorms 4 s b h. The reference module
(``flopscalc/train/model.py``) differs, and this module counts what it actually saves:

- no dropout: none of [K]'s dropout masks (2 s b h + a s^2 b bytes) or the dropout output;
- under autocast LayerNorm inputs stay fp32 (autocast's CUDA fp32 list hands ``layer_norm`` an fp32 copy, which it
  saves), so they cost 4 bytes per element, matmul inputs 2; a norm run outside autocast on a 16-bit copy of its
  input (MPT's ``low_precision_layernorm``, ``TrainingSetup.low_precision_norm``) saves that 16-bit copy;
- the residual stream has the weights' dtype (embedding and ``add`` follow their inputs): fp32 under PyTorch AMP,
  16-bit with 16-bit weights (pure bf16, and ZeRO 1-3 / optimizer offload: ``TrainingSetup.deepspeed_style``); it
  is saved only as each block's input under full recomputation (`residual_bytes`);
- LayerNorm also saves its mean and rstd (fp32, one per token);
- fused attention (``scaled_dot_product_attention``) saves Q, K, V (views of the QKV output), its
  output and a fp32 logsumexp per head and token, not the s x s scores; the kernels (CPU and CUDA flash)
  lay the output out as (b, s, a, d/a), so ``transpose(1, 2).contiguous()`` copies nothing and the
  output projection's saved input is the same storage;
- math attention saves Q, K, V copies (``matmul`` reshapes non-contiguous heads), the softmax output
  and the boolean causal mask (s^2 bytes); with CUDA autocast softmax runs in fp32 and ``att @ v``
  saves a 16-bit copy as well (4 + 2 bytes per score);
- GELU saves its input (4 s b h elements) and the down projection its output (4 s b h): [K]'s 19 s b h;
- cross-entropy saves the log-probabilities in fp32 (autocast runs it in fp32): 4 b s V bytes, often the
  largest term for small models, plus int64 token ids and targets; a fused cross-entropy kernel
  (``TrainingSetup.fused_loss``: flash-attn's ``CrossEntropyLoss``, llm.c) saves one fp32 log-sum-exp per token
  and the logits it was given, and its backward writes one 16-bit gradient of the logits (llm.c's fused classifier,
  ``TrainingSetup.loss_kernel``, writes it over the logits: no buffer of its own).

Other blocks (`_general_layer`: grouped-query attention, gated MLPs, RMSNorm, RoPE, q/k norm, parallel blocks,
mixtures of experts) are counted for a module that saves what the same operations save in PyTorch:

- RMSNorm as ``F.rms_norm`` with CUDA's fused kernel (``_fused_rms_norm``, the default ``device=cuda``) saves its
  input and one fp32 rstd per token (Zhang & Sennrich 2019, eq. 4: no mean); on a CPU (``device=cpu``) torch 2.13
  runs it under autograd as its composite (upcast, pow, mean, rsqrt, mul, mul), which also saves the normalised
  tensor in fp32, and in pure bf16 the fp32 upcast in place of the bf16 input and an fp32 rstd in place of a bf16
  one (measured, tests/test_train_llama_memory.py); transformers' Python RMSNorm saves like the composite;
- Q with n_head heads, K and V with n_kv_head heads, saved by fused attention with native grouped-query support
  (``enable_gqa``); transformers' ``repeat_kv`` saves K and V expanded to n_head heads;
- RoPE (Su et al. 2021, eq. 34) multiplies by cos and sin, which autograd saves (s x head_dim each, shared by the
  batch and the layers) while the rotated Q and K replace Q and K;
- SwiGLU / GeGLU (Shazeer 2020, eq. 6): the MLP input, the gate pre-activation, its activation, the up projection
  and their product (the down projection's input): d + 4 f per token against GELU's d + 2 f;
- mixture of experts: the router's fp32 probabilities (b s n_expert) and top-k indices; per routed
  (token, expert) pair the gathered input, the expert's own d + 4 f (or 2 f), its output before and after
  weighting (the scatter-add keeps its source), the int64 token indices of the gather and of the weight lookup,
  and its fp32 routing weight; the shared experts as a dense MLP each (as transformers' per-expert loop for
  Mixtral and Qwen2-MoE saves them);
- dropout (``TrainingSetup.dropout``, [K] eq. 1): a 1-byte mask per element of each residual dropout (after
  attention and after the MLP) and of the embedding dropout; with spelled-out attention also the attention-
  probability mask and the dropped probabilities (a s^2 b each); fused kernels regenerate their mask from the RNG
  seed (Dao et al. 2022, sec. 3.1) and save none. Masks are counted in the component they follow (attention core,
  MLP, embedding), as [K] counts them in the attention and MLP blocks.

Symbols: b micro-batch, s sequence, d = n_embd, a = n_head, f = n_inner, V vocabulary, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter

from ..flops import Recompute
from ..model import ModelConfig, Norm, Position, QkNorm, window_cuts
from .precision import MemoryPrecision
from .settings import FP32_BYTES, HALF_BYTES, INDEX_BYTES, MASK_BYTES, Device, LossKernel, TrainingSetup, kept


@dataclass(frozen=True)
class ActivationBreakdown:
    """Bytes saved for backward for one micro-batch, whole model, by component (bytes)."""

    embedding: float  # token ids (int64) and position ids
    layernorm: float  # LayerNorm inputs (as the norm saves them: `_dtypes`) and their mean/rstd
    attention_input: float  # input of the QKV projection
    qkv: float  # Q, K, V
    attention_core: float  # flash: logsumexp; math: softmax output (+ fp32 copy) + causal mask
    attention_proj_input: float  # input of the attention output projection (= the SDPA output with flash)
    mlp: float  # up-projection input, GELU input, down-projection input
    checkpoints: float  # full recompute: each block's input, kept by torch.utils.checkpoint
    final: float  # final LayerNorm input + stats, LM-head input
    loss: float  # log-probabilities (b s V; a fused kernel: one log-sum-exp per token), targets, loss scalar

    @property
    def total(self) -> float:
        return sum(_COMPONENTS(self))  # every field, in order

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COMPONENTS = attrgetter(*(f.name for f in fields(ActivationBreakdown)))


def _dtypes(setup: TrainingSetup) -> tuple[int, int, int, int]:
    """Bytes per element of: norm input, matmul inputs, LayerNorm stats, log-probabilities (the residual stream
    kept under full recomputation is `residual_bytes`)."""
    p = setup.precision
    if p is MemoryPrecision.fp32:
        return FP32_BYTES, FP32_BYTES, FP32_BYTES, FP32_BYTES
    if p.mixed:  # autocast: LN/embedding/loss fp32, matmuls 16-bit; a low-precision norm saves its 16-bit input
        return (HALF_BYTES if setup.low_precision_norm else FP32_BYTES), HALF_BYTES, FP32_BYTES, FP32_BYTES
    # pure bf16: CUDA LayerNorm keeps fp32 statistics (acc type); the CPU kernel returns bf16 ones
    return HALF_BYTES, HALF_BYTES, (FP32_BYTES if setup.device is Device.cuda else HALF_BYTES), HALF_BYTES


def residual_bytes(setup: TrainingSetup) -> int:
    """Bytes per element of the residual stream, which full recomputation keeps at each block's input: the
    weights' dtype (an embedding's output and ``add`` follow their inputs; no autocast list holds them).

    16-bit in pure bf16 and with 16-bit weights under mixed precision (``setup.deepspeed_style``: ZeRO 1-3 or
    optimizer offload; DeepSpeed's bf16/fp16 engine casts the module, FSDP ``MixedPrecision(param_dtype=bf16)``
    runs on 16-bit parameters); fp32 under PyTorch AMP (ZeRO 0, no offload), which keeps fp32 weights. Norm inputs
    are not this: autocast hands ``layer_norm`` an fp32 copy and it saves that (`_dtypes`).
    """
    # torch autocast op lists (CUDA fp32 list holds layer_norm; embedding and add are in none): they follow the weights
    return HALF_BYTES if setup.precision is MemoryPrecision.bf16_pure or setup.deepspeed_style else FP32_BYTES


def activation_bytes(cfg: ModelConfig, setup: TrainingSetup, seq_len: int) -> ActivationBreakdown:
    """Activations the reference module saves for backward, per component (bytes per GPU).

    Parameters
    ----------
    cfg : ModelConfig
    setup : TrainingSetup
        Micro-batch, precision, recomputation and attention kernel.
    seq_len : int
        Tokens per sequence (already checked against ``cfg.block_size``).
    """
    # kept: the planner asks for them under every optimizer and ZeRO stage; the weights' dtype is read only under
    # full recomputation (`residual_bytes`), so elsewhere every ZeRO stage finds the same entry
    sixteen_bit_residual = setup.recompute is Recompute.full and setup.deepspeed_style
    return kept(_KEPT, (cfg, seq_len, setup.micro_batch, setup.precision, setup.recompute, setup.flash, setup.device,
                        setup.dropout, setup.fused_loss, setup.low_precision_norm, sixteen_bit_residual),
                lambda: _activation_bytes(cfg, setup, seq_len))


# The fields of `TrainingSetup` that `activation_bytes` reads (`_activation_bytes`): the same for every optimizer,
# GPU count and accumulation; the ZeRO stage and offload only through the weights' dtype (full recomputation).
ACTIVATION_FIELDS = ("micro_batch", "precision", "recompute", "flash", "device", "dropout", "fused_loss",
                     "low_precision_norm",
                     # these two act only through `TrainingSetup.deepspeed_style` (16-bit weights: `residual_bytes`)
                     "zero_stage", "offload_optimizer")
_KEPT: dict = {}  # (model, sequence, ACTIVATION_FIELDS less ZeRO/offload, 16-bit residual) -> ActivationBreakdown


def _activation_bytes(cfg: ModelConfig, setup: TrainingSetup, seq_len: int) -> ActivationBreakdown:
    """`activation_bytes`, reading only `ACTIVATION_FIELDS` of ``setup``."""
    b, s, d, a, f, V, L = setup.micro_batch, seq_len, cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.vocab_size, cfg.n_layer
    r, m, st, lp = _dtypes(setup)
    tokens = b * s
    n = tokens * d  # one s b h tensor, in elements
    embedding = INDEX_BYTES * tokens + (INDEX_BYTES * s if cfg.pos_embedding else 0)  # idx + arange(T)
    if not _reference_block(cfg):
        return _general(cfg, setup, seq_len, embedding)
    final = n * r + 2 * tokens * st + n * m  # ln_f input + mean/rstd, LM-head input
    loss = _loss_bytes(setup, tokens, V, lp)
    zero = {"layernorm": 0.0, "attention_input": 0.0, "qkv": 0.0, "attention_core": 0.0,
            "attention_proj_input": 0.0, "mlp": 0.0, "checkpoints": 0.0}
    if setup.recompute is Recompute.full:
        per = {**zero, "checkpoints": n * residual_bytes(setup)}  # block input kept ([K] sec. 4: 2 s b h per layer)
    else:
        if setup.recompute is Recompute.selective:
            core = 0.0  # recomputed in backward ([K] sec. 4.1 drops the 5 a s^2 b term)
        elif setup.flash:
            core = FP32_BYTES * b * a * s  # logsumexp (fp32) per head and token; the output is the proj input
            core += window_bias_bytes(cfg, s, m)
        else:
            fp32_softmax = setup.precision.mixed and setup.device is Device.cuda  # CUDA autocast: softmax fp32
            score_b = m + (FP32_BYTES if fp32_softmax else 0)  # saved probabilities (+ 16-bit copy for att @ v)
            core = b * a * s * s * score_b + MASK_BYTES * s * s  # [K] eq. 1: softmax 2 a s^2 b (no dropout)
        per = {
            "layernorm": 2 * (n * r + 2 * tokens * st),  # ln_1, ln_2 inputs + mean/rstd ([K]: 4 s b h)
            "attention_input": n * m,  # QKV projection input ([K]: 2 s b h)
            "qkv": 3 * n * m,  # Q, K, V ([K]: 4 s b h for Q K^T + 2 s b h for V)
            "attention_core": core,
            "attention_proj_input": n * m,  # output projection input ([K]: 2 s b h)
            "mlp": n * m + 2 * tokens * f * m,  # up input, GELU input, down input ([K]: 2 + 8 + 8 s b h)
            "checkpoints": 0.0,
        }
    if setup.dropout:
        per = _with_dropout(cfg, setup, seq_len, per)
        embedding += MASK_BYTES * n  # embedding dropout mask
    layers = {k: L * v for k, v in per.items()}
    return ActivationBreakdown(embedding=embedding, final=final, loss=loss, **layers)


def cuda_autocast_loss(setup: TrainingSetup) -> bool:
    """Whether PyTorch's ``F.cross_entropy`` runs under CUDA autocast (settings [12]): ``log_softmax`` in the
    logits' 16-bit dtype, then ``nll_loss`` on an fp32 copy of its output. CPU autocast runs it whole in fp32."""
    return setup.device is Device.cuda and setup.precision.mixed and not setup.fused_loss


def loss_saved_bytes(setup: TrainingSetup, tokens: int, vocab: int, *, upcast_logits: bool = False) -> float:
    """What the loss saves for backward over ``tokens`` tokens of a ``vocab``-word vocabulary (bytes): `_loss_bytes`
    for callers that count the rest of the activations themselves (fine-tuning). ``upcast_logits``: the loss runs
    on an fp32 copy of the logits, as transformers' ``ForCausalLMLoss`` does (``logits = logits.float()``), so
    CUDA autocast's split of the cross-entropy (settings [12]) does not arise: fp32 log-probabilities are saved."""
    if upcast_logits:
        return _loss_bytes(setup, tokens, vocab, FP32_BYTES, cuda_split=False)
    return _loss_bytes(setup, tokens, vocab, _dtypes(setup)[3])


def _loss_bytes(setup: TrainingSetup, tokens: int, vocab: int, lp: int, *, cuda_split: bool = True) -> float:
    """What the loss saves for backward: PyTorch's cross-entropy its log-probabilities (b s V in ``lp`` bytes; under
    CUDA autocast the 16-bit ones and ``nll_loss``'s fp32 copy), a fused kernel one fp32 log-sum-exp per token
    (flash-attn ``CrossEntropyLoss``: ``save_for_backward(logits, lse, labels)``; the logits are counted in
    `logits_buffer_bytes`); both the int64 targets and the scalar."""
    if setup.fused_loss:
        saved = FP32_BYTES * tokens
    elif cuda_split and cuda_autocast_loss(setup):
        saved = tokens * vocab * (HALF_BYTES + FP32_BYTES)  # settings [12]: log_softmax's bf16 output + its fp32 copy
    else:
        saved = tokens * vocab * lp
    return saved + INDEX_BYTES * tokens + lp


def window_bias_bytes(cfg: ModelConfig, seq_len: int, m: int) -> float:
    """Bytes one layer saves for a sliding window's mask under SDPA (``flash``), without recomputation.

    The trainer gives SDPA the window's banded boolean (T, T) mask (`train.model.window_mask`; ``is_causal`` takes
    no window), which SDPA turns into an additive T x T bias in q's dtype (``m`` bytes: 4 in fp32, 2 in 16-bit)
    and saves for backward, broadcast over the batch and heads: T^2 m per layer when the window cuts (W < T), none
    when it does not (plain causal attention). Measured on CPU: `tests/test_memory_window_measured.py`."""
    if not window_cuts(cfg.attn_window, seq_len):
        return 0.0
    return seq_len * seq_len * m  # torch SDPA: the boolean mask as an additive bias, saved for backward


def _reference_block(cfg: ModelConfig) -> bool:
    """The block of the reference GPT-2 module (flopscalc.train.model), whose saved tensors are measured."""
    return cfg.is_gpt2_layout


def _with_dropout(cfg: ModelConfig, setup: TrainingSetup, seq_len: int, per: dict) -> dict:
    """One layer's saved bytes with dropout's masks added ([K] eq. 1): 2 s b h residual masks, a s^2 b + 2 a s^2 b
    for the attention probabilities when they are spelled out (not with recompute, where they are not kept)."""
    b, s, d = setup.micro_batch, seq_len, cfg.n_embd
    _, m, _, _ = _dtypes(setup)
    per = dict(per)
    if setup.recompute is Recompute.full:
        return per  # the block re-runs, masks included; only its input is kept
    per["attention_core"] += MASK_BYTES * b * s * d  # residual dropout after attention
    per["mlp"] += MASK_BYTES * b * s * d  # residual dropout after the MLP
    if not setup.flash and setup.recompute is Recompute.none:
        per["attention_core"] += b * cfg.n_head * s * s * (MASK_BYTES + m)  # [K]: mask a s^2 b + output 2 a s^2 b
    return per


def _norm_bytes(cfg: ModelConfig, setup: TrainingSetup, tokens: int, width: int, r: int, st: int) -> float:
    """Input and statistics one normalisation over ``width`` saves: LayerNorm mean + rstd, RMSNorm rstd only (the
    CPU's composite RMSNorm as `rms_norm_bytes`)."""
    if cfg.norm is Norm.rmsnorm:
        return rms_norm_bytes(setup, tokens, width, 1, r, st)
    return tokens * width * r + 2 * tokens * st


def _rms_upcast_copy(cfg: ModelConfig, setup: TrainingSetup) -> bool:
    """Each RMSNorm saves its own fp32 upcast of a bf16 input (the CPU composite in pure bf16), not the shared input."""
    return (cfg.norm is Norm.rmsnorm and setup.device is Device.cpu
            and setup.precision is MemoryPrecision.bf16_pure)


def rms_norm_bytes(setup: TrainingSetup, tokens: int, width: int, n_stats: int, r: int, st: int) -> float:
    """Bytes one ``F.rms_norm`` over ``width`` features saves for backward, ``n_stats`` rstd values per token.

    CUDA's fused kernel: the input (``r`` bytes an element) and the rstd (``st``). A CPU under torch 2.13 runs the
    composite (``device=cpu``): the normalised tensor in fp32 as well; in pure bf16 the fp32 upcast of the input in
    place of the bf16 input, and an fp32 rstd (docs/memory.md, "RMSNorm: fused and composite").
    """
    if setup.device is Device.cuda:
        return tokens * width * r + n_stats * tokens * st  # input + rstd (Zhang & Sennrich 2019, eq. 4)
    normalised = tokens * width * FP32_BYTES  # x * rstd, kept for the gain's gradient
    if setup.precision is MemoryPrecision.bf16_pure:
        return tokens * width * FP32_BYTES + normalised + n_stats * tokens * FP32_BYTES  # fp32 upcast, rstd
    return tokens * width * r + normalised + n_stats * tokens * st


def _mlp_bytes(cfg: ModelConfig, tokens: float, width: int, m: int) -> float:
    """One dense MLP's saved hidden tensors (its input not included): GELU 2 f, SwiGLU/GeGLU 4 f per token."""
    return (2 if cfg.mlp.n_matrices == 2 else 4) * tokens * width * m


def _general(cfg: ModelConfig, setup: TrainingSetup, seq_len: int, embedding: float) -> ActivationBreakdown:
    """`activation_bytes` for blocks other than the reference GPT-2 block (see the module docstring)."""
    b, s, d, a, V, L = setup.micro_batch, seq_len, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer
    r, m, st, lp = _dtypes(setup)
    tokens = b * s
    n = tokens * d
    if cfg.pos is Position.rope:
        embedding += 2 * s * cfg.head_dim * m  # cos and sin of each position, shared by the batch and the layers
    final = _norm_bytes(cfg, setup, tokens, d, r, st) + n * m  # final norm, LM-head input
    loss = _loss_bytes(setup, tokens, V, lp)
    zero = {"layernorm": 0.0, "attention_input": 0.0, "qkv": 0.0, "attention_core": 0.0,
            "attention_proj_input": 0.0, "mlp": 0.0, "checkpoints": 0.0}
    if setup.recompute is Recompute.full:
        per = {**zero, "checkpoints": n * residual_bytes(setup)}
    else:
        norms = 2 * _norm_bytes(cfg, setup, tokens, d, r, st)
        if cfg.parallel_block and not _rms_upcast_copy(cfg, setup):
            norms -= n * r  # both norms read the same block input (GPT-NeoX): saved once
        if cfg.qk_norm is QkNorm.full:
            norms += (rms_norm_bytes(setup, tokens, cfg.d_attn, 1, r, st)
                      + rms_norm_bytes(setup, tokens, cfg.d_kv, 1, r, st))  # q/k norms are RMSNorms
        elif cfg.qk_norm is QkNorm.head:  # one rstd per head and token
            norms += rms_norm_bytes(setup, tokens, cfg.d_attn + cfg.d_kv, a + cfg.kv_heads, r, st)
        if setup.recompute is Recompute.selective:
            core = 0.0
        elif setup.flash:
            core = FP32_BYTES * b * a * s  # logsumexp per query head and token
            core += window_bias_bytes(cfg, s, m)
        else:
            fp32_softmax = setup.precision.mixed and setup.device is Device.cuda
            core = b * a * s * s * (m + (FP32_BYTES if fp32_softmax else 0)) + MASK_BYTES * s * s
        if cfg.is_moe:
            k, e = cfg.top_k, cfg.n_expert
            router = tokens * e * FP32_BYTES + tokens * k * INDEX_BYTES  # fp32 probabilities, top-k ids
            pairs = tokens * k  # (token, expert) pairs: gathered input, hidden, output before and after weighting
            experts = pairs * 3 * d * m + _mlp_bytes(cfg, pairs, cfg.expert_inner, m)
            experts += pairs * (2 * INDEX_BYTES + FP32_BYTES)  # gather and weight-lookup indices; pair weight
            shared = cfg.n_shared_expert * _mlp_bytes(cfg, tokens, cfg.shared_expert_inner, m)
            if cfg.shared_expert_gate:
                shared += n * m + tokens * m  # shared output and its sigmoid gate, multiplied together
            mlp = n * m + router + experts + shared
        else:
            mlp = n * m + _mlp_bytes(cfg, tokens, cfg.n_inner, m)
        per = {
            "layernorm": norms,
            "attention_input": n * m,
            "qkv": tokens * (cfg.d_attn + 2 * cfg.d_kv) * m,  # Q (n_head heads), K and V (n_kv_head heads)
            "attention_core": core,
            "attention_proj_input": tokens * cfg.d_attn * m,
            "mlp": mlp,
            "checkpoints": 0.0,
        }
    if setup.dropout:
        per = _with_dropout(cfg, setup, seq_len, per)
        embedding += MASK_BYTES * n
    layers = {key: L * v for key, v in per.items()}
    return ActivationBreakdown(embedding=embedding, final=final, loss=loss, **layers)


def logits_buffer_bytes(cfg: ModelConfig, setup: TrainingSetup, seq_len: int, *,
                        upcast_logits: bool = False) -> tuple[float, float]:
    """Logits held outside autograd's saved tensors, and the loss backward's transients (bytes).

    Returns ``(logits, transient)``: the (b, s, V) logits the forward returns (in the matmul dtype) and,
    at the start of backward, the gradient of the log-probabilities and of the logits (two b s V tensors
    in the loss dtype; under CUDA autocast one, ``nll_loss``'s fp32 gradient, the largest alive at once, settings
    [12]; a fused kernel one in the logits' dtype, llm.c's none: it overwrites the logits, settings [11]). Modelled
    from the op sequence; the GPU benchmark measures the CUDA peak (tests/test_memory_cuda_recorded.py).
    """
    _, m, _, lp = _dtypes(setup)
    elems = setup.micro_batch * seq_len * cfg.vocab_size
    if upcast_logits and not setup.fused_loss:  # transformers' ForCausalLMLoss: the loss on ``logits.float()``
        return elems * m, 2 * elems * FP32_BYTES
    if cuda_autocast_loss(setup):  # settings [12], [13]: nll_loss_backward's fp32 gradient beside the saved loss
        return elems * m, elems * FP32_BYTES
    if setup.fused_loss and setup.loss_kernel is LossKernel.llmc:  # settings [11]: the gradient over the logits
        return elems * m, 0.0
    if setup.fused_loss:  # flash-attn CrossEntropyLoss backward (settings [10]): one gradient in the logits' dtype
        return elems * m, elems * m
    return elems * m, 2 * elems * lp
