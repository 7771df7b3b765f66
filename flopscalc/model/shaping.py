"""The shaping rule: a well-shaped model of a family for a parameter count; and `resolve_model`.

A family (`FAMILIES`) fixes everything but depth and width: vocabulary, context, block kind, head width, the
key/value head count and how the MLP width follows the model width. `config_for_params` then picks depth and
width for a target count. The planner calls ``config_for_params(n, family=..., count=..., base=...)``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace

from ..errors import DomainError, UsageError
from .config import DEFAULT_HEAD_DIM, ModelConfig
from .counts import block_params, count_params
from .option_words import (
    NAMING_OPTIONS,
    ExpertCountError,
    HeadCountError,
    KvHeadCountError,
    expert_words,
    head_count_words,
    kv_head_words,
    naming_options,
)
from .presets import PRESETS, get_preset

# Default width / depth ratio of the GPT-2 shaping rule: GPT-2 small's 768/12 and GPT-3 125M/760M's
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
# Head counts of models a plan splits over tensor-parallel groups: Megatron-LM splits heads (and a GQA model's
# key/value heads) evenly over TP ranks, and every model of Narayanan et al. 2021 (Table 1: 24 ... 160 heads) and
# Llama 3 (arXiv:2407.21783, Table 3) has a multiple of 8, the TP degree of one 8-GPU node.
TP_HEAD_MULTIPLE = 8

# Llama 3's shape rules (Meta's llama3 reference code, model.py FeedForward, with Llama 3 8B's params.json):
# d_ff = multiple_of x ceil(ffn_dim_multiplier x floor(2/3 x 4 d) / multiple_of), multiplier 1.3, multiple 1024
# (4096 -> 14336, 8192 -> 28672 as the released 8B and 70B); head width 128; 8 key/value heads at every size
# (Llama Team 2024, "The Llama 3 Herd of Models", arXiv:2407.21783, Table 3); vocabulary 128,256 and context
# 8,192 (ibid., sec. 3.2 and 3.4); 8B's width/depth 4096/32 = 128 (Table 3).
LLAMA3_FFN_MULTIPLIER = 1.3
LLAMA3_FFN_MULTIPLE_OF = 1024
LLAMA3_HEAD_DIM = 128
LLAMA3_KV_HEADS = 8
LLAMA3_VOCAB_SIZE = 128256
LLAMA3_CONTEXT = 8192
LLAMA3_ASPECT_RATIO = 128.0


def llama3_ffn_dim(n_embd: int) -> int:
    """Llama 3's MLP width for model width ``n_embd`` (see `LLAMA3_FFN_MULTIPLIER`)."""
    hidden = int(LLAMA3_FFN_MULTIPLIER * int(2 * 4 * n_embd / 3))  # llama3 model.py FeedForward
    return LLAMA3_FFN_MULTIPLE_OF * math.ceil(hidden / LLAMA3_FFN_MULTIPLE_OF)


# A gated MLP keeps the parameters of a 4d GELU MLP with 2/3 of its width (Shazeer 2020, sec. 2: "we reduce the
# number of hidden units d_ff ... by a factor of 2/3"), rounded up to a multiple of 256 as Llama 2 does
# (Meta's llama model.py FeedForward, multiple_of=256: 4096 -> 11008).
GATED_FFN_MULTIPLE_OF = 256


def gated_ffn_dim(n_embd: int) -> int:
    """MLP width of a gated (SwiGLU/GeGLU) MLP with the parameters of a 4d GELU one (see `GATED_FFN_MULTIPLE_OF`)."""
    return GATED_FFN_MULTIPLE_OF * math.ceil(int(2 * 4 * n_embd / 3) / GATED_FFN_MULTIPLE_OF)


