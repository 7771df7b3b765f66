"""The model family a plan shapes its candidates in (`flopscalc plan --family llama`, issue 12).

A family (`model.FAMILIES`) fixes vocabulary, block kind, head width, key/value heads and the MLP width rule; the
planner shapes sizes around the law's optimum with its rule (`model.config_for_params`) and offers its published
models (`Family.presets`) beside them. Architecture options (``--vocab``, ``--mlp``, ... as
`model.with_architecture` names them) change the family's base and presets; options the shaping rule would
overwrite are refused, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..model import FAMILIES, Family, ModelConfig, config_for_params, get_family, with_architecture
from ..model.shaping import TP_HEAD_MULTIPLE

# The family shaped when none is named: GPT-2's, the reference trainer's (the main job's plan stays as it was).
DEFAULT_FAMILY = "gpt2"
# What reports call each family's presets.
FAMILY_LABELS = {"gpt2": "GPT-2", "llama": "Llama 3"}


@dataclass(frozen=True)
class ShapeFamily:
    """The family a plan shapes in: its rule, the base it starts from and its presets, options applied."""

    family: Family
    base: ModelConfig  # the family's base: context at least the training sequence, options applied
    presets: dict[str, ModelConfig]  # display name -> config: the family's published models, options applied
    head_multiple: int = 1  # shaped head counts are multiples of this (`TP_HEAD_MULTIPLE` when TP may split them)

    @property
    def key(self) -> str:
        return self.family.key

    def shape(self, n_params: float, count: str = "total") -> ModelConfig:
        """The family's model of about ``n_params`` parameters (``count``: "total" or "non_embedding"), its head
        count a multiple of `head_multiple`."""
        return config_for_params(n_params, count=count, family=self.key, base=self.base,
                                 head_multiple=self.head_multiple)

    @property
    def label(self) -> str:
        return FAMILY_LABELS.get(self.key, self.key)


def _given(arch: dict | None) -> dict:
    return {k: v for k, v in (arch or {}).items() if v is not None}


def _refuse_overridden(fam: Family, given: dict) -> None:
    """One line for each option the shaping rule would overwrite or cannot honour."""
    if "ffn" in given:
        raise UsageError("--ffn fixes the MLP width, but the plan's shaping rule sets it from each shape's width; "
                         "drop --ffn, or plan one model with --config or --model")
    if "n_kv_head" in given and fam.kv_heads:
        raise UsageError(f"the {fam.key} family's shaping rule uses {fam.kv_heads} key/value heads at every size "
                         f"({fam.source}); drop --n-kv-head, or plan one model with --config")
    if (given.get("experts") or 0) > 0:
        raise UsageError("the shaping rule matches a total parameter count, but a mixture of experts' scaling-law N "
                         "is its active count: plan one MoE with --config or --model (e.g. mixtral-8x7b), or drop "
                         "--experts")


def shape_family(family: str | None, seq_len: int | None, arch: dict | None = None, *,
                 tensor_parallel: bool = False) -> ShapeFamily:
    """The family ``family`` (default `DEFAULT_FAMILY`) for sequence ``seq_len`` with options ``arch`` applied.

    ``tensor_parallel``: the plan searches layouts (beyond one node), so its shapes keep head counts a tensor-parallel
    group of up to 8 GPUs can split (`TP_HEAD_MULTIPLE`); a one-node plan shapes as before.
    """
    fam = get_family(family or DEFAULT_FAMILY)
    given = _given(arch)
    _refuse_overridden(fam, given)
    seq_len = seq_len or 0
    base = with_architecture(fam.base.with_(block_size=max(fam.base.block_size, seq_len)), **given)
    said = ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in given.items())
    presets = {}
    for name, cfg in fam.preset_configs().items():
        cfg = with_architecture(cfg, **given)
        cfg = cfg.with_(name=f"{name} ({said})") if given else cfg
        presets[cfg.name] = cfg if cfg.block_size >= seq_len else cfg.with_(block_size=seq_len)
    return ShapeFamily(fam, base, presets, TP_HEAD_MULTIPLE if tensor_parallel else 1)


def shaped_model(n_params: float, family: str | None, seq_len: int | None, arch: dict | None = None) -> ModelConfig:
    """One model of about ``n_params`` parameters (all of them) shaped by ``family``'s rule (`--params` with
    `--family`)."""
    sf = shape_family(family, seq_len, arch)
    return config_for_params(n_params, family=sf.key, base=sf.base)


def _block_kind(cfg: ModelConfig) -> tuple:
    """What a family fixes besides depth and width: the block's kind and the vocabulary."""
    return (cfg.mlp, cfg.norm, cfg.pos, cfg.tie_embeddings, cfg.bias, cfg.vocab_size, cfg.is_moe, cfg.parallel_block)


def model_family(cfg: ModelConfig) -> str | None:
    """The family whose base has ``cfg``'s block and vocabulary (its presets are the ones to compare it with); None
    for any other model (Mixtral, Pythia, a config.json of another kind)."""
    return next((key for key, fam in FAMILIES.items() if _block_kind(fam.base) == _block_kind(cfg)), None)
