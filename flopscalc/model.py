"""GPT-style model configurations, GPT-2 presets and exact parameter counts.

Field names follow GPT-2 / nanoGPT (``n_layer``, ``n_head``, ``n_embd``, ``block_size``,
``vocab_size``). The same `ModelConfig` builds the reference PyTorch module in
``flopscalc.train.model``, so counted and predicted numbers are about one model.

Layout counted here (GPT-2, Radford et al. 2019; nanoGPT ``model.py``): token embedding
(wte), learned position embedding (wpe), ``n_layer`` pre-LN blocks of
[LayerNorm, fused QKV linear, output projection, LayerNorm, MLP up, MLP down], final
LayerNorm, LM head (tied to wte unless ``tie_embeddings=False``; never a bias).
``bias=False`` removes the biases of every linear *and* LayerNorm, as nanoGPT does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from .errors import DomainError, UsageError

# GPT-2 BPE vocabulary size (Radford et al. 2019, sec. 2.2; 50,257 tokens in the released encoder).
GPT2_VOCAB_SIZE = 50257
# GPT-2 context length (Radford et al. 2019, sec. 2.3: "increase the context size from 512 to 1024").
GPT2_BLOCK_SIZE = 1024
# Head dimension used by GPT-2 and GPT-3 (Brown et al. 2020, Table 2.1: d_head = 64 up to 1.3B params).
DEFAULT_HEAD_DIM = 64
# Default width / depth ratio of the shaping rule: GPT-2 small's 768/12 and GPT-3 125M/760M's
# (Brown et al. 2020, Table 2.1); Kaplan et al. 2020 (sec. 3.1, Fig. 5) find loss within ~3% of the
# best for aspect ratios between ~20 and ~200 at fixed parameter count, so the exact value matters little.
DEFAULT_ASPECT_RATIO = 64.0
# Tolerance within which the shaping rule treats parameter counts as "on target" and prefers shape.
SHAPE_PARAM_TOLERANCE = 0.02
# Beyond this relative miss the shaping rule refuses instead of returning a far-off model.
SHAPE_GIVE_UP = 0.25
# Search space of the shaping rule: up to 256 layers and 1024 heads of 64 (about 10k to 40T parameters).
MAX_SHAPE_LAYERS = 256
MAX_SHAPE_HEADS = 1024


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a GPT-2-style decoder-only transformer.

    Parameters
    ----------
    n_layer : int
        Number of transformer blocks.
    n_head : int
        Attention heads per block; ``n_embd`` must divide evenly by it.
    n_embd : int
        Residual stream width (d_model).
    block_size : int
        Maximum context length in tokens (learned position table size).
    vocab_size : int
        Vocabulary size (rows of the token embedding).
    bias : bool
        Biases in linear layers and LayerNorms (GPT-2: True).
    tie_embeddings : bool
        LM head shares the token-embedding matrix (GPT-2: True).
    pos_embedding : bool
        Learned absolute position embedding (GPT-2: True; False models e.g. rotary embeddings).
    mlp_ratio : float
        MLP hidden width as a multiple of ``n_embd`` (GPT-2: 4).
    name : str
        Label shown in reports.
    """

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int = GPT2_BLOCK_SIZE
    vocab_size: int = GPT2_VOCAB_SIZE
    bias: bool = True
    tie_embeddings: bool = True
    pos_embedding: bool = True
    mlp_ratio: float = 4.0
    name: str = "custom"

    def __post_init__(self) -> None:
        for field in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"model {field} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise UsageError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_head={self.n_embd // DEFAULT_HEAD_DIM or 1}"
            )
        if not (self.mlp_ratio > 0) or abs(self.mlp_ratio * self.n_embd - round(self.mlp_ratio * self.n_embd)) > 1e-6:
            raise UsageError(f"mlp_ratio x n_embd must be a positive integer, got {self.mlp_ratio} x {self.n_embd}")

    @property
    def head_dim(self) -> int:
        """Per-head width d_head = n_embd / n_head."""
        return self.n_embd // self.n_head

    @property
    def n_inner(self) -> int:
        """MLP hidden width d_ff."""
        return int(round(self.mlp_ratio * self.n_embd))

    def with_(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class ParamCount:
    """Exact parameter counts of a `ModelConfig`, by component."""

    token_embedding: int
    position_embedding: int
    attention: int  # all layers: QKV and output projection, weights and biases
    mlp: int  # all layers: up and down projections, weights and biases
    layernorm: int  # all layers' two LayerNorms plus the final one
    lm_head: int  # 0 when tied to the token embedding
    matmul: int  # weights multiplied per token: block linears + LM head (Kaplan et al. 2020, Table 1)

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


def count_params(cfg: ModelConfig) -> ParamCount:
    """Exact parameter count of the GPT-2 layout for ``cfg``, by component.

    References: Radford et al. 2019 (GPT-2); nanoGPT ``model.py`` (the same layout). With GPT-2 XL's
    shape this gives 1,557,611,200 (the released checkpoint) and GPT-2 small with ``bias=False``
    124,337,664 (nanoGPT's notebook); tests check every preset against ``sum(p.numel())``.
    """
    d, f, L, V = cfg.n_embd, cfg.n_inner, cfg.n_layer, cfg.vocab_size
    b = 1 if cfg.bias else 0
    attn_w = d * 3 * d + d * d  # c_attn (d -> 3d) and c_proj (d -> d)
    attn_b = b * (3 * d + d)
    mlp_w = d * f + f * d  # c_fc (d -> f) and c_proj (f -> d)
    mlp_b = b * (f + d)
    ln_per = d + b * d  # gain, and bias when biases are on
    lm_head = 0 if cfg.tie_embeddings else V * d
    pc = ParamCount(
        token_embedding=V * d,
        position_embedding=cfg.block_size * d if cfg.pos_embedding else 0,
        attention=L * (attn_w + attn_b),
        mlp=L * (mlp_w + mlp_b),
        layernorm=(2 * L + 1) * ln_per,
        lm_head=lm_head,
        matmul=L * (attn_w + mlp_w) + V * d,
    )
    return pc


# GPT-2 family: n_layer and d_model from Radford et al. 2019, Table 2; heads from the released
# hparams.json (head_dim 64); all use vocab 50257, context 1024, biases and tied embeddings.
PRESETS: dict[str, ModelConfig] = {
    "gpt2": ModelConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2"),
    "gpt2-medium": ModelConfig(n_layer=24, n_head=16, n_embd=1024, name="gpt2-medium"),
    "gpt2-large": ModelConfig(n_layer=36, n_head=20, n_embd=1280, name="gpt2-large"),
    "gpt2-xl": ModelConfig(n_layer=48, n_head=25, n_embd=1600, name="gpt2-xl"),
}
PRESET_ALIASES = {
    "gpt2-small": "gpt2", "small": "gpt2", "124m": "gpt2", "gpt2-124m": "gpt2",
    "medium": "gpt2-medium", "350m": "gpt2-medium", "gpt2-350m": "gpt2-medium",
    "large": "gpt2-large", "774m": "gpt2-large", "gpt2-774m": "gpt2-large",
    "xl": "gpt2-xl", "1.5b": "gpt2-xl", "gpt2-1.5b": "gpt2-xl",
}


def get_preset(name: str) -> ModelConfig:
    """Look up a GPT-2 preset by name (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``, or an alias)."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = PRESET_ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    import difflib

    options = list(PRESETS) + list(PRESET_ALIASES)
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    hint = f"; did you mean {PRESET_ALIASES.get(close[0], close[0])}?" if close else ""
    raise UsageError(f"unknown model {name!r}; accepted: {', '.join(PRESETS)}{hint}")


def config_for_params(
    n_params: float,
    *,
    aspect_ratio: float = DEFAULT_ASPECT_RATIO,
    head_dim: int = DEFAULT_HEAD_DIM,
    count: str = "total",
    base: ModelConfig | None = None,
) -> ModelConfig:
    """A well-shaped GPT-2-style config whose parameter count is close to ``n_params``.

    The rule: heads of width ``head_dim`` (64, as GPT-2/GPT-3 use; Brown et al. 2020, Table 2.1),
    ``n_embd`` a multiple of ``head_dim``, and among the shapes whose count is within 2% of the target
    the one whose width/depth ratio is closest (in log) to ``aspect_ratio``; if none is within 2%,
    the closest count. Loss depends only weakly on shape at fixed N over aspect ratios ~20-200
    (Kaplan et al. 2020, sec. 3.1, Fig. 5), which is what licenses choosing shape by a simple rule.

    Parameters
    ----------
    n_params : float
        Target parameter count (count).
    aspect_ratio : float
        Preferred ``n_embd / n_layer`` (dimensionless).
    head_dim : int
        Width of one attention head.
    count : {"total", "non_embedding"}
        Which count to match: all parameters (Chinchilla's N) or non-embedding (Kaplan's N).
    base : ModelConfig, optional
        Supplies vocabulary, context, bias and tying (default: GPT-2's).
    """
    if not (n_params > 0) or not math.isfinite(n_params):
        raise UsageError(f"target parameter count must be a positive number, got {n_params!r}")
    if count not in ("total", "non_embedding"):
        raise UsageError(f"count must be 'total' or 'non_embedding', got {count!r}")
    base = base or PRESETS["gpt2"]

    def shaped(n_layer: int, n_head: int) -> ModelConfig:
        return replace(base, n_layer=n_layer, n_head=n_head, n_embd=n_head * head_dim, name="custom")

    def got(cfg: ModelConfig) -> int:
        pc = count_params(cfg)
        return pc.total if count == "total" else pc.non_embedding

    # counts of every (layers, heads) shape: affine in n_layer, so two depths per width give them all
    c1, c2 = _width_counts(base, head_dim, count)
    layers = np.arange(1, MAX_SHAPE_LAYERS + 1)
    grid = c1[None, :] + (layers[:, None] - 1) * (c2 - c1)[None, :]  # [layers, heads], increasing along heads
    # per depth, the widths just below and above the target (as a bisection over widths would find)
    below = np.array([np.searchsorted(row, n_params, side="right") for row in grid])  # widths with count <= N
    lo = np.clip(below, 1, MAX_SHAPE_HEADS - 1)  # 1-based head count
    best: tuple[tuple[float, float], ModelConfig] | None = None
    tol = math.log1p(SHAPE_PARAM_TOLERANCE)
    for heads in (lo, lo + 1):
        counts = grid[layers - 1, heads - 1]
        err = np.abs(np.log(counts / n_params))
        shape = np.abs(np.log(heads * head_dim / layers / aspect_ratio))
        within = err <= tol
        key_flag = np.where(within, 0.0, 1.0)
        key_val = np.where(within, shape, err)
        for i in np.lexsort((key_val, key_flag))[:1]:  # the smallest (flag, value), first in depth order
            key = (float(key_flag[i]), float(key_val[i]))
            if best is None or key < best[0]:
                best = (key, shaped(int(layers[i]), int(heads[i])))
    assert best is not None
    cfg = best[1]
    reached = got(cfg)
    if abs(math.log(reached / n_params)) > math.log1p(SHAPE_GIVE_UP):
        raise DomainError(
            f"no GPT-2-shaped model (head width {head_dim}, vocab {base.vocab_size}) has about "
            f"{_short(n_params)} {count.replace('_', '-')} parameters; the closest has {_short(reached)}"
        )
    return replace(cfg, name=f"~{_short(count_params(cfg).total)}")


@functools.lru_cache(maxsize=32)
def _width_counts(base: ModelConfig, head_dim: int, count: str) -> tuple[np.ndarray, np.ndarray]:
    """Parameter counts at 1 and 2 layers for every head count 1..MAX_SHAPE_HEADS (exact integers)."""
    one, per_layer = [], []
    for h in range(1, MAX_SHAPE_HEADS + 1):
        pc = count_params(replace(base, n_layer=1, n_head=h, n_embd=h * head_dim))
        one.append(pc.total if count == "total" else pc.non_embedding)
        # one more block adds its attention, MLP and two of the three LayerNorms of a 1-layer model
        per_layer.append(pc.attention + pc.mlp + 2 * pc.layernorm // 3)
    c1 = np.array(one, dtype=np.float64)
    return c1, c1 + np.array(per_layer, dtype=np.float64)


def _short(n: float) -> str:
    from .units import format_count

    return format_count(n)


def resolve_model(
    name: str | None = None,
    *,
    n_params: float | None = None,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_embd: int | None = None,
) -> ModelConfig:
    """One model from exactly one way of naming it: a preset, a parameter count, or an explicit shape."""
    shape = (n_layer, n_head, n_embd)
    ways = [name is not None, n_params is not None, any(v is not None for v in shape)]
    if sum(ways) != 1:
        raise UsageError("name the model one way: --model (a preset), --params (e.g. 350M), "
                         "or --n-layer, --n-head and --n-embd together")
    if name is not None:
        return get_preset(name)
    if n_params is not None:
        return config_for_params(n_params)
    if any(v is None for v in shape):
        raise UsageError("an explicit shape needs all of --n-layer, --n-head and --n-embd")
    return ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, name=f"{n_layer}x{n_embd}")
