"""Memory of the other families: parameter layout, sequence past the context, dropout, and saved-tensor bytes of the
``transformers`` modules.

The activation estimate with ``device=cpu`` models the CPU's kernels (SDPA with native grouped-query attention,
``F.rms_norm`` as torch 2.13's CPU composite, which saves the normalised tensor as transformers' Python RMSNorm
does: no difference there in fp32). Each
``transformers`` module is run forward and backward on CPU in fp32 with every tensor autograd saves counted once
per storage (as tests/test_memory_measured.py does for the reference module); the measured bytes must equal the
estimate plus the named implementation differences, each a formula of the shapes:

- eager attention adds a float causal mask to the scores (nothing saved) where the estimate's spelled-out path
  keeps a boolean s x s mask for ``masked_fill``;
- eager attention with grouped-query heads copies K and V to n_head heads (``repeat_kv``) before the matmuls
  save them; SDPA takes the grouped heads as they are (``enable_gqa``);
- Gemma's RMSNorm multiplies by ``1 + weight`` (a new d-wide tensor each) and its embedding by a saved sqrt(d);
- Mixtral renormalises the top-k weights (the division saves them and their b s x 1 fp32 sum);
- with a fused QKV projection (GPT-NeoX, Phi-3) Q is a strided slice, SDPA lays its output out as (b, H, s, h_d),
  and the transpose before the output projection copies it: one more b s H h_d tensor (with separate projections
  the output is laid out (b, s, H, h_d) and the projection's input is the same storage);
- GPT-NeoX rotates only ``rotary_pct`` of each head, so its cos/sin tables are that fraction of ours;
- GPT-2's ``gelu_new`` is Python (``0.5 x (1 + tanh(...))``): it saves the tanh, 0.5 x and 1 + tanh besides its
  input, three b s f tensors more than a fused GELU; its SDPA path hands K and V over as copies (two b s d more);
- dropout on CPU multiplies by a float mask (4 bytes per element) where CUDA's fused ``native_dropout`` keeps a
  bool (1 byte), the estimate's model; the masked elements are [K] eq. 1's: 2 s b h per layer, the embedding's
  s b h, and a s^2 b with eager attention. Together these are the "1.7x" HF GPT-2 saves over the reference module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flopscalc.errors import UsageError
from flopscalc.hf_config import config_from_hf
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.memory.settings import FP32_BYTES, MASK_BYTES, Device
from flopscalc.memory.states import param_shapes
from flopscalc.model import ALL_PRESETS, count_params, get_preset

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
BATCH, SEQ, LAYERS = 2, 32, 2
SMALL = {"num_hidden_layers": LAYERS, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 96,
         "vocab_size": 97}


def small(stem: str, **change) -> dict:
    data = json.loads((CONFIGS / f"{stem}.json").read_text())
    ids = {k: None for k in ("pad_token_id", "bos_token_id", "eos_token_id") if k in data}
    shrink = {} if data["model_type"] == "gpt2" else SMALL
    return {**data, **shrink, **ids, **change}


def measure_saved_bytes(hf, data: dict, attention: str) -> int:
    """Bytes of every distinct storage autograd saves in one forward + backward (parameters excluded)."""
    import torch

    cfg = hf.AutoConfig.for_model(**data)
    cfg._attn_implementation = attention
    if "num_local_experts" in data or "num_experts" in data:
        cfg._experts_implementation = "eager"
    torch.manual_seed(0)
    model = hf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    idx = torch.randint(0, data["vocab_size"], (BATCH, SEQ))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=idx, labels=idx)
    out.loss.backward()
    return sum(saved.values())


def named_differences(data: dict, attention: str, dropout: bool = False) -> int:
    """What transformers' modules save beyond the estimate (module docstring), in bytes."""
    cfg = config_from_hf(data)
    tokens, L, d = BATCH * SEQ, cfg.n_layer, cfg.n_embd
    extra = 0
    if data["model_type"] == "gpt2":
        extra += L * 3 * tokens * cfg.n_inner * FP32_BYTES  # gelu_new in Python: tanh, 0.5 x and 1 + tanh
        if attention == "sdpa":
            extra += L * 2 * tokens * d * FP32_BYTES  # K and V reach SDPA as copies, Q as a view of c_attn's output
    if dropout:  # on CPU the mask is a float tensor (4 bytes), not the fused CUDA kernel's bool (1 byte)
        masked = L * 2 * tokens * d + tokens * d + (L * BATCH * cfg.n_head * SEQ * SEQ if attention == "eager" else 0)
        extra += masked * (FP32_BYTES - MASK_BYTES)
    if attention == "eager":
        extra -= L * MASK_BYTES * SEQ * SEQ  # additive float mask: no boolean mask saved
    if attention == "eager" and cfg.kv_heads != cfg.n_head:
        extra += L * 2 * tokens * (cfg.d_attn - cfg.d_kv) * FP32_BYTES  # repeat_kv: K and V copied to n_head heads
    if data["model_type"] == "gemma":
        extra += (2 * L + 1) * d * FP32_BYTES + FP32_BYTES  # (1 + weight) per RMSNorm; the sqrt(d) embedding scale
    if data["model_type"] == "mixtral":
        extra += L * tokens * (cfg.top_k + 1) * FP32_BYTES  # top-k renormalisation: the weights and their sum
    if data["model_type"] in ("gpt_neox", "phi3"):
        extra += L * tokens * cfg.d_attn * FP32_BYTES  # fused QKV: the output projection's input is a copy
    if data["model_type"] == "gpt_neox":
        rotary = int(cfg.head_dim * data["rotary_pct"])
        extra -= 2 * SEQ * (cfg.head_dim - rotary) * FP32_BYTES  # cos/sin over the rotary part only
    return extra


