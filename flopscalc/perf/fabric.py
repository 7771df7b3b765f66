"""The links a data-parallel ring crosses, and the latency of one ring collective over them.

A `Fabric` is the achieved bus bandwidth and per-step latency inside a node and between nodes [4, 6]; it comes from
the GPU (`gpu_fabric`): NVLink or PCIe peer-to-peer inside a node, host memory for GeForce cards without
peer-to-peer [7, 8], and the network between nodes. `ring_latency_s` is the alpha of the alpha-beta model [5]:
NCCL's base cost plus one hop latency per ring step [6].

References
----------
One numbering for the data-parallel modules (`perf.parallel`, `perf.fabric`, `perf.collectives`): each lists
the references its code cites.

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
# Where each network figure comes from, as a plan or step report states it beside the figure.
NETWORK_SOURCE_BY_ARCH = {
    "Ampere": "DGX A100: one 200 Gb/s HDR InfiniBand HCA per GPU (Narayanan et al. 2021, sec. 5)",
}
DEFAULT_NETWORK_SOURCE = "DGX H100: one 400 Gb/s ConnectX-7 per GPU (NVIDIA DGX H100 user guide)"
BITS_PER_BYTE = 8
# The --network-gbps a cluster can have, Gb/s per GPU (both bounds accepted). Floor: Fast Ethernet, 100 Mb/s
# (IEEE 802.3u 100BASE-TX), the slowest Ethernet still shipped. Ceiling: 100,000, above every link a GPU has:
# 125x the fastest NIC (NVIDIA ConnectX-8 SuperNIC, 800 Gb/s) and 14x NVLink 5's 900 GB/s per direction
# (7,200 Gb/s; NVIDIA Blackwell datasheet, 1.8 TB/s per GPU both ways), so a figure past it is a unit slip
# (bits or Mb/s typed as Gb/s) rather than a network.
MIN_NETWORK_GBPS = 0.1
MAX_NETWORK_GBPS = 1e5
# Achieved share of a NIC: "For NDR @ 400Gbps you should see 46-48GB/s per NIC" (D. Addison, NVIDIA,
# nccl-tests issue #290): 47 of 50 GB/s.
NETWORK_BUS_EFFICIENCY = 0.94
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
               network_efficiency: float = NETWORK_BUS_EFFICIENCY,
               cluster_network_bytes_per_s: float | None = None) -> Fabric:
    """The fabric ``n_gpus`` of ``gpu`` train over: NVLink, PCIe peer-to-peer, or host memory; network beyond a node.

    The host link of the no-peer-to-peer path is the measured PCIe rate of `offload.host_link_bytes_per_s`
    (25 GB/s at Gen4, by the GPU's PCIe generation). ``network_efficiency``: the achieved share of the network's
    per-GPU bandwidth (`NETWORK_BUS_EFFICIENCY` unless a run's own network states another).
    ``cluster_network_bytes_per_s``: the cluster's network per GPU between nodes (raw, bytes/s per direction; a
    plan's --network-gbps, `layout.cluster_for`); None: the GPU generation's (`network_bytes_per_s`).
    """
    from .offload import host_link_bytes_per_s  # offload imports this module: import at call time

    if not 0 < network_efficiency <= 1:
        raise UsageError(f"network efficiency must be in (0, 1], got {network_efficiency}")
    net = network_bytes_per_s(gpu) if cluster_network_bytes_per_s is None else cluster_network_bytes_per_s
    if not has_peer_to_peer(gpu, n_gpus):
        per_host = min(n_gpus, GPUS_PER_NODE)
        bus = host_path_bus_bytes_per_s(host_link_bytes_per_s(gpu), per_host, bus_efficiency=bus_efficiency,
                                        host_memory_bytes_per_s=host_memory_bytes_per_s)
        return Fabric(bus, PCIE_HOP_LATENCY_S, "host memory (no peer-to-peer)",
                      net * network_efficiency)
    if gpu.interconnect_bytes_per_s is None:
        raise UsageError(f"{gpu.name} has no interconnect bandwidth in the database; add interconnect_gb_per_s "
                         "with --gpu-csv to plan for several of them")
    nvlink = "NVLink" in gpu.interconnect
    hop_s = NVLINK_HOP_LATENCY_S if nvlink else PCIE_HOP_LATENCY_S
    return Fabric(gpu.interconnect_bytes_per_s * bus_efficiency, hop_s, "NVLink" if nvlink else "PCIe peer-to-peer",
                  net * network_efficiency)


def network_bytes_per_s(gpu: GpuSpec) -> float:
    """Network bandwidth per GPU between nodes (bytes/s per direction, raw): by architecture, else DGX H100's."""
    return NETWORK_BYTES_PER_S_BY_ARCH.get(gpu.architecture, NETWORK_BYTES_PER_S_PER_GPU)


def network_source(gpu: GpuSpec) -> str:
    """Where `network_bytes_per_s` of ``gpu`` comes from: the reference system its generation ships in."""
    return NETWORK_SOURCE_BY_ARCH.get(gpu.architecture, DEFAULT_NETWORK_SOURCE)


def network_gbps(bytes_per_s: float) -> float:
    """A network bandwidth in gigabits per second (the unit NICs are sold in) from bytes/s."""
    return bytes_per_s * BITS_PER_BYTE / 1e9


def network_words(bytes_per_s: float, source: str) -> str:
    """The network between nodes as the reports print it: its Gb/s per GPU, then where the figure comes from."""
    return f"{network_gbps(bytes_per_s):g} Gb/s per GPU; {source}"


def check_network_gbps(network_gbps: float | None, n_gpus: int, gpus_per_node: int = GPUS_PER_NODE) -> None:
    """Refuse a --network-gbps outside [`MIN_NETWORK_GBPS`, `MAX_NETWORK_GBPS`] (infinite and NaN too), or one that
    no traffic would cross: ``n_gpus`` that fit one node of ``gpus_per_node`` never use the network between nodes
    (`step` and `plan` share this rule)."""
    if network_gbps is None:
        return
    if not MIN_NETWORK_GBPS <= network_gbps <= MAX_NETWORK_GBPS:  # NaN too
        raise UsageError(f"--network-gbps must be a positive number of Gb/s per GPU, from {MIN_NETWORK_GBPS:g} (Fast Ethernet) "
                         f"to {MAX_NETWORK_GBPS:.0f} (past any NIC or NVLink), got {network_gbps!r}; e.g. 400 (one "
                         "ConnectX-7 per GPU)")
    if n_gpus <= gpus_per_node:
        raise UsageError(f"--network-gbps sets the network between nodes, and {n_gpus} GPU(s) fit one node of "
                         f"{gpus_per_node}, so it would be ignored: drop it, or give --n-gpus above {gpus_per_node}")


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
