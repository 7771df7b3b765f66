"""Search the parallel layouts of a model on a cluster: every TP x PP (x interleave) x DP x CP x EP, ZeRO stage,
micro-batch and recomputation that fits in memory, ranked by predicted time per token at a fixed global batch.

Pruning keeps the search exact for the ranking it reports: for each split, only the lightest recomputation that
fits is timed (more recomputation only adds work: [1] sec. 4), and memory (cheap) is checked before time; once
no recomputation fits a split and ZeRO stage at some micro-batch, the larger micro-batches are counted as rejected
without re-checking (every term of `memory.layout_memory` is non-decreasing in the micro-batch b, the in-flight
activations included: a stage holds min(p - r, m) micro-batches of b sequences, or all m when the interleaved
warm-up covers them, and m = batch / (dp b)). The
fitting layouts are then timed best-first by a lower bound on their step, the busiest stage's compute with its
bubble (`time.compute_lower_bound_s`; communication and optimizer only add): once a bound per token is no better
than the ``top``-th best time found, no layout left can enter the ranking, and the rest are counted as pruned
(``prune=False`` times them all; a test checks the two rankings are identical).
Tensor parallelism stays inside a node (its collectives run every layer: [2] sec. 3.2 "tensor model
parallelism ... within a multi-GPU server"); sequence parallelism is always on with TP > 1 (same bytes as TP
alone, less memory: [1] sec. 4.2.2); context parallelism is tried when the sequence is at least
`CP_MIN_SEQ_LEN` tokens.

References
----------
[1] Korthikanti et al. 2022, arXiv:2205.05198.
[2] Narayanan et al. 2021, arXiv:2104.04473, sec. 3.2 (takeaways: TP up to the GPUs of a server, then PP).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from ..errors import DomainError, UsageError
from ..flops import Recompute
from ..memory.precision import MemoryPrecision
from ..memory.workspace import gpu_setup_fields
from ..model import ModelConfig
from ..perf import StepOptions
from ..units import GIB
from .cluster import Cluster
from .memory import LayoutMemory, activation_bytes_per_layer, memory_from_parts, stage_params
from .spec import CP_CHUNKS_PER_RANK, CP_MIN_SEQ_LEN, Layout, pipeline_split
from .stage_cost import compute_key, stage_compute_s
from .time import LayoutTime, bound_from_compute_s, layout_time

MICRO_BATCHES = (1, 2, 4, 8)
INTERLEAVES = (1, 2, 4)
# Also tried: one-layer chunks, v = L / p, when the layers divide evenly and v is at most this (Korthikanti et al.
# 2022 sec. 6 ran 530B, 3 layers per stage, with 3 chunks; Llama 3 runs one-layer chunks, Dubey et al. 2024 sec.
# 3.3.2): the search must be able to find the published layouts.
MAX_ONE_LAYER_INTERLEAVE = 8
ZERO_STAGES = (0, 1, 3)
RECOMPUTE_ORDER = (Recompute.none, Recompute.selective, Recompute.full)
# CP_MIN_SEQ_LEN, the shortest sequence given context parallelism, lives in `spec` (light: the planner reads it
# without loading the engine).
# The context-parallel degrees tried: powers of two (each rank takes 2 of 2 x CP equal chunks, `CP_CHUNKS_PER_RANK`,
# and training sequences are powers of two) up to 16, the largest CP of a published run: Llama 3 405B at 131,072
# tokens, TP 8 x CP 16 x PP 16 on 16,384 H100s (Dubey et al. 2024, Table 4; data/published_layouts.csv row
# llama3-405b-128k). Megatron-LM (--context-parallel-size) and torchtitan (context_parallel_degree) take any degree
# that splits the sequence; `flopscalc step --cp` takes one outside this list (`Layout.check_model` checks it).
CP_DEGREES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class RankedLayout:
    layout: Layout
    time: LayoutTime
    memory: LayoutMemory
    why: str = ""  # for all but the winner: where it loses time against the winner


@dataclass(frozen=True)
class LayoutSearch:
    """The search's answer: the fastest layouts, best first, and what the others lost to."""

    model: ModelConfig
    cluster: Cluster
    seq_len: int
    global_batch: int  # sequences per optimizer step
    ranked: tuple[RankedLayout, ...]  # the best ``top`` fitting layouts
    n_candidates: int  # splits x micro-batch x ZeRO x recompute enumerated
    n_timed: int  # fitting layouts priced in full
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    n_pruned: int = 0  # fitting layouts whose compute bound alone already lost to the ranking: not priced in full

    @property
    def best(self) -> RankedLayout:
        return self.ranked[0]


