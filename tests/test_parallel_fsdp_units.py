"""ZeRO-3 priced as FSDP runs it: one ring collective per wrapped block and pass (perf.parallel [12]).

References, each independent of the code under test:
- the collectives `flopscalc train`'s FSDP2 sends, counted on the wire by tests/test_train_ddp.py (2 layers, 5 steps):
  30 all-gathers at accumulation 1 and 55 at 2, 5 of them the final evaluation's, and 15 / 30 reduce-scatters;
- NCCL's tuning model (src/graph/tuning.cc) for one ring all-gather or reduce-scatter: baseLat 8.4 us + (n - 1 -
  (nodes - 1)) x 3.4 us (NVLink) + (nodes - 1) x 14.0 us (network), worked by hand below;
- the ring's bytes: each rank sends (n - 1) / n of the buffer (Patarasuk & Yuan 2009).
"""

from __future__ import annotations

import pytest

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.model import ModelConfig, count_params
from flopscalc.model.counts import params_outside_blocks
from flopscalc.perf.collectives import comm_volume_bytes
from flopscalc.perf.fabric import gpu_fabric
from flopscalc.perf.parallel import data_parallel_comm

# tests/test_train_ddp.py, test_fsdp_reduce_scatters_after_every_micro_batch: the wire counts of a 2-layer model
WIRE_N_LAYER, WIRE_STEPS, WIRE_EVAL_GATHERS = 2, 5, 5
WIRE_GATHERS = {1: 30, 2: 55}  # by accumulation
WIRE_REDUCE_SCATTERS = {1: 15, 2: 30}
# NCCL tuning.cc ring latency of one all-gather / reduce-scatter over 8-GPU A100 nodes, by hand (seconds)
NCCL_RING_AG_16_A100_S = (8.4 + 14 * 3.4 + 1 * 14.0) * 1e-6  # 2 nodes: 15 steps, 1 between nodes
NCCL_RING_AG_128_A100_S = (8.4 + 112 * 3.4 + 15 * 14.0) * 1e-6  # 16 nodes: 127 steps, 15 between nodes
MPT_125M = ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=2048, vocab_size=50368, bias=True)


def _fsdp(cfg, n_gpus, grad_accum=1, **kw):
    return data_parallel_comm(count_params(cfg).total, n_gpus, 3, gpu=get_gpu("a100-sxm-40gb"),
                              grad_bytes_per_param=2.0, param_bytes_per_param=2.0, grad_accum=grad_accum,
                              root_params=params_outside_blocks(cfg), fsdp_units=cfg.n_layer, **kw)


@pytest.mark.parametrize("accum", [1, 2])
def test_fsdps_collectives_per_step_are_the_ones_counted_on_the_wire(accum):
    cfg = ModelConfig(n_layer=WIRE_N_LAYER, n_head=2, n_embd=32, block_size=32, vocab_size=50304)
    per_step = (WIRE_GATHERS[accum] - WIRE_EVAL_GATHERS + WIRE_REDUCE_SCATTERS[accum]) / WIRE_STEPS
    assert _fsdp(cfg, 2, accum).n_messages == per_step  # 8 and 16: 3 L + 2 per micro-batch


def test_each_collective_pays_nccls_ring_latency_over_every_rank():
    # MPT-125M (12 blocks): 38 collectives a step on any GPU count; their latency grows ~8.6x from 16 to 128 A100s
    small, large = _fsdp(MPT_125M, 16), _fsdp(MPT_125M, 128)
    assert small.n_messages == large.n_messages == 3 * 12 + 2
    assert small.latency_s == pytest.approx(38 * NCCL_RING_AG_16_A100_S, rel=1e-12)
    assert large.latency_s == pytest.approx(38 * NCCL_RING_AG_128_A100_S, rel=1e-12)
    # the bytes are the ZeRO-3 volume whatever the cut: only the latency term depends on the units
    for c, n in ((small, 16), (large, 128)):
        volume = comm_volume_bytes(count_params(MPT_125M).total, n, 3, grad_bytes_per_param=2.0,
                                   param_bytes_per_param=2.0, root_params=params_outside_blocks(MPT_125M))
        assert c.volume_bytes == volume
        assert c.comm_s == pytest.approx(volume / c.bus_bytes_per_s + c.latency_s, rel=1e-12)


