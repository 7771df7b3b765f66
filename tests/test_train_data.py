"""Token files in nanoGPT's and llm.c's formats, the byte tokenizer, and the rank-split batch loader."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import DomainError, UsageError
from flopscalc.train.data import (
    Batches,
    byte_tokenize,
    find_split_files,
    prepare,
    pydoc_text,
    read_tokens,
    write_tokens,
)


def test_reads_an_llmc_file_written_by_hand(tmp_path):
    # llm.c dev/data/data_common.py: 256 int32 header (magic 20240520, version 1, count), then uint16 ids
    ids = [50256, 15496, 11, 995, 0]
    path = tmp_path / "tiny_val.bin"
    path.write_bytes(struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253)) + struct.pack(f"<{len(ids)}H", *ids))
    assert read_tokens(path).tolist() == ids


def test_reads_a_llama3_llmc_file_with_uint32_ids(tmp_path):
    ids = [128000, 9906, 1917]  # beyond uint16
    path = tmp_path / "l3.bin"
    path.write_bytes(struct.pack("<256i", 20240801, 7, len(ids), *([0] * 253)) + struct.pack(f"<{len(ids)}I", *ids))
    assert read_tokens(path).tolist() == ids


def test_reads_a_nanogpt_raw_file(tmp_path):
    ids = np.array([1, 2, 65535, 7], dtype="<u2")
    path = tmp_path / "train.bin"
    ids.tofile(path)  # nanoGPT prepare.py: np.array(ids, dtype=np.uint16).tofile(...)
    assert read_tokens(path).tolist() == ids.tolist()


@pytest.mark.parametrize("fmt", ["llmc", "raw"])
def test_write_then_read_round_trips(tmp_path, fmt):
    ids = np.arange(1000) % 50257
    assert read_tokens(write_tokens(tmp_path / "x.bin", ids, fmt)).tolist() == ids.tolist()


def test_truncated_llmc_file_is_named(tmp_path):
    path = write_tokens(tmp_path / "cut.bin", np.arange(100), "llmc")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DomainError, match=r"cut\.bin is truncated.*100 tokens"):
        read_tokens(path)


def test_odd_sized_raw_file_and_missing_file(tmp_path):
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DomainError, match="odd.bin has an odd number of bytes"):
        read_tokens(odd)
    with pytest.raises(UsageError, match="nope.bin does not exist"):
        read_tokens(tmp_path / "nope.bin")


def test_byte_tokenizer_is_utf8():
    assert byte_tokenize("aé€").tolist() == list("aé€".encode())  # 1 + 2 + 3 bytes


def test_prepare_pydoc_writes_train_val_meta(tmp_path):
    text = pydoc_text()
    p = prepare(text, tmp_path / "d", val_fraction=0.1, source="pydoc")
    n = len(text.encode("utf-8"))
    assert p.n_train_tokens + p.n_val_tokens == n and p.n_val_tokens == int(n * 0.1)
    train, val, vocab = find_split_files(tmp_path / "d")
    assert vocab == 256 and json.loads(p.meta_path.read_text())["tokenizer"] == "byte"
    joined = np.concatenate([read_tokens(train), read_tokens(val)])
    assert bytes(joined.astype(np.uint8)) == text.encode("utf-8")


def test_find_split_files_accepts_llmc_names_and_rejects_gaps(tmp_path):
    write_tokens(tmp_path / "shakespeare_train.bin", np.arange(10))
    with pytest.raises(UsageError, match="no val file"):
        find_split_files(tmp_path)
    write_tokens(tmp_path / "shakespeare_val.bin", np.arange(10))
    train, val, vocab = find_split_files(tmp_path)
    assert (train.name, val.name, vocab) == ("shakespeare_train.bin", "shakespeare_val.bin", None)
    with pytest.raises(UsageError, match="does not exist"):
        find_split_files(tmp_path / "missing")


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 8), world=st.integers(1, 4), steps=st.integers(1, 6))
def test_ranks_together_see_what_one_process_sees(B, T, world, steps):
    # world processes with micro-batch B read exactly the rows of one process with micro-batch world * B
    tokens = np.arange(3 * world * B * T + 1) % 97
    one = Batches(tokens, world * B, T, vocab_size=97)
    ranks = [Batches(tokens, B, T, vocab_size=97, rank=r, world=world) for r in range(world)]
    for _ in range(steps):
        x1, y1 = one.next()
        parts = [r.next() for r in ranks]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), x1)
        assert np.array_equal(np.concatenate([p[1] for p in parts]), y1)
        assert np.array_equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one


def test_token_beyond_vocabulary_is_named():
    b = Batches(np.array([1, 2, 300, 4, 5]), 1, 4, vocab_size=256, name="token file x.bin")
    with pytest.raises(DomainError, match=r"x\.bin holds token id 300, beyond the model's vocabulary of 256"):
        b.next()


def test_too_little_data_for_one_batch():
    with pytest.raises(DomainError, match="fewer than one global micro-batch"):
        Batches(np.arange(10), 4, 4, vocab_size=256)
