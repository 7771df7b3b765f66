"""What every `flopscalc models` printout must hold, at any width: each preset's counts and shape whole (never split
mid-digit), each as `count_params` and the preset give it. Shared by the width tests."""

from __future__ import annotations

import re

from flopscalc.model import ALL_PRESETS, count_params

# a number with thousands separators, or plain digits, not part of a longer number
NUMBER = re.compile(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d,])|(?<![\d,])\d+(?![\d,])")


def assert_every_count_whole(out: str, columns: int | None) -> None:
    numbers = set(NUMBER.findall(out))
    for name, cfg in ALL_PRESETS.items():
        pc = count_params(cfg)
        for n in (pc.total, pc.active, pc.non_embedding, cfg.n_layer, cfg.n_embd, cfg.n_inner):
            assert f"{n:,}" in numbers or str(n) in numbers, (name, n, columns)
        for n in (cfg.block_size, cfg.vocab_size):
            assert f"{n:,}" in numbers, (name, n, columns)
        assert f"{cfg.n_head} ({cfg.kv_heads})" in out, (name, columns)
