"""Reproduce Besiroglu et al. 2024's refit of Chinchilla's approach 3 from their own extracted data.

Their CSV (github.com/epoch-research/analyzing-chinchilla, data/svg_extracted_data.csv) has no license file, so
flopscalc does not ship it and the test suite cannot run this check (issue 17: no test that CI can never run).
Get a copy and run:

    python benchmarks/bench_besiroglu_repro.py --csv path/to/svg_extracted_data.csv
    # or FLOPSCALC_CHINCHILLA_CSV=path/to/svg_extracted_data.csv python benchmarks/bench_besiroglu_repro.py

Their procedure (Besiroglu et al. 2024, arXiv:2404.10102, sec. 3): drop the 5 highest-loss runs, fit
L = E + A/N^alpha + B/D^beta by Huber loss from the paper's grid of starts. Pass: every constant within 2 of
their standard errors (their Table 1, `flopscalc.scaling.laws.BESIROGLU2024_SE`). Writes
benchmarks/results/besiroglu_repro.json; exit 0 on pass, 1 on a miss, 2 when the data is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _conditions

_conditions.pin_threads(1)  # one BLAS thread, before numpy loads

from flopscalc.atomic import write_text_atomic
from flopscalc.scaling.fit import fit_approach3
from flopscalc.scaling.io import read_runs
from flopscalc.scaling.laws import BESIROGLU2024, BESIROGLU2024_SE

NAMES = ("E", "A", "B", "alpha", "beta")
N_SE = 2  # pass band: within 2 standard errors of each published constant
EXCLUDED_HIGHEST_LOSS = 5  # Besiroglu et al. 2024 sec. 3: the five highest-loss runs are outliers they drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=os.environ.get("FLOPSCALC_CHINCHILLA_CSV", ""),
                    help="svg_extracted_data.csv from epoch-research/analyzing-chinchilla")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "besiroglu_repro.json"))
    args = ap.parse_args()
    if not args.csv or not Path(args.csv).is_file():
        sys.stderr.write("bench_besiroglu_repro: give the data with --csv FILE or FLOPSCALC_CHINCHILLA_CSV (it is not "
                         "shipped: no license); see this script's docstring\n")
        return 2
    runs = read_runs(args.csv)
    cond = _conditions.start()
    t0 = time.perf_counter()
    fit = fit_approach3(runs, grid="paper", exclude_highest_loss=EXCLUDED_HIGHEST_LOSS)
    fit_s = time.perf_counter() - t0
    got = fit.law.constants()
    truth = BESIROGLU2024.loss_form
    rows = {k: {"published": getattr(truth, k), "se": BESIROGLU2024_SE[k], "fit": got[k],
                "n_se_off": abs(got[k] - getattr(truth, k)) / BESIROGLU2024_SE[k]} for k in NAMES}
    passed = all(r["n_se_off"] <= N_SE for r in rows.values())
    result = {
        "conditions": _conditions.finish(cond),
        "data": str(args.csv), "n_runs": len(runs), "excluded_highest_loss": EXCLUDED_HIGHEST_LOSS,
        "fit_s": fit_s, "pass_band_n_se": N_SE, "passed": passed, "constants": rows,
    }
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    for k, r in rows.items():
        print(f"{k:>5}: fit {r['fit']:.4g}, published {r['published']:.4g} +- {r['se']:.3g} "
              f"({r['n_se_off']:.2f} SE off)")
    print(f"{'PASS' if passed else 'FAIL'}: every constant within {N_SE} SE; wrote {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
