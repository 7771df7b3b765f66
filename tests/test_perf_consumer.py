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
- Any-Winter-4079/GPT-3-Small-Pretraining-Experiments: one script (GPT-2 124M with biases, 2**19 tokens a step at
  sequence 1024, torch.compile, bf16 autocast, SDPA, fused AdamW) timed on rented single GPUs; the rows are its GeForce
  RTX 5090 and its workstation-class cards (RTX 6000 Ada, RTX A6000, and the L40S, the RTX 6000 Ada's die).
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

# Issue 11's targets (docs/performance_model.md): median absolute error <= 8%, worst <= 20%. On the eight consumer
# rows with a fully stated setup they are NOT met. Observed 2026-11-28, with the RTX 5090's measured GEMM rate
# (gpu_perf.csv: 1.129 of its datasheet, taken as measured): RTX 3080 +21.8% (compiled), -2.2% (eager SDPA),
# -7.3% (eager flash-attn 2); RTX 4090 -18.9% (compiled); the GPT-3-Small script's RTX 5090 -21.8% (-27.6% capped at
# 1.0, -37.5% at the default fraction 0.803), RTX 6000 Ada +32.6%, L40S -5.3%, RTX A6000 -12.0%: median 15.5%, worst 32.6% (was 37.5%;
# the first four alone: 14.6% / 21.8%; the four GPT-3-Small rows alone: 19.8% / 32.6%, was 22.3% / 37.5%). The bounds
# below are what is met, rounded up a little, so a regression fails. The constant MFU 0.4 on the same eight rows:
# median 18.5%, worst 70.3%; on the 3080 rows alone it does better than the model, asserted below as a fact.
TARGET_MEDIAN, TARGET_WORST = 0.08, 0.20
CONSUMER_MEDIAN_BOUND = 0.16
CONSUMER_WORST_BOUND = 0.33
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
                                        "nanogpt-gpt2-124m-rtx4090-train-gpt2-config",
                                        "gpt3small-124m-runpod-rtx5090",
                                        "gpt3small-124m-runpod-rtx6000ada",
                                        "gpt3small-124m-runpod-l40s",
                                        "gpt3small-124m-runpod-rtxa6000"]
    for row in rows:
        # GeForce or workstation cards; the L40S (a server board of the RTX 6000 Ada's AD102) is the one exception
        assert get_gpu(row["gpu"]).segment in ("consumer", "workstation") or row["gpu"] == "l40s", row["run"]
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
    rows = [r for r in consumer_rows() if r["setup_stated"] == "full" and r["run"].startswith("nanogpt-")]
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
    assert len(stated) == 8
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
    # the two eager runs alike; the compiled one apart only by the fp32 residual stream's kernels, which a compiled
    # graph fuses (perf.ops._pass_shape): observed 413,455 against 366,691 tokens/s (eager +10.3%, +4.6% -> -2.2%,
    # -7.3% once the stream was priced; the compiled row stays +21.8%)
    eager = {c.predicted_tokens_per_s_per_gpu for c in checks if not c.run.endswith("-compile")}
    assert len(predicted) == 2 and len(eager) == 1 and max(predicted) not in eager
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


# The GPT-3-Small script's log (Any-Winter-4079/GPT-3-Small-Pretraining-Experiments, header comments of the script that
# times one GPU at a time) and the same repository's versions/06-gpt-cuda-plot-gpu-speed-cost.py (commit d35221d),
# which lists the faster micro-batch of each GPU as tokens per hour: run -> (printed step time ms, micro-batch,
# accumulation, printed tok/s, toks_per_hr or None). The RTX 5090 and RTX A6000 rows are the slower of the two logged
# micro-batches (16 and 32), not the plot file's (32 and 64): the memory engine estimates those at 36.1 GiB on 32 GiB
# and 69.4 GiB on 48 GiB, where the log reads 24,676 and 47,520 MiB in use (docs/performance_model.md).
GPT3SMALL_LOG = {
    "gpt3small-124m-runpod-rtx5090": (2767.73, 16, 32, 189429.11, None),
    "gpt3small-124m-runpod-rtx6000ada": (4892.75, 32, 16, 107156.05, 385_761_780),
    "gpt3small-124m-runpod-l40s": (3675.58, 32, 16, 142640.82, 513_506_952),
    "gpt3small-124m-runpod-rtxa6000": (5752.56, 32, 16, 91140.01, None),
}
# The script's total_batch_size_in_tokens = 2**19 at seq_len 1024; its parameter count, from its own comment formula
# ('50304*768 + 1024*768 + 12*2*(768+768) + 12*(768*3*768 + 3*768) + ...'), evaluated here as the script writes it.
GPT3SMALL_TOKENS_PER_STEP = 2**19
GPT3SMALL_PARAMS = (50304 * 768 + 1024 * 768 + 12 * 2 * (768 + 768) + 12 * (768 * 3 * 768 + 3 * 768)
                    + 12 * (768 * 768 + 768) + 12 * (768 * 4 * 768 + 4 * 768) + 12 * (768 * 4 * 768 + 768) + 768 + 768)


