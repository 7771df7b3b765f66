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


def test_qlora_model_on_cpu_equals_the_estimate(bnb):
    """A small Llama-style model with every block linear swapped for bitsandbytes' Linear4bit (NF4, double
    quantization; what transformers' ``replace_with_bnb_linear`` does, LM head kept), wrapped by peft, run in fp32 on
    CPU: trainable parameters, the stored 4-bit weights and constants, and the saved activations equal the estimate
    (the 4-bit matmul saves no activation: bitsandbytes ``MatMul4Bit`` keeps only the packed weight)."""
    import json
    import warnings
    from pathlib import Path

    import torch

    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from flopscalc.finetune.activations import lora_activation_bytes
    from flopscalc.hf_config import config_from_hf

    data = json.loads((Path(__file__).resolve().parents[1] / "data/configs/llama-3.1-8b.json").read_text())
    data.update({"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128,
                 "vocab_size": 97, "num_key_value_heads": 2, "pad_token_id": None, "bos_token_id": None,
                 "eos_token_id": None})
    hf_cfg = transformers.AutoConfig.for_model(**data)
    hf_cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)

    def swap(module):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.float32, compress_statistics=True, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.clone(), requires_grad=False,
                                             compress_statistics=True, quant_type="nf4")
                setattr(module, name, q.to("cpu"))  # moving to a device quantizes
            else:
                swap(child)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        swap(model.model)  # the blocks only: lm_head stays as it is
        model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    model.train()
    cfg = config_from_hf(data)
    setup = FinetuneSetup(method="qlora", rank=4, micro_batch=2, seq_len=32, compute="fp32", device="cpu",
                          recompute="none")
    mem = finetune_memory(cfg, setup)
    assert mem.n_trainable == model.get_nb_trainable_parameters()[0]
    states = [m.weight.quant_state for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(states) == 7 * cfg.n_layer
    constants = [t for s in states for t in (s.absmax, s.code, s.offset, s.state2.absmax, s.state2.code)]
    comps = mem.component_bytes()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert storage_bytes(*frozen) == comps["base_weights"]  # 4-bit data + fp32 embedding, norms, LM head
    assert storage_bytes(*constants) == comps["quant_constants"]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    idx = torch.randint(0, 97, (2, 32), generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        warnings.simplefilter("ignore")
        out = model(input_ids=idx, labels=idx)
    out.loss.backward()
    assert lora_activation_bytes(cfg, setup).total == sum(saved.values())
