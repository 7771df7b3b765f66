"""The conditions a benchmark ran under, written into every file in benchmarks/results/ (issue 18).

A figure measured on a shared machine means little without the machine's load, the thread counts and the
library versions, so every benchmark:

1. calls `pin_threads(n)` *before* importing numpy, scipy or torch (BLAS reads its thread count once, when
   it loads; threadpoolctl is used instead when it is installed);
2. calls `start()` before measuring and `finish(conditions)` after, and stores the dict under "conditions".

Library versions come from package metadata, so recording them imports nothing.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

# Environment variables the BLAS and OpenMP runtimes numpy, scipy and torch may load read for their thread count.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
LIBRARIES = ("numpy", "scipy", "torch", "typer", "rich")

_pinned: dict = {"blas_threads": None, "method": "not pinned (library defaults)"}


def pin_threads(n_threads: int = 1) -> dict:
    """Pin BLAS/OpenMP (and, when torch is imported later, torch's intra-op pool) to ``n_threads``.

    Must run before numpy is imported unless threadpoolctl is installed; refuses otherwise, since a pin that
    silently does nothing is worse than none.
    """
    try:
        from threadpoolctl import threadpool_limits  # optional
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is None and "numpy" in sys.modules:
        raise RuntimeError("pin_threads() must run before numpy is imported (threadpoolctl is not installed)")
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n_threads)
    method = "environment variables set before numpy/torch import: " + ", ".join(THREAD_ENV_VARS)
    if threadpool_limits is not None:
        threadpool_limits(n_threads)
        method = "threadpoolctl.threadpool_limits, and " + method
    _pinned.update(blas_threads=n_threads, method=method)
    return dict(_pinned)


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux, else what platform reports)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict:
    """Installed versions of the libraries benchmarks time (None when absent), without importing them."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def torch_threads() -> dict | None:
    """torch's intra- and inter-op thread counts if torch has been imported by the benchmark, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def code_version() -> dict:
    """The commit measured and whether flopscalc/ had uncommitted edits (the tree is shared while people work)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "flopscalc"], check=False, cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted_in_flopscalc": None}
    return {"commit": commit or None, "uncommitted_in_flopscalc": sorted(line[3:] for line in dirty if line.strip())}


def start() -> dict:
    """Conditions at the start of a benchmark: date, machine, load, versions, pinned threads."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "n_cores": cores,
        "n_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores,
        "platform": platform.platform(),
        "versions": library_versions(),
        "code": code_version(),
        "threads": {"blas": _pinned["blas_threads"], "blas_how": _pinned["method"], "torch": torch_threads()},
        "load_avg_before": {"1min": load[0], "5min": load[1], "15min": load[2]},
        "oversubscribed_at_start": load[0] > cores,
        "_t0": time.perf_counter(),
    }


def finish(conditions: dict) -> dict:
    """The start conditions plus the load after, the wall time and torch's threads as they ended."""
    out = dict(conditions)
    load = os.getloadavg()
    out["load_avg_after"] = {"1min": load[0], "5min": load[1], "15min": load[2]}
    out["wall_s"] = time.perf_counter() - out.pop("_t0")
    out["threads"] = dict(out["threads"], torch=torch_threads() or out["threads"]["torch"])
    out["note"] = ("shared machine: other work may run at the same time; the load averages say how much, and "
                   "ratios to a baseline measured in the same run travel better than absolute times")
    return out


def summary(conditions: dict) -> str:
    """One line for the console: cores, threads, load before -> after."""
    after = conditions.get("load_avg_after", {}).get("1min")
    return (f"{conditions['cpu_model']}, {conditions['n_cores']} cores, BLAS threads {conditions['threads']['blas']}"
            f", torch threads {conditions['threads']['torch']}, load {conditions['load_avg_before']['1min']:.2f}"
            + (f" -> {after:.2f}" if after is not None else ""))
