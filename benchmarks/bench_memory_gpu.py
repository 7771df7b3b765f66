"""Memory benchmark: the estimator's allocated peak against ``torch.cuda.max_memory_allocated``.

For GPT-2 small through XL at several micro-batches it trains the reference module the way the trainer
does (bf16 autocast, fused AdamW, ``zero_grad(set_to_none=True)``), measures the peak of a steady-state
step (after the first step has created the optimizer state), and writes a table with the device, date
and torch version to ``benchmarks/results/``. Target (issue 3): predicted within 10% of measured.
It also reports reserved / allocated (the allocator overhead knob) and the memory the CUDA context and
other non-PyTorch users hold (``mem_get_info`` used minus reserved: the context knob).

    python benchmarks/bench_memory_gpu.py                      # CUDA: GPT-2 small..XL, micro-batch 1,2,4,8
    python benchmarks/bench_memory_gpu.py --device cpu          # dry run of the same loop on tiny models

Not part of the test suite and never a CI requirement. The CPU run checks that the script works; it has
no allocator statistics, so its "measured" column is empty.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _conditions

_conditions.pin_threads(1)  # BLAS/OpenMP before numpy and torch load (memory, not speed, is measured here)

from flopscalc.atomic import write_text_atomic
from flopscalc.flops import Recompute
from flopscalc.memory import Device, MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.model import PRESETS, ModelConfig

TINY = {"tiny": ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=128, vocab_size=1000, name="tiny")}


def measure_case(torch, cfg, micro_batch: int, seq: int, recompute: str, flash: bool, device: str, steps: int) -> dict:
    """Train ``steps`` steps; return peak allocated/reserved bytes of the steps after the first (CUDA only)."""
    from flopscalc.train.model import GPT

    cuda = device == "cuda"
    torch.manual_seed(0)
    model = GPT(cfg, attention="sdpa" if flash else "math", recompute=recompute).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    x = torch.randint(0, cfg.vocab_size, (micro_batch, seq), device=device)
    y = torch.randint(0, cfg.vocab_size, (micro_batch, seq), device=device)
    out = {"measured_allocated_bytes": None, "measured_reserved_bytes": None, "non_pytorch_bytes": None}
    try:
        for step in range(steps):
            if cuda and step == 1:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cuda):
                loss = model(x, y)[1]  # as the trainer: the logits are not kept into the next step
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            out.update(measured_allocated_bytes=torch.cuda.max_memory_allocated(),
                       measured_reserved_bytes=torch.cuda.max_memory_reserved(),
                       non_pytorch_bytes=(total - free) - torch.cuda.memory_reserved())
    except torch.cuda.OutOfMemoryError:
        out["oom"] = True
    finally:
        del model, opt, x, y
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--models", default=None, help="comma-separated presets (default: all four; 'tiny' on CPU)")
    ap.add_argument("--micro-batches", default="1,2,4,8")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: the model's context)")
    ap.add_argument("--recompute", default="none", help="comma-separated: none,selective,full")
    ap.add_argument("--no-flash", action="store_true", help="math attention instead of SDPA")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a dry run", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    cond = _conditions.start()
    models = {**PRESETS, **TINY}
    names = (args.models or ("tiny" if args.device == "cpu" else ",".join(PRESETS))).split(",")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    rows = []
    for name in names:
        cfg = models[name]
        seq = args.seq or cfg.block_size
        for rec in args.recompute.split(","):
            for mb in (int(v) for v in args.micro_batches.split(",")):
                setup = TrainingSetup(micro_batch=mb, seq_len=seq, recompute=Recompute(rec), flash=not args.no_flash,
                                      precision=MemoryPrecision.bf16_mixed if args.device == "cuda"
                                      else MemoryPrecision.fp32, device=Device(args.device))
                est = estimate_memory(cfg, setup)
                got = measure_case(torch, cfg, mb, seq, rec, not args.no_flash, args.device, args.steps)
                m = got["measured_allocated_bytes"]
                row = {"model": name, "micro_batch": mb, "seq_len": seq, "recompute": rec,
                       "flash": not args.no_flash, "precision": setup.precision.value,
                       "estimated_allocated_bytes": est.allocated_peak_bytes, "estimated_peak_bytes": est.peak_bytes,
                       **got, "error_pct": None if not m else 100 * (est.allocated_peak_bytes - m) / m}
                rows.append(row)
                meas = f"{m / 2**30:.2f}" if m else ("OOM" if got.get("oom") else "n/a")
                err = f"{row['error_pct']:+.1f}%" if row["error_pct"] is not None else ""
                print(f"{name:12s} mb={mb:<3d} {rec:9s} est {est.allocated_peak_bytes / 2**30:7.2f} GiB  "
                      f"measured {meas:>7s} GiB {err}", flush=True)

    cond = _conditions.finish(cond)
    meta = {"device": device_name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "conditions": cond}
    intro = (f"{meta['date']}, torch {meta['torch']}, CUDA {meta['cuda']}; conditions: "
             f"{_conditions.summary(cond)}. Estimated = "
             "`MemoryBreakdown.allocated_peak_bytes` (no context or allocator overhead); measured = "
             "`torch.cuda.max_memory_allocated()` over steady-state steps.")
    header = ("| model | micro-batch | seq | recompute | estimated GiB | measured GiB | error % | reserved/allocated "
              "| non-PyTorch GiB |")
    lines = [f"# Memory: estimate vs measured ({meta['device']})", "", intro, "", header,
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, res, ctx = r["measured_allocated_bytes"], r["measured_reserved_bytes"], r["non_pytorch_bytes"]
        measured = f"{m / 2**30:.2f}" if m else ("OOM" if r.get("oom") else "n/a")
        err = f"{r['error_pct']:+.1f}" if m else ""
        ratio = f"{res / m:.3f}" if m else ""
        other = f"{ctx / 2**30:.2f}" if ctx is not None else ""
        lines.append(f"| {r['model']} | {r['micro_batch']} | {r['seq_len']} | {r['recompute']} | "
                     f"{r['estimated_allocated_bytes'] / 2**30:.2f} | {measured} | {err} | {ratio} | {other} |")
    slug = "".join(c if c.isalnum() else "-" for c in meta["device"].lower()).strip("-") or args.device
    out = args.out or ROOT / "benchmarks" / "results" / f"memory_{args.device}_{slug}.md"
    write_text_atomic(out, "\n".join(lines) + "\n")
    write_text_atomic(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
