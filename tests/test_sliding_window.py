"""Sliding-window attention (Mistral 7B, Jiang et al. 2023, arXiv:2310.06825, sec. 2): each token attends to at
most W previous tokens and the KV cache is a rolling buffer of W tokens.

References, none taken from our code: the published config.json files (Mistral 7B v0.1 ``sliding_window`` 4096,
Phi-3-mini-4k 2047, Mixtral null, Qwen2.5 off), the paper's "on a sequence length of 32k tokens, this reduces the
cache memory usage by 8x", the closed form of the causal pairs derived below, a brute-force count of the pairs a
windowed causal mask keeps, and the cache ``transformers``' ``DynamicSlidingWindowLayer`` holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.errors import UsageError
from flopscalc.flops import attention_context, forward_flops_per_token
from flopscalc.hf_config import config_from_hf, read_hf_config
from flopscalc.model import ModelConfig
from flopscalc.perf.inference import (
    InferenceSetup,
    attention_op,
    cached_tokens,
    inference_memory,
    kv_cache_bytes,
    max_seq_tokens,
)
from flopscalc.perf.op_kinds import Phase

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
MISTRAL = CONFIGS / "mistral-7b-v0.1.json"
PHI3 = CONFIGS / "phi-3-mini-4k.json"
# Mistral 7B's window W (arXiv:2310.06825, Table 1: window_size 4096) and the paper's 32k example (sec. 2)
W_MISTRAL = 4096
T_32K = 32768


# ---------------------------------------------------------------- reading config.json


def test_published_windows_are_read():
    assert read_hf_config(MISTRAL).attn_window == W_MISTRAL  # config.json "sliding_window": 4096
    assert read_hf_config(PHI3).attn_window == 2047  # config.json "sliding_window": 2047
    assert read_hf_config(CONFIGS / "mixtral-8x7b-v0.1.json").attn_window is None  # "sliding_window": null
    assert read_hf_config(CONFIGS / "qwen2.5-7b.json").attn_window is None  # "use_sliding_window": false
    assert read_hf_config(CONFIGS / "qwen1.5-moe-a2.7b.json").attn_window is None  # likewise
    assert read_hf_config(CONFIGS / "llama-3.1-8b.json").attn_window is None  # Llama has no window
    assert read_hf_config(CONFIGS / "gpt2.json").attn_window is None


def _mistral_data(**changes) -> dict:
    data = json.loads(MISTRAL.read_text())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def test_null_window_is_full_attention_and_absent_is_the_class_default():
    assert config_from_hf(_mistral_data(sliding_window=None)).attn_window is None
    # a missing field takes transformers' MistralConfig default (configuration_mistral.py: sliding_window 4096)
    assert config_from_hf(_mistral_data(sliding_window=...)).attn_window == 4096


@pytest.mark.parametrize("bad", [0, -5, 1.5, "4096", True])
def test_bad_window_is_one_line(bad):
    with pytest.raises(UsageError, match="sliding_window"):
        config_from_hf(_mistral_data(sliding_window=bad))
    with pytest.raises(UsageError, match="attn_window"):
        ModelConfig(n_layer=2, n_head=2, n_embd=64, attn_window=bad)


def _qwen2(**changes) -> dict:
    data = json.loads((CONFIGS / "qwen2.5-7b.json").read_text())
    data.update(changes)
    return data


def test_qwen2_window_only_with_use_sliding_window():
    # configuration_qwen2.py: layers i >= max_window_layers slide; 0 -> every layer, n_layer -> none
    assert config_from_hf(_qwen2(use_sliding_window=True, max_window_layers=0, sliding_window=4096)).attn_window \
        == 4096
    assert config_from_hf(_qwen2(use_sliding_window=True, max_window_layers=28)).attn_window is None
    assert config_from_hf(_qwen2(use_sliding_window=False, max_window_layers=0)).attn_window is None
    with pytest.raises(UsageError, match="per-layer mix"):
        config_from_hf(_qwen2(use_sliding_window=True, max_window_layers=14))


# ---------------------------------------------------------------- causal attention pairs


def _pairs_brute(t: int, w: int | None) -> int:
    """Query-key pairs a causal (windowed) mask keeps: j <= i and i - j < W (the key set of query i, 1-based)."""
    return sum(1 for i in range(1, t + 1) for j in range(1, i + 1) if w is None or i - j < w)


@pytest.mark.parametrize(("t", "w"), [(1, 1), (5, 1), (7, 3), (8, 8), (9, 8), (64, 16), (50, 100)])
def test_causal_context_is_the_windowed_mask_pairs(t, w):
    assert attention_context(t, True, w) * t == pytest.approx(_pairs_brute(t, w), rel=1e-12)


def test_window_at_least_t_is_plain_causal_and_dense_is_unchanged():
    # Limit: W >= T leaves T (T + 1) / 2 pairs; the dense count (FlopCounterMode on HF modules, which compute the
    # full T x T scores) stays T per query whatever the window
    assert attention_context(100, True, 100) == pytest.approx(101 / 2)
    assert attention_context(100, False, 10) == 100


def test_mistral_32k_causal_attention_flops_closed_form():
    """T > W: sum_i min(i, W) = W (W + 1) / 2 + (T - W) W; per token over T, times 2 matmuls x 2 FLOP/MAC x L x d_attn."""
    mistral = read_hf_config(MISTRAL)
    full = mistral.with_(attn_window=None)
    w, t = W_MISTRAL, T_32K
    pairs = w * (w + 1) / 2 + (t - w) * w
    expect = 2 * 2 * mistral.n_layer * mistral.n_head * mistral.head_dim * pairs / t
    got = forward_flops_per_token(mistral, t, causal=True).attention_core
    assert got == pytest.approx(expect, rel=1e-12)
    assert forward_flops_per_token(full, t, causal=True).attention_core == pytest.approx(
        2 * 2 * mistral.n_layer * mistral.d_attn * (t + 1) / 2, rel=1e-12)
    # the dense count ignores the window
    assert forward_flops_per_token(mistral, t).attention_core == forward_flops_per_token(full, t).attention_core


# ---------------------------------------------------------------- KV cache


def test_mistral_32k_cache_is_an_eighth():
    """The paper's 8x at 32k tokens (sec. 2), for the whole batch; at T <= W nothing changes."""
    mistral = read_hf_config(MISTRAL)
    full = mistral.with_(attn_window=None)
    setup = InferenceSetup(batch=3, context=T_32K - 1, gen=1)  # 32k cached tokens per sequence
    windowed = inference_memory(mistral, setup).kv_cache_bytes
    assert inference_memory(full, setup).kv_cache_bytes == pytest.approx(8 * windowed, rel=1e-12)
    short = InferenceSetup(batch=3, context=W_MISTRAL - 1, gen=1)
    assert inference_memory(mistral, short).kv_cache_bytes == inference_memory(full, short).kv_cache_bytes