def _divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending; pairs (d, n // d) up to sqrt(n), so a million GPUs take 1,000 trials."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _interleaves(n_layer: int, pp: int) -> list[int]:
    """`INTERLEAVES`, and one-layer chunks (v = L / p) when ``pp`` divides the layers and v <= the maximum."""
    one_layer = n_layer // pp
    if n_layer % pp == 0 and one_layer <= MAX_ONE_LAYER_INTERLEAVE:
        return sorted(set(INTERLEAVES) | {one_layer})
    return list(INTERLEAVES)


def _why(candidate: LayoutTime, best: LayoutTime) -> str:
    """Which component makes ``candidate`` slower than ``best``, per token."""
    scale = best.tokens_per_step / candidate.tokens_per_step
    diffs = {k: v * scale - best.components[k] for k, v in candidate.components.items()}
    worst = max(diffs, key=diffs.get)
    lost = candidate.s_per_token / best.s_per_token - 1
    return f"+{lost:.1%} per token, mostly {worst}"


def search_layouts(cfg: ModelConfig, cluster: Cluster, seq_len: int, global_batch: int, *, top: int = 5,
                   precision: MemoryPrecision = MemoryPrecision.bf16_mixed, flash: bool = True,
                   options: StepOptions | None = None, memory_limit_bytes: float | None = None,
                   prune: bool = True, fused_loss: bool = False, dropout: bool = False) -> LayoutSearch:
    """Rank every layout of ``cfg`` on ``cluster`` that fits, for ``global_batch`` sequences of ``seq_len`` per step.

    ``fused_loss`` and ``dropout`` are the step's (`memory.TrainingSetup`'s fields): both are timed and both reach
    the memory, as `layout_memory` counts them for a layout given explicitly."""
    if global_batch < 1:
        raise UsageError(f"global batch must be at least one sequence, got {global_batch}")
    limit = memory_limit_bytes if memory_limit_bytes is not None else cluster.gpu.memory_bytes
    n = cluster.n_gpus
    rejected: dict[str, int] = {}
    fitting: list[tuple[Layout, LayoutMemory]] = []
    n_candidates = 0
    tps = [t for t in _divisors(min(n, cluster.gpus_per_node)) if cfg.n_head % t == 0 and cfg.n_inner % t == 0
           and (cfg.kv_heads % t == 0 or t % cfg.kv_heads == 0)]
    cps = [c for c in CP_DEGREES
           if c == 1 or (seq_len >= CP_MIN_SEQ_LEN and seq_len % (CP_CHUNKS_PER_RANK * c) == 0)]
    for t in tps:
        for cp in cps:
            if n % (t * cp):
                continue
            for p in _divisors(n // (t * cp)):
                if p > cfg.n_layer:
                    break
                dp = n // (t * cp * p)
                eps = [e for e in _divisors(dp * cp) if cfg.is_moe and cfg.n_expert % e == 0] or [1]
                for ep in eps:
                    for v in (_interleaves(cfg.n_layer, p) if p > 1 else (1,)):
                        if cfg.n_layer < p * v:
                            continue
                        too_big: set[int] = set()  # ZeRO stages no recomputation fits at a smaller micro-batch
                        # a split Megatron-LM does not take (`spec.pipeline_split`) is not priced: `check_model`
                        # below counts each of its candidates as not splitting
                        params = (stage_params(cfg, Layout(tp=t, pp=p, dp=dp, cp=cp, ep=ep, interleave=v,
                                                           n_micro=p))
                                  if pipeline_split(cfg.n_layer, p, v) is not None else {})
                        per_layer: dict[tuple, float] = {}  # (micro-batch, recompute) -> bytes per layer
                        for b in MICRO_BATCHES:
                            if global_batch % (dp * b):
                                rejected["global batch does not divide"] = rejected.get(
                                    "global batch does not divide", 0) + 1
                                continue
                            m = global_batch // (dp * b)
                            if v > 1 and m % p:
                                continue
                            for z in ZERO_STAGES:
                                if (z == 3 and p > 1) or (z > 0 and dp * cp == 1):
                                    continue
                                if z in too_big:  # memory grows with the micro-batch: counted, not re-checked
                                    n_candidates += len(RECOMPUTE_ORDER)
                                    rejected["memory"] += len(RECOMPUTE_ORDER)
                                    continue
                                fitted, n_over = None, 0
                                for rc in RECOMPUTE_ORDER:
                                    n_candidates += 1
                                    try:
                                        lay = Layout(tp=t, pp=p, dp=dp, cp=cp, ep=ep, interleave=v,
                                                     sequence_parallel=t > 1, zero_stage=z, micro_batch=b,
                                                     n_micro=m, recompute=rc)
                                        lay.check_model(cfg, seq_len)
                                    except UsageError:
                                        rejected["model does not split"] = rejected.get("model does not split", 0) + 1
                                        break
                                    act_key = (b, rc)
                                    if act_key not in per_layer:
                                        per_layer[act_key] = activation_bytes_per_layer(
                                            cfg, seq_len, b, tp=t, cp=cp, sequence_parallel=t > 1, recompute=rc,
                                            flash=flash, dropout=dropout)
                                    mem = memory_from_parts(cfg, lay, seq_len, per_layer[act_key], params,
                                                            dropout=dropout, flash=flash, fused_loss=fused_loss,
                                                            **gpu_setup_fields(cluster.gpu))
                                    if mem.total <= limit:
                                        fitted = (lay, mem)
                                        break
                                    rejected["memory"] = rejected.get("memory", 0) + 1
                                    n_over += 1
                                if fitted is not None:
                                    fitting.append(fitted)
                                elif n_over == len(RECOMPUTE_ORDER):
                                    too_big.add(z)
    if not fitting:
        raise DomainError(f"no layout of {cfg.name} fits {n} x {cluster.gpu.name} "
                          f"({cluster.gpu.memory_bytes / GIB:.0f} GiB each) at sequence {seq_len} and global batch "
                          f"{global_batch}")
    results = _time_best_first(cfg, cluster, seq_len, fitting, top, precision, flash, options, prune, fused_loss,
                               dropout)
    best = results[0][0]
    ranked = tuple(RankedLayout(lt.layout, lt, mem, "" if i == 0 else _why(lt, best))
                   for i, (lt, mem) in enumerate(results[:top]))
    return LayoutSearch(cfg, cluster, seq_len, global_batch, ranked, n_candidates, len(results), rejected,
                        len(fitting) - len(results))


def _time_best_first(cfg, cluster, seq_len, fitting, top, precision, flash, options, prune, fused_loss, dropout):
    """Price the fitting layouts in order of their lower bound per token, stopping once the bound of the next is
    worse than the ``top``-th best time (exact: a bound never exceeds the time). Returns (time, memory), best first,
    ties in enumeration order, as pricing them all would."""
    compute_by_key: dict[tuple, tuple[float, float]] = {}  # many layouts share a stage shape; price each once here
    bounds = []
    for lay, _ in fitting:
        key = compute_key(cfg, lay)
        if key not in compute_by_key:
            compute_by_key[key] = stage_compute_s(cfg, lay, cluster.gpu, seq_len, precision=precision, flash=flash,
                                                  options=options, fused_loss=fused_loss, dropout=dropout)
        bounds.append(bound_from_compute_s(lay, *compute_by_key[key]) / (lay.sequences_per_step() * seq_len))
    results: list[tuple[float, int, LayoutTime, LayoutMemory]] = []
    kth: list[float] = []  # the best ``top`` times per token found so far, ascending
    for i in sorted(range(len(fitting)), key=bounds.__getitem__):
        if prune and len(kth) >= top and bounds[i] > kth[-1]:
            break  # every later bound is at least this one: none of them can enter the top
        lay, mem = fitting[i]
        lt = layout_time(cfg, lay, cluster, seq_len, precision=precision, flash=flash, options=options,
                         fused_loss=fused_loss, dropout=dropout)
        results.append((lt.s_per_token, i, lt, mem))
        bisect.insort(kth, lt.s_per_token)
        del kth[top:]
    results.sort(key=lambda r: r[:2])
    return [(lt, mem) for _, _, lt, mem in results]
