"""Renderers for the inference model: `InferenceEstimate` -> a rich report and a JSON-ready dict (base units)."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..model.sequence import past_context_warning
from ..perf.inference import InferenceEstimate, InferenceFix, cached_tokens, kv_cache_bytes, small_kernels
from ..units import (
    GIB,
    format_bytes,
    format_count,
    format_duration,
    format_rate,
    format_tokens_per_s,
    format_usd,
)
from .common import unpriced_sentence


def _settings_line(e: InferenceEstimate) -> str:
    s = e.setup
    kv = s.kv.value if s.kv is not None else "16-bit"
    weights = s.weights.value + (f" (group {s.int4_group})" if s.weights.value == "int4" else "")
    return (f"{e.model.name} ({format_count(e.model_params)} parameters, {e.model.family}) on one {e.gpu.name}: "
            f"batch {s.batch}, prompt {s.context:,} tokens, {s.gen:,} generated per sequence, weights {weights}, "
            f"KV cache {kv}, GEMMs at {format_rate(e.peak_flop_per_s)} dense {e.precision.value}")


def _time_table(e: InferenceEstimate) -> Table:
    t = Table(title="Time and throughput", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_column("what it is")
    t.add_row("prefill (time to first token)", format_duration(e.prefill_s),
              f"{e.setup.batch} x {e.setup.context:,} prompt tokens, {format_tokens_per_s(e.prefill_tokens_per_s)} tokens/s")
    t.add_row("time per output token", format_duration(e.decode_s_per_token),
              "one decode step, mean over the generation" if e.n_decode_steps else "the first decode step")
    t.add_row("tokens/s per sequence", f"{e.tokens_per_s_per_sequence:,.1f}", "what one user sees while decoding")
    t.add_row("tokens/s, all sequences, decoding", format_tokens_per_s(e.decode_tokens_per_s), "batch / time per output token")
    t.add_row("tokens/s, all sequences, end to end", format_tokens_per_s(e.tokens_per_s),
              "generated tokens over prefill + decode", style="bold")
    return t


def _memory_table(e: InferenceEstimate) -> Table:
    m = e.memory
    t = Table(title="Memory on the GPU", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("component")
    t.add_column("bytes", justify="right")
    t.add_column("share", justify="right")
    per_token = kv_cache_bytes(e.model, 1, e.setup.kv_bytes_per_element)
    rows = [("weights", m.weights_bytes, ""),
            ("KV cache", m.kv_cache_bytes, (f"{format_bytes(per_token)} per token x {e.setup.batch} x "
                                           f"{cached_tokens(e.model, e.setup.seq_tokens):,} tokens"
                                           + (f" (window {e.model.attn_window:,})" if e.model.attn_window else ""))),
            ("activations (prefill, one layer) + logits", m.activation_bytes, ""),
            ("CUDA context", m.cuda_context_bytes, "")][:None if e.setup.cuda_runtime else -1]  # none counted
    for name, value, note in rows:
        t.add_row(name + (f" ({note})" if note else ""), format_bytes(value), f"{value / m.total_bytes:.1%}")
    t.add_row("total", format_bytes(m.total_bytes), "100.0%", style="bold")
    return t


def _fix_text(f: InferenceFix) -> str:
    """One confirmed change as the options that make it (`perf.inference.fit`)."""
    if f.gpu is not None:
        return f"--gpu {f.gpu.key} ({f.gpu.memory_bytes / GIB:.0f} GiB)" + (
            f" with --weights {f.weights.value}" if f.weights is not None else "")
    if f.context is not None:
        return f"--context {f.context} or less (largest batch {f.max_batch:,}; or a shorter --gen)"
    option = f"--weights {f.weights.value}" if f.weights is not None else f"--kv {f.kv.value}"
    return f"{option} (largest batch {f.max_batch:,})"


def _no_batch(e: InferenceEstimate) -> str:
    """Why not even one sequence fits (the weights with the CUDA context, or one sequence's cache and activations
    beside them), and only the changes the memory engine confirms fit (`InferenceEstimate.fixes`)."""
    m = e.memory
    here = [_fix_text(f) for f in e.fixes if f.gpu is None]
    elsewhere = [_fix_text(f) for f in e.fixes if f.gpu is not None]
    if m.weights_bytes + m.cuda_context_bytes >= e.gpu.memory_bytes:
        context = f" + {format_bytes(m.cuda_context_bytes)} CUDA context" if e.setup.cuda_runtime else ""
        why = (f"none: the weights alone ({format_bytes(m.weights_bytes)}{context}) do not fit in {format_bytes(e.gpu.memory_bytes)}")
        nothing_here = "no smaller weight format fits on this GPU"
    else:
        why = (f"none at {e.setup.seq_tokens:,} tokens per sequence: the weights fit, one sequence's KV cache and "
               "activations do not fit beside them")
        nothing_here = "no shorter prompt, KV or weight format fits on this GPU"
    if here:
        return f"{why}; fits with " + ", or ".join(here)
    if elsewhere:
        return f"{why}; {nothing_here}; one sequence fits on " + ", or ".join(elsewhere)
    return (f"{why}; {nothing_here}, nor on any single GPU in the database (infer models one GPU; more need tensor "
            "parallelism)")


def unpriced_reason(e: InferenceEstimate) -> str | None:
    """Why time, throughput and cost are left out (text and --json alike): the setup does not fit; None when it does
    (`common.unpriced_sentence`)."""
    if e.fits:
        return None
    return unpriced_sentence(e.gpu.name, "batch", e.setup.batch, e.max_batch, "--batch",
                             ("time", "throughput", "cost"), "the largest-batch line says what would fit")


def _past_trained_context(e: InferenceEstimate) -> bool:
    """Whether a sequence (prompt and generation) runs past the context the model was trained at."""
    return e.setup.seq_tokens > e.model.block_size


def infer_report(e: InferenceEstimate) -> Group:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    fits = "fits" if e.fits else "[bold red]does not fit[/]"
    summary.add_row("memory", f"{format_bytes(e.memory.total_bytes)} of {format_bytes(e.gpu.memory_bytes)}: {fits}")
    summary.add_row("largest batch", f"{e.max_batch:,} at {e.setup.seq_tokens:,} tokens per sequence"
                    if e.max_batch else _no_batch(e))
    trained = f" (trained context {e.model.block_size:,})" if e.max_seq_tokens > e.model.block_size else ""
    summary.add_row("longest sequence", f"{e.max_seq_tokens:,} tokens at batch {e.setup.batch}{trained}"
                    if e.max_seq_tokens else f"none at batch {e.setup.batch}")
    if _past_trained_context(e):
        summary.add_row("[bold yellow]warning[/]",
                        past_context_warning(e.setup.seq_tokens, e.model.block_size, time_priced=e.fits))
    unpriced = unpriced_reason(e)
    if unpriced is not None:
        summary.add_row("cost", "not priced: the setup does not fit")
    elif e.usd_per_million_tokens is None:
        summary.add_row("cost", "give --usd-per-gpu-hour for the cost per million tokens")
    else:
        summary.add_row("cost per million generated tokens",
                        f"{format_usd(e.usd_per_million_tokens)} at {format_usd(e.setup.usd_per_gpu_hour)} per "
                        "GPU-hour (prefill time included)")
    note = Text(
        f"Roofline per operation (docs/inference.md): GEMM fraction {e.device.gemm_peak_fraction:g}, achievable "
        f"bandwidth {e.device.mem_bandwidth_fraction:g} of datasheet, kernel floor "
        f"{e.device.kernel_min_s * 1e6:g} us x {len(small_kernels(e.model))} small kernels per layer; "
        + (f"dequantizing GEMMs at {e.setup.gemm_bandwidth_fraction:g} of the bandwidth (fitted); "
           if e.setup.gemm_bandwidth_fraction < 1 else "nothing fitted; ")
        + "one GPU, no tensor parallelism, static batch.", style="dim")
    if unpriced is not None:
        return Group(Text(_settings_line(e)), Text.from_markup(f"[bold]Time and throughput[/]: {unpriced}",
                                                               emoji=False), Text(), _memory_table(e), summary)
    return Group(Text(_settings_line(e)), _time_table(e), _memory_table(e), summary, note)


def infer_dict(e: InferenceEstimate) -> dict:
    """Everything `flopscalc infer --json` prints, in base units (bytes, seconds, tokens/s, USD)."""
    s, m = e.setup, e.memory
    unpriced = unpriced_reason(e)
    return {
        "model": e.model.name,
        "gpu": e.gpu.key,
        "batch": s.batch,
        "context": s.context,
        "gen": s.gen,
        "weights": s.weights.value,
        "kv": s.kv.value if s.kv is not None else "16-bit",
        "precision": e.precision.value,
        "peak_flop_per_s": e.peak_flop_per_s,
        "kv_cache_bytes": m.kv_cache_bytes,
        "kv_cache_bytes_per_token": kv_cache_bytes(e.model, 1, s.kv_bytes_per_element),
        "weights_bytes": m.weights_bytes,
        "activation_bytes": m.activation_bytes,
        "cuda_context_bytes": m.cuda_context_bytes,
        "memory_bytes": m.total_bytes,
        "gpu_memory_bytes": e.gpu.memory_bytes,
        "fits": e.fits,
        "max_batch": e.max_batch,
        "max_seq_tokens": e.max_seq_tokens,
        "past_trained_context": _past_trained_context(e),
        "fixes": [{"weights": f.weights.value if f.weights is not None else None,
                   "kv": f.kv.value if f.kv is not None else None, "context": f.context,
                   "gpu": f.gpu.key if f.gpu is not None else None, "max_batch": f.max_batch,
                   "memory_bytes": f.memory_bytes} for f in e.fixes],
        # time, throughput and cost only for a setup that fits; otherwise null, and unpriced_reason says why
        "unpriced_reason": unpriced,
        **{k: (None if unpriced else v) for k, v in (
            ("prefill_s", e.prefill_s),
            ("decode_s_per_token", e.decode_s_per_token),
            ("tokens_per_s", e.tokens_per_s),
            ("decode_tokens_per_s", e.decode_tokens_per_s),
            ("tokens_per_s_per_sequence", e.tokens_per_s_per_sequence),
            ("prefill_tokens_per_s", e.prefill_tokens_per_s),
            ("decode_step_seconds_by_class", e.decode_class_seconds()),
            ("usd_per_million_tokens", e.usd_per_million_tokens))},
        "usd_per_gpu_hour": s.usd_per_gpu_hour,
        "gemm_bandwidth_fraction": s.gemm_bandwidth_fraction,
        "gemm_peak_fraction": e.device.gemm_peak_fraction,
        "device_source": e.device.source,
    }
