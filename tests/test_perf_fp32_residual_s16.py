"""The fp32 residual stream of autocast training with fp32 parameters (perf.block_ops [20]).

Under PyTorch AMP the reference trainer keeps fp32 parameters: the embedding's output and every ``x + branch`` are
fp32, layer norm runs in fp32 and its output is cast to bf16 before each linear; the backward mirrors it. The step
model prices those kernels at the stream's real width. References here:

- the bytes and dtypes of every stream kernel, recorded by a TorchDispatchMode around a real forward and backward of
  the reference module (flopscalc/train/model.py) under CPU autocast (the stream ops are in no CPU or CUDA autocast
  list, and ``layer_norm`` keeps fp32 in and out on both, so the dtypes are CUDA's too: torch.amp "Autocast Op
  Reference");
- the memory engine's rule for the stream's dtype (`memory.activations.residual_bytes`), checked here against the
  dtype the module's residual adds return with fp32 and with 16-bit parameters;
- the H200 eager steps measured on our own GPU (benchmarks/results/calibration_h200-sxm_*), which the model
  priced 9-22% too fast with a 16-bit stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flopscalc.memory import TrainingSetup
from flopscalc.memory.activations import residual_bytes
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.memory.settings import FP32_BYTES, HALF_BYTES
from flopscalc.model import ModelConfig
from flopscalc.perf.ops import backward_ops, forward_ops, recompute_ops

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from flopscalc.train.model import GPT

ROOT = Path(__file__).resolve().parent.parent
B, T = 2, 16
CFG = ModelConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=96, block_size=T)


class _Record(TorchDispatchMode):
    """Every aten op with its tensor arguments and results: (name, [(numel, dtype, shape)], [...])."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))

        def tensors(tree):
            return [(x.numel(), x.dtype, tuple(x.shape)) for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]

        self.rows.append((func.__name__.split(".")[0], tensors((args, kwargs)), tensors(out)))
        return out


def _record(sixteen_bit_params: bool = False, recompute: str = "none"):
    torch.manual_seed(0)
    model = GPT(CFG, recompute=recompute)
    if sixteen_bit_params:
        model = model.to(torch.bfloat16)
    idx = torch.randint(0, CFG.vocab_size, (B, T))
    mode = _Record()
    with mode:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(idx, idx)
        loss.backward()
    return mode.rows


