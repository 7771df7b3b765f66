"""Checkpoints: atomic writes, safe loads, and everything needed to resume a run exactly.

A checkpoint holds the model shape, the weights, the optimizer state, the step and the settings that fix
the learning-rate schedule and the batch (`run_settings`, checked on resume), the data loader's position and the RNG states of torch, CUDA, numpy and
Python. It is written to a temp file in the same folder, fsynced, then renamed over the old one, so a
crash or a full disk leaves the previous checkpoint whole. It is read with
``torch.load(weights_only=True)``: only tensors and plain containers, never arbitrary pickles.
"""

from __future__ import annotations

import random
from dataclasses import MISSING, asdict, fields, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomic
from ..errors import DomainError, UsageError
from ..model import ModelConfig
from .config import DEFAULT_WARMUP_STEPS, DEFAULT_WARMUP_WORDS, learning_rate_at, warmup_for_run

CHECKPOINT_FORMAT = "flopscalc.checkpoint"
CHECKPOINT_VERSION = 1


def rng_state(device: torch.device | None = None) -> dict:
    """RNG states of torch (CPU, and ``device`` when it is a GPU), numpy's global generator and Python's ``random``.

    Only this process's own GPU: under torchrun each rank drives one device, and touching the others would
    tie the checkpoint to how many GPUs were visible when it was written.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what `rng_state` captured (the GPU's state only when resuming on a GPU)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` (plus format and version tags) to ``path`` atomically; return the path."""
    tagged = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    return write_atomic(path, lambda f: torch.save(tagged, f))


