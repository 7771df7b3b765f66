"""Rich renderers for the trainer's faces: progress line, run summary, calibration profile. Torch-free."""

from __future__ import annotations

from rich.table import Table

from ..calibration import CalibrationProfile
from ..model import window_cuts
from ..units import format_bytes, format_count, format_rate


def progress_text(m, max_steps: int) -> str:
    """One line for the live display: step, loss, tokens/s, MFU (when known), validation loss."""
    parts = [f"step {m.step}/{max_steps}", f"loss {m.loss:.4f}", f"{format_count(m.tokens_per_s)} tok/s"]
    if m.mfu is not None:
        parts.append(f"MFU {100 * m.mfu:.1f}%")
    if m.val_loss is not None:
        parts.append(f"val {m.val_loss:.4f}")
    return "  ".join(parts)


def train_summary(data: dict) -> Table:
    """The end-of-run table of `flopscalc train` (``data`` is the command's JSON dict)."""
    # the run's notes (the peak MFU is measured against; what a resume changed or could not check,
    # `checkpoint.check_run_settings`): said under the table, as the JSON's "notes" hold them
    t = Table(title="Training run", show_header=False, caption="; ".join(data.get("notes") or ()) or None,
              caption_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    rows = [
        ("model", f"{data['model']} ({format_count(data['n_params'])} parameters{_window(data)})"),
        ("steps", f"{data['steps_done']} of {data['max_steps']}" + (" (interrupted)" if data["interrupted"] else "")),
        ("tokens seen", format_count(data["tokens_seen"])),
        ("last training loss", _f(data["final_loss"])),
        ("last validation loss", _f(data["final_val_loss"])),
        ("throughput (median)", f"{format_count(data['median_tokens_per_s'])} tokens/s"
         if data["median_tokens_per_s"] else "-"),
        ("MFU (median)", f"{100 * data['median_mfu']:.1f}%" if data["median_mfu"] is not None else "- (no peak known)"),
        ("device", f"{data['device']} x {data['world_size']}, {data['precision']}"),
        ("checkpoint", str(data["checkpoint"] or "-")),
        ("metrics log", str(data["metrics_log"] or "-")),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


def _window(data: dict) -> str:
    """', sliding window W' when the run's attention was banded (W below the sequence), else ''."""
    window, seq = data.get("attn_window"), data.get("seq_len")
    return f", attention over a sliding window of {window:,}" if window_cuts(window, seq) else ""


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def profile_table(profile: CalibrationProfile) -> Table:
    """Every measured point of a profile: setup, speed, MFU, memory measured vs predicted."""
    gpu = f" ({profile.gpu_key})" if profile.gpu_key else ""
    t = Table(title=f"Benchmark on {profile.device_name}{gpu}, torch {profile.torch_version}",
              caption="; ".join(profile.notes) or None)
    for col in ("model", "params", "micro-batch", "seq", "compile", "precision", "step time", "tokens/s",
                "achieved", "MFU", "peak memory", "predicted"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for p in profile.points:
        t.add_row(
            p.model.name, format_count(p.n_params), str(p.micro_batch), str(p.seq_len), "on" if p.compiled else "off",
            p.precision, f"{1000 * p.step_time_s:.1f} ms", format_count(p.tokens_per_s),
            format_rate(p.achieved_flop_per_s, 3), "-" if p.mfu is None else f"{100 * p.mfu:.1f}%",
            "-" if p.peak_memory_bytes is None else format_bytes(p.peak_memory_bytes),
            "-" if p.predicted_memory_bytes is None else format_bytes(p.predicted_memory_bytes),
        )
    return t


def prepare_table(data: dict) -> Table:
    t = Table(title="Token files", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    for k in ("train", "val", "meta", "tokenizer", "vocab_size", "n_train_tokens", "n_val_tokens"):
        v = data[k]
        t.add_row(k.replace("_", " "), format_count(v) if k.startswith("n_") else str(v))
    return t


class LiveProgress:
    """A rich progress bar for `flopscalc train` (a `Trainer` callback); silent when not a terminal."""

    def __init__(self, max_steps: int, start_step: int = 0, enabled: bool = True):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.max_steps = max_steps
        self.progress = Progress(BarColumn(), TextColumn("{task.description}"), TimeRemainingColumn(),
                                 console=console, disable=not (enabled and console.is_terminal), transient=False)
        self.task = self.progress.add_task(f"step {start_step}/{max_steps}", total=max_steps, completed=start_step)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, m) -> None:
        self.progress.update(self.task, completed=m.step, description=progress_text(m, self.max_steps))
