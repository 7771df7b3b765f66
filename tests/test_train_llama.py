"""The reference trainer's Llama-style `Decoder` (RMSNorm, RoPE, SwiGLU/GeGLU, GQA, untied head, no biases, and the
blocks between): the same checks as GPT-2's.

- parameter count = ``count_params(cfg).total`` and the parameter list = ``param_shapes(cfg)`` (meta device);
- the FLOPs engine = ``FlopCounterMode`` on the module, forward and forward + backward, per recompute mode and
  attention kernel (tests/conftest.py `measure_flops` does the same for GPT-2);
- logits = Hugging Face ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` with the same weights (fp32, CPU): RoPE's
  rotate_half convention and base, RMSNorm's epsilon, the grouped-query sharing and QKV-only bias;
- the loss falls on the loop tests' text and a resumed run is bit-identical (tests/test_train_loop.py's patterns).
"""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flopscalc.errors import UsageError
from flopscalc.flops import training_flops_per_token
from flopscalc.memory import param_shapes
from flopscalc.model import ALL_PRESETS, ModelConfig, Position, count_params
from flopscalc.train.config import TrainConfig
from flopscalc.train.model import GPT, Decoder, build_model
from flopscalc.train.trainer import Trainer
from tests.conftest import needs_cxx

LLAMA = {"bias": False, "tie_embeddings": False, "position": "rope", "mlp": "swiglu", "norm": "rmsnorm"}
# tiny members of each family the description holds (vocabulary 97: an odd size, nothing lines up by chance)
FAMILIES = {
    "llama-gqa": ModelConfig(n_layer=2, n_head=4, n_embd=64, n_kv_head=2, ffn_dim=96, vocab_size=97, block_size=32,
                             **LLAMA),
    "llama-mha": ModelConfig(n_layer=2, n_head=4, n_embd=64, ffn_dim=172, vocab_size=97, block_size=32, **LLAMA),
    "qwen2-mqa-qkv-bias": ModelConfig(n_layer=2, n_head=4, n_embd=64, n_kv_head=1, ffn_dim=96, vocab_size=97,
                                      block_size=32, qkv_bias=True, **LLAMA),
    "gemma-geglu-tied-wide-heads": ModelConfig(n_layer=2, n_head=4, n_embd=64, n_kv_head=1, head_size=24, ffn_dim=96,
                                               vocab_size=97, block_size=32, **{**LLAMA, "mlp": "geglu",
                                                                               "tie_embeddings": True}),
    "olmo2-qk-norm": ModelConfig(n_layer=2, n_head=4, n_embd=64, n_kv_head=2, ffn_dim=96, vocab_size=97,
                                 block_size=32, qk_norm="full", **LLAMA),
    "qwen3-head-qk-norm": ModelConfig(n_layer=2, n_head=4, n_embd=64, n_kv_head=2, ffn_dim=96, vocab_size=97,
                                      block_size=32, qk_norm="head", **LLAMA),
    "olmo-plain-layernorm": ModelConfig(n_layer=2, n_head=4, n_embd=64, ffn_dim=96, vocab_size=97, block_size=32,
                                        **{**LLAMA, "norm": "layernorm_plain"}),
    "neox-parallel": ModelConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=97, block_size=32,
                                 tie_embeddings=False, position="rope", parallel_block=True),
    "swiglu-learned-positions": ModelConfig(n_layer=2, n_head=4, n_embd=64, n_kv_head=2, vocab_size=97,
                                            block_size=32, mlp="swiglu", norm="rmsnorm", bias=False),
}
# the published dense presets at their own width and vocabulary, one layer deep (counts are linear in layers)
DENSE_PRESETS = [n for n, c in ALL_PRESETS.items() if not c.is_moe and c.pos is not Position.alibi
                 and not (c.is_gpt2_block and c.pos is Position.learned)]


def _meta(cfg, **kw):
    with torch.device("meta"):
        return build_model(cfg, **kw)


