"""Renderers for fine-tuning plans: `FinetunePlan` -> a rich Group and a JSON-ready dict (bytes, seconds)."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..finetune.adapters import Method
from ..finetune.assumptions import compute_dtype, quant_label
from ..finetune.plan import FinetunePlan
from ..memory.margin import margin_note
from ..model import count_params, past_context_warning
from ..units import GIB, format_count, format_duration, format_flops, format_gib_number
from .common import assumptions_table, unpriced_sentence

ACTIVATION_LABELS = {
    "norms": "norm inputs (fp32) + statistics",
    "adapter_inputs": "adapter inputs (saved by lora_A)",
    "adapter_hidden": "adapter r-wide intermediates (saved by lora_B)",
    "attention": "RoPE cos/sin, Q, K, V, attention output, logsumexp",
    "mlp": "MLP gate / up / activation",
    "checkpoints": "layer inputs kept by checkpointing",
    "loss": "log-probabilities (b x s x V) + targets",
}


def _setup_line(p: FinetunePlan) -> str:
    s = p.setup
    parts = [s.method.value]
    if s.method is not Method.full:
        parts.append(f"rank {s.rank} on {','.join(s.targets)}")
    if s.method is Method.qlora:
        parts.append(quant_label(s))
    if s.bf16_adapters:
        parts.append("bf16 adapters" + (", embedding and LM head" if s.method is Method.qlora else "") + " (qlora.py)")
    dtype = compute_dtype(s, p.precision)
    fallback = " (no bf16 rate on this GPU)" if dtype == "fp16" else ""
    parts += [f"micro-batch {s.micro_batch}", f"sequence {s.seq_len}", s.optimizer.value + (" (paged)" if s.paged else ""),
              "gradient checkpointing" if s.recompute.value == "full" else "no checkpointing",
              f"{dtype} mixed precision{fallback}" if dtype != "fp32" else "fp32"]
    return ", ".join(parts)


def methods_sentence(p: FinetunePlan) -> str:
    """The methods tried with the other settings as given, the first that fits, and those skipped and why."""
    tried = [t.method.value for t in p.method_trials if t.skipped is None]
    skipped = [f"{t.method.value} skipped: {t.skipped}" for t in p.method_trials if t.skipped is not None]
    first = p.cheapest_method
    return ((f"first method that fits with these settings: {first.value}" if first is not None else
             "no method fits with these settings") + f" (tried {', '.join(tried) or 'none'}"
            + "".join(f"; {s}" for s in skipped) + ")")


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def steps_sentence(p: FinetunePlan) -> str:
    """The rule `steps.run_steps` applies, with its exact numbers: sequences an epoch -> micro-batches -> optimizer
    steps an epoch -> optimizer steps."""
    r, s = p.run, p.setup
    rounded = p.n_epochs * r.n_steps_per_epoch != r.n_optimizer_steps
    return (f"steps: {_count(r.n_sequences_per_epoch, 'sequence')} an epoch -> ceil({r.n_sequences_per_epoch:,} / "
            f"micro-batch {s.micro_batch:,}) = {_count(r.n_micro_batches_per_epoch, 'micro-batch', 'micro-batches')} "
            f"-> max(ceil({r.n_micro_batches_per_epoch:,} / {s.grad_accum:,} accumulated), 1) = "
            f"{_count(r.n_steps_per_epoch, 'optimizer step')} an epoch x {p.n_epochs:g} "
            f"epoch{'' if p.n_epochs == 1 else 's'}" + (", rounded up," if rounded else "")
            + f" = {_count(r.n_optimizer_steps, 'optimizer step')}"
            + (" (the optimizer update and paging once per step)" if s.paged else " (the optimizer update once per step)"))


def breakdown_table(p: FinetunePlan) -> Table:
    """Components of the peak (GiB), activations split into their parts."""
    mem = p.memory
    peak = mem.peak_bytes
    t = Table(title="Memory at the peak of a fine-tuning step", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("component")
    t.add_column("GiB", justify="right")
    t.add_column("share", justify="right")
    for key, label, v in mem.components:
        if v == 0 and key not in ("activations", "gradients"):
            continue
        t.add_row(label, format_gib_number(v), f"{v / peak:.1%}")
        if key == "activations" and mem.setup.method is not Method.full:
            from ..finetune.activations import lora_activation_bytes

            for sub, sv in lora_activation_bytes(p.model, mem.setup).as_dict().items():
                if sv:
                    t.add_row(f"  {ACTIVATION_LABELS[sub]}", format_gib_number(sv), f"{sv / peak:.1%}", style="dim")
    t.add_row("[bold]peak[/]", f"[bold]{format_gib_number(peak)}[/]", "100%")
    return t


def unpriced_reason(p: FinetunePlan) -> str | None:
    """Why the time is left out (text and --json alike): the setup does not fit; None when it does
    (`common.unpriced_sentence`, as infer says it)."""
    if p.fits:
        return None
    # with fixes listed, they are the advice (a smaller micro-batch there keeps the sequences per step with
    # accumulation); a second "give --micro-batch N" here, at this accumulation, would be another answer
    return unpriced_sentence(p.gpu.name, "micro-batch", p.setup.micro_batch, p.max_micro_batch, "--micro-batch",
                             ("time",), "the changes listed below say what would fit" if p.fixes else
                             "nothing tried fits", advise_largest=not p.fixes)


def finetune_report(p: FinetunePlan) -> Group:
    """Fit, breakdown, largest micro-batch and sequence, time, ranked fixes, assumptions."""
    mem, cfg = p.memory, p.model
    head = Text.from_markup(
        f"[bold]{cfg.name}[/] ({format_count(count_params(cfg).total)} parameters, {format_count(mem.n_trainable)} "
        "trainable) "
        f"on [bold]{p.gpu.name}[/] ({p.gpu.memory_bytes / GIB:.1f} GiB)", emoji=False)
    parts = [head, Text(_setup_line(p), style="dim"), Text(), breakdown_table(p)]
    if p.fits:
        parts.append(Text.from_markup(f"[bold green]fits[/]: {format_gib_number(mem.required_bytes())} of "
                                      f"{format_gib_number(p.usable_bytes)} GiB usable", emoji=False))
        near = margin_note(mem.required_bytes(), p.gpu.memory_bytes, p.setup.device)
        if near:
            parts.append(Text(f"note: {near}", style="yellow"))
    else:
        parts.append(Text.from_markup(
            f"[bold red]does not fit[/]: needs {format_gib_number(mem.required_bytes())} GiB, "
            f"{format_gib_number(mem.required_bytes() - p.usable_bytes)} GiB more than {format_gib_number(p.usable_bytes)} GiB usable; "
            f"weights, gradients and optimizer state alone take {format_gib_number(mem.required_states_bytes)} GiB"
            + (" on the GPU (the paged optimizer state can spill)" if p.setup.paged else "")
            + ", which no batch or sequence change shrinks", emoji=False))
    ctx = cfg.block_size
    parts.append(Text(f"largest micro-batch at sequence {p.setup.seq_len}: {p.max_micro_batch}; "
                      f"longest sequence at micro-batch 1: "
                      + (f"{p.max_seq_len} tokens" if p.max_seq_len else "none fits")
                      + (f" (uncapped; past the trained context {ctx})"
                         if p.max_seq_len > ctx else f" (context {ctx})")))
    if p.setup.seq_len > ctx:
        parts.append(Text.from_markup("[bold yellow]warning[/]: "
                                      + past_context_warning(p.setup.seq_len, ctx, time_priced=p.fits), emoji=False))
    parts.append(Text(methods_sentence(p)))
    if not p.fits:
        parts.append(Text(unpriced_reason(p)))
    else:
        pad = "packed" if p.packing else f"padded, {p.padding_fraction:.0%} padding"
        if round(p.roundup_tokens):  # apart from the padding: what whole sequences and whole steps add
            pad += (f"; {format_count(round(p.roundup_tokens))} of them past the data, filling the last sequence "
                    "and step out to whole ones")
        parts.append(Text(
            f"time: {format_duration(p.time_s)} for {format_count(p.n_dataset_tokens)} tokens x {p.n_epochs:g} "
            f"epochs ({format_count(p.processed_tokens)} processed, {pad}; {format_flops(p.total_flops)}): compute "
            f"{format_duration(p.compute_s)}" + (f", dequantization {format_duration(p.dequant_s)}" if p.dequant_s
                                                 else "")
            + (f", paging {format_duration(p.spill_s)} (2 x {format_gib_number(p.spill_bytes)} GiB per optimizer step "
               f"over {p.paging_link} at {p.paging_link_bytes_per_s / 1e9:g} GB/s)" if p.spill_s else "")
            + f" [{p.time_model} time model]"))
        parts.append(Text(steps_sentence(p)))
    if p.fixes:
        t = Table(title="Changes that make it fit (least disruptive first)", title_justify="left",
                  box=box.SIMPLE_HEAD)
        t.add_column("#", justify="right")
        t.add_column("changes")
        t.add_column("on the GPU", justify="right")
        for i, f in enumerate(p.fixes, 1):  # what must be on the GPU: a paged optimizer's spill is not
            t.add_row(str(i), " + ".join(f.changes),
                      f"{format_gib_number(f.required_bytes)} of {format_gib_number(f.capacity_bytes)} GiB")
        parts += [Text(), t]
    elif not p.fits:
        parts += [Text(), Text("nothing tried fits: not QLoRA, bf16 adapters, a lower rank, checkpointing, a paged "
                               "or 8-bit optimizer, shorter sequences, nor any GPU in the database", style="bold")]
    parts += [Text(f"note: {n}", style="yellow") for n in p.notes]
    parts += [Text(), assumptions_table(p.assumptions)]
    return Group(*parts)


def finetune_dict(p: FinetunePlan) -> dict:
    """The same numbers as `finetune_report`, in bytes, tokens, FLOPs and seconds."""
    s, mem = p.setup, p.memory
    adapters, quantized = s.method is not Method.full, s.method is Method.qlora
    unpriced = unpriced_reason(p)
    return {
        "model": p.model.name, "gpu": p.gpu.key, "capacity_bytes": p.gpu.memory_bytes, "usable_bytes": p.usable_bytes,
        # null where a field does not apply (the CLI refuses it there): adapters only for LoRA and QLoRA, the
        # quantization only for QLoRA
        "setup": {"method": s.method.value,
                  "rank": s.rank if adapters else None, "targets": list(s.targets) if adapters else None,
                  "quant": s.quant.value if quantized else None, "double_quant": s.double_quant if quantized else None,
                  "micro_batch": s.micro_batch, "grad_accum": s.grad_accum,
                  "seq_len": s.seq_len,
                  "optimizer": s.optimizer.value, "paged": s.paged, "recompute": s.recompute.value,
                  "compute": s.compute.value},
        "n_trainable_params": mem.n_trainable, "n_params": mem.n_total,
        "components_bytes": mem.component_bytes(), "peak_bytes": mem.peak_bytes,
        "required_bytes": mem.required_bytes(), "states_bytes": mem.states_bytes,
        "required_states_bytes": mem.required_states_bytes, "fits": p.fits,
        "spill_bytes": p.spill_bytes, "paging_link": p.paging_link,
        "paging_link_bytes_per_s": p.paging_link_bytes_per_s, "n_optimizer_steps": p.n_optimizer_steps,
        "n_sequences": p.n_sequences, "n_sequences_per_epoch": p.run.n_sequences_per_epoch,
        "n_micro_batches_per_epoch": p.run.n_micro_batches_per_epoch,
        "n_optimizer_steps_per_epoch": p.run.n_steps_per_epoch,
        "max_micro_batch": p.max_micro_batch, "max_seq_len": p.max_seq_len,
        "cheapest_method": p.cheapest_method.value if p.cheapest_method else None,
        "method_trials": [{"method": t.method.value, "fits": t.fits, "skipped": t.skipped} for t in p.method_trials],
        "n_dataset_tokens": p.n_dataset_tokens, "n_epochs": p.n_epochs, "packing": p.packing,
        "mean_sequence_tokens": p.mean_sequence_tokens, "padding_fraction": p.padding_fraction,
        "roundup_tokens": p.roundup_tokens,
        "processed_tokens": p.processed_tokens,
        "flops_per_token": {"base_forward": p.flops.base_forward, "adapter_forward": p.flops.adapter_forward,
                            "backward": p.flops.backward, "recompute": p.flops.recompute},
        "total_flops": p.total_flops, "efficiency": p.efficiency, "peak_flop_per_s": p.peak_flop_per_s,
        "time_model": p.time_model,
        # time only for a setup that fits; otherwise null, and unpriced_reason says why (as infer --json)
        "unpriced_reason": unpriced,
        **{k: (None if unpriced else v) for k, v in (
            ("compute_s", p.compute_s), ("dequant_s", p.dequant_s), ("spill_s", p.spill_s), ("time_s", p.time_s))},
        "fixes": [{"changes": list(f.changes), "cost": f.cost, "peak_bytes": f.peak_bytes,
                   "required_bytes": f.required_bytes, "capacity_bytes": f.capacity_bytes, "gpu": f.gpu}
                  for f in p.fixes],
        "notes": list(p.notes),
        "warnings": ([past_context_warning(s.seq_len, p.model.block_size, time_priced=p.fits)]
                     if s.seq_len > p.model.block_size else []),
        "assumptions": [{"name": a.name, "value": a.value, "source": a.source} for a in p.assumptions],
    }

