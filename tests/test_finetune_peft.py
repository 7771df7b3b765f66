"""LoRA against the real thing: peft on small Llama-style transformers models, built locally on CPU (no hub).

Each case wraps a ``transformers`` model from a shrunken config file with ``peft.get_peft_model`` and checks, exactly:
trainable parameters against ``get_nb_trainable_parameters``; parameter, gradient and AdamW-state bytes against
the tensors after one step; saved activations against what autograd saves (every storage once, as
tests/test_arch_memory.py measures); and forward + backward FLOPs against ``FlopCounterMode`` (eager attention,
whose matmuls the counter sees). Runs are fp32 (``Compute.fp32``): on CPU that is what runs; bf16 autocast's extra
casts are the formulas' named bf16 terms, not measured here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flopscalc.finetune.activations import lora_activation_bytes
from flopscalc.finetune.adapters import parse_targets
from flopscalc.finetune.flops import finetune_flops_per_token
from flopscalc.finetune.memory import FinetuneSetup, adapter_optimizer_bytes, finetune_memory
from flopscalc.hf_config import config_from_hf

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
BATCH, SEQ, RANK = 2, 32, 4
SMALL = {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 96,
         "vocab_size": 97, "num_key_value_heads": 2}
# peft target_modules per case: the first layer's flow differs for each (what needs a gradient before an adapter)
TARGET_SETS = [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"],
               "all-linear", ["down_proj"], ["o_proj"], ["k_proj", "up_proj"]]
STEMS = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.1"]


@pytest.fixture(scope="module")
def libs(one_torch_thread):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    return transformers, peft


def small(stem: str) -> dict:
    data = json.loads((CONFIGS / f"{stem}.json").read_text())
    return {**data, **SMALL, **{k: None for k in ("pad_token_id", "bos_token_id", "eos_token_id") if k in data}}


def peft_model(libs, data: dict, targets, rank: int = RANK, attention: str = "sdpa", checkpointing: bool = False):
    import torch

    transformers, peft = libs
    cfg = transformers.AutoConfig.for_model(**data)
    cfg._attn_implementation = attention
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=rank, target_modules=targets, lora_dropout=0.0))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()  # what prepare_model_for_kbit_training does for a frozen embedding
    model.train()
    return model


def setup_for(targets, rank: int = RANK, checkpointing: bool = False) -> FinetuneSetup:
    names = targets if isinstance(targets, str) else [t.removesuffix("_proj") for t in targets]
    return FinetuneSetup(method="lora", rank=rank, targets=parse_targets(names), micro_batch=BATCH, seq_len=SEQ,
                         compute="fp32", device="cpu", recompute="full" if checkpointing else "none")


def ids(data: dict):
    import torch

    return torch.randint(0, data["vocab_size"], (BATCH, SEQ), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("targets,rank", [(["q_proj", "v_proj"], 8), ("all-linear", 16), (["o_proj", "down_proj"], 1),
                                          (["k_proj", "gate_proj", "up_proj"], 4)])
def test_trainable_parameters_equal_peft(libs, stem, targets, rank):
    data = small(stem)
    model = peft_model(libs, data, targets, rank)
    trainable, total = model.get_nb_trainable_parameters()
    mem = finetune_memory(config_from_hf(data), setup_for(targets, rank))
    assert mem.n_trainable == trainable
    assert mem.n_total == total  # the frozen base plus the adapters


def measure_saved(model, data: dict) -> int:
    """Bytes of every distinct storage autograd saves in one forward (parameters excluded), then backward."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    idx = ids(data)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=idx, labels=idx)
    out.loss.backward()
    return sum(saved.values())


@pytest.mark.parametrize("targets", TARGET_SETS, ids=str)
def test_saved_activations_equal_autograd(libs, targets):
    data = small("llama-3.1-8b")
    measured = measure_saved(peft_model(libs, data, targets), data)
    assert lora_activation_bytes(config_from_hf(data), setup_for(targets)).total == measured


