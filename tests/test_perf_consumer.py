"""The step-time model on consumer (GeForce) GPUs: published single-GPU runs, held out and reported apart.

Every other row of data/published_throughput.csv is an A100/H100 run (MosaicML, llm.c, torchtitan); these are the
only measurements on the cards `flopscalc plan --gpu 4070ti` is about. They are never fitted on (the fitted
fraction is the MosaicML A100 subset's), and `validation.published_rows` (the headline error the planner quotes)
leaves them out, so they are bounded here on their own (docs/performance_model.md, "Consumer GPUs, held out").

Rows (sources in the CSV):
- nanoGPT PR #376 on an RTX 3080: the shakespeare_char config (10.6M parameters, sequence 256, micro-batch 64,
  dropout 0.2), timed three ways: torch.compile + SDPA, eager + SDPA, eager + flash-attn 2 on packed QKV.
- nanoGPT PR #225 on an RTX 4090: GPT-2 124M, config/train_gpt2.py (micro-batch 12 x 40, sequence 1024),
  torch.compile on, the iteration times of its log.
- nanoGPT issue #182 on an RTX 4090: GPT-2 124M at micro-batch 12 x 5, sequence 1024, torch.compile, tokens/s
  derived from the reported 29% MFU; the setup comes from the same user's issue #179 (setup_stated = partial).
"""

from __future__ import annotations

import statistics

import pytest

from flopscalc.flops import palm_flops_per_token
from flopscalc.hardware import get_gpu
from flopscalc.model import count_params
from flopscalc.perf.validation import (
    CONSUMER_GROUP,
    check_row,
    consumer_rows,
    in_fit_subset,
    published_rows,
    row_config,
    validate_consumer,
)

# Issue 11's targets (docs/performance_model.md): median absolute error <= 8%, worst <= 20%. On the four consumer
# rows with a fully stated setup they are NOT met: observed 2026-11-28 on the RTX 3080 +21.8% (compiled), +10.3%
# (eager SDPA), +4.6% (eager flash-attn 2), on the RTX 4090 -18.9% (compiled): median 14.6%, worst 21.8% (at the
# fitted fraction 0.81; at 0.80: +20.6%, +9.3%, +3.6%, -19.6%). The bounds
# below are what is met, rounded up a little, so a regression fails. The constant MFU 0.4 on the same rows: median
# 8.3%, worst 22.1%; on the 3080 rows alone it does better than the model, asserted below as a fact, not hidden.
TARGET_MEDIAN, TARGET_WORST = 0.08, 0.20
CONSUMER_MEDIAN_BOUND = 0.15
CONSUMER_WORST_BOUND = 0.22
# The 4090 row (setup partly stated, throughput derived from a rounded MFU): observed -19.0% (constant: -21.8%).
PARTIAL_WORST_BOUND = 0.21

# nanoGPT's estimate_mfu (model.py): PaLM's 6N + 12 L H Q T per token, N without the position embedding
# (get_num_params(non_embedding=True)), over the A100's bf16 peak whatever the card: 312 TFLOP/s.
NANOGPT_PROMISED_FLOP_PER_S = 312e12


def _nanogpt_flops_per_token(row) -> float:
    cfg, setup, _ = row_config(row)
    params = count_params(cfg)
    n = params.total - params.position_embedding
    return palm_flops_per_token(n, cfg.n_layer, cfg.n_head, cfg.head_dim, setup.seq_len)


def test_consumer_rows_are_single_geforce_runs_with_a_source_and_are_held_out():
    rows = consumer_rows()
    assert [r["run"] for r in rows] == ["nanogpt-shakespeare-char-rtx3080-compile",
                                        "nanogpt-shakespeare-char-rtx3080-eager",
                                        "nanogpt-shakespeare-char-rtx3080-eager-fa2",
                                        "nanogpt-gpt2-124m-rtx4090",
                                        "nanogpt-gpt2-124m-rtx4090-train-gpt2-config"]
    for row in rows:
        assert get_gpu(row["gpu"]).segment == "consumer", row["run"]
        assert row["n_gpus"] == "1" and row["zero_stage"] == "0", row["run"]
        assert "https://github.com/" in row["source"] and float(row["measured_tokens_per_s_per_gpu"]) > 0
        assert row["torch_compile"] in ("true", "false"), row["run"]  # stated: the model prices eager kernels
        assert not in_fit_subset(row["run"])
    # the headline validation (and the error the planner prints) is the other rows only
    assert not any(r.get("group") == CONSUMER_GROUP for r in published_rows())


