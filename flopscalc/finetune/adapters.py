"""LoRA adapters and quantized base weights: what a parameter-efficient fine-tune adds and what it stores.

A LoRA adapter on a linear ``W: d_in -> d_out`` is two matrices, ``A: d_in -> r`` and ``B: r -> d_out``, whose
product is added to the frozen layer's output (Hu et al. 2021, "LoRA", arXiv:2106.09685, sec. 4.1, eq. 3:
h = W0 x + B A x). ``peft`` stores them as ``lora_A`` (r, d_in) and ``lora_B`` (d_out, r) without biases
(``LoraConfig(bias="none")``, the default), so an adapter has r (d_in + d_out) parameters; alpha only scales
the product and changes no count.

QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv:2305.14314, sec. 3) stores
the frozen linear weights in 4-bit NormalFloat with one absmax constant per block of 64 weights, and with
*double quantization* quantizes those constants to 8 bits in blocks of 256 with one fp32 second-level constant
per block: 8/64 + 32/(64 x 256) = 0.127 bits per parameter instead of 32/64 = 0.5 (sec. 3, "Double
Quantization": "a memory footprint reduction of 0.373 bits per parameter"). bitsandbytes' layout
(``functional.quantize_4bit(blocksize=64, compress_statistics=True)``): two weights per uint8, uint8 absmax per
64-block, fp32 absmax per 256 of those, one fp32 offset, and per tensor a 16-entry fp32 NF4 code and a 256-entry
fp32 dynamic code for the constants. LLM.int8 (Dettmers et al. 2022, arXiv:2208.07339, sec. 3.2, vector-wise
quantization): one int8 per weight and one fp32 scale per output row (bitsandbytes ``Int8Params``: CB, SCB).
Every ``nn.Linear`` of the blocks is quantized; the LM head is kept (transformers' ``get_keys_to_not_convert``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from ..errors import UsageError
from ..model import ModelConfig, QkNorm

# The linear layers a LoRA adapter can target, in the order a Llama-style block runs them (peft's names with
# "_proj" dropped). "all-linear" is peft's shorthand for every linear but the output layer (peft
# ``INCLUDE_LINEAR_LAYERS_SHORTHAND``; tuners_utils ``_maybe_include_all_linear_layers`` skips the LM head).
TARGETS: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
ALL_LINEAR = "all-linear"
# Targets inside a fused module of a model with ``fused_projections`` (Phi-3: qkv_proj, gate_up_proj; GPT-NeoX:
# query_key_value, its 2-matrix MLP holding up and down apart).
FUSED_TARGETS: tuple[str, ...] = ("q", "k", "v", "gate", "up")

# NF4 with double quantization, bitsandbytes' defaults (QLoRA sec. 3; bitsandbytes ``quantize_4bit``):
NF4_BITS = 4  # 4-bit NormalFloat, two codes per uint8 (QLoRA sec. 3, "4-bit NormalFloat Quantization")
NF4_BLOCK = 64  # weights per first-level absmax constant (QLoRA sec. 3: "blocksize of 64 for W")
DQ_CONSTANT_BITS = 8  # first-level constants quantized to 8-bit floats (QLoRA sec. 3, "Double Quantization")
DQ_BLOCK = 256  # first-level constants per second-level fp32 constant (QLoRA sec. 3: "blocksize of 256")
FP32_CONSTANT_BITS = 32  # the un-quantized constants: fp32
NF4_CODE_ENTRIES = 16  # per-tensor NF4 code table, fp32 (bitsandbytes ``get_4bit_type('nf4')``)
DQ_CODE_ENTRIES = 256  # per-tensor 8-bit dynamic code of the constants, fp32 (bitsandbytes ``create_dynamic_map``)
DQ_OFFSET_ENTRIES = 1  # the mean subtracted from the constants before quantizing them, fp32 (``QuantState.offset``)
INT8_BITS = 8  # LLM.int8: one int8 per weight (Dettmers et al. 2022, sec. 3.2)
INT8_ROW_SCALE_BITS = 32  # one fp32 absmax per output row (bitsandbytes ``Int8Params.SCB``)


class Method(str, Enum):
    """How the model is fine-tuned."""

    full = "full"  # every weight trained (the pre-training memory model)
    lora = "lora"  # frozen 16-bit base, trainable adapters (Hu et al. 2021)
    qlora = "qlora"  # frozen quantized base, trainable adapters (Dettmers et al. 2023)


class Quant(str, Enum):
    """Storage of the frozen block linears under QLoRA."""

    nf4 = "nf4"  # 4-bit NormalFloat (QLoRA sec. 3)
    int8 = "int8"  # LLM.int8 vector-wise (Dettmers et al. 2022)


def parse_targets(text: str | Iterable[str], option: str = "--targets") -> tuple[str, ...]:
    """Target modules from ``"all-linear"`` or a comma list (``q,v`` / ``q_proj,v_proj``), in block order.

    The one reader of a target list (``finetune --targets`` and ``train --lora-targets``; ``option`` names the
    flag in refusals). An empty name between commas (``q,,v``, ``q,v,``) is a typo and is refused, as a name that
    is no linear is."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    if items == [ALL_LINEAR]:
        return TARGETS
    if any(items) and not all(items):
        named = ",".join(t for t in items if t)
        raise UsageError(f"{option} {','.join(items)} has an empty name between commas; name each linear once, "
                         f"e.g. {option} {named}")
    if ALL_LINEAR in items:  # "q,all-linear": a set and a list at once
        listed = ",".join(t for t in items if t and t != ALL_LINEAR) or ",".join(TARGETS)
        raise UsageError(f"{ALL_LINEAR} stands alone: give {option} {ALL_LINEAR}, or list the linears, e.g. "
                         f"{option} {listed}")
    items = [t.removesuffix("_proj") for t in items if t]
    bad = [t for t in items if t not in TARGETS]
    if bad or not items:
        raise UsageError(f"LoRA target {', '.join(bad) or '(none)'} is not one of {', '.join(TARGETS)} or "
                         f"{ALL_LINEAR}; try {option} {ALL_LINEAR} or {option} q,v")
    refuse_repeated_targets(items, option)
    return tuple(t for t in TARGETS if t in items)


