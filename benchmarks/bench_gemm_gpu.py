"""GEMM and copy rates of the GPU at hand beside what the step-time model's GEMM pricing predicts for each shape.

Each shape is the forward or input-gradient GEMM of GPT-2 at micro-batch 8 x 1024 tokens (m = 8192): QKV and MLP
of GPT-2 small (k or n = 768), the LM head at the padded vocabulary 50304, the MLP of GPT-2 XL (1600), and the
8192^3 square product NVIDIA and the MAMF finders quote. bf16 operands on the device, three warm-up products, then
20 timed between two CUDA events; the copy moves 1 GiB device to device (bytes read plus written).
Predicted = dense peak x the device's GEMM fraction x tile and wave quantization (`perf.gemm.gemm_efficiency`),
as `flopscalc step` prices a GEMM before its sustained fraction.

    python benchmarks/bench_gemm_gpu.py                          # CUDA: measure, write gemm_<gpu>_<date>.json
    python benchmarks/bench_gemm_gpu.py --from-json FILE --gpu h200   # the predictions beside a recorded run
    python benchmarks/bench_gemm_gpu.py --lm-head                # CUDA: GPT-2's LM head, gemm_<gpu>_<date>_lm-head.json
    python benchmarks/bench_gemm_gpu.py --dry-run --gpu h200     # the planned shapes and their prices, no GPU

``--lm-head`` times the three GEMMs of GPT-2 small's LM head at micro-batch 8 x 1024 tokens, as eager PyTorch runs
them (``nn.Linear``'s layouts: forward ``F.linear(x, w)``, input gradient ``g @ w``, weight gradient ``g.t() @ x``),
at the unaligned vocabulary 50257 and its aligned twin 50304, each beside the step model's price of that op (the op
from `perf.ops.forward_ops`, priced by `perf.step.op_efficiency` with eager kernels: the misaligned rate of
data/gpu_perf.csv where the shape is misaligned, `perf.gemm` [4]) and the time `perf.step.price_ops` gives it in a
step (which also divides by the sustained fraction). The unaligned-GEMM attribution of docs/performance_model.md
("Measured on our own GPU") rests on whole-step points; these time the three shapes it prices.

Not part of the test suite and never a CI requirement.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.model import ModelConfig, get_preset

SHAPES = [(8192, 8192, 8192), (8192, 3072, 768), (8192, 768, 3072), (8192, 2304, 768), (8192, 50304, 768),
          (8192, 6400, 1600), (8192, 1600, 6400)]
COPY_BYTES = 2**30
WARMUP, TIMED = 3, 20  # products before timing, products timed between two CUDA events
# The LM-head probe: GPT-2 small at the trainer's micro-batch 8 x 1024 tokens (m = 8192, the eager rows of
# benchmarks/results/trainer_h200-sxm_20261128_eager.md), its own vocabulary and nanoGPT's padded one (50257 -> 50304)
LM_HEAD_MODEL, LM_HEAD_MICRO_BATCH, LM_HEAD_VOCABS = "gpt2", 8, (50257, 50304)


def _seconds(torch, fn, device: str) -> float:
    """Seconds per call of ``fn``: `WARMUP` calls, then `TIMED` between two CUDA events (wall clock on a CPU)."""
    for _ in range(WARMUP):
        fn()
    if device != "cuda":
        import time

        start = time.perf_counter()
        for _ in range(TIMED):
            fn()
        return (time.perf_counter() - start) / TIMED
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(TIMED):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / TIMED / 1e3


def measure() -> dict:
    import torch

    rates = {}
    for m, n, k in SHAPES:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
        seconds = _seconds(torch, lambda a=a, b=b: a @ b, "cuda")
        rates[f"{m}x{n}x{k}"] = 2 * m * n * k / seconds / 1e12
        print(f"{m}x{n}x{k}: {rates[f'{m}x{n}x{k}']:.0f} TFLOP/s", flush=True)
    x = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    rates["copy_TBps_read_plus_write"] = 2 * COPY_BYTES / _seconds(torch, lambda: y.copy_(x), "cuda") / 1e12
    print(f"copy: {rates['copy_TBps_read_plus_write']:.2f} TB/s", flush=True)
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **rates}


def predicted_tflops(m: int, n: int, k: int, gpu_key: str) -> float:
    """The step model's rate for one aligned bf16 m x n x k GEMM on ``gpu_key`` (TFLOP/s)."""
    from flopscalc.hardware import Precision
    from flopscalc.perf.device import device_perf
    from flopscalc.perf.op_kinds import Op, OpClass, Phase
    from flopscalc.perf.step import op_efficiency

    gpu = get_gpu(gpu_key)
    # the step model's own rule for one GEMM (`perf.step.op_efficiency`), bf16 operands, shapes as measured
    op = Op(f"{m}x{n}x{k}", OpClass.gemm, Phase.forward, 2.0 * m * n * k, 2.0 * (m * k + k * n + m * n), 1, 1,
            (m, n, k, 1))
    return gpu.peak_flop_per_s(Precision.bf16) * op_efficiency(op, device_perf(gpu)) / 1e12


