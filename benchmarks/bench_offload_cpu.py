"""Offload's CPU leg, measured: does the optimizer step on the CPU take its bytes / host memory bandwidth?

`flopscalc.perf.offload` prices the CPU side of optimizer offload as the bytes the update reads and writes over
the host's memory bandwidth. This benchmark checks that model on the machine it runs on:

1. measure the host's memory bandwidth with an in-place add over torch's threads (reads two arrays, writes
   one back in place, as the optimizer does; a plain copy would pay a hidden read-for-ownership of the
   destination and understate the bandwidth an in-place update sees);
2. build fp32 master weights, fp32 gradients and AdamW states shaped like a model's parameters, and time
   ``torch.optim.AdamW(fused=True)`` plus the bf16 copy made for the trip back to the GPU;
3. compare with ``offload_time(..., host_memory_bytes_per_s=measured bandwidth).cpu_s``.

The ratio measured / predicted is the number to watch (1.0 = the model is exact); it is machine-independent
to the extent the update is bandwidth-bound. The PCIe leg needs a GPU and is not measured here.

    python benchmarks/bench_offload_cpu.py [--model gpt2] [--repeat 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _conditions

_conditions.pin_threads(1)  # BLAS/OpenMP before numpy and torch load; torch's own pool is set from --threads

from flopscalc.atomic import write_text_atomic
from flopscalc.flops import Recompute
from flopscalc.memory import MemoryPrecision, TrainingSetup
from flopscalc.memory.states import param_shapes
from flopscalc.model import count_params, get_preset
from flopscalc.perf.offload import offload_time


def memory_bandwidth(n_floats: int, repeat: int) -> float:
    """Median in-place add bandwidth over ``repeat`` tries (bytes/s: 2 reads + 1 write of fp32 per element)."""
    import torch

    a, b = torch.randn(n_floats), torch.randn(n_floats)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a.add_(b)
        times.append(time.perf_counter() - t0)
    return 3 * 4 * n_floats / statistics.median(times)


def cpu_update_seconds(cfg, repeat: int) -> float:
    """Median time of one fused AdamW step on fp32 CPU tensors shaped like ``cfg``'s parameters, plus bf16 copies."""
    import torch

    params = [torch.zeros(shape, requires_grad=True) for _, shape in param_shapes(cfg)]
    for p in params:
        p.grad = torch.randn(p.shape)
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    opt.step()  # creates the states
    halves = [torch.empty(p.shape, dtype=torch.bfloat16) for p in params]  # preallocated, as pinned buffers are
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        opt.step()
        with torch.no_grad():
            for h, p in zip(halves, params):
                h.copy_(p)  # the 16-bit weights sent back to the GPU
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt2", help="GPT-2 preset whose parameters are updated (default gpt2)")
    ap.add_argument("--repeat", type=int, default=15, help="timings per measurement (their median is used)")
    ap.add_argument("--trials", type=int, default=5, help="bandwidth + update measurements, alternated")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both measurements "
                    "(default 1: the bandwidth and the update then share one core, and a busy neighbour does not "
                    "stall a second thread)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "offload_cpu.json")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cond = _conditions.start()
    print(_conditions.summary(cond), flush=True)

    cfg = get_preset(args.model)
    n = count_params(cfg).total
    setup = TrainingSetup(micro_batch=1, seq_len=cfg.block_size, precision=MemoryPrecision.bf16_mixed,
                          recompute=Recompute.none, offload_optimizer=True)
    trials = []
    for _ in range(args.trials):  # alternate, so a busy neighbour slows both sides of one ratio alike
        bw = memory_bandwidth(max(n, 1 << 24), args.repeat)
        measured = cpu_update_seconds(cfg, args.repeat)
        predicted = offload_time(cfg, setup, host_memory_bytes_per_s=bw)
        trials.append({"memory_bandwidth_bytes_per_s": bw, "predicted_s": predicted.cpu_s, "measured_s": measured,
                       "ratio": measured / predicted.cpu_s})
        print(f"  bandwidth {bw / 1e9:.1f} GB/s, update measured {measured:.3f} s, predicted "
              f"{predicted.cpu_s:.3f} s: ratio {measured / predicted.cpu_s:.2f}", flush=True)
    ratios = [t["ratio"] for t in trials]
    cond = _conditions.finish(cond)
    result = {
        "conditions": cond, "model": cfg.name,
        "n_params": n, "cpu_bytes_per_param_model": predicted.cpu_bytes / n, "trials": trials,
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
    }
    print(f"{cfg.name} ({n / 1e6:.1f}M params, {predicted.cpu_bytes / n:.0f} bytes/param): measured / predicted "
          f"median {result['ratio_median']:.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")
    print(_conditions.summary(cond))
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
