"""Forward + backward FLOPs of every family against PyTorch's FlopCounterMode on the ``transformers`` module.

Each config.json in data/configs is cut down to 2 layers and a small width (same block, same options), built by
``transformers`` and run forward and backward with a loss under FlopCounterMode. The engine's
``model_flops_per_token x tokens`` must equal the counter exactly. Dense models run on the meta device (shapes
only); mixtures of experts run on CPU with real tensors, because routing picks experts from the data (the meta
device cannot) -- the count does not depend on which experts: every token runs exactly top_k of them.

Implementation differences, named: transformers' default experts kernel (``grouped_mm``) has no FLOP formula
in the counter, so the experts run as transformers' ``eager`` per-expert loop; on CPU the fused SDPA kernel is
not counted either, so mixtures of experts use eager attention. The counter counts matmuls (mm, addmm, bmm, attention kernels) and nothing
element-wise, so rotary embeddings, RMSNorm, SiLU/GELU, the softmax and the router's top-k are outside both
counts. Attention is counted over the full T x T (``causal=False``): both transformers' eager path (matmuls) and
its SDPA path on meta (decomposed into matmuls) compute every query-key pair; a flash kernel that skips masked
blocks does about half of the attention core (``causal=True``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.flops import training_flops_per_token
from flopscalc.hf_config import config_from_hf

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
BATCH, SEQ = 2, 16

# Small shapes that keep each family's block: GQA ratios, head width other than width / heads (Gemma), experts.
SMALL = {
    "gpt2": {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 97},
    "gpt_neox": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256,
                 "vocab_size": 97},
}
LLAMA_LIKE = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2,
              "intermediate_size": 96, "vocab_size": 97}
EXTRA = {
    "gemma-7b": {"head_dim": 32, "num_key_value_heads": 1},  # 8 heads of 32 on a width of 64; MQA
    "mixtral-8x7b-v0.1": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen1.5-moe-a2.7b": {"num_experts": 6, "num_experts_per_tok": 2, "moe_intermediate_size": 40,
                          "shared_expert_intermediate_size": 80},
}
FILES = sorted(p.stem for p in CONFIGS.glob("*.json"))


def small_config(stem: str) -> dict:
    data = json.loads((CONFIGS / f"{stem}.json").read_text())
    shrink = SMALL.get(data["model_type"], LLAMA_LIKE)
    special = {k: None for k in ("pad_token_id", "bos_token_id", "eos_token_id") if k in data}  # ids beyond 97
    return {**data, **shrink, **special, **EXTRA.get(stem, {})}


def is_moe(data: dict) -> bool:
    return "num_local_experts" in data or "num_experts" in data


def measure_hf_flops(hf, data: dict, attention: str, batch: int = BATCH, seq: int = SEQ) -> tuple[int, dict]:
    """FlopCounterMode total of one forward + backward of the transformers module, and the per-op counts."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = hf.AutoConfig.for_model(**data)
    cfg._attn_implementation = attention
    moe = is_moe(data)
    if moe:
        cfg._experts_implementation = "eager"  # the per-expert loop; the default grouped_mm is not counted
    device = torch.device("cpu") if moe else torch.device("meta")
    torch.manual_seed(0)
    with device:
        model = hf.AutoModelForCausalLM.from_config(cfg)
        idx = torch.randint(0, data.get("vocab_size", 97), (batch, seq)) if moe else \
            torch.zeros(batch, seq, dtype=torch.long)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(input_ids=idx, labels=idx)
        out.loss.backward()
    ops = {str(k).split(".")[1]: v for k, v in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), ops


# experts run on CPU, where FlopCounterMode does not count the fused SDPA kernel: eager attention only for them
CASES = [(stem, att) for stem in FILES for att in ("eager", "sdpa") if att == "eager" or not is_moe(small_config(stem))]


@pytest.mark.parametrize("stem,attention", CASES)
def test_fwd_bwd_flops_equal_flop_counter_on_transformers(hf, stem, attention):
    data = small_config(stem)
    measured, ops = measure_hf_flops(hf, data, attention)
    cfg = config_from_hf(data)
    predicted = training_flops_per_token(cfg, SEQ).model_flops_per_token * BATCH * SEQ
    assert predicted == measured, ops


def test_moe_counts_only_the_routed_experts(hf):
    # Limit case: with top_k = n_expert every expert runs for every token; top-1 of 4 runs a quarter of that
    base = small_config("mixtral-8x7b-v0.1")
    all_experts, _ = measure_hf_flops(hf, {**base, "num_experts_per_tok": 4}, "eager")
    one_expert, _ = measure_hf_flops(hf, {**base, "num_experts_per_tok": 1}, "eager")
    d, f, L, tokens = base["hidden_size"], base["intermediate_size"], base["num_hidden_layers"], BATCH * SEQ
    expert_fwd_bwd = 3 * 2 * 3 * d * f * L * tokens  # fwd + bwd (x3) of 2 d f FLOPs for each of 3 matrices
    assert all_experts - one_expert == 3 * expert_fwd_bwd
