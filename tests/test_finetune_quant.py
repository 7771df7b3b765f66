"""QLoRA's quantized weights: bitsandbytes' own tensors (where its CPU build runs) and the QLoRA paper's figures.

bitsandbytes is not in the test extra (a second check, not a dependency): with it installed, ``quantize_4bit`` and
``int8_vectorwise_quant`` run on CPU and their storages must equal our byte counts exactly; without it those
tests skip and the paper's printed figures remain (Dettmers et al. 2023, arXiv:2305.14314).
"""

from __future__ import annotations

import pytest

from flopscalc.finetune.adapters import (
    Quant,
    constant_bits_per_weight,
    int8_bytes,
    nf4_bytes,
    quantized_bytes,
)
from flopscalc.finetune.memory import FinetuneSetup, finetune_memory
from flopscalc.model import ModelConfig, count_params, get_preset

GB = 1e9
GIB = 2.0**30
# LLaMA 65B (Touvron et al. 2023, arXiv:2302.13971, Table 2: 80 layers, d 8192, 64 heads; the released
# config.json: intermediate_size 22016, vocabulary 32000, untied head): 65.3B parameters.
LLAMA_65B = ModelConfig(n_layer=80, n_head=64, n_embd=8192, ffn_dim=22016, vocab_size=32000, block_size=2048,
                        bias=False, tie_embeddings=False, mlp="swiglu", norm="rmsnorm", position="rope",
                        name="llama-65b")


@pytest.fixture(scope="module")
def bnb():
    pytest.importorskip("torch")
    return pytest.importorskip("bitsandbytes")


def storage_bytes(*tensors) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


@pytest.mark.parametrize("shape", [(256, 512), (64, 64), (100, 37), (4096, 96)])
@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_bytes_equal_bitsandbytes_tensors(bnb, shape, double_quant):
    import torch
    from bitsandbytes.functional import quantize_4bit

    w = torch.randn(*shape, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0))
    packed, state = quantize_4bit(w, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
    tensors = [packed, state.absmax, state.code]
    if double_quant:
        tensors += [state.state2.absmax, state.state2.code, state.offset]
    assert nf4_bytes(w.numel(), double_quant=double_quant) == storage_bytes(*tensors)


@pytest.mark.parametrize("shape", [(48, 128), (4096, 11008)])
def test_int8_bytes_equal_bitsandbytes_tensors(bnb, shape):
    import torch
    from bitsandbytes.functional import int8_vectorwise_quant

    w = torch.randn(*shape, dtype=torch.float16, generator=torch.Generator().manual_seed(0))
    cb, scb, _ = int8_vectorwise_quant(w)  # (out, in) int8 weights and one fp32 scale per output row
    assert int8_bytes(shape[1], shape[0]) == storage_bytes(cb, scb)


def test_double_quantization_bits_are_the_papers():
    # QLoRA sec. 3, "Double Quantization": 32/64 = 0.5 bits per parameter without, 8/64 + 32/(64*256) = 0.127 with,
    # "a reduction of 0.373 bits per parameter" (figures printed to three decimals)
    assert constant_bits_per_weight(False) == 0.5
    assert round(constant_bits_per_weight(True), 3) == 0.127
    assert round(constant_bits_per_weight(False) - constant_bits_per_weight(True), 3) == 0.373
    # the per-tensor bytes approach that limit on a large matrix (codes and offset amortised)
    n = 8192 * 22016
    bits = 8 * nf4_bytes(n) / n - 4
    assert abs(bits - constant_bits_per_weight(True)) < 1e-4


def test_65b_fine_tunes_in_48_gb_with_qlora_and_not_in_16_bit():
    """QLoRA abstract: "finetune a 65B parameter model on a single 48GB GPU", against ">780GB of GPU memory" for
    16-bit fine-tuning (sec. 1). Their recipe: NF4 + double quantization, LoRA r = 64 on every linear layer, bf16
    adapters, paged AdamW, gradient checkpointing (qlora.py)."""
    assert count_params(LLAMA_65B).total == 65_285_660_672  # sum of the released checkpoint's tensor sizes
    qlora = FinetuneSetup(method="qlora", rank=64, seq_len=512, paged=True, bf16_adapters=True)
    required = finetune_memory(LLAMA_65B, qlora).required_bytes()
    assert required <= 48 * GIB  # observed 39.1 GiB
    full = finetune_memory(LLAMA_65B, FinetuneSetup(method="full", seq_len=512))
    assert full.states_bytes > 780 * GB  # observed 1045 GB: AMP's 16 bytes per parameter (ZeRO sec. 3.1)


def test_quantized_weights_are_every_block_linear_and_nothing_else():
    cfg = get_preset("llama-3.1-8b")
    pc = count_params(cfg)
    _, n = quantized_bytes(cfg, Quant.nf4)
    assert n == pc.attention + pc.mlp  # no biases in Llama: every block weight, no embedding, norm or LM head
    nf4, _ = quantized_bytes(cfg, Quant.nf4)
    int8, _ = quantized_bytes(cfg, Quant.int8)
    assert 4 * n / 8 < nf4 < int8 < 2 * n  # 4 bits + constants < 8 bits + row scales < bf16
