"""Activations saved for backward by the reference GPT-2 module, per component, and the logits buffers.

Korthikanti et al. 2022 ([K], "Reducing Activation Recomputation in Large Transformer Models",
arXiv:2205.05198, sec. 4, eq. 1) count, per layer at 16 bit with dropout, s b h (34 + 5 a s / h) bytes:
attention 11 s b h + 5 a s^2 b, MLP 19 s b h, LayerNorms 4 s b h. The reference module
(``flopscalc/train/model.py``) differs, and this module counts what it actually saves:

- no dropout: none of [K]'s dropout masks (2 s b h + a s^2 b bytes) or the dropout output;
- under autocast the residual stream and LayerNorm inputs stay fp32 (embeddings and LayerNorm are fp32
  ops), so LayerNorm inputs cost 4 bytes per element, matmul inputs 2;
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
  largest term for small models, plus int64 token ids and targets.

Symbols: b micro-batch, s sequence, d = n_embd, a = n_head, f = n_inner, V vocabulary, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..flops import Recompute
from ..model import ModelConfig
from .settings import FP32_BYTES, HALF_BYTES, INDEX_BYTES, MASK_BYTES, Device, MemoryPrecision, TrainingSetup


@dataclass(frozen=True)
class ActivationBreakdown:
    """Bytes saved for backward for one micro-batch, whole model, by component (bytes)."""

    embedding: float  # token ids (int64) and position ids
    layernorm: float  # LayerNorm inputs (the residual stream) and their mean/rstd
    attention_input: float  # input of the QKV projection
    qkv: float  # Q, K, V
    attention_core: float  # flash: logsumexp; math: softmax output (+ fp32 copy) + causal mask
    attention_proj_input: float  # input of the attention output projection (= the SDPA output with flash)
    mlp: float  # up-projection input, GELU input, down-projection input
    checkpoints: float  # full recompute: each block's input, kept by torch.utils.checkpoint
    final: float  # final LayerNorm input + stats, LM-head input
    loss: float  # log-probabilities (b s V), targets, loss scalar

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _dtypes(setup: TrainingSetup) -> tuple[int, int, int, int]:
    """Bytes per element of: residual/LayerNorm input, matmul inputs, LayerNorm stats, log-probabilities."""
    p = setup.precision
    if p is MemoryPrecision.fp32:
        return FP32_BYTES, FP32_BYTES, FP32_BYTES, FP32_BYTES
    if p.mixed:
        return FP32_BYTES, HALF_BYTES, FP32_BYTES, FP32_BYTES  # autocast: LN/embedding/loss fp32, matmuls 16-bit
    # pure bf16: CUDA LayerNorm keeps fp32 statistics (acc type); the CPU kernel returns bf16 ones
    return HALF_BYTES, HALF_BYTES, (FP32_BYTES if setup.device is Device.cuda else HALF_BYTES), HALF_BYTES


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
    b, s, d, a, f, V, L = setup.micro_batch, seq_len, cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.vocab_size, cfg.n_layer
    r, m, st, lp = _dtypes(setup)
    tokens = b * s
    n = tokens * d  # one s b h tensor, in elements
    embedding = INDEX_BYTES * tokens + (INDEX_BYTES * s if cfg.pos_embedding else 0)  # idx + arange(T)
    final = n * r + 2 * tokens * st + n * m  # ln_f input + mean/rstd, LM-head input
    loss = tokens * V * lp + INDEX_BYTES * tokens + lp  # log_softmax output, targets, total_weight scalar
    zero = {"layernorm": 0.0, "attention_input": 0.0, "qkv": 0.0, "attention_core": 0.0,
            "attention_proj_input": 0.0, "mlp": 0.0, "checkpoints": 0.0}
    if setup.recompute is Recompute.full:
        per = {**zero, "checkpoints": n * r}  # block input kept by checkpoint ([K] sec. 4: 2 s b h per layer)
    else:
        if setup.recompute is Recompute.selective:
            core = 0.0  # recomputed in backward ([K] sec. 4.1 drops the 5 a s^2 b term)
        elif setup.flash:
            core = FP32_BYTES * b * a * s  # logsumexp (fp32) per head and token; the output is the proj input
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
    layers = {k: L * v for k, v in per.items()}
    return ActivationBreakdown(embedding=embedding, final=final, loss=loss, **layers)


def logits_buffer_bytes(cfg: ModelConfig, setup: TrainingSetup, seq_len: int) -> tuple[float, float]:
    """Logits held outside autograd's saved tensors, and the loss backward's transients (bytes).

    Returns ``(logits, transient)``: the (b, s, V) logits the forward returns (in the matmul dtype) and,
    at the start of backward, the gradient of the log-probabilities and of the logits (two b s V tensors
    in the loss dtype). Modelled from the op sequence; only the GPU benchmark measures the transient.
    """
    _, m, _, lp = _dtypes(setup)
    elems = setup.micro_batch * seq_len * cfg.vocab_size
    return elems * m, 2 * elems * lp
