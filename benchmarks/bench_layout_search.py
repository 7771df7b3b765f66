"""How long the layout search takes as the GPU count grows (issue 13: a 1024-GPU search well under a second).

Run: .venv/bin/python benchmarks/bench_layout_search.py  -> benchmarks/results/layout_search.json
Llama 3.1 70B, H100, sequence 8192, global batch = the GPU count in sequences; best of 3 runs (a cold cache each:
the per-rank pricing cache is cleared), on the machine that runs it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from flopscalc.atomic import write_text_atomic
from flopscalc.hardware import get_gpu
from flopscalc.layout import cluster_for
from flopscalc.layout.search import search_layouts
from flopscalc.layout.time import _rank_cost, _stage_cost
from flopscalc.model import get_preset

COUNTS = (32, 128, 512, 1024, 2048, 4096)  # 70B needs >= 32 H100s: 18 bytes x 70e9 / 16 > 80 GB


def main() -> None:
    cfg, gpu = get_preset("llama-3.1-70b"), get_gpu("h100")
    rows = []
    for n in COUNTS:
        best = float("inf")
        for _ in range(3):
            _rank_cost.cache_clear()
            _stage_cost.cache_clear()
            t0 = time.perf_counter()
            r = search_layouts(cfg, cluster_for(gpu, n), 8192, n)
            best = min(best, time.perf_counter() - t0)
        rows.append({"n_gpus": n, "seconds": round(best, 4), "n_candidates": r.n_candidates, "n_timed": r.n_timed,
                     "best": r.best.layout.label(), "best_mfu": round(r.best.time.mfu, 4)})
        print(rows[-1])
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
           "python": platform.python_version(), "model": cfg.name, "gpu": gpu.name, "rows": rows}
    path = Path(__file__).parent / "results" / "layout_search.json"
    write_text_atomic(path, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
