"""The memory engine against published runs that ran: every one must fit its GPU.

Each row of data/published_throughput.csv and data/published_throughput_repeats.csv is a training run that
completed on the GPU it names, with the micro-batch, sequence, sharding, recomputation, precision and kernels the
row states (perf.validation.row_config). A memory estimate above the GPU's capacity for any of them is a wrong
estimate, whatever else it gets right. The test is one-sided (a run that ran bounds the estimate from above only);
the rows come close to it (estimated 0.98 of 80 GiB at most; the MPT rows 0.95; the A100-40GB rows 0.94 of 40 GiB). Before the rows stated MosaicML's fused
cross-entropy kernel and low-precision LayerNorm (llm-foundry's defaults; docs/performance_model.md), 58 of the
96 headline MPT rows were estimated not to fit.
"""

from __future__ import annotations

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.memory import estimate_memory
from flopscalc.perf import validation

ROWS = [*validation.published_rows(), *validation.consumer_rows(), *validation.repeat_rows()]


@pytest.mark.parametrize("row", ROWS, ids=[r["run"] for r in ROWS])
def test_every_published_run_fits_its_gpu(row):
    cfg, setup, _ = validation.row_config(row)
    gpu = get_gpu(row["gpu"])
    peak = estimate_memory(cfg, setup).peak_bytes
    assert peak <= gpu.memory_bytes, f"{row['run']}: {peak / 2**30:.2f} GiB estimated on a {gpu.memory_bytes / 2**30:.0f} GiB GPU"


def test_the_a100_40gb_table_is_among_them_and_fits_40_gb():
    # llm-foundry's A100-40GB table (46 single-node rows, data/published_throughput.csv group 'a100-40gb'): the tightest
    # GPU of the published runs. Observed 2026-11-28: 0.94 of 40 GiB at most (MPT-760M without recomputation at
    # 512-8192 tokens, 24,576 tokens per micro-batch), 0.91 for MPT-3B at 2048 (micro-batch 5), 0.85 for MPT-13B.
    rows = [r for r in ROWS if r["gpu"] == "a100-sxm-40gb"]
    assert len(rows) == 46 and all(r["group"] == "a100-40gb" for r in rows)
    gpu = get_gpu("a100-sxm-40gb")
    fractions = [estimate_memory(*validation.row_config(r)[:2]).peak_bytes / gpu.memory_bytes for r in rows]
    assert max(fractions) <= 1.0


def test_fsdp_sharding_against_torchtitans_8_and_128_gpu_runs():
    # torchtitan benchmarks/llama3_h100_202412_torchtitan.md (commit 31a17bf), Llama 3.1 8B, FSDP2, local batch 2,
    # selective activation checkpointing, eager: Table 1, 8 GPUs, 82.4 GiB; Table 3, 128 GPUs, 67.0 GiB
    # (torch.cuda max_memory_reserved, torchtitan metrics.py). The two runs differ only in how many GPUs share the
    # model states, so their difference (15.4 GiB) tests the sharding, whatever the checkpointing policy (op-level
    # selective, which flopscalc's `selective` does not describe: the absolute peaks are not compared). Sequence
    # 8192 and AdamW from the 8B toml; bf16 parameters under FSDP's mixed precision (torchtitan's defaults).
    # Observed 2026-11-28: 13.0 GiB predicted, -16%: the sharded states alone are 14.0 GiB; the estimate's
    # gradients-while-activations-free overlap (-1.6 GiB at 8 GPUs) takes more than its allocator overhead adds.
    from flopscalc.memory import TrainingSetup
    from flopscalc.model import get_preset

    cfg = get_preset("llama-3.1-8b")
    measured = (82.4 - 67.0) * 2**30

    def error(zero_stage):
        peaks = [estimate_memory(cfg, TrainingSetup(micro_batch=2, seq_len=8192, precision="bf16-mixed", n_gpus=n,
                                                    zero_stage=zero_stage, recompute="selective")).peak_bytes
                 for n in (8, 128)]
        return (peaks[0] - peaks[1]) / measured - 1

    assert abs(error(3)) < 0.20
    # the bound tells the wrong sharding apart: weights left whole (ZeRO-2, -28%) or gradients too (ZeRO-1, -28%)
    assert abs(error(2)) > 0.20 and abs(error(1)) > 0.20


def test_every_option_a_published_row_states_is_read():
    # a row's reduce_dtype or low_precision_norm column that its precision and ZeRO stage do not read would be
    # dropped silently; TrainingSetup.warnings names such an option, and no published row states one
    from flopscalc.memory import TrainingSetup

    for row in ROWS:
        _, setup, _ = validation.row_config(row)
        assert not [w for w in setup.warnings() if "not used" in w], row["run"]
    unread = [TrainingSetup(reduce_fp32=True), TrainingSetup(precision="bf16-pure", zero_stage=3, n_gpus=8,
                                                              reduce_fp32=False),
              TrainingSetup(precision="fp32", low_precision_norm=True)]
    assert all(any("not used" in w for w in s.warnings()) for s in unread)
    read = [TrainingSetup(zero_stage=2, n_gpus=8, reduce_fp32=True), TrainingSetup(low_precision_norm=True)]
    assert not any("not used" in w for s in read for w in s.warnings())
