"""A cluster for layout planning: GPUs per node, the intra-node link, and the network per GPU between nodes.

The intra-node link is `fabric.gpu_fabric`'s (NVLink, PCIe peer-to-peer or host memory, from the GPU row);
the network per GPU defaults by GPU generation to the NICs of the reference system it ships in, and
``--network-gbps`` overrides it.

References
----------
[1] Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
    arXiv:2104.04473, sec. 5: Selene, DGX A100 nodes, "8 NVIDIA 80-GB A100 GPUs connected to each other by
    NVLink and NVSwitch" and "eight NVIDIA Mellanox 200Gbps HDR Infiniband HCAs" per node.
[2] NVIDIA DGX H100 user guide (hardware overview): 8x ConnectX-7 400 Gb/s for 8 GPUs (the figure
    `fabric.NETWORK_BYTES_PER_S_PER_GPU` carries).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..hardware import GpuSpec
from ..perf.fabric import (
    BITS_PER_BYTE,
    GPUS_PER_NODE,
    NETWORK_BUS_EFFICIENCY,
    NETWORK_HOP_LATENCY_S,
    Fabric,
    check_network_gbps,
    gpu_fabric,
    network_bytes_per_s,
    network_source,
)

# Network per GPU by architecture and its source: `fabric.NETWORK_BYTES_PER_S_BY_ARCH` and
# `fabric.NETWORK_SOURCE_BY_ARCH` (Ampere data-centre parts ship in DGX A100 with one 200 Gb/s HDR HCA per GPU, [1];
# everything else gets DGX H100's 400 Gb/s per GPU, [2]).


@dataclass(frozen=True)
class Cluster:
    """Where a layout runs: the GPU, how many, and the links between them."""

    gpu: GpuSpec
    n_gpus: int
    gpus_per_node: int
    intra_bus_bytes_per_s: float  # achieved ring bus bandwidth inside a node, per direction
    intra_hop_s: float  # one ring step's latency inside a node
    intra_link: str
    network_bytes_per_s: float  # raw per GPU, per direction
    network_source: str

    def __post_init__(self):
        if self.n_gpus < 1 or self.gpus_per_node < 1:
            raise UsageError(f"GPU counts must be positive, got {self.n_gpus} GPUs, {self.gpus_per_node} per node")
        if not self.network_bytes_per_s > 0:
            raise UsageError(f"network bandwidth must be positive, got {self.network_bytes_per_s} bytes/s")

    @property
    def network_bus_bytes_per_s(self) -> float:
        """Achieved network bandwidth per GPU (`fabric.NETWORK_BUS_EFFICIENCY` of the NIC)."""
        return self.network_bytes_per_s * NETWORK_BUS_EFFICIENCY

    def fabric(self, group_per_node: int) -> Fabric:
        """The fabric one communication group crosses when ``group_per_node`` of its members share a node."""
        return Fabric(self.intra_bus_bytes_per_s, self.intra_hop_s, self.intra_link, self.network_bus_bytes_per_s,
                      NETWORK_HOP_LATENCY_S, max(1, group_per_node))

    def link_bytes_per_s(self, span: int) -> float:
        """Achieved per-GPU bandwidth of a group whose ranks lie ``span`` consecutive GPUs apart in all (inside a
        node when the whole span fits one)."""
        return self.intra_bus_bytes_per_s if span <= self.gpus_per_node else self.network_bus_bytes_per_s

    def hop_s(self, span: int) -> float:
        """One ring step's latency for a group spanning ``span`` consecutive GPUs."""
        return self.intra_hop_s if span <= self.gpus_per_node else NETWORK_HOP_LATENCY_S


def cluster_for(gpu: GpuSpec, n_gpus: int, *, network_gbps: float | None = None,
                gpus_per_node: int = GPUS_PER_NODE) -> Cluster:
    """The cluster of ``n_gpus`` ``gpu``s: the GPU row's intra-node fabric, the network per GPU by generation
    (or ``network_gbps``, gigabits per second per GPU)."""
    check_network_gbps(network_gbps, n_gpus, gpus_per_node)  # positive, and only where traffic leaves a node
    fab = gpu_fabric(gpu, min(n_gpus, gpus_per_node))
    if network_gbps is not None:
        net, src = network_gbps * 1e9 / BITS_PER_BYTE, f"--network-gbps {network_gbps:g}"
    else:
        net, src = network_bytes_per_s(gpu), network_source(gpu)
    return Cluster(gpu, n_gpus, gpus_per_node, fab.intra_bus_bytes_per_s, fab.intra_hop_s, fab.intra_link, net, src)
