"""Token data: memory-mapped token files, a tokenising builder, and a resumable batch loader.

Formats read (the ecosystem's own):
- nanoGPT: raw little-endian uint16 token ids, no header (``data/*/prepare.py`` writes ``train.bin``).
- llm.c: a header of 256 int32 (magic, version, token count), then the ids: magic 20240520 version 1
  for uint16 GPT-2 ids, magic 20240801 version 7 for uint32 Llama-3 ids (llm.c ``dev/data/data_common.py``).
`prepare` writes llm.c's GPT-2 layout (its header makes a truncated file detectable) and a ``meta.json``
with the tokenizer and vocabulary size. Numpy only: no torch import here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import check_writable_file, lands_on, write_bytes_atomic, write_text_atomic
from ..errors import DomainError, UsageError

LLMC_HEADER_INT32 = 256  # llm.c data_common.py: "a header with 256 int32s"
LLMC_FORMATS = {20240520: (1, np.uint16), 20240801: (7, np.uint32)}  # magic: (version, dtype), llm.c
BYTE_VOCAB_SIZE = 256  # one token per UTF-8 byte
GPT2_EOT_TOKEN = 50256  # GPT-2's <|endoftext|> id (tiktoken "gpt2" encoding)
DEFAULT_VAL_FRACTION = 0.1  # nanoGPT's shakespeare_char split: last 10% for validation
# Tokens each split needs at the least: one input and the next token as its target (a sequence of length 1).
MIN_SPLIT_TOKENS = 2
META_NAME = "meta.json"
PREPARED_NAMES = ("train.bin", "val.bin", META_NAME)  # what `prepare` writes into its folder, in that order


def read_tokens(path: str | Path) -> np.ndarray:
    """Memory-map a token file (llm.c header or nanoGPT raw uint16); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"token file {path} does not exist; create one with 'flopscalc train prepare'")
    n_bytes = path.stat().st_size
    header = np.fromfile(path, dtype="<i4", count=3) if n_bytes >= 12 else np.zeros(3, dtype="<i4")
    magic = int(header[0])
    if magic in LLMC_FORMATS:
        version, dtype = LLMC_FORMATS[magic]
        if int(header[1]) != version:
            raise DomainError(f"token file {path}: llm.c magic {magic} with version {int(header[1])}, "
                              f"expected {version}")
        n_tokens, offset = int(header[2]), LLMC_HEADER_INT32 * 4
        need = offset + n_tokens * np.dtype(dtype).itemsize
        if n_bytes != need:
            raise DomainError(f"token file {path} is truncated or padded: its header says {n_tokens} tokens "
                              f"({need} bytes), the file has {n_bytes} bytes; rebuild it")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(n_tokens,))
    if n_bytes % 2:
        raise DomainError(f"token file {path} has an odd number of bytes ({n_bytes}): not uint16 tokens, "
                          "or truncated; rebuild it")
    if n_bytes == 0:
        raise DomainError(f"token file {path} is empty")
    return np.memmap(path, dtype="<u2", mode="r")


def write_tokens(path: str | Path, tokens: np.ndarray, fmt: str = "llmc") -> Path:
    """Write token ids atomically as llm.c GPT-2 (``fmt='llmc'``) or nanoGPT raw uint16 (``'raw'``)."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise DomainError(f"token ids must fit uint16 (0..65535) for {path}; got {tokens.min()}..{tokens.max()}")
    body = tokens.astype("<u2").tobytes()
    if fmt == "llmc":
        header = np.zeros(LLMC_HEADER_INT32, dtype="<i4")
        header[:3] = (20240520, 1, tokens.size)  # llm.c data_common.py, "gpt-2" row
        body = header.tobytes() + body
    elif fmt != "raw":
        raise UsageError(f"token file format must be llmc or raw, got {fmt!r}")
    write_bytes_atomic(path, body)
    return path


# ------------------------------------------------------------------ tokenisers


def byte_tokenize(text: str) -> np.ndarray:
    """UTF-8 bytes as token ids (vocabulary 256): needs nothing, works for any text."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)


def gpt2_tokenize(text: str) -> np.ndarray:
    """GPT-2 BPE ids via tiktoken, when tiktoken and its files are available offline."""
    try:
        import tiktoken

        enc = tiktoken.get_encoding("gpt2")
    except Exception as e:  # noqa: BLE001 - ImportError, or tiktoken could not fetch its files offline
        raise DomainError(f"GPT-2 BPE is not available here ({type(e).__name__}); install tiktoken with its "
                          "cached files, or use --tokenizer byte") from None
    return np.asarray(enc.encode_ordinary(text) + [GPT2_EOT_TOKEN], dtype=np.uint16)


TOKENIZERS = {"byte": (byte_tokenize, BYTE_VOCAB_SIZE), "gpt2": (gpt2_tokenize, 50257)}