def counted_flops(cfg, batch, seq, *, backward=True, recompute="none", attention="sdpa") -> int:
    """FlopCounterMode on the module built on meta tensors (as tests/conftest.py `measure_flops`, any block)."""
    from torch.utils.checkpoint import set_checkpoint_early_stop
    from torch.utils.flop_counter import FlopCounterMode

    model = _meta(cfg, recompute=recompute, attention=attention)
    idx = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, set_checkpoint_early_stop(False):  # count the whole recomputed forward, as the papers do
        _, loss = model(idx, idx)
        if backward:
            loss.backward()
    return counter.get_total_flops()


# ------------------------------------------------------------------ what gets built


@pytest.mark.parametrize("name", FAMILIES)
def test_parameter_count_and_layout_equal_the_description(name):
    cfg = FAMILIES[name]
    model = _meta(cfg)
    assert isinstance(model, Decoder)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg).total
    assert [(n, tuple(p.shape)) for n, p in model.named_parameters()] == param_shapes(cfg)


@pytest.mark.parametrize("name", DENSE_PRESETS)
def test_published_presets_one_layer_deep_have_their_exact_count(name):
    cfg = ALL_PRESETS[name].with_(n_layer=1)
    assert sum(p.numel() for p in _meta(cfg).parameters()) == count_params(cfg).total


def test_gpt2_block_still_builds_gpt_and_the_rest_is_refused_there():
    gpt2 = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=50)
    assert type(_meta(gpt2)) is GPT
    assert type(_meta(gpt2.with_(qkv_bias=False))) is Decoder  # a bias GPT's fused c_attn cannot drop alone
    with pytest.raises(ValueError, match="build_model"):
        GPT(FAMILIES["llama-gqa"])  # never a GPT-2 block silently standing in for another


@pytest.mark.parametrize("change,what", [({"n_expert": 4, "top_k": 2}, "mixture-of-experts"),
                                         ({"position": "alibi"}, "ALiBi"),
                                         ({"head_size": 15}, "head width must be even")])
def test_blocks_the_trainer_cannot_build_are_one_line_usage_errors(change, what):
    with pytest.raises(UsageError, match=what) as err:
        build_model(FAMILIES["llama-gqa"].with_(**change))
    assert "\n" not in str(err.value)


def test_train_config_refuses_them_before_any_model_is_built():
    # TrainConfig is torch-free: train, bench and calibrate refuse a whole sweep before timing any of it
    with pytest.raises(UsageError, match="mixture-of-experts"):
        TrainConfig(model=ALL_PRESETS["mixtral-8x7b"], seq_len=64)
    assert TrainConfig(model=ALL_PRESETS["llama-3.1-8b"], seq_len=64).model.n_kv_head == 8


def test_rope_takes_sequences_past_the_context_and_a_learned_table_does_not():
    rope = build_model(FAMILIES["llama-gqa"].with_(block_size=8))
    assert rope(torch.zeros(1, 12, dtype=torch.long))[0].shape == (1, 12, 97)
    no_positions = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=8, vocab_size=50, position="none")
    assert type(build_model(no_positions)) is GPT  # GPT-2's module without a table: no last row to run past
    assert build_model(no_positions)(torch.zeros(1, 12, dtype=torch.long))[0].shape == (1, 12, 50)
    with pytest.raises(ValueError, match="block_size"):
        build_model(FAMILIES["swiglu-learned-positions"].with_(block_size=8))(torch.zeros(1, 12, dtype=torch.long))


# ------------------------------------------------------------------ FLOPs: engine = FlopCounterMode, exactly


@pytest.mark.parametrize("attention", ["sdpa", "math"])
@pytest.mark.parametrize("name", FAMILIES)
def test_engine_flops_equal_flop_counter_forward_and_backward(name, attention):
    cfg, batch, seq = FAMILIES[name], 2, 24
    t = training_flops_per_token(cfg, seq)
    assert counted_flops(cfg, batch, seq, backward=False, attention=attention) == t.forward_flops_per_token * 48
    assert counted_flops(cfg, batch, seq, attention=attention) == t.model_flops_per_token * 48


