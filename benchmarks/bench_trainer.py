"""Trainer throughput benchmark: tokens/s and MFU of the reference GPT-2 trainer, written as a results table.

Target (issue 5): on one NVIDIA H100, GPT-2 small (124M), sequence 1024, bf16 autocast, at least 45% MFU
against the dense BF16 peak (aiming for 50%+, in line with nanoGPT and llm.c). The sweep times
micro-batch x torch.compile off/on; each point is full optimizer steps (forward, backward, clipping,
fused AdamW) after warm-up, timed between two ``torch.cuda.synchronize`` calls. MFU = tokens/s x the
FLOPs engine's model FLOPs per token / dense peak (Chowdhery et al. 2022, App. B).

    python benchmarks/bench_trainer.py                       # CUDA: GPT-2 small, seq 1024, mb 8/16/32, compile off/on
    python benchmarks/bench_trainer.py --model gpt2-medium --micro-batch 8 --micro-batch 16
    python benchmarks/bench_trainer.py --pad-vocab 64         # vocabulary 50304, as nanoGPT and llm.c time it
    python benchmarks/bench_trainer.py --device cpu           # the same code on a tiny model
    python benchmarks/bench_trainer.py --dry-run --gpu h200 --pad-vocab 64 --compile on --micro-batch 64
                                                              # the planned points and their predictions, no run

Writes ``benchmarks/results/trainer_<device>_<date>.md`` (table) and ``calibration_<device>_<date>.json``
(the profile ``flopscalc plan --calibration`` reads). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _conditions

_conditions.pin_threads(1)  # BLAS/OpenMP before numpy and torch load; torch's pool is set by run_benchmarks

from flopscalc.calibration import save_profile, write_text_atomic
from flopscalc.model import ModelConfig, get_preset
from flopscalc.units import format_bytes, format_count

MFU_TARGET = 0.45  # issue 5: ">= 45% MFU ... against the dense BF16 peak"
TINY = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=256, name="tiny")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def _intra_op(torch_threads) -> str:
    values = (torch_threads or {}).get("intra_op")
    return ", ".join(map(str, values)) if isinstance(values, list) else str(values)


def conditions_markdown(cond: dict) -> list[str]:
    """The run's conditions as list items (see benchmarks/_conditions.py)."""
    before, after = cond["load_avg_before"]["1min"], cond["load_avg_after"]["1min"]
    versions = ", ".join(f"{k} {v}" for k, v in cond["versions"].items() if v)
    return [f"- CPU: {cond['cpu_model']}, {cond['n_cores']} cores; {cond['platform']}",
            (f"- threads: torch intra-op {_intra_op(cond['threads']['torch'])}, BLAS {cond['threads']['blas']} "
             f"({cond['threads']['blas_how']})"),
            f"- load average (1 min): {before:.2f} before, {after:.2f} after"
            + (" (oversubscribed at the start)" if cond["oversubscribed_at_start"] else ""),
            f"- versions: {versions}",
            (f"- code: commit {cond['code']['commit']}; uncommitted in flopscalc/: "
             f"{', '.join(cond['code']['uncommitted_in_flopscalc'] or []) or 'none'}")]


def predicted_step_s(point, gpu_key: str | None) -> float | None:
    """`flopscalc step`'s time for a measured point (s): `flopscalc.perf.calibrate.point_estimate`, the per-operation
    model on the GPU's database row for the setup the trainer ran (the point's micro-batch, precision, devices,
    recomputation and attention path; a compiled point's GEMMs shape-padded; fused AdamW, PyTorch's cross-entropy).
    None without a GPU row (a CPU, an unrecognised card): the model has no sourced rates there."""
    if gpu_key is None:
        return None
    from flopscalc.hardware import get_gpu
    from flopscalc.perf.calibrate import point_estimate

    return point_estimate(point, get_gpu(gpu_key)).step_s


@dataclass(frozen=True)
class PlannedPoint:
    """A point the sweep will time, with the fields `predicted_step_s` reads of a measured one (`CalibrationPoint`'s
    names), so that a dry run prints the prediction the measured table will show beside it."""

    model: ModelConfig
    micro_batch: int
    seq_len: int
    compiled: bool
    precision: str = "bf16"  # the trainer's autocast on a GPU (`train.bench.peak_precision`)
    grad_accum: int = 1
    n_devices: int = 1
    recompute: str = "none"
    attention: str = "sdpa"


