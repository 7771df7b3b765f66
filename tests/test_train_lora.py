"""LoRA on the reference trainer's modules, against independent references.

Trainable counts against peft's ``get_nb_trainable_parameters`` on ``LlamaForCausalLM`` built from a local config and
against the calculator (`finetune.adapters.count_adapters`); the forward against peft's with the same weights;
forward + backward FLOPs against ``FlopCounterMode``; zero-initialised B against the base model's logits; a step
against the frozen base; a resume against an uninterrupted run; the CLI's wiring and refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

from flopscalc.finetune.adapters import ALL_LINEAR, count_adapters, parse_targets
from flopscalc.finetune.memory import FinetuneSetup
from flopscalc.hf_config import config_from_hf
from flopscalc.model import ModelConfig

torch = pytest.importorskip("torch")

from flopscalc.finetune.flops import finetune_flops_per_token
from flopscalc.train.config import TrainConfig
from flopscalc.train.lora import apply_lora, lora_model_flops_per_token, n_trainable_params
from flopscalc.train.model import GPT, Decoder, build_model
from flopscalc.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCH, SEQ = 2, 16
GPT2 = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=61, name="gpt2-tiny")
# a shrunken Llama 3 config.json: GQA 4 query heads on 2 K/V heads, SwiGLU, RMSNorm, RoPE, untied head
LLAMA_HF = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 48, "vocab_size": 61, "max_position_embeddings": 64,
            "tie_word_embeddings": False, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "attention_bias": False,
            "mlp_bias": False, "hidden_act": "silu"}
LLAMA = config_from_hf(LLAMA_HF)
TARGET_SETS = ["q,v", "v", "k", "o", "q,k,v,o", "up,down", ALL_LINEAR]


def targets_for(cfg: ModelConfig, text: str) -> tuple[str, ...]:
    """Parsed targets; GPT-2's MLP has no gate, so all-linear there is q, k, v, o, up, down (peft's rule too)."""
    return tuple(t for t in parse_targets(text) if t != "gate" or cfg.mlp.n_matrices == 3)


def lora_model(cfg: ModelConfig, targets: tuple[str, ...], rank: int = 4, alpha: float = 8.0,
               attention: str = "math", seed: int = 0):
    torch.manual_seed(seed)
    return apply_lora(build_model(cfg, attention=attention), rank, alpha, targets)


def ids(cfg: ModelConfig, seq: int = SEQ) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (BATCH, seq), generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- counts

@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama"])
@pytest.mark.parametrize("rank", [1, 4, 8])
@pytest.mark.parametrize("text", TARGET_SETS)
def test_trainable_count_equals_the_calculator(cfg, rank, text):
    targets = targets_for(cfg, text)
    model = lora_model(cfg, targets, rank)
    expected = count_adapters(cfg, targets, rank, 0)
    assert n_trainable_params(model) == expected.n_params
    assert sum(1 for p in model.parameters() if p.requires_grad) == expected.n_tensors
    # nothing but adapters trains: norms, embeddings and the head are frozen (peft's bias="none")
    assert all(("lora_A" in n or "lora_B" in n) == p.requires_grad for n, p in model.named_parameters())


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    return transformers, peft


def peft_llama(hf, targets, rank: int, alpha: float = 8.0):
    transformers, peft = hf
    cfg = transformers.LlamaConfig(**{k: v for k, v in LLAMA_HF.items() if k != "model_type"})
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(cfg).float()
    modules = targets if targets == ALL_LINEAR else [f"{t}_proj" for t in parse_targets(targets)]
    return peft.get_peft_model(base, peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=modules,
                                                     lora_dropout=0.0))


@pytest.mark.parametrize("rank", [1, 8])
@pytest.mark.parametrize("text", TARGET_SETS + ["gate,up", "k,down"])
def test_trainable_and_total_counts_equal_peft(hf, rank, text):
    pm = peft_llama(hf, text, rank)
    trainable, total = pm.get_nb_trainable_parameters()
    ours = lora_model(LLAMA, targets_for(LLAMA, text), rank)
    assert n_trainable_params(ours) == trainable
    assert sum(p.numel() for p in ours.parameters()) == total


def _ours_from_peft(pm) -> dict:
    """peft's state dict under our names: ``base_model.model.model.X.lora_A.default.weight`` -> ``X.lora_A.weight``."""
    out = {}
    for k, v in pm.state_dict().items():
        k = k.removeprefix("base_model.model.").removeprefix("model.").replace(".default", "")
        out[k] = v
    return out


