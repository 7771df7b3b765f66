"""Checkpoints: atomic writes, safe loads, and everything needed to resume a run exactly.

A checkpoint holds the model shape, the weights, the optimizer state, the step (which fixes the
learning-rate schedule), the data loader's position and the RNG states of torch, CUDA, numpy and
Python. It is written to a temp file in the same folder, fsynced, then renamed over the old one, so a
crash or a full disk leaves the previous checkpoint whole. It is read with
``torch.load(weights_only=True)``: only tensors and plain containers, never arbitrary pickles.
"""

from __future__ import annotations

import random
from dataclasses import MISSING, asdict, fields
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomic
from ..errors import DomainError, UsageError
from ..model import ModelConfig

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
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
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
