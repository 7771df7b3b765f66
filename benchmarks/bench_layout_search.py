"""How long the layout search takes as the GPU count grows (issue 13: a 1024-GPU search well under a second).

Llama 3.1 70B on H100, sequence 8192, a global batch of one sequence per GPU. Each GPU count is searched
``--repeat`` times from a cold cache (the per-rank pricing caches and the memory caches cleared before each run),
and the best is kept; the pruned search (the default, what `flopscalc step --search` and the planner run) is
timed beside ``prune=False`` (every fitting layout priced in full), and their rankings are checked to agree.

    python benchmarks/bench_layout_search.py [--repeat 3] [--counts 32 128 512 1024 2048 4096]
                                             [--out benchmarks/results/layout_search.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _conditions

MODEL, GPU, SEQ = "llama-3.1-70b", "h100", 8192
# From 32 GPUs, where the search has room to choose: 176 layouts fit there, 5 at 16 GPUs (every one with full
# recompute; 18 bytes x 70.6e9 / 16 = 79 GB of the H100's 80 GiB), none at 8.
COUNTS = (32, 128, 512, 1024, 2048, 4096)


def _clear_caches() -> None:
    from flopscalc.layout.memory import _stage_params, activation_bytes_per_layer
    from flopscalc.layout.stage_cost import _rank_cost, _stage_cost

    for cached in (_rank_cost, _stage_cost, _stage_params, activation_bytes_per_layer):
        cached.cache_clear()


def _best_of(repeat: int, search) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        _clear_caches()
        t0 = time.perf_counter()
        result = search()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="cold-cache runs per GPU count; the fastest is kept")
    ap.add_argument("--counts", type=int, nargs="+", default=list(COUNTS), help="GPU counts to search")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "layout_search.json")
    args = ap.parse_args()
    if args.repeat < 1 or any(n < 1 for n in args.counts):
        ap.error("--repeat and --counts must be positive whole numbers")
    _conditions.pin_threads(1)  # before numpy is imported (flopscalc imports it)

    from flopscalc.atomic import write_text_atomic
    from flopscalc.hardware import get_gpu
    from flopscalc.layout import cluster_for
    from flopscalc.layout.search import search_layouts
    from flopscalc.model import get_preset

    cfg, gpu = get_preset(MODEL), get_gpu(GPU)
    cond = _conditions.start()
    print(_conditions.summary(cond), flush=True)
    rows = []
    for n in args.counts:
        cluster = cluster_for(gpu, n)
        s_pruned, r = _best_of(args.repeat, lambda c=cluster, n=n: search_layouts(cfg, c, SEQ, n))
        s_full, full = _best_of(args.repeat, lambda c=cluster, n=n: search_layouts(cfg, c, SEQ, n, prune=False))
        same = [x.layout for x in r.ranked] == [x.layout for x in full.ranked]
        rows.append({"n_gpus": n, "seconds": round(s_pruned, 4), "seconds_unpruned": round(s_full, 4),
                     "n_candidates": r.n_candidates, "n_fitting": r.n_timed + r.n_pruned, "n_timed": r.n_timed,
                     "n_pruned": r.n_pruned, "same_ranking_as_unpruned": same, "best": r.best.layout.label(),
                     "best_mfu": round(r.best.time.mfu, 4)})
        print(rows[-1], flush=True)
    cond = _conditions.finish(cond)
    print(_conditions.summary(cond))
    out = {"conditions": cond,
           "method": f"search_layouts({MODEL}, {GPU}, sequence {SEQ}, global batch = GPU count in sequences); best "
                     f"of {args.repeat} cold-cache runs per count, pruned and unpruned",
           "model": cfg.name, "gpu": gpu.name, "seq_len": SEQ, "repeat": args.repeat, "rows": rows}
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
