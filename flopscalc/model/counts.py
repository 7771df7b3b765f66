"""Exact parameter counts of a `ModelConfig`, by component: total, non-embedding and active (mixture of experts).

Layout counted (per block, in the order the modules hold them; formulas per family in ``docs/families/``):
two normalisation layers, Q/K/V projections (n_embd -> n_head x head_dim, and n_kv_head x head_dim twice),
the output projection, an optional q/k norm, and the MLP (2 or 3 matrices; or a router, experts and shared
experts); then a final norm and the LM head (tied to the token embedding unless ``tie_embeddings=False``; never a
bias). The tests check every preset and family against ``sum(p.numel())`` of the ``transformers`` module built from
the same config on the meta device, and the GPT-2 layout against the reference module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import ModelConfig, QkNorm


@dataclass(frozen=True)
class ParamCount:
    """Exact parameter counts of a `ModelConfig`, by component (count)."""

    token_embedding: int
    position_embedding: int
    attention: int  # all layers: Q, K, V and output projections, weights and biases
    mlp: int  # all layers: dense MLP, or router + every routed and shared expert (+ shared-expert gate)
    layernorm: int  # every normalisation layer: two per block, the final one, q/k norms
    lm_head: int  # 0 when tied to the token embedding
    matmul: int  # weights multiplied per token: block linears + LM head, active experts only (Kaplan Table 1)

    # Mixture of experts, kept out of the dataclass fields (the component fields above add up to the total):
    # set by `count_params` with `_moe`; 0 for a dense model.
    @property
    def router(self) -> int:
        """Router parameters of all layers (n_embd -> n_expert each), included in ``mlp``."""
        return getattr(self, "_router", 0)

    @property
    def inactive_experts(self) -> int:
        """Routed-expert parameters one token does not use: n_expert - top_k experts in every layer."""
        return getattr(self, "_inactive_experts", 0)

    def _moe(self, router: int, inactive_experts: int) -> ParamCount:
        object.__setattr__(self, "_router", router)
        object.__setattr__(self, "_inactive_experts", inactive_experts)
        return self

    @property
    def total(self) -> int:
        """Every trainable parameter (what ``sum(p.numel() for p in model.parameters())`` gives)."""
        return (self.token_embedding + self.position_embedding + self.attention + self.mlp
                + self.layernorm + self.lm_head)

    @property
    def non_embedding(self) -> int:
        """Total minus token and position embeddings and any untied LM head (Kaplan et al. 2020, sec. 2.1)."""
        return self.attention + self.mlp + self.layernorm

    @property
    def without_position(self) -> int:
        """Total minus the position table (nanoGPT's ``get_num_params(non_embedding=True)``)."""
        return self.total - self.position_embedding

    @property
    def active(self) -> int:
        """Parameters one token uses: total minus the routed experts it is not sent to (= total when dense).

        Mixtral 8x7B: 46.7B total, 12.9B active (Jiang et al. 2024, sec. 2.1, "13B active parameters").
        """
        return self.total - self.inactive_experts

    @property
    def active_non_embedding(self) -> int:
        """Non-embedding parameters one token uses."""
        return self.non_embedding - self.inactive_experts


def mlp_unit_params(cfg: ModelConfig, width: int) -> tuple[int, int]:
    """(weights, biases) of one MLP or expert of hidden width ``width``.

    GELU: up d x f and down f x d (Radford et al. 2019); SwiGLU/GeGLU: gate and up d x f, down f x d
    (Shazeer 2020, eq. 6: FFN_SwiGLU(x) = (Swish(xW) * xV) W2).
    """
    d, k = cfg.n_embd, cfg.mlp.n_matrices
    weights = k * d * width
    biases = ((k - 1) * width + d) if cfg.has_mlp_bias else 0
    return weights, biases


def attention_params(cfg: ModelConfig) -> tuple[int, int]:
    """(weights, biases) of one block's attention: Q d x (H hd), K and V d x (K hd) each, output (H hd) x d.

    Vaswani et al. 2017 sec. 3.2.2 (W^Q, W^K, W^V, W^O); grouped-query K and V have n_kv_head heads
    (Ainslie et al. 2023, sec. 2.2).
    """
    d, d_q, d_kv = cfg.n_embd, cfg.d_attn, cfg.d_kv
    weights = d * (d_q + 2 * d_kv) + d_q * d
    biases = (d_q + 2 * d_kv if cfg.has_qkv_bias else 0) + (d if cfg.has_out_bias else 0)
    return weights, biases


def qk_norm_params(cfg: ModelConfig) -> int:
    """Gains of one block's q/k norm: over all heads (OLMo 2) or over one head's width (Qwen3)."""
    if cfg.qk_norm is QkNorm.full:
        return cfg.d_attn + cfg.d_kv  # OLMo 2: q_norm(n_head hd), k_norm(n_kv_head hd) (arXiv:2501.00656 sec. 3.2)
    if cfg.qk_norm is QkNorm.head:
        return 2 * cfg.head_dim  # Qwen3: q_norm(hd), k_norm(hd)
    return 0


def router_params(cfg: ModelConfig) -> int:
    """One block's router: a linear n_embd -> n_expert (Shazeer et al. 2017, eq. 3; Mixtral sec. 2.1)."""
    return cfg.n_embd * cfg.n_expert + (cfg.n_expert if cfg.router_bias else 0) if cfg.is_moe else 0


def mlp_params(cfg: ModelConfig) -> tuple[int, int, int]:
    """One block's MLP: (all parameters, parameters a token uses, matmul weights a token uses).

    Dense: one MLP of width n_inner. Mixture of experts: n_expert routed experts (top_k used per token) and
    n_shared_expert always-used ones, plus a sigmoid gate d -> 1 on the shared experts when ``shared_expert_gate``.
    The router is counted apart (`router_params`).
    """
    if not cfg.is_moe:
        w, b = mlp_unit_params(cfg, cfg.n_inner)
        return w + b, w + b, w
    ew, eb = mlp_unit_params(cfg, cfg.expert_inner)
    sw, sb = mlp_unit_params(cfg, cfg.shared_expert_inner)
    gate = cfg.n_embd if cfg.shared_expert_gate else 0  # Qwen2-MoE shared_expert_gate: Linear(d, 1, bias=False)
    shared = cfg.n_shared_expert * (sw + sb) + gate
    total = cfg.n_expert * (ew + eb) + shared
    active = cfg.top_k * (ew + eb) + shared
    matmul = cfg.top_k * ew + cfg.n_shared_expert * sw + gate
    return total, active, matmul


def final_norm_params(cfg: ModelConfig) -> int:
    """The norm after the last block."""
    return cfg.norm_params


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer block (count)."""
    aw, ab = attention_params(cfg)
    return aw + ab + mlp_params(cfg)[0] + router_params(cfg) + 2 * cfg.norm_params + qk_norm_params(cfg)


@functools.lru_cache(maxsize=4096)  # pure and asked ~2,600 times per plan about ~30 frozen configs
def params_outside_blocks(cfg: ModelConfig) -> int:
    """Parameters outside the transformer blocks: the embeddings, the final norm and an untied LM head (what FSDP's
    root unit holds when each block is wrapped on its own)."""
    return count_params(cfg).total - cfg.n_layer * block_params(cfg)


def count_params(cfg: ModelConfig) -> ParamCount:
    """Exact parameter count of ``cfg``, by component.

    References: Radford et al. 2019 (GPT-2) and nanoGPT ``model.py`` for the GPT-2 layout (GPT-2 XL:
    1,557,611,200, the released checkpoint); Touvron et al. 2023 (Llama 2) and the published config.json files
    for the others (Llama 3.1 8B: 8,030,261,248). The tests check each against ``sum(p.numel())``.
    """
    L, d, V = cfg.n_layer, cfg.n_embd, cfg.vocab_size
    aw, ab = attention_params(cfg)
    mlp_total, mlp_active, mlp_matmul = mlp_params(cfg)
    router = router_params(cfg)
    router_w = d * cfg.n_expert
    return ParamCount(
        token_embedding=V * d,
        position_embedding=cfg.block_size * d if cfg.pos_embedding else 0,
        attention=L * (aw + ab),
        mlp=L * (mlp_total + router),
        layernorm=L * (2 * cfg.norm_params + qk_norm_params(cfg)) + final_norm_params(cfg),
        lm_head=0 if cfg.tie_embeddings else V * d,
        matmul=L * (aw + mlp_matmul + router_w) + V * d,
    )._moe(router=L * router, inactive_experts=L * (mlp_total - mlp_active))
