"""Parallel layouts beyond data parallelism: tensor (TP), sequence (SP), pipeline (PP, interleaved), context (CP)
and expert (EP) parallelism with data parallelism and ZeRO, their memory per GPU, their step time, and a search
for the fastest layout that fits (issue 13). See docs/parallelism.md."""

from .cluster import Cluster, cluster_for
from .memory import LayoutMemory, activation_bytes_per_layer, layout_memory
from .spec import Engine, Layout
from .time import LayoutTime, layout_time

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
