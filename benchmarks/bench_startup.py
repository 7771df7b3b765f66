"""Start-up benchmark: wall time of flopscalc commands as ratios to `python -c "import numpy"`, measured interleaved.

Machines differ; the ratio to a baseline timed in the same run travels. Each round runs every command once, in
turn, so a busy neighbour slows all of them alike; the median over rounds is reported. Targets (issue 18, item
2): `--help` <= 1.2x, `gpus` and `models` <= 1.5x, the main job (`plan --gpu 4070ti --days 365`) <= 2.5x.

A floor is timed beside them: typer and rich's console and table imported and nothing run, which no command that
parses its options and prints a table can go below. No command timed here imports numpy (their formulas compute
numbers in floats, `flopscalc.scalar`; tests/test_cli_startup.py holds that), so a command's distance to its
target above the floor is what flopscalc itself costs. The plan is timed with `--json` too: the difference is
what drawing its tables costs.

Bytecode: an installed package runs from cached bytecode (pip compiles it at install), so by default the children
cache theirs under a temporary PYTHONPYCACHEPREFIX, written by the warm-up round (it keeps the source tree clean,
and overrides a PYTHONDONTWRITEBYTECODE set in the environment). `--compile-each-run` instead recompiles flopscalc's
modules on every run (PYTHONDONTWRITEBYTECODE=1, no prefix), as a development shell with that variable set does;
figures recorded that way are only comparable with each other. The result names the mode.

    python benchmarks/bench_startup.py [--repeat 15] [--compile-each-run] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _conditions

from flopscalc.atomic import write_text_atomic

BASELINE = "python -c 'import numpy'"
FLOPSCALC = [sys.executable, "-m", "flopscalc"]
# The floor: what the libraries every command line needs cost by themselves. No command starts faster than typer
# (the parser) and rich's console and table (the output).
FLOOR = "floor: import typer, rich console+table"
_FLOOR_IMPORTS = "import typer, typer.main, rich.console, rich.table"
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    BASELINE: [sys.executable, "-c", "import numpy"],
    FLOOR: [sys.executable, "-c", _FLOOR_IMPORTS],
    "flopscalc --help": [*FLOPSCALC, "--help"],
    "flopscalc gpus": [*FLOPSCALC, "gpus"],
    "flopscalc models": [*FLOPSCALC, "models"],
    "flopscalc plan --gpu 4070ti --days 365": [*FLOPSCALC, "plan", "--gpu", "4070ti", "--days", "365"],
    "flopscalc plan --gpu 4070ti --days 365 --json": [*FLOPSCALC, "plan", "--gpu", "4070ti", "--days", "365", "--json"],
    "flopscalc flops --model gpt2-xl --tokens 300B": [*FLOPSCALC, "flops", "--model", "gpt2-xl", "--tokens", "300B"],
}
# Issue 18's targets as ratios to BASELINE.
TARGETS = {"flopscalc --help": 1.2, "flopscalc gpus": 1.5, "flopscalc models": 1.5,
           "flopscalc plan --gpu 4070ti --days 365": 2.5}


def _run(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15, help="rounds; each round runs every command once")
    ap.add_argument("--compile-each-run", action="store_true",
                    help="recompile every module on every run instead of caching bytecode (see the docstring)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "startup.json")
    args = ap.parse_args()
    _conditions.pin_threads(1)  # this process imports no numpy; the children inherit the variables
    with tempfile.TemporaryDirectory(prefix="flopscalc-bytecode-") as cache:
        env = {**os.environ, "COLUMNS": "100"}
        if args.compile_each_run:  # installed libraries keep their own __pycache__; flopscalc's sources compile
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env.pop("PYTHONPYCACHEPREFIX", None)
            bytecode = ("flopscalc compiled from source on every run (PYTHONDONTWRITEBYTECODE=1; installed libraries "
                        "read their existing __pycache__)")
        else:
            env["PYTHONPYCACHEPREFIX"] = cache
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            bytecode = ("cached, as in an installed package: written under a temporary PYTHONPYCACHEPREFIX by the "
                        "warm-up round" + (" (PYTHONDONTWRITEBYTECODE=1 in the environment was overridden)"
                                           if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""))
        cond, times = _measure(args.repeat, env)
    _report(args, cond, times, bytecode)


def _measure(repeat: int, env: dict) -> tuple[dict, dict[str, list[float]]]:
    """Warm up (file cache, bytecode), then time every case once per round, `repeat` rounds."""
    for argv in CASES.values():
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    cond = _conditions.start()
    print(_conditions.summary(cond), flush=True)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(repeat):
        for name, argv in CASES.items():
            times[name].append(_run(argv, env))
    return _conditions.finish(cond), times


def _report(args: argparse.Namespace, cond: dict, times: dict[str, list[float]], bytecode: str) -> None:
    medians = {name: statistics.median(t) for name, t in times.items()}
    base_s = medians[BASELINE]
    ratios = {name: s / base_s for name, s in medians.items()}
    print(f"{'command':<48} {'median s':>9} {'x numpy':>8} {'target':>7}")
    for name, s in medians.items():
        target = TARGETS.get(name)
        mark = "" if target is None else f"{target:6.1f}x {'ok' if ratios[name] <= target else 'MISSED'}"
        print(f"{name:<48} {s:9.3f} {ratios[name]:8.2f} {mark}")
    print(_conditions.summary(cond))
    result = {
        "conditions": cond,
        "method": "interleaved rounds (every command once per round), median over rounds; ratio to the baseline "
                  "timed in the same rounds",
        "baseline": BASELINE,
        "bytecode": bytecode,
        "repeat": args.repeat,
        "median_s": medians,
        "ratio_to_import_numpy": ratios,
        "targets_ratio": TARGETS,
        "met": {name: ratios[name] <= t for name, t in TARGETS.items()},
        "floors": {FLOOR: _FLOOR_IMPORTS},
        "all_s": times,
    }
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
