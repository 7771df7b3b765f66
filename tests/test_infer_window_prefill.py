"""A prefill under a sliding window writes only the rolling buffer's tokens into the KV cache.

Reference: Jiang et al. 2023 (Mistral 7B, arXiv:2310.06825), sec. 2, "Rolling Buffer Cache": the cache has a fixed
size of W; mistral-inference's ``RotatingBufferCache`` caches the prompt tokens x >= seqlen - W, min(T, W) per
sequence. The bytes below are multiplied out by hand from the shapes, not taken from our code.
"""

from __future__ import annotations

import pytest

from flopscalc.model import ModelConfig
from flopscalc.perf.inference import InferenceSetup, attention_op
from flopscalc.perf.op_kinds import Phase

# 2 layers, 4 query heads and 2 K/V heads of width 8: d_attn = 32, d_kv = 16; W = 4
TINY = ModelConfig(n_layer=2, n_head=4, n_embd=32, n_kv_head=2, vocab_size=64, block_size=64, ffn_dim=64,
                   mlp="swiglu", norm="rmsnorm", position="rope", bias=False, tie_embeddings=False, attn_window=4)
SETUP = InferenceSetup(batch=3, context=10, gen=2)  # 16-bit activations and KV (2 bytes per element)


def _prefill(cfg, prompt):
    return attention_op(cfg, SETUP, n_seq=3, new_tokens=prompt, attended=prompt, phase=Phase.forward)


def test_prefill_longer_than_the_window_writes_w_tokens_per_sequence():
    # 3 sequences x 10 prompt tokens: q, k, v read and o written for all 30 tokens, 2 bytes each:
    #   30 x (32 + 16 + 16 + 32) x 2 = 5760 bytes
    # K and V written into the cache for the last W = 4 tokens of each sequence:
    #   3 x 4 x (16 + 16) x 2 = 768 bytes  (all 10: 1920 bytes)
    assert _prefill(TINY, 10).bytes_moved == 5760 + 768


def test_prefill_within_the_window_writes_every_token_like_full_attention():
    # the limit case T <= W: the buffer holds the whole prompt, 3 x 4 x 32 x 2 = 768 bytes, as without a window
    full = TINY.with_(attn_window=None)
    assert _prefill(TINY, 4).bytes_moved == _prefill(full, 4).bytes_moved == 4 * 3 * (32 + 16 + 16 + 32) * 2 + 768


def test_without_a_window_the_whole_prompt_is_written():
    assert _prefill(TINY.with_(attn_window=None), 10).bytes_moved == 5760 + 1920


@pytest.mark.parametrize("attended", [5, 10, 40])
def test_a_decode_step_writes_its_one_new_token(attended):
    op = attention_op(TINY, SETUP, n_seq=3, new_tokens=1, attended=attended, phase=Phase.forward)
    # q, k, v, o of 3 tokens (3 x 96 x 2 = 576), one K/V row per sequence written (3 x 32 x 2 = 192), and the
    # cache read: min(attended, W = 4) tokens per sequence per layer (3 x 4 x 32 x 2 = 768)
    assert op.bytes_moved == 576 + 192 + 768
