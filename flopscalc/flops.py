"""FLOPs of training a GPT-style transformer: exact per-component counts and the published conventions.

One FLOP is one floating-point add or multiply; a multiply-accumulate is 2 FLOPs (Megatron-LM,
Narayanan et al. 2021, Appendix: "A_{m x k} X_{k x n} requires 2mkn FLOPs"). The exact engine counts
matrix-multiply FLOPs, the same operations PyTorch's ``FlopCounterMode`` counts (mm, addmm, bmm,
attention); element-wise work (softmax, GELU, LayerNorm, residual adds, biases) is left out, as every
convention below except Chinchilla's softmax term also leaves it out.

Functions take and return numbers (numpy-broadcastable); `Convention` wraps each paper's formula
so it can be applied to a `ModelConfig`.

References
----------
[1] Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, sec. 2.1, Table 1.
[2] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556, App. F.
[3] Chowdhery et al. 2022, "PaLM", arXiv:2204.02311, App. B.
[4] Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM", arXiv:2104.04473, sec. 5.1 eqs. (2)-(4) and Appendix.
[5] Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
    arXiv:2205.05198, sec. 4.1 (selective recomputation).
[6] Jiang et al. 2024, "Mixtral of Experts", arXiv:2401.04088, sec. 2.1 (router logits x W_g, top-2 experts).
[7] Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
    Checkpoints", arXiv:2305.13245, sec. 2.2 (K and V projections with fewer heads).
[8] Shazeer 2020, "GLU Variants Improve Transformer", arXiv:2002.05202, eq. 6 (three d x f matrices).

Models other than GPT-2's block (grouped-query attention, gated MLPs, mixtures of experts, a head width that is
not n_embd / n_head) are counted with the same terms at their own widths; the papers' closed forms (Kaplan,
Chinchilla, Megatron) assume GPT-2's block, so for other blocks each convention applies its idea to the actual
widths (see `CONVENTIONS` and docs/families/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum

from .errors import UsageError
from .model import ModelConfig, count_params

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


def _check_seq_len(cfg: ModelConfig, seq_len):
    """``seq_len`` checked: 1 or more, and within ``block_size`` when a learned position table sets the limit."""
    if seq_len is None:
        return cfg.block_size
    import numpy as np  # here only: `flopscalc gpus` imports this module and needs no numpy (start-up, issue 18)

    arr = np.asarray(seq_len)
    if np.any(arr < 1):
        raise UsageError(f"sequence length {seq_len} must be at least 1 token")
    if cfg.seq_limited_by_context and np.any(arr > cfg.block_size):
        raise UsageError(
            f"sequence length {seq_len} is outside 1..{cfg.block_size} (the model's block_size, the size of its "
            "learned position table); pass a shorter --seq or a model with a longer context"
        )
    return seq_len


def attention_context(seq_len, causal: bool):
    """Keys each query attends to, averaged over a sequence of ``seq_len`` tokens.

    Dense kernels and PyTorch's FLOP counter compute the full T x T score matrix (``causal=False``);
    with the causal mask only T (T + 1) / 2 query-key pairs are needed (``causal=True``).
    """
    return (seq_len + 1) / 2 if causal else seq_len


def forward_flops_per_token(cfg: ModelConfig, seq_len=None, *, causal: bool = False) -> ForwardFlops:
    """Forward matmul FLOPs per token of ``cfg`` on sequences of ``seq_len`` tokens, by component.

    Parameters
    ----------
    cfg : ModelConfig
    seq_len : int or array, optional
        Tokens per sequence (default: ``cfg.block_size``).
    causal : bool
        Count only the unmasked query-key pairs of the attention core.

    Each term is 2 x (multiply-accumulates per token) ([4] Appendix, per layer:
    QKV 6Bsh^2, attention matrix 2Bs^2h, over values 2Bs^2h, projection 2Bsh^2, FFN 16Bsh^2; logits 2BshV).
    """
    seq_len = _check_seq_len(cfg, seq_len)
    L, d, f, V = cfg.n_layer, cfg.n_embd, cfg.n_inner, cfg.vocab_size
    d_attn = cfg.n_head * cfg.head_dim
    ctx = attention_context(seq_len, causal)
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


# ------------------------------------------------------------------ the papers' formulas, numbers in


def six_nd_flops_per_token(n_params):
    """Training FLOPs per token, C = 6N ([1] sec. 2.1: forward 2N, backward 4N)."""
    return FLOPS_PER_PARAM_TOKEN * n_params  # [1] sec. 2.1


def kaplan_flops_per_token(n_layer, d_model, d_attn, d_ff, n_ctx):
    """Training FLOPs per token by Kaplan's Table 1: 3 x C_forward, C_forward = 2N + 2 n_layer n_ctx d_attn.

    N = 2 d_model n_layer (2 d_attn + d_ff) is non-embedding and ignores biases and LayerNorms; the
    de-embedding (LM head) is left out of the total ([1] Table 1, "Total (Non-Embedding)").
    """
    n = 2 * d_model * n_layer * (2 * d_attn + d_ff)  # [1] Table 1
    c_forward = 2 * n + 2 * n_layer * n_ctx * d_attn  # [1] Table 1
    return (1 + BACKWARD_TO_FORWARD) * c_forward


def chinchilla_forward_flops_per_sequence(
    seq_len, vocab_size, d_model, num_heads, key_size, num_layers, ffw_size,
    *, embeddings: bool = True, logits: bool = True, causal: bool = False,
):
    """Forward FLOPs of one sequence by Chinchilla's Appendix F accounting ([2] App. F).

    ``embeddings``/``logits`` switch those terms off: [2]'s Table A4 ratios leave them out (per the
    authors, quoted in nanoGPT's ``scaling_laws.ipynb``). ``causal`` halves the seq_len^2 terms.
    """
    kh = key_size * num_heads
    s2 = seq_len * seq_len * (0.5 if causal else 1.0)
    emb = 2 * seq_len * vocab_size * d_model if embeddings else 0  # [2] App. F "Embeddings"
    attention = (
        2 * 3 * seq_len * d_model * kh  # [2] App. F "Key, query and value projections"
        + 2 * s2 * kh  # [2] App. F "Key @ Query logits"
        + 3 * num_heads * s2  # [2] App. F "Softmax"
        + 2 * s2 * kh  # [2] App. F "Softmax @ query reductions"
        + 2 * seq_len * kh * d_model  # [2] App. F "Final Linear"
    )
    dense = 2 * seq_len * (d_model * ffw_size + d_model * ffw_size)  # [2] App. F "Dense Block"
    final = 2 * seq_len * d_model * vocab_size if logits else 0  # [2] App. F "Final Logits"
    return emb + num_layers * (attention + dense) + final


def palm_flops_per_token(n_params, n_layer, n_head, head_dim, seq_len, *, causal: bool = False):
    """Model FLOPs per token, 6N + 12 L H Q T ([3] App. B); ``causal`` halves the attention term."""
    return 6.0 * n_params + (6.0 if causal else 12.0) * n_layer * n_head * head_dim * seq_len  # [3] App. B


def megatron_flops_per_token(n_layer, hidden, seq_len, vocab_size, *, recompute: bool = True,
                             causal: bool = False):
    """Training FLOPs per token by Megatron-LM ([4] eq. 3 divided by B s), with full recompute by default.

    ``recompute=False`` drops the extra forward of the blocks, giving 72 l h^2 (1 + s/6h + V/12lh)
    ([4] Appendix: fwd + bwd = 3 x (24Bsh^2 + 4Bs^2h) per layer, logits 6BshV). ``causal`` halves s/6h.
    """
    s = seq_len * (0.5 if causal else 1.0)
    if recompute:
        return 96.0 * n_layer * hidden**2 * (1 + s / (6 * hidden) + vocab_size / (16 * n_layer * hidden))  # [4] eq. 3
    return 72.0 * n_layer * hidden**2 * (1 + s / (6 * hidden) + vocab_size / (12 * n_layer * hidden))  # [4] App.


def megatron_params(n_layer, hidden, vocab_size, seq_len):
    """Parameter count P = 12 l h^2 (1 + 13/12h + (V + s)/12lh) ([4] eq. 2)."""
    return 12.0 * n_layer * hidden**2 * (1 + 13 / (12 * hidden) + (vocab_size + seq_len) / (12 * n_layer * hidden))  # [4] eq. 2


def megatron_training_time_s(n_tokens, n_params, n_gpus, flop_per_s_per_gpu):
    """End-to-end training time ~ 8 T P / (n X) with full recompute ([4] eq. 4), in seconds."""
    return 8.0 * n_tokens * n_params / (n_gpus * flop_per_s_per_gpu)  # [4] eq. 4


# ------------------------------------------------------------------ conventions applied to a config


@dataclass(frozen=True)
class Convention:
    """A published way of counting training FLOPs per token, applied to a `ModelConfig`."""

    key: str
    title: str
    formula: str
    source: str
    counts: str  # what it includes
    omits: str  # what it leaves out, relative to the exact matmul count
    hardware: bool  # True when it includes recomputation (hardware FLOPs, not model FLOPs)
    per_token: Callable[[ModelConfig, object, bool], float]


def _exact(cfg, seq_len, causal):
    return training_flops_per_token(cfg, seq_len, causal=causal).model_flops_per_token


def _six_nd(cfg, seq_len, causal):
    # N = the parameters a token uses: all of them for a dense model, the active ones for a mixture of experts
    return six_nd_flops_per_token(count_params(cfg).active)


def _kaplan(cfg, seq_len, causal):
    if cfg.is_gpt2_block:
        return kaplan_flops_per_token(cfg.n_layer, cfg.n_embd, cfg.n_head * cfg.head_dim, cfg.n_inner, seq_len)
    # [1] Table 1's idea at the actual widths: N = non-embedding matmul weights a token uses (no LM head)
    pc = count_params(cfg)
    n = pc.matmul - cfg.vocab_size * cfg.n_embd
    return (1 + BACKWARD_TO_FORWARD) * (2 * n + 2 * cfg.n_layer * seq_len * cfg.d_attn)  # [1] Table 1


def _chinchilla(cfg, seq_len, causal):
    if cfg.is_gpt2_block:
        fwd = chinchilla_forward_flops_per_sequence(
            seq_len, cfg.vocab_size, cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.n_layer, cfg.n_inner, causal=causal
        )
        return (1 + BACKWARD_TO_FORWARD) * fwd / seq_len  # [2] App. F
    # [2] App. F's terms at the actual widths: every matmul, plus the embedding as a one-hot matmul and the softmax
    exact = forward_flops_per_token(cfg, seq_len, causal=causal).total
    ctx = attention_context(seq_len, causal)
    extra = 2 * cfg.vocab_size * cfg.n_embd + 3 * cfg.n_layer * cfg.n_head * ctx  # [2] App. F Embeddings, Softmax
    return (1 + BACKWARD_TO_FORWARD) * (exact + extra)


def _palm(cfg, seq_len, causal):
    return palm_flops_per_token(count_params(cfg).active, cfg.n_layer, cfg.n_head, cfg.head_dim, seq_len,
                                causal=causal)


def _megatron(recompute):
    def f(cfg, seq_len, causal):
        if not cfg.is_gpt2_block:
            # [4]'s 24 h^2 per layer assumes GPT-2's block; at other widths it is the exact matmul count
            t = training_flops_per_token(cfg, seq_len, recompute=Recompute.full if recompute else Recompute.none,
                                         causal=causal)
            return t.hardware_flops_per_token
        if cfg.n_inner != 4 * cfg.n_embd:
            # [4]'s formula hard-codes the 4h MLP; scale the MLP term to the actual width.
            extra = (1 + BACKWARD_TO_FORWARD + (1 if recompute else 0)) * FLOPS_PER_MAC * cfg.n_layer * 2 \
                * cfg.n_embd * (cfg.n_inner - 4 * cfg.n_embd)
        else:
            extra = 0.0
        return megatron_flops_per_token(cfg.n_layer, cfg.n_embd, seq_len, cfg.vocab_size,
                                        recompute=recompute, causal=causal) + extra
    return f


CONVENTIONS: dict[str, Convention] = {c.key: c for c in [
    Convention(
        "exact", "flopscalc exact (matmuls)", "3 x sum of per-component forward matmul FLOPs",
        "this engine; backward = 2 x forward [Kaplan 2020 sec. 2.1]",
        "every matmul: QKV, Q K^T, attention x V, projections, MLP, LM head; forward + backward",
        "element-wise work (softmax, GELU, LayerNorm, biases, residuals); embedding lookups (no multiply)",
        False, _exact),
    Convention(
        "6nd", "6ND", "6 N, N = all (MoE: active) parameters",
        "Kaplan et al. 2020 sec. 2.1; Hoffmann et al. 2022 sec. 3",
        "every parameter as if it were in a matmul (embeddings, position table, biases, LayerNorm gains)",
        "the attention core (Q K^T and attention x V), which grows with context length",
        False, _six_nd),
    Convention(
        "kaplan", "Kaplan", "3 x (2 N_nonemb + 2 n_layer n_ctx d_attn)", "Kaplan et al. 2020 Table 1",
        "block matmuls; the attention core once (2 n_ctx d_attn per layer, half the dense Q K^T + x V count)",
        "the LM head (de-embedding), embeddings, biases, LayerNorms; half of the dense attention core",
        False, _kaplan),
    Convention(
        "chinchilla", "Chinchilla App. F", "3 x (embeddings + layers x (attention + dense) + logits)",
        "Hoffmann et al. 2022 App. F",
        "every matmul, the embedding as a one-hot matmul (2 V d), softmax (3 H T^2)",
        "biases, LayerNorms, GELU, residuals",
        False, _chinchilla),
    Convention(
        "palm", "PaLM (MFU)", "6 N + 12 L H Q T, N = all (MoE: active) parameters", "Chowdhery et al. 2022 App. B",
        "every parameter as if in a matmul, plus the dense attention core",
        "element-wise work; rematerialisation (MFU counts model FLOPs only)",
        False, _palm),
    Convention(
        "megatron", "Megatron (with recompute)", "96 l h^2 (1 + s/6h + V/16lh)",
        "Narayanan et al. 2021 eq. 3",
        "block matmuls including one recomputed forward, dense attention core, LM head",
        "embeddings, biases, LayerNorms, element-wise work",
        True, _megatron(True)),
    Convention(
        "megatron-model", "Megatron (no recompute)", "72 l h^2 (1 + s/6h + V/12lh)",
        "Narayanan et al. 2021 Appendix, without the recompute forward",
        "block matmuls, dense attention core, LM head",
        "embeddings, biases, LayerNorms, element-wise work",
        False, _megatron(False)),
]}


def convention_flops_per_token(cfg: ModelConfig, convention: str, seq_len=None, *, causal: bool = False):
    """Training FLOPs per token of ``cfg`` under a named convention (see `CONVENTIONS`)."""
    if convention not in CONVENTIONS:
        raise UsageError(f"unknown FLOPs convention {convention!r}; accepted: {', '.join(CONVENTIONS)}")
    seq_len = _check_seq_len(cfg, seq_len)
    return CONVENTIONS[convention].per_token(cfg, seq_len, causal)


@dataclass(frozen=True)
class ConventionResult:
    convention: Convention
    flops_per_token: float

    def ratio_to(self, reference_per_token: float) -> float:
        return self.flops_per_token / reference_per_token


@dataclass(frozen=True)
class FlopsSummary:
    """Everything `flopscalc flops` reports: exact counts per token, step and run, and every convention."""

    model: ModelConfig
    seq_len: int
    n_tokens: float
    tokens_per_step: float
    causal: bool
    training: TrainingFlops
    conventions: tuple[ConventionResult, ...]

    @property
    def n_steps(self) -> float:
        return self.n_tokens / self.tokens_per_step

    @property
    def model_flops(self) -> float:
        """Model FLOPs of the whole run (FLOP)."""
        return self.training.model_flops_per_token * self.n_tokens

    @property
    def hardware_flops(self) -> float:
        """Hardware FLOPs of the whole run, recomputation included (FLOP)."""
        return self.training.hardware_flops_per_token * self.n_tokens

    @property
    def model_flops_per_step(self) -> float:
        return self.training.model_flops_per_token * self.tokens_per_step

    @property
    def hardware_flops_per_step(self) -> float:
        return self.training.hardware_flops_per_token * self.tokens_per_step


def summarize(
    cfg: ModelConfig, n_tokens: float, *, seq_len: int | None = None, micro_batch: int = 1,
    grad_accum: int = 1, n_gpus: int = 1, recompute: Recompute | str = Recompute.none, causal: bool = False,
) -> FlopsSummary:
    """Exact and conventional FLOPs of training ``cfg`` on ``n_tokens`` tokens."""
    if not n_tokens > 0:
        raise UsageError(f"number of training tokens must be positive, got {n_tokens:g}")
    for name, v in (("micro-batch", micro_batch), ("gradient accumulation", grad_accum), ("GPU count", n_gpus)):
        if v < 1:
            raise UsageError(f"{name} must be at least 1, got {v}")
    seq_len = int(_check_seq_len(cfg, seq_len))
    training = training_flops_per_token(cfg, seq_len, recompute=recompute, causal=causal)
    results = tuple(
        ConventionResult(c, convention_flops_per_token(cfg, c.key, seq_len, causal=causal))
        for c in CONVENTIONS.values()
    )
    return FlopsSummary(cfg, seq_len, float(n_tokens), tokens_per_step(micro_batch, seq_len, grad_accum, n_gpus),
                        causal, training, results)