def dry_run_rows(setups, gpu_key: str) -> list[dict]:
    """Each planned setup with the step model's time (`predicted_step_s`, as the measured table prices it), the
    tokens/s that follows, the memory estimator's allocated peak (`train.bench.predicted_peak_bytes`, what the
    measured table's max_memory_allocated column is compared with) and its device total (with the CUDA context and
    the allocator's overhead, as `flopscalc memory` reports it), which judges whether the setup fits the GPU."""
    import torch

    from flopscalc.hardware import get_gpu
    from flopscalc.train.bench import predicted_memory

    gpu = get_gpu(gpu_key)
    rows = []
    for s in setups:
        precision = "bf16" if s.precision == "auto" else s.precision
        point = PlannedPoint(s.model, s.micro_batch, s.seq_len, s.compile, precision, s.grad_accum)
        step_s = predicted_step_s(point, gpu_key)
        memory = predicted_memory(s.train_config(), precision, torch.device("cuda"), 1, gpu)
        rows.append({"model": s.model.name, "vocab_size": s.model.vocab_size, "micro_batch": s.micro_batch,
                     "seq_len": s.seq_len, "compiled": s.compile, "predicted_step_s": step_s,
                     "predicted_tokens_per_s": s.micro_batch * s.seq_len * s.grad_accum / step_s,
                     "predicted_memory_bytes": None if memory is None else memory.allocated_peak_bytes,
                     "predicted_device_bytes": None if memory is None else memory.peak_bytes,
                     "fits": memory is None or memory.peak_bytes <= gpu.memory_bytes})
    return rows