def predictions(measured: dict, gpu_key: str) -> list[dict]:
    """One row per GEMM shape: measured and predicted TFLOP/s, and predicted / measured - 1."""
    rows = []
    for key, value in measured.items():
        parts = key.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            continue
        m, n, k = map(int, parts)
        pred = predicted_tflops(m, n, k, gpu_key)
        rows.append({"m": m, "n": n, "k": k, "measured_tflops": value, "predicted_tflops": pred,
                     "error": pred / value - 1})
    return rows


def lm_head_ops(cfg: ModelConfig, micro_batch: int, seq: int) -> list:
    """The step model's LM-head GEMMs of one ``micro_batch`` x ``seq`` micro-batch of ``cfg`` (forward, input
    gradient, weight gradient: `perf.ops.forward_ops`), in the precision the reference trainer runs on a GPU (bf16
    autocast: `memory.precision.trainer_memory_precision`, as `perf.calibrate.point_setup` reads a measured point)."""
    from flopscalc.memory import Device, TrainingSetup
    from flopscalc.memory.precision import trainer_memory_precision
    from flopscalc.perf.ops import forward_ops

    setup = TrainingSetup(micro_batch=micro_batch, seq_len=seq, precision=trainer_memory_precision("bf16"),
                          device=Device.cuda)
    return [op for op in forward_ops(cfg, setup) if op.name.startswith("lm head ") and op.gemm_shape is not None]


def lm_head_prices(ops: list, gpu_key: str) -> list[dict]:
    """The step model's price of each op on ``gpu_key`` with eager kernels (no shape padding): the rate
    `perf.step.op_efficiency` gives it (the misaligned rate where ``op.misaligned``: `perf.gemm` [4]) and the
    seconds `perf.step.price_ops` gives one occurrence in a step (the roofline over the sustained fraction)."""
    from flopscalc.hardware import Precision
    from flopscalc.memory.precision import trainer_memory_precision
    from flopscalc.perf.device import device_perf
    from flopscalc.perf.op_kinds import StepOptions
    from flopscalc.perf.step import op_efficiency, price_ops

    gpu = get_gpu(gpu_key)
    dev, peak = device_perf(gpu), gpu.peak_flop_per_s(Precision.bf16)
    priced = price_ops(ops, gpu, trainer_memory_precision("bf16"), StepOptions(gemm_shape_padding=False), device=dev)
    rows = []
    for op, p in zip(ops, priced):
        m, n, k, _ = op.gemm_shape
        rows.append({"op": op.name, "m": m, "n": n, "k": k, "misaligned": op.misaligned,
                     "predicted_tflops": peak * op_efficiency(op, dev, misaligned_kernels=True) / 1e12,
                     "predicted_step_s": p.seconds})
    return rows


def _lm_head_call(torch, op, tokens: int, n_embd: int, vocab: int, device: str, dtype):
    """A callable running ``op`` as eager PyTorch runs the LM head's linear (``nn.Linear``, weight [V, d]) on
    ``tokens`` rows: forward ``F.linear(x, w)`` ([t, V], summing over d), input gradient ``g @ w`` ([t, d], over V),
    weight gradient ``g.t() @ x`` ([V, d], over t: autograd's ``mm`` backward, the transpose of the model's d x V
    output, the same FLOPs). Refuses an op whose (m, n, k) is not the product's output and summed dimension, so a
    layout slip shows on a CPU, not on a lent GPU."""
    t, d = tokens, n_embd
    x = torch.randn(t, d, device=device, dtype=dtype)
    w = torch.randn(vocab, d, device=device, dtype=dtype)
    g = torch.randn(t, vocab, device=device, dtype=dtype)
    kind = op.name.rsplit(" ", 1)[1]
    fn, summed = {"fwd": (lambda: torch.nn.functional.linear(x, w), d),
                  "dgrad": (lambda: g @ w, vocab),
                  "wgrad": (lambda: g.t() @ x, t)}[kind]
    m, n, k, _ = op.gemm_shape
    if sorted(fn().shape) != sorted((m, n)) or summed != k:
        raise AssertionError(f"{op.name}: the timed product ({kind} of {t} tokens, n_embd {d}, vocab {vocab}) does "
                             f"not match the model's shape {op.gemm_shape}")
    return fn


