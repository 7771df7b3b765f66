"""Data-parallel training on many GPUs: communication volume and time per step, and scaling efficiency.

Data parallelism (DDP) keeps a full replica per GPU and all-reduces gradients once per optimizer step;
ZeRO stages 1-2 (and FSDP's SHARD_GRAD_OP) replace the all-reduce with a reduce-scatter of gradients plus
an all-gather of updated parameters (the same volume); ZeRO-3 / FSDP FULL_SHARD also all-gathers the
parameters for every forward and backward pass.

Time of one ring collective is the alpha-beta model [5]: a latency per ring step (alpha, from NCCL's own
tuning model [6]) plus bytes over the achieved bus bandwidth (beta) [1, 4]. Gradients go in buckets, one
collective each (DDP's 25 MiB, DeepSpeed's for ZeRO) [3]; FSDP sends one per wrapped block and pass [12], so
its ring latency, which grows with the number of GPUs, is paid dozens of times a step. The links a ring crosses
(`Fabric`) come from the GPU: NVLink or PCIe peer-to-peer inside a node, host memory for GeForce cards without
peer-to-peer [7, 8], and the network between nodes.

The links and their ring latency are `perf.fabric`'s; the collectives of each ZeRO stage, their bytes and how many
messages each is cut into are `perf.collectives`'s; this module prices a step's communication from them, what the
compute hides and what it costs the step.

References
----------
One numbering for the data-parallel modules (`perf.parallel`, `perf.fabric`, `perf.collectives`): each lists
the references its code cites; the overview above also cites [4], [7] and [8], listed in `perf.fabric`.

[1] Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations", J. Parallel
    Distrib. Comput. 69(2): a ring all-reduce sends and receives 2 (n-1)/n of the buffer per process.
[3] Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 13(12),
    sec. 3.2.3: gradient buckets are all-reduced while the backward pass continues (overlap).
[5] Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH",
    IJHPCA 19(1), sec. 4: ring all-reduce = 2 (p-1) alpha + 2 (p-1)/p n beta (+ the reduction).
[6] NVIDIA NCCL, src/graph/tuning.cc (v2.19+, ncclTopoTuneModel): ring latency = baseLat + (nsteps - nInterSteps)
    x intraLat + nInterSteps x interLat, nsteps = 2 (n-1) for all-reduce and n-1 for reduce-scatter/all-gather;
    ring/Simple baseLat 8.4 us, hwLat NVLink 3.4, PCI 5.7, NET 14.0 us; multi-node bus bandwidth =
    channels x per-NIC bandwidth.
[9] deepspeedai/DeepSpeed PR #338 ("Adding gradient accumulation support for ZeRO Stage 2": "Zero stage 2
    communicates during non gradient accumulation boundaries as well"); PyTorch FSDP ``no_sync`` docs: skipping
    the reduce-scatter "will accumulate the full model gradients (instead of gradient shards)". Sharded
    gradients are reduce-scattered after every micro-batch.
[10] PyTorch FSDP ``_runtime_utils._post_forward_reshard``: "Do not free the root's parameters in the
    post-forward for `FULL_SHARD` with the intention that they are immediately used for backward computation";
    FSDP2 ``fully_shard`` sets the root's ``reshard_after_forward`` to False likewise. The root unit (embeddings,
    final norm, an untied head) is gathered once per micro-batch, each block twice (counted on the wire by
    tests/test_train_ddp.py).
[11] Lee, Oh, Kim, Go, Park & Mahajan 2025, "Characterizing Compute-Communication Overlap in GPU-Accelerated
    Distributed Deep Learning: Performance and Power Implications", arXiv:2507.03114, abstract: "overlapping
    computation and communication can result in an average computational slowdown of 18.9%, with a maximum of
    40.0%", against the same compute with no communication alongside (4 GPUs: A100, H100, MI250, MI210; GPT and
    Llama models). The mechanism: NCCL's kernels run one CTA per channel and do not share an SM with compute
    kernels (NVIDIA/nccl issue #689), 24 channels on an 8x A100 NVSwitch node (nccl-tests issue #100): 22% of
    the 108 SMs; PyTorch PR #179937 (8x H100, FSDP, Llama 3 8B) sees overlapped matmuls "30-40% slower".
[12] Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel", VLDB 16(12), sec. 3:
    each wrapped unit's parameters are all-gathered before its forward and again before its backward, and its
    gradients reduce-scattered after its backward, one collective each. The trainers of the validation rows wrap
    each transformer block: mosaicml/examples MosaicGPT and llm-foundry MPT (`fsdp_wrap_fn`: `GPTBlock`,
    `MPTBlock`), torchtitan (`fully_shard` per TransformerBlock), `flopscalc train` (FSDP2, counted on the wire by
    tests/test_train_ddp.py: per micro-batch 2 gathers per block and 1 for the root, 1 reduce-scatter per unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from .collectives import (
    collectives,
    comm_volume_bytes,
    default_bucket_bytes,
    fsdp_messages,
    gradient_reductions,
)
from .fabric import (
    ALLREDUCE_BUS_EFFICIENCY,
    GPUS_PER_NODE,
    NETWORK_BYTES_PER_S_PER_GPU,
    Fabric,
    fabric_from_link,
    gpu_fabric,
    ring_latency_s,
)

if TYPE_CHECKING:
    from ..hardware import GpuSpec

# Share of the gradient all-reduce that can hide behind the backward pass of the last micro-batch ([3] 3.2.3).
DEFAULT_OVERLAP = 1.0
# Compute that runs alongside a collective is slower by this fraction ([11]: the measured average, 18.9%; the SMs
# NCCL holds on 8x A100, 22%, and H100 FSDP's 30-40% agree in size): a hidden collective of t seconds costs the
# step 0.189 t of slower compute. One figure for every GPU: [11] gives no split by GPU or precision.
OVERLAP_COMPUTE_SLOWDOWN = 0.189


@dataclass(frozen=True)
class CommEstimate:
    """Communication of one optimizer step for one GPU, and how much of it the compute does not hide."""

    n_gpus: int
    zero_stage: int
    volume_bytes: float  # bytes each GPU sends (and receives) per optimizer step
    bus_bytes_per_s: float  # achieved per-direction bandwidth used for the estimate
    comm_s: float  # volume_bytes at bus_bytes_per_s, plus latency_s
    hidden_s: float  # part overlapped with backward compute
    link: str  # which link limits: NVLink, PCIe peer-to-peer, host memory, network between nodes
    latency_s: float = 0.0  # part of comm_s that is per-message latency (alpha terms of all collectives)
    n_messages: int = 0  # collectives per step (buckets of each reduce-scatter / all-gather / all-reduce)
    slowdown_s: float = 0.0  # compute time lost to the hidden collectives running alongside it ([11])

    @property
    def exposed_s(self) -> float:
        """Communication time the step has to wait for (s)."""
        return self.comm_s - self.hidden_s

    @property
    def cost_s(self) -> float:
        """What the communication adds to the step (s): the exposed part and the slowdown of the compute that hides
        the rest ([11])."""
        return self.exposed_s + self.slowdown_s


def hiding_window_s(zero_stage: int, grad_accum: int, backward_s: float, passes_s: float) -> float:
    """Compute time data-parallel traffic can hide behind (s), from one micro-batch's backward (``backward_s``) and
    all its passes (``passes_s``): FSDP/ZeRO-3 prefetches each unit's gathers during every pass of every micro-batch
    ([3] sec. 3.3; Zhao et al. 2023 sec. 3.3.2-3.3.3); sharded gradients (stage 2) reduce behind each micro-batch's
    backward ([9]); DDP and stage 1 reduce behind the last backward only."""
    if zero_stage == 3:
        return passes_s * grad_accum
    return backward_s * gradient_reductions(zero_stage, grad_accum)


def data_parallel_comm(
    n_params: float,
    n_gpus: int,
    zero_stage: int,
    link_bytes_per_s: float | None = None,
    *,
    fabric: Fabric | None = None,
    gpu: GpuSpec | None = None,
    backward_s: float = 0.0,
    grad_bytes_per_param: float = 4.0,
    param_bytes_per_param: float = 2.0,
    grad_accum: int = 1,
    root_params: float = 0.0,
    bucket_bytes: float | None = None,
    fsdp_units: int | None = None,
    bus_efficiency: float = ALLREDUCE_BUS_EFFICIENCY,
    overlap: float = DEFAULT_OVERLAP,
    overlap_slowdown: float = OVERLAP_COMPUTE_SLOWDOWN,
    gpus_per_node: int = GPUS_PER_NODE,
    network_bytes_per_s: float = NETWORK_BYTES_PER_S_PER_GPU,
) -> CommEstimate:
    """Communication time per optimizer step and the part that backward compute hides.

    Give one of ``gpu`` (its links by `gpu_fabric`: NVLink, PCIe peer-to-peer or host memory, network beyond
    a node), ``fabric``, or a bare ``link_bytes_per_s`` (per-direction peak; ``bus_efficiency``,
    ``gpus_per_node`` and ``network_bytes_per_s`` then build the fabric). Each collective is one ring per
    bucket (``bucket_bytes``; default `default_bucket_bytes`, DDP's or DeepSpeed's; `megatron_bucket_bytes`):
    time = bytes / bus bandwidth + latency per call (`ring_latency_s`) [5, 6].
    ``fsdp_units`` (ZeRO-3 only; instead of buckets): the blocks FSDP wraps one unit each, so each pass gathers each
    unit in a collective of its own and each backward reduce-scatters each unit and the root ([12], `fsdp_messages`);
    the root unit's gather opens each micro-batch and its reduce-scatter closes it, with no compute beside them
    (`fsdp_edge_s`): those are exposed instead of the last bucket.
    ``backward_s`` is the compute the collectives may overlap ([3] sec. 3.2.3), except the last bucket's: the
    backward of each micro-batch whose gradients reduce (the last one's; every one's where they are sharded,
    `gradient_reductions`), and under ZeRO-3, whose parameter gathers are prefetched, every pass (`step.estimate_step`).
    The hidden part still slows the compute it runs beside by ``overlap_slowdown`` of its time ([11]; `slowdown_s`).
    """
    if not 0 <= overlap <= 1:
        raise UsageError(f"overlap must be in [0, 1], got {overlap}")
    if not 0 <= overlap_slowdown <= 1:
        raise UsageError(f"overlap slowdown must be in [0, 1] (a fraction of the hidden time), got {overlap_slowdown}")
    if bucket_bytes is not None and not bucket_bytes > 0:
        raise UsageError(f"bucket size must be a positive number of bytes, got {bucket_bytes}")
    if fsdp_units is not None:
        if isinstance(fsdp_units, bool) or not isinstance(fsdp_units, int) or fsdp_units < 1:
            raise UsageError(f"FSDP units must be a whole number of at least 1 (one per block), got {fsdp_units!r}")
        if bucket_bytes is not None:
            raise UsageError("give FSDP units or a bucket size, not both: FSDP sends one collective per unit")
        if zero_stage != 3:
            raise UsageError(f"FSDP units price ZeRO-3 (FULL_SHARD) only, got ZeRO stage {zero_stage}; leave them out "
                             "for DDP's or DeepSpeed's buckets")
    fsdp = fsdp_units is not None
    volume = comm_volume_bytes(n_params, n_gpus, zero_stage, grad_bytes_per_param=grad_bytes_per_param,
                               param_bytes_per_param=param_bytes_per_param, grad_accum=grad_accum,
                               root_params=root_params)
    if n_gpus == 1:
        return CommEstimate(1, zero_stage, 0.0, float("inf"), 0.0, 0.0, "none (one GPU)")
    if sum(x is not None for x in (link_bytes_per_s, fabric, gpu)) > 1:
        raise UsageError("give one of the link bandwidth, the fabric or the GPU, not several")
    if gpu is not None:
        fabric = gpu_fabric(gpu, n_gpus, bus_efficiency=bus_efficiency)
    if fabric is None:
        if link_bytes_per_s is None:
            raise UsageError("this GPU has no interconnect bandwidth in the database; add interconnect_gb_per_s "
                             "with --gpu-csv to plan for several of them")
        fabric = fabric_from_link(link_bytes_per_s, bus_efficiency=bus_efficiency, gpus_per_node=gpus_per_node,
                                  network_bytes_per_s=network_bytes_per_s)
    bus = fabric.bus_bytes_per_s(n_gpus)
    grad_bucket, param_bucket = (default_bucket_bytes(zero_stage, grad_bytes_per_param, param_bytes_per_param)
                                 if bucket_bytes is None else (bucket_bytes, bucket_bytes))
    calls = collectives(n_params, zero_stage, grad_bytes_per_param, param_bytes_per_param, grad_accum, root_params)
    if fsdp:  # [12] one collective per unit
        counts = [fsdp_messages(kind, fsdp_units, root_params) for _, kind, _ in calls]
    else:
        counts = [math.ceil(total / (grad_bucket if kind == "grad" else param_bucket)) for total, kind, _ in calls]
    n_messages = sum(counts)
    latency = sum(n * ring_latency_s(n_gpus, fabric, all_reduce=ar) for n, (_, _, ar) in zip(counts, calls))
    comm_s = volume / bus + latency  # [5] alpha-beta: bytes over the bus plus alpha per ring step
    ring = (n_gpus - 1) / n_gpus
    if fsdp:  # the root unit's gather and reduce-scatter at the two ends of every micro-batch
        exposed_s = min(comm_s, grad_accum * fsdp_edge_s(n_params, n_gpus, fabric, fsdp_units, root_params,
                                                         grad_bytes_per_param, param_bytes_per_param))
    else:
        last = min(grad_bucket, n_params * grad_bytes_per_param)
        last_factor = 2 if zero_stage == 0 else 1  # the final bucket's all-reduce, or its reduce-scatter
        last_alpha_s = ring_latency_s(n_gpus, fabric, all_reduce=zero_stage == 0)
        exposed_s = min(comm_s, last_factor * ring * last / bus + last_alpha_s)
    hidden = min(comm_s - exposed_s, overlap * backward_s)
    return CommEstimate(n_gpus, zero_stage, volume, bus, comm_s, hidden, fabric.link(n_gpus), latency, n_messages,
                        overlap_slowdown * hidden)  # [11] the compute running alongside is slower


def fsdp_unit_count(n_layer: int, zero_stage: int) -> int | None:
    """FSDP units a data-parallel step at ``zero_stage`` sends collectives for: one per block under ZeRO-3, as
    every trainer priced here wraps them ([12]); None (buckets) for the other stages. The one rule all step models
    (`step.estimate_step`, `layout.time`, the planner's stated-efficiency path) pass to `data_parallel_comm`."""
    return n_layer if zero_stage == 3 else None


def fsdp_edge_s(n_params: float, n_gpus: int, fabric: Fabric, fsdp_units: int, root_params: float,
                grad_bytes_per_param: float, param_bytes_per_param: float) -> float:
    """Time of the two FSDP collectives of a micro-batch that no compute hides (s): the root unit's all-gather, the
    first thing its forward waits for, and its reduce-scatter, the last thing its backward produces ([10, 12]; the
    next micro-batch's first gather queues behind it on the same communicator). Without a root (``root_params`` 0)
    the first and last block's: ``n_params / fsdp_units`` each."""
    edge = root_params if root_params > 0 else n_params / fsdp_units
    bus, ring = fabric.bus_bytes_per_s(n_gpus), (n_gpus - 1) / n_gpus
    alpha = ring_latency_s(n_gpus, fabric, all_reduce=False)
    # [1, 5] each a ring over (n-1)/n of the unit's buffer plus one latency
    return ring * edge * (param_bytes_per_param + grad_bytes_per_param) / bus + 2 * alpha


def scaling_efficiency(compute_s: float, comm: CommEstimate) -> float:
    """Share of the ideal n-GPU speed-up kept: compute / (compute + exposed communication + overlap slowdown)."""
    return compute_s / (compute_s + comm.cost_s)


# Below this scaling efficiency a plan warns: a third of the GPU time paid for waits on communication. Published
# data-parallel scaling reaches ~90% (Goyal et al. 2017, "Accurate, Large Minibatch SGD", abstract: ~90% from 8
# to 256 GPUs; Li et al. 2020 [3], abstract: near-linear DDP scaling on 256 GPUs), so 70% is well off what a tuned
# run gets; the threshold is our judgement, not a published figure.
LOW_SCALING_EFFICIENCY = 0.7


def low_efficiency_warning(compute_s: float, comm: CommEstimate, *, bubble_s: float = 0.0,
                           threshold: float = LOW_SCALING_EFFICIENCY) -> str | None:
    """One line when the scaling efficiency is below ``threshold``: what waits, on which link, what helps.

    ``bubble_s`` (s): a pipeline's idle time in the step (Narayanan et al. 2021, sec. 2.2), which waits as exposed
    communication does: the efficiency is then compute / (compute + exposed communication + overlap slowdown +
    bubble)."""
    step_s = compute_s + comm.cost_s + bubble_s
    eff = compute_s / step_s
    if eff >= threshold:
        return None
    latency_share = comm.latency_s / comm.comm_s if comm.comm_s > 0 else 0.0
    why = f" ({latency_share:.0%} of it per-message latency)" if latency_share >= 0.5 else ""
    helps = "larger gradient buckets, " if latency_share >= 0.5 else ""
    bubble = f" and {bubble_s:.3g} s on the pipeline bubble" if bubble_s > 0 else ""
    slowed = (f" ({comm.slowdown_s:.3g} s of it compute slowed by the collectives it hides)"
              if comm.slowdown_s >= 0.05 * comm.cost_s else "")
    return (f"scaling efficiency {eff:.0%} on {comm.n_gpus} GPUs: {comm.cost_s:.3g} s of each {step_s:.3g} s "
            f"step waits on communication over {comm.link}{slowed}{why}{bubble}; {helps}a larger batch (up to the "
            "critical batch size), fewer GPUs or a faster interconnect would help")
