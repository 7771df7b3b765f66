"""Data-parallel training on many GPUs: communication volume and time per step, and scaling efficiency.

Data parallelism (DDP) keeps a full replica per GPU and all-reduces gradients once per optimizer step;
ZeRO stages 1-2 (and FSDP's SHARD_GRAD_OP) replace the all-reduce with a reduce-scatter of gradients plus
an all-gather of updated parameters (the same volume); ZeRO-3 / FSDP FULL_SHARD also all-gathers the
parameters for every forward and backward pass.

References
----------
[1] Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations", J. Parallel
    Distrib. Comput. 69(2): a ring all-reduce sends and receives 2 (n-1)/n of the buffer per process.
[2] Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
    arXiv:1910.02054, sec. 7.2.1 (stages 1-2: 2 Psi, as DP) and sec. 7.2.2 (stage 3: 3 Psi).
[3] Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 13(12),
    sec. 3.2.3: gradient buckets are all-reduced while the backward pass continues (overlap).
[4] NVIDIA nccl-tests, doc/PERFORMANCE.md: bus bandwidth = algorithm bandwidth x 2 (n-1)/n for all-reduce,
    comparable to the link's per-direction bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

# Achieved all-reduce bus bandwidth over the link's per-direction peak. nccl-tests on 8x A100-SXM 80GB reach
# ~200 GB/s of 300 GB/s (NVIDIA/nccl-tests issue #149; 208 GB/s in #178): 0.67-0.69. PCIe systems fare worse
# (8x RTX 5090: 28 of 64 GB/s, NVIDIA/nccl issue #1639). We use 0.7 and make it a knob.
ALLREDUCE_BUS_EFFICIENCY = 0.7
# GPUs per node before traffic leaves the node's own links (an HGX/DGX board holds 8).
GPUS_PER_NODE = 8
# Network bandwidth per GPU between nodes: one 400 Gb/s NIC per GPU = 50 GB/s per direction (DGX H100 user
# guide: 8x ConnectX-7 400 Gb/s for 8 GPUs).
NETWORK_BYTES_PER_S_PER_GPU = 50e9
# Share of the gradient all-reduce that can hide behind the backward pass of the last micro-batch ([3] 3.2.3).
DEFAULT_OVERLAP = 1.0
# The last gradient bucket is reduced after backward ends and is never hidden; DDP's default bucket is 25 MiB
# (torch.nn.parallel.DistributedDataParallel, bucket_cap_mb=25).
DDP_BUCKET_BYTES = 25 * 2**20


@dataclass(frozen=True)
class CommEstimate:
    """Communication of one optimizer step for one GPU, and how much of it the compute does not hide."""

    n_gpus: int
    zero_stage: int
    volume_bytes: float  # bytes each GPU sends (and receives) per optimizer step
    bus_bytes_per_s: float  # achieved per-direction bandwidth used for the estimate
    comm_s: float  # time to move volume_bytes at bus_bytes_per_s
    hidden_s: float  # part overlapped with backward compute
    link: str  # which link limits: intra-node or network

    @property
    def exposed_s(self) -> float:
        """Communication time the step has to wait for (s)."""
        return self.comm_s - self.hidden_s


def comm_volume_bytes(n_params: float, n_gpus: int, zero_stage: int, *, grad_bytes_per_param: float = 4.0,
                      param_bytes_per_param: float = 2.0, grad_accum: int = 1) -> float:
    """Bytes each GPU sends per optimizer step under data parallelism with ZeRO stage 0-3.

    Parameters
    ----------
    n_params : float
        Parameters of the model (count).
    n_gpus : int
        Data-parallel GPUs.
    zero_stage : int
        0 (plain DDP), 1-2 (optimizer state / gradients sharded), 3 (parameters sharded; FSDP FULL_SHARD).
    grad_bytes_per_param : float
        Bytes of one reduced gradient element: 4 when gradients are fp32 (AMP with fp32 parameters), 2 in bf16.
    param_bytes_per_param : float
        Bytes of one all-gathered parameter element (the compute copy, 2 in bf16/fp16).
    grad_accum : int
        Micro-batches per step: ZeRO-3 gathers parameters again for each one.
    """
    if n_gpus < 1:
        raise UsageError(f"number of GPUs must be at least 1, got {n_gpus}")
    if zero_stage not in (0, 1, 2, 3):
        raise UsageError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero_stage}")
    ring = (n_gpus - 1) / n_gpus  # [1]: each step of a ring moves 1/n of the buffer, n-1 steps per phase
    if zero_stage == 0:
        return 2 * ring * n_params * grad_bytes_per_param  # [1] all-reduce = reduce-scatter + all-gather
    # [2] 7.2.1: reduce-scatter the gradients, all-gather the updated parameters: 2 Psi in all
    volume = ring * n_params * grad_bytes_per_param + ring * n_params * param_bytes_per_param
    if zero_stage == 3:
        # [2] 7.2.2: parameters all-gathered for forward and again for backward, per micro-batch (3 Psi at accum 1)
        volume = ring * n_params * grad_bytes_per_param + 2 * grad_accum * ring * n_params * param_bytes_per_param
    return volume


def data_parallel_comm(
    n_params: float,
    n_gpus: int,
    zero_stage: int,
    link_bytes_per_s: float | None,
    *,
    backward_s: float = 0.0,
    grad_bytes_per_param: float = 4.0,
    param_bytes_per_param: float = 2.0,
    grad_accum: int = 1,
    bus_efficiency: float = ALLREDUCE_BUS_EFFICIENCY,
    overlap: float = DEFAULT_OVERLAP,
    gpus_per_node: int = GPUS_PER_NODE,
    network_bytes_per_s: float = NETWORK_BYTES_PER_S_PER_GPU,
) -> CommEstimate:
    """Communication time per optimizer step and the part that backward compute hides.

    ``link_bytes_per_s`` is the GPU's per-direction interconnect bandwidth from the database (NVLink, or
    PCIe when there is none); beyond ``gpus_per_node`` GPUs the ring crosses the network, and the slower of
    the two links sets the pace. ``backward_s`` is the backward time of the last micro-batch, which the
    gradient buckets overlap ([3] sec. 3.2.3); ZeRO-3's parameter gathers are prefetched and counted as
    overlappable the same way.
    """
    if not 0 < bus_efficiency <= 1:
        raise UsageError(f"bus efficiency must be in (0, 1], got {bus_efficiency}")
    if not 0 <= overlap <= 1:
        raise UsageError(f"overlap must be in [0, 1], got {overlap}")
    volume = comm_volume_bytes(n_params, n_gpus, zero_stage, grad_bytes_per_param=grad_bytes_per_param,
                               param_bytes_per_param=param_bytes_per_param, grad_accum=grad_accum)
    if n_gpus == 1:
        return CommEstimate(1, zero_stage, 0.0, float("inf"), 0.0, 0.0, "none (one GPU)")
    if link_bytes_per_s is None:
        raise UsageError("this GPU has no interconnect bandwidth in the database; add interconnect_gb_per_s "
                         "with --gpu-csv to plan for several of them")
    link, bw = "intra-node", link_bytes_per_s
    if n_gpus > gpus_per_node and network_bytes_per_s < link_bytes_per_s:
        link, bw = "network between nodes", network_bytes_per_s
    bus = bw * bus_efficiency  # [4] bus bandwidth is what a ring achieves per direction
    comm_s = volume / bus
    ring = (n_gpus - 1) / n_gpus
    last_bucket_s = min(comm_s, 2 * ring * DDP_BUCKET_BYTES / bus)  # [1] all-reduce of the final bucket
    hidden = min(comm_s - last_bucket_s, overlap * backward_s)
    return CommEstimate(n_gpus, zero_stage, volume, bus, comm_s, hidden, link)


def scaling_efficiency(compute_s: float, comm: CommEstimate) -> float:
    """Share of the ideal n-GPU speed-up kept: compute / (compute + exposed communication)."""
    return compute_s / (compute_s + comm.exposed_s)
