"""Memory benchmark: the estimator's allocated peak against ``torch.cuda.max_memory_allocated``.

For GPT-2 small through XL at several micro-batches it trains the reference module the way the trainer
does (bf16 autocast, fused AdamW, ``zero_grad(set_to_none=True)``), measures the peak of a steady-state
step (after the first step has created the optimizer state), and writes a table with the device, date
and torch version to ``benchmarks/results/``. Target (issue 3): predicted within 10% of measured.
It also reports reserved / allocated (the allocator overhead knob) and the memory the CUDA context and
other non-PyTorch users hold (``mem_get_info`` used minus reserved: the context knob).

    python benchmarks/bench_memory_gpu.py                      # CUDA: GPT-2 small..XL, micro-batch 1,2,4,8
    python benchmarks/bench_memory_gpu.py --device cpu          # the same loop on tiny models
    python benchmarks/bench_memory_gpu.py --models gpt2 --micro-batches 8 --grad-accum 2 --label accum2
                                                                # accumulation: memory_cuda_<gpu>_<date>_accum2.md
    python benchmarks/bench_memory_gpu.py --dry-run --gpu h200 --models gpt2 --micro-batches 8 --grad-accum 2
                                                                # the planned rows and their estimates, no run

The estimates are for the GPU measured: its architecture sizes cuBLAS's workspace (`memory.workspace.cublas_workspace`:
32 MiB per handle on Hopper and Blackwell, 8.125 MiB before), so the script identifies the CUDA device by its name as
the trainer's benchmark does (`flopscalc.train.bench.identify_gpu`), or takes ``--gpu`` (a GPU database row) where
the name is not recognised; a dry run prices the ``--gpu`` row (none named: the larger workspace, said).

With ``--grad-accum N`` each step runs N micro-batches, each backward adding into the gradients of the one before
(the trainer's loop: loss / N, backward, one optimizer step), so the LM head's fresh gradient is allocated beside
the accumulated one: the transient docs/memory.md names (CUDA peak, "With --grad-accum > 1").

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
from flopscalc.errors import UsageError
from flopscalc.flops import Recompute
from flopscalc.memory import Device, MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.model import PRESETS, ModelConfig

TINY = {"tiny": ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=128, vocab_size=1000, name="tiny")}


def measure_case(torch, cfg, micro_batch: int, seq: int, recompute: str, flash: bool, device: str, steps: int,
                 grad_accum: int = 1) -> dict:
    """Train ``steps`` steps of ``grad_accum`` micro-batches; return peak allocated/reserved bytes of the steps after
    the first (CUDA only)."""
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
            for _ in range(grad_accum):  # as `Trainer.train_step`: the mean over the micro-batches, one update
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cuda):
                    loss = model(x, y)[1]  # as the trainer: the logits are not kept into the next micro-batch
                (loss / grad_accum).backward()
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


def _out_name(args: argparse.Namespace, device_slug: str) -> Path:
    """The table's default path: memory_<device>_<gpu name>.md, or with ``--label`` ..._<date>_<label>.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    named = f"memory_{args.device}_{device_slug}" + (f"_{stamp}_{args.label}" if args.label else "")
    return ROOT / "benchmarks" / "results" / f"{named}.md"


def planned_rows(args: argparse.Namespace, gpu_architecture: str | None = None) -> list[dict]:
    """One row per model x recomputation x micro-batch the sweep measures, with the estimator's prediction for it
    (`estimate_memory`: bf16 autocast on CUDA, fp32 on a CPU; ``config`` is the model measured) on a CUDA GPU of
    ``gpu_architecture`` (`gpu_architecture`; None: not known, the estimator's larger cuBLAS workspace)."""
    models = {**PRESETS, **TINY}
    names = (args.models or ("tiny" if args.device == "cpu" else ",".join(PRESETS))).split(",")
    rows = []
    for name in names:
        cfg = models[name]
        seq = args.seq or cfg.block_size
        for rec in args.recompute.split(","):
            for mb in (int(v) for v in args.micro_batches.split(",")):
                setup = TrainingSetup(micro_batch=mb, seq_len=seq, recompute=Recompute(rec), flash=not args.no_flash,
                                      precision=MemoryPrecision.bf16_mixed if args.device == "cuda"
                                      else MemoryPrecision.fp32, device=Device(args.device),
                                      grad_accum=args.grad_accum, gpu_architecture=gpu_architecture)
                est = estimate_memory(cfg, setup)
                rows.append({"config": cfg, "model": name, "micro_batch": mb, "grad_accum": args.grad_accum,
                             "seq_len": seq, "recompute": rec, "flash": not args.no_flash,
                             "precision": setup.precision.value, "gpu_architecture": gpu_architecture,
                             "estimated_allocated_bytes": est.allocated_peak_bytes,
                             "estimated_peak_bytes": est.peak_bytes})
    return rows


