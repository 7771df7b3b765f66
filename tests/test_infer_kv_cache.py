"""KV-cache bytes: the estimate equals the bytes ``transformers``' ``DynamicCache`` holds, exactly.

A tiny Llama-style model (built locally from a ``LlamaConfig``, no hub) runs a forward pass on CPU over a batch
of prompts, then decode steps; the sum of ``nbytes`` of every cached key and value tensor must equal
`kv_cache_bytes` of the `ModelConfig` read from the same config (``flopscalc.hf_config``), for grouped-query,
multi-query and multi-head attention, in fp32 and bf16. A wrong factor (n_head instead of n_kv_head, a missing
2 for K and V, the wrong element size) moves the estimate by a whole multiple and fails. Then every published
config.json the project carries, at full size on the meta device, through `flopscalc infer --config`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.cli import run
from flopscalc.hf_config import config_from_hf
from flopscalc.perf.inference import kv_cache_bytes

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _cache_nbytes(cache) -> int:
    """Bytes of every key and value tensor of a DynamicCache (one entry per layer)."""
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def _tiny_llama(n_head: int, n_kv_head: int, dtype):
    config = transformers.LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                      num_attention_heads=n_head, num_key_value_heads=n_kv_head,
                                      max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(dtype).eval()
    return config, model


@pytest.mark.parametrize(("n_head", "n_kv_head"), [(8, 2), (8, 1), (4, 4)], ids=["gqa", "mqa", "mha"])
@pytest.mark.parametrize(("dtype", "element_bytes"), [("float32", 4), ("bfloat16", 2)])
def test_kv_cache_bytes_equal_dynamic_cache(one_torch_thread, n_head, n_kv_head, dtype, element_bytes):
    config, model = _tiny_llama(n_head, n_kv_head, getattr(torch, dtype))
    cfg = config_from_hf(config.to_dict(), name="tiny-llama")
    assert cfg.kv_heads == n_kv_head < cfg.n_head or n_kv_head == n_head
    batch, prompt, steps = 3, 7, 4
    ids = torch.randint(0, config.vocab_size, (batch, prompt))
    with torch.no_grad():
        out = model(ids, use_cache=True)
        cache = out["cache"]  # transformers >= 5.2x names it ``cache`` (``past_key_values`` before)
        assert cache.get_seq_length() == prompt
        assert _cache_nbytes(cache) == kv_cache_bytes(cfg, batch * prompt, element_bytes)
        for step in range(1, steps + 1):  # decode: one new token per sequence per step
            nxt = out.logits[:, -1:].argmax(-1)
            out = model(nxt, cache=cache, use_cache=True)
            cache = out["cache"]
            assert _cache_nbytes(cache) == kv_cache_bytes(cfg, batch * (prompt + step), element_bytes)


def test_gqa_cache_is_the_kv_head_share_of_mha(one_torch_thread):
    """Limit case: the same model with n_kv_head = n_head / 4 caches a quarter of the multi-head bytes."""
    gqa = config_from_hf(_tiny_llama(8, 2, torch.float32)[0].to_dict())
    mha = config_from_hf(_tiny_llama(8, 8, torch.float32)[0].to_dict())
    assert kv_cache_bytes(gqa, 100) * 4 == kv_cache_bytes(mha, 100)


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "data" / "configs").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_infer_kv_bytes_equal_the_cache_of_each_published_config(capsys, path):
    """`flopscalc infer --config` on every published config.json (GPT-2, Llama 3.1, Mistral, Mixtral, Qwen, Gemma,
    OLMo, Phi-3, Pythia): KV bytes per token x tokens equal the cache ``transformers`` fills in bf16 for the
    full-size module built on the meta device (shapes only) after a forward pass of 2 x 5 tokens."""
    transformers.logging.set_verbosity_error()
    data = json.loads(path.read_text())
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**data),
                                                              dtype=torch.bfloat16).eval()
        with torch.no_grad():
            cache = model(torch.zeros((2, 5), dtype=torch.long), use_cache=True)["cache"]
    code = run(["infer", "--gpu", "h200", "--config", str(path), "--context", "5", "--batch", "2", "--gen", "1",
                "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["kv_cache_bytes_per_token"] * 2 * 5 == _cache_nbytes(cache)
