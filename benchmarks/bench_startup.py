"""Start-up benchmark: wall time of `flopscalc plan --gpu 4070ti --days 365` against `python -c "import numpy"`.

The ratio is what we track (machines differ; the ratio travels). Target (issue 2): the plan answers in
well under half a second on a 2-core machine.

    python benchmarks/bench_startup.py [--repeat 15] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
    "flopscalc plan --gpu 4070ti --days 365": [sys.executable, "-m", "flopscalc", "plan", "--gpu", "4070ti",
                                               "--days", "365"],
    "flopscalc flops --model gpt2-xl --tokens 300B": [sys.executable, "-m", "flopscalc", "flops", "--model",
                                                      "gpt2-xl", "--tokens", "300B"],
}


def _time(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "startup.json")
    args = ap.parse_args()
    for argv in CASES.values():  # warm the file cache and __pycache__
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    medians = {name: statistics.median(_time(argv, args.repeat)) for name, argv in CASES.items()}
    numpy_s = medians["python -c 'import numpy'"]
    print(f"{'command':<48} {'median s':>9} {'x numpy':>8}")
    for name, s in medians.items():
        print(f"{name:<48} {s:9.3f} {s / numpy_s:8.2f}")
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "repeat": args.repeat,
        "median_s": medians,
        "ratio_to_import_numpy": {name: s / numpy_s for name, s in medians.items()},
        "target": "flopscalc plan well under 0.5 s on a 2-core machine",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(f.name, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
