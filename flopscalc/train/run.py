"""`flopscalc train` end to end: data, model, resume, logging, live progress, summary (for the CLI).

Works the same in one process and under torchrun (every rank runs this; rank 0 logs, prints and saves).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import write_text_atomic
from ..errors import DomainError, UsageError
from ..model import ModelConfig, count_params, with_fields_named
from .bench import device_name, free_device_memory, is_out_of_memory, out_of_memory, resolve_peak
from .config import TrainConfig, choose_threads
from .data import Batches, find_split_files, read_tokens, synthetic_tokens
from .distributed import destroy_process_group, dist_info_from_env
from .metrics import MetricsLog
from .render import LiveProgress
from .trainer import Trainer, peak_precision, resolve_precision

# Synthetic data: enough random tokens for any run to wrap around rarely (tokens).
SYNTHETIC_TOKENS = 1 << 22


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked of `flopscalc train` beyond the `TrainConfig`."""

    config: TrainConfig
    data_dir: str | None  # nanoGPT / llm.c folder; None means synthetic tokens
    checkpoint: str | None = None
    resume: bool = False
    metrics_log: str | None = None
    gpu: str | None = None
    peak_tflops: float | None = None
    gpu_csv: tuple = ()
    progress: bool = True
    stop_after: int | None = None  # stop after this many optimizer steps; the schedule still spans max_steps
    settings: dict | None = None  # --from-plan: the settings and changes (`PlanRun.settings`), reported and saved
    settings_path: str | None = None  # where to write ``settings`` (JSON) before training starts
    new_schedule: bool = False  # with resume: follow this config's schedule from the checkpoint's step
    n_threads: int | None = None  # torch intra-op threads (--threads); None: `config.choose_threads`'s default


def data_vocab_size(data_dir: str | None) -> int | None:
    """The vocabulary size recorded in a data folder's ``meta.json`` (None if there is none)."""
    if data_dir is None:
        return None
    return find_split_files(data_dir)[2]


def model_with_vocab(model: ModelConfig, data_dir: str | None, vocab_size: int | None) -> ModelConfig:
    """The model resized to the data's vocabulary: ``--vocab-size`` first, then ``meta.json``."""
    vocab = vocab_size or data_vocab_size(data_dir)
    return with_fields_named(model, vocab_size=vocab or None)


def run_training(req: TrainRequest) -> dict:
    """Train as asked; returns the summary the CLI renders (plain numbers and strings)."""
    cfg, info = req.config, dist_info_from_env()
    if req.resume and not req.checkpoint:
        raise UsageError("--resume needs --checkpoint PATH (the file to continue from)")
    if req.new_schedule and not req.resume:
        raise UsageError("--new-schedule changes the schedule a --resume continues on; give --resume and "
                         "--checkpoint too, or drop it")
    if req.data_dir is None:
        train_tokens = synthetic_tokens(SYNTHETIC_TOKENS, cfg.model.vocab_size, cfg.seed)
        val_tokens = synthetic_tokens(SYNTHETIC_TOKENS // 8, cfg.model.vocab_size, cfg.seed + 1)
        names = ("synthetic training tokens", "synthetic validation tokens")
    else:
        train_path, val_path, _ = find_split_files(req.data_dir)
        train_tokens, val_tokens = read_tokens(train_path), read_tokens(val_path)
        names = (f"token file {train_path}", f"token file {val_path}")
        # fail before building the model if even one validation batch does not fit
        Batches(val_tokens, cfg.micro_batch, cfg.seq_len, vocab_size=cfg.model.vocab_size,
                world=info.world_size, name=names[1])
    if req.settings_path and req.settings is not None and info.is_main:
        write_text_atomic(req.settings_path, json.dumps(req.settings, indent=2) + "\n")
    device, _, peak, notes = resolve_peak(cfg.device, cfg.precision, req.gpu, req.peak_tflops, req.gpu_csv, info)
    # bench's and calibrate's rule (one thread per process on a CPU unless --threads), so that a CPU profile's
    # step times describe this run; torch's own setting is given back after (the CLI may run in a longer process)
    threads = choose_threads(req.n_threads, device.type)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads.n_threads)
    n_threads = torch.get_num_threads()  # what the steps run with
    if threads is not None:
        notes = [*notes, threads.note(n_threads)]
    log = None
    try:
        trainer = Trainer(cfg, train_tokens, val_tokens, checkpoint_path=req.checkpoint, peak_flop_per_s=peak,
                          dist=info, data_names=names)
        if req.resume:
            trainer.resume(req.checkpoint, req.new_schedule)
            notes = [*notes, *([trainer.resume_note] if trainer.resume_note else [])]
        if req.metrics_log and info.is_main:
            log = MetricsLog(req.metrics_log, append=req.resume)
            trainer.callbacks.append(log)
        with LiveProgress(cfg.max_steps, trainer.step, enabled=req.progress and info.is_main) as live:
            trainer.callbacks.append(live)
            result = trainer.train(stop_after=req.stop_after)
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        result = None  # handled below, once the traceback (and the tensors it holds) is gone
    finally:
        if log is not None:
            log.close()
        destroy_process_group()
        torch.set_num_threads(before)
    if result is None:
        # the checkpoint on disk (if any) is the last whole one: checkpoints are only ever replaced atomically
        trainer = None
        free_device_memory(device)
        raise DomainError(out_of_memory(cfg, resolve_precision(cfg.precision, device), device, info.world_size))
    hist = result.history
    return {
        "model": cfg.model.name, "n_params": count_params(cfg.model).total, "seq_len": cfg.seq_len,
        "attn_window": cfg.model.attn_window,  # sliding window W the run trained with (None: full causal)
        # counted on the module the run trained (tied matrices once: parameters() yields a shared tensor once)
        "n_params_measured": sum(p.numel() for p in trainer.raw_model.parameters()),
        "steps_done": result.steps_done, "max_steps": cfg.max_steps, "interrupted": result.interrupted,
        "tokens_seen": result.steps_done * cfg.tokens_per_micro_batch * cfg.grad_accum * info.world_size,
        "final_loss": hist[-1].loss if hist else None, "final_val_loss": result.final_val_loss,
        "val_losses": [[m.step, m.val_loss] for m in hist if m.val_loss is not None],
        "median_tokens_per_s": statistics.median(m.tokens_per_s for m in hist) if hist else None,
        "median_mfu": statistics.median(m.mfu for m in hist) if hist and hist[-1].mfu is not None else None,
        "device": device_name(device), "world_size": info.world_size, "n_cpu_threads": n_threads,
        "precision": peak_precision(trainer.precision, device), "notes": notes,
        "checkpoint": str(result.checkpoint_path) if result.checkpoint_path else None,
        "metrics_log": str(Path(req.metrics_log)) if req.metrics_log else None,
        "is_main": info.is_main,
        **({"from_plan": req.settings} if req.settings is not None else {}),
    }
