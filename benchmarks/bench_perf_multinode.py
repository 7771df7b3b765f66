"""The step-time model on llm-foundry's A100 rows on 16-128 GPUs (issue 11, item 5): writes
benchmarks/results/perf_multinode.json.

Every row of data/published_throughput_multinode.csv (`perf.validation.multinode_rows`, reported apart from the
headline) through the model as it stands, the constant MFU 0.4 beside it, the errors by GPU count, and the per-GPU
throughput of each A100-40GB size from its table's 8-GPU row at sequence 2048 to 128 GPUs, measured against
predicted. A pure computation on the CSVs: nothing is timed, so the figures do not depend on the machine.

    python benchmarks/bench_perf_multinode.py [--out benchmarks/results/perf_multinode.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "perf_multinode.json"
SIZES = ("125m", "350m", "760m", "1b", "3b", "7b", "13b")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from flopscalc.atomic import write_text_atomic
    from flopscalc.perf import validation as v

    rows = {r["run"]: r for r in v.multinode_rows()}
    checks = {c.run: c for c in v.validate_multinode()}
    s = v.summary(list(checks.values()))
    by_gpus = {}
    for n in sorted({int(r["n_gpus"]) for r in rows.values()}):
        cs = [c for run, c in checks.items() if int(rows[run]["n_gpus"]) == n]
        by_gpus[str(n)] = {k: round(x, 4) for k, x in v.summary(cs).items()}
    # the table's 8-GPU row of the same size at 2048 (the headline's), then its 16-128 GPU rows
    single = {r["run"].split("-")[1]: r for r in v.published_rows()
              if r["group"] == "a100-40gb" and r["seq_len"] == "2048"}
    trend = []
    for size in SIZES:
        base = v.check_row(single[size])
        series = sorted(((int(r["n_gpus"]), checks[run]) for run, r in rows.items()
                         if r["gpu"] == "a100-sxm-40gb" and run.startswith(f"mpt-{size}-")), key=lambda x: x[0])
        trend.append({"size": size, "points": [
            {"n_gpus": n, "micro_batch_x_accum": f"{rows[c.run]['micro_batch']}x{rows[c.run]['grad_accum']}"
             if n > 8 else f"{single[size]['micro_batch']}x{single[size]['grad_accum']}",
             "measured_tokens_per_s_per_gpu": c.measured_tokens_per_s_per_gpu,
             "predicted_tokens_per_s_per_gpu": round(c.predicted_tokens_per_s_per_gpu, 1),
             "measured_vs_8": round(c.measured_tokens_per_s_per_gpu / base.measured_tokens_per_s_per_gpu - 1, 4),
             "predicted_vs_8": round(c.predicted_tokens_per_s_per_gpu / base.predicted_tokens_per_s_per_gpu - 1, 4),
             "error": round(c.error, 4)} for n, c in [(8, base), *series]]})
    out = {
        "n_rows": s["n_runs"], "median_abs_error": s["median_abs_error"], "max_abs_error": s["max_abs_error"],
        "constant_mfu_0.4_median_abs_error": s["constant_median_abs_error"],
        "constant_mfu_0.4_max_abs_error": s["constant_max_abs_error"],
        "by_n_gpus": by_gpus,
        "per_gpu_trend_a100_40gb_seq2048": trend,
        "rows": [{"run": c.run, "gpu": c.gpu, "n_gpus": int(rows[c.run]["n_gpus"]),
                  "network_efficiency": float(rows[c.run]["network_efficiency"]),
                  "measured_tokens_per_s_per_gpu": c.measured_tokens_per_s_per_gpu,
                  "predicted_tokens_per_s_per_gpu": round(c.predicted_tokens_per_s_per_gpu, 1),
                  "error": round(c.error, 4), "constant_mfu_error": round(c.constant_error, 4)}
                 for c in checks.values()],
    }
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    print(f"{s['n_runs']} rows: median {s['median_abs_error']:.2%}, worst {s['max_abs_error']:.2%}; constant MFU 0.4: "
          f"{s['constant_median_abs_error']:.2%} / {s['constant_max_abs_error']:.2%}")
    for n, x in by_gpus.items():
        print(f"  {n:>3} GPUs: {x['n_runs']} rows, median {x['median_abs_error']:.2%}, worst {x['max_abs_error']:.2%}, "
              f"constant {x['constant_median_abs_error']:.2%}")
    for t in trend:
        print(f"  {t['size']:5s}", " ".join(f"{p['n_gpus']}:{p['measured_vs_8']:+.3f}/{p['predicted_vs_8']:+.3f}"
                                          f"({p['error']:+.3f})" for p in t["points"]))


if __name__ == "__main__":
    main()
