"""The reference trainer trains sliding-window attention (Mistral 7B, Jiang et al. 2023, arXiv:2310.06825, sec. 2)
when the model has one (``ModelConfig.attn_window``, a config.json's ``sliding_window``).

References, none taken from our code: a naive softmax over q k^T with the band written out entry by entry; Hugging
Face ``MistralForCausalLM`` (eager attention, its own sliding-window mask) with the same weights; PyTorch's
FlopCounterMode against the FLOPs engine the trainer divides by for MFU.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

torch = pytest.importorskip("torch")

from flopscalc.flops import training_flops_per_token
from flopscalc.model import ModelConfig
from flopscalc.train.model import GPT, build_model, window_mask

# tiny Mistral-style block: GQA 4 query heads over 2 K/V heads, W = 5 over T = 12 tokens, so the window cuts
MISTRAL_TINY = ModelConfig(n_layer=2, n_head=4, n_embd=32, vocab_size=97, block_size=12, n_kv_head=2, ffn_dim=64,
                           mlp="swiglu", norm="rmsnorm", position="rope", bias=False, tie_embeddings=False,
                           norm_eps=1e-5, rope_theta=10000.0, attn_window=5, name="mistral-tiny")
GPT2_TINY = ModelConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=61, block_size=12, attn_window=4, name="gpt2-w4")


def naive_window_attention(q, k, v, window):
    """softmax over the keys j with j <= i and i - j < W, written as loops over (i, j): the definition, no masks."""
    _, H, T, hs = q.shape
    group = H // k.size(1)
    out = torch.zeros_like(q)
    for h in range(H):
        kh, vh = k[:, h // group], v[:, h // group]  # the K/V head this query head shares
        for i in range(T):
            keys = [j for j in range(T) if j <= i and i - j < window]  # Mistral sec. 2: the last W tokens, i included
            scores = torch.stack([(q[:, h, i] * kh[:, j]).sum(-1) / math.sqrt(hs) for j in keys], dim=-1)  # (B, n)
            weights = scores.softmax(-1)
            out[:, h, i] = sum(weights[:, n, None] * vh[:, j] for n, j in enumerate(keys))
    return out


def test_window_mask_keeps_exactly_the_last_w_keys_of_each_query():
    m = window_mask(7, 3, "cpu")
    assert [row.nonzero().flatten().tolist() for row in m] == [[0], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],
                                                               [3, 4, 5], [4, 5, 6]]
    assert window_mask(7, None, "cpu") is None and window_mask(7, 7, "cpu") is None  # nothing cut: plain causal


@pytest.mark.parametrize("attention", ["sdpa", "math"])
@pytest.mark.parametrize("cfg", [MISTRAL_TINY, GPT2_TINY], ids=["gqa-decoder", "gpt2"])
def test_attention_core_equals_a_naive_windowed_softmax(cfg, attention):
    model = build_model(cfg, attention=attention)
    attn = model.h[0].self_attn if hasattr(model.h[0], "self_attn") else model.h[0].attn
    gen = torch.Generator().manual_seed(0)
    T, hs = cfg.block_size, cfg.head_dim
    q = torch.randn(2, cfg.n_head, T, hs, generator=gen)
    k = torch.randn(2, cfg.kv_heads, T, hs, generator=gen)
    v = torch.randn(2, cfg.kv_heads, T, hs, generator=gen)
    got = attn._core(q, k, v)
    torch.testing.assert_close(got, naive_window_attention(q, k, v, cfg.attn_window), rtol=0, atol=1e-5)
    # the same core with full causal attention differs past the window: the test can tell the two apart
    full = naive_window_attention(q, k, v, T)
    assert (got[:, :, cfg.attn_window:] - full[:, :, cfg.attn_window:]).abs().max() > 1e-2
    torch.testing.assert_close(got[:, :, :cfg.attn_window], full[:, :, :cfg.attn_window], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_logits_equal_transformers_mistral_with_its_sliding_window(hf, attention):
    cfg = MISTRAL_TINY
    config = hf.MistralConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.n_inner,
                              num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                              num_key_value_heads=cfg.kv_heads, max_position_embeddings=cfg.block_size,
                              rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=False,
                              hidden_act="silu", sliding_window=cfg.attn_window)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    theirs = hf.MistralForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights large enough that attention is peaked and a wrong mask shows
        for name, p in theirs.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
    ours = build_model(cfg, attention=attention).eval()
    ours.load_state_dict({k.removeprefix("model."): v for k, v in theirs.state_dict().items()}, strict=True)
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = theirs(input_ids=idx).logits
        got, _ = ours(idx)
        # the same weights with full causal attention: what the trainer trained before it read the window
        full = build_model(dataclasses.replace(cfg, attn_window=None), attention=attention).eval()
        full.load_state_dict(ours.state_dict())
        unwindowed, _ = full(idx)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # fp32, as test_train_llama's ATOL
    assert (unwindowed - want)[:, cfg.attn_window:].abs().max() > 1e-2  # the window changes the model


@pytest.mark.parametrize("cfg", [MISTRAL_TINY, GPT2_TINY], ids=["gqa-decoder", "gpt2"])
def test_flop_counter_equals_the_engine_the_trainer_divides_by(cfg):
    """A masked SDPA still computes the full T x T scores (the dense count); the trainer's MFU numerator is that."""
    from torch.utils.flop_counter import FlopCounterMode

    B, T = 2, cfg.block_size
    with torch.device("meta"):
        model = build_model(cfg)
        idx = torch.zeros(B, T, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        _, loss = model(idx, idx)
        loss.backward()
    want = training_flops_per_token(cfg, T).hardware_flops_per_token * B * T
    assert counter.get_total_flops() == want
    assert isinstance(model, GPT) == (cfg is GPT2_TINY)


def test_the_trainer_learns_with_a_window_and_its_modules_carry_it(pydoc_split, one_torch_thread):
    """The training loop runs backward through the masked SDPA and learns; every block attends within W."""
    from flopscalc.train.config import TrainConfig
    from flopscalc.train.trainer import Trainer

    cfg = dataclasses.replace(MISTRAL_TINY, vocab_size=256, block_size=32, attn_window=8)
    train, val = pydoc_split
    t = Trainer(TrainConfig(model=cfg, micro_batch=4, seq_len=32, max_steps=25, warmup_steps=3, learning_rate=3e-3,
                            eval_interval=0, eval_batches=2, device="cpu"), train, val)
    assert [b.self_attn.window for b in t.raw_model.h] == [8, 8]
    losses = [m.loss for m in t.train().history]
    assert losses[0] == pytest.approx(math.log(256), abs=0.3)  # starts near uniform guessing over bytes
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0  # bytes of English text: learns the unigram table at least
