"""The step-time model on llm-foundry's rows on 16-128 GPUs (issue 11, item 5): writes
benchmarks/results/perf_multinode.json.

Every row of data/published_throughput_multinode.csv (`perf.validation.multinode_rows`, reported apart from the
headline) through the model as it stands, the constant MFU 0.4 beside it, the errors by GPU count, and the per-GPU
throughput of each size from its table's 8-GPU row at sequence 2048 up, measured against predicted. Two sets, never
pooled: the A100 tables' rows (network stated: the top-level keys, as before) and the H100 table's rows (network not
stated, priced on the model's default: key "h100_network_assumed"). A pure computation on the CSVs: nothing is timed,
so the figures do not depend on the machine.

    python benchmarks/bench_perf_multinode.py [--out benchmarks/results/perf_multinode.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "perf_multinode.json"
SIZES = ("125m", "350m", "760m", "1b", "3b", "7b", "13b")
H100_SIZES = ("760m", "1b", "3b", "13b", "30b", "70b")


def _summaries(v, rows, checks) -> tuple[dict, dict]:
    s = v.summary(list(checks.values()))
    by_gpus = {}
    for n in sorted({int(rows[run]["n_gpus"]) for run in checks}):
        cs = [c for run, c in checks.items() if int(rows[run]["n_gpus"]) == n]
        by_gpus[str(n)] = {k: round(x, 4) for k, x in v.summary(cs).items()}
    return s, by_gpus


def _trend(v, rows, checks, gpu: str, group: str, sizes) -> list[dict]:
    """Per size: the table's 8-GPU row at 2048 (the headline's, where the table has one), then its multi-node rows;
    each point against the size's first point (8 GPUs, or the fewest GPUs the table has at 2048)."""
    single = {r["run"].split("-")[1]: r for r in v.published_rows()
              if r["gpu"] == gpu and r["seq_len"] == "2048" and r["n_gpus"] == "8" and r["run"].startswith("mpt-")
              and (r["group"] or "").strip() == group}
    trend = []
    for size in sizes:
        series = sorted(((int(rows[run]["n_gpus"]), c, rows[run]) for run, c in checks.items()
                         if rows[run]["gpu"] == gpu and run.startswith(f"mpt-{size}-")), key=lambda x: x[0])
        if size in single:
            series = [(8, v.check_row(single[size]), single[size]), *series]
        base = series[0][1]
        trend.append({"size": size, "points": [
            {"n_gpus": n, "micro_batch_x_accum": f"{r['micro_batch']}x{r['grad_accum']}",
             "measured_tokens_per_s_per_gpu": c.measured_tokens_per_s_per_gpu,
             "predicted_tokens_per_s_per_gpu": round(c.predicted_tokens_per_s_per_gpu, 1),
             "measured_vs_first": round(c.measured_tokens_per_s_per_gpu / base.measured_tokens_per_s_per_gpu - 1, 4),
             "predicted_vs_first": round(c.predicted_tokens_per_s_per_gpu / base.predicted_tokens_per_s_per_gpu - 1, 4),
             "error": round(c.error, 4)} for n, c, r in series]})
    return trend


def _row_records(rows, checks) -> list[dict]:
    return [{"run": c.run, "gpu": c.gpu, "n_gpus": int(rows[c.run]["n_gpus"]),
             "network_efficiency": float(rows[c.run]["network_efficiency"]) if rows[c.run]["network_efficiency"]
             else None,
             "measured_tokens_per_s_per_gpu": c.measured_tokens_per_s_per_gpu,
             "predicted_tokens_per_s_per_gpu": round(c.predicted_tokens_per_s_per_gpu, 1),
             "error": round(c.error, 4), "constant_mfu_error": round(c.constant_error, 4)} for c in checks.values()]


def _print(label, s, by_gpus, trend) -> None:
    print(f"{label}: {s['n_runs']} rows, median {s['median_abs_error']:.2%}, worst {s['max_abs_error']:.2%}; constant MFU "
          f"0.4: {s['constant_median_abs_error']:.2%} / {s['constant_max_abs_error']:.2%}")
    for n, x in by_gpus.items():
        print(f"  {n:>3} GPUs: {x['n_runs']} rows, median {x['median_abs_error']:.2%}, worst {x['max_abs_error']:.2%}, "
              f"constant {x['constant_median_abs_error']:.2%}")
    for t in trend:
        print(f"  {t['size']:5s}", " ".join(f"{p['n_gpus']}:{p['measured_vs_first']:+.3f}/{p['predicted_vs_first']:+.3f}"
                                          f"({p['error']:+.3f})" for p in t["points"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from flopscalc.atomic import write_text_atomic
    from flopscalc.perf import validation as v

    rows = {r["run"]: r for r in v.multinode_rows()}
    checks = {c.run: c for c in v.validate_multinode("full")}
    s, by_gpus = _summaries(v, rows, checks)
    trend = _trend(v, rows, checks, "a100-sxm-40gb", "a100-40gb", SIZES)
    h100 = {c.run: c for c in v.validate_multinode("partial")}
    hs, h_by_gpus = _summaries(v, rows, h100)
    h_trend = _trend(v, rows, h100, "h100-sxm", "", H100_SIZES)
    out = {
        "n_rows": s["n_runs"], "median_abs_error": s["median_abs_error"], "max_abs_error": s["max_abs_error"],
        "constant_mfu_0.4_median_abs_error": s["constant_median_abs_error"],
        "constant_mfu_0.4_max_abs_error": s["constant_max_abs_error"],
        "by_n_gpus": by_gpus,
        "per_gpu_trend_a100_40gb_seq2048": trend,
        "rows": _row_records(rows, checks),
        "h100_network_assumed": {
            "setup_stated": "partial",
            "network": "not stated by the table; priced on perf/fabric.py's default (400 Gb/s per GPU at 0.94)",
            "n_rows": hs["n_runs"], "median_abs_error": hs["median_abs_error"], "max_abs_error": hs["max_abs_error"],
            "constant_mfu_0.4_median_abs_error": hs["constant_median_abs_error"],
            "constant_mfu_0.4_max_abs_error": hs["constant_max_abs_error"],
            "by_n_gpus": h_by_gpus,
            "per_gpu_trend_h100_seq2048": h_trend,
            "rows": _row_records(rows, h100),
        },
    }
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    _print("A100 (network stated)", s, by_gpus, trend)
    _print("H100 (network assumed, setup partial)", hs, h_by_gpus, h_trend)


if __name__ == "__main__":
    main()
