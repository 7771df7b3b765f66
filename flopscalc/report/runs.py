"""Renderers for `flopscalc runs`: published runs, predicted against reported. No arithmetic."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..runs import RunComparison
from ..units import format_count, format_duration


def runs_dict(comparisons: list[RunComparison]) -> dict:
    return {"runs": [
        {"run": c.run.run, "kind": c.run.kind, "gpu": c.run.gpu, "n_gpus": c.run.n_gpus, "n_tokens": c.run.n_tokens,
         "basis": c.basis, "mfu": c.mfu, "model_flops": c.model_flops,
         "predicted_wall_clock_s": c.predicted_wall_clock_s, "predicted_gpu_hours": c.predicted_gpu_hours,
         "compared": c.compared, "reported": c.reported, "error": c.error,
         "device_hours_unit": f"{c.device_noun}-h",
         "error_with_duty_cycle": c.error_with_duty_cycle,
         "wall_clock_includes_downtime": c.run.wall_clock_includes_downtime, "source": c.run.source}
        for c in comparisons]}


def runs_table(comparisons: list[RunComparison]) -> Group:
    t = Table(title="Published runs: wall clock predicted from hardware, tokens and reported efficiency",
              title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for col, just in [("run", "left"), ("devices", "right"), ("MFU", "right"), ("predicted", "right"),
                      ("reported", "right"), ("error", "right"), ("downtime", "left")]:
        t.add_column(col, justify=just, no_wrap=col != "run")
    for c in comparisons:
        if c.compared == "gpu_hours":
            pred, rep = (f"{format_count(x)} {c.device_noun}-h" for x in (c.predicted_gpu_hours, c.reported))
        else:
            pred, rep = (format_duration(x) for x in (c.predicted_wall_clock_s, c.reported))
        devices = f"{c.run.n_gpus} {c.device_noun}s" if c.run.n_gpus else "-"
        t.add_row(c.run.run + (" *" if c.run.kind == "prediction" else ""), devices,
                  f"{c.mfu:.0%}", pred, rep, f"{c.error:+.0%}", c.run.wall_clock_includes_downtime)
    foot = Text("MFU: the run's reported efficiency re-expressed in flopscalc's convention (its exact model FLOPs, or 6N "
                "where only the size is published; PaLM App. B), so it can differ from the figure the source quotes "
                "in its own (llm.c's ~60% for GPT-2 124M counts 6N + 6LCT). "
                "* a paper's own estimate, not a measurement. Reported times that include downtime should come out "
                "longer than predicted: predicted / reported is the run's implied duty cycle. Sources and notes: "
                "flopscalc runs --json, data/published_runs.csv, docs/published_runs.md.", style="dim")
    return Group(t, foot)