@pytest.mark.parametrize("recompute", ["selective", "full"])
@pytest.mark.parametrize("name", ["llama-gqa", "qwen2-mqa-qkv-bias", "gemma-geglu-tied-wide-heads", "neox-parallel"])
def test_engine_hardware_flops_equal_flop_counter_with_recomputation(name, recompute):
    cfg, batch, seq = FAMILIES[name], 2, 24
    t = training_flops_per_token(cfg, seq, recompute=recompute)
    assert counted_flops(cfg, batch, seq, recompute=recompute) == t.hardware_flops_per_token * 48
    assert t.hardware_flops_per_token > t.model_flops_per_token  # the recomputed forward is really counted


@pytest.mark.parametrize("name", ["llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "olmo-2-7b", "pythia-160m"])
def test_presets_one_layer_deep_flops_equal_flop_counter(name):
    cfg = ALL_PRESETS[name].with_(n_layer=1)
    assert counted_flops(cfg, 1, 64) == training_flops_per_token(cfg, 64).model_flops_per_token * 64


# ------------------------------------------------------------------ numerics: Hugging Face's modules


def _hf_model(hf, kind: str, cfg: ModelConfig, **override):
    """A transformers model of ``cfg``'s shape, built locally (no hub), weights drawn far from the defaults."""
    common = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "intermediate_size": cfg.n_inner,
              "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
              "num_key_value_heads": cfg.kv_heads, "max_position_embeddings": cfg.block_size,
              "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "tie_word_embeddings": cfg.tie_embeddings,
              "hidden_act": "silu"}
    config = (hf.LlamaConfig(attention_bias=False, mlp_bias=False, **{**common, **override}) if kind == "llama"
              else hf.Qwen2Config(**{**common, **override}))
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = (hf.LlamaForCausalLM if kind == "llama" else hf.Qwen2ForCausalLM)(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # large weights and gains away from 1: peaked attention, every mapping error shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif "embed" in name:  # Llama's initializer_range 0.02: mean x^2 ~ 4e-4, where eps 1e-5 moves the norm
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
    return model


def _ours_from(hf_model, cfg, attention):
    ours = build_model(cfg, attention=attention).eval()
    sd = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    ours.load_state_dict(sd, strict=True)  # the same names and shapes, nothing left over on either side
    return ours


# fp32 logits up to ~3.5: 1e-5 is a few float32 roundings of these sums (observed max |diff| 1.8e-6 with SDPA, 0 with
# spelled-out attention); RoPE base 500000 instead of 10000 moves them by 3.0, RMSNorm epsilon 1e-6 instead of 1e-5
# by 0.19 (observed; asserted > 100 x the tolerance below)
ATOL = 1e-5


@pytest.mark.parametrize("attention", ["sdpa", "math"])
@pytest.mark.parametrize("kind,name", [("llama", "llama-gqa"), ("llama", "llama-mha"),
                                       ("qwen2", "qwen2-mqa-qkv-bias")])
def test_logits_equal_transformers_with_the_same_weights(hf, kind, name, attention):
    cfg = FAMILIES[name]
    theirs = _hf_model(hf, kind, cfg)
    ours = _ours_from(theirs, cfg, attention)
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = theirs(input_ids=idx).logits
        got, _ = ours(idx)
    assert want.abs().max() > 1.0  # not a near-uniform output that any position scheme would match
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("override", [{"rope_theta": 500000.0}, {"rms_norm_eps": 1e-6}, {"rms_norm_eps": 1e-4}])
def test_the_logit_tolerance_tells_a_wrong_rope_base_or_norm_epsilon_apart(hf, override):
    cfg = FAMILIES["llama-gqa"]
    ours = _ours_from(_hf_model(hf, "llama", cfg), cfg, "sdpa")
    other = _hf_model(hf, "llama", cfg, **override)  # same weights (same draws), one constant changed
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (ours(idx)[0] - other(input_ids=idx).logits).abs().max().item()
    assert diff > 100 * ATOL


def test_the_models_rope_base_and_norm_epsilon_reach_the_module(hf):
    # Llama 3's base 500000 and Llama 1's eps 1e-6, as a config.json gives them: the trainer's logits equal
    # LlamaForCausalLM built with the same two values, and a module that kept 10000 / 1e-5 would be far off
    cfg = FAMILIES["llama-gqa"].with_(rope_theta=500000.0, norm_eps=1e-6)
    theirs = _hf_model(hf, "llama", cfg)
    assert theirs.config.rope_parameters["rope_theta"] == 500000.0 and theirs.config.rms_norm_eps == 1e-6
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = theirs(input_ids=idx).logits
        for attention in ("sdpa", "math"):
            torch.testing.assert_close(_ours_from(theirs, cfg, attention)(idx)[0], want, rtol=0, atol=ATOL)
        for ignored in ({"rope_theta": 10000.0}, {"norm_eps": 1e-5}):  # what the module did before the fields
            assert (_ours_from(theirs, cfg.with_(**ignored), "sdpa")(idx)[0] - want).abs().max() > 100 * ATOL


def test_grouped_query_sharing_is_transformers_repeat_kv_and_a_wrong_map_shows(hf):
    # transformers' repeat_kv gives query head h the K/V head h // group; any other map of heads to groups must fail
    cfg = FAMILIES["llama-gqa"]
    theirs = _hf_model(hf, "llama", cfg)
    ours = _ours_from(theirs, cfg, "math")
    idx = torch.randint(0, cfg.vocab_size, (1, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = theirs(input_ids=idx).logits
        for layer in ours.layers:  # swap the two K heads (and V heads): heads 0-1 now read group 1, 2-3 group 0
            for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                w = proj.weight.view(cfg.kv_heads, cfg.head_dim, cfg.n_embd)
                proj.weight.copy_(w.flip(0).reshape(-1, cfg.n_embd))
        swapped, _ = ours(idx)
    assert (swapped - want).abs().max() > 100 * ATOL


# ------------------------------------------------------------------ training: learns, resumes exactly


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TRAIN_LLAMA = ModelConfig(n_layer=2, n_head=4, n_embd=32, n_kv_head=2, ffn_dim=64, block_size=32, vocab_size=256,
                          name="tiny-llama", **LLAMA)


def _cfg(**kw):
    base = {"model": TRAIN_LLAMA, "micro_batch": 4, "seq_len": 32, "max_steps": 12, "warmup_steps": 3,
            "learning_rate": 3e-3, "eval_interval": 0, "eval_batches": 2, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


def test_llama_style_loss_falls_in_a_few_dozen_steps(pydoc_split):
    train, val = pydoc_split
    t = Trainer(_cfg(max_steps=40, eval_interval=20), train, val)
    assert isinstance(t.raw_model, Decoder)
    result = t.train()
    losses = [m.loss for m in result.history]
    assert losses[0] == pytest.approx(math.log(256), abs=0.3)  # starts near uniform guessing over bytes
    vals = [m.val_loss for m in result.history if m.val_loss is not None]
    assert len(vals) == 2 and vals[-1] < vals[0]
    assert np.mean(losses[-5:]) < losses[0] - 1.0  # measured: 5.56 -> 3.34 nats (mean of the last 5), docs/trainer.md


def test_llama_style_resume_after_ctrl_c_is_bit_identical(pydoc_split, tmp_path):
    train, val = pydoc_split
    cfg = _cfg()
    full = Trainer(cfg, train, val)
    ref = full.train()
    ckpt = tmp_path / "run.pt"
    first = Trainer(cfg, train, val, checkpoint_path=ckpt)
    first.callbacks.append(lambda m: os.kill(os.getpid(), signal.SIGINT) if m.step == 6 else None)  # Ctrl-C
    part = first.train()
    assert part.interrupted and part.steps_done == 6
    torch.manual_seed(999)
    np.random.seed(5)  # scramble the RNGs: resume must restore them
    second = Trainer(cfg, train, val, checkpoint_path=ckpt)
    assert second.resume(ckpt) == 6
    rest = second.train()
    assert [m.loss for m in rest.history] == [m.loss for m in ref.history[6:]]
    assert rest.final_val_loss == ref.final_val_loss
    for (name, p), q in zip(full.raw_model.named_parameters(), second.raw_model.parameters()):
        assert torch.equal(p, q), name


def test_a_checkpoint_of_another_family_is_refused(pydoc_split, tmp_path):
    train, _ = pydoc_split
    ckpt = tmp_path / "llama.pt"
    Trainer(_cfg(max_steps=1), train, checkpoint_path=ckpt).train()
    gelu = Trainer(_cfg(max_steps=1, model=TRAIN_LLAMA.with_(mlp="gelu")), train)
    with pytest.raises(UsageError, match="mlp"):
        gelu.resume(ckpt)


@pytest.mark.parametrize("position", ["rope", "none"])
def test_train_config_takes_a_sequence_past_block_size_where_the_position_scheme_allows(position, pydoc_split):
    # block_size is the trained context for RoPE and no positions; only a learned table's rows limit the sequence
    model = TRAIN_LLAMA.with_(position=position, block_size=16)
    t = Trainer(_cfg(model=model, seq_len=32, max_steps=1), pydoc_split[0])
    assert np.isfinite(t.train().history[0].loss)
    with pytest.raises(UsageError, match="learned position table") as err:
        TrainConfig(model=model.with_(position="learned"), seq_len=32)
    assert "\n" not in str(err.value)


def test_bf16_autocast_casts_each_block_input_once(pydoc_split):
    # q, k and v (and gate and up) read one 16-bit copy of the normalised input, as one fused matmul would
    train, _ = pydoc_split
    t = Trainer(_cfg(precision="bf16"), train)
    seen = []
    attn = t.raw_model.layers[0].self_attn
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        proj.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype, inp[0].data_ptr(), out.dtype)))
    losses = [m.loss for m in t.train(stop_after=3).history]
    assert {s[0] for s in seen} == {torch.bfloat16} and {s[2] for s in seen} == {torch.bfloat16}
    assert len({s[1] for s in seen[:3]}) == 1  # the same storage for all three projections
    assert np.isfinite(losses).all()


def test_bench_measures_the_llama_style_model_with_the_engines_flops():
    from flopscalc.train.bench import BenchSetup, measure

    p = measure(BenchSetup(TRAIN_LLAMA, micro_batch=2, seq_len=32, device="cpu", warmup_steps=1, timed_steps=2),
                peak_flop_per_s=None)
    assert p.n_params == count_params(TRAIN_LLAMA).total
    assert p.model_flops_per_token == counted_flops(TRAIN_LLAMA, 2, 32) / 64  # FlopCounterMode, per token
    assert p.achieved_flop_per_s == pytest.approx(p.tokens_per_s * p.model_flops_per_token, rel=1e-12)


def test_fsdp_shards_each_decoder_block_and_computes_what_one_module_does(tmp_path):
    # FSDP wraps `model.h` block by block (flopscalc.train.distributed.wrap_model); Decoder answers to that name.
    # A one-process gloo group: the wrapping and DTensor parameters are real, the sharding is trivial.
    import torch.distributed as dist

    from flopscalc.train.distributed import DistInfo, wrap_model

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        plain = build_model(TRAIN_LLAMA)
        torch.manual_seed(0)
        sharded = wrap_model(build_model(TRAIN_LLAMA), DistInfo(0, 0, 2), torch.device("cpu"), "fsdp")
        assert all(type(b).__name__ == "FSDPDecoderBlock" for b in sharded.layers)
        idx = torch.randint(0, TRAIN_LLAMA.vocab_size, (2, 32), generator=torch.Generator().manual_seed(4))
        want, got = plain(idx, idx)[1], sharded(idx, idx)[1]
        want.backward()
        got.backward()
        assert torch.equal(want, got)
        for (name, p), q in zip(plain.named_parameters(), sharded.parameters()):
            assert torch.equal(p.grad, q.grad.full_tensor()), name
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~30 s of inductor compilation on a CPU; pytest --run-slow (docs/testing.md)
@needs_cxx
def test_compiled_llama_style_model_trains_like_eager(pydoc_split):
    # measured: the three losses agree to 5e-7 (fp32 CPU, one thread)
    train, _ = pydoc_split
    eager = Trainer(_cfg(max_steps=3), train).train()
    compiled = Trainer(_cfg(max_steps=3, compile=True), train).train()
    assert [m.loss for m in compiled.history] == pytest.approx([m.loss for m in eager.history], rel=1e-5)