def pydoc_text() -> str:
    """The CPython documentation strings shipped with every Python (``pydoc_data.topics``), joined."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@dataclass(frozen=True)
class PreparedData:
    """What `prepare` wrote: paths and token counts (tokens)."""

    train_path: Path
    val_path: Path
    meta_path: Path
    tokenizer: str
    vocab_size: int
    n_train_tokens: int
    n_val_tokens: int


def _split_sizes(n_tokens: int, val_fraction: float) -> tuple[int, int]:
    """(train, validation) tokens of a text of ``n_tokens``: the last int(n x fraction) validate."""
    n_val = int(n_tokens * val_fraction)
    return n_tokens - n_val, n_val


def min_tokens_to_split(val_fraction: float) -> int:
    """Fewest tokens a text needs for `prepare` to give both splits `MIN_SPLIT_TOKENS` at ``val_fraction``.

    Both split sizes grow with the text (by 0 or 1 token per token), so the answer is the larger of the two
    splits' own minima, each found from its closed form n = m / share and stepped to the exact integer.
    """
    def first(ok, guess: int) -> int:
        n = max(1, guess)
        while n > 1 and ok(n - 1):
            n -= 1
        while not ok(n):
            n += 1
        return n

    m = MIN_SPLIT_TOKENS
    val = first(lambda n: _split_sizes(n, val_fraction)[1] >= m, math.ceil(m / val_fraction))
    train = first(lambda n: _split_sizes(n, val_fraction)[0] >= m, math.ceil(m / (1 - val_fraction)))
    return max(val, train)


def _too_short(n_tokens: int, tokenizer: str, val_fraction: float, source: str) -> str:
    """One line: the text's tokens, what the split needs, and a fraction that would split it (if any does)."""
    n_train, n_val = _split_sizes(n_tokens, val_fraction)
    what = f"text {source}" if source else "the text"
    line = (f"{what} has {n_tokens:,} tokens ({tokenizer} tokenizer): --val-fraction {val_fraction:g} splits it "
            f"into {n_train:,} training and {n_val:,} validation tokens, and each split needs at least "
            f"{MIN_SPLIT_TOKENS}, so it needs a text of at least {min_tokens_to_split(val_fraction):,} tokens; ")
    fits = [f / 100 for f in range(1, 100) if min(_split_sizes(n_tokens, f / 100)) >= MIN_SPLIT_TOKENS]
    if not fits:
        return line + f"use a longer text (no fraction splits {n_tokens} tokens in two)"
    best = min(fits, key=lambda f: abs(f - val_fraction))  # the nearest fraction that splits this text
    return line + f"use a longer text, or --val-fraction {best:g} for this one"


