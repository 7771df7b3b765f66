"""Model presets, each transcribed from its published config with the source named.

``PRESETS`` keeps the four GPT-2 models (the reference trainer's family; the planner offers them as candidates);
``FAMILY_PRESETS`` holds the other families; ``ALL_PRESETS`` both, which is what ``get_preset`` and
``flopscalc models`` use. The tests check every count against the ``transformers`` module built from the same
config and against the totals the authors published where they did (Pythia, Table 1; Llama 3.1 8B). Llama 3 and
Llama 3.1 are separate presets (the same shapes, contexts of 8,192 and 131,072 tokens): no alias turns one into the
other (`REFUSED_NAMES` lists the names that would pick one product among several).
"""

from __future__ import annotations

from ..errors import UsageError
from .config import ModelConfig

# GPT-2 family: n_layer and d_model from Radford et al. 2019, Table 2; heads from the released
# hparams.json (head_dim 64); all use vocab 50257, context 1024, biases and tied embeddings.
PRESETS: dict[str, ModelConfig] = {
    "gpt2": ModelConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2"),
    "gpt2-medium": ModelConfig(n_layer=24, n_head=16, n_embd=1024, name="gpt2-medium"),
    "gpt2-large": ModelConfig(n_layer=36, n_head=20, n_embd=1280, name="gpt2-large"),
    "gpt2-xl": ModelConfig(n_layer=48, n_head=25, n_embd=1600, name="gpt2-xl"),
}
_GPT2_SOURCE = "Radford et al. 2019, Table 2; openai/gpt-2 hparams.json"


def llama_style(name: str, n_layer: int, n_embd: int, n_head: int, n_kv_head: int, ffn_dim: int, vocab_size: int,
                block_size: int, **family) -> ModelConfig:
    """A Llama-style decoder (Touvron et al. 2023, sec. 2.2): RMSNorm, RoPE, SwiGLU, no biases, untied head."""
    base = {"bias": False, "tie_embeddings": False, "position": "rope", "mlp": "swiglu", "norm": "rmsnorm"}
    return ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_kv_head=n_kv_head, ffn_dim=ffn_dim,
                       vocab_size=vocab_size, block_size=block_size, name=name, **{**base, **family})


def pythia(name: str, n_layer: int, n_embd: int, n_head: int, vocab_size: int) -> ModelConfig:
    """A Pythia model (GPT-NeoX layout): LayerNorm with biases, partial RoPE, parallel attention + MLP, 4d GELU
    MLP, untied head, context 2048 (Biderman et al. 2023, sec. 2.1 and Table 1)."""
    return ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size, block_size=2048,
                       tie_embeddings=False, position="rope", parallel_block=True, fused_projections=True,
                       name=name)  # query_key_value as config.json reads it (hf_config); rotary base and
    # layer_norm_eps: 10000 and 1e-5 in every Pythia config.json (rotary_emb_base, layer_norm_eps): the defaults


