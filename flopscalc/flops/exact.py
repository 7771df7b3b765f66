"""Exact matmul FLOPs per token of a `ModelConfig`, by component, and the constants every count shares.

Forward FLOPs per component (`ForwardFlops`), training FLOPs with backward and recomputation (`TrainingFlops`),
and the tokens of one step. References [1]-[8] are listed in `flopscalc.flops`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum

from ..errors import UsageError
from ..model import ModelConfig, default_train_seq
from ..scalar import scalars

# Backward pass = 2x forward for every matmul: one product for the input gradient, one for the
# weight gradient ([1] sec. 2.1; [2] App. F "the backward pass has twice the FLOPs of the forward pass").
BACKWARD_TO_FORWARD = 2.0
# FLOPs of one multiply-accumulate ([4] Appendix).
FLOPS_PER_MAC = 2.0
# Training FLOPs per parameter per token, C ~= 6 N D: a forward of 2N (one MAC per weight) and a backward
# of twice that ([1] sec. 2.1). The one definition: scaling laws, runs and plots import it from here.
FLOPS_PER_PARAM_TOKEN = FLOPS_PER_MAC * (1 + BACKWARD_TO_FORWARD)


class Recompute(str, Enum):
    """Activation recomputation: what the backward pass re-runs of the forward pass."""

    none = "none"
    selective = "selective"  # the attention core, Q K^T and attention over V ([5] sec. 4.1)
    full = "full"  # every transformer block's forward ([4] eq. 3 "assumes activation recomputation")


@dataclass(frozen=True)
class ForwardFlops:
    """Forward-pass matmul FLOPs per token, by component (FLOP / token)."""

    embedding: float  # token/position lookups: a gather, 0 multiply-adds ([2] counts 2 V d as a one-hot matmul)
    qkv: float  # fused Q, K, V projections
    attn_scores: float  # Q K^T
    attn_values: float  # softmax(...) V
    attn_proj: float  # attention output projection
    mlp: float  # up and down projections (gate too for SwiGLU/GeGLU); MoE: the top-k and shared experts only
    lm_head: float  # final logits
    router: float = 0.0  # MoE: the router's n_embd -> n_expert linear (0 for a dense model)

    @property
    def attention_core(self) -> float:
        """Q K^T and attention over V: the part that grows with context length."""
        return self.attn_scores + self.attn_values

    @property
    def blocks(self) -> float:
        """Everything inside the transformer blocks (what full recomputation re-runs)."""
        return self.qkv + self.attention_core + self.attn_proj + self.mlp + self.router

    @property
    def total(self) -> float:
        return self.embedding + self.blocks + self.lm_head

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TrainingFlops:
    """Training FLOPs per token: forward, backward and recomputation (FLOP / token)."""

    forward: ForwardFlops
    recompute: Recompute

    @property
    def forward_flops_per_token(self) -> float:
        return self.forward.total

    @property
    def backward_flops_per_token(self) -> float:
        return BACKWARD_TO_FORWARD * self.forward.total  # [1] sec. 2.1

    @property
    def recompute_flops_per_token(self) -> float:
        """Extra forward work re-run in the backward pass ([4] eq. 3 for full; [5] sec. 4.1 for selective)."""
        if self.recompute is Recompute.full:
            return self.forward.blocks
        if self.recompute is Recompute.selective:
            return self.forward.attention_core
        return 0.0

    @property
    def model_flops_per_token(self) -> float:
        """Forward + backward, no recomputation: the numerator of MFU ([3] App. B)."""
        return self.forward_flops_per_token + self.backward_flops_per_token

    @property
    def hardware_flops_per_token(self) -> float:
        """Model FLOPs plus recomputation: what the hardware executes (HFU numerator, [3] App. B)."""
        return self.model_flops_per_token + self.recompute_flops_per_token

    def executed_flops_per_token(self, flash: bool) -> float:
        """Hardware FLOPs plus, under FlashAttention, its backward's recomputation of the scores: the HFU numerator
        (issue 11: HFU counts recomputation, flash's backward included)."""
        # Dao 2023 (FlashAttention-2, arXiv:2307.08691) Alg. 2: the backward recomputes S = Q K^T from Q, K
        return self.hardware_flops_per_token + (self.forward.attn_scores if flash else 0.0)


def _check_seq_len(cfg: ModelConfig, seq_len):
    """``seq_len`` checked: 1 or more, and within ``block_size`` when a learned position table sets the limit."""
    if seq_len is None:
        return default_train_seq(cfg)
    if scalars(seq_len):  # a number: no numpy (`flopscalc plan` and `gpus` need none; start-up, issue 18)
        below, above = seq_len < 1, seq_len > cfg.block_size
    else:
        import numpy as np

        below, above = np.any(np.asarray(seq_len) < 1), np.any(np.asarray(seq_len) > cfg.block_size)
    if below:
        raise UsageError(f"sequence length {seq_len} must be at least 1 token")
    if cfg.seq_limited_by_context and above:
        raise UsageError(
            f"sequence length {seq_len} is outside 1..{cfg.block_size} (the model's block_size, the size of its "
            "learned position table); pass a shorter --seq or a model with a longer context"
        )
    return seq_len


def attention_context(seq_len, causal: bool, window: int | None = None):
    """Keys each query attends to, averaged over a sequence of ``seq_len`` tokens.

    Dense kernels and PyTorch's FLOP counter compute the full T x T score matrix (``causal=False``);
    with the causal mask only T (T + 1) / 2 query-key pairs are needed (``causal=True``). With a sliding
    ``window`` W, query i (1-based) attends min(i, W) keys (Mistral 7B, arXiv:2310.06825, sec. 2). The dense
    count ignores the window on purpose: Hugging Face's modules still materialise the full T x T scores and mask,
    and FlopCounterMode counts them all.
    """
    if not causal:
        return seq_len
    if window is None:
        return (seq_len + 1) / 2
    if scalars(seq_len):  # a number: no numpy (start-up, issue 18)
        t, seq = min(seq_len, window), seq_len
    else:
        import numpy as np

        t, seq = np.minimum(seq_len, window), np.asarray(seq_len)
    # sum_{i=1}^{T} min(i, W) = T (T + 1) / 2 for T <= W, else W (W + 1) / 2 + (T - W) W; per query: / T
    out = (t * (t + 1) / 2 + (seq - t) * window) / seq
    return out if scalars(out) or out.ndim else float(out)


def forward_flops_per_token(cfg: ModelConfig, seq_len=None, *, causal: bool = False) -> ForwardFlops:
    """Forward matmul FLOPs per token of ``cfg`` on sequences of ``seq_len`` tokens, by component.

    Parameters
    ----------
    cfg : ModelConfig
    seq_len : int or array, optional
        Tokens per sequence (default: `model.default_train_seq`, the pretraining length, else ``cfg.block_size``).
    causal : bool
        Count only the unmasked query-key pairs of the attention core.

    Each term is 2 x (multiply-accumulates per token) ([4] Appendix, per layer:
    QKV 6Bsh^2, attention matrix 2Bs^2h, over values 2Bs^2h, projection 2Bsh^2, FFN 16Bsh^2; logits 2BshV).
    """
    seq_len = _check_seq_len(cfg, seq_len)
    L, d, f, V = cfg.n_layer, cfg.n_embd, cfg.n_inner, cfg.vocab_size
    d_attn = cfg.n_head * cfg.head_dim
    ctx = attention_context(seq_len, causal, cfg.attn_window)  # dense (causal=False): the full T x T
    # [4] App.'s terms at each block's own widths (GQA, gated MLPs, experts: docs/families/); GPT-2's block is the case
    # d_kv = d_attn = d, two MLP matrices, no router, where each term is [4]'s per-layer count
    k = cfg.mlp.n_matrices
    if cfg.is_moe:  # routed: only the top-k experts of each token run ([6] sec. 2.1); shared experts always
        mlp_macs = k * d * (cfg.top_k * cfg.expert_inner + cfg.n_shared_expert * cfg.shared_expert_inner)
        mlp_macs += d if cfg.shared_expert_gate else 0  # Qwen2-MoE's shared-expert gate, d -> 1
    else:
        mlp_macs = k * d * f
    return ForwardFlops(
        embedding=0.0,
        qkv=FLOPS_PER_MAC * L * d * (d_attn + 2 * cfg.d_kv),  # [4] App. 6Bsh^2; K, V to K hd each ([7] sec. 2.2)
        attn_scores=FLOPS_PER_MAC * L * ctx * d_attn,  # [4] App. 2Bs^2h: every query head scores, GQA saves none
        attn_values=FLOPS_PER_MAC * L * ctx * d_attn,  # [4] App. 2Bs^2h: the weighted sum of values, likewise
        attn_proj=FLOPS_PER_MAC * L * d_attn * d,  # [4] App. 2Bsh^2: H hd -> d
        mlp=FLOPS_PER_MAC * L * mlp_macs,  # [4] App. 16Bsh^2 (2 matrices, f = 4h); gated: 3 ([8] eq. 6)
        lm_head=FLOPS_PER_MAC * d * V,  # [4] App.: 2BshV
        router=FLOPS_PER_MAC * L * d * cfg.n_expert,  # d -> n_expert logits for every token ([6] sec. 2.1)
    )


def training_flops_per_token(
    cfg: ModelConfig, seq_len=None, *, recompute: Recompute | str = Recompute.none, causal: bool = False
) -> TrainingFlops:
    """Training FLOPs per token (forward, backward, recomputation) of ``cfg``; see `TrainingFlops`."""
    return TrainingFlops(forward_flops_per_token(cfg, seq_len, causal=causal), Recompute(recompute))


def tokens_per_step(micro_batch, seq_len, grad_accum=1, n_gpus=1):
    """Tokens in one optimizer step: micro-batch x sequence x accumulation steps x data-parallel GPUs."""
    return micro_batch * seq_len * grad_accum * n_gpus
