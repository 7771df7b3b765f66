"""The planner: budget -> allocation -> options that fit -> recommendation -> explanation.

``core`` runs the steps (``plan``); ``budget`` turns days, dollars or FLOPs into a FLOP budget; ``search`` picks
models and token counts; ``options`` finds the setup (ZeRO, offload, recomputation, micro-batch) that fits and is
fastest; ``speed`` chooses one time model per plan; ``layout`` hands multi-node runs to the layout search;
``family`` and ``notes`` shape and explain. Importing the package loads nothing; its public names load ``core``
on first use (PEP 562), so engines may import ``flopscalc.planner.budget`` without pulling in the planner.
"""

from __future__ import annotations


def __getattr__(name: str):
    import importlib

    if name.startswith("__") or name == "core":  # `from . import x` asks for submodules here first
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    core = importlib.import_module(f"{__name__}.core")
    try:
        return getattr(core, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
