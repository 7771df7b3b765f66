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
[5] Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH",
    IJHPCA 19(1), sec. 4: ring all-reduce = 2 (p-1) alpha + 2 (p-1)/p n beta (+ the reduction).
[6] NVIDIA NCCL, src/graph/tuning.cc (v2.19+, ncclTopoTuneModel): ring latency = baseLat + (nsteps - nInterSteps)
    x intraLat + nInterSteps x interLat, nsteps = 2 (n-1) for all-reduce and n-1 for reduce-scatter/all-gather;
    ring/Simple baseLat 8.4 us, hwLat NVLink 3.4, PCI 5.7, NET 14.0 us; multi-node bus bandwidth =
    channels x per-NIC bandwidth.
[7] NVIDIA's forum statement that the GeForce RTX 4090 does not support peer-to-peer, as reported by PurePC
    (purepc.pl, "NVIDIA GeForce RTX 4090 ... nie obsluguje profesjonalnego trybu peer-to-peer"); the patched
    driver github.com/tinygrad/open-gpu-kernel-modules exists to re-enable it; sgl-project/sglang PR #39605:
    two RTX 5070 Ti, "no NVLink, no PCIe P2P", NCCL falls back to its SHM (host memory) transport.
[8] NVIDIA/nccl issue #1639: 8x RTX 5090 on 2x Xeon 8480+ (16 DDR5 DIMMs) reach 28 GB/s all-reduce bus
    bandwidth, 4 of them 35 GB/s; S. Jeaugey (NVIDIA): "On PCI systems, the performance you get is usually
    determined by the bandwidth your CPU and memory can deliver ... 8 flows at 28GB/s in both directions".
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

if TYPE_CHECKING:
    from ..hardware import GpuSpec

