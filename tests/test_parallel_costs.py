"""Communication volume (ZeRO paper ratios, ring arithmetic) and energy (BLOOM's published kWh)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.costs import BLOOM_CLUSTER_OVERHEAD, energy_cost, hours_for_budget_usd
from flopscalc.errors import DomainError, UsageError
from flopscalc.hardware import get_gpu
from flopscalc.perf.collectives import comm_volume_bytes
from flopscalc.perf.parallel import data_parallel_comm, scaling_efficiency


def test_two_gpu_ring_all_reduce_moves_exactly_one_buffer():
    # A 2-process ring all-reduce: reduce-scatter sends half the buffer, all-gather the other half.
    assert comm_volume_bytes(1000, 2, 0, grad_bytes_per_param=4) == 4000


def test_zero_volumes_follow_the_zero_paper():
    # Rajbhandari et al. 2020 sec. 7.2: stages 1-2 move 2 Psi like DP, stage 3 moves 3 Psi (1.5x).
    n, g = 1.5e9, 64
    dp = comm_volume_bytes(n, g, 0, grad_bytes_per_param=2, param_bytes_per_param=2)
    assert comm_volume_bytes(n, g, 1, grad_bytes_per_param=2, param_bytes_per_param=2) == pytest.approx(dp)
    assert comm_volume_bytes(n, g, 2, grad_bytes_per_param=2, param_bytes_per_param=2) == pytest.approx(dp)
    assert comm_volume_bytes(n, g, 3, grad_bytes_per_param=2, param_bytes_per_param=2) == pytest.approx(1.5 * dp)
    # and 2 Psi is the large-n limit of the ring's 2 (n-1)/n
    assert dp == pytest.approx(2 * n * 2, rel=1 / g + 1e-12)


def test_gpt2_small_on_eight_a100s_by_hand():
    # 124,439,808 fp32 gradients, 8 GPUs: 2 x 7/8 x 4 bytes each = 871.1 MB; at 0.7 x 300 GB/s: 4.148 ms.
    # Plus per-message latency: 497.8 MB of gradients in 19 DDP buckets of 25 MiB, each a ring all-reduce of
    # 2 x 7 steps at NCCL's NVLink 3.4 us plus its 8.4 us base (tuning.cc): 19 x 56 us = 1.064 ms.
    c = data_parallel_comm(124_439_808, 8, 0, gpu=get_gpu("a100-80gb"))
    assert c.volume_bytes == pytest.approx(2 * 7 / 8 * 4 * 124_439_808)
    assert c.n_messages == 19 and c.latency_s == pytest.approx(19 * 56e-6)
    assert c.comm_s == pytest.approx(2 * 7 / 8 * 4 * 124_439_808 / 210e9 + 19 * 56e-6)
    assert c.link == "NVLink"


def test_eight_a100_all_reduce_time_matches_nccl_tests():
    # nccl-tests all_reduce_perf on 8x A100-SXM 80GB reports a bus bandwidth of ~200 GB/s for large buffers
    # (NVIDIA/nccl-tests issue #149); time = bytes x 2(n-1)/n / busbw (nccl-tests doc/PERFORMANCE.md).
    # One 1 GB all-reduce, as nccl-tests times it (one message): model 8.39 ms vs 8.75 measured (-4%).
    buffer_bytes = 1e9
    measured_s = buffer_bytes * 2 * 7 / 8 / 200e9
    c = data_parallel_comm(buffer_bytes / 4, 8, 0, gpu=get_gpu("a100-80gb"), bucket_bytes=buffer_bytes)
    assert c.n_messages == 1
    assert c.comm_s == pytest.approx(measured_s, rel=0.06)


def test_many_nodes_cross_the_network_once_per_ring():
    # NCCL builds one ring per NIC and each leaves the node once (tuning.cc: multi-node bus bandwidth =
    # channels x NIC): a DGX H100's eight 400 Gb/s NICs carry 8 x 47 = 376 GB/s, more than the NVLink ring's
    # 0.7 x 450 = 315, so two nodes keep NVLink's bandwidth and only pay the longer ring's latency.
    h100 = get_gpu("h100")
    inside = data_parallel_comm(1e9, 8, 0, gpu=h100)
    across = data_parallel_comm(1e9, 16, 0, gpu=h100)
    assert across.bus_bytes_per_s == inside.bus_bytes_per_s == pytest.approx(315e9)
    assert across.latency_s > inside.latency_s and across.link == "NVLink"
    # With one 100 Gb/s NIC per GPU the network is slower than the links inside: 8 x 12.5 x 0.94 = 94 GB/s
    slow = data_parallel_comm(1e9, 16, 0, 450e9, network_bytes_per_s=12.5e9)
    assert slow.link.startswith("network") and slow.bus_bytes_per_s == pytest.approx(8 * 12.5e9 * 0.94)


def test_backward_hides_communication_up_to_its_length_but_not_the_last_bucket():
    c = data_parallel_comm(1e9, 8, 0, 32e9, backward_s=0.1)
    assert c.hidden_s == pytest.approx(0.1) and c.exposed_s == pytest.approx(c.comm_s - 0.1)
    # DDP reduces its last 25 MiB bucket after backward: 2 x 7/8 x 25 MiB at 0.7 x 32 GB/s = 2.05 ms, plus one
    # ring all-reduce's latency at NCCL's PCI hop (a bare link): 8.4 + 14 x 5.7 us = 88.2 us
    never_hidden = data_parallel_comm(1e9, 8, 0, 32e9, backward_s=100).exposed_s
    assert never_hidden == pytest.approx(2 * 7 / 8 * 25 * 2**20 / 22.4e9 + 88.2e-6)


@settings(max_examples=50, deadline=None)
@given(n=st.floats(1e6, 1e11), g=st.integers(2, 64), compute=st.floats(1e-3, 10))
def test_efficiency_falls_with_more_gpus_and_rises_with_faster_links(n, g, compute):
    slow = data_parallel_comm(n, g, 0, 16e9)
    fast = data_parallel_comm(n, g, 0, 450e9)
    more = data_parallel_comm(n, g + 1, 0, 16e9)
    assert 0 < scaling_efficiency(compute, slow) <= scaling_efficiency(compute, fast) <= 1
    assert scaling_efficiency(compute, more) <= scaling_efficiency(compute, slow)


def test_one_gpu_needs_no_link_and_bad_stage_is_usage_error():
    assert data_parallel_comm(1e9, 1, 0, None).comm_s == 0
    with pytest.raises(UsageError, match="not several"):
        data_parallel_comm(1e9, 8, 0, 32e9, gpu=get_gpu("h100"))
    with pytest.raises(UsageError, match="ZeRO stage"):
        comm_volume_bytes(1e9, 8, 4)
    with pytest.raises(UsageError, match="interconnect"):
        data_parallel_comm(1e9, 8, 0, None)


def test_bloom_gpu_energy_matches_the_published_kwh():
    # Luccioni et al. 2023: 1,082,990 A100 GPU-hours x 0.4 kW = 433,196 kWh of dynamic GPU energy.
    gpu = get_gpu("a100-80gb")
    assert gpu.board_power_w == 400
    e = energy_cost(gpu, 384, 1_082_990 / 384 * 3600, utilization=1.0)
    assert e.facility_energy_kwh == pytest.approx(433_196, rel=1e-5)
    assert e.gpu_hours == pytest.approx(1_082_990)
    # with the paper's idle/infrastructure share on top: 689,842 kWh
    total = energy_cost(gpu, 384, 1_082_990 / 384 * 3600, 1.0, system_overhead=BLOOM_CLUSTER_OVERHEAD)
    assert total.facility_energy_kwh == pytest.approx(433_196 + 256_646, rel=1e-5)


def test_year_of_4070ti_electricity_by_hand():
    # 285 W x 0.9 x 8760 h = 2246.9 kWh; at $0.30/kWh: $674
    e = energy_cost(get_gpu("4070ti"), 1, 365 * 86400, 0.9, electricity_usd_per_kwh=0.30, pue=1.0)
    assert e.facility_energy_kwh == pytest.approx(285 * 0.9 * 8760 / 1000)
    assert e.electricity_usd == pytest.approx(285 * 0.9 * 8760 / 1000 * 0.30)
    assert e.cloud_usd is None


def test_money_budget_buys_hours():
    assert hours_for_budget_usd(500, 8, 2.5) == pytest.approx(25)
    with pytest.raises(UsageError):
        hours_for_budget_usd(0, 8, 2.5)


def test_energy_without_board_power_is_a_domain_error():
    gpu = get_gpu("tpu-v5e")
    assert gpu.board_power_w is None  # no public per-chip power figure in our sources
    with pytest.raises(DomainError, match="board power"):
        energy_cost(gpu, 1, 3600, 1.0, electricity_usd_per_kwh=0.2)
