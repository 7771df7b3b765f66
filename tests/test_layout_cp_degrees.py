"""`layout.search.CP_DEGREES`, the context-parallel degrees the search tries, against the published layouts
(data/published_layouts.csv): the search can propose every CP a published run used, the largest of them (Llama 3
405B's CP 16 at 131,072 tokens, Dubey et al. 2024 Table 4) included, and at such a sequence it tries each degree."""

from __future__ import annotations

from flopscalc.hardware import get_gpu
from flopscalc.layout import cluster_for
from flopscalc.layout.search import CP_DEGREES, CP_MIN_SEQ_LEN, search_layouts
from flopscalc.layout.spec import CP_CHUNKS_PER_RANK
from flopscalc.layout.validation import published_layouts
from flopscalc.model import get_preset


def test_every_published_context_parallel_degree_is_tried():
    published = {row.layout.cp for row in published_layouts()}
    assert 16 in published  # the Llama 3 128K row: the reference this list is sourced from
    assert published <= set(CP_DEGREES)
    assert max(CP_DEGREES) == max(published)
    assert all(c & (c - 1) == 0 for c in CP_DEGREES)  # powers of two: 2 x CP divides a power-of-two sequence
    for row in published_layouts():
        assert row.seq_len % (CP_CHUNKS_PER_RANK * row.layout.cp) == 0


def test_a_long_sequence_on_enough_gpus_ranks_every_degree():
    cfg = get_preset("llama-3.1-8b")
    seq = 8 * CP_MIN_SEQ_LEN
    res = search_layouts(cfg, cluster_for(get_gpu("h100"), 64), seq, 64, top=10**6)
    assert {r.layout.cp for r in res.ranked} == set(CP_DEGREES)