def test_the_gpt3small_rows_are_the_published_log_and_plot_figures_and_the_scripts_shape():
    rows = {r["run"]: r for r in consumer_rows() if r["run"].startswith("gpt3small-")}
    assert set(rows) == set(GPT3SMALL_LOG)
    for run, (step_ms, micro_batch, accum, printed_tok_s, toks_per_hr) in GPT3SMALL_LOG.items():
        row = rows[run]
        measured = float(row["measured_tokens_per_s_per_gpu"])
        assert measured == pytest.approx(printed_tok_s, abs=0.005)
        if toks_per_hr is not None:
            assert measured == pytest.approx(toks_per_hr / 3600, abs=0.005)
        # the printed batch and accumulation make the script's 2**19 tokens, and the printed time gives the printed
        # tok/s within the time's rounding to 0.01 ms (observed 0.34, 0.05, 0.07, 0.00 tok/s): the batch timed
        assert micro_batch * accum * 1024 == GPT3SMALL_TOKENS_PER_STEP
        assert (int(row["micro_batch"]), int(row["grad_accum"]), int(row["seq_len"])) == (micro_batch, accum, 1024)
        rounding_tok_s = printed_tok_s * 0.005 / step_ms
        assert GPT3SMALL_TOKENS_PER_STEP / (step_ms / 1000) == pytest.approx(printed_tok_s, abs=rounding_tok_s)
        # the row's shape is the script's: the engine's exact count equals the script's own formula
        assert check_row(row).n_params == GPT3SMALL_PARAMS == int(row["n_params_reported"])


def test_what_the_gpt3small_rows_show_geforce_under_predicted_and_two_ad102_cards_the_model_cannot_tell_apart():
    # Asserted so a change that alters it is seen (docs/performance_model.md, "Consumer GPUs, held out").
    checks = {c.run: c for c in validate_consumer()}
    # Every GeForce GPT-2-124M row runs faster than the model says (observed: 4090 -18.9% and -19.0%, 5090 -21.8%
    # at its measured GEMM rate, 1.129 of the datasheet; -37.5% at the default fraction).
    geforce_124m = [c for c in checks.values()
                    if get_gpu(c.gpu).segment == "consumer" and c.n_params > 100e6]  # not the 10.6M 3080 rows
    assert {c.gpu for c in geforce_124m} == {"rtx-4090", "rtx-5090"} and len(geforce_124m) == 3
    assert all(c.error < -0.15 for c in geforce_124m)
    # The L40S and the RTX 6000 Ada are the same AD102 with 142 SMs and the same datasheet bf16 rate (362.05 and
    # 364.2 TFLOP/s); the model prices them within 5% of each other (observed L40S / 6000 Ada: 0.951, the L40S's lower
    # memory bandwidth), while the same script measured the L40S 33.1% faster (350 W board against 300 W).
    l40s, ada = checks["gpt3small-124m-runpod-l40s"], checks["gpt3small-124m-runpod-rtx6000ada"]
    assert l40s.measured_tokens_per_s_per_gpu / ada.measured_tokens_per_s_per_gpu == pytest.approx(1.331, abs=0.002)
    assert 0.93 < l40s.predicted_tokens_per_s_per_gpu / ada.predicted_tokens_per_s_per_gpu < 1.0
    assert ada.error > 0.30 and abs(l40s.error) < 0.06
