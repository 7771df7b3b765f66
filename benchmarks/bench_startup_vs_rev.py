"""The main job's wall time against an earlier commit of flopscalc, both run from cached bytecode, interleaved.

Issue 11 asks that `flopscalc plan --gpu 4070ti --days 365` stay within 1.3x of its time before the per-operation
model; this measures exactly that ratio on the same machine in the same rounds. The earlier commit is checked out
in a temporary git worktree; both trees run with `python -S` (no site hooks, so the editable install cannot pick
the tree) from a neutral folder, with the venv's site-packages on PYTHONPATH behind the tree.

    python benchmarks/bench_startup_vs_rev.py --rev e127f06 [--repeat 15] [--out benchmarks/results/startup_vs_rev.json]
"""

from __future__ import annotations

import argparse
import json
import os
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _conditions

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB = ("plan", "--gpu", "4070ti", "--days", "365")


def _timed(cmd: list[str], env: dict, cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="the earlier commit to compare against")
    ap.add_argument("--repeat", type=int, default=15, help="rounds; each runs old, new and import numpy once")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup_vs_rev.json"))
    args = ap.parse_args()
    conditions = _conditions.start()
    packages = site.getsitepackages()[0]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.rev], check=True)
        try:
            def env(tree: Path) -> dict:
                e = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{packages}",
                         PYTHONPYCACHEPREFIX=str(Path(tmp) / f"pyc-{tree.name}"))
                e.pop("PYTHONDONTWRITEBYTECODE", None)
                return e

            main_job = [sys.executable, "-S", "-m", "flopscalc", *MAIN_JOB]
            numpy = [sys.executable, "-S", "-c", "import numpy"]
            runs = {"old": (main_job, env(old)), "new": (main_job, env(ROOT)), "numpy": (numpy, env(ROOT))}
            for cmd, e in runs.values():  # warm-up: writes each tree's bytecode
                _timed(cmd, e, tmp)
            times = {k: [] for k in runs}
            for _ in range(args.repeat):
                for k, (cmd, e) in runs.items():
                    times[k].append(_timed(cmd, e, tmp))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "what": "flopscalc " + " ".join(MAIN_JOB) + f": this tree against {args.rev}, cached bytecode, python -S",
        "rev": args.rev, "repeat": args.repeat, "median_s": med,
        "new_over_old": med["new"] / med["old"],
        "x_numpy": {"old": med["old"] / med["numpy"], "new": med["new"] / med["numpy"]},
        "target_new_over_old": 1.3,
        "conditions": _conditions.finish(conditions),
    }
    from flopscalc.atomic import write_text_atomic

    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"{_conditions.summary(result['conditions'])}\nold {med['old']:.3f} s, new {med['new']:.3f} s: "
          f"new/old {result['new_over_old']:.2f} (target <= 1.3); x numpy old {result['x_numpy']['old']:.2f}, "
          f"new {result['x_numpy']['new']:.2f}\nwrote {args.out}")


if __name__ == "__main__":
    main()