def test_deepspeeds_buckets_cut_a_small_model_into_far_fewer_collectives():
    # what the model did before: 5e7-parameter gather buckets and one 5e8-parameter reduce bucket for 125M parameters
    buckets = data_parallel_comm(count_params(MPT_125M).total, 128, 3, gpu=get_gpu("a100-sxm-40gb"),
                                 grad_bytes_per_param=2.0, param_bytes_per_param=2.0,
                                 root_params=params_outside_blocks(MPT_125M))
    assert buckets.n_messages == 6
    assert _fsdp(MPT_125M, 128).latency_s > 6 * buckets.latency_s


@pytest.mark.parametrize("accum", [1, 4])
def test_the_root_units_gather_and_reduce_scatter_are_exposed_at_each_micro_batchs_ends(accum):
    c = _fsdp(MPT_125M, 128, accum, backward_s=10.0)  # compute enough to hide everything else
    fabric = gpu_fabric(get_gpu("a100-sxm-40gb"), 128)
    bus, ring = fabric.bus_bytes_per_s(128), 127 / 128
    root = params_outside_blocks(MPT_125M)  # wte and wpe (tied head) and the final LayerNorm: 40.3M
    edge_s = ring * root * 2.0 / bus + NCCL_RING_AG_128_A100_S  # one gather or reduce-scatter of 16-bit elements
    assert c.exposed_s == pytest.approx(accum * 2 * edge_s, rel=1e-9)
    assert c.hidden_s == pytest.approx(c.comm_s - c.exposed_s, rel=1e-12)


def test_contradictory_or_ignored_fsdp_units_are_refused():
    n = count_params(MPT_125M).total
    gpu = get_gpu("a100-sxm-40gb")
    with pytest.raises(UsageError, match="whole number of at least 1"):
        data_parallel_comm(n, 16, 3, gpu=gpu, fsdp_units=0)
    with pytest.raises(UsageError, match="whole number of at least 1"):
        data_parallel_comm(n, 16, 3, gpu=gpu, fsdp_units=True)
    with pytest.raises(UsageError, match="not both"):
        data_parallel_comm(n, 16, 3, gpu=gpu, fsdp_units=12, bucket_bytes=2**20)
    for stage in (0, 1, 2):  # FSDP's units are what ZeRO-3 gathers; the other stages keep DDP's/DeepSpeed's buckets
        with pytest.raises(UsageError, match="ZeRO-3"):
            data_parallel_comm(n, 16, stage, gpu=gpu, fsdp_units=12)


def test_the_stated_efficiency_path_prices_zero3_as_fsdp_too():
    # `plan --mfu X` prices a step with `planner.options.throughput`; it sent ZeRO-3 in DeepSpeed's buckets after
    # the per-operation and layout models moved to FSDP's units (8fe27b9). FSDP2 sends 3 L + 2 collectives per
    # micro-batch (tests/test_train_ddp.py counts them on the wire): 2 x (3 x 12 + 2) for GPT-2 at accumulation 2.
    from flopscalc.hardware import Precision, get_gpu
    from flopscalc.memory import MemoryPrecision, TrainingSetup
    from flopscalc.model import get_preset
    from flopscalc.planner.options import throughput

    setup = TrainingSetup(micro_batch=4, seq_len=1024, precision=MemoryPrecision.bf16_mixed, grad_accum=2,
                          n_gpus=8, zero_stage=3)
    sp = throughput(get_preset("gpt2"), setup, 8 * 2 * 4 * 1024, get_gpu("h100"), Precision.bf16, 0.4)
    assert sp.comm.n_messages == 2 * (3 * 12 + 2)