@dataclass(frozen=True)
class Family:
    """What a family fixes; `shape` gives the model of ``n_layer`` blocks and ``n_head`` heads."""

    key: str
    base: ModelConfig
    head_dim: int
    aspect_ratio: float
    kv_heads: int | None  # None: as many as query heads (multi-head attention)
    source: str
    head_step: int = 1  # head counts the rule considers are multiples of this (Llama: of its 8 KV heads)
    presets: tuple[str, ...] = ()  # the published models of this family (candidates beside the shaped ones)

    def preset_configs(self) -> dict[str, ModelConfig]:
        """The family's presets by name (`ALL_PRESETS` entries)."""
        return {name: get_preset(name) for name in self.presets}

    def shape(self, base: ModelConfig, n_layer: int, n_head: int, head_dim: int) -> ModelConfig:
        width = n_head * head_dim
        if self.key == "gpt2":
            if base.n_kv_head is None and base.mlp.n_matrices == 2:
                return replace(base, n_layer=n_layer, n_head=n_head, n_embd=width, name="custom")
            # a GPT-2-family base with grouped-query heads or a gated MLP (e.g. --params with --mlp swiglu)
            kv = math.gcd(n_head, base.n_kv_head) if base.n_kv_head is not None else None
            ffn = gated_ffn_dim(width) if base.mlp.n_matrices == 3 else None
            return base.with_(n_layer=n_layer, n_head=n_head, n_embd=width, n_kv_head=kv, ffn_dim=ffn, name="custom")
        kv = self.kv_heads if self.kv_heads and n_head % self.kv_heads == 0 else None
        return base.with_(n_layer=n_layer, n_head=n_head, n_embd=width, n_kv_head=kv, head_size=None,
                          ffn_dim=llama3_ffn_dim(width), name="custom")


FAMILIES: dict[str, Family] = {
    "gpt2": Family("gpt2", PRESETS["gpt2"], DEFAULT_HEAD_DIM, DEFAULT_ASPECT_RATIO, None,
                   "GPT-2/GPT-3: heads of 64, 4d GELU MLP (Brown et al. 2020, Table 2.1)", presets=tuple(PRESETS)),
    "llama": Family("llama", get_preset("llama-3.1-8b").with_(block_size=LLAMA3_CONTEXT), LLAMA3_HEAD_DIM,
                    LLAMA3_ASPECT_RATIO, LLAMA3_KV_HEADS,
                    "Llama 3: heads of 128, 8 KV heads, SwiGLU 1.3 x 8d/3 (arXiv:2407.21783, Table 3)",
                    head_step=LLAMA3_KV_HEADS, presets=("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b")),
}


def get_family(name: str) -> Family:
    key = name.strip().lower()
    if key not in FAMILIES:
        raise UsageError(f"unknown model family {name!r}; accepted: {', '.join(FAMILIES)}")
    return FAMILIES[key]


def config_for_params(
    n_params: float,
    *,
    aspect_ratio: float | None = None,
    head_dim: int | None = None,
    count: str = "total",
    base: ModelConfig | None = None,
    family: str = "gpt2",
    head_multiple: int = 1,
) -> ModelConfig:
    """A well-shaped config of ``family`` whose parameter count is close to ``n_params``.

    The rule: heads of width ``head_dim`` (GPT-2: 64, as GPT-2/GPT-3 use, Brown et al. 2020, Table 2.1;
    Llama: 128), ``n_embd`` a multiple of ``head_dim``, and among the shapes whose count is within 2% of the
    target the one whose width/depth ratio is closest (in log) to ``aspect_ratio``; if none is within 2%, the
    closest count. Loss depends only weakly on shape at fixed N over aspect ratios ~20-200 (Kaplan et al. 2020,
    sec. 3.1, Fig. 5), which is what licenses choosing shape by a simple rule. The Llama family also sets the
    key/value heads and the MLP width from the width (`llama3_ffn_dim`).

    Parameters
    ----------
    n_params : float
        Target parameter count (count).
    aspect_ratio : float, optional
        Preferred ``n_embd / n_layer`` (dimensionless; default: the family's).
    head_dim : int, optional
        Width of one attention head (default: the family's).
    count : {"total", "non_embedding"}
        Which count to match: all parameters (Chinchilla's N) or non-embedding (Kaplan's N).
    base : ModelConfig, optional
        Supplies vocabulary, context and the block's options (default: the family's base).
    family : {"gpt2", "llama"}
        The family whose rule shapes the model.
    head_multiple : int
        Head counts the rule considers are also multiples of this (count; 1: any the family allows). A plan that
        splits models over a tensor-parallel group passes `TP_HEAD_MULTIPLE`; with a grouped-query GPT-2 base the
        key/value heads are then the base's own (head counts are multiples of them too).
    """
    fam = get_family(family)
    aspect_ratio = fam.aspect_ratio if aspect_ratio is None else aspect_ratio
    head_dim = fam.head_dim if head_dim is None else head_dim
    if not (n_params > 0) or not math.isfinite(n_params):
        raise UsageError(f"target parameter count must be a positive number, got {n_params!r}")
    if count not in ("total", "non_embedding"):
        raise UsageError(f"count must be 'total' or 'non_embedding', got {count!r}")
    base = base or fam.base

    if head_multiple < 1:
        raise UsageError(f"head_multiple must be a positive count, got {head_multiple!r}")
    step = fam.head_step
    if head_multiple > 1:  # every head count a multiple of the family's step, of this, and of a GQA base's KV heads
        step = math.lcm(step, head_multiple, base.n_kv_head if fam.key == "gpt2" and base.n_kv_head else 1)
    counts = _width_counts(base, head_dim, count, fam.key, step)
    cfg = fam.shape(base, *_best_shape(counts, n_params, aspect_ratio, head_dim, step), head_dim)
    reached = counts.counted(cfg)
    if abs(math.log(reached / n_params)) > math.log1p(SHAPE_GIVE_UP):
        raise DomainError(
            f"no {fam.key}-shaped model (head width {head_dim}, vocab {base.vocab_size}) has about "
            f"{_short(n_params)} {count.replace('_', '-')} parameters; the closest has {_short(reached)}"
        )
    return replace(cfg, name=f"~{_short(count_params(cfg).total)}")


