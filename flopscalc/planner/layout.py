"""The planner on a cluster of several nodes: each candidate model gets the fastest parallel layout that fits
(tensor, sequence, pipeline, context, expert and data parallelism with ZeRO, micro-batch, recomputation), found
and priced by the layout engine (`layout.search.search_layouts`), instead of the data-parallel setup search at a
constant hardware efficiency (`planner.options.choose_setup`).

When it applies (`uses_layout_search`): by default on more GPUs than one node holds (`parallel.GPUS_PER_NODE`),
where data parallelism's gradient traffic crosses the network (an eighth or less of NVLink's bandwidth) and
tensor parallelism inside a node with pipeline stages across nodes is what the published large runs do
(Narayanan et al. 2021, sec. 3.2 takeaways), and no efficiency was stated: ``--mfu`` or a calibration profile
states a constant efficiency, which prices data-parallel setups only, so the plan honours it with the setup
search. Inside one node ZeRO-3 already shards the training state over every GPU, as TP would; one GPU has one
layout. See docs/planner.md, "Several nodes: the layout search".

Beyond one node the plan still weighs the data-parallel setups of one node as well (`choose_fastest`): the layout
engine has no optimizer offload and no 8-bit AdamW, so without them a model that ZeRO-3 with offload fits on one
node (70.6B on 8 H100s) fitted no layout of 16. Those setups are priced by the per-operation model
(`perf.step.estimate_step`), whose data-parallel traffic crosses the network between nodes as the layout engine's
does (`perf.parallel.data_parallel_comm` over `perf.fabric.gpu_fabric`, on the cluster's network per GPU,
`layout.cluster_for`'s, --network-gbps included); a DDP or FSDP layout is priced identically by both (`layout.time`, to 1e-9), so the faster
of the two families is the faster run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from ..batch_size import critical_batch_tokens
from ..errors import DomainError
from ..flops import Recompute
from ..hardware import GpuSpec, Precision
from ..memory import Optimizer, TrainingSetup
from ..memory.workspace import gpu_setup_fields
from ..model import ModelConfig
from ..perf.offload import OffloadTime
from ..perf.parallel import CommEstimate
from .growth import BatchGrowth, best_doubling
from .options import (
    MEMORY_PRECISION,
    ChosenSetup,
    StepRates,
    _training_flops,
    flash_recompute,
    target_tokens_per_step,
    usable_bytes,
)
from .speed import LAYOUT_PRECISIONS, uses_layout_search  # noqa: F401 - re-exported: where they were

NO_OFFLOAD = OffloadTime(0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class LayoutSpeed(StepRates):
    """One step of a layout found by the layout engine, with `planner.options.Throughput`'s fields, so the planner,
    its notes and its renderers read either (rates, MFU and HFU from `StepRates`). Time is the engine's
    (`LayoutTime.step_s`) exactly; the FLOPs per token are the planner's (`flops.training_flops_per_token`, the
    plan's FLOP convention), so MFU and HFU agree with the plan's model FLOPs and this time."""

    time: object  # layout.time.LayoutTime
    model_flops_per_token: float
    hardware_flops_per_token: float  # with the layout's recomputation
    peak_flop_per_s_per_gpu: float  # dense peak at the plan's precision
    flash_recompute_flops_per_token: float = 0.0  # FlashAttention's backward recomputation of the scores (HFU only)

    @property
    def layout(self):
        return self.time.layout

    @property
    def n_gpus(self) -> int:
        return self.time.layout.n_gpus

    @property
    def tokens_per_step(self) -> int:
        return self.time.tokens_per_step

    @property
    def step_s(self) -> float:
        return self.time.step_s

    @property
    def tokens_per_s(self) -> float:
        return self.time.tokens_per_s

    @property
    def compute_s(self) -> float:
        """The GPUs' work: the busiest stage's micro-batches and the optimizer step (no waiting)."""
        return self.time.compute_s + self.time.optimizer_s

    @property
    def bubble_s(self) -> float:
        """Pipeline bubble: stages idle while the pipeline fills and drains (Narayanan et al. 2021 sec. 2.2)."""
        return self.time.bubble_s

    @property
    def scaling_efficiency(self) -> float:
        """Share of the ideal speed-up kept: compute over the whole step, so the pipeline bubble waits as exposed
        communication does (the plan's warning counts it the same way, `perf.parallel.low_efficiency_warning`)."""
        return self.compute_s / self.step_s

    @property
    def comm(self) -> CommEstimate:
        """All communication, as one estimate: its exposed part is TP + PP + CP + EP + the DP part not hidden."""
        t, dp = self.time, self.time.dp
        parts = {"tensor-parallel collectives (intra-node link)": t.tp_comm_s,
                 "pipeline point-to-point": t.pp_comm_s, "context-parallel ring": t.cp_comm_exposed_s,
                 "expert all-to-all": t.ep_comm_s, f"data-parallel reduction ({dp.link})": dp.exposed_s}
        link = max(parts, key=parts.get)
        return CommEstimate(self.n_gpus, dp.zero_stage, dp.volume_bytes, dp.bus_bytes_per_s,
                            t.exposed_comm_s + dp.hidden_s, dp.hidden_s, link, dp.latency_s, dp.n_messages,
                            dp.slowdown_s + t.cp_slowdown_s)

    @property
    def offload(self) -> OffloadTime:
        return NO_OFFLOAD

    @property
    def hardware_efficiency(self) -> float:
        """Hardware FLOP/s over peak while computing: the per-operation model's, not a stated figure."""
        return self.tokens_per_step * self.hardware_flops_per_token / (
            self.n_gpus * self.peak_flop_per_s_per_gpu * self.compute_s)


def global_batch_sequences(cfg: ModelConfig, seq_len: int, tokens_per_step: int | None = None) -> int:
    """Sequences per optimizer step: GPT-3's tokens per step (or ``tokens_per_step``) in whole sequences. Unlike
    the data-parallel search it is not rounded to a multiple of the GPUs: model parallelism makes DP smaller."""
    from .options import _n_params

    tokens = target_tokens_per_step(_n_params(cfg)) if tokens_per_step is None else tokens_per_step
    return max(1, tokens // seq_len)


@lru_cache(maxsize=2048)  # a pure function; the plan asks again when it relaxes a constraint or re-centres
def _search(cfg: ModelConfig, cluster, seq_len: int, global_batch: int, precision: Precision, limit_bytes: float):
    from ..layout.search import search_layouts

    try:
        return search_layouts(cfg, cluster, seq_len, global_batch, precision=MEMORY_PRECISION[precision],
                              flash=True, memory_limit_bytes=limit_bytes)
    except DomainError:  # nothing fits (or the batch splits over no layout)
        return None


def _chosen_and_speed(cfg: ModelConfig, result, seq_len: int, precision: Precision, gpu: GpuSpec,
                      capacity_bytes: float) -> tuple[ChosenSetup, LayoutSpeed]:
    best = result.best
    lay = best.layout
    setup = TrainingSetup(micro_batch=lay.micro_batch, seq_len=seq_len, precision=MEMORY_PRECISION[precision],
                          optimizer=Optimizer.adamw, recompute=Recompute(lay.recompute), flash=True,
                          grad_accum=lay.n_micro, n_gpus=lay.n_gpus, zero_stage=lay.zero_stage,
                          **gpu_setup_fields(gpu))
    chosen = ChosenSetup(setup, best.memory.total, capacity_bytes, lay.micro_batch, best.time.tokens_per_step, 0.0,
                         layout=lay, layouts=result)
    flops = _training_flops(cfg, seq_len, Recompute(lay.recompute))
    speed = LayoutSpeed(best.time, flops.model_flops_per_token, flops.hardware_flops_per_token,
                        gpu.peak_flop_per_s(precision), flash_recompute(flops, setup.flash))
    return chosen, speed


def choose_layout(cfg: ModelConfig, cluster, seq_len: int, precision: Precision, capacity_bytes: float | None,
                  tokens_per_step: int | None = None) -> tuple[ChosenSetup, LayoutSpeed] | None:
    """The fastest layout of ``cfg`` on ``cluster`` that fits ``capacity_bytes`` (default the GPU's) less the
    planner's headroom, at GPT-3's batch (or ``tokens_per_step``); None when none fits."""
    cap = capacity_bytes or cluster.gpu.memory_bytes
    result = _search(cfg, cluster, seq_len, global_batch_sequences(cfg, seq_len, tokens_per_step), precision,
                     usable_bytes(cap))
    return None if result is None else _chosen_and_speed(cfg, result, seq_len, precision, cluster.gpu, cap)


def grow_layout_batch(cfg: ModelConfig, cluster, seq_len: int, precision: Precision, capacity_bytes: float | None,
                      chosen: ChosenSetup, speed: LayoutSpeed, loss_nats: float | None, layouts_only: bool = False):
    """The layout at GPT-3's batch doubled k times (k = 1..MAX_BATCH_DOUBLINGS, never past Kaplan's critical batch
    at ``loss_nats``, eq. 5.3) with the most useful tokens per second, tokens/s x (1 + B0/Bc) / (1 + B/Bc)
    (eq. 5.5), each batch searched afresh (`planner.growth.best_doubling`, as `grow_batch` does): a larger batch
    also shrinks the pipeline bubble (more micro-batches) and may change the layout. Each doubling weighs the
    data-parallel setups too (`choose_fastest`) unless ``layouts_only`` (inside one node, where the plan's own
    data-parallel search grows its setup itself: `planner.search._evaluate`). None when GPT-3's batch is best."""
    waits = speed.comm.exposed_s + getattr(speed, "bubble_s", 0.0)  # a data-parallel setup has no bubble
    if speed.n_gpus == 1 or not waits > 0 or loss_nats is None or not loss_nats > 0:
        return None
    crit = critical_batch_tokens(loss_nats)
    b0 = chosen.tokens_per_step
    choose = choose_layout if layouts_only else choose_fastest
    found = best_doubling(b0, crit, speed.tokens_per_s,
                          lambda tokens: choose(cfg, cluster, seq_len, precision, capacity_bytes, tokens))
    if found is None:
        return None
    g_chosen, g_speed, reason = found
    growth = BatchGrowth(b0, g_chosen.tokens_per_step, crit, loss_nats, speed.scaling_efficiency, reason)
    return g_chosen, g_speed, growth


@lru_cache(maxsize=16)
def data_parallel_time_model(gpu: GpuSpec, precision: Precision, network_bytes_per_s: float | None = None):
    """The per-operation time model that prices the data-parallel setups beside the layouts on a network of
    ``network_bytes_per_s`` per GPU between nodes (the cluster's, `layout.Cluster.network_bytes_per_s`; None: the
    generation's), one per GPU, precision and network (`planner.speed._priced` keys its cache on it), or None where
    that model cannot price the GPU."""
    from .speed import PER_OPERATION, time_model_for

    tm = time_model_for(gpu, precision, None, None)
    return replace(tm, network_bytes_per_s=network_bytes_per_s) if tm.kind == PER_OPERATION else None


def weighs_data_parallel(cfg: ModelConfig, gpu, n_gpus: int, seq_len: int, precision: Precision,
                         tokens_per_step: int | None = None) -> bool:
    """Whether a plan beyond one node weighs the data-parallel setups beside the layouts (`choose_data_parallel`,
    and the no-fit hint, `setups.min_gpus_to_plan`): the per-operation model prices the GPU (whatever the network),
    and the batch has a sequence for every GPU (fewer: each would get one, a larger batch than asked; layouts refuse
    it too)."""
    return (data_parallel_time_model(gpu, precision) is not None
            and global_batch_sequences(cfg, seq_len, tokens_per_step) >= n_gpus)


def choose_data_parallel(cfg: ModelConfig, cluster, seq_len: int, precision: Precision, capacity_bytes: float | None,
                         tokens_per_step: int | None = None):
    """The fastest data-parallel setup of one node's search (`setups.choose_setup`: DDP, ZeRO 1-3, 8-bit AdamW,
    optimizer offload where it buys memory, recomputation) on all of ``cluster``'s GPUs, priced by the per-operation
    model on ``cluster``'s network between nodes; (chosen, `options.Throughput`) or None when none fits (or the model
    cannot price the GPU)."""
    from .setups import choose_setup
    from .speed import price_setup

    if not weighs_data_parallel(cfg, cluster.gpu, cluster.n_gpus, seq_len, precision, tokens_per_step):
        return None
    tm = data_parallel_time_model(cluster.gpu, precision, cluster.network_bytes_per_s)  # --network-gbps too
    chosen = choose_setup(cfg, cluster.gpu, cluster.n_gpus, seq_len, precision, capacity_bytes, None,
                          tokens_per_step, tm)
    if chosen is None:
        return None
    return chosen, price_setup(cfg, chosen.setup, chosen.tokens_per_step, cluster.gpu, precision, tm)


def choose_fastest(cfg: ModelConfig, cluster, seq_len: int, precision: Precision, capacity_bytes: float | None,
                   tokens_per_step: int | None = None):
    """The faster in tokens per second of the fastest layout (`choose_layout`) and the fastest data-parallel setup
    (`choose_data_parallel`) of ``cfg`` on ``cluster``; a tie (within `setups.TIE_REL`, far below the step model's
    error) keeps the layout. None when neither fits."""
    from .setups import TIE_REL

    lay = choose_layout(cfg, cluster, seq_len, precision, capacity_bytes, tokens_per_step)
    dp = choose_data_parallel(cfg, cluster, seq_len, precision, capacity_bytes, tokens_per_step)
    if lay is None or dp is None:
        return lay or dp
    return dp if dp[1].tokens_per_s > lay[1].tokens_per_s * (1 + TIE_REL) else lay


def layout_engine_note(layout) -> str:
    """Which engine runs ``layout`` and whether `flopscalc train` can (`Layout.engine`)."""
    from ..layout import Engine

    e = layout.engine()
    if e in (Engine.torchrun_ddp, Engine.torchrun_fsdp):
        return f"{e.value}: 'flopscalc train' runs it through torchrun"
    return (f"{e.value}: 'flopscalc train' cannot run it (it runs DDP and FSDP only); equivalent torchtitan and "
            "DeepSpeed settings below")


def time_model_source(layout) -> str:
    """Which time model priced ``layout``: the per-operation model at its engine's sustained fraction."""
    from ..layout import Engine
    from ..layout.stage_cost import MEGATRON_SUSTAINED_FRACTION
    from ..perf.op_kinds import SUSTAINED_FRACTION

    if layout.engine() is Engine.megatron:
        return (f"per-operation model (flopscalc step), Megatron-LM sustained fraction {MEGATRON_SUSTAINED_FRACTION:g} "
                "fitted on Narayanan et al. 2021 Table 1")
    return f"per-operation model (flopscalc step), PyTorch sustained fraction {SUSTAINED_FRACTION:g}"