def load_checkpoint(path: str | Path, expect_model: ModelConfig | None = None) -> dict:
    """Read a checkpoint safely; one-line errors name the file (missing, corrupt, other model shape)."""
    path = Path(path)
    if path.is_dir():  # told apart from a missing file, as atomic.check_writable_file does for a fresh run
        inside = sorted(p.name for p in path.glob("*.pt"))[:3]
        found = f" (it holds {', '.join(inside)})" if inside else ""
        raise UsageError(f"checkpoint {path} is a directory{found}; --resume reads a checkpoint file: give the "
                         f"file's path, e.g. {path / (inside[0] if inside else 'ckpt.pt')}")
    if not path.exists():
        raise UsageError(f"checkpoint {path} does not exist; --resume continues from a file a run wrote with "
                         "--checkpoint: check the path, or drop --resume to start afresh")
    if not path.is_file():
        raise UsageError(f"checkpoint {path} is not a regular file (a device, pipe or socket); give a checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a garbled file can fail anywhere in the unpickler (IndexError, ...)
        raise DomainError(f"checkpoint {path} is corrupt or not a flopscalc checkpoint (PyTorch could not read it: "
                          f"{type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DomainError(f"checkpoint {path} is not a flopscalc checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise DomainError(f"checkpoint {path} has version {ckpt.get('version')!r}; this flopscalc reads "
                          f"version {CHECKPOINT_VERSION}")
    if expect_model is not None:
        # a field added to ModelConfig after the checkpoint was written (e.g. rope_theta) has its default there
        saved = shape_of(ModelConfig(**{k: v for k, v in _defaults_of(expect_model).items()})) | ckpt.get(
            "model_config", {})
        want = shape_of(expect_model)
        diff = [f"{k} {saved.get(k)!r} vs {v!r}" for k, v in want.items() if saved.get(k) != v]
        if diff:
            raise UsageError(f"checkpoint {path} is for another model shape ({'; '.join(diff)}, checkpoint "
                             "vs this run); pass the same model options or a fresh --checkpoint path")
    return ckpt


def _defaults_of(cfg: ModelConfig) -> dict:
    """The required fields of ``cfg`` with every other field at its default."""
    return {f.name: getattr(cfg, f.name) for f in fields(ModelConfig) if f.default is MISSING}


def shape_of(cfg: ModelConfig) -> dict:
    """The fields of a model that decide its parameter shapes (the name is only a label, and the pretraining
    sequence length, ``train_seq``, only a default for ``--seq``)."""
    d = asdict(cfg)
    d.pop("name")
    d.pop("train_seq")
    return _plain(d)


def _plain(value):
    """Enums as their values, all the way down: torch.load(weights_only=True) unpickles only plain types."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


# TrainConfig field -> the option that sets it: what a resumed run must repeat to continue "exactly where it
# stopped" (the schedule is a function of the step and these, `config.learning_rate_at`; the data position counts
# batches of micro_batch x seq_len; the optimizer's update uses weight decay and the clip)
SCHEDULE_SETTINGS = {
    "max_steps": "--steps", "learning_rate": "--lr", "min_lr_ratio": "--min-lr-ratio",
    "warmup_steps": "--warmup-steps", "schedule": "schedule", "milestones": "milestones",
}
RESUME_SETTINGS = {
    **SCHEDULE_SETTINGS, "micro_batch": "--micro-batch", "grad_accum": "--grad-accum", "seq_len": "--seq",
    "weight_decay": "--weight-decay", "grad_clip": "--grad-clip",
}


BATCH_SETTINGS = ("micro_batch", "grad_accum")  # compared as their product with the processes (`check_run_settings`)


def run_settings(cfg) -> dict:
    """The schedule and batch settings of a `TrainConfig` that a checkpoint stores (plain values)."""
    return {k: _plain(getattr(cfg, k)) for k in RESUME_SETTINGS}


def check_run_settings(path: str | Path, ckpt: dict, cfg, new_schedule: bool = False, world_size: int = 1
                       ) -> str | None:
    """Refuse resuming ``ckpt`` under other schedule or batch settings than it was written with (one line naming
    each differing option and the checkpoint's value); returns a note, or None.

    The batch is compared as sequences per optimizer step, micro-batch x accumulation x processes (``world_size``
    now, the checkpoint's ``world_size`` then): a checkpoint of two DDP processes at micro-batch 4 resumes in one
    process at micro-batch 8, the same step (see the module docstring).

    ``new_schedule`` (``--new-schedule``): the schedule settings (`SCHEDULE_SETTINGS`) may differ, and the run
    follows this run's schedule from the checkpoint's step on; the note gives the learning rate of the next step
    under both. The batch and optimizer settings may never differ. A checkpoint that stored no settings (written
    before they were stored) resumes as before, unchecked, with a note saying so.
    """
    saved = ckpt.get("run_settings")
    if saved is None:
        if new_schedule:
            raise UsageError(f"checkpoint {path} records no schedule (written by an older flopscalc), so "
                             "--new-schedule has nothing to replace; drop it (the run follows this run's options)")
        return (f"checkpoint {path} does not record its schedule and batch settings (written by an older flopscalc): "
                "resumed with this run's --steps, --lr, --micro-batch, ... unchecked; the learning rate follows "
                "them, so give the ones the checkpoint was trained with")
    now = run_settings(cfg)
    differ = [k for k in RESUME_SETTINGS if k not in BATCH_SETTINGS and k in saved and _same(saved[k]) != _same(now[k])]
    refused = [k for k in differ if not (new_schedule and k in SCHEDULE_SETTINGS)]
    said = [f"{_named(k, now)} (checkpoint: {_said(saved[k])})" for k in refused]
    then_world = int(ckpt.get("world_size", 1))
    if _global_batch(now, world_size) != _global_batch(saved, then_world):
        said.insert(0, f"{_batch_words(now, world_size)} (checkpoint: {_batch_words(saved, then_world)})")
    if said:
        said = ", ".join(said)
        how = ("--new-schedule changes only the schedule" if new_schedule else
               "pass the checkpoint's values, --new-schedule to follow this run's --steps/--lr/--warmup-steps/"
               "--min-lr-ratio from the checkpoint's step on")
        raise UsageError(f"checkpoint {path} was trained with other settings: {said}; a resume continues the same "
                         f"run, so {how}, or start a fresh --checkpoint path")
    if not new_schedule:
        return None
    step = int(ckpt["step"])
    if not differ:
        raise UsageError("--new-schedule changes nothing: this run's schedule is the checkpoint's; drop it")
    if cfg.max_steps <= step:
        raise UsageError(f"--steps {cfg.max_steps} is not past the checkpoint's step {step}: a new schedule has no "
                         f"steps left to run; give --steps above {step}")
    old = replace(cfg, **{k: tuple(tuple(m) for m in saved[k]) if k == "milestones" else saved[k]
                          for k in SCHEDULE_SETTINGS})
    ours = ", ".join(_named(k, now) for k in differ)
    theirs = ", ".join(_named(k, saved) for k in differ)
    return (f"--new-schedule: from step {step + 1} the learning rate follows this run's schedule ({ours}): "
            f"{learning_rate_at(cfg, step):.3g} at step {step + 1}, where the checkpoint's ({theirs}) gives "
            f"{learning_rate_at(old, step):.3g}")


def _global_batch(settings: dict, world_size: int) -> int:
    """Sequences per optimizer step: micro-batch x accumulation x processes."""
    return settings["micro_batch"] * settings["grad_accum"] * world_size


def _batch_words(settings: dict, world_size: int) -> str:
    procs = f" x {world_size} processes" if world_size > 1 else ""
    return (f"--micro-batch {settings['micro_batch']} x --grad-accum {settings['grad_accum']}{procs} = "
            f"{_global_batch(settings, world_size)} sequences per step")


def _same(value):
    """Tuples and lists alike (torch.load gives lists back)."""
    return [_same(v) for v in value] if isinstance(value, (list, tuple)) else value


def _named(key: str, settings: dict) -> str:
    """A setting as the user would read it: its option and value, or, for a warm-up the CLI derived from --steps
    (`config.warmup_for_run` cuts the default to its share of a short run, `DEFAULT_WARMUP_WORDS`), the value
    labelled as that default, so a refusal or note never names a --warmup-steps nobody typed. A typed
    --warmup-steps equal to that cut reads the same, and the label is still true."""
    if key == "warmup_steps":
        default_cut, cut_note = warmup_for_run(DEFAULT_WARMUP_STEPS, settings["max_steps"], given=False)
        if cut_note is not None and settings[key] == default_cut:
            return f"warm-up {settings[key]} ({DEFAULT_WARMUP_WORDS})"
    return f"{RESUME_SETTINGS[key]} {_said(settings[key])}"


def _said(value) -> str:
    return repr(_same(value)) if isinstance(value, (list, tuple, str)) else f"{value:g}" if isinstance(
        value, float) else str(value)