def test_checkpointing_keeps_layer_inputs_and_recomputes_one_layer(libs):
    """Reentrant checkpointing: the forward saves each layer's fp32 input, the final norm's and the loss's tensors.
    The estimate adds the layer that backward re-runs (the recompute peak: measured here as what one more layer
    saves without checkpointing) and RoPE's cos/sin, which the checkpoint holds as plain arguments."""
    targets = ["q_proj", "v_proj"]
    data = small("llama-3.1-8b")
    cfg = config_from_hf(data)
    est = lora_activation_bytes(cfg, setup_for(targets, checkpointing=True))
    tokens = BATCH * SEQ
    final_norm = tokens * cfg.n_embd * 4 + tokens * 4  # fp32 input and rsqrt
    cos_sin = 2 * SEQ * cfg.head_dim * 4
    forward_saved = measure_saved(peft_model(libs, data, targets, checkpointing=True), data)
    assert est.checkpoints + est.loss + final_norm == forward_saved
    deeper = {**data, "num_hidden_layers": data["num_hidden_layers"] + 1}
    one_layer = measure_saved(peft_model(libs, deeper, targets), deeper) - measure_saved(
        peft_model(libs, data, targets), data)
    assert est.total - forward_saved - cos_sin == one_layer


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"], ["gate_proj", "down_proj"]], ids=str)
def test_parameters_gradients_and_adamw_state_equal_measured_bytes(libs, targets):
    import torch

    data = small("llama-3.1-8b")
    model = peft_model(libs, data, targets)
    idx = ids(data)
    model(input_ids=idx, labels=idx).loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    opt.step()
    mem = finetune_memory(config_from_hf(data), setup_for(targets)).component_bytes()
    nbytes = lambda ts: sum(t.untyped_storage().nbytes() for t in ts)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)  # only adapters get .grad
    assert nbytes(frozen) == mem["base_weights"]
    assert nbytes(trainable) == mem["adapter_weights"]
    assert nbytes([p.grad for p in trainable]) == mem["gradients"]
    state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    assert nbytes(state) == mem["optimizer_state"]
    cfg = config_from_hf(data)
    assert adapter_optimizer_bytes(cfg, setup_for(targets)) == mem["optimizer_state"]


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("targets", TARGET_SETS, ids=str)
def test_flops_equal_flop_counter(libs, targets, checkpointing):
    from torch.utils.checkpoint import set_checkpoint_early_stop
    from torch.utils.flop_counter import FlopCounterMode

    data = small("llama-3.1-8b")
    model = peft_model(libs, data, targets, attention="eager", checkpointing=checkpointing)
    idx = ids(data)
    counter = FlopCounterMode(display=False)
    with counter, set_checkpoint_early_stop(False):
        model(input_ids=idx, labels=idx).loss.backward()
    per_token = finetune_flops_per_token(config_from_hf(data), setup_for(targets, checkpointing=checkpointing))
    assert per_token.hardware_flops_per_token * BATCH * SEQ == counter.get_total_flops()


def test_frozen_base_skips_weight_gradients_exactly(libs):
    """Full fine-tuning minus LoRA on the same model: the difference is the frozen weight gradients and the first
    layer's input-side work, nothing else (limit check on the counter, rank 1 on down only)."""
    from torch.utils.flop_counter import FlopCounterMode

    transformers, _ = libs
    import torch

    data = small("llama-3.1-8b")
    cfg = transformers.AutoConfig.for_model(**data)
    cfg._attn_implementation = "eager"
    full = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    idx = ids(data)
    counter = FlopCounterMode(display=False)
    with counter:
        full(input_ids=idx, labels=idx).loss.backward()
    ours = finetune_flops_per_token(config_from_hf(data), FinetuneSetup(method="full", micro_batch=BATCH, seq_len=SEQ,
                                                                        compute="fp32", device="cpu",
                                                                        recompute="none"))
    assert ours.hardware_flops_per_token * BATCH * SEQ == counter.get_total_flops()
    assert math.isclose(ours.backward, 2 * ours.base_forward)  # Kaplan et al. 2020 sec. 2.1


@pytest.mark.parametrize("targets", TARGET_SETS, ids=str)
def test_bf16_autocast_saves_the_activations_and_the_adapter_casts(libs, targets):
    """A bf16 base with peft's fp32 adapters under (CPU) bf16 autocast: what autograd saves is the bf16 estimate's
    activations (fp32 norm inputs, a bf16 copy of each adapter's input, bf16 intermediates) plus the bf16 casts of the
    adapter weights that backward keeps (`saved_adapter_casts`), exactly."""
    import torch

    transformers, peft = libs
    data = small("llama-3.1-8b")
    hf_cfg = transformers.AutoConfig.for_model(**data)
    hf_cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16)
    model = peft.get_peft_model(model, peft.LoraConfig(r=RANK, target_modules=targets, lora_dropout=0.0))
    model.train()
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}  # autocast_adapter_dtype
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    idx = ids(data)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=idx, labels=idx)
    out.loss.backward()
    names = targets if isinstance(targets, str) else [t.removesuffix("_proj") for t in targets]
    setup = FinetuneSetup(method="lora", rank=RANK, targets=parse_targets(names), micro_batch=BATCH, seq_len=SEQ,
                          device="cpu", recompute="none")
    cfg = config_from_hf(data)
    expected = lora_activation_bytes(cfg, setup).total + finetune_memory(cfg, setup).component_bytes()["weight_copies"]
    assert expected == sum(saved.values())
