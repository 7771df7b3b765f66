"""Renderers for the inference model: `InferenceEstimate` -> a rich report and a JSON-ready dict (base units)."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..perf.inference import InferenceEstimate, cached_tokens, kv_cache_bytes, small_kernels
from ..units import format_bytes, format_count, format_duration, format_rate, format_tokens_per_s, format_usd


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
            ("CUDA context", m.cuda_context_bytes, "")]
    for name, value, note in rows:
        t.add_row(name + (f" ({note})" if note else ""), format_bytes(value), f"{value / m.total_bytes:.1%}")
    t.add_row("total", format_bytes(m.total_bytes), "100.0%", style="bold")
    return t


def _no_batch(e: InferenceEstimate) -> str:
    """Why not even one sequence fits: the weights (with the CUDA context), or one sequence's cache and activations."""
    m = e.memory
    if m.weights_bytes + m.cuda_context_bytes >= e.gpu.memory_bytes:
        smaller = {"int4": "", "int8": "int4", "fp8": "int4"}.get(e.setup.weights.value, "int8 or int4")
        return ("none: the weights alone do not fit; "
                + (f"try --weights {smaller}" if smaller else "a GPU with more memory is needed"))
    return (f"none at {e.setup.seq_tokens:,} tokens per sequence: the weights fit, one sequence's KV cache and "
            "activations do not fit beside them; shorten --context or --gen")


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
                        f"{e.setup.seq_tokens:,} tokens per sequence is past the trained context "
                        f"({e.model.block_size:,}): time and memory are priced, but the model was not trained to "
                        "read that far, and its quality there is not predicted")
    if e.usd_per_million_tokens is None:
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
    return Group(Text(_settings_line(e)), _time_table(e), _memory_table(e), summary, note)


def infer_dict(e: InferenceEstimate) -> dict:
    """Everything `flopscalc infer --json` prints, in base units (bytes, seconds, tokens/s, USD)."""
    s, m = e.setup, e.memory
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
        "prefill_s": e.prefill_s,
        "decode_s_per_token": e.decode_s_per_token,
        "tokens_per_s": e.tokens_per_s,
        "decode_tokens_per_s": e.decode_tokens_per_s,
        "tokens_per_s_per_sequence": e.tokens_per_s_per_sequence,
        "prefill_tokens_per_s": e.prefill_tokens_per_s,
        "decode_step_seconds_by_class": e.decode_class_seconds(),
        "usd_per_gpu_hour": s.usd_per_gpu_hour,
        "usd_per_million_tokens": e.usd_per_million_tokens,
        "gemm_bandwidth_fraction": s.gemm_bandwidth_fraction,
        "gemm_peak_fraction": e.device.gemm_peak_fraction,
        "device_source": e.device.source,
    }