# Achieved all-reduce bus bandwidth over the link's per-direction peak. nccl-tests on 8x A100-SXM 80GB reach
# ~200 GB/s of 300 GB/s (NVIDIA/nccl-tests issue #149; 208 GB/s in #178): 0.67-0.69; 8x H100 with
# NCCL_ALGO=RING ~370 of 450 GB/s (S. Jeaugey, nccl-tests #212): 0.82. PCIe systems fare worse (8x RTX 5090:
# 28 of 64 GB/s, [8]). We use 0.7, the conservative end, and make it a knob.
ALLREDUCE_BUS_EFFICIENCY = 0.7
# GPUs per node before traffic leaves the node's own links (an HGX/DGX board holds 8).
GPUS_PER_NODE = 8
# Network bandwidth per GPU between nodes: one 400 Gb/s NIC per GPU = 50 GB/s per direction (DGX H100 user
# guide: 8x ConnectX-7 400 Gb/s for 8 GPUs).
NETWORK_BYTES_PER_S_PER_GPU = 50e9
# Network per GPU by architecture, bytes/s per direction: Ampere data-centre parts ship in DGX A100 with one
# 200 Gb/s HDR HCA per GPU (Narayanan et al. 2021, arXiv:2104.04473, sec. 5: "eight NVIDIA Mellanox 200Gbps HDR
# Infiniband HCAs" per node); everything else gets DGX H100's 400 Gb/s (above). One table for both time models
# (`gpu_fabric` here, `layout.cluster.cluster_for`), so one run beyond a node has one network.
NETWORK_BYTES_PER_S_BY_ARCH = {"Ampere": 200e9 / 8}
# Achieved share of a NIC: "For NDR @ 400Gbps you should see 46-48GB/s per NIC" (D. Addison, NVIDIA,
# nccl-tests issue #290): 47 of 50 GB/s.
NETWORK_BUS_EFFICIENCY = 0.94
# Share of the gradient all-reduce that can hide behind the backward pass of the last micro-batch ([3] 3.2.3).
DEFAULT_OVERLAP = 1.0
# Compute that runs alongside a collective is slower by this fraction ([11]: the measured average, 18.9%; the SMs
# NCCL holds on 8x A100, 22%, and H100 FSDP's 30-40% agree in size): a hidden collective of t seconds costs the
# step 0.189 t of slower compute. One figure for every GPU: [11] gives no split by GPU or precision.
OVERLAP_COMPUTE_SLOWDOWN = 0.189
# Gradient bucket of one node: PyTorch DDP's default, bucket_cap_mb=25 (torch.nn.parallel.DistributedDataParallel
# docs); the last bucket is reduced after backward ends and is never hidden.
DDP_BUCKET_BYTES = 25 * 2**20
# ZeRO runs go to DeepSpeed, whose buckets count elements (deepspeed/runtime/zero/config.py): reduce_bucket_size
# = 5e8 for the gradient reduce-scatter, allgather_bucket_size = 5e8 for stages 1-2's parameter all-gather, and
# stage3_prefetch_bucket_size = 5e7 for ZeRO-3's per-layer parameter gathers.
DEEPSPEED_REDUCE_BUCKET_PARAMS = 500_000_000
DEEPSPEED_ALLGATHER_BUCKET_PARAMS = 500_000_000
DEEPSPEED_PREFETCH_BUCKET_PARAMS = 50_000_000
# Megatron-LM (what a plan beyond `flopscalc train` points to) grows its bucket with the data-parallel size so
# the per-message latency stays a fixed share: bucket_size = max(40000000, 1000000 * data_parallel_size) parameters
# (Megatron-LM, megatron/training/training.py, get_model).
MEGATRON_BUCKET_MIN_PARAMS = 40_000_000
MEGATRON_BUCKET_PARAMS_PER_RANK = 1_000_000
# Per-message latency of NCCL's ring with the Simple protocol (the one it picks for MiB-sized buckets) [6]:
# a fixed cost per collective and a cost per ring step on each kind of link.
NCCL_RING_BASE_LATENCY_S = 8.4e-6
NVLINK_HOP_LATENCY_S = 3.4e-6
PCIE_HOP_LATENCY_S = 5.7e-6  # NCCL prices its SHM (host memory) path as a PCI link too
NETWORK_HOP_LATENCY_S = 14.0e-6
# Host path (no peer-to-peer): each ring step writes a chunk into host memory over the sender's PCIe link and
# the receiver reads it over its own [7], so every byte a GPU sends costs the host one write and one read.
# The host of an 8-GPU box: 2 sockets x 8 channels of DDR5-4800 = 614.4 GB/s (4800 MT/s x 8 bytes x 16; JEDEC
# JESD79-5 data rate), the configuration of the 8x RTX 5090 server in [8].
HOST_MEMORY_BYTES_PER_S_8_GPU_SERVER = 614.4e9
# Sustained share of DDR wire rate: STREAM sustains 74-78% (Texas Instruments SPRAD45A Table 3-3: triad 78%,
# copy 77%; SPRACV1B: 73-79% on DDR4); bandwidth-bound code should be judged against STREAM, not the peak
# (Hager & Wellein 2010, sec. 3.1.2).
HOST_MEMORY_EFFICIENCY = 0.75
# GeForce (segment "consumer") generations whose driver refuses PCIe peer-to-peer [7]: Ampere (no P2P over
# PCIe; only the 2-way NVLink bridge of the RTX 3090), Ada Lovelace and Blackwell.
NO_PCIE_P2P_CONSUMER_ARCHITECTURES = ("Ampere", "Ada Lovelace", "Blackwell")


