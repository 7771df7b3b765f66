"""The memory estimator's activation bytes against what autograd saves in the reference `Decoder` (CPU, torch 2.13).

Measured as tests/test_memory_measured.py measures GPT-2: every tensor autograd packs plus the inputs
``torch.utils.checkpoint`` keeps, each storage once, parameters and autocast's weight casts excluded.

The estimate with ``device=cpu`` equals the measurement exactly for every family, RMSNorm included: on a CPU, torch
2.13 runs ``F.rms_norm`` with autograd as its composite (upcast, pow, mean, rsqrt, mul, mul; the fused
``_fused_rms_norm`` kernel serves CUDA), which saves the normalised tensor in fp32 as well as the input and the fp32
rstd; in pure bf16 the fp32 upcast in place of the bf16 input, and an fp32 rstd. The engine models that
(``flopscalc.memory.activations.rms_norm_bytes``); ``device=cuda`` (the default) counts the fused kernel's input and
rstd, unmeasured here. Every other byte (GQA's K and V at n_kv_head heads, SwiGLU/GeGLU's 4 f, RoPE's cos and sin once
for all layers, q/k norms, QKV-only biases, the parallel block's shared input, LayerNorm without gain) is the same on
both devices.

Weights, gradients and optimizer state (AdamW, SGD with momentum, Adafactor) after a step equal the estimate too, for
every family (a GELU/LayerNorm parallel block, Pythia's, included: ``ModelConfig.is_gpt2_layout`` decides the fused
QKV layout for the module and for ``param_shapes`` alike).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from flopscalc.flops import Recompute
from flopscalc.memory import Device, MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.model import ModelConfig
from tests.test_memory_measured import EXACT, _storages, measure_model
from tests.test_train_llama import FAMILIES

BATCH, SEQ = 2, 16
PRECISIONS = [MemoryPrecision.fp32, MemoryPrecision.bf16_mixed, MemoryPrecision.bf16_pure]
CASES = ["llama-gqa", "qwen2-mqa-qkv-bias", "gemma-geglu-tied-wide-heads", "olmo2-qk-norm", "qwen3-head-qk-norm",
         "olmo-plain-layernorm", "neox-parallel", "swiglu-learned-positions"]

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not EXACT, reason="the named difference is torch 2.13's CPU rms_norm")]


def measure(cfg, precision, recompute, attention, monkeypatch) -> dict:
    """Saved, weight-copy and logits bytes of one forward + backward (tests/test_memory_measured.measure_model)."""
    import flopscalc.train.model as ref

    torch.manual_seed(0)
    model = ref.build_model(cfg, attention=attention, recompute=recompute.value)
    return measure_model(model, BATCH, SEQ, precision=precision, monkeypatch=monkeypatch)


# an RMSNorm parallel block (no family has one; the CPU composite's per-norm upcast in pure bf16 is not shared)
RMS_PARALLEL = {"rmsnorm-parallel": FAMILIES["llama-gqa"].with_(parallel_block=True)}


@pytest.mark.parametrize("attention", ["sdpa", "math"])
@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: p.value)
@pytest.mark.parametrize("name", CASES + list(RMS_PARALLEL))
def test_saved_bytes_logits_and_weight_copies_equal_the_cpu_estimate(name, precision, attention, monkeypatch):
    cfg = {**FAMILIES, **RMS_PARALLEL}[name]
    for recompute in Recompute:
        setup = TrainingSetup(micro_batch=BATCH, seq_len=SEQ, precision=precision, recompute=recompute,
                              flash=attention == "sdpa", device=Device.cpu)
        est = estimate_memory(cfg, setup)
        got = measure(cfg, precision, recompute, attention, monkeypatch)
        assert got["activations"] == est.activations.total, recompute.value
        assert got["logits"] == est.logits_bytes
        assert got["weight_copies"] == (est.states.weight_copies_bytes if precision.mixed else 0)


def test_cpu_and_gpu_differ_by_the_composite_rms_norm_only(monkeypatch):
    # the GPU's fused rms_norm saves the input and the fp32 rstd; the CPU composite also the fp32 normalised tensor:
    # b s width x 4 bytes for each of the two block norms and the final norm. A LayerNorm block: no difference.
    def delta(cfg):
        cpu, gpu = (estimate_memory(cfg, TrainingSetup(micro_batch=BATCH, seq_len=SEQ, precision="fp32",
                                                       device=device)).activations for device in ("cpu", "cuda"))
        return {k: v for k, v in cpu.as_dict().items() if v != gpu.as_dict()[k]}, cpu.total - gpu.total
    llama, neox = FAMILIES["llama-gqa"], FAMILIES["neox-parallel"]
    assert delta(neox) == ({}, 0)
    changed, extra = delta(llama)
    assert set(changed) == {"layernorm", "final"}
    assert extra == llama.n_layer * 2 * BATCH * SEQ * 64 * 4 + BATCH * SEQ * 64 * 4
    # and the GPU estimate is wrong on this CPU by exactly that (the measurement is the CPU's)
    gpu = estimate_memory(llama, TrainingSetup(micro_batch=BATCH, seq_len=SEQ, precision="fp32"))
    got = measure(llama, MemoryPrecision.fp32, Recompute.none, "sdpa", monkeypatch)
    assert got["activations"] - gpu.activations.total == extra


# GPT-2's GELU/LayerNorm block in a layout GPT does not build (Decoder holds q, k, v apart): RoPE, a QKV-only bias off
GPT2_BLOCK_ELSEWHERE = {
    "gelu-layernorm-rope": ModelConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=97, block_size=32, position="rope"),
    "gelu-layernorm-no-qkv-bias": ModelConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=97, block_size=32,
                                              qkv_bias=False),
}


@pytest.mark.parametrize("precision", [MemoryPrecision.fp32, MemoryPrecision.bf16_pure], ids=lambda p: p.value)
@pytest.mark.parametrize("name", CASES + list(GPT2_BLOCK_ELSEWHERE))
def test_weights_gradients_and_optimizer_state_equal_the_estimate(name, precision):
    from flopscalc.memory import Optimizer, param_shapes
    from flopscalc.train.model import build_model

    cfg = {**FAMILIES, **GPT2_BLOCK_ELSEWHERE}[name]
    torch.manual_seed(0)
    model = build_model(cfg)
    if precision is MemoryPrecision.bf16_pure:
        model = model.to(torch.bfloat16)
    idx = torch.randint(0, cfg.vocab_size, (BATCH, SEQ))
    model(idx, idx)[1].backward()
    params = list(model.parameters())

    def estimate(optimizer):
        return estimate_memory(cfg, TrainingSetup(micro_batch=BATCH, seq_len=SEQ, precision=precision,
                                                  optimizer=optimizer, device=Device.cpu)).states
    assert _storages(params) == estimate(Optimizer.adamw).weights_bytes
    assert _storages(p.grad for p in params) == estimate(Optimizer.adamw).gradients_bytes
    # one predicate (ModelConfig.is_gpt2_layout) decides GPT's fused QKV in the module and in param_shapes: a GELU/
    # LayerNorm parallel block (Pythia) lists q, k, v apart as Decoder holds them, so AdamW's per-tensor step counters
    # and Adafactor's factored moments (shape-dependent) come out exactly
    assert [tuple(p.shape) for p in params] == [s for _, s in param_shapes(cfg)]
    optimizers = {Optimizer.adamw: lambda: torch.optim.AdamW(params, lr=1e-3),
                  Optimizer.sgd: lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
                  Optimizer.adafactor: lambda: torch.optim.Adafactor(params, lr=1e-3)}
    for optimizer, make in optimizers.items():
        opt = make()
        opt.step()
        state = _storages(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
        assert state == estimate(optimizer).optimizer_state_bytes, optimizer.value
