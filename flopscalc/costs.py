"""Energy and money: what a run draws from the wall and what it costs, from the database's board power.

Board power (TGP/TDP) is the most a card draws under sustained load; training kernels keep a GPU near it
while busy, so energy = GPUs x board power x busy time is an upper-bound-ish estimate of the GPUs alone. The
rest of the machine (CPU, memory, fans, power-supply losses) and the data centre's cooling are separate,
stated factors.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DomainError, UsageError
from .hardware import GpuSpec
from .units import SECONDS_PER_HOUR

JOULES_PER_KWH = 1000.0 * SECONDS_PER_HOUR  # 1 kWh = 1000 W x 3600 s
# Whole-system power over GPU board power. Default 1.0: the GPUs alone, stated as such in every plan. For
# reference, BLOOM's training drew 433,196 kWh of GPU (dynamic) energy and 256,646 kWh more for idle and
# infrastructure (Luccioni et al. 2023, "Estimating the Carbon Footprint of BLOOM", JMLR 24(253), dynamic vs.
# idle consumption of the final training run): a factor of 1.59.
DEFAULT_SYSTEM_OVERHEAD = 1.0
BLOOM_CLUSTER_OVERHEAD = (433_196 + 256_646) / 433_196  # Luccioni et al. 2023, dynamic + idle over dynamic
# BLOOM's own site: held out on GPT-3's 1,287 MWh (Patterson et al. 2021, Table 4) it overshoots by 45%, so it is
# never a default (tests/test_runs_heldout.py)
# Power usage effectiveness: 1.0 at home (no separate cooling plant counted); Google reported a fleet-wide
# trailing-twelve-month PUE of 1.10 (Google data centers efficiency page, 2023).
DEFAULT_PUE = 1.0


@dataclass(frozen=True)
class EnergyCost:
    """Energy and money of a run; every field in base units."""

    n_gpus: int
    wall_clock_s: float
    busy_s: float
    gpu_energy_j: float | None  # GPUs alone at board power while busy (idle not counted); None: power unknown
    system_overhead: float
    pue: float
    electricity_usd_per_kwh: float | None
    cloud_usd_per_gpu_hour: float | None

    @property
    def energy_known(self) -> bool:
        """False when the database has no board power for the GPU: energy is unknown, not zero."""
        return self.gpu_energy_j is not None

    @property
    def facility_energy_j(self) -> float | None:
        """Energy at the meter: GPUs x system overhead x PUE (J); None when the board power is unknown."""
        if self.gpu_energy_j is None:
            return None
        return self.gpu_energy_j * self.system_overhead * self.pue

    @property
    def facility_energy_kwh(self) -> float | None:
        """`facility_energy_j` in kWh; None when the board power is unknown."""
        if self.facility_energy_j is None:
            return None
        return self.facility_energy_j / JOULES_PER_KWH

    @property
    def gpu_hours(self) -> float:
        return self.n_gpus * self.wall_clock_s / SECONDS_PER_HOUR

    @property
    def electricity_usd(self) -> float | None:
        if self.electricity_usd_per_kwh is None or self.facility_energy_kwh is None:
            return None
        return self.facility_energy_kwh * self.electricity_usd_per_kwh

    @property
    def cloud_usd(self) -> float | None:
        if self.cloud_usd_per_gpu_hour is None:
            return None
        return self.gpu_hours * self.cloud_usd_per_gpu_hour


def energy_cost(
    gpu: GpuSpec,
    n_gpus: int,
    wall_clock_s: float,
    utilization: float,
    *,
    electricity_usd_per_kwh: float | None = None,
    cloud_usd_per_gpu_hour: float | None = None,
    system_overhead: float = DEFAULT_SYSTEM_OVERHEAD,
    pue: float = DEFAULT_PUE,
) -> EnergyCost:
    """Energy (J) and cost (USD) of ``n_gpus`` x ``gpu`` held for ``wall_clock_s``, busy ``utilization`` of it.

    Energy is None (unknown) when the database has no board power for ``gpu``.
    """
    if gpu.board_power_w is None and electricity_usd_per_kwh is not None:
        raise DomainError(f"{gpu.name} has no board power in the GPU database, so energy cannot be estimated; "
                          "add board_power_w with --gpu-csv")
    for name, v in (("system overhead", system_overhead), ("PUE", pue)):
        if not v >= 1:
            raise UsageError(f"{name} must be at least 1, got {v}")
    busy_s = wall_clock_s * utilization
    # E = P t at board power while busy; no board power in the database -> unknown (None), never 0 J
    gpu_j = None if gpu.board_power_w is None else n_gpus * gpu.board_power_w * busy_s
    return EnergyCost(n_gpus, wall_clock_s, busy_s, gpu_j, system_overhead, pue, electricity_usd_per_kwh,
                      cloud_usd_per_gpu_hour)


def hours_for_budget_usd(budget_usd: float, n_gpus: int, cloud_usd_per_gpu_hour: float) -> float:
    """Wall-clock hours a money budget rents ``n_gpus`` for at a cloud price per GPU-hour."""
    if not budget_usd > 0 or not cloud_usd_per_gpu_hour > 0:
        raise UsageError("a money budget needs a positive amount and a positive price per GPU-hour "
                         "(e.g. --budget-usd 500 --usd-per-gpu-hour 2.5)")
    return budget_usd / (n_gpus * cloud_usd_per_gpu_hour)