_HF = "config.json of huggingface.co/"
# name: (config, source). Shapes are those of the published config.json (the 'source' repository), whose
# values the papers' tables also give (Llama 2: Touvron et al. 2023, Table 1 and sec. 2.2; Llama 3 and 3.1: Llama
# Team 2024, Table 3; Mistral: Jiang et al. 2023, Table 1; Mixtral: Jiang et al. 2024, Table 1; Qwen2.5:
# Qwen Team 2024, Table 1; OLMo 2: OLMo Team 2024, Table 1; Pythia: Biderman et al. 2023, Table 1).
# RoPE base and norm epsilon (rope_theta, rms_norm_eps) from the same files: Llama 2 10000 (no rope_theta: the
# default) and 1e-5; Llama 3 and 3.1 500000 and 1e-5 (also Llama Team 2024, Table 3); Mistral 7B 10000 and 1e-5; Mixtral
# 1e6 and 1e-5; Qwen2.5 7B 1e6 and 1e-6, 72B 1e6 and 1e-5; OLMo 2 7B 500000 and 1e-6.
_L3 = {"rope_theta": 500000.0}
_QWEN = {"rope_theta": 1e6, "qkv_bias": True}
_FAMILY: dict[str, tuple[ModelConfig, str]] = {
    "llama-2-7b": (llama_style("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096), _HF + "meta-llama/Llama-2-7b-hf"),
    "llama-2-13b": (llama_style("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096),
                    _HF + "meta-llama/Llama-2-13b-hf"),
    "llama-2-70b": (llama_style("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096),
                    _HF + "meta-llama/Llama-2-70b-hf"),
    # Llama 3 (April 2024) is its own release: Llama 3.1's shapes at an 8,192-token context, no rope_scaling
    # (config.json: max_position_embeddings 8192, rope_scaling null, rope_theta 500000, rms_norm_eps 1e-5)
    "llama-3-8b": (llama_style("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, **_L3),
                   _HF + "meta-llama/Meta-Llama-3-8B"),
    "llama-3-70b": (llama_style("llama-3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, **_L3),
                    _HF + "meta-llama/Meta-Llama-3-70B"),
    "llama-3.1-8b": (llama_style("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072, **_L3),
                     _HF + "meta-llama/Llama-3.1-8B"),
    "llama-3.1-70b": (llama_style("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, 131072, **_L3),
                      _HF + "meta-llama/Llama-3.1-70B"),
    "llama-3.1-405b": (llama_style("llama-3.1-405b", 126, 16384, 128, 8, 53248, 128256, 131072, **_L3),
                       _HF + "meta-llama/Llama-3.1-405B"),
    # sliding_window 4096 in the same config.json (Jiang et al. 2023, Table 1: window_size 4096)
    "mistral-7b": (llama_style("mistral-7b", 32, 4096, 32, 8, 14336, 32000, 32768, attn_window=4096),
                   _HF + "mistralai/Mistral-7B-v0.1"),
    "mixtral-8x7b": (llama_style("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 32768, n_expert=8, top_k=2,
                                     rope_theta=1e6),
                     _HF + "mistralai/Mixtral-8x7B-v0.1"),
    "qwen2.5-7b": (llama_style("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, 131072, norm_eps=1e-6, **_QWEN),
                   _HF + "Qwen/Qwen2.5-7B"),
    "qwen2.5-72b": (llama_style("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, 131072, **_QWEN),
                    _HF + "Qwen/Qwen2.5-72B"),
    "olmo-2-7b": (llama_style("olmo-2-7b", 32, 4096, 32, 32, 11008, 100352, 4096, qk_norm="full",
                              rope_theta=500000.0, norm_eps=1e-6),
                  _HF + "allenai/OLMo-2-1124-7B"),
    "pythia-160m": (pythia("pythia-160m", 12, 768, 12, 50304), _HF + "EleutherAI/pythia-160m"),
    "pythia-410m": (pythia("pythia-410m", 24, 1024, 16, 50304), _HF + "EleutherAI/pythia-410m"),
    "pythia-1b": (pythia("pythia-1b", 16, 2048, 8, 50304), _HF + "EleutherAI/pythia-1b"),
    "pythia-1.4b": (pythia("pythia-1.4b", 24, 2048, 16, 50304), _HF + "EleutherAI/pythia-1.4b"),
    "pythia-2.8b": (pythia("pythia-2.8b", 32, 2560, 32, 50304), _HF + "EleutherAI/pythia-2.8b"),
    "pythia-6.9b": (pythia("pythia-6.9b", 32, 4096, 32, 50432), _HF + "EleutherAI/pythia-6.9b"),
    "pythia-12b": (pythia("pythia-12b", 36, 5120, 40, 50688), _HF + "EleutherAI/pythia-12b"),
}

# name: (sequence length of pretraining in tokens, source). What the training commands default to
# (`model.sequence.default_train_seq`); the context (block_size, the config.json's max_position_embeddings) is longer
# where a long-context phase followed. Where the two are equal, the ModelConfig stores train_seq as None.
_GPT2_SEQ = (1024, "Radford et al. 2019, sec. 2.3")  # the context grew from 512 to 1024 tokens
_LLAMA2_SEQ = (4096, "Touvron et al. 2023, sec. 2.2")  # the context doubled from Llama 1's 2k to 4k (Table 1)
# pre-trained with an 8K-token context window, then extended to 128K in a long-context pre-training stage
# (sec. 3.4.2); the 8B and 70B were pre-trained the same way
_LLAMA3_SEQ = (8192, "Dubey et al. 2024, sec. 3.4.1")
# the initial pre-training phase at 4,096 tokens; the final phase extends it to 32,768 (long-context pre-training);
# the section is not named here: the report was read through summaries, which agree on both numbers
# Llama 3 8B and 70B: "Context length 8k" for both sizes (Meta Llama 3 model card, meta-llama/llama3 MODEL_CARD.md),
# the context of their config.json, with no long-context phase (that came with Llama 3.1)
_LLAMA3_RELEASE_SEQ = (8192, "Meta Llama 3 model card (meta-llama/llama3 MODEL_CARD.md), context length 8k")
_QWEN25_SEQ = (4096, "Qwen Team 2024, arXiv:2412.15115, initial phase")
_PYTHIA_SEQ = (2048, "Biderman et al. 2023, sec. 2.1")  # 2048-token sequences, every size
PRETRAIN_SEQ: dict[str, tuple[int, str]] = {
    **dict.fromkeys(PRESETS, _GPT2_SEQ),
    **dict.fromkeys(("llama-2-7b", "llama-2-13b", "llama-2-70b"), _LLAMA2_SEQ),
    **dict.fromkeys(("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"), _LLAMA3_SEQ),
    **dict.fromkeys(("llama-3-8b", "llama-3-70b"), _LLAMA3_RELEASE_SEQ),
    "mistral-7b": (8192, "Jiang et al. 2023, Table 1"),  # context_len 8192 (sliding window 4096)
    "mixtral-8x7b": (32768, "Jiang et al. 2024, sec. 2"),  # "a context size of 32k tokens"
    **dict.fromkeys(("qwen2.5-7b", "qwen2.5-72b"), _QWEN25_SEQ),
    "olmo-2-7b": (4096, "OLMo Team 2024, arXiv:2501.00656"),  # 4096 tokens, up from OLMo 1's 2048 (as OLMo-0424)
    **dict.fromkeys((k for k in _FAMILY if k.startswith("pythia-")), _PYTHIA_SEQ),
}
FAMILY_PRESETS: dict[str, ModelConfig] = {k: cfg.with_(train_seq=PRETRAIN_SEQ[k][0]) for k, (cfg, _) in _FAMILY.items()}
PRESETS = {k: cfg.with_(train_seq=PRETRAIN_SEQ[k][0]) for k, cfg in PRESETS.items()}  # equal to the context: unchanged
ALL_PRESETS: dict[str, ModelConfig] = {**PRESETS, **FAMILY_PRESETS}
PRESET_SOURCES: dict[str, str] = {**{k: _GPT2_SOURCE for k in PRESETS}, **{k: s for k, (_, s) in _FAMILY.items()}}
# Each preset's pretraining length and its source (`PRETRAIN_SEQ`), keyed on the preset's configuration itself
# (every field, its name included), never on a name: a model named like a preset (a config.json, a user's
# ModelConfig) or a preset whose shape or architecture was changed is not the model the source describes, and
# borrows no citation (`model.sequence.seq_source`). (preset name, tokens, source)
PRETRAIN_SEQ_SOURCES: dict[ModelConfig, tuple[str, int, str]] = {cfg: (k, *PRETRAIN_SEQ[k])
                                                                 for k, cfg in ALL_PRESETS.items()}

PRESET_ALIASES = {
    "gpt2-small": "gpt2", "small": "gpt2", "124m": "gpt2", "gpt2-124m": "gpt2",
    "medium": "gpt2-medium", "350m": "gpt2-medium", "gpt2-350m": "gpt2-medium",
    "large": "gpt2-large", "774m": "gpt2-large", "gpt2-774m": "gpt2-large",
    "xl": "gpt2-xl", "1.5b": "gpt2-xl", "gpt2-1.5b": "gpt2-xl",
    "llama2-7b": "llama-2-7b", "llama2-13b": "llama-2-13b", "llama2-70b": "llama-2-70b",
    "llama3-8b": "llama-3-8b", "llama3.1-8b": "llama-3.1-8b",
    "llama3-70b": "llama-3-70b", "llama3.1-70b": "llama-3.1-70b",
    "llama3.1-405b": "llama-3.1-405b", "olmo2-7b": "olmo-2-7b",
}
# Names an alias once turned into another product (another release, size or context): refused with the presets the
# user may have meant. A forgiving lookup suggests; it never picks one product for another.
REFUSED_NAMES = {
    "mistral": "names several models (Mistral 7B v0.1 to v0.3, and larger ones); the preset is mistral-7b "
               "(Mistral-7B-v0.1); for another, give its config.json with --config",
    "mixtral": "names two released sizes (8x7B and 8x22B); the preset is mixtral-8x7b; for 8x22B, give its "
               "config.json with --config",
    "qwen2.5-7b-instruct": "is not the base model: its config.json states a 32,768-token context where Qwen2.5-7B's "
                           "states 131,072; use --model qwen2.5-7b for the base, or --config with the instruct "
                           "model's config.json",
}


def get_preset(name: str) -> ModelConfig:
    """Look up a preset by name (``flopscalc models`` lists them) or an alias (``llama3-8b``, ``xl``)."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in REFUSED_NAMES:
        raise UsageError(f"model {name!r} {REFUSED_NAMES[key]}")
    key = PRESET_ALIASES.get(key, key)
    if key in ALL_PRESETS:
        return ALL_PRESETS[key]
    close = near_presets(key)
    listed = f"{', '.join(close[:-1])} or {close[-1]}" if len(close) > 1 else "".join(close)
    hint = f" (did you mean {listed}?)" if close else ""
    raise UsageError(f"unknown model {name!r}{hint}; accepted: {', '.join(ALL_PRESETS)} ('flopscalc models' lists "
                     "them)")


# Most presets a "did you mean" names: every Pythia size (7), the largest family, for '--model pythia'.
MAX_SUGGESTED_PRESETS = 7


def near_presets(key: str) -> list[str]:
    """Presets a misspelt name may mean (suggested, never substituted): the same letters and digits without
    separators (gpt-2, gpt2xl), then presets the name begins (pythia: every size), then spelling neighbours
    (difflib: llama-3.1-7b -> llama-3.1-70b, llama-3.1-8b), aliases mapped to their presets."""
    import difflib

    def bare(text: str) -> str:
        return "".join(c for c in text if c.isalnum())

    names = list(ALL_PRESETS) + list(PRESET_ALIASES)
    same = [n for n in names if bare(n) == bare(key)]
    prefixed = [n for n in ALL_PRESETS if n.startswith(key)] if len(key) >= 3 else []
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    found = [PRESET_ALIASES.get(n, n) for n in (*same, *prefixed, *close)]
    return list(dict.fromkeys(found))[:MAX_SUGGESTED_PRESETS]
