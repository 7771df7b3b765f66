"""Read a Hugging Face ``config.json`` (offline, no ``transformers``) into a `ModelConfig`.

Each supported ``model_type`` maps its fields to the architecture description the way the ``transformers``
modelling code builds the module (``models/<type>/modeling_<type>.py`` and the defaults of
``configuration_<type>.py``, transformers 5.24); the tests build that module from the same file on the meta device
and compare ``sum(p.numel())`` with our count. A missing field, an unknown ``model_type`` or a setting the
description cannot hold is one line naming it (UsageError, exit 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UsageError
from .model import ModelConfig
from .model.option_words import KvHeadCountError, nearest_divisors

# hidden_act values of a gated MLP: SiLU/Swish gives SwiGLU, GELU gives GeGLU (Shazeer 2020, eq. 5-6)
_SWISH = ("silu", "swish")
_GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python")


# Largest size a config.json field takes: a dimension PyTorch can hold (torch.Size is int64: 2**63 - 1), so no
# transformers module could be built from a larger one; a 400-digit n_embd came back as a 400-digit error line.
MAX_FIELD_SIZE = 2**63 - 1


class _Fields:
    """Typed access to one config's fields, every failure one line naming the field."""

    def __init__(self, data: dict, where: str, model_type: str):
        self.data, self.where, self.model_type = data, where, model_type

    def _fail(self, key: str, why: str) -> UsageError:
        return UsageError(f"{self.where}: field '{key}' {why} (model_type {self.model_type!r})")

    def int(self, key: str, default: Any = ..., *, nullable: bool = False) -> int | None:
        """``key`` as a positive int; absent: ``default`` (``...``: required). Null is None where it has a meaning
        (``nullable``, or a None default: head_dim, num_key_value_heads, n_inner) and refused elsewhere, as
        transformers' strict config classes refuse it ("Field 'intermediate_size' expected int, got NoneType")."""
        value = self.data.get(key, default)
        if value is ...:
            raise self._fail(key, "is missing; a config.json of this model type has it")
        if value is None and default is not None and not nullable:
            keep = "" if default is ... else f" or leave the field out (transformers' default: {default})"
            raise self._fail(key, f"is null; give a positive integer{keep}, as transformers requires")
        if value is None or value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._fail(key, f"must be a positive integer, got {value!r}")
        if value > MAX_FIELD_SIZE:  # digits = bits x log10(2): str() of a long int is slow (refused past 4,300)
            raise self._fail(key, f"must be at most 2**63 - 1 (PyTorch's int64 sizes), got a number of about "
                                  f"{int(value.bit_length() * math.log10(2))} digits")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value

    def float(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise self._fail(key, f"must be a positive number (and finite), got {value!r}")
        return float(value)

    def rope_theta(self, default: float, key: str = "rope_theta") -> float:
        """RoPE's base where transformers 5 looks for it: ``rope_parameters`` (or the older ``rope_scaling``) dict
        first, then the top-level field, then the model type's default (``RotaryEmbeddingConfigMixin``)."""
        for nested in ("rope_parameters", "rope_scaling"):
            block = self.data.get(nested)
            if isinstance(block, dict) and block.get("rope_theta") is not None:
                return _Fields(block, self.where, self.model_type).float("rope_theta", default)
        return self.float(key, default)

    def pretraining_context(self, context: int, class_original: int | None = None) -> int | None:
        """The context before RoPE scaling stretched it, where the config states one shorter than ``context``:
        ``rope_scaling`` (or ``rope_parameters``) ``original_max_position_embeddings``, the length transformers'
        Llama 3 / YaRN / LongRoPE scaling takes as trained (``modeling_rope_utils``); Llama 3.1 states 8192, the
        length it was pretrained at before its long-context phase (Dubey et al. 2024, sec. 3.4). None otherwise.

        ``class_original``: the default of a config class that holds the field at the top level (Phi3Config: 4096),
        which transformers gives priority over the nested one for the extending scalings
        (``standardize_rope_params``); Phi-3.5 mini states 4096 there, its pretraining length before LongRoPE took
        it to 128K (Abdin et al. 2024, arXiv:2404.14219, sec. 2)."""
        if class_original is not None:
            block = next((b for b in (self.data.get(k) for k in ("rope_parameters", "rope_scaling"))
                          if isinstance(b, dict)), None)
            if block is not None and block.get("rope_type", block.get("type")) in _EXTENDING_ROPE:
                if "original_max_position_embeddings" in self.data and \
                        self.data["original_max_position_embeddings"] is None:  # transformers copies a null over
                    raise self._fail("original_max_position_embeddings", "is null; give the pretraining length (a "
                                     "positive integer) or leave the field out")  # the nested length: cannot scale
                value = self.int("original_max_position_embeddings", class_original)
                return value if value < context else None
        for nested in ("rope_parameters", "rope_scaling"):
            block = self.data.get(nested)
            if isinstance(block, dict) and block.get("original_max_position_embeddings") is not None:
                value = _Fields(block, self.where, self.model_type).int("original_max_position_embeddings")
                return value if value < context else None
        return None

    def act(self, *keys: str, default: str) -> str:
        """The gated MLP kind from the activation field (the first of ``keys`` present)."""
        key = next((k for k in keys if self.data.get(k) is not None), keys[0])
        value = self.data.get(key, default)
        if value in _SWISH:
            return "swiglu"
        if value in _GELU:
            return "geglu"
        raise self._fail(key, f"is {value!r}; a gated MLP with silu/swish (SwiGLU) or gelu (GeGLU) is modelled")


# RoPE scalings that extend a pretraining length (transformers 5.24 modeling_rope_utils.standardize_rope_params moves
# original_max_position_embeddings into their parameters; "su" is Phi-3's old name for LongRoPE, configuration_phi3.py)
_EXTENDING_ROPE = ("llama3", "yarn", "longrope", "su")
# Phi3Config.original_max_position_embeddings's default (configuration_phi3.py, transformers 5.24)
_PHI3_ORIGINAL = 4096

# transformers' defaults when a config.json omits the field (configuration_<type>.py, transformers 5.24): RoPE base
# 10000 (RotaryEmbeddingConfigMixin.default_theta; Mixtral's class sets 1e6), rms_norm_eps 1e-6 for Llama, Mistral,
# Qwen2, Qwen2-MoE and Gemma, 1e-5 for Mixtral, OLMo 2 and Phi-3; GPT-2's layer_norm_epsilon and GPT-NeoX's
# layer_norm_eps 1e-5; OLMo's OlmoLayerNorm has no field and fixes eps=1e-5 (modeling_olmo.py).
_THETA = 10000.0
_MIXTRAL_THETA = 1e6
_EPS_1E6 = 1e-6
_EPS_1E5 = 1e-5
# GemmaConfig.head_dim's default (configuration_gemma.py, transformers 5.24): a config.json without the field gets
# heads of 256 whatever its width (Gemma 7B: 16 x 256 = 4096 for a width of 3072; Gemma Team 2024, Table 1)
_GEMMA_HEAD_DIM = 256
# num_key_value_heads's class default where it is not None (= all heads): MistralConfig and MixtralConfig 8,
# GemmaConfig 16 (typed int: null refused), Qwen2Config 32 (int | None: null = all heads), Qwen2MoeConfig 16
# (transformers 5.24 configuration_<type>.py; a null there fails its validation)
_KV_MISTRAL = _KV_MIXTRAL = 8
_KV_GEMMA = _KV_QWEN2_MOE = 16
_KV_QWEN2 = 32
# The transformers config class whose key/value-head default a reader fills in, named when that default breaks the
# shape (review r15: a Qwen2 file without num_key_value_heads and 8 heads got "n_kv_head (32)", naming no field).
_KV_DEFAULT_CLASS = {"mistral": "MistralConfig", "mixtral": "MixtralConfig", "qwen2": "Qwen2Config",
                     "qwen2_moe": "Qwen2MoeConfig", "gemma": "GemmaConfig"}


def _decoder(f: _Fields, *, tie: bool, mlp: str | None = None, eps: float = _EPS_1E6,
             theta: float = _THETA, class_original: int | None = None, head_dim: int | None = None,
             kv_heads: int | None = None, kv_null: bool = False, **family) -> dict:
    """The fields every Llama-style config shares (LlamaConfig's names); ``eps`` / ``theta`` / ``head_dim`` /
    ``kv_heads``: the type's defaults (None: hidden_size / num_attention_heads, all heads); ``kv_null``: the class
    takes a null num_key_value_heads as all heads (a None default does too); ``class_original``: see
    `_Fields.pretraining_context`."""
    n_embd, n_head = f.int("hidden_size"), f.int("num_attention_heads")
    head_dim = f.int("head_dim", head_dim)
    context = f.int("max_position_embeddings")
    return dict(
        n_layer=f.int("num_hidden_layers"), n_head=n_head, n_embd=n_embd,
        n_kv_head=f.int("num_key_value_heads", kv_heads, nullable=kv_null),
        head_size=head_dim if head_dim is not None and head_dim * n_head != n_embd else None,
        ffn_dim=f.int("intermediate_size"), vocab_size=f.int("vocab_size"),
        block_size=context, train_seq=f.pretraining_context(context, class_original),
        tie_embeddings=f.bool("tie_word_embeddings", tie),
        mlp=mlp or f.act("hidden_act", default="silu"), norm="rmsnorm", position="rope", bias=False,
        rope_theta=f.rope_theta(theta), norm_eps=f.float("rms_norm_eps", eps), **family,
    )


# Sliding-window attention (Mistral 7B, Jiang et al. 2023, arXiv:2310.06825, sec. 2): config.json's sliding_window,
# null = full attention. A missing field takes the class default (transformers 5.24): MistralConfig 4096,
# Phi3Config and MixtralConfig None; Qwen2Config and Qwen2MoeConfig keep it only when use_sliding_window is true.
_MISTRAL_WINDOW = 4096


def _window(f: _Fields, default: int | None = None) -> int | None:
    """``sliding_window`` as a positive int, or None (null, absent with no class default)."""
    return f.int("sliding_window", default, nullable=True)  # null: full attention (MistralConfig: int | None)


def _qwen_window(f: _Fields, *, every_other: bool = False) -> int | None:
    """Qwen2's window: only with use_sliding_window; Qwen2Config slides the layers i >= max_window_layers
    (configuration_qwen2.py layer_types), so all or none of them is modelled and a mix refused. Qwen2-MoE slides
    every other layer below max_window_layers (configuration_qwen2_moe.py): a mix whenever it is on."""
    if not f.bool("use_sliding_window", False):
        return None
    window = _window(f, _MISTRAL_WINDOW)
    if window is None:
        return None
    start, n_layer = f.data.get("max_window_layers", 28), f.int("num_hidden_layers")  # the class default: 28
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise f._fail("max_window_layers", f"must be a non-negative integer, got {start!r}")
    if every_other or 0 < start < n_layer:
        raise f._fail("use_sliding_window", "slides some layers and not others (max_window_layers); a per-layer "
                      "mix of windowed and full attention is not modelled (set it false to count full attention)")
    return window if start == 0 else None


def _llama(f: _Fields) -> dict:
    attention_bias = f.bool("attention_bias", False)  # LlamaAttention: q, k, v and o share attention_bias
    return _decoder(f, tie=False, qkv_bias=attention_bias, out_bias=attention_bias,
                    mlp_bias=f.bool("mlp_bias", False))


def _mistral(f: _Fields) -> dict:
    return _decoder(f, tie=False, attn_window=_window(f, _MISTRAL_WINDOW), kv_heads=_KV_MISTRAL)


def _mixtral(f: _Fields) -> dict:
    return _decoder(f, tie=False, n_expert=f.int("num_local_experts", 8), top_k=f.int("num_experts_per_tok", 2),
                    eps=_EPS_1E5, theta=_MIXTRAL_THETA, attn_window=_window(f), kv_heads=_KV_MIXTRAL)


def _qwen2(f: _Fields) -> dict:
    # Qwen2Attention: bias on q, k, v; none on o
    return _decoder(f, tie=False, qkv_bias=True, attn_window=_qwen_window(f), kv_heads=_KV_QWEN2, kv_null=True)


def _qwen2_moe(f: _Fields) -> dict:
    if f.data.get("mlp_only_layers"):
        raise f._fail("mlp_only_layers", "lists dense layers; a mix of dense and expert layers is not modelled")
    if f.data.get("decoder_sparse_step", 1) != 1:
        raise f._fail("decoder_sparse_step", "is not 1; a mix of dense and expert layers is not modelled")
    shared = f.int("shared_expert_intermediate_size")
    _qwen_window(f, every_other=True)  # refuses a window; None otherwise
    return _decoder(f, tie=False, qkv_bias=f.bool("qkv_bias", True), n_expert=f.int("num_experts"),
                    top_k=f.int("num_experts_per_tok"), expert_ffn_dim=f.int("moe_intermediate_size"),
                    n_shared_expert=1, shared_expert_ffn_dim=shared, shared_expert_gate=True, kv_heads=_KV_QWEN2_MOE)


def _gemma(f: _Fields) -> dict:
    attention_bias = f.bool("attention_bias", False)  # GemmaAttention: q, k, v and o share attention_bias
    return _decoder(f, tie=True, mlp=f.act("hidden_activation", "hidden_act", default="gelu_pytorch_tanh"),
                    qkv_bias=attention_bias, out_bias=attention_bias, head_dim=_GEMMA_HEAD_DIM, kv_heads=_KV_GEMMA)


def _olmo(f: _Fields) -> dict:
    attention_bias = f.bool("attention_bias", False)
    cfg = _decoder(f, tie=False, qkv_bias=attention_bias, out_bias=attention_bias)
    return {**cfg, "norm": "layernorm_plain", "norm_eps": _EPS_1E5}  # OlmoLayerNorm: no gain, no bias, eps 1e-5


def _olmo2(f: _Fields) -> dict:
    attention_bias = f.bool("attention_bias", False)
    return _decoder(f, tie=False, qkv_bias=attention_bias, out_bias=attention_bias, qk_norm="full", eps=_EPS_1E5)


def _phi3(f: _Fields) -> dict:
    # fused qkv_proj and gate_up_proj (modeling_phi3.py): the same weights as separate ones, but one LoRA adapter each
    return _decoder(f, tie=False, eps=_EPS_1E5, fused_projections=True, attn_window=_window(f),
                    class_original=_PHI3_ORIGINAL)


def _gpt_neox(f: _Fields) -> dict:
    attention_bias = f.bool("attention_bias", True)
    act = f.data.get("hidden_act", "gelu")
    if act not in _GELU:
        raise f._fail("hidden_act", f"is {act!r}; GPT-NeoX's 2-matrix MLP is modelled with gelu")
    return {
        "n_layer": f.int("num_hidden_layers"), "n_head": f.int("num_attention_heads"), "n_embd": f.int("hidden_size"),
        "ffn_dim": f.int("intermediate_size"), "vocab_size": f.int("vocab_size"),
        "block_size": f.int("max_position_embeddings"), "tie_embeddings": f.bool("tie_word_embeddings", False),
        "parallel_block": f.bool("use_parallel_residual", True), "position": "rope", "bias": True,
        "fused_projections": True,  # GPTNeoXAttention: one query_key_value linear (modeling_gpt_neox.py)
        "qkv_bias": attention_bias, "out_bias": attention_bias,
        "rope_theta": f.rope_theta(_THETA, key="rotary_emb_base"), "norm_eps": f.float("layer_norm_eps", _EPS_1E5),
    }


def _gpt2(f: _Fields) -> dict:
    act = f.data.get("activation_function", "gelu_new")
    if act not in _GELU:
        raise f._fail("activation_function", f"is {act!r}; GPT-2's MLP is modelled with gelu")
    if f.bool("add_cross_attention", False):  # GPT2Block adds crossattention + ln_cross_attn (modeling_gpt2.py)
        raise f._fail("add_cross_attention", "is true: cross-attention blocks (an encoder-decoder's) are not "
                      "modelled; a decoder-only GPT-2 has it false or leaves it out")
    n_inner = f.int("n_inner", None)
    return dict(n_layer=f.int("n_layer"), n_head=f.int("n_head"), n_embd=f.int("n_embd"),
                block_size=f.int("n_positions"), vocab_size=f.int("vocab_size"),
                tie_embeddings=f.bool("tie_word_embeddings", True), position="learned",
                norm_eps=f.float("layer_norm_epsilon", _EPS_1E5),
                **({"ffn_dim": n_inner} if n_inner is not None else {}))


READERS: dict[str, Callable[[_Fields], dict]] = {
    "gpt2": _gpt2, "gpt_neox": _gpt_neox, "llama": _llama, "mistral": _mistral, "mixtral": _mixtral,
    "qwen2": _qwen2, "qwen2_moe": _qwen2_moe, "gemma": _gemma, "olmo": _olmo, "olmo2": _olmo2, "phi3": _phi3,
}


# Unsupported model types with parts no architecture option describes (transformers 5.24 models/<type>/
# modeling_<type>.py): the options route would count a different model, so the refusal does not suggest it.
_QK_NORM_PER_HEAD = "an RMSNorm on queries and keys over the head width (q_norm, k_norm)"
_SANDWICH_NORMS = "RMSNorms after attention and after the MLP in every block (post_attention_layernorm, " \
                  "post_feedforward_layernorm)"
UNDESCRIBABLE_TYPES = {
    "gemma2": _SANDWICH_NORMS,  # Gemma2DecoderLayer; Gemma Team 2024, arXiv:2408.00118, sec. 2
    "gemma3_text": f"{_SANDWICH_NORMS} and {_QK_NORM_PER_HEAD}",  # Gemma3DecoderLayer, Gemma3Attention
    "qwen3": _QK_NORM_PER_HEAD,  # Qwen3Attention
    "qwen3_moe": _QK_NORM_PER_HEAD,  # Qwen3MoeAttention
}


def _undescribable(data: dict, model_type: str) -> str:
    """What an unsupported config holds that no architecture option sets: a head width other than hidden_size /
    num_attention_heads (no option sets it), the parts `UNDESCRIBABLE_TYPES` names; empty when none is seen."""
    parts = []
    head_dim, width, heads = (data.get(k) for k in ("head_dim", "hidden_size", "num_attention_heads"))
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (head_dim, width, heads)) \
            and head_dim * heads != width:
        parts.append(f"its head width (head_dim {head_dim}) is not hidden_size / num_attention_heads "
                     f"({width} / {heads}), and no option sets a head width")
    if model_type in UNDESCRIBABLE_TYPES:
        parts.append(f"its {UNDESCRIBABLE_TYPES[model_type]}")
    return "; ".join(parts)