@pytest.mark.parametrize("text", ["q,v", ALL_LINEAR])
def test_forward_equals_peft_with_the_same_weights(hf, text):
    """B made non-zero in peft's model, every weight copied into ours: the same logits (scale alpha / r included)."""
    pm = peft_llama(hf, text, rank=4, alpha=16.0)
    with torch.no_grad():
        for i, (name, p) in enumerate(pm.named_parameters()):
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(i))
    ours = lora_model(LLAMA, targets_for(LLAMA, text), rank=4, alpha=16.0)
    ours.load_state_dict(_ours_from_peft(pm), strict=True)
    x = ids(LLAMA)
    pm.eval()
    ours.eval()
    with torch.no_grad():
        want = pm(input_ids=x).logits
        got = ours(x)[0]
    assert torch.allclose(got, want, rtol=0, atol=1e-5)  # float32: summation order differs in the attention core
    lora_part = {k for k in _ours_from_peft(pm) if "lora_B" in k}
    assert lora_part and all(ours.get_parameter(k).abs().sum() > 0 for k in lora_part)  # not a trivial B = 0 case


# ---------------------------------------------------------------- initial state and one step

@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_zero_initialised_b_leaves_the_logits_exactly_as_the_base(cfg):
    torch.manual_seed(0)
    base = build_model(cfg)
    torch.manual_seed(0)
    lora = apply_lora(build_model(cfg), 4, 8.0, targets_for(cfg, ALL_LINEAR))
    x = ids(cfg)
    with torch.no_grad():
        assert torch.equal(lora(x)[0], base(x)[0])


@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_a_step_changes_only_the_adapters(cfg):
    train = TrainConfig(model=cfg, micro_batch=BATCH, seq_len=SEQ, max_steps=3, warmup_steps=0, eval_interval=0,
                        device="cpu", lora_rank=4, lora_targets="q,v,down")
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 4096).astype(np.uint16)
    trainer = Trainer(train, tokens)
    before = {n: p.detach().clone() for n, p in trainer.raw_model.named_parameters()}
    trainer.train_step()
    changed = {n for n, p in trainer.raw_model.named_parameters() if not torch.equal(p, before[n])}
    adapters = {n for n in before if "lora_" in n}
    assert {n for n in adapters if "lora_B" in n} <= changed <= adapters  # every B moves; the base stays bit-identical
    trainer.train_step()
    changed = {n for n, p in trainer.raw_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == adapters
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in trainer.raw_model.parameters() if p.requires_grad}


# ---------------------------------------------------------------- FLOPs

def measured_flops(model, cfg) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x = ids(cfg)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x, x)[1].backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama"])
@pytest.mark.parametrize("text", TARGET_SETS)
def test_flops_equal_flop_counter(cfg, text):
    """Forward + backward FLOPs of the LoRA module (math attention, whose matmuls the counter sees) equal the
    fine-tuning engine's per-token count x tokens, exactly."""
    targets = targets_for(cfg, text)
    predicted = lora_model_flops_per_token(cfg, SEQ, 4, targets) * BATCH * SEQ
    assert measured_flops(lora_model(cfg, targets), cfg) == predicted


@pytest.mark.parametrize("text,extra", [("q,v", "scores"), ("v", "2 scores + values"), ("o", "none")])
def test_fused_qkv_costs_the_first_layers_core_gradients(text, extra):
    """GPT-2's fused c_attn vs separate projections: the engine's separate-projection count misses exactly the first
    layer's core gradients the fused output forces (dK for q,v; dQ, dK and dP for v), and nothing when q, k, v have
    no adapter. Limit check: the measured difference is the named term of the counter's own attention matmuls."""
    from flopscalc.flops import forward_flops_per_token

    targets = targets_for(GPT2, text)
    separate = finetune_flops_per_token(GPT2, FinetuneSetup(method="lora", rank=4, targets=targets, micro_batch=1,
                                                            seq_len=SEQ, compute="fp32", device="cpu",
                                                            recompute="none")).model_flops_per_token
    fwd = forward_flops_per_token(GPT2, SEQ)
    scores, values = fwd.attn_scores / GPT2.n_layer, fwd.attn_values / GPT2.n_layer
    term = {"scores": scores, "2 scores + values": 2 * scores + values, "none": 0.0}[extra]
    assert measured_flops(lora_model(GPT2, targets), GPT2) == (separate + term) * BATCH * SEQ


@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama"])
@pytest.mark.parametrize("text", ["q,v", "o", ALL_LINEAR])
def test_full_recompute_adds_one_forward_of_blocks_and_adapters(cfg, text):
    """The trainer checkpoints each block without reentrancy, so nothing extra needs a gradient (peft's
    enable_input_require_grads is not needed): measured = the model FLOPs without recomputation + the engine's
    recompute term (every block's forward again, adapters included), exactly (early stop off, as tests/conftest.py
    measure_flops)."""
    from torch.utils.checkpoint import set_checkpoint_early_stop
    from torch.utils.flop_counter import FlopCounterMode

    targets = targets_for(cfg, text)
    torch.manual_seed(0)
    model = apply_lora(build_model(cfg, attention="math", recompute="full"), 4, 8.0, targets)
    x = ids(cfg)
    counter = FlopCounterMode(display=False)
    with counter, set_checkpoint_early_stop(False):
        model(x, x)[1].backward()
    redo = finetune_flops_per_token(cfg, FinetuneSetup(method="lora", rank=4, targets=targets, micro_batch=1,
                                                       seq_len=SEQ, compute="fp32", device="cpu",
                                                       recompute="full")).recompute
    assert redo > 0
    assert counter.get_total_flops() == (lora_model_flops_per_token(cfg, SEQ, 4, targets) + redo) * BATCH * SEQ


