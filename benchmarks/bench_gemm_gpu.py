"""GEMM and copy rates of the GPU at hand beside what the step-time model's GEMM pricing predicts for each shape.

Each shape is the forward or input-gradient GEMM of GPT-2 at micro-batch 8 x 1024 tokens (m = 8192): QKV and MLP
of GPT-2 small (k or n = 768), the LM head at the padded vocabulary 50304, the MLP of GPT-2 XL (1600), and the
8192^3 square product NVIDIA and the MAMF finders quote. bf16 operands on the device, three warm-up products, then
20 timed between two CUDA events; the copy moves 1 GiB device to device (bytes read plus written).
Predicted = dense peak x the device's GEMM fraction x tile and wave quantization (`perf.gemm.gemm_efficiency`),
as `flopscalc step` prices a GEMM before its sustained fraction.

    python benchmarks/bench_gemm_gpu.py                          # CUDA: measure, write gemm_<gpu>_<date>.json
    python benchmarks/bench_gemm_gpu.py --from-json FILE --gpu h200   # the predictions beside a recorded run

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

SHAPES = [(8192, 8192, 8192), (8192, 3072, 768), (8192, 768, 3072), (8192, 2304, 768), (8192, 50304, 768),
          (8192, 6400, 1600), (8192, 1600, 6400)]
COPY_BYTES = 2**30


def measure() -> dict:
    import torch

    rates = {}
    for m, n, k in SHAPES:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            a @ b
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 20 / 1e3
        rates[f"{m}x{n}x{k}"] = 2 * m * n * k / seconds / 1e12
        print(f"{m}x{n}x{k}: {rates[f'{m}x{n}x{k}']:.0f} TFLOP/s", flush=True)
    x = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        y.copy_(x)
    end.record()
    torch.cuda.synchronize()
    rates["copy_TBps_read_plus_write"] = 2 * COPY_BYTES / (start.elapsed_time(end) / 20 / 1e3) / 1e12
    print(f"copy: {rates['copy_TBps_read_plus_write']:.2f} TB/s", flush=True)
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **rates}


def predictions(measured: dict, gpu_key: str) -> list[dict]:
    """One row per GEMM shape: measured and predicted TFLOP/s, and predicted / measured - 1."""
    from flopscalc.hardware import Precision
    from flopscalc.perf.device import device_perf
    from flopscalc.perf.op_kinds import Op, OpClass, Phase
    from flopscalc.perf.step import op_efficiency

    gpu = get_gpu(gpu_key)
    dev = device_perf(gpu)
    rows = []
    for key, value in measured.items():
        parts = key.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            continue
        m, n, k = map(int, parts)
        # the step model's own rule for one GEMM (`perf.step.op_efficiency`), bf16 operands, shapes as measured
        op = Op(key, OpClass.gemm, Phase.forward, 2.0 * m * n * k, 2.0 * (m * k + k * n + m * n), 1, 1, (m, n, k, 1))
        pred = gpu.peak_flop_per_s(Precision.bf16) * op_efficiency(op, dev) / 1e12
        rows.append({"m": m, "n": n, "k": k, "measured_tflops": value, "predicted_tflops": pred,
                     "error": pred / value - 1})
    return rows


def _measured(args: argparse.Namespace) -> dict:
    """The rates to price: the recorded file (checked against ``--gpu``) or a fresh CUDA measurement."""
    if args.from_json is None:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("measuring needs a CUDA device and none is visible; "
                             "to price a recorded run, pass --from-json FILE --gpu NAME")
        return measure()
    if args.out is not None:
        raise UsageError("--out is ignored with --from-json (a recorded run is only read); drop one of them")
    if not args.from_json.is_file():
        raise UsageError(f"no such file: {args.from_json}; pass a gemm_<gpu>_<date>.json from benchmarks/results/")
    from flopscalc.textfile import parse_json, read_text

    # the project's readers of a user's file: BOM, binary and non-UTF-8 text, duplicate keys are one-line refusals
    text = read_text(args.from_json, "recorded GEMM file", "; pass a gemm_<gpu>_<date>.json from benchmarks/results/")
    try:
        measured = parse_json(text, str(args.from_json), "recorded GEMM file")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{args.from_json} is not JSON ({exc.msg}); pass a file this script wrote") from None
    if not isinstance(measured, dict):
        raise UsageError(f"{args.from_json} holds no rates object; pass a file this script wrote")
    recorded = measured.get("device")
    if args.gpu and recorded and get_gpu(recorded).key != get_gpu(args.gpu).key:
        raise UsageError(f"{args.from_json.name} was measured on {recorded} ({get_gpu(recorded).key}), not "
                         f"{get_gpu(args.gpu).key}; pass --gpu {get_gpu(recorded).key} or drop --gpu")
    return measured


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-json", type=Path, default=None, help="a recorded run (skip measuring)")
    ap.add_argument("--gpu", default=None, help="GPU database row (default: the CUDA device's name)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        measured = _measured(args)
        name = args.gpu or measured.get("device")
        gpu_key = get_gpu(name).key if name else ""
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
    if not args.from_json:
        from flopscalc.atomic import write_text_atomic

        stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
        out = args.out or ROOT / "benchmarks" / "results" / f"gemm_{gpu_key}_{stamp}.json"
        write_text_atomic(out, json.dumps(measured, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
