"""`flopscalc step` with a parallel layout (--tp/--pp/--cp/--ep/--interleave/--sequence-parallel) or --search:
build the layout from the options, call the layout engine, render a rich table or a JSON-ready dict."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..errors import DomainError, UsageError
from ..layout import Layout, LayoutMemory, LayoutTime
from ..layout.search import LayoutSearch
from ..memory import COMPONENTS
from ..memory.margin import PLAN_HEADROOM_WORDS, margin_note
from ..memory.settings import Device
from ..memory.workspace import gpu_setup_fields
from ..model import default_train_seq
from ..units import format_bytes, format_tokens_per_s
from .common import seq_label, seq_words


def explicit_layout(n_gpus: int, tp: int, pp: int, cp: int, ep: int, interleave: int, sequence_parallel: bool,
                    zero: int, micro_batch: int, grad_accum: int, recompute) -> Layout:
    """The layout the options name; --n-gpus is the total, data parallelism takes what TP x PP x CP leave."""
    split = tp * pp * cp
    if n_gpus % split:
        raise UsageError(f"--n-gpus {n_gpus} is not a multiple of --tp x --pp x --cp = {split}; data parallelism "
                         f"takes the rest, so try --n-gpus {split * max(1, n_gpus // split)}")
    return Layout(tp=tp, pp=pp, dp=n_gpus // split, cp=cp, ep=ep, interleave=interleave,
                  sequence_parallel=sequence_parallel, zero_stage=zero, micro_batch=micro_batch,
                  n_micro=grad_accum, recompute=recompute)


# The memory table's rows: `LayoutMemory` field -> the `flopscalc memory` component (`memory.COMPONENTS`) whose label
# it is shown with, in that command's order (the layout's weights carry the master weights and copies on the
# DDP/FSDP path, its activations the communication buckets: `layout.memory.trainer_layout_memory`)
MEMORY_ROWS = (("weights", "weights"), ("gradients", "gradients"), ("optimizer", "optimizer_state"),
               ("activations", "activations"), ("logits", "logits_buffers"), ("blas_workspaces", "blas_workspaces"),
               ("not_concurrent", "not_concurrent"), ("fragmentation", "allocator_overhead"),
               ("cuda_context", "cuda_context"))
_LABELS = {key: label for key, label, _ in COMPONENTS}


def layout_margin_note(lt: LayoutTime, mem: LayoutMemory) -> str | None:
    """`memory.margin.margin_note` of the layout's peak: a fit closer to the GPU's edge than the estimate's measured
    error (a layout runs on CUDA); None when it does not fit (said apart) or has room."""
    if mem.total > lt.cluster.gpu.memory_bytes:
        return None
    if lt.layout.engine().value.startswith("Megatron"):  # `flopscalc memory` has no TP/PP/CP/EP
        how = f"--search, which keeps {PLAN_HEADROOM_WORDS} of the memory free,"
    else:  # the memory engine's own estimate of this run (`layout.memory.trainer_layout_memory`)
        how = f"'flopscalc memory' with the same flags, less the layout options, and --headroom {PLAN_HEADROOM_WORDS}"
    return margin_note(mem.total, lt.cluster.gpu.memory_bytes, Device.cuda, how=how)


def layout_dict(lt: LayoutTime, mem: LayoutMemory, margin: str | None) -> dict:
    """``margin``: `layout_margin_note` of this layout, computed once for both faces (`layout_step`)."""
    lay = lt.layout
    return {
        "model": lt.model.name, "gpu": lt.cluster.gpu.name, "n_gpus": lay.n_gpus, "seq_len": lt.seq_len,
        "layout": {"tp": lay.tp, "pp": lay.pp, "interleave": lay.interleave, "dp": lay.dp, "cp": lay.cp,
                   "ep": lay.ep, "sequence_parallel": lay.sequence_parallel, "zero_stage": lay.zero_stage,
                   "micro_batch": lay.micro_batch, "n_micro": lay.n_micro, "recompute": lay.recompute.value,
                   "label": lay.label()},
        "engine": lay.engine().value, "runs_in_flopscalc_train": not lay.engine().value.startswith(("Megatron",)),
        "engine_settings": lay.engine_settings(lt.model.n_layer),
        "memory_bytes": {**{k: v for k, v in mem.as_dict().items() if k not in ("stage",)}, "total": mem.total},
        "memory_peak_stage": mem.stage, "fits": mem.total <= lt.cluster.gpu.memory_bytes,
        "gpu_memory_bytes": lt.cluster.gpu.memory_bytes, "margin_note": margin,
        "time_s": lt.components, "step_s": lt.step_s, "tokens_per_step": lt.tokens_per_step,
        "tokens_per_s": lt.tokens_per_s, "s_per_token": lt.s_per_token, "mfu": lt.mfu,
        "network_bytes_per_s_per_gpu": lt.cluster.network_bytes_per_s, "network_source": lt.cluster.network_source,
        "intra_node_link": lt.cluster.intra_link, "tp_crosses_nodes": lay.tp > lt.cluster.gpus_per_node,
    }


def _components_table(lt: LayoutTime, mem: LayoutMemory) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title=f"{lt.layout.label()}  ({lt.layout.engine().value})", title_justify="left")
    t.add_column("time component")
    t.add_column("seconds", justify="right")
    t.add_column("share", justify="right")
    for k, v in lt.components.items():
        if v:
            t.add_row(k, f"{v:.4g}", f"{v / lt.step_s:.1%}")
    t.add_row("step", f"{lt.step_s:.4g}", "100.0%", style="bold")
    m = Table(box=box.SIMPLE_HEAD, title=f"Memory per GPU (peak on the {mem.stage} pipeline stage)",
              title_justify="left")
    m.add_column("component")
    m.add_column("memory", justify="right")
    for field, component in MEMORY_ROWS:  # in `flopscalc memory`'s words and order
        v = getattr(mem, field)
        if v or field not in ("not_concurrent", "blas_workspaces"):  # the two the Megatron count may lack
            m.add_row(_LABELS[component], format_bytes(v))
    fits = mem.total <= lt.cluster.gpu.memory_bytes
    m.add_row("total", f"{format_bytes(mem.total)} of {format_bytes(lt.cluster.gpu.memory_bytes)}"
              + ("" if fits else " (does not fit)"), style="bold" if fits else "bold red")
    return Group(t, m)


def network_line(cluster) -> str:
    """One line: the network between nodes a layout beyond one node was priced on, and its source."""
    from ..perf.fabric import network_words

    return f"network between nodes: {network_words(cluster.network_bytes_per_s, cluster.network_source)}"


def layout_report(lt: LayoutTime, mem: LayoutMemory, margin: str | None, seq_given: int | None = None) -> Group:
    """``margin``: `layout_margin_note` of this layout, as `layout_dict` says it (the per-operation face notes it so,
    report.step); ``seq_given``: the --seq asked for (None: the model's default, whose source the header names)."""
    lines = [(f"{lt.model.name} on {lt.layout.n_gpus} x {lt.cluster.gpu.name}, "
              f"{seq_words(lt.model, seq_given, lt.seq_len)}: "
             f"{format_tokens_per_s(lt.tokens_per_s)} tokens/s, MFU {lt.mfu:.1%} (model FLOPs, causal attention)")]
    if mem.total > lt.cluster.gpu.memory_bytes:  # said first: the time is of a run that cannot start
        lines.append(f"does not fit: {format_bytes(mem.total)} per GPU on the {mem.stage} pipeline stage, of "
                     f"{format_bytes(lt.cluster.gpu.memory_bytes)}; a shorter --seq, more --tp/--pp/--cp or "
                     "recomputation (--recompute) lowers it, and --search finds a layout that fits")
    if lt.layout.n_gpus > lt.cluster.gpus_per_node:  # the network every step crosses, and where its figure is from
        lines.append(network_line(lt.cluster))
    if lt.layout.tp > lt.cluster.gpus_per_node:  # priced (layout.time prices a group by its span), but not the usual
        lines.append(f"--tp {lt.layout.tp} spans nodes of {lt.cluster.gpus_per_node} GPUs: its collectives, every "
                     f"layer of every pass, cross the network between nodes ({lt.cluster.network_source}), not the "
                     f"node's {lt.cluster.intra_link}; --search keeps tensor parallelism inside a node")
    eng = lt.layout.engine()
    if eng.value.startswith("Megatron"):
        lines.append("flopscalc train runs DDP and FSDP only; this layout needs Megatron-LM (or torchtitan/DeepSpeed):")
        lines += [f"  {k}: {v}" for k, v in lt.layout.engine_settings(lt.model.n_layer).items()]
    else:
        lines.append(f"runs in {eng.value} (torchrun)")
    return Group(Text("\n".join(lines)), _components_table(lt, mem),
                 *((Text(f"note: {margin}", style="yellow"),) if margin else ()))


def search_dict(s: LayoutSearch, margins: list[str | None]) -> dict:
    """``margins``: `layout_margin_note` of each ranked layout, in rank order."""
    return {"model": s.model.name, "gpu": s.cluster.gpu.name, "n_gpus": s.cluster.n_gpus, "seq_len": s.seq_len,
            "global_batch": s.global_batch, "n_candidates": s.n_candidates, "n_timed": s.n_timed,
            "n_pruned": s.n_pruned, "rejected": s.rejected,
            "ranked": [{**layout_dict(r.time, r.memory, m), "why_slower": r.why} for r, m in zip(s.ranked, margins)]}


def search_report(s: LayoutSearch, best_margin: str | None, seq_given: int | None = None) -> Group:
    """``best_margin``: `layout_margin_note` of the best layout; ``seq_given``: the --seq asked for (None: the
    model's default, whose source the title names)."""
    t = Table(box=box.SIMPLE_HEAD, title=f"Fastest layouts of {s.model.name} on {s.cluster.n_gpus} x "
              f"{s.cluster.gpu.name} ({seq_words(s.model, seq_given, s.seq_len)}, {s.global_batch} sequences per "
              "step)",
              title_justify="left")
    for c in ("#", "layout", "engine", "s/step", "tokens/s", "MFU", "memory", "why slower"):
        t.add_column(c, justify="right" if c in ("#", "s/step", "tokens/s", "MFU", "memory") else "left")
    for i, r in enumerate(s.ranked, 1):
        t.add_row(str(i), r.layout.label(), r.layout.engine().value, f"{r.time.step_s:.3g}",
                  format_tokens_per_s(r.time.tokens_per_s), f"{r.time.mfu:.1%}", format_bytes(r.memory.total), r.why or "fastest")
    from ..planner.options import PLAN_MEMORY_HEADROOM

    rej = ", ".join(f"{v} for {k}" for k, v in s.rejected.items()) or "none"
    note = Text(f"{s.n_candidates} candidates, {s.n_timed} splits that fit with {PLAN_MEMORY_HEADROOM:.0%} of the "
                f"memory kept free timed ({s.n_pruned} more fit but their "
                f"compute alone loses); rejected: {rej}. Best layout in detail:")
    # the best in detail at the title's sequence: passed as given, so the source the title named is not said twice
    return Group(t, note, layout_report(s.best.time, s.best.memory, best_margin, s.seq_len))


def layout_step(cfg, setup, gpu, *, tp, pp, interleave, cp, ep, sequence_parallel, search, global_batch,
                network_gbps, sustained, fused_loss, dropout, calibration):
    """`flopscalc step` with layout options: refuse what the layout model ignores, then one layout or the search.

    Returns (renderable, JSON-ready dict, the eager note of the layout shown in detail or None: `report.step.eager_note`
    on the busiest rank's kernels, so a Megatron-LM layout, priced with padded shapes, has none).
    """
    from ..layout import cluster_for, layout_memory, layout_time
    from ..layout.search import search_layouts
    from ..layout.stage_cost import MEGATRON_SUSTAINED_FRACTION, rank_estimate
    from ..memory.settings import Optimizer
    from ..perf import StepOptions
    from .step import EAGER_REMEDY_LAYOUT, eager_note

    def eager(lay, opts):  # the kernels of the layout the report details, as its time priced them
        return eager_note(rank_estimate(cfg, lay, gpu, seq, precision=setup.precision, flash=setup.flash,
                                        options=opts, fused_loss=fused_loss, dropout=dropout), EAGER_REMEDY_LAYOUT)

    if calibration is not None:
        raise UsageError("--calibration profiles one device's step; the layout model (--tp/--pp/--cp/--ep/--search) "
                         "uses the sourced factors; drop one of the two")
    if setup.offload_optimizer:
        raise UsageError("--offload is not modelled with parallel layouts; drop it (ZeRO shards the optimizer instead)")
    if setup.optimizer is not Optimizer.adamw:
        raise UsageError(f"parallel layouts are modelled with AdamW only, got --optimizer {setup.optimizer.value}")
    if setup.precision.value not in ("bf16-mixed", "fp16-mixed"):
        raise UsageError(f"parallel layouts are modelled in mixed precision (bf16-mixed, fp16-mixed), got "
                         f"{setup.precision.value}")
    small = [f"--{n} {v}" for n, v in (("tp", tp), ("pp", pp), ("interleave", interleave), ("cp", cp), ("ep", ep),
                                       ("global-batch", global_batch)) if v is not None and v < 1]
    if small:  # `tp or 1` below would read 0 as "not split"
        raise UsageError(f"{', '.join(small)}: a layout size is a whole number of at least 1 (1 = not split), "
                         "e.g. --tp 2")
    from ..perf.fabric import check_network_gbps

    check_network_gbps(network_gbps, setup.n_gpus)  # `plan --network-gbps` refuses the same
    seq = setup.seq_len or default_train_seq(cfg)
    cluster = cluster_for(gpu, setup.n_gpus, network_gbps=network_gbps)
    if search:
        given = [f"--{n}" for n, v in (("tp", tp), ("pp", pp), ("interleave", interleave), ("cp", cp), ("ep", ep))
                 if v is not None] + (["--sequence-parallel"] if sequence_parallel else [])
        if given:
            raise UsageError(f"--search chooses {', '.join(given)} itself; drop them or drop --search")
        # no --sustained: None, so each layout is priced at its own engine's fraction, as the explicit path below
        opts = StepOptions(sustained_fraction=sustained) if sustained else None
        batch = global_batch or setup.n_gpus * setup.micro_batch * setup.grad_accum
        from ..planner.options import usable_bytes

        # a layout to run keeps the plan's margin free, so the search ranks what `plan` would choose from
        limit = usable_bytes(gpu.memory_bytes)
        try:
            result = search_layouts(cfg, cluster, seq, batch, precision=setup.precision, flash=setup.flash,
                                    options=opts, fused_loss=fused_loss, dropout=dropout, memory_limit_bytes=limit)
        except DomainError as err:  # suggest only what was checked to fit (planner.nofit)
            from ..planner.nofit import search_no_fit_hint

            raise DomainError(f"{err}; {search_no_fit_hint(cfg, gpu, setup.n_gpus, seq, setup.precision, batch)}"
                              ) from None
        margins = [layout_margin_note(r.time, r.memory) for r in result.ranked]  # once each, for both faces
        return (search_report(result, margins[0], setup.seq_len),
                {**search_dict(result, margins), "seq_len_source": seq_label(cfg, setup.seq_len)},
                eager(result.best.layout, opts))
    if global_batch is not None:
        raise UsageError("--global-batch sizes the --search; an explicit layout takes --micro-batch and --grad-accum "
                         "(micro-batches per pipeline)")
    if setup.n_gpus % ((tp or 1) * (pp or 1) * (cp or 1)):
        # the model's refusal before the GPU count's: no --n-gpus helps a split the model cannot take (--pp 100 on
        # 80 layers was told to try --n-gpus 100)
        # (ZeRO stage 0: this stand-in has no data parallelism yet, and ZeRO over one rank is refused)
        Layout(tp=tp or 1, pp=pp or 1, cp=cp or 1, interleave=interleave or 1, sequence_parallel=sequence_parallel,
               zero_stage=0, micro_batch=setup.micro_batch, n_micro=setup.grad_accum,
               recompute=setup.recompute).check_model(cfg, seq)
    lay = explicit_layout(setup.n_gpus, tp or 1, pp or 1, cp or 1, ep or 1, interleave or 1, sequence_parallel,
                          setup.zero_stage, setup.micro_batch, setup.grad_accum, setup.recompute)
    megatron = lay.engine().value.startswith("Megatron")
    opts = StepOptions(sustained_fraction=sustained or (MEGATRON_SUSTAINED_FRACTION if megatron else 0.0))
    lt = layout_time(cfg, lay, cluster, seq, precision=setup.precision, flash=setup.flash, options=opts,
                     fused_loss=fused_loss, dropout=dropout)
    mem = layout_memory(cfg, lay, seq, flash=setup.flash, dropout=dropout, fused_loss=fused_loss,
                        **gpu_setup_fields(cluster.gpu))
    margin = layout_margin_note(lt, mem)  # once, for both faces
    return (layout_report(lt, mem, margin, setup.seq_len),
            {**layout_dict(lt, mem, margin), "seq_len_source": seq_label(cfg, setup.seq_len)}, eager(lay, opts))
