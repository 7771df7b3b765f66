"""Plots (issue 7): each a function returning a matplotlib `Figure`, built with the object API (no pyplot).

Every plot comes in three pieces: ``*_data(...)`` gathers the numbers from the engines (a JSON-ready dict,
units in the keys; what ``flopscalc plot ... --json`` prints), ``draw_*(data)`` draws them, and
``*_figure(...)`` does both. `save_figure` writes PNG, SVG or PDF atomically, headless (Agg).
matplotlib is imported inside the functions, so importing this package costs nothing.
"""

from ._common import FORMATS, figure_bytes, format_for, save_figure
from .calibration import calibration_data, calibration_figure, draw_calibration
from .frontier import draw_frontier, frontier_data, frontier_figure, largest_fitting_params
from .isoflop import draw_isoflop, group_by_flops, isoflop_data, isoflop_figure
from .landscape import draw_landscape, landscape_data, landscape_figure
from .memory import draw_memory, memory_data, memory_figure

__all__ = [
    "FORMATS",
    "calibration_data",
    "calibration_figure",
    "draw_calibration",
    "draw_frontier",
    "draw_isoflop",
    "draw_landscape",
    "draw_memory",
    "figure_bytes",
    "format_for",
    "frontier_data",
    "frontier_figure",
    "group_by_flops",
    "isoflop_data",
    "isoflop_figure",
    "landscape_data",
    "landscape_figure",
    "largest_fitting_params",
    "memory_data",
    "memory_figure",
    "save_figure",
]
