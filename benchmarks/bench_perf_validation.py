"""The step-time model against published throughput (issue 11, item 5): writes benchmarks/results/perf_validation.json.

Every row of data/published_throughput.csv through `perf.validation` as the model stands (the fitted GEMM
fraction `op_kinds.SUSTAINED_FRACTION`, re-derived here from the fit rows and compared), with each row's error beside
the error the previous results file recorded ("before"), the constant MFU 0.4 beside both, the consumer-GPU rows
apart, the repeats of data/published_throughput_repeats.csv apart, and the group table docs/performance_model.md
quotes. A pure computation on the CSVs: nothing is timed, so the figures do not depend on the machine.

    python benchmarks/bench_perf_validation.py [--out benchmarks/results/perf_validation.json] [--before-note TEXT]

"Before" is whatever ``--out`` holds when the script starts, and its ``before_note`` is kept unless one is given:
a second run would record the model against itself under the old note. To regenerate the committed file, put the
file at the baseline its note names into ``--out`` (today: ``git show 2a6e613:benchmarks/results/perf_validation.json``),
run the baseline's own copy of this script and package on today's CSVs into it (so rows added since, such as the
A100-40GB ones, get a "before"), then run this script on it and pass that note again; the result is then
byte-identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "perf_validation.json"
CONSUMER_NOTE = ("single GeForce and workstation-class GPUs (data/published_throughput.csv group 'consumer'), held out "
                 "and reported apart from the headline above; errors are predicted / measured - 1; summary over the "
                 "setup_stated rows")


def _group(check, row) -> str:
    if row["run"].startswith("llmc-"):
        return "llm.c (A100 124M, H100 1.5B)"
    if row["run"].startswith("torchtitan-"):
        return "torchtitan Llama 2/3, 64 A100, FSDP"
    if row.get("setup_stated") == "partial":
        return "Llama 2 paper GPU-hours (layout assumed; apart)"
    rc = "recompute full" if row["recompute"] == "full" else "no recompute"
    if row.get("group") == "a100-40gb":
        return f"A100-40GB (llm-foundry, bf16 PURE), {rc}"
    gpu = "A100" if check.gpu.startswith("a100") else "H100"
    seq = "seq >= 8192" if int(row["seq_len"]) >= 8192 else "seq < 8192"
    return f"{gpu}, {rc}, {seq}"


def _table(checks, rows, before) -> list[dict]:
    groups: dict[str, list] = {}
    for c in checks:
        groups.setdefault(_group(c, rows[c.run]), []).append(c)
    out = []
    for name, cs in groups.items():
        errs = [c.error for c in cs]
        out.append({"group": name, "rows": len(cs), "median": round(statistics.median(errs), 4),
                    "min": round(min(errs), 4), "max": round(max(errs), 4),
                    "median_before": round(statistics.median(before[c.run] for c in cs), 4)
                    if all(c.run in before for c in cs) else None,
                    "constant_median": round(statistics.median(c.constant_error for c in cs), 4)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--before-note", default=None, help="what 'before' is (default: the previous file's state)")
    args = ap.parse_args()

    from flopscalc.atomic import write_text_atomic
    from flopscalc.perf import validation as v
    from flopscalc.perf.op_kinds import SUSTAINED_FRACTION

    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    before = {r["run"]: r["error"] for r in previous.get("rows", [])}
    rows = {r["run"]: r for r in (*v.published_rows(), *v.consumer_rows())}
    fitted = v.fit_sustained_fraction([r for r in v.published_rows() if v.in_fit_subset(r["run"])])
    checks = [c for c in v.validate() if not v.in_fit_subset(c.run)]
    stated = [c for c in checks if c.setup_stated]
    s = v.summary(stated)
    consumer = v.validate_consumer()
    cs = v.summary([c for c in consumer if c.setup_stated])
    repeats = [c for c in v.validate_repeats()
               if not v.in_fit_subset(next(r for r in v.repeat_rows() if r["run"] == c.run)["twin_of"] or "")]
    out = {
        "n_held_out": s["n_runs"], "median_abs_error": s["median_abs_error"], "max_abs_error": s["max_abs_error"],
        "n_above_20pct": sum(abs(c.error) > 0.20 for c in stated),
        "before_median_abs_error": previous.get("median_abs_error"),
        "before_max_abs_error": previous.get("max_abs_error"),
        "constant_mfu_0.4_median_abs_error": s["constant_median_abs_error"],
        "constant_mfu_0.4_max_abs_error": s["constant_max_abs_error"],
        "sustained_fraction": SUSTAINED_FRACTION, "sustained_fraction_fitted": round(fitted, 4),
        "before_note": args.before_note or previous.get("before_note"),
        "groups": _table(checks, rows, before),
        "rows": [{"run": c.run, "gpu": c.gpu, "fit_subset": False, "setup_stated": c.setup_stated,
                  "measured_tokens_per_s_per_gpu": c.measured_tokens_per_s_per_gpu,
                  "predicted_tokens_per_s_per_gpu": round(c.predicted_tokens_per_s_per_gpu, 1),
                  "error": round(c.error, 4), "error_before": before.get(c.run),
                  "constant_mfu_error": round(c.constant_error, 4)} for c in checks],
        "consumer_held_out": {"note": CONSUMER_NOTE, "n_held_out": cs["n_runs"],
                              "median_abs_error": cs["median_abs_error"], "max_abs_error": cs["max_abs_error"],
                              "constant_mfu_0.4_median_abs_error": cs["constant_median_abs_error"],
                              "constant_mfu_0.4_max_abs_error": cs["constant_max_abs_error"],
                              "rows": [{"run": c.run, "gpu": c.gpu, "setup_stated": c.setup_stated,
                                        "measured_tokens_per_s_per_gpu": c.measured_tokens_per_s_per_gpu,
                                        "predicted_tokens_per_s_per_gpu": round(c.predicted_tokens_per_s_per_gpu, 1),
                                        "error": round(c.error, 4), "constant_mfu_error": round(c.constant_error, 4)}
                                       for c in consumer]},
        "repeats_held_out": {gpu: v.summary([c for c in repeats if c.gpu == gpu])
                             for gpu in ("a100-sxm-80gb", "h100-sxm")},
    }
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    print(f"fitted {fitted:.4f} (model {SUSTAINED_FRACTION}); held out {s['n_runs']}: median "
          f"{s['median_abs_error']:.2%}, worst {s['max_abs_error']:.2%}, above 20%: {out['n_above_20pct']}")
    for g in out["groups"]:
        print(g)
    for gpu, r in out["repeats_held_out"].items():
        print(gpu, r)


if __name__ == "__main__":
    main()
