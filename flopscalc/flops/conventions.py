"""The papers' conventions applied to a `ModelConfig`: `Convention`, `CONVENTIONS`, `convention_flops_per_token`.

For blocks other than GPT-2's, each convention applies its idea at the actual widths (docs/families/).
References [1]-[6] are listed in `flopscalc.flops`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError
from ..model import ModelConfig, count_params
from .exact import (
    BACKWARD_TO_FORWARD,
    FLOPS_PER_MAC,
    Recompute,
    _check_seq_len,
    attention_context,
    forward_flops_per_token,
    training_flops_per_token,
)
from .papers import (
    chinchilla_forward_flops_per_sequence,
    kaplan_flops_per_token,
    megatron_flops_per_token,
    palm_flops_per_token,
    six_nd_flops_per_token,
)


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
    ctx = attention_context(seq_len, causal, cfg.attn_window)
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


def formula_as_applied(convention: str, cfg: ModelConfig) -> str:
    """The formula a convention's number for ``cfg`` comes from, as a report should print it: Megatron's [4] counts
    GPT-2's block (24 h^2 per layer, a 4h MLP), so for any other block its rows are the exact matmul count (`_megatron`),
    and the printed formula says so rather than stand beside a number it does not give."""
    c = CONVENTIONS[convention]
    if convention.startswith("megatron") and not cfg.is_gpt2_block:
        return ("exact matmul count" + (" + one recomputed forward" if c.hardware else "")
                + f" (the formula {c.formula} assumes GPT-2's block)")
    return c.formula


def convention_flops_per_token(cfg: ModelConfig, convention: str, seq_len=None, *, causal: bool = False):
    """Training FLOPs per token of ``cfg`` under a named convention (see `CONVENTIONS`)."""
    if convention not in CONVENTIONS:
        raise UsageError(f"unknown FLOPs convention {convention!r}; accepted: {', '.join(CONVENTIONS)}")
    seq_len = _check_seq_len(cfg, seq_len)
    return CONVENTIONS[convention].per_token(cfg, seq_len, causal)