def refuse_repeated_targets(items: list[str], option: str) -> None:
    """UsageError when a target appears twice in a comma list (``q,q``, ``q,q_proj``; ``items`` read as
    `parse_targets` reads them): one adapter per linear, so a repeat is a typo, refused as repeated values are."""
    seen = [t for i, t in enumerate(items) if t in items[:i]]
    if seen:
        once = ",".join(t for t in TARGETS if t in items)
        raise UsageError(f"LoRA target {seen[0]} is given twice in {option}; name each linear once, e.g. "
                         f"{option} {once}")


def check_lora_model(cfg: ModelConfig, targets: tuple[str, ...]) -> None:
    """UsageError unless ``cfg`` has the separate projections the targets name (Llama-style blocks)."""
    if cfg.is_gpt2_layout:
        raise UsageError(f"{cfg.name} has GPT-2's fused c_attn / c_fc layers; LoRA targets are modelled for "
                         "Llama-style blocks (separate q/k/v/o and gate/up/down); try --config "
                         "data/configs/llama-3.1-8b.json")
    if cfg.is_moe:
        raise UsageError(f"{cfg.name} is a mixture of experts; LoRA and QLoRA are modelled for dense models (the "
                         "expert layers' activations and FLOPs are not); try --method full or a dense model")
    if cfg.parallel_block or cfg.qk_norm is not QkNorm.none:  # the block, before any target: no target helps
        raise UsageError(f"{cfg.name}: LoRA activations are modelled for sequential blocks without q/k norm; "
                         "try a Llama, Mistral or Qwen2 config")
    gated = cfg.mlp.n_matrices == 3
    in_fused = FUSED_TARGETS if gated else tuple(t for t in FUSED_TARGETS if t not in ("gate", "up"))
    fused = [t for t in targets if t in in_fused] if cfg.fused_projections else []
    if fused:  # peft: one adapter on qkv_proj (r (d + d_q + 2 d_kv)), not one per q, k, v (r (2d + d_q) + 2 r (d + d_kv))
        # the two fused layouts there are: Phi-3's (gated MLP) and GPT-NeoX's (2-matrix MLP)
        modules = ("q, k, v into qkv_proj and gate, up into gate_up_proj" if gated else
                   "q, k, v into one query_key_value linear")
        separate = [t for t in TARGETS if t not in in_fused and (gated or t != "gate")]
        raise UsageError(f"{cfg.name} fuses {modules}, where peft puts one adapter per fused module; adapters on "
                         f"{', '.join(fused)} are modelled only for separate projections: target "
                         f"{', '.join(separate)} only (--targets {','.join(separate)}), or use --method full")
    if not gated and "gate" in targets:
        raise UsageError(f"{cfg.name} has a 2-matrix MLP with no gate projection; drop 'gate' from --targets")