NO_DROPOUT = {"attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0}
GPT2_SMALL = {"n_layer": LAYERS, "n_embd": 64, "n_head": 8, "vocab_size": 97, "n_positions": SEQ}
CASES = [
    ("gpt2", {**GPT2_SMALL, **NO_DROPOUT}, "eager"),
    ("gpt2", {**GPT2_SMALL, **NO_DROPOUT}, "sdpa"),
    ("gpt2", GPT2_SMALL, "eager"),  # the released config's dropout, p = 0.1 everywhere
    ("llama-3.1-8b", {"num_key_value_heads": 8}, "sdpa"),
    ("llama-3.1-8b", {"num_key_value_heads": 2}, "sdpa"),  # grouped-query: K, V with 2 heads
    ("llama-3.1-8b", {"num_key_value_heads": 2}, "eager"),
    ("qwen2.5-7b", {"num_key_value_heads": 2}, "sdpa"),
    ("olmo-2-1124-7b", {"num_key_value_heads": 8}, "sdpa"),
    ("olmo-7b-hf", {"num_key_value_heads": 8}, "sdpa"),  # LayerNorm without parameters
    ("phi-3-mini-4k", {"num_key_value_heads": 4}, "sdpa"),  # fused qkv_proj and gate_up_proj
    ("mistral-7b-v0.1", {"num_key_value_heads": 2}, "sdpa"),
    ("gemma-7b", {"head_dim": 16, "num_key_value_heads": 1}, "sdpa"),
    ("mixtral-8x7b-v0.1", {"num_key_value_heads": 4, "num_local_experts": 4}, "sdpa"),
    ("qwen1.5-moe-a2.7b", {"num_key_value_heads": 8, "num_experts": 4, "num_experts_per_tok": 2,
                           "moe_intermediate_size": 40, "shared_expert_intermediate_size": 80}, "sdpa"),
    ("pythia-160m", {"intermediate_size": 256}, "sdpa"),
]


@pytest.mark.parametrize("stem,change,attention", CASES, ids=[f"{s}-{a}-{i}" for i, (s, _, a) in enumerate(CASES)])
def test_activations_equal_transformers_saved_tensors_plus_named_differences(hf, stem, change, attention):
    data = small(stem, **change)
    cfg = config_from_hf(data)
    dropout = data.get("attn_pdrop", 0.0) > 0
    setup = TrainingSetup(micro_batch=BATCH, seq_len=SEQ, precision=MemoryPrecision.fp32, device=Device.cpu,
                          flash=attention == "sdpa", dropout=dropout)
    measured = measure_saved_bytes(hf, data, attention)
    assert estimate_memory(cfg, setup).activations.total + named_differences(data, attention, dropout) == measured


# ------------------------------------------------------------------ layout, context, dropout


@pytest.mark.parametrize("name", list(ALL_PRESETS))
def test_parameter_tensors_add_up_to_the_count(name):
    cfg = ALL_PRESETS[name]
    assert sum(math.prod(s) for _, s in param_shapes(cfg)) == count_params(cfg).total


@pytest.mark.parametrize("stem", ["llama-3.1-8b", "olmo-2-1124-7b", "qwen2.5-7b", "gemma-7b"])
def test_dense_parameter_shapes_are_the_transformers_modules(hf, stem):
    import torch

    data = small(stem, num_key_value_heads=2)
    with torch.device("meta"):
        model = hf.AutoModelForCausalLM.from_config(hf.AutoConfig.for_model(**data))
    theirs = sorted(tuple(p.shape) for p in model.parameters())
    assert sorted(s for _, s in param_shapes(config_from_hf(data))) == theirs


def test_rope_models_take_sequences_past_their_context_and_learned_tables_do_not():
    pythia = get_preset("pythia-160m")  # RoPE, trained at 2048
    longer = estimate_memory(pythia, TrainingSetup(seq_len=4096))
    assert longer.seq_len == 4096
    with pytest.raises(UsageError, match="learned position table"):
        estimate_memory(get_preset("gpt2"), TrainingSetup(seq_len=2048))


def test_dropout_adds_korthikanti_masks_and_dropped_probabilities():
    # Korthikanti et al. 2022, eq. 1 vs its no-dropout form: per layer 2 s b h (two 1-byte residual masks) and
    # 3 a s^2 b (1-byte attention mask + 16-bit dropped probabilities) with attention spelled out; plus the
    # embedding dropout's mask (s b h bytes, outside the layers).
    cfg, b, s = get_preset("gpt2"), 2, 512
    base = TrainingSetup(micro_batch=b, seq_len=s, flash=False)
    drop = TrainingSetup(micro_batch=b, seq_len=s, flash=False, dropout=True)
    diff = estimate_memory(cfg, drop).activations.total - estimate_memory(cfg, base).activations.total
    h, a, L = cfg.n_embd, cfg.n_head, cfg.n_layer
    assert diff == L * (2 * s * b * h + 3 * a * s * s * b) + s * b * h
    # a fused kernel regenerates its mask from the RNG seed: only the residual and embedding masks remain
    flash = estimate_memory(cfg, TrainingSetup(micro_batch=b, seq_len=s, dropout=True)).activations.total
    assert flash - estimate_memory(cfg, TrainingSetup(micro_batch=b, seq_len=s)).activations.total == \
        L * 2 * s * b * h + s * b * h


def test_moe_weights_and_optimizer_state_hold_every_expert():
    # every expert is trained, so weights, gradients and AdamW state are per total parameter, not per active one
    cfg = get_preset("mixtral-8x7b")
    st = estimate_memory(cfg, TrainingSetup(seq_len=4096, precision=MemoryPrecision.fp32)).states
    n = count_params(cfg).total
    assert st.weights_bytes == FP32_BYTES * n and st.gradients_bytes == FP32_BYTES * n
    assert st.optimizer_state_bytes == pytest.approx(2 * FP32_BYTES * n, rel=1e-6)  # m and v (ZeRO sec. 3.1)
