"""Architecture description, presets and exact parameter counts (``from flopscalc.model import ...``).

- `config`: `ModelConfig`, one description from GPT-2 to Llama-style and mixture-of-experts models;
- `counts`: `ParamCount` / `count_params`, exact counts by component (total, non-embedding, active);
- `presets`: the published models, each with its source; `get_preset`;
- `shaping`: the shaping rule per family (`config_for_params`) and `resolve_model`;
- `sequence`: `default_train_seq`, the training sequence of a model when no ``--seq`` is given, and its source.
"""

from .config import (
    DEFAULT_HEAD_DIM,
    GPT2_BLOCK_SIZE,
    GPT2_VOCAB_SIZE,
    Mlp,
    ModelConfig,
    Norm,
    Position,
    QkNorm,
    window_cuts,
)
from .counts import ParamCount, block_params, count_params, final_norm_params, params_outside_blocks
from .presets import (
    ALL_PRESETS,
    FAMILY_PRESETS,
    PRESET_ALIASES,
    PRESET_SOURCES,
    PRESETS,
    PRETRAIN_SEQ,
    get_preset,
)
from .sequence import SeqSource, default_train_seq, past_context, past_context_warning, seq_source
from .shaping import (
    ARCH_FIELDS,
    DEFAULT_ASPECT_RATIO,
    FAMILIES,
    MAX_SHAPE_HEADS,
    MAX_SHAPE_LAYERS,
    SHAPE_GIVE_UP,
    SHAPE_PARAM_TOLERANCE,
    Family,
    config_for_params,
    gated_ffn_dim,
    get_family,
    llama3_ffn_dim,
    resolve_model,
    with_architecture,
    with_fields_named,
)

__all__ = [
    "ALL_PRESETS",
    "ARCH_FIELDS",
    "DEFAULT_ASPECT_RATIO",
    "DEFAULT_HEAD_DIM",
    "FAMILIES",
    "FAMILY_PRESETS",
    "GPT2_BLOCK_SIZE",
    "GPT2_VOCAB_SIZE",
    "MAX_SHAPE_HEADS",
    "MAX_SHAPE_LAYERS",
    "PRESETS",
    "PRESET_ALIASES",
    "PRESET_SOURCES",
    "PRETRAIN_SEQ",
    "SHAPE_GIVE_UP",
    "SHAPE_PARAM_TOLERANCE",
    "Family",
    "Mlp",
    "ModelConfig",
    "Norm",
    "ParamCount",
    "Position",
    "QkNorm",
    "SeqSource",
    "block_params",
    "config_for_params",
    "count_params",
    "default_train_seq",
    "final_norm_params",
    "gated_ffn_dim",
    "get_family",
    "get_preset",
    "llama3_ffn_dim",
    "params_outside_blocks",
    "past_context",
    "past_context_warning",
    "resolve_model",
    "seq_source",
    "window_cuts",
    "with_architecture",
    "with_fields_named",
]
