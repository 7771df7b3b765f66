"""ModelConfig's hash is kept on the instance (issue 11: a plan makes ~7,000 hash calls on configs as lru_cache keys)
with the dataclass's semantics: the hash of the tuple of every field, equal configs hash equal, replace() and copies
get a correct hash of their own, and a pickle carries no hash from the process that wrote it."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys

from flopscalc.model import PRESETS, ModelConfig, get_preset


class CountingStr(str):
    """A str that counts how often it is hashed."""

    calls = 0

    def __hash__(self) -> int:
        CountingStr.calls += 1
        return super().__hash__()


def _dataclass_hash(cfg: ModelConfig) -> int:
    """What dataclass(frozen=True, eq=True) defines: hash of the tuple of the compared fields, in order."""
    return hash(tuple(getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.compare))


def test_the_hash_is_the_dataclass_hash_of_the_fields():
    for cfg in (PRESETS["gpt2"], get_preset("llama-3.1-8b"), get_preset("mixtral-8x7b")):
        assert hash(cfg) == _dataclass_hash(cfg)
        assert hash(cfg) == hash(cfg)


def test_the_fields_are_hashed_once_per_instance():
    CountingStr.calls = 0
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, name=CountingStr("counted"))
    for _ in range(5):
        hash(cfg)
    assert CountingStr.calls == 1


def test_equal_configs_hash_equal_and_unequal_ones_do_not_compare_equal():
    a = ModelConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2")
    b = ModelConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2")
    hash(a)  # one hashed first, one not
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    c = a.with_(n_layer=13)
    assert c != a and hash(c) == _dataclass_hash(c)


def test_replace_gives_a_fresh_correct_hash():
    a = PRESETS["gpt2"]
    hash(a)
    b = dataclasses.replace(a, n_embd=1024, n_head=16)
    assert hash(b) == _dataclass_hash(b) == hash(ModelConfig(**{f.name: getattr(b, f.name)
                                                                  for f in dataclasses.fields(b)}))
    assert dataclasses.replace(b, n_embd=768, n_head=12) == a
    assert hash(dataclasses.replace(b, n_embd=768, n_head=12)) == hash(a)


def test_the_cached_hash_is_no_field():
    a = PRESETS["gpt2"]
    hash(a)
    assert "_hash" not in {f.name for f in dataclasses.fields(a)}
    assert "_hash" not in dataclasses.asdict(a) and "_hash" not in repr(a)


def test_copies_and_pickles_are_equal_and_hash_as_fresh_ones():
    a = get_preset("mixtral-8x7b")
    hash(a)
    for b in (copy.copy(a), copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert b == a and hash(b) == hash(a) == _dataclass_hash(b)


def test_a_pickle_from_another_process_hashes_as_this_process_does():
    """str and Enum hashes change with PYTHONHASHSEED: a hash pickled with the config would be wrong here."""
    code = ("import pickle, sys; from flopscalc.model import get_preset; c = get_preset('llama-3.1-8b'); hash(c); "
            "sys.stdout.buffer.write(pickle.dumps(c))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=env).stdout
    there = pickle.loads(out)
    here = get_preset("llama-3.1-8b")
    assert there == here and hash(there) == hash(here) == _dataclass_hash(there)
    assert len({there, here}) == 1
