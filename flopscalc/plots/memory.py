"""Memory breakdown: stacked bars of what fills one GPU during training, against the GPU's capacity.

One bar per (model, micro-batch). Each segment is a component of ``MemoryBreakdown.component_bytes()``
(``flopscalc.memory``); the negative component ``not_concurrent`` (activations and gradients are never all
alive at once, see ``memory/estimate.py``) is drawn as a narrow hatched bar beside the stack, from the estimated
peak up to the top of the stack, so the bottom of the hatch is the peak and no component is drawn over (it can be
larger than the top component: gpt2-medium's 1.13 GiB against 1.04 GiB of activations).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UsageError
from . import _common as C

# Colours of the components, in the order of memory.COMPONENTS (the negative one is hatched, not filled).
COMPONENT_COLORS = {
    "weights": "#1f77b4", "master_weights": "#aec7e8", "weight_copies": "#9edae5", "gradients": "#ff7f0e",
    "optimizer_state": "#2ca02c", "activations": "#d62728", "logits_buffers": "#ff9896", "comm_buckets": "#9467bd",
    "blas_workspaces": "#dbdb8d", "allocator_overhead": "#c7c7c7", "cuda_context": "#7f7f7f",
}
NEGATIVE_COMPONENT = "not_concurrent"
# Stacking order, bottom up: what is alive all step, then what comes and goes within it (the part the hatched
# segment overlaps: it is never larger than those, as the peak is at least the larger end of backward).
STACK_ORDER = ("weights", "master_weights", "optimizer_state", "comm_buckets", "blas_workspaces", "cuda_context",
               "allocator_overhead", "weight_copies", "gradients", "logits_buffers", "activations")
# Most bars in one figure (more would not have readable labels).
MAX_BARS = 16
# Bar widths in x units (one bar per unit): the stack, and the hatched "not alive at once" bar beside it.
STACK_WIDTH = 0.62
SIDE_WIDTH = 0.1
SIDE_GAP = 0.03


def memory_data(models, gpu=None, setup=None, micro_batches=None) -> dict:
    """The numbers behind the memory plot (JSON-ready; bytes per GPU, and GiB for the axes).

    Parameters
    ----------
    models : sequence of ModelConfig or preset names
    gpu : GpuSpec, optional
        Draws its memory as the capacity line and says which bars fit.
    setup : TrainingSetup, optional
        Precision, optimizer, recomputation, ZeRO... (default ``TrainingSetup()``). Without a GPU architecture of
        its own it takes ``gpu``'s (the cuBLAS workspace's size); with neither, ``notes`` says which size is assumed.
    micro_batches : sequence of int, optional
        One bar per micro-batch for each model (default: the setup's micro-batch).
    """
    from ..memory import COMPONENTS, Device, TrainingSetup, estimate_memory, fits
    from ..memory.workspace import cublas_workspace, on_gpu
    from ..model import get_preset

    cfgs = [get_preset(m) if isinstance(m, str) else m for m in models]
    if not cfgs:
        raise UsageError("name at least one model, e.g. --model gpt2")
    setup = setup or TrainingSetup()
    if gpu is not None:
        setup = on_gpu(setup, gpu)  # the cuBLAS workspace of the GPU drawn
    notes = []
    if setup.gpu_architecture is None and setup.device is Device.cuda:
        notes.append(f"cuBLAS workspaces: {cublas_workspace(None)[1]} with --gpu")
    batches = list(micro_batches) if micro_batches else [setup.micro_batch]
    if any(int(b) != b or b < 1 for b in batches):
        raise UsageError(f"micro-batches must be positive whole numbers of sequences, got {batches}")
    if len(cfgs) * len(batches) > MAX_BARS:
        raise UsageError(f"{len(cfgs) * len(batches)} bars is too many to read; give at most {MAX_BARS} "
                         "(fewer --model or --micro-batch values)")
    bars = []
    for cfg in cfgs:
        for b in batches:
            br = estimate_memory(cfg, replace(setup, micro_batch=int(b)))
            comp = br.component_bytes()
            bars.append({"model": cfg.name, "micro_batch": int(b), "seq_len": br.seq_len, "n_params": br.n_params,
                         "component_bytes": comp, "peak_bytes": br.peak_bytes,
                         "fits": None if gpu is None else fits(br, gpu).fits})
    return {"plot": "memory", "gpu": None if gpu is None else gpu.name,
            "capacity_bytes": None if gpu is None else gpu.memory_bytes,
            "setup": {"precision": setup.precision.value, "optimizer": setup.optimizer.value,
                      "recompute": setup.recompute.value, "flash": setup.flash, "grad_accum": setup.grad_accum,
                      "n_gpus": setup.n_gpus, "zero_stage": setup.zero_stage,
                      "offload_optimizer": setup.offload_optimizer},
            "components": [{"key": k, "label": label} for k, label, _ in COMPONENTS], "bars": bars,
            **({"notes": notes} if notes else {})}


def _setup_note(s: dict) -> str:
    parts = [s["precision"], s["optimizer"], f"recompute {s['recompute']}", "flash" if s["flash"] else "no flash"]
    if s["grad_accum"] > 1:
        parts.append(f"grad-accum {s['grad_accum']}")
    if s["n_gpus"] > 1:
        parts.append(f"{s['n_gpus']} GPUs, ZeRO {s['zero_stage']}")
    if s["offload_optimizer"]:
        parts.append("optimizer offload")
    return ", ".join(parts)


def draw_memory(data: dict):
    """Draw `memory_data`'s numbers: one stacked bar per model and micro-batch (GiB), capacity line."""
    import numpy as np

    bars = data["bars"]
    fig, ax = C.new_figure(max(7.5, 1.1 * len(bars) + 4.5), 6.5)
    x = np.arange(len(bars))
    width = STACK_WIDTH
    bottoms = np.zeros(len(bars))
    labels = {c["key"]: c["label"] for c in data["components"]}
    keys = [k for k in STACK_ORDER if k in labels] + [c["key"] for c in data["components"]
                                                       if c["key"] not in STACK_ORDER and c["key"] != NEGATIVE_COMPONENT]
    stack = []
    for key in keys:
        heights = np.array([b["component_bytes"][key] for b in bars], dtype=float) / C.GIB  # float: a Python int
        # past int64 (--micro-batch 1e23) would make an object array that cannot be stacked
        if not np.any(heights > 0):
            continue  # a component no bar has (e.g. communication buckets on one GPU) stays out of the legend
        stack.append(ax.bar(x, heights, width, bottom=bottoms, color=COMPONENT_COLORS.get(key, "#bbbbbb"),
                            edgecolor="white", linewidth=0.5, label=labels[key], gid=f"component:{key}"))
        bottoms += heights
    negative = np.array([-b["component_bytes"][NEGATIVE_COMPONENT] for b in bars], dtype=float) / C.GIB
    if np.any(negative > 0):  # beside the stack, not over it: every component stays in view
        side_x = x + width / 2 + SIDE_GAP + SIDE_WIDTH / 2
        ax.bar(side_x, negative, SIDE_WIDTH, bottom=bottoms - negative, facecolor="white", edgecolor="#444444",
               hatch="///", linewidth=0.5, label="minus: not alive at the same time",
               gid=f"component:{NEGATIVE_COMPONENT}")
    peaks = np.array([b["peak_bytes"] for b in bars]) / C.GIB
    ax.hlines(peaks, x - width / 2, x + width / 2 + SIDE_GAP + SIDE_WIDTH, colors="black", linewidths=2.5, zorder=5, gid="peak",
              label="estimated peak (bottom of the hatch)")
    for xi, peak, top, b in zip(x, peaks, bottoms, bars):
        over = b["fits"] is False  # red where it does not fit the GPU
        ax.annotate(f"{peak:.2f}" + (" (too big)" if over else ""), (xi, top), xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize=C.NOTE_SIZE,
                    color="#d62728" if over else "black")
    if data["capacity_bytes"]:
        cap = data["capacity_bytes"] / C.GIB
        ax.axhline(cap, color="#d62728", ls="--", lw=1.6, gid="capacity", label=f"{C.short_gpu_name(data['gpu'])}: {cap:.0f} GiB")
    ax.set_ylim(0, max(float(np.max(bottoms)), (data["capacity_bytes"] or 0) / C.GIB) * 1.12)
    several_batches = len({b["micro_batch"] for b in bars}) > 1
    several_models = len({b["model"] for b in bars}) > 1
    ticks = []
    for b in bars:
        parts = [b["model"]] if several_models or not several_batches else []
        parts += [f"mb {b['micro_batch']}"] if several_batches or not several_models else []
        ticks.append("\n".join(parts))
    ax.set_xticks(x, ticks)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    xlabel = "model and micro-batch (sequences)" if several_models and several_batches else (
        "micro-batch (sequences)" if several_batches else "model")
    C.style_axes(ax, xlabel, "memory per GPU (GiB)")
    batch = "" if several_batches else f", micro-batch {bars[0]['micro_batch']}"
    fig.suptitle(f"Training memory per GPU, sequence {bars[0]['seq_len']} tokens{batch}\n"
                 f"{_setup_note(data['setup'])}",
                 fontsize=C.TITLE_SIZE)
    ax.grid(False, axis="x")
    handles, names = ax.get_legend_handles_labels()
    order = [i for i, h in enumerate(handles) if h not in stack] + [handles.index(h) for h in stack[::-1]]
    ax.legend([handles[i] for i in order], [names[i] for i in order], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=C.LEGEND_SIZE, frameon=False)  # stacked components top-down, as the bars read
    return fig


def memory_figure(models, gpu=None, setup=None, micro_batches=None):
    """Stacked memory bars for ``models`` (and ``micro_batches``) against ``gpu``; see `memory_data`. A Figure."""
    return draw_memory(memory_data(models, gpu, setup, micro_batches))