def config_from_hf(data: dict, where: str = "config.json", name: str | None = None,
                   overrides: dict | None = None) -> ModelConfig:
    """The `ModelConfig` a Hugging Face config dict describes; one-line UsageError for what cannot be read.

    ``overrides`` (`ModelConfig` field names: the shape and ``n_kv_head`` the user gave) replace the file's values
    before the model is checked, so an option can mend a file whose value (or class default) breaks the shape; a
    key/value head count that does not divide the heads is then the caller's to word (`KvHeadCountError`). Without
    overrides that error names the file's field, or the class default it left in place (review r15)."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object (a model's config.json), got {type(data).__name__}")
    model_type = data.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise UsageError(f"{where}: field 'model_type' must be a name (a JSON string), got {model_type!r}; accepted: "
                         f"{', '.join(READERS)}")
    if model_type is None:
        raise UsageError(f"{where}: field 'model_type' is missing; a Hugging Face config.json names its model "
                         f"type (one of {', '.join(READERS)})")
    if model_type not in READERS:
        cannot = _undescribable(data, model_type)
        route = (f"; the architecture options cannot describe it either: {cannot}" if cannot else
                 " (or describe the model with --n-layer/--n-head/--n-embd and the architecture options)")
        raise UsageError(f"{where}: model_type {model_type!r} is not supported; accepted: {', '.join(READERS)}{route}")
    fields = READERS[model_type](_Fields(data, where, model_type))
    label = name or str(data.get("_name_or_path") or "").rsplit("/", 1)[-1] or model_type
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return ModelConfig(name=label, **{**fields, **overrides})
    except KvHeadCountError as e:
        if {"n_head", "n_kv_head"} & set(overrides) or e.n_kv_head < 1:
            raise
        try_kv = " or ".join(map(str, nearest_divisors(e.n_head, e.n_kv_head)))
        if "num_key_value_heads" in data:
            raise UsageError(f"{where}: field 'num_key_value_heads' ({e.n_kv_head}) does not divide "
                             f"num_attention_heads {e.n_head} (grouped-query attention shares each key/value head "
                             f"among a whole group of query heads): give \"num_key_value_heads\": {try_kv} (or "
                             f"--n-kv-head {try_kv})") from None
        owner = _KV_DEFAULT_CLASS.get(model_type, f"the {model_type} config class")
        raise UsageError(f"{where} leaves num_key_value_heads out; transformers' {owner} default is {e.n_kv_head}, "
                         f"which does not divide num_attention_heads {e.n_head}: add \"num_key_value_heads\": "
                         f"{try_kv} (or --n-kv-head {try_kv})") from None


def read_hf_config(path: str | Path, overrides: dict | None = None) -> ModelConfig:
    """Read a ``config.json`` from disk (UTF-8, BOM-safe) into a `ModelConfig`; ``overrides`` as `config_from_hf`."""
    from .textfile import parse_json, read_text

    path = Path(path)
    text = read_text(path, "model config")
    try:
        data = parse_json(text, str(path), "model config")
    except json.JSONDecodeError as e:
        raise UsageError(f"model config {path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") \
            from None
    stem = path.stem if path.stem != "config" else None
    return config_from_hf(data, str(path), name=stem, overrides=overrides)