@dataclass(frozen=True)
class Fabric:
    """The links a data-parallel ring crosses: achieved bus bandwidth and per-step latency of each."""

    intra_bus_bytes_per_s: float  # achieved per-direction bus bandwidth inside a node
    intra_hop_s: float  # ring step latency inside a node
    intra_link: str  # "NVLink", "PCIe peer-to-peer", "host memory (no peer-to-peer)", ...
    network_bus_bytes_per_s: float = NETWORK_BYTES_PER_S_PER_GPU * NETWORK_BUS_EFFICIENCY  # achieved, per GPU
    network_hop_s: float = NETWORK_HOP_LATENCY_S
    gpus_per_node: int = GPUS_PER_NODE

    def __post_init__(self):
        for name in ("intra_bus_bytes_per_s", "network_bus_bytes_per_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise UsageError(f"{name.replace('_', ' ')} must be a positive number, got {value}")
        if self.intra_hop_s < 0 or self.network_hop_s < 0:
            raise UsageError("ring step latencies must be at least 0 s")
        if self.gpus_per_node < 1:
            raise UsageError(f"GPUs per node must be at least 1, got {self.gpus_per_node}")

    def n_nodes(self, n_gpus: int) -> int:
        return math.ceil(n_gpus / self.gpus_per_node)

    def bus_bytes_per_s(self, n_gpus: int) -> float:
        """Achieved ring bus bandwidth for ``n_gpus``: the intra-node links, or a node's NICs together if slower.

        NCCL builds one ring per NIC channel; each leaves a node once, so a node's NICs together carry what every
        GPU moves inside it: multi-node bus bandwidth = channels x per-NIC bandwidth [6].
        """
        if self.n_nodes(n_gpus) == 1:
            return self.intra_bus_bytes_per_s
        return min(self.intra_bus_bytes_per_s, self.gpus_per_node * self.network_bus_bytes_per_s)

    def link(self, n_gpus: int) -> str:
        """Which link sets the pace for ``n_gpus``."""
        if self.bus_bytes_per_s(n_gpus) < self.intra_bus_bytes_per_s:
            return "network between nodes"
        return self.intra_link


def fabric_from_link(link_bytes_per_s: float, *, bus_efficiency: float = ALLREDUCE_BUS_EFFICIENCY,
                     hop_s: float = PCIE_HOP_LATENCY_S, gpus_per_node: int = GPUS_PER_NODE,
                     network_bytes_per_s: float = NETWORK_BYTES_PER_S_PER_GPU) -> Fabric:
    """A fabric from a bare per-direction link bandwidth (bytes/s), peer-to-peer, PCIe-like step latency."""
    if not 0 < bus_efficiency <= 1:
        raise UsageError(f"bus efficiency must be in (0, 1], got {bus_efficiency}")
    return Fabric(link_bytes_per_s * bus_efficiency, hop_s, "intra-node",  # [4] bus bandwidth per direction
                  network_bytes_per_s * NETWORK_BUS_EFFICIENCY, NETWORK_HOP_LATENCY_S, gpus_per_node)


def has_peer_to_peer(gpu: GpuSpec, n_gpus: int) -> bool:
    """Whether ``n_gpus`` of ``gpu`` reach each other directly (NVLink or PCIe P2P) rather than through host memory.

    NVIDIA GeForce cards of Ampere and later have no PCIe peer-to-peer [7]; a GeForce NVLink bridge joins
    two cards only (RTX 3090: 2-way bridge). Every other row (workstation, data centre, AMD, TPU) has it.
    """
    consumer_without = (gpu.vendor == "NVIDIA" and gpu.segment == "consumer"
                        and gpu.architecture in NO_PCIE_P2P_CONSUMER_ARCHITECTURES)
    if not consumer_without:
        return True
    return "NVLink" in gpu.interconnect and n_gpus <= 2


def host_path_bus_bytes_per_s(host_link_bytes_per_s: float, n_gpus_per_host: int, *,
                              host_memory_bytes_per_s: float = HOST_MEMORY_BYTES_PER_S_8_GPU_SERVER,
                              bus_efficiency: float = ALLREDUCE_BUS_EFFICIENCY,
                              memory_efficiency: float = HOST_MEMORY_EFFICIENCY) -> float:
    """Ring bus bandwidth through host memory (NCCL SHM transport) for GPUs without peer-to-peer (bytes/s).

    Each GPU sends over its own PCIe link at the measured host-link rate times the ring's bus efficiency, and
    every byte sent is written to and read from host memory once, by all GPUs of the host at once [7, 8]:
    min(eff x link, mem_eff x host memory / (2 x GPUs per host)).
    """
    pcie = bus_efficiency * host_link_bytes_per_s  # [4] each GPU's own link, one direction each way
    memory = memory_efficiency * host_memory_bytes_per_s / (2 * n_gpus_per_host)  # [8] write + read per byte
    return min(pcie, memory)


def gpu_fabric(gpu: GpuSpec, n_gpus: int, *, bus_efficiency: float = ALLREDUCE_BUS_EFFICIENCY,
               host_memory_bytes_per_s: float = HOST_MEMORY_BYTES_PER_S_8_GPU_SERVER,
               network_efficiency: float = NETWORK_BUS_EFFICIENCY) -> Fabric:
    """The fabric ``n_gpus`` of ``gpu`` train over: NVLink, PCIe peer-to-peer, or host memory; network beyond a node.

    The host link of the no-peer-to-peer path is the measured PCIe rate of `offload.host_link_bytes_per_s`
    (25 GB/s at Gen4, by the GPU's PCIe generation). ``network_efficiency``: the achieved share of the network's
    per-GPU bandwidth (`NETWORK_BUS_EFFICIENCY` unless a run's own network states another).
    """
    from .offload import host_link_bytes_per_s  # offload imports this module: import at call time

    if not 0 < network_efficiency <= 1:
        raise UsageError(f"network efficiency must be in (0, 1], got {network_efficiency}")
    if not has_peer_to_peer(gpu, n_gpus):
        per_host = min(n_gpus, GPUS_PER_NODE)
        bus = host_path_bus_bytes_per_s(host_link_bytes_per_s(gpu), per_host, bus_efficiency=bus_efficiency,
                                        host_memory_bytes_per_s=host_memory_bytes_per_s)
        return Fabric(bus, PCIE_HOP_LATENCY_S, "host memory (no peer-to-peer)",
                      network_bytes_per_s(gpu) * network_efficiency)
    if gpu.interconnect_bytes_per_s is None:
        raise UsageError(f"{gpu.name} has no interconnect bandwidth in the database; add interconnect_gb_per_s "
                         "with --gpu-csv to plan for several of them")
    nvlink = "NVLink" in gpu.interconnect
    hop_s = NVLINK_HOP_LATENCY_S if nvlink else PCIE_HOP_LATENCY_S
    return Fabric(gpu.interconnect_bytes_per_s * bus_efficiency, hop_s, "NVLink" if nvlink else "PCIe peer-to-peer",
                  network_bytes_per_s(gpu) * network_efficiency)


def network_bytes_per_s(gpu: GpuSpec) -> float:
    """Network bandwidth per GPU between nodes (bytes/s per direction, raw): by architecture, else DGX H100's."""
    return NETWORK_BYTES_PER_S_BY_ARCH.get(gpu.architecture, NETWORK_BYTES_PER_S_PER_GPU)


def ring_latency_s(n_gpus: int, fabric: Fabric, *, all_reduce: bool = True) -> float:
    """Latency of one ring collective over ``n_gpus`` (s): NCCL's base cost plus one hop latency per ring step [6].

    An all-reduce takes 2 (n-1) steps, a reduce-scatter or all-gather n-1 ([5] sec. 4); of them, 2 x nodes
    (all-reduce) or nodes - 1 cross the network when the ring spans several nodes [6].
    """
    if n_gpus <= 1:
        return 0.0
    nodes = fabric.n_nodes(n_gpus)
    steps = 2 * (n_gpus - 1) if all_reduce else n_gpus - 1
    inter = 0 if nodes == 1 else min(steps, 2 * nodes if all_reduce else nodes - 1)
    # [6]: baseLat + (nsteps - nInterSteps) x intraLat + nInterSteps x interLat
    return NCCL_RING_BASE_LATENCY_S + (steps - inter) * fabric.intra_hop_s + inter * fabric.network_hop_s


def default_bucket_bytes(zero_stage: int, grad_bytes_per_param: float,
                         param_bytes_per_param: float) -> tuple[float, float]:
    """(gradient, parameter) bucket sizes in bytes of the framework that runs ``zero_stage``: PyTorch DDP's
    25 MiB for stage 0, DeepSpeed's element counts for ZeRO 1-3 (see the constants). ZeRO-3 run by FSDP is cut
    into its units instead (`data_parallel_comm`'s ``fsdp_units``: both step models price ZeRO-3 so)."""
    if zero_stage == 0:
        return DDP_BUCKET_BYTES, DDP_BUCKET_BYTES
    gather = DEEPSPEED_PREFETCH_BUCKET_PARAMS if zero_stage == 3 else DEEPSPEED_ALLGATHER_BUCKET_PARAMS
    return DEEPSPEED_REDUCE_BUCKET_PARAMS * grad_bytes_per_param, gather * param_bytes_per_param


def megatron_bucket_bytes(n_gpus: int, grad_bytes_per_param: float) -> float:
    """Megatron-LM's gradient bucket for ``n_gpus`` data-parallel ranks (bytes): max(40M, 1M x ranks) parameters.

    Pass it as ``bucket_bytes`` for runs that would use Megatron-LM instead of DDP or DeepSpeed.
    """
    return max(MEGATRON_BUCKET_MIN_PARAMS, MEGATRON_BUCKET_PARAMS_PER_RANK * n_gpus) * grad_bytes_per_param


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


def comm_volume_bytes(n_params: float, n_gpus: int, zero_stage: int, *, grad_bytes_per_param: float = 4.0,
                      param_bytes_per_param: float = 2.0, grad_accum: int = 1, root_params: float = 0.0) -> float:
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
        Micro-batches per step: ZeRO-3 gathers parameters again for each one, and ZeRO-2 and 3 reduce-scatter the
        gradients after each one, keeping them sharded ([9]); stage 1 and DDP reduce once per step.
    root_params : float
        Parameters of FSDP's root unit (`model.counts.params_outside_blocks`), which ZeRO-3 gathers once per
        micro-batch instead of twice ([10]); 0 gathers every parameter twice (the ZeRO paper's count).
    """
    if n_gpus < 1:
        raise UsageError(f"number of GPUs must be at least 1, got {n_gpus}")
    ring = (n_gpus - 1) / n_gpus  # [1]: each step of a ring moves 1/n of the buffer, n-1 steps per phase
    calls = collectives(n_params, zero_stage, grad_bytes_per_param, param_bytes_per_param, grad_accum, root_params)
    return sum((2 if all_reduce else 1) * ring * total for total, _, all_reduce in calls)  # [1] all-reduce = RS + AG


def collectives(n_params: float, zero_stage: int, grad_bytes_per_param: float, param_bytes_per_param: float,
                grad_accum: int, root_params: float = 0.0) -> list[tuple[float, str, bool]]:
    """The collectives of one optimizer step: (bytes of the whole buffer, "grad", "param" or "root" (the gathers of
    FSDP's root unit, [10]), whether an all-reduce), the one list `comm_volume_bytes` and `data_parallel_comm` (its
    buckets or FSDP units, and latency) both read."""
    if zero_stage not in (0, 1, 2, 3):
        raise UsageError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero_stage}")
    grad_total, param_total = n_params * grad_bytes_per_param, n_params * param_bytes_per_param
    if zero_stage == 0:
        return [(grad_total, "grad", True)]  # [1] one all-reduce of all gradients
    # [2] 7.2.1: reduce-scatter the gradients, all-gather the updated parameters: 2 Psi in all; stages 2-3
    # reduce-scatter after every micro-batch [9]
    calls = [(grad_total, "grad", False)] * gradient_reductions(zero_stage, grad_accum)
    if zero_stage < 3:
        return calls + [(param_total, "param", False)]
    # [2] 7.2.2: parameters all-gathered for forward and again for backward, per micro-batch (3 Psi at accum 1);
    # the root unit once [10]
    root_total = root_params * param_bytes_per_param
    calls += [(param_total - root_total, "param", False)] * (2 * grad_accum)
    return calls + ([(root_total, "root", False)] * grad_accum if root_total > 0 else [])


def hiding_window_s(zero_stage: int, grad_accum: int, backward_s: float, passes_s: float) -> float:
    """Compute time data-parallel traffic can hide behind (s), from one micro-batch's backward (``backward_s``) and
    all its passes (``passes_s``): FSDP/ZeRO-3 prefetches each unit's gathers during every pass of every micro-batch
    ([3] sec. 3.3; Zhao et al. 2023 sec. 3.3.2-3.3.3); sharded gradients (stage 2) reduce behind each micro-batch's
    backward ([9]); DDP and stage 1 reduce behind the last backward only."""
    if zero_stage == 3:
        return passes_s * grad_accum
    return backward_s * gradient_reductions(zero_stage, grad_accum)


def gradient_reductions(zero_stage: int, grad_accum: int) -> int:
    """Gradient reductions per optimizer step: one per micro-batch where gradients are sharded (ZeRO-2 and 3 [9]:
    each micro-batch's gradients are reduce-scattered into this rank's shard), else one (DDP's ``no_sync``; ZeRO-1
    accumulates the full gradients locally)."""
    return grad_accum if zero_stage >= 2 else 1


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


def fsdp_messages(kind: str, fsdp_units: int, root_params: float) -> int:
    """Collectives FSDP sends for one entry of `collectives` ([12]): a gradient reduce-scatter per unit and the
    root's, a parameter gather per unit (the blocks'; the root's entry is its own, one gather)."""
    if kind == "grad":
        return fsdp_units + (1 if root_params > 0 else 0)
    return fsdp_units if kind == "param" else 1


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