def _best_shape(counts: _WidthCounts, n_params: float, aspect_ratio: float, head_dim: int, step: int
                ) -> tuple[int, int]:
    """(n_layer, n_head) the shaping rule picks from the grid of depths 1..MAX_SHAPE_LAYERS and head counts step,
    2 step, ..., MAX_SHAPE_HEADS x step, visiting only the depths that can win.

    The rule, per depth L: the widths just below and above the target (j = lo(L) and lo(L) + 1 steps of heads, as
    a bisection over the widths finds them, lo within 1..MAX_SHAPE_HEADS - 1). A candidate's key is
    (0, |ln(width / L / aspect_ratio)|) when its count is within SHAPE_PARAM_TOLERANCE of the target, else
    (1, |ln(count / target)|), then the lower width before the upper, then the shallower depth; the smallest key
    wins. `tests/test_cli_startup_shaping.py` holds this to the rule computed over the whole grid.

    Counts grow with width and with depth, so lo(L) never grows with L and each candidate's width/depth ratio falls
    strictly with L: its shape term |ln ratio| falls until the ratio crosses ``aspect_ratio`` and grows after. The
    scan starts where the lower candidate crosses and walks both ways; a side stops once its shape terms exceed the
    best on-target candidate's, since every depth further out is further off in shape. With no candidate on target
    it visits every depth: the closest count wins then.
    """
    tol = math.log1p(SHAPE_PARAM_TOLERANCE)
    los: dict[int, int] = {}

    def lo(n_layer: int) -> int:
        if n_layer not in los:
            los[n_layer] = min(max(counts.below(n_layer, n_params), 1), MAX_SHAPE_HEADS - 1)
        return los[n_layer]

    def ratio(n_layer: int, j: int) -> float:  # width / depth / aspect_ratio
        return j * step * head_dim / n_layer / aspect_ratio

    best: tuple = (2.0,)  # above every key
    best_shape = math.inf  # the shape term of the best on-target candidate

    def visit(n_layer: int) -> tuple[float, float]:
        """Weigh the two candidates of depth ``n_layer``; their shape terms."""
        nonlocal best, best_shape
        terms = []
        for p, j in enumerate((lo(n_layer), lo(n_layer) + 1)):
            shape = abs(math.log(ratio(n_layer, j)))
            err = abs(math.log(counts.at(n_layer, j) / n_params))
            key = (0.0, shape, p, n_layer) if err <= tol else (1.0, err, p, n_layer)
            if key < best:
                best, best_shape = key, (shape if err <= tol else best_shape)
            terms.append(shape)
        return terms[0], terms[1]

    depths = range(1, MAX_SHAPE_LAYERS + 1)
    if counts.sorted:
        # the first depth whose lower candidate is no wider than the aspect ratio asks (MAX_SHAPE_LAYERS + 1: none)
        cross = 1 + bisect.bisect_left(depths, True, key=lambda n: ratio(n, lo(n)) <= 1.0)
        for n_layer in range(cross - 1, 0, -1):  # shallower: both ratios above 1, both terms grow going up
            if visit(n_layer)[0] > best_shape:
                break
        for n_layer in range(cross, MAX_SHAPE_LAYERS + 1):  # deeper: once both ratios are at most 1, both grow
            lower, upper = visit(n_layer)
            if ratio(n_layer, lo(n_layer) + 1) <= 1.0 and min(lower, upper) > best_shape:
                break
    if not counts.sorted:  # pragma: no cover - a count that falls as the width grows
        best, best_shape = (2.0,), math.inf
        los.update({n: min(max(counts.below_unsorted(n, n_params), 1), MAX_SHAPE_HEADS - 1) for n in depths})
        for n_layer in depths:  # no bisection or pruning holds: every depth, every width counted
            visit(n_layer)
    return best[3], (lo(best[3]) + best[2]) * step


