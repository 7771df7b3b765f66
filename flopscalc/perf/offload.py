"""Time that optimizer offload adds to a training step: the host link and the CPU's optimizer update.

ZeRO-Offload (Ren et al. 2021, sec. 4.1, Fig. 5): each step the GPU sends its 16-bit gradients to the CPU,
the CPU runs the optimizer on the fp32 master weights and states it holds, and the updated 16-bit
parameters go back to the GPU. Both legs move bytes through a bandwidth-bound path, so each takes bytes /
bandwidth:

- host link: gradients down and parameters up, per GPU over its own PCIe link (`host_link_bytes_per_s`);
- CPU update: every byte offload keeps in CPU memory (`ModelStates.cpu_offload_bytes`: states, master
  weights, fp32 gradients) crosses the memory bus twice per step (gradients written on arrival and read by
  the update; master weights and states read and written back in place), and the 16-bit copy for the trip
  back is written once; the GPUs of one host share its memory bandwidth.

Nothing of it is counted as hidden behind compute (DeepSpeed can overlap the gradient copy with backward,
and its delayed parameter update hides the CPU step at a cost in staleness; we assume neither), so the
figure is an upper bound on the exposed time at the stated bandwidths, and a lower bound on a slower host.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hardware import GpuSpec
from ..memory.precision import MemoryPrecision
from ..memory.settings import FP32_BYTES, HALF_BYTES, TrainingSetup
from ..memory.states import model_states
from ..model import ModelConfig, count_params
from .fabric import GPUS_PER_NODE

# PCIe 4.0 x16 host<->device copies as measured: ~25 GB/s of the 31.5 GB/s spec (BaM authors,
# ZaidQureshi/bam#54: "the peak x16 PCIe Gen4 is 25GBps"; NVIDIA/nvbandwidth#50 measures 26.3 GB/s).
# Chosen over the spec because copies never reach it.
HOST_LINK_BYTES_PER_S = 25e9
# Each PCIe generation doubles the x16 rate (PCI-SIG: 3.0 15.75, 4.0 31.5, 5.0 63 GB/s per direction); the
# same measured share of it is assumed for generations 3 and 5.
PCIE_GEN_SCALE = {3: 0.5, 4: 1.0, 5: 2.0}
# Host PCIe generation by architecture, from NVIDIA's datasheets (V100 and T4: Gen3; A100, Ada: Gen4; H100,
# H200, B200, RTX 50: Gen5) and AMD's (MI300X: Gen5; MI250X: Gen4), for rows whose interconnect names NVLink.
PCIE_GEN_BY_ARCHITECTURE = {"Volta": 3, "Turing": 3, "Ampere": 4, "Ada Lovelace": 4, "CDNA 2": 4,
                            "Hopper": 5, "Blackwell": 5, "CDNA 3": 5}

# Host memory: DDR5-4800, two channels, 4800 MT/s x 8 bytes x 2 = 76.8 GB/s peak (JEDEC JESD79-5 data rate),
# a common desktop beside a GeForce card; servers with 8-12 channels per socket have several times more.
HOST_MEMORY_BYTES_PER_S = 76.8e9


def pcie_generation(gpu: GpuSpec) -> int:
    """The GPU's host PCIe generation: from its interconnect text ("PCIe 5.0 x16"), else its architecture."""
    for gen in PCIE_GEN_SCALE:
        if f"PCIe {gen}.0" in gpu.interconnect:
            return gen
    return PCIE_GEN_BY_ARCHITECTURE.get(gpu.architecture, 4)  # unknown (e.g. TPU rows): the measured Gen4 rate


def host_link_bytes_per_s(gpu: GpuSpec) -> float:
    """Measured-rate host link of ``gpu`` (bytes/s per direction): 25 GB/s at PCIe 4.0, doubling per generation."""
    return HOST_LINK_BYTES_PER_S * PCIE_GEN_SCALE[pcie_generation(gpu)]


@dataclass(frozen=True)
class OffloadTime:
    """Seconds per optimizer step that offload adds, per GPU (all GPUs run it at the same time)."""

    link_bytes: float  # per GPU, both directions
    cpu_bytes: float  # CPU memory traffic of one host's update
    link_s: float
    cpu_s: float

    @property
    def total_s(self) -> float:
        return self.link_s + self.cpu_s


def offload_time(cfg: ModelConfig, setup: TrainingSetup, *, link_bytes_per_s: float = HOST_LINK_BYTES_PER_S,
                 host_memory_bytes_per_s: float = HOST_MEMORY_BYTES_PER_S,
                 gpus_per_host: int = GPUS_PER_NODE) -> OffloadTime:
    """Host-link and CPU-update time per step for ``setup`` (zero when it does not offload)."""
    if not setup.offload_optimizer:
        return OffloadTime(0.0, 0.0, 0.0, 0.0)
    n = count_params(cfg).total
    shard = n / (setup.n_gpus if setup.zero_stage >= 1 else 1)  # each GPU offloads its ZeRO partition
    wire = FP32_BYTES if setup.precision is MemoryPrecision.fp32 else HALF_BYTES  # bytes per value on the link
    link_bytes = 2 * wire * shard  # gradients down, parameters up (Ren et al. 2021, Fig. 5)
    states = model_states(cfg, setup).cpu_offload_bytes  # per GPU's partition
    per_gpu_cpu = 2 * states + wire * shard  # each byte read and written once; the copy back written once
    cpu_bytes = per_gpu_cpu * min(setup.n_gpus, gpus_per_host)  # the GPUs of one host share its memory
    return OffloadTime(link_bytes, cpu_bytes, link_bytes / link_bytes_per_s, cpu_bytes / host_memory_bytes_per_s)