def table_markdown(profile, settings: str, cond: dict | None = None) -> str:
    lines = [
        f"# Trainer benchmark: {profile.device_name}",
        "",
        f"- date: {profile.created}",
        f"- torch: {profile.torch_version}",
        *(conditions_markdown(cond) if cond else []),
        f"- GPU database row: {profile.gpu_key or '- (not in the database)'}",
        f"- settings: {settings}",
        *[f"- note: {n}" for n in profile.notes],
        "",
        ("| model | params | micro-batch | seq | compile | precision | step time | step time (predicted) | error "
         "| tokens/s | achieved TFLOP/s | MFU | peak memory (measured) | peak memory (predicted) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in profile.points:
        # issue 11 item 6: the per-operation model beside each measurement (eager kernels: compiled points are
        # faster than it prices, by torch.compile's fusions)
        pred = predicted_step_s(p, profile.gpu_key)
        lines.append(
            f"| {p.model.name} | {format_count(p.n_params)} | {p.micro_batch} | {p.seq_len} | "
            f"{'on' if p.compiled else 'off'} | {p.precision} | {1000 * p.step_time_s:.1f} ms | "
            f"{'-' if pred is None else f'{1000 * pred:.1f} ms'} | "
            f"{'-' if pred is None else f'{100 * (pred / p.step_time_s - 1):+.1f}%'} | "
            f"{format_count(p.tokens_per_s)} | {p.achieved_flop_per_s / 1e12:.4g} | "
            f"{'-' if p.mfu is None else f'{100 * p.mfu:.1f}%'} | "
            f"{'-' if p.peak_memory_bytes is None else format_bytes(p.peak_memory_bytes)} | "
            f"{'-' if p.predicted_memory_bytes is None else format_bytes(p.predicted_memory_bytes)} |")
    best = max((p.mfu for p in profile.points if p.mfu is not None), default=None)
    if best is not None:
        verdict = "meets" if best >= MFU_TARGET else "misses"
        lines += ["", f"Best MFU {100 * best:.1f}%: {verdict} the {100 * MFU_TARGET:.0f}% target of issue 5."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--model", action="append", help="GPT-2 preset (repeat to sweep); default gpt2 (tiny on CPU)")
    ap.add_argument("--micro-batch", type=int, action="append", help="repeat to sweep; default 8, 16, 32")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: block size)")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="both")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--pad-vocab", type=int, default=0, metavar="MULTIPLE",
                    help="round the vocabulary up to a multiple (64: 50257 -> 50304, nanoGPT's speed-up); the "
                         "padded logits count as model FLOPs, as in nanoGPT and llm.c")
    ap.add_argument("--gpu", default=None, help="GPU database row, when the CUDA name is not recognised")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak to compute MFU against (TFLOP/s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads while timing (default: 1 on a CPU, torch's own on a GPU)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--label", default="", help="appended to the file names, so that several sweeps of one day on "
                    "one device keep their own table (gpu_session.sh runs three)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the planned points with the step model's time and the memory estimate on --gpu "
                         "(a CUDA run's settings); run and write nothing")
    args = ap.parse_args(argv)

    import torch

    if args.dry_run and (not args.gpu or args.device == "cpu" or args.peak_tflops is not None):
        print("error: --dry-run plans a CUDA sweep priced for a GPU database row: pass --gpu NAME (e.g. h200) and "
              "drop --device cpu and --peak-tflops", file=sys.stderr)
        return 2

    from flopscalc.train.bench import BenchSetup, run_benchmarks
    from flopscalc.train.render import profile_table

    on_cpu = not args.dry_run and (args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()))
    models = [get_preset(m) for m in args.model] if args.model else [TINY if on_cpu else get_preset("gpt2")]
    if args.pad_vocab > 0:
        models = [m.with_(vocab_size=-(-m.vocab_size // args.pad_vocab) * args.pad_vocab,
                          name=f"{m.name} (vocab {-(-m.vocab_size // args.pad_vocab) * args.pad_vocab})")
                  for m in models]
    batches = args.micro_batch or ([4, 8] if on_cpu else [8, 16, 32])
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile if not on_cpu else "off"]
    setups = [BenchSetup(model=m, micro_batch=b, seq_len=args.seq or m.block_size, compile=c,
                         precision=args.precision, device=args.device, warmup_steps=args.warmup_steps,
                         timed_steps=args.steps)
              for m in models for b in batches for c in compiles]
    if args.dry_run:
        from flopscalc.errors import UsageError
        from flopscalc.hardware import get_gpu

        try:
            gpu_key = get_gpu(args.gpu).key
        except (UsageError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for r in dry_run_rows(setups, gpu_key):
            print(f"  {r['model']} vocab {r['vocab_size']} mb={r['micro_batch']} seq={r['seq_len']} "
                  f"compile={r['compiled']}: predicted {1e3 * r['predicted_step_s']:.1f} ms, "
                  f"{format_count(r['predicted_tokens_per_s'])} tok/s, memory "
                  + ("-" if r["predicted_memory_bytes"] is None else
                     f"{format_bytes(r['predicted_memory_bytes'])} allocated, "
                     f"{format_bytes(r['predicted_device_bytes'])} on the device")
                  + ("" if r["fits"] else " (more than the GPU holds)"))
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
        slug = f"{gpu_key}_{stamp}" + (f"_{_slug(args.label)}" if args.label else "")
        print(f"dry run on {gpu_key}: nothing timed or written; a run writes trainer_{slug}.md")
        return 0
    cond = _conditions.start()
    used = []

    def on_point(p):
        used.append(torch.get_num_threads())  # run_benchmarks sets torch's threads while it times
        print(f"  {p.model.name} mb={p.micro_batch} compile={p.compiled}: {format_count(p.tokens_per_s)} tok/s",
              flush=True)

    profile = run_benchmarks(setups, gpu=args.gpu, peak_tflops=args.peak_tflops, on_point=on_point,
                             n_threads=args.threads)
    cond = _conditions.finish(cond)
    cond["threads"]["torch"] = {"intra_op": sorted(set(used))}  # one value unless the sweep changed it
    from rich.console import Console

    Console().print(profile_table(profile))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    slug = f"{_slug(profile.gpu_key or profile.device_name)}_{stamp}" + (f"_{_slug(args.label)}" if args.label else "")
    settings = (f"warm-up {args.warmup_steps} steps, {args.steps} timed steps, precision {args.precision}, "
                "synthetic tokens, fused AdamW, SDPA attention")
    table = args.out_dir / f"trainer_{slug}.md"
    write_text_atomic(table, table_markdown(profile, settings, cond))
    save_profile(profile, args.out_dir / f"calibration_{slug}.json")
    print(f"wrote {table} and calibration_{slug}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