def _nbytes(tensors, *, min_numel):
    """Bytes of the activation-sized tensors (a stream's t x d or a row statistic's t) of an op, parameters left out
    (the model prices a norm's gain and bias, d elements, nowhere)."""
    rows = B * T
    return sum(n * (torch.finfo(dt).bits // 8) for n, dt, _ in tensors if n >= min_numel or n == rows)


STREAM = B * T * CFG.n_embd


def _measured_stream_bytes(rows):
    """Bytes of the stream's kernels as dispatched: the norms, the casts of stream-sized tensors and the residual adds
    (the position embedding's broadcast add is the embedding's, left out)."""
    total, kernels = 0, 0
    for name, ins, outs in rows:
        norm = name in ("native_layer_norm", "native_layer_norm_backward")
        cast = name == "_to_copy" and ins[0][2] == (B, T, CFG.n_embd)
        add = name == "add" and all(t[2] == (B, T, CFG.n_embd) for t in ins)
        if norm or cast or add:
            total += _nbytes(ins, min_numel=STREAM) + _nbytes(outs, min_numel=STREAM)
            kernels += 1
    return total, kernels


def _modelled_stream_bytes(setup):
    """The model's bytes for the same kernels: norms, stream casts, residual adds and their gradients. The model's
    norm backward also prices the gain kernel's second read of x, dy and the statistics (block_ops [13]), a CUDA
    kernel split the dispatcher does not see: it is taken off here, 2 stream tensors and the statistics."""
    a, r = HALF_BYTES, residual_bytes(setup)
    ops = forward_ops(CFG, setup) + recompute_ops(CFG, setup) + backward_ops(CFG, setup)
    total, kernels = 0.0, 0
    rows = B * T
    for op in ops:
        if "norm" in op.name and "cast" not in op.name:
            moved = op.bytes_moved
            if op.name.endswith("bwd"):
                moved -= 2 * r * STREAM + 2 * FP32_BYTES * rows  # [13] the gain kernel's re-read
            total += moved * op.count
            kernels += op.count  # one dispatched op per norm and per norm backward
        elif "cast" in op.name or op.name.startswith("residual"):
            total += op.bytes_moved * op.count
            kernels += op.kernels * op.count
    assert a == HALF_BYTES
    return total, kernels


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_the_stream_kernels_move_the_bytes_the_dispatcher_sees(recompute):
    """Exact: every norm, stream cast and residual add of a forward and backward of the reference module under
    autocast with fp32 parameters, against the model's ops for PyTorch AMP (ZeRO 0: fp32 weights)."""
    setup = TrainingSetup(micro_batch=B, seq_len=T, precision=MemoryPrecision.bf16_mixed, flash=True,
                          recompute={"none": "none", "full": "full"}[recompute])
    measured, measured_kernels = _measured_stream_bytes(_record(recompute=recompute))
    modelled, modelled_kernels = _modelled_stream_bytes(setup)
    if recompute == "full":
        # the model re-runs the whole block; torch.utils.checkpoint (non-reentrant) stops recomputing once the last
        # tensor the backward saved is back (torch docs, ``set_checkpoint_early_stop``, on by default), so the
        # block's last residual add (read the fp32 stream and a 16-bit branch, write the stream) is not re-run:
        # the exact difference, one add a layer
        early_stop = (2 * FP32_BYTES + HALF_BYTES) * STREAM * CFG.n_layer
        modelled, modelled_kernels = modelled - early_stop, modelled_kernels - CFG.n_layer
    assert modelled == measured
    assert modelled_kernels == measured_kernels


def test_the_same_kernels_priced_as_a_16_bit_stream_miss_the_measured_bytes():
    """The reference tells the rules apart: the old pricing (stream in the compute dtype) is short of it."""
    setup = TrainingSetup(micro_batch=B, seq_len=T, precision=MemoryPrecision.bf16_mixed, zero_stage=1)
    measured, _ = _measured_stream_bytes(_record())
    assert residual_bytes(setup) == HALF_BYTES
    modelled, _ = _modelled_stream_bytes(setup)
    assert modelled < 0.75 * measured


@pytest.mark.parametrize("sixteen_bit_params", [False, True])
def test_the_stream_dtype_is_the_weights_dtype(sixteen_bit_params):
    """The memory engine's rule the step model reads, against the dtype the module's residual adds return."""
    rows = _record(sixteen_bit_params=sixteen_bit_params)
    adds = {outs[0][1] for name, ins, outs in rows if name == "add" and outs[0][2] == (B, T, CFG.n_embd)}
    setup = TrainingSetup(micro_batch=B, seq_len=T, precision=MemoryPrecision.bf16_mixed,
                          zero_stage=1 if sixteen_bit_params else 0, n_gpus=2 if sixteen_bit_params else 1)
    assert adds == {torch.bfloat16 if sixteen_bit_params else torch.float32}
    assert residual_bytes(setup) == (torch.finfo(adds.pop()).bits // 8)


@pytest.mark.parametrize("setup, stream_bytes", [
    (TrainingSetup(precision=MemoryPrecision.bf16_mixed), FP32_BYTES),  # PyTorch AMP: fp32 weights
    (TrainingSetup(precision=MemoryPrecision.fp16_mixed), FP32_BYTES),
    (TrainingSetup(precision=MemoryPrecision.bf16_mixed, zero_stage=3, n_gpus=8), HALF_BYTES),  # FSDP bf16 params
    (TrainingSetup(precision=MemoryPrecision.bf16_mixed, zero_stage=1, n_gpus=2), HALF_BYTES),  # llm.c, DeepSpeed
    (TrainingSetup(precision=MemoryPrecision.bf16_mixed, offload_optimizer=True), HALF_BYTES),
    (TrainingSetup(precision=MemoryPrecision.bf16_pure), HALF_BYTES),
    (TrainingSetup(precision=MemoryPrecision.fp32), FP32_BYTES),
])
def test_the_dtype_rule_per_precision(setup, stream_bytes):
    """Casts exist only where the stream is wider than the compute dtype; the residual add reads the stream twice
    (read, write) at its width and the branch once at the compute width."""
    setup = dataclasses.replace(setup, micro_batch=2, seq_len=64)
    cfg = CFG.with_(block_size=64)
    ops = forward_ops(cfg, setup) + backward_ops(cfg, setup)
    casts = [op for op in ops if "cast" in op.name and "weight" not in op.name]
    a = FP32_BYTES if setup.precision is MemoryPrecision.fp32 else HALF_BYTES
    assert bool(casts) is (stream_bytes != a)
    add = next(op for op in ops if op.name.startswith("residual adds"))
    assert add.bytes_moved == 2 * (2 * stream_bytes + a) * 2 * 64 * cfg.n_embd


def _passes_s(cfg, setup, gpu, options):
    """Seconds of a step's passes (`ops.pass_ops`) priced as `estimate_step` prices them."""
    from flopscalc.perf.ops import pass_ops
    from flopscalc.perf.step import price_ops

    return sum(p.total_s for p in price_ops(pass_ops(cfg, setup, options), gpu, setup.precision, options))


PROFILES = sorted((ROOT / "benchmarks" / "results").glob("calibration_h200-sxm_20261128_*.json"))


@pytest.mark.skipif(not PROFILES, reason="the H200 profiles of 2026-11-28 are not committed here")
def test_the_h200_eager_steps_move_toward_their_measurements():
    """The H200 eager rows (fp32 parameters under autocast, one GPU, SDPA) were all priced too fast with a 16-bit
    stream (docs/performance_model.md, 2026-11-28: median |error| 15.2%, worst 22.3%, all negative); pricing the
    fp32 stream moves every one of them toward its measurement. The 16-bit-stream step is the same step with its
    passes priced as ZeRO 1's (16-bit weights: `ops.PASS_FIELDS` reads ZeRO only for the stream)."""
    from flopscalc.calibration import load_profile
    from flopscalc.hardware import get_gpu
    from flopscalc.perf import estimate_step
    from flopscalc.perf.calibrate import measured_steps, point_options

    gpu = get_gpu("h200-sxm")
    errors = []
    for path in PROFILES:
        prof = load_profile(path)
        for point, m in zip(prof.points, measured_steps(prof)):
            if point.compiled:
                continue
            options = point_options(point)
            assert residual_bytes(m.setup) == FP32_BYTES  # the trainer's AMP: fp32 weights, one GPU
            new = estimate_step(m.model, m.setup, gpu, options).step_s
            sixteen = dataclasses.replace(m.setup, zero_stage=1)

            old = new - _passes_s(m.model, m.setup, gpu, options) + _passes_s(m.model, sixteen, gpu, options)
            assert old < new, (point.model.name, point.micro_batch)
            assert abs(new / m.step_s - 1) < abs(old / m.step_s - 1), (point.model.name, point.micro_batch)
            errors.append(new / m.step_s - 1)
    assert len(errors) == 9


def test_a_compiled_graph_prices_the_stream_as_its_16_bit_kernels():
    """inductor fuses each residual add with the norm and cast after it (`ops._pass_shape`): no cast kernels, and the
    same passes as a 16-bit stream; the H200 compiled rows fitted that pricing before the fp32 stream was priced."""
    from flopscalc.perf.op_kinds import StepOptions

    setup = TrainingSetup(micro_batch=2, seq_len=16)
    compiled = StepOptions(gemm_shape_padding=True)
    ops = forward_ops(CFG, setup, compiled) + backward_ops(CFG, setup, compiled)
    assert not [op for op in ops if "cast" in op.name and "weight" not in op.name]
    sixteen = dataclasses.replace(setup, zero_stage=1)
    assert ops == forward_ops(CFG, sixteen, compiled) + backward_ops(CFG, sixteen, compiled)
    assert ops != forward_ops(CFG, setup) + backward_ops(CFG, setup)