def test_the_logged_rows_reproduce_nanogpts_printed_mfu_so_shape_batch_and_sequence_are_the_measured_ones():
    # PR #376 prints 'time 48.25ms, mfu 7.48%' etc., PR #225 'time 4628.46ms, mfu 28.91%'; nanoGPT's MFU is a running
    # average (0.9 old + 0.1 new), so an iteration time reproduces it to within a few tenths of a point (observed:
    # 0.24, 0.07, 0.03 points on the 3080 rows, 0.19 on the 4090's). A wrong batch, sequence or accumulation (the
    # 4090 log with nanoGPT's train.py default of 5 instead of the config's 40: 3.6% against 28.9%) misses it.
    rows = [r for r in consumer_rows() if r["setup_stated"] == "full"]
    assert len(rows) == 4
    for row in rows:
        mfu = (_nanogpt_flops_per_token(row) * float(row["measured_tokens_per_s_per_gpu"])
               / NANOGPT_PROMISED_FLOP_PER_S)
        assert mfu == pytest.approx(float(row["reported_mfu"]), abs=0.003), row["run"]


def test_the_4090_row_is_its_reported_mfu_in_tokens_per_second():
    # issue #182: '29% MFU while training GPT-2 124M', nanoGPT's convention at micro-batch 12, sequence 1024
    (row,) = [r for r in consumer_rows() if r["run"] == "nanogpt-gpt2-124m-rtx4090"]
    tokens_per_s = float(row["reported_mfu"]) * NANOGPT_PROMISED_FLOP_PER_S / _nanogpt_flops_per_token(row)
    assert float(row["measured_tokens_per_s_per_gpu"]) == pytest.approx(tokens_per_s, abs=0.1)
    assert row["setup_stated"] == "partial"


def test_consumer_errors_stay_within_the_documented_bounds():
    checks = validate_consumer()
    stated = [c for c in checks if c.setup_stated]
    assert len(stated) == 4
    errors = [abs(c.error) for c in stated]
    assert statistics.median(errors) <= CONSUMER_MEDIAN_BOUND  # target TARGET_MEDIAN (8%): not met
    assert max(errors) <= CONSUMER_WORST_BOUND  # target TARGET_WORST (20%): not met
    partial = [c for c in checks if not c.setup_stated]
    assert len(partial) == 1 and abs(partial[0].error) <= PARTIAL_WORST_BOUND


def test_on_the_3080_rows_the_constant_mfu_is_not_beaten_and_the_model_cannot_tell_the_three_runs_apart():
    # What the consumer rows show, asserted so a change that alters it is seen: the model has no torch.compile or
    # kernel-variant term, so it prices the three 3080 runs identically, while the runs themselves span 16% of
    # throughput (compile slower than eager on this card, as the PR says); the constant MFU 0.4 lands nearer.
    checks = [c for c in validate_consumer() if c.gpu == "rtx-3080"]
    predicted = {c.predicted_tokens_per_s_per_gpu for c in checks}
    assert len(predicted) == 1
    measured = [c.measured_tokens_per_s_per_gpu for c in checks]
    assert max(measured) / min(measured) - 1 == pytest.approx(0.164, abs=0.002)
    model = statistics.median(abs(c.error) for c in checks)
    constant = statistics.median(abs(c.constant_error) for c in checks)
    assert constant < model


def test_dropout_in_the_row_is_priced():
    # nanoGPT's shakespeare_char config trains with dropout 0.2: the row says so and the model prices the masks
    row = consumer_rows()[0]
    _, setup, _ = row_config(row)
    assert setup.dropout
    without = check_row({**row, "dropout": "false"})
    assert without.predicted_tokens_per_s_per_gpu > check_row(row).predicted_tokens_per_s_per_gpu