def check_prepare_outputs(out_dir: str | Path, replace: bool = False) -> tuple[Path, Path, Path]:
    """The paths `prepare` writes in ``out_dir`` (`PREPARED_NAMES`), each checked before any is written: a folder (made
    if missing) that can be written, and no file of those names already there unless ``replace`` (a dataset prepared
    before, or a file of the user's, is not replaced unasked). UsageError otherwise."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"data folder {out} is a file; give a folder to write {', '.join(PREPARED_NAMES)} into "
                         "(made if missing), e.g. data/")
    paths = tuple(check_writable_file(out / name) for name in PREPARED_NAMES)
    there = [p.name for p in paths if lands_on(p).exists()]
    if there and not replace:
        raise UsageError(f"data folder {out} already holds {', '.join(there)}; preparing would replace "
                         f"{'it' if len(there) == 1 else 'them'}: give --replace to overwrite "
                         f"{', '.join(PREPARED_NAMES)}, or another folder")
    return paths


def prepare(text: str, out_dir: str | Path, *, tokenizer: str = "byte", val_fraction: float = DEFAULT_VAL_FRACTION,
            fmt: str = "llmc", source: str = "", replace: bool = False) -> PreparedData:
    """Tokenise ``text`` and write ``train.bin``, ``val.bin`` (the last ``val_fraction``) and ``meta.json``; files of
    those names already in ``out_dir`` are refused, before anything is written, unless ``replace``
    (`check_prepare_outputs`)."""
    train_path, val_path, meta_path = check_prepare_outputs(out_dir, replace)
    if tokenizer not in TOKENIZERS:
        raise UsageError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    encode, vocab_size = TOKENIZERS[tokenizer]
    tokens = encode(text)
    n_train, n_val = _split_sizes(len(tokens), val_fraction)  # the split the message and `min_tokens_to_split` use
    if min(n_train, n_val) < MIN_SPLIT_TOKENS:
        raise DomainError(_too_short(len(tokens), tokenizer, val_fraction, source))
    write_tokens(train_path, tokens[:-n_val], fmt)
    write_tokens(val_path, tokens[-n_val:], fmt)
    meta = {"tokenizer": tokenizer, "vocab_size": vocab_size, "format": fmt, "source": source,
            "n_train_tokens": n_train, "n_val_tokens": n_val}
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    return PreparedData(train_path, val_path, meta_path, tokenizer, vocab_size, n_train, n_val)


def find_split_files(data_dir: str | Path) -> tuple[Path, Path, int | None]:
    """Train and validation files of a data folder, and the vocabulary size from ``meta.json`` if present.

    Accepts nanoGPT's ``train.bin`` / ``val.bin`` and llm.c's ``*_train.bin`` / ``*_val.bin``.
    """
    d = Path(data_dir)
    if d.is_file() and d.suffix == ".bin":  # a token file itself: its folder is what was meant
        raise UsageError(f"{d} is a file; give the folder holding train.bin/val.bin: --data {d.parent}")
    if d.exists() and not d.is_dir():
        raise UsageError(f"{d} is a file; give the folder holding train.bin/val.bin (made by 'flopscalc train prepare "
                         f"FOLDER --text {d}')")
    if not d.is_dir():
        raise UsageError(f"data folder {d} does not exist; create it with 'flopscalc train prepare {d} --text FILE' "
                         "(or --pydoc)")
    found = []
    for split in ("train", "val"):
        candidates = [d / f"{split}.bin"] if (d / f"{split}.bin").is_file() else sorted(d.glob(f"*_{split}.bin"))
        if len(candidates) != 1:
            what = "no" if not candidates else "several"
            raise UsageError(f"data folder {d} has {what} {split} file ({split}.bin or *_{split}.bin); "
                             "create one with 'flopscalc train prepare'")
        found.append(candidates[0])
    vocab = None
    meta = d / META_NAME
    if meta.is_file():
        from ..textfile import parse_json, read_text

        try:  # read as every user file is (a BOM dropped, one line for another encoding, a repeated key refused)
            data = parse_json(read_text(meta, "meta.json"), str(meta), "meta.json")
        except json.JSONDecodeError:
            data = None
        vocab = data.get("vocab_size") if isinstance(data, dict) else None
        # a whole number, not one int() would cut (300.7 -> 300) or a JSON true (int(True) == 1)
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
            raise UsageError(f"{meta} is not a valid meta.json (needs a positive whole-number vocab_size, got "
                             f"{vocab!r}); fix it, or remake the folder with 'flopscalc train prepare'")
    return found[0], found[1], vocab


# ------------------------------------------------------------------ batches


class Batches:
    """Contiguous micro-batches walked in order; the position is the whole of the loader's state.

    Rank ``r`` of ``world`` reads rows ``r * B .. (r + 1) * B`` of a global micro-batch of
    ``world * B`` sequences, so ``world`` processes see exactly what one process with micro-batch
    ``world * B`` sees (llm.c's DataLoader does the same). Wraps to the start at the end of the data.
    """

    def __init__(self, tokens: np.ndarray, micro_batch: int, seq_len: int, *, vocab_size: int,
                 rank: int = 0, world: int = 1, name: str = "tokens"):
        self.tokens, self.B, self.T = tokens, micro_batch, seq_len
        self.vocab_size, self.rank, self.world, self.name = vocab_size, rank, world, name
        self.span = world * micro_batch * seq_len  # tokens consumed per micro-step, all ranks
        if len(tokens) < self.span + 1:
            raise DomainError(f"{name} has {len(tokens)} tokens, fewer than one global micro-batch needs "
                              f"({self.span + 1}); lower --micro-batch or --seq, or use more data")
        self.position = 0

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets, each (B, T) int64, for this rank; advances the position."""
        if self.position + self.span + 1 > len(self.tokens):
            self.position = 0
        start = self.position + self.rank * self.B * self.T
        chunk = np.asarray(self.tokens[start:start + self.B * self.T + 1], dtype=np.int64)  # (B*T + 1,)
        top = int(chunk.max())
        if top >= self.vocab_size:
            raise DomainError(f"{self.name} holds token id {top}, beyond the model's vocabulary of "
                              f"{self.vocab_size}; pass --vocab-size or check the tokenizer")
        self.position += self.span
        x = chunk[:-1].reshape(self.B, self.T)  # (B, T)
        y = chunk[1:].reshape(self.B, self.T)  # (B, T)
        return x, y

    def state_dict(self) -> dict:
        return {"position": int(self.position)}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


def synthetic_tokens(n_tokens: int, vocab_size: int, seed: int) -> np.ndarray:
    """Uniform random token ids (for benchmarks: throughput does not depend on the text)."""
    return np.random.default_rng(seed).integers(0, vocab_size, size=n_tokens, dtype=np.int64)
