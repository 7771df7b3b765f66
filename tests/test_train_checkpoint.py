"""Checkpoints: a failed write leaves the old one whole; bad files and other shapes fail with one line."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flopscalc.errors import DomainError, UsageError
from flopscalc.model import ModelConfig
from flopscalc.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, shape_of

CFG = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32)


def _payload(step):
    return {"model_config": shape_of(CFG), "step": step, "weights": torch.full((4,), float(step))}


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _payload(1))
    real_save = torch.save

    def half_then_fail(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(10)  # a partial file on disk, then the "crash"
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="no space"):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    ck = load_checkpoint(path, expect_model=CFG)
    assert ck["step"] == 1 and torch.equal(ck["weights"], torch.full((4,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DomainError, match=r"checkpoint .*bad\.pt is corrupt"):
        load_checkpoint(bad)
    with pytest.raises(UsageError, match=r"checkpoint .*none\.pt does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    other = tmp_path / "other.pt"
    torch.save({"some": torch.zeros(1)}, other)
    with pytest.raises(DomainError, match="not a flopscalc checkpoint"):
        load_checkpoint(other)


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "flopscalc.checkpoint", "version": 1, "x": Evil()}, path)
    with pytest.raises(DomainError, match="corrupt or not a flopscalc checkpoint"):
        load_checkpoint(path)  # weights_only=True: no code from the file runs


def test_other_model_shape_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", _payload(3))
    with pytest.raises(UsageError, match=r"another model shape \(n_embd 16 vs 32"):
        load_checkpoint(path, expect_model=CFG.with_(n_embd=32))


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(path)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_a_checkpoint_from_before_a_field_was_added_still_resumes(tmp_path):
    """rope_theta and norm_eps joined ModelConfig after checkpoints existed: a file without them describes a model
    at their defaults, so it resumes a run at the defaults and is refused for a run that changes them."""
    from flopscalc.train.checkpoint import shape_of

    payload = _payload(3)
    old = {k: v for k, v in shape_of(CFG).items() if k not in ("rope_theta", "norm_eps")}
    path = save_checkpoint(tmp_path / "old.pt", {**payload, "model_config": old})
    assert load_checkpoint(path, expect_model=CFG)["model_config"] == old
    with pytest.raises(UsageError, match=r"another model shape \(norm_eps 1e-05 vs 1e-06"):
        load_checkpoint(path, expect_model=CFG.with_(norm_eps=1e-6))