def linear_shapes(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each block linear by target name (one block; dense MLPs)."""
    d, f = cfg.n_embd, cfg.n_inner
    shapes = {"q": (d, cfg.d_attn), "k": (d, cfg.d_kv), "v": (d, cfg.d_kv), "o": (cfg.d_attn, d),
              "up": (d, f), "down": (f, d)}
    if cfg.mlp.n_matrices == 3:
        shapes["gate"] = (d, f)
    return {t: shapes[t] for t in TARGETS if t in shapes}


def adapter_params_per_layer(cfg: ModelConfig, targets: tuple[str, ...], rank: int) -> int:
    """LoRA parameters of one block: r (d_in + d_out) per targeted linear (Hu et al. 2021, sec. 4.1)."""
    shapes = linear_shapes(cfg)
    return sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)  # A: r x d_in, B: d_out x r


@dataclass(frozen=True)
class AdapterCount:
    """Trainable LoRA parameters of a model (count) and the tensors holding them (count)."""

    n_params: int
    n_tensors: int  # lora_A and lora_B per targeted linear per layer (optimizer step counters are per tensor)
    n_base_params: int  # the frozen model


def count_adapters(cfg: ModelConfig, targets: tuple[str, ...], rank: int, n_base_params: int) -> AdapterCount:
    """LoRA parameters of the whole model: every block carries the same adapters (peft applies them per layer)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise UsageError(f"LoRA rank must be a positive whole number, got {rank!r}; try --rank 16")
    shapes = linear_shapes(cfg)
    narrowest = min(targets, key=lambda t: min(shapes[t]))
    full_rank = min(shapes[narrowest])
    if rank > full_rank:  # B A (d_out x r)(r x d_in) has rank <= min(d_in, d_out) (Hu et al. 2021, sec. 4.1)
        raise UsageError(f"LoRA rank {rank} is above the full rank {full_rank} of the targeted {narrowest} projection "
                         f"({shapes[narrowest][0]} -> {shapes[narrowest][1]}): a larger rank adds parameters, not "
                         f"capacity; give a rank of at most {full_rank} (16 is common)")
    return AdapterCount(cfg.n_layer * adapter_params_per_layer(cfg, targets, rank),
                        2 * len(targets) * cfg.n_layer, n_base_params)


def n_block_linear_weights(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(d_in, d_out) of every linear weight the quantizer converts: all block linears, all layers."""
    per = list(linear_shapes(cfg).values())
    if cfg.is_moe:
        raise UsageError(f"{cfg.name} is a mixture of experts; quantized expert weights are not modelled")
    return per * cfg.n_layer


def nf4_bytes(n_weights: int, *, double_quant: bool = True) -> float:
    """Bytes of one NF4 tensor of ``n_weights`` weights as bitsandbytes stores it (QLoRA sec. 3).

    4 bits per weight; one constant per 64 weights, fp32, or with double quantization uint8 plus one fp32
    constant per 256 constants, an fp32 offset and the 256-entry fp32 code; the 16-entry fp32 NF4 code.
    """
    blocks = math.ceil(n_weights / NF4_BLOCK)
    data = math.ceil(n_weights * NF4_BITS / 8)  # two codes per byte
    code = NF4_CODE_ENTRIES * FP32_CONSTANT_BITS / 8
    if not double_quant:
        return data + blocks * FP32_CONSTANT_BITS / 8 + code  # QLoRA sec. 3: 32/64 bits per weight
    constants = blocks * DQ_CONSTANT_BITS / 8 + math.ceil(blocks / DQ_BLOCK) * FP32_CONSTANT_BITS / 8
    tables = (DQ_CODE_ENTRIES + DQ_OFFSET_ENTRIES) * FP32_CONSTANT_BITS / 8
    return data + constants + tables + code  # QLoRA sec. 3: 8/64 + 32/(64 x 256) bits per weight


def int8_bytes(d_in: int, d_out: int) -> float:
    """Bytes of one LLM.int8 weight: int8 per weight, fp32 scale per output row (Dettmers et al. 2022, sec. 3.2)."""
    return d_in * d_out * INT8_BITS / 8 + d_out * INT8_ROW_SCALE_BITS / 8


def constant_bits_per_weight(double_quant: bool) -> float:
    """Quantization-constant bits per weight, large-tensor limit (QLoRA sec. 3: 0.5, or 0.127 with DQ)."""
    if double_quant:
        return DQ_CONSTANT_BITS / NF4_BLOCK + FP32_CONSTANT_BITS / (NF4_BLOCK * DQ_BLOCK)  # QLoRA sec. 3
    return FP32_CONSTANT_BITS / NF4_BLOCK  # QLoRA sec. 3


def quantized_bytes(cfg: ModelConfig, quant: Quant, *, double_quant: bool = True) -> tuple[float, int]:
    """(bytes, weights) of the quantized block linears of ``cfg``."""
    shapes = n_block_linear_weights(cfg)
    n = sum(i * o for i, o in shapes)
    if quant is Quant.int8:
        return sum(int8_bytes(i, o) for i, o in shapes), n
    return sum(nf4_bytes(i * o, double_quant=double_quant) for i, o in shapes), n
