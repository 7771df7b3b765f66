"""QA pass 2, bug 2: `plan --n-gpus 100000` on H100s blamed memory ("it would fit on 2 GPUs"), but 100,000 =
2^5 x 5^5 splits into no layout: TP and CP are powers of two (TP also divides the 8 GPUs of a node), DP divides
the global batch (GPT-3's 0.5M tokens = 512 sequences of 1024 for the smallest GPT-2, a power of two) and PP is at
most the 12 layers, so the 5^5 = 3125 has nowhere to go. The message names that, and the count it suggests runs."""

from __future__ import annotations

import math
import re

import pytest

from flopscalc.cli import run
from flopscalc.errors import DomainError
from flopscalc.hardware import get_gpu
from flopscalc.layout import cluster_for
from flopscalc.layout.search import search_layouts
from flopscalc.model import PRESETS

N_GPUS = 100_000
# GPT-3 (Brown et al. 2020, Table 2.1): 0.5M tokens per step below 1B parameters -> 2^19 / 1024 sequences
GPT3_SMALL_BATCH_SEQUENCES = 2**19 // 1024


def test_the_count_itself_splits_into_no_layout_even_with_unlimited_memory():
    # the reference for the message: the layout engine, with no memory limit at all, finds nothing
    with pytest.raises(DomainError):
        search_layouts(PRESETS["gpt2"], cluster_for(get_gpu("h100"), N_GPUS), 1024, GPT3_SMALL_BATCH_SEQUENCES,
                       memory_limit_bytes=math.inf)


def test_plan_names_the_split_not_memory_and_suggests_a_count_that_runs(capsys):
    code = run(["plan", "--gpu", "h100", "--n-gpus", str(N_GPUS), "--days", "30"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no parallel layout divides 100,000 GPUs" in err
    assert "would fit on" not in err and "within 76.0 GiB" not in err  # memory is not the reason
    suggested = int(re.search(r"try --n-gpus (\d+)", err)[1])
    assert suggested < N_GPUS
    # the layout engine splits the smallest GPT-2 over the suggested count, and the plan runs there
    search_layouts(PRESETS["gpt2"], cluster_for(get_gpu("h100"), suggested), 1024, GPT3_SMALL_BATCH_SEQUENCES,
                   memory_limit_bytes=0.95 * get_gpu("h100").memory_bytes)
    assert run(["plan", "--gpu", "h100", "--n-gpus", str(suggested), "--days", "30", "--json"]) == 0
    capsys.readouterr()


def test_a_count_too_small_for_memory_still_gets_the_memory_message(capsys):
    code = run(["plan", "--gpu", "h100", "--n-gpus", "16", "--days", "3", "--params", "1T", "--family", "llama"])
    err = capsys.readouterr().err
    assert code == 1 and "does not fit" in err and "would fit on" in err and "divides" not in err