def gpu_architecture(args: argparse.Namespace, torch=None) -> str | None:
    """The architecture of the GPU the estimates are for: ``--gpu``'s database row, else (a run, ``torch`` given)
    the CUDA device's, identified by its name as the trainer's benchmark does (`train.bench.identify_gpu`); None on
    a CPU, in a dry run without ``--gpu``, or for a CUDA name the database does not know. Raises `UsageError` for an
    unknown ``--gpu``."""
    if args.device != "cuda":
        return None
    if torch is None:
        from flopscalc.hardware import get_gpu

        return get_gpu(args.gpu).architecture if args.gpu else None
    from flopscalc.train.bench import identify_gpu

    spec = identify_gpu(torch.device("cuda"), args.gpu)
    return spec.architecture if spec is not None else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--models", default=None, help="comma-separated presets (default: all four; 'tiny' on CPU)")
    ap.add_argument("--micro-batches", default="1,2,4,8")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: the model's context)")
    ap.add_argument("--recompute", default="none", help="comma-separated: none,selective,full")
    ap.add_argument("--no-flash", action="store_true", help="math attention instead of SDPA")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    ap.add_argument("--gpu", default=None, help="GPU database row the estimates are for (its architecture sizes "
                    "cuBLAS's workspace), when the CUDA name is not recognised; a dry run prices this row")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--label", default="", help="write memory_<device>_<gpu>_<date>_<label>.md/.json (a part of "
                    "gpu_session.sh that must not overwrite the recorded sweep)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the planned rows with the estimator's allocated peak; run and write nothing")
    args = ap.parse_args(argv)
    if args.grad_accum < 1 or args.steps < 2:
        print(f"error: --grad-accum must be >= 1 and --steps >= 2 (the first step is not measured), got "
              f"{args.grad_accum} and {args.steps}", file=sys.stderr)
        return 2
    unknown = [n for n in (args.models or "").split(",") if n and n not in {**PRESETS, **TINY}]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; pass presets from {', '.join([*PRESETS, *TINY])}, "
              "comma-separated", file=sys.stderr)
        return 2
    if args.label and args.out is not None:
        print("error: --label names the output file and --out names it too; pass one of them", file=sys.stderr)
        return 2
    if args.gpu is not None and args.device == "cpu":
        print(f"error: --gpu {args.gpu} names a CUDA GPU, but --device cpu has no cuBLAS workspace to size; drop "
              "--gpu or use --device cuda", file=sys.stderr)
        return 2
    try:
        arch = gpu_architecture(args)  # an unknown --gpu is refused before anything runs
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for row in planned_rows(args, arch):
            print(f"{row['model']:12s} mb={row['micro_batch']:<3d} accum={row['grad_accum']} {row['recompute']:9s} "
                  f"est {row['estimated_allocated_bytes'] / 2**30:7.2f} GiB", flush=True)
        on = ("" if args.device == "cpu" else f", estimates for {args.gpu} ({arch})" if args.gpu
              else ", estimates with the larger cuBLAS workspace (no --gpu named)")
        print(f"dry run ({args.device}{on}): nothing run or written; a run writes "
              f"{args.out or _out_name(args, '<device>')}")
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for the same loop on a tiny model, or --dry-run for the plan",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    cond = _conditions.start()
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    arch = gpu_architecture(args, torch)
    rows = []
    for plan in planned_rows(args, arch):
        cfg, mb, rec = plan.pop("config"), plan["micro_batch"], plan["recompute"]
        got = measure_case(torch, cfg, mb, plan["seq_len"], rec, plan["flash"], args.device, args.steps,
                           args.grad_accum)
        m = got["measured_allocated_bytes"]
        row = {**plan, **got, "error_pct": None if not m else 100 * (plan["estimated_allocated_bytes"] - m) / m}
        rows.append(row)
        meas = f"{m / 2**30:.2f}" if m else ("OOM" if got.get("oom") else "n/a")
        err = f"{row['error_pct']:+.1f}%" if row["error_pct"] is not None else ""
        print(f"{row['model']:12s} mb={mb:<3d} {rec:9s} est {row['estimated_allocated_bytes'] / 2**30:7.2f} GiB  "
              f"measured {meas:>7s} GiB {err}", flush=True)

    cond = _conditions.finish(cond)
    meta = {"device": device_name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gpu_architecture": arch,
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "conditions": cond}
    intro = (f"{meta['date']}, torch {meta['torch']}, CUDA {meta['cuda']}; conditions: "
             f"{_conditions.summary(cond)}. Estimated = "
             "`MemoryBreakdown.allocated_peak_bytes` (no context or allocator overhead); measured = "
             "`torch.cuda.max_memory_allocated()` over steady-state steps.")
    header = ("| model | micro-batch | grad-accum | seq | recompute | estimated GiB | measured GiB | error % "
              "| reserved/allocated | non-PyTorch GiB |")
    lines = [f"# Memory: estimate vs measured ({meta['device']})", "", intro, "", header,
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, res, ctx = r["measured_allocated_bytes"], r["measured_reserved_bytes"], r["non_pytorch_bytes"]
        measured = f"{m / 2**30:.2f}" if m else ("OOM" if r.get("oom") else "n/a")
        err = f"{r['error_pct']:+.1f}" if m else ""
        ratio = f"{res / m:.3f}" if m else ""
        other = f"{ctx / 2**30:.2f}" if ctx is not None else ""
        lines.append(f"| {r['model']} | {r['micro_batch']} | {r['grad_accum']} | {r['seq_len']} | {r['recompute']} | "
                     f"{r['estimated_allocated_bytes'] / 2**30:.2f} | {measured} | {err} | {ratio} | {other} |")
    slug = "".join(c if c.isalnum() else "-" for c in meta["device"].lower()).strip("-") or args.device
    out = args.out or _out_name(args, slug)
    write_text_atomic(out, "\n".join(lines) + "\n")
    write_text_atomic(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
