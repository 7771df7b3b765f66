"""Renderers for the memory estimator: `MemoryAnswer` -> rich renderables and a JSON-ready dict (bytes)."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..memory import COMPONENTS, MemoryAnswer
from ..memory.estimate import MemoryBreakdown
from ..memory.margin import margin_note
from ..memory.workspace import CUDA_RUNTIME_KEYS
from ..model import count_params
from ..units import GIB, format_bytes, format_count, format_gib_number
from .common import assumptions_table, seq_label, seq_words

ACTIVATION_LABELS = {
    "embedding": "ids (+ RoPE cos/sin where the model rotates)",
    "layernorm": "norm inputs + statistics (LayerNorm or RMSNorm)",
    "attention_input": "QKV projection input",
    "qkv": "Q, K, V",
    "attention_core": "attention core (scores or logsumexp)",
    "attention_proj_input": "attention output (projection input)",
    "mlp": "MLP / experts (inputs, hidden, activation, router)",
    "checkpoints": "block inputs kept by checkpointing",
    "final": "final norm + LM-head input",
    "loss": "loss: log-probabilities (b x s x V; fused: b x s) + targets",
}


def _settings_line(b: MemoryBreakdown) -> str:
    s = b.setup
    parts = [f"micro-batch {s.micro_batch}", seq_words(b.model, s.seq_len, b.seq_len),
             f"gradient accumulation {s.grad_accum}", s.precision.value, s.optimizer.value,
             f"recompute {s.recompute.value}", "flash attention" if s.flash else "math attention"]
    if s.n_gpus > 1 or s.zero_stage:
        parts.append(f"{s.n_gpus} GPU(s), ZeRO stage {s.zero_stage}")
    if s.offload_optimizer:
        parts.append("optimizer offloaded to CPU")
    if s.dropout:
        parts.append("dropout")
    if s.fused_loss:
        parts.append("fused cross-entropy")
    if s.low_precision_norm:
        parts.append("16-bit norms")
    return ", ".join(parts)


def breakdown_table(b: MemoryBreakdown) -> Table:
    """Components of the peak per GPU, activations split into their parts (GiB)."""
    comps = b.component_bytes()
    peak = b.peak_bytes
    t = Table(title="Memory per GPU at the peak of a training step", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("component")
    t.add_column("GiB", justify="right")
    t.add_column("share", justify="right")
    t.add_column("how it is counted", style="dim")
    for key, label, source in COMPONENTS:
        v = comps[key]
        if v == 0 and key in ("master_weights", "weight_copies", "comm_buckets", "not_concurrent"):
            continue
        if not b.setup.cuda_runtime and key in CUDA_RUNTIME_KEYS:  # none without the CUDA runtime (a note says so)
            continue
        t.add_row(label, format_gib_number(v), f"{v / peak:.1%}", source)
        if key == "activations":
            for sub, sv in b.activations.as_dict().items():
                if sv:
                    t.add_row(f"  {ACTIVATION_LABELS[sub]}", format_gib_number(sv), f"{sv / peak:.1%}", "", style="dim")
    t.add_row("[bold]peak[/]", f"[bold]{format_gib_number(peak)}[/]", "100%", "")
    return t


def memory_report(a: MemoryAnswer) -> Group:
    """The whole answer: what fills memory, whether it fits, the largest micro-batch, ranked fixes."""
    b, fit = a.breakdown, a.fit
    cfg = b.model
    head = Text.from_markup(f"[bold]{cfg.name}[/] ({format_count(count_params(cfg).total)} parameters, "
                            f"{cfg.n_layer} layers, width {cfg.n_embd}) on [bold]{fit.gpu.name}[/] "
                            f"({fit.capacity_bytes / GIB:.1f} GiB)", emoji=False)
    parts = [head, Text(_settings_line(b), style="dim"), Text(), breakdown_table(b)]
    if b.cpu_offload_bytes:
        parts.append(Text(f"CPU memory for the offloaded optimizer: {format_bytes(b.cpu_offload_bytes)}"))
    if fit.fits:
        verdict = Text.from_markup(f"[bold green]fits[/]: {format_gib_number(fit.required_bytes)} of "
                                   f"{format_gib_number(fit.capacity_bytes)} GiB, {format_gib_number(fit.headroom_bytes)} GiB "
                                   f"({fit.headroom_bytes / fit.capacity_bytes:.0%}) headroom", emoji=False)
    else:
        # with --headroom the bar is the usable share, which a peak can pass while still below the capacity
        usable = (f" usable of the {format_gib_number(fit.capacity_bytes)} GiB" if fit.min_headroom_fraction else "")
        verdict = Text.from_markup(f"[bold red]does not fit[/]: needs {format_gib_number(fit.required_bytes)} GiB, "
                                   f"{format_gib_number(fit.required_bytes - fit.usable_bytes)} GiB more than the "
                                   f"{format_gib_number(fit.usable_bytes)} GiB{usable} of {fit.gpu.name}", emoji=False)
    parts += [verdict]
    if fit.min_headroom_fraction:
        parts.append(Text(f"(keeping {fit.min_headroom_fraction:.0%} of the GPU free)", style="dim"))
    near = _margin_note(a) if fit.fits else None
    if near:
        parts.append(Text(f"note: {near}", style="yellow"))
    mb = a.max_micro_batch
    parts.append(Text(f"largest micro-batch that fits with these settings: {mb}" if mb else
                      "not even micro-batch 1 fits with these settings"))
    adv = a.advice
    if not adv.fits_already:
        if adv.fixes:
            fixes = Table(title="Smallest changes that make it fit (least disruptive first)", title_justify="left",
                          box=box.SIMPLE_HEAD)
            fixes.add_column("#", justify="right")
            fixes.add_column("changes")
            fixes.add_column("peak", justify="right")
            for i, f in enumerate(adv.fixes, 1):
                fixes.add_row(str(i), " + ".join(f.changes),
                              f"{format_gib_number(f.peak_bytes)} of {format_gib_number(f.capacity_bytes)} GiB")
            parts += [Text(), fixes]
        else:
            parts += [Text(), Text(adv.reason or "", style="bold")]
    if b.warnings:
        parts.append(Text())
        parts += [Text(f"warning: {w}", style="yellow") for w in b.warnings]
    notes = assumptions_table(b.assumptions)
    parts += [Text(), notes]
    return Group(*parts)


def _setup_dict(b: MemoryBreakdown) -> dict:
    s = b.setup
    return {
        "micro_batch": s.micro_batch, "seq_len": b.seq_len, "seq_len_source": seq_label(b.model, s.seq_len),
        "grad_accum": s.grad_accum, "precision": s.precision.value,
        "optimizer": s.optimizer.value, "recompute": s.recompute.value, "flash": s.flash, "n_gpus": s.n_gpus,
        "zero_stage": s.zero_stage, "offload_optimizer": s.offload_optimizer, "device": s.device.value,
        "cuda_context_bytes": s.cuda_context_bytes, "allocator_overhead_fraction": s.allocator_overhead_fraction,
        "gpu_architecture": s.gpu_architecture, "cuda_runtime": s.cuda_runtime,
    }


def breakdown_dict(b: MemoryBreakdown) -> dict:
    """A breakdown in bytes, JSON-ready."""
    return {
        "model": b.model.name, "n_params": b.n_params, "setup": _setup_dict(b),
        "components_bytes": b.component_bytes(), "activations_bytes": b.activations.as_dict(),
        "logits_bytes": b.logits_bytes, "loss_transient_bytes": b.loss_transient_bytes,
        "head_gradient_bytes": b.head_gradient_bytes,
        "model_states_bytes": b.model_states_bytes, "allocated_peak_bytes": b.allocated_peak_bytes,
        "peak_bytes": b.peak_bytes, "cpu_offload_bytes": b.cpu_offload_bytes, "warnings": list(b.warnings),
        "assumptions": [{"name": x.name, "value": x.value, "source": x.source} for x in b.assumptions],
    }


def _margin_note(a: MemoryAnswer) -> str | None:
    """`memory.margin.margin_note` of the answer's fit: a "fits" closer to the edge than the measured error."""
    return margin_note(a.fit.required_bytes, a.fit.capacity_bytes, a.breakdown.setup.device)


def memory_dict(a: MemoryAnswer) -> dict:
    """The same numbers as `memory_report`, in bytes."""
    adv = a.advice
    return {
        **breakdown_dict(a.breakdown),
        "gpu": a.fit.gpu.key, "gpu_name": a.fit.gpu.name, "capacity_bytes": a.fit.capacity_bytes,
        "fits": a.fit.fits, "headroom_bytes": a.fit.headroom_bytes,
        "min_headroom_fraction": a.fit.min_headroom_fraction, "max_micro_batch": a.max_micro_batch,
        "margin_note": _margin_note(a) if a.fit.fits else None,
        "fixes": [{"changes": list(f.changes), "cost": f.cost, "peak_bytes": f.peak_bytes,
                   "setup": _setup_dict(f.breakdown)} for f in adv.fixes],
        "no_fix_reason": adv.reason,
    }