class _WidthCounts:
    """Parameter counts at 1 and 2 layers of one family's shapes with 1, 2, ... steps of heads, counted on demand.

    Counts are affine in the depth, so the two rows give the count of every (layers, heads) shape (`at`). Only the
    widths a target needs are counted (`below`), and kept for later targets on the same base.
    """

    def __init__(self, base: ModelConfig, head_dim: int, count: str, family: Family, step: int) -> None:
        self.base, self.head_dim, self.count, self.family, self.step = base, head_dim, count, family, step
        self.one: list[int] = []
        self.two: list[int] = []
        self.affine: bool | None = None  # whether a second block adds `block_params` (checked once)
        self.sorted = True  # both rows grow with the width so far

    def counted(self, cfg: ModelConfig) -> int:
        pc = count_params(cfg)
        return pc.total if self.count == "total" else pc.non_embedding

    def _add_width(self) -> None:
        fam, base, head_dim = self.family, self.base, self.head_dim
        n_head = (len(self.one) + 1) * self.step
        cfg = fam.shape(base, 1, n_head, head_dim)
        one = self.counted(cfg)
        # a second block adds `block_params` to either count (count_params: every per-layer term is L x a block's);
        # checked once per base against a 2-layer model counted directly, which is used instead should they differ
        if self.affine is None:
            self.affine = one + block_params(cfg) == self.counted(fam.shape(base, 2, self.step, head_dim))
        two = one + block_params(cfg) if self.affine else self.counted(fam.shape(base, 2, n_head, head_dim))
        if self.one and (one < self.one[-1] or two - one < self.two[-1] - self.one[-1]):
            self.sorted = False  # pragma: no cover - no family's count falls with the width
        self.one.append(one)
        self.two.append(two)

    def at(self, n_layer: int, j: int) -> int:
        """Parameters of ``n_layer`` layers with ``j`` steps of heads (``j`` already counted)."""
        return self.one[j - 1] + (n_layer - 1) * (self.two[j - 1] - self.one[j - 1])

    def below(self, n_layer: int, n_params: float) -> int:
        """How many widths have at most ``n_params`` parameters at ``n_layer`` layers (rows sorted): widths are
        counted up to the first above the target (at least two), and bisected."""
        while len(self.one) < MAX_SHAPE_HEADS and (len(self.one) < 2 or self.at(n_layer, len(self.one)) <= n_params):
            self._add_width()
        return bisect.bisect_right(range(1, len(self.one) + 1), n_params, key=lambda j: self.at(n_layer, j))

    def below_unsorted(self, n_layer: int, n_params: float) -> int:  # pragma: no cover - see `_best_shape`
        while len(self.one) < MAX_SHAPE_HEADS:
            self._add_width()
        return sum(self.at(n_layer, j) <= n_params for j in range(1, MAX_SHAPE_HEADS + 1))


# Counts per (base, head width, count, family, head step), as far as any target so far needed; at most `_WIDTH_COUNTS_KEPT`
# bases are kept.
_WIDTH_COUNTS: dict[tuple, _WidthCounts] = {}
_WIDTH_COUNTS_KEPT = 32


