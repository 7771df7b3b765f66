"""The memory estimator against bytes measured on the reference PyTorch module (CPU).

MEASURED here, on a real forward + backward (+ optimizer step) of ``flopscalc.train.model.GPT``:
- activations saved for backward: every tensor autograd packs (``saved_tensors_hooks``) plus the inputs
  ``torch.utils.checkpoint`` keeps, each storage counted once (by ``untyped_storage().data_ptr()``),
  parameter storages and 16-bit casts of parameters excluded;
- the 16-bit weight copies autocast caches: outputs of ``aten._to_copy`` on a parameter during the forward;
- the logits the forward returns;
- weights, gradients and optimizer state: storage sizes after ``optimizer.step()``.
Not measured here: the loss-backward transients (tests/test_memory_cuda_recorded.py checks them on CPU kernels and
within the recorded H200 peaks), CUDA context, allocator overhead, communication buckets, ZeRO sharding, 8-bit Adam
and Lion.

The estimator is run with ``device=cpu`` because two dtypes differ between the CPU and CUDA autocast
policies (math-attention softmax, bf16 LayerNorm statistics); see docs/memory.md.
"""

from __future__ import annotations

import pytest

from flopscalc.flops import Recompute
from flopscalc.memory import Device, MemoryPrecision, Optimizer, TrainingSetup, estimate_memory, param_shapes
from flopscalc.model import ModelConfig

torch = pytest.importorskip("torch")

# The estimate is an exact model of what torch 2.13 (the version the test extra pins) saves on CPU: there every
# component must equal the measured bytes to the byte, since a tolerance hides any term smaller than it (the
# flash log-sum-exp is ~0.1% of a total). Other torch versions may save a tensor more or less (kernels and
# autocast policies change), so there a 1% tolerance is kept as a fallback, per component, not on the total.
PINNED_TORCH = "2.13."
EXACT = torch.__version__.startswith(PINNED_TORCH)
REL_TOL = 0.0 if EXACT else 0.01

SHAPES = [  # (config, micro-batch, sequence)
    (ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=512), 2, 32),
    (ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=128, vocab_size=1000, bias=False), 1, 128),
    (ModelConfig(n_layer=3, n_head=8, n_embd=256, block_size=128, vocab_size=2000, tie_embeddings=False), 4, 64),
    # a tiny vocabulary, so the per-layer terms, not the log-probabilities, dominate the total
    (ModelConfig(n_layer=2, n_head=6, n_embd=192, block_size=96, vocab_size=96), 2, 96),
]
PRECISIONS = [MemoryPrecision.fp32, MemoryPrecision.bf16_mixed, MemoryPrecision.bf16_pure]
VIEW_OPS = {"TBackward0", "ViewBackward0", "TransposeBackward0", "ToCopyBackward0", "ExpandBackward0",
            "PermuteBackward0", "UnsafeViewBackward0"}


def _is_param_cast(t) -> bool:
    """A (view of a) dtype cast of a parameter: autocast's weight copy, not an activation."""
    fn, cast = t.grad_fn, False
    while fn is not None and type(fn).__name__ in VIEW_OPS:
        cast |= type(fn).__name__ == "ToCopyBackward0"
        fn = fn.next_functions[0][0]
    return cast and type(fn).__name__ == "AccumulateGrad"


def measure(cfg, batch, seq, *, precision, recompute, flash, monkeypatch) -> dict:
    """Run one forward/backward of the reference module on CPU and count bytes (see module docstring)."""
    import flopscalc.train.model as ref

    torch.manual_seed(0)
    model = ref.GPT(cfg, attention="sdpa" if flash else "math", recompute=recompute.value)
    return measure_model(model, batch, seq, precision=precision, monkeypatch=monkeypatch)