def measure_lm_head(cfg: ModelConfig, micro_batch: int, seq: int, vocabs, device: str = "cuda") -> list[dict]:
    """Seconds and TFLOP/s of each LM-head GEMM (`lm_head_ops`) of ``cfg`` at each vocabulary, bf16 on a GPU (fp32
    on a CPU, where only the code path is checked)."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows = []
    for vocab in vocabs:
        for op in lm_head_ops(cfg.with_(vocab_size=vocab), micro_batch, seq):
            call = _lm_head_call(torch, op, micro_batch * seq, cfg.n_embd, vocab, device, dtype)
            seconds = _seconds(torch, call, device)
            m, n, k, _ = op.gemm_shape
            rows.append({"op": op.name, "vocab": vocab, "m": m, "n": n, "k": k, "measured_s": seconds,
                         "measured_tflops": op.flops / seconds / 1e12})
            print(f"{op.name} (vocab {vocab}) {m}x{n}x{k}: {rows[-1]['measured_tflops']:.0f} TFLOP/s", flush=True)
    return rows


def lm_head_plan(gpu_key: str, cfg: ModelConfig | None = None, micro_batch: int = LM_HEAD_MICRO_BATCH,
                 seq: int | None = None, vocabs=LM_HEAD_VOCABS) -> list[dict]:
    """The LM-head probe's planned rows: each op at each vocabulary with the step model's price on ``gpu_key``."""
    cfg = cfg or get_preset(LM_HEAD_MODEL)
    rows = []
    for vocab in vocabs:
        rows += [{"vocab": vocab, **r} for r in
                 lm_head_prices(lm_head_ops(cfg.with_(vocab_size=vocab), micro_batch, seq or cfg.block_size), gpu_key)]
    return rows


def with_prices(measured_rows: list[dict], gpu_key: str) -> list[dict]:
    """``measured_rows`` (`measure_lm_head`) each with the step model's price beside it and predicted / measured - 1
    (of the rate)."""
    plan = {(r["op"], r["vocab"]): r for r in lm_head_plan(gpu_key)}
    out = []
    for r in measured_rows:
        p = plan.get((r.get("op"), r.get("vocab")))
        if p is None or (p["m"], p["n"], p["k"]) != (r.get("m"), r.get("n"), r.get("k")):
            raise UsageError(f"the recorded LM-head row {r.get('op')!r} (vocab {r.get('vocab')}) is not one this "
                             "script plans; pass a file this script wrote")
        out.append({**r, **p, "error": p["predicted_tflops"] / r["measured_tflops"] - 1})
    return out


def _print_lm_head(rows: list[dict]) -> None:
    for r in rows:
        measured = f"measured {r['measured_tflops']:.0f}, " if "measured_tflops" in r else ""
        error = f" ({100 * r['error']:+.1f}%)" if "error" in r else ""
        print(f"{r['op']} (vocab {r['vocab']}{', misaligned' if r['misaligned'] else ''}) {r['m']}x{r['n']}x{r['k']}: "
              f"{measured}predicted {r['predicted_tflops']:.0f} TFLOP/s{error}, "
              f"{1e3 * r['predicted_step_s']:.3f} ms in a step")


def _measured(args: argparse.Namespace) -> dict:
    """The rates to price: the recorded file (checked against ``--gpu``) or a fresh CUDA measurement (the LM-head
    probe's with ``--lm-head``)."""
    if args.from_json is None:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("measuring needs a CUDA device and none is visible; to price a recorded run, pass "
                             "--from-json FILE --gpu NAME; to see the planned shapes, pass --dry-run --gpu NAME")
        get_gpu(args.gpu or torch.cuda.get_device_name())  # an unknown card is refused before the timing, not after
        if not args.lm_head:
            return measure()
        cfg = get_preset(LM_HEAD_MODEL)
        return {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "probe": f"lm-head: {LM_HEAD_MODEL}, micro-batch {LM_HEAD_MICRO_BATCH} x {cfg.block_size} tokens, bf16",
                "lm_head": measure_lm_head(cfg, LM_HEAD_MICRO_BATCH, cfg.block_size, LM_HEAD_VOCABS)}
    if args.out is not None:
        raise UsageError("--out is ignored with --from-json (a recorded run is only read); drop one of them")
    if args.lm_head:
        raise UsageError("--lm-head is ignored with --from-json (the recorded file holds the probe it ran); "
                         "drop --lm-head")
    if not args.from_json.is_file():
        raise UsageError(f"no such file: {args.from_json}; pass a gemm_<gpu>_<date>.json from benchmarks/results/")
    from flopscalc.textfile import parse_json, read_text

    # the project's readers of a user's file: BOM, binary and non-UTF-8 text, duplicate keys are one-line refusals
    text = read_text(args.from_json, "recorded GEMM file", "; pass a gemm_<gpu>_<date>.json from benchmarks/results/")
    try:
        measured = parse_json(text, str(args.from_json), "recorded GEMM file")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{args.from_json} is not JSON ({exc.msg}); pass a file this script wrote") from None
    if not isinstance(measured, dict) or not isinstance(measured.get("lm_head", []), list):
        raise UsageError(f"{args.from_json} holds no rates object; pass a file this script wrote")
    recorded = measured.get("device")
    if args.gpu and recorded and get_gpu(recorded).key != get_gpu(args.gpu).key:
        raise UsageError(f"{args.from_json.name} was measured on {recorded} ({get_gpu(recorded).key}), not "
                         f"{get_gpu(args.gpu).key}; pass --gpu {get_gpu(recorded).key} or drop --gpu")
    return measured


def _dry_run(args: argparse.Namespace) -> int:
    """Print the planned shapes with the step model's price of each on ``--gpu``; measure nothing."""
    if args.from_json is not None or args.out is not None:
        raise UsageError("--dry-run measures and writes nothing, so --from-json and --out are refused with it; "
                         "drop them")
    if not args.gpu:
        raise UsageError("--dry-run prices the planned shapes for a GPU database row; pass --gpu NAME (e.g. h200)")
    gpu_key = get_gpu(args.gpu).key
    if args.lm_head:
        _print_lm_head(lm_head_plan(gpu_key))
    else:
        for m, n, k in SHAPES:
            print(f"{m}x{n}x{k}: predicted {predicted_tflops(m, n, k, gpu_key):.0f} TFLOP/s")
        print(f"copy: {COPY_BYTES} bytes device to device")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    print(f"dry run on {gpu_key}: nothing measured or written; a run writes "
          f"gemm_{gpu_key}_{stamp}{'_lm-head' if args.lm_head else ''}.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-json", type=Path, default=None, help="a recorded run (skip measuring)")
    ap.add_argument("--gpu", default=None, help="GPU database row (default: the CUDA device's name)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--lm-head", action="store_true",
                    help="time GPT-2's LM-head GEMMs (forward, input and weight gradient) at vocabulary 50257 and "
                         "50304 instead of the default shapes")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the planned shapes and the step model's prices for --gpu; measure nothing")
    args = ap.parse_args(argv)
    try:
        if args.dry_run:
            return _dry_run(args)
        measured = _measured(args)
        name = args.gpu or measured.get("device")
        gpu_key = get_gpu(name).key if name else ""
        if gpu_key and "lm_head" in measured:
            lm_rows = with_prices(measured["lm_head"], gpu_key)
    except (UsageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not gpu_key:
        print("error: name the GPU database row with --gpu (the recorded file has no device name)", file=sys.stderr)
        return 2
    rows = predictions(measured, gpu_key)
    for r in rows:
        print(f"{r['m']}x{r['n']}x{r['k']}: measured {r['measured_tflops']:.0f}, predicted "
              f"{r['predicted_tflops']:.0f} TFLOP/s ({100 * r['error']:+.1f}%)")
    if "lm_head" in measured:
        _print_lm_head(lm_rows)
    if not args.from_json:
        from flopscalc.atomic import write_text_atomic

        stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
        if "lm_head" in measured:  # the step model's price as it stood when measured, beside each row
            measured = {**measured, "gpu_key": gpu_key, "lm_head": lm_rows}
        label = "_lm-head" if args.lm_head else ""
        out = args.out or ROOT / "benchmarks" / "results" / f"gemm_{gpu_key}_{stamp}{label}.json"
        write_text_atomic(out, json.dumps(measured, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