def test_trainer_mfu_counts_the_lora_step():
    """The trainer's FLOPs per token is the LoRA count; at rank 1 below pre-training's (frozen weights skip their
    gradients; on this 32-wide model rank 8's adapters cost more than that saves)."""
    from flopscalc.flops import training_flops_per_token

    train = TrainConfig(model=LLAMA, micro_batch=BATCH, seq_len=SEQ, max_steps=1, device="cpu", lora_rank=1)
    trainer = Trainer(train, np.zeros(4096, dtype=np.uint16))
    full = training_flops_per_token(LLAMA, SEQ).model_flops_per_token
    lora = lora_model_flops_per_token(LLAMA, SEQ, 1, targets_for(LLAMA, ALL_LINEAR))
    assert trainer.model_flops_per_token == lora < full


# ---------------------------------------------------------------- training and resume

def test_loss_falls_in_a_few_dozen_steps():
    """A frozen random base learns a repeating sequence through its adapters alone. The frozen head bounds how far:
    its rows have norm about 0.02 sqrt(d) (GPT-2's init) and the final norm's output about sqrt(d), so every logit
    stays within about 0.02 d = 0.64 of zero and the loss cannot approach 0; it falls from ln(61) = 4.11 by 0.5 nats
    in 40 steps here (measured 4.10 -> 3.56), and stays at 4.10 if the adapters do not train."""
    tokens = np.tile(np.arange(24, dtype=np.uint16) * 2 % LLAMA.vocab_size, 400)
    train = TrainConfig(model=LLAMA, micro_batch=4, seq_len=SEQ, max_steps=40, warmup_steps=2, learning_rate=1e-2,
                        eval_interval=0, device="cpu", lora_rank=8)
    losses = [m.loss for m in Trainer(train, tokens).train().history]
    assert losses[0] > 4.0 and losses[-1] < losses[0] - 0.4, losses


def _state(trainer) -> dict:
    return {n: t.detach().clone() for n, t in trainer.raw_model.state_dict().items()}


@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_resume_is_bit_identical(cfg, tmp_path):
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, 8192).astype(np.uint16)
    train = TrainConfig(model=cfg, micro_batch=BATCH, seq_len=SEQ, max_steps=6, warmup_steps=1, eval_interval=0,
                        device="cpu", lora_rank=4, lora_alpha=16.0, lora_targets="q,v,up")
    straight = Trainer(train, tokens)
    straight.train()
    first = Trainer(train, tokens, checkpoint_path=tmp_path / "ck.pt")
    first.train(stop_after=3)
    second = Trainer(train, tokens)
    assert second.resume(tmp_path / "ck.pt") == 3
    second.train()
    a, b = _state(straight), _state(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = Trainer(TrainConfig(model=cfg, micro_batch=BATCH, seq_len=SEQ, max_steps=6, device="cpu", lora_rank=8),
                    tokens)
    from flopscalc.errors import UsageError

    with pytest.raises(UsageError, match="LoRA"):
        other.resume(tmp_path / "ck.pt")


# ---------------------------------------------------------------- settings

@pytest.mark.parametrize("kwargs,match", [
    ({"lora_alpha": 4.0}, "applies only to LoRA"),
    ({"lora_targets": "q"}, "applies only to LoRA"),
    ({"lora_rank": -1}, "lora-rank"),
    ({"lora_rank": 4, "lora_alpha": 0.0}, "lora-alpha"),
    ({"lora_rank": 4, "lora_targets": "qkv"}, "not one of"),
    ({"lora_rank": 4, "lora_targets": "gate"}, "no gate"),
])
def test_bad_lora_settings_are_refused(kwargs, match):
    from flopscalc.errors import UsageError

    with pytest.raises(UsageError, match=match):
        TrainConfig(model=GPT2, seq_len=SEQ, **kwargs)


def test_targets_read_like_peft_names():
    cfg = TrainConfig(model=LLAMA, seq_len=SEQ, lora_rank=2, lora_targets="v_proj, q_proj")
    assert cfg.lora_target_names == ("q", "v") and cfg.lora_scale_alpha == 2.0
    assert TrainConfig(model=GPT2, seq_len=SEQ, lora_rank=2).lora_target_names == ("q", "k", "v", "o", "up", "down")
    assert isinstance(build_model(GPT2), GPT) and isinstance(build_model(LLAMA), Decoder)