def measure_model(model, batch, seq, *, precision, monkeypatch) -> dict:
    """Bytes of every distinct storage autograd saves (and non-reentrant checkpoint keeps) in one forward +
    backward of ``model`` (a `flopscalc.train.model` module) on random tokens, of the weight copies autocast
    makes, and of the logits; the model (cast to bf16 in pure bf16) under "model"."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.checkpoint import checkpoint as real_checkpoint

    import flopscalc.train.model as ref

    cfg = model.cfg
    if precision is MemoryPrecision.bf16_pure:
        model = model.to(torch.bfloat16)
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    casts: dict[int, int] = {}

    def note(t):
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs and not _is_param_cast(t):
            saved[s.data_ptr()] = s.nbytes()

    def pack(t):
        note(t)
        return t

    kept = []

    def checkpoint(fn, *args, **kwargs):  # the inputs non-reentrant checkpoint keeps alive
        kept.extend(a for a in args if torch.is_tensor(a))
        return real_checkpoint(fn, *args, **kwargs)

    class CastCache(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten._to_copy.default and args[0].untyped_storage().data_ptr() in param_ptrs:
                casts[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
            return out

    monkeypatch.setattr(ref, "checkpoint", checkpoint)
    idx = torch.randint(0, cfg.vocab_size, (batch, seq))
    targets = torch.randint(0, cfg.vocab_size, (batch, seq))
    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), CastCache(),
          torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.mixed)):
        logits, loss = model(idx, targets)
    for t in kept:
        note(t)
    loss.backward()
    return {"activations": sum(saved.values()), "weight_copies": sum(casts.values()),
            "logits": logits.untyped_storage().nbytes(), "model": model}


def _storages(tensors) -> int:
    seen = {}
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _setup(batch, seq, precision, recompute=Recompute.none, flash=True, optimizer=Optimizer.adamw):
    return TrainingSetup(micro_batch=batch, seq_len=seq, precision=precision, recompute=recompute, flash=flash,
                         optimizer=optimizer, device=Device.cpu)


def _close(measured, estimated, what):
    if EXACT:
        assert estimated == measured, f"{what}: measured {measured} B, estimated {estimated} B"
    else:
        assert estimated == pytest.approx(measured, rel=REL_TOL), f"{what}: measured {measured}, estimated {estimated}"


@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: p.value)
@pytest.mark.parametrize("flash", [True, False], ids=["sdpa", "math"])
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_activations_match_saved_tensors(shape, flash, precision, monkeypatch):
    cfg, batch, seq = SHAPES[shape]
    for recompute in Recompute:
        got = measure(cfg, batch, seq, precision=precision, recompute=recompute, flash=flash, monkeypatch=monkeypatch)
        est = estimate_memory(cfg, _setup(batch, seq, precision, recompute, flash))
        what = f"{cfg.n_embd}x{cfg.n_layer} b{batch} s{seq} {precision.value} {recompute.value} flash={flash}"
        _close(got["activations"], est.activations.total, f"activations {what}")
        _close(got["logits"], est.logits_bytes, f"logits {what}")
        if precision.mixed:  # autocast keeps every cast weight until it exits, whatever the recompute mode
            _close(got["weight_copies"], est.states.weight_copies_bytes, f"weight copies {what}")
        else:
            assert got["weight_copies"] == 0 and est.states.weight_copies_bytes == 0


@pytest.mark.parametrize("precision", [MemoryPrecision.fp32, MemoryPrecision.bf16_mixed, MemoryPrecision.bf16_pure],
                         ids=lambda p: p.value)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_states_match_storage_after_optimizer_step(shape, precision, monkeypatch):
    cfg, batch, seq = SHAPES[shape]
    got = measure(cfg, batch, seq, precision=precision, recompute=Recompute.none, flash=True, monkeypatch=monkeypatch)
    model = got["model"]
    params = list(model.parameters())
    optimizers = {
        Optimizer.adamw: lambda: torch.optim.AdamW(params, lr=1e-3),
        Optimizer.sgd: lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        Optimizer.adafactor: lambda: torch.optim.Adafactor(params, lr=1e-3),
    }
    est = estimate_memory(cfg, _setup(batch, seq, precision))
    _close(_storages(params), est.states.weights_bytes, "weights")
    _close(_storages(p.grad for p in params), est.states.gradients_bytes, "gradients")
    for name, make in optimizers.items():
        opt = make()
        opt.step()
        state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
        est = estimate_memory(cfg, _setup(batch, seq, precision, optimizer=name))
        _close(_storages(state), est.states.optimizer_state_bytes, f"{name.value} state")


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_parameter_layout_matches_module(shape):
    import flopscalc.train.model as ref

    cfg = SHAPES[shape][0]
    with torch.device("meta"):
        model = ref.GPT(cfg)
    assert [(n, tuple(p.shape)) for n, p in model.named_parameters()] == param_shapes(cfg)


if __name__ == "__main__":  # print the measured-vs-estimated table (python tests/test_memory_measured.py)
    class _Patch:
        def setattr(self, obj, name, value):
            setattr(obj, name, value)

    import flopscalc.train.model as _ref

    real = _ref.checkpoint
    print("| shape (L x d, V, b, s) | precision | recompute | attention | measured B | estimated B | error % |")
    print("|---|---|---|---|---|---|---|")
    for cfg, batch, seq in SHAPES:
        for precision in PRECISIONS:
            for recompute in Recompute:
                for flash in (True, False):
                    got = measure(cfg, batch, seq, precision=precision, recompute=recompute, flash=flash,
                                  monkeypatch=_Patch())
                    _ref.checkpoint = real
                    est = estimate_memory(cfg, _setup(batch, seq, precision, recompute, flash)).activations.total
                    err = 100 * (est - got["activations"]) / got["activations"]
                    print(f"| {cfg.n_layer}x{cfg.n_embd}, {cfg.vocab_size}, {batch}, {seq} | {precision.value} | "
                          f"{recompute.value} | {'sdpa' if flash else 'math'} | {got['activations']:,} | "
                          f"{est:,.0f} | {err:+.2f} |")
