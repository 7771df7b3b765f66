"""Parallel layouts beyond data parallelism: tensor (TP), sequence (SP), pipeline (PP, interleaved), context (CP)
and expert (EP) parallelism with data parallelism and ZeRO, their memory per GPU, their step time, and a search
for the fastest layout that fits (issue 13). See docs/parallelism.md.

The names below load on first use (PEP 562), so a plan that only reads a rule of `spec` (`spec.CP_MIN_SEQ_LEN`:
`planner.node`) does not build the memory and time engines."""

from importlib import import_module

_WHERE = {"Cluster": "cluster", "cluster_for": "cluster", "Engine": "spec", "Layout": "spec",
          "LayoutMemory": "memory", "activation_bytes_per_layer": "memory", "layout_memory": "memory",
          "LayoutTime": "time", "layout_time": "time"}

__all__ = [
    "Cluster",
    "Engine",
    "Layout",
    "LayoutMemory",
    "LayoutTime",
    "activation_bytes_per_layer",
    "cluster_for",
    "layout_memory",
    "layout_time",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # once
    return value