def _width_counts(base: ModelConfig, head_dim: int, count: str, family: str, step: int) -> _WidthCounts:
    key = (base, head_dim, count, family, step)
    if key not in _WIDTH_COUNTS and len(_WIDTH_COUNTS) >= _WIDTH_COUNTS_KEPT:
        del _WIDTH_COUNTS[next(iter(_WIDTH_COUNTS))]
    return _WIDTH_COUNTS.setdefault(key, _WidthCounts(base, head_dim, count, FAMILIES[family], step))


def _short(n: float) -> str:
    from ..units import format_count

    return format_count(n)


# CLI architecture option -> ModelConfig field
ARCH_FIELDS = {
    "vocab": "vocab_size", "n_kv_head": "n_kv_head", "ffn": "ffn_dim", "mlp": "mlp", "norm": "norm",
    "pos": "position", "bias": "bias", "tie": "tie_embeddings", "experts": "n_expert", "top_k": "top_k",
    "shared_experts": "n_shared_expert",
}


def with_architecture(cfg: ModelConfig, shape: dict | None = None, **options) -> ModelConfig:
    """``cfg`` with the architecture options given (not None) applied; see `ARCH_FIELDS` for the names.

    ``experts=0`` makes the model dense again (top-k and expert widths go with it). ``shape`` (field names:
    ``n_layer``, ``n_head``, ``n_embd``) is applied in the same step, so a new head count is checked against the
    new KV head count, not the old one (``--n-head 4 --n-kv-head 2`` over a file with 8 KV heads).
    """
    unknown = set(options) - set(ARCH_FIELDS)
    if unknown:
        raise UsageError(f"unknown architecture option(s) {', '.join(sorted(unknown))}")
    changes = {**(shape or {}), **{ARCH_FIELDS[k]: v for k, v in options.items() if v is not None}}
    if not changes:
        return cfg
    if "ffn_dim" in changes:
        changes["mlp_ratio"] = 4.0  # the width is given in units; the ratio goes back to its neutral default
        if cfg.expert_ffn_dim is not None:  # experts with their own width (Qwen2-MoE): --ffn sets that width
            changes["expert_ffn_dim"] = changes["ffn_dim"]
    if "bias" in changes:  # --bias / --no-bias means every linear: per-linear settings of the file go
        changes.update(qkv_bias=None, out_bias=None, mlp_bias=None)
    if changes.get("n_expert") == 0:
        changes.update(top_k=changes.get("top_k", 0), expert_ffn_dim=None, shared_expert_ffn_dim=None,
                       n_shared_expert=changes.get("n_shared_expert", 0), shared_expert_gate=False,
                       router_bias=False)
    return cfg.with_(**changes)


def resolve_model(
    name: str | None = None,
    *,
    n_params: float | None = None,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_embd: int | None = None,
    base: ModelConfig | None = None,
    config_file: str | None = None,
    arch: dict | None = None,
    ways: tuple[str, ...] = tuple(NAMING_OPTIONS),
) -> ModelConfig:
    """One model from exactly one way of naming it: a preset, a config.json, a parameter count, or a shape.

    ``arch`` (options named as in `ARCH_FIELDS`, None = not given) changes the named model's architecture: it
    overrides a preset's or a config file's values, and for a parameter count or an explicit shape it sets the
    block the shaping rule or the shape uses (default: GPT-2's). With ``config_file``, an explicit shape
    (``n_layer`` ...) overrides the file's values as well. ``ways`` (keys of `NAMING_OPTIONS`): the ways the calling
    command offers, which its error messages list (infer has no --params, finetune no shape). A head count that
    does not divide the width, or a bad top-k, is reported in the words of the options given (`option_words`).
    """
    try:
        return _resolve(name, n_params, n_layer, n_head, n_embd, base, config_file, arch, ways)
    except KvHeadCountError as e:
        if n_head is None and n_embd is None and (arch or {}).get("n_kv_head") is None:
            raise  # the preset's or the file's own values: in their field names
        raise kv_head_words(e, n_head is not None) from None
    except HeadCountError as e:
        if n_head is None and n_embd is None:
            raise  # the preset's or the file's own values: in their field names
        raise head_count_words(e, n_head is not None, n_embd is not None) from None
    except ExpertCountError as e:
        raise expert_words(e, arch or {}, name) from None