def test_largest_context_grows_past_the_window():
    """The cache stops at W tokens, so more memory buys context at the prefill activations' rate only."""
    mistral = read_hf_config(MISTRAL)
    full = mistral.with_(attn_window=None)
    setup = InferenceSetup(batch=8, context=1024, gen=16)
    mem = 80e9
    n_win, n_full = max_seq_tokens(mistral, setup, mem), max_seq_tokens(full, setup, mem)
    assert n_win > n_full > W_MISTRAL
    # the answer fits and one more token does not (memory at n tokens, prompt n - gen)
    def total(n):
        return inference_memory(mistral, setup, seq_tokens=n, context=n - setup.gen).total_bytes
    assert total(n_win) <= mem < total(n_win + 1)


def test_decode_step_reads_and_attends_the_window_only():
    mistral = read_hf_config(MISTRAL)
    full = mistral.with_(attn_window=None)
    setup = InferenceSetup(batch=2, context=T_32K, gen=2)
    kw = {"setup": setup, "n_seq": 2, "new_tokens": 1, "attended": T_32K, "phase": Phase.forward}
    win, dense = attention_op(mistral, **kw), attention_op(full, **kw)
    assert dense.flops == pytest.approx(8 * win.flops, rel=1e-12)  # 32768 keys vs 4096 per query
    # cache read: the full model reads 32768 tokens per sequence, the windowed one 4096; the rest is the same
    per_layer = kv_cache_bytes(full, 2 * (T_32K - W_MISTRAL), 2) / full.n_layer
    assert dense.bytes_moved - win.bytes_moved == pytest.approx(per_layer, rel=1e-12)


# ---------------------------------------------------------------- against transformers' rolling cache

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_rolling_buffer_matches_transformers_sliding_cache(one_torch_thread):
    """transformers' DynamicSlidingWindowLayer keeps the last W - 1 tokens between steps and appends the new one
    for attention, W in all, the paper's buffer: cached_tokens = kept + 1 once T >= W, = T before."""
    w = 4
    config = transformers.MistralConfig(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        sliding_window=w)
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(config).eval()
    cfg = config_from_hf(config.to_dict(), name="tiny-mistral")
    assert cfg.attn_window == w
    for prompt in (2, 3, 7):
        with torch.no_grad():
            cache = model(torch.randint(0, 101, (1, prompt)), use_cache=True)["cache"]
        kept = cache.layers[0].keys.shape[2]
        assert cached_tokens(cfg, prompt) == (kept + 1 if prompt >= w else kept)


def test_training_step_flash_prices_windowed_pairs_math_path_the_full_matrix():
    """FlashAttention-2 takes a window_size (Dao 2023, flash-attention README) and skips the blocks outside it: the
    fused forward op's FLOPs are 2 matmuls x 2 FLOP/MAC x B x H h_d x (W (W + 1) / 2 + (T - W) W); the math path
    (eager, a T x T masked score matrix) keeps B T^2."""
    from flopscalc.memory import TrainingSetup
    from flopscalc.perf.ops import step_ops

    mistral = read_hf_config(MISTRAL)
    b, t, w = 2, 3 * W_MISTRAL, W_MISTRAL
    pairs = w * (w + 1) / 2 + (t - w) * w
    ops = step_ops(mistral, TrainingSetup(micro_batch=b, seq_len=t, flash=True))
    fwd = next(op for op in ops if op.name == "flash attention fwd")
    assert fwd.flops == pytest.approx(2 * 2 * b * mistral.d_attn * pairs, rel=1e-12)
    eager = step_ops(mistral, TrainingSetup(micro_batch=b, seq_len=t, flash=False))
    full = step_ops(mistral.with_(attn_window=None), TrainingSetup(micro_batch=b, seq_len=t, flash=False))
    assert sum(op.flops * op.count for op in eager) == pytest.approx(sum(op.flops * op.count for op in full), rel=1e-12)


def test_infer_table_names_the_cached_tokens_of_a_window(capsys):
    # the KV row's arithmetic must multiply to its bytes: at 32k context Mistral's buffer holds W = 4,096 tokens
    from flopscalc.cli import run

    assert run(["infer", "--gpu", "h200", "--config", str(MISTRAL), "--context", "32k", "--batch", "1",
                "--gen", "16"]) == 0
    out = capsys.readouterr().out
    assert "x 1 x 4,096 tokens (window 4,096)" in out