def _resolve(name, n_params, n_layer, n_head, n_embd, base, config_file, arch, ways) -> ModelConfig:
    """`resolve_model`'s work, in the engine's words."""
    arch = {k: v for k, v in (arch or {}).items() if v is not None}
    shape = (n_layer, n_head, n_embd)
    named = [name is not None, config_file is not None, n_params is not None]
    if sum(named) > 1 or (sum(named) == 1 and any(v is not None for v in shape) and config_file is None):
        raise UsageError(f"name the model one way: {naming_options(ways)}")
    if name is not None:
        return _renamed(with_architecture(get_preset(name), **arch), arch)
    if config_file is not None:
        from ..hf_config import read_hf_config

        given = {k: v for k, v in zip(("n_layer", "n_head", "n_embd"), shape) if v is not None}
        # the shape and --n-kv-head apply before the file is checked: they can mend a head count the file breaks
        cfg = read_hf_config(config_file, {**given, "n_kv_head": arch.get("n_kv_head")})
        return _renamed(with_architecture(cfg, given, **arch), {**given, **arch})
    if n_params is not None:
        if "ffn" in arch:
            raise UsageError("--ffn fixes the MLP width, but with --params the shaping rule sets it from the width; "
                             "drop --ffn, or give the shape (--n-layer, --n-head, --n-embd)")
        return config_for_params(n_params, base=with_architecture(base or PRESETS["gpt2"], **arch))
    if not any(v is not None for v in shape):
        raise UsageError(f"name the model: {naming_options(ways)}")
    if any(v is None for v in shape):
        raise UsageError("an explicit shape needs all of --n-layer, --n-head and --n-embd")
    start = base or ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    cfg = start.with_(n_layer=n_layer, n_head=n_head, n_embd=n_embd, name=f"{n_layer}x{n_embd}")
    return with_architecture(cfg, **arch)


def _renamed(cfg: ModelConfig, changes: dict) -> ModelConfig:
    """A named model whose values were overridden says so in its name (``llama-3.1-8b (n_layer=2)``)."""
    return _named_with(cfg, changes, {}) if changes else cfg


def with_fields_named(cfg: ModelConfig, **changes) -> ModelConfig:
    """``cfg`` with plain field changes (``block_size``, ``vocab_size``; None = not given) that its name records,
    joining the list of overrides it already names (``gpt2 (mlp=swiglu, block_size=256)``)."""
    changes = {k: v for k, v in changes.items() if v is not None and v != getattr(cfg, k)}
    return _named_with(cfg, changes, changes) if changes else cfg


# Where `_named_with` records the overrides it wrote into a model's name: (the name before them, the overrides), kept
# on the instance beside the fields as `ModelConfig.__hash__` keeps its hash (a `replace` drops it with the name it
# describes). Only a list recorded here is joined; a name the model came with ("my model (v2)") is never opened.
_NAME_OVERRIDES = "_name_overrides"


def _named_with(cfg: ModelConfig, said: dict, changes: dict) -> ModelConfig:
    """``cfg`` with the field ``changes`` and one label naming the overrides ``said`` (options as their values:
    ``mlp=swiglu``), joined to the list of overrides it already names when this function wrote that list
    (``gpt2 (mlp=swiglu, block_size=256)``; ``my model (v2) (n_layer=2)``, not ``my model (v2, n_layer=2)``)."""
    base, before = cfg.__dict__.get(_NAME_OVERRIDES, (cfg.name, ()))
    if cfg.name != _label(base, before):  # renamed since: the record no longer describes this name
        base, before = cfg.name, ()
    overrides = before + tuple(f"{k}={getattr(v, 'value', v)}" for k, v in said.items())
    out = cfg.with_(**changes, name=_label(base, overrides))
    object.__setattr__(out, _NAME_OVERRIDES, (base, overrides))
    return out


def _label(base: str | None, overrides: tuple[str, ...]) -> str | None:
    """``base (k=v, ...)``, or ``base`` itself with no overrides."""
    return f"{base} ({', '.join(overrides)})" if overrides else base
