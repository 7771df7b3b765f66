"""The inference model against published measurements (data/published_inference.csv), error per row.

Every row is a measured decode throughput or time to first token of a Llama model on one A100 or H100 from a
named source (TensorRT-LLM's performance tables, gpt-fast's README). The model's one fitted number, the
bandwidth share of weight-only dequantizing GEMMs (`QUANT_BANDWIDTH_FRACTION`), is re-derived here from its
fit rows; the bounds below are asserted on the other rows only, and each is the observed value rounded up
(stated beside it), so a regression of the model fails them. docs/inference.md prints the table this module
computes (``python tests/test_infer_validation.py``).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.model import get_preset
from flopscalc.perf.inference import (
    DEFAULT_INT4_GROUP,
    QUANT_BANDWIDTH_FRACTION,
    InferenceSetup,
    estimate_inference,
)

CSV = Path(__file__).resolve().parents[1] / "data" / "published_inference.csv"
# The rows the dequantizing-GEMM bandwidth share is fitted on, by weight format (Llama-2-7B; 70B held out).
FIT_ROWS = {"int8": "gptfast-a100-llama2-7b-int8", "int4": "gptfast-a100-llama2-7b-int4g32"}


def rows() -> list[dict]:
    with CSV.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def setup_of(row: dict, quant: float | None = None) -> InferenceSetup:
    return InferenceSetup(batch=int(row["batch"]), context=int(row["context"]), gen=int(row["gen"]),
                          weights=row["weights"], kv=row["kv"],
                          int4_group=int(row["int4_group"] or DEFAULT_INT4_GROUP), quant_bandwidth_fraction=quant)


def predict(row: dict, quant: float | None = None) -> float:
    """The model's value of the row's metric: generated tokens/s (prefill included) or time to first token (s)."""
    est = estimate_inference(get_preset(row["model"]), setup_of(row, quant), get_gpu(row["gpu"]))
    return est.tokens_per_s if row["metric"] == "tokens_per_s" else est.prefill_s


def error(row: dict, quant: float | None = None) -> float:
    """Predicted / measured - 1."""
    return predict(row, quant) / float(row["measured"]) - 1.0


def fit_quant_fraction(row: dict) -> float:
    """The bandwidth share at which the model equals the row's measured tokens/s (bisection; faster = larger)."""
    lo, hi = 1e-3, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if error(row, mid) > 0 else (mid, hi)
    return (lo + hi) / 2


def held_out() -> list[dict]:
    return [r for r in rows() if r["name"] not in FIT_ROWS.values()]


def test_every_row_is_sourced_and_fits_its_gpu():
    """Each row names its source; the model must say the measured setup fits (it ran)."""
    for r in rows():
        assert r["source"].strip() and r["stack"].strip(), r["name"]
        est = estimate_inference(get_preset(r["model"]), setup_of(r), get_gpu(r["gpu"]))
        assert est.fits and est.max_batch >= int(r["batch"]), r["name"]


@pytest.mark.parametrize("fmt", sorted(FIT_ROWS))
def test_quant_fraction_is_the_fit_on_its_rows(fmt):
    row = next(r for r in rows() if r["name"] == FIT_ROWS[fmt])
    assert QUANT_BANDWIDTH_FRACTION[fmt] == pytest.approx(fit_quant_fraction(row), abs=0.0005)


def test_the_fit_moves_the_held_out_quantized_rows_toward_the_measurement():
    """Without the fitted share (1.0) the held-out 70B quantized rows are far too fast; with it, much closer."""
    for r in held_out():
        if r["weights"] in FIT_ROWS:
            assert error(r, 1.0) > 0.25
            assert abs(error(r)) < abs(error(r, 1.0)) / 2


# Bounds on held-out rows: the observed value, rounded up (observed in the comment).
DECODE_THROUGHPUT_MEDIAN_ABS = 0.10  # observed 0.0955
DECODE_THROUGHPUT_WORST_ABS = 0.29  # observed 0.281 (H100 FP8, batch 768, 128/128)
TTFT_WORST_ABS = 0.50  # observed 0.491: the model is 15-49% short of TensorRT-LLM v0.5's first-token latency
TTFT_ALL_UNDER = True  # every first-token prediction is below the measurement (overheads not modelled)


def test_decode_throughput_errors_on_held_out_rows():
    errs = [abs(error(r)) for r in held_out() if r["metric"] == "tokens_per_s"]
    assert len(errs) == 10
    assert statistics.median(errs) <= DECODE_THROUGHPUT_MEDIAN_ABS
    assert max(errs) <= DECODE_THROUGHPUT_WORST_ABS


def naive_tokens_per_s(row: dict) -> float:
    """The textbook bound the model replaces: every decode step reads the weights once at the datasheet bandwidth,
    nothing else (no KV cache, no compute, no prefill, no kernel floor): batch x bandwidth / weight bytes."""
    from flopscalc.perf.inference import weights_bytes

    gpu = get_gpu(row["gpu"])
    return int(row["batch"]) * gpu.memory_bandwidth_bytes_per_s / weights_bytes(get_preset(row["model"]), setup_of(row))


def test_the_model_beats_the_weights_over_bandwidth_bound():
    """On the held-out throughput rows the naive bound errs by a median of over 100%; the model by under 10%."""
    rs = [r for r in held_out() if r["metric"] == "tokens_per_s"]
    naive = [abs(naive_tokens_per_s(r) / float(r["measured"]) - 1) for r in rs]
    assert statistics.median(naive) > 1.0 > DECODE_THROUGHPUT_MEDIAN_ABS


def test_time_to_first_token_errors():
    errs = [error(r) for r in held_out() if r["metric"] == "ttft_s"]
    assert len(errs) == 4
    assert max(abs(e) for e in errs) <= TTFT_WORST_ABS
    assert all(e < 0 for e in errs) is TTFT_ALL_UNDER


def markdown_table() -> str:
    """The docs/inference.md table: every row, measured, predicted, error; '(fit)' marks the fit rows."""
    out = [("| row | model | GPU | weights / KV | batch | in / out | metric | measured | predicted | error "
           "| weights / bandwidth | its error |"),
           "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows():
        fit = " (fit)" if r["name"] in FIT_ROWS.values() else ""
        pred, meas = predict(r), float(r["measured"])
        unit = (lambda v: f"{v:,.1f} tok/s") if r["metric"] == "tokens_per_s" else (lambda v: f"{v * 1e3:.1f} ms")
        out.append(f"| {r['name']}{fit} | {r['model']} | {r['gpu']} | {r['weights']} / {r['kv']} | {r['batch']} | "
                   f"{r['context']} / {r['gen']} | {r['metric']} | {unit(meas)} | {unit(pred)} | {pred / meas - 1:+.1%} |"
                   + (f" {unit(naive_tokens_per_s(r))} | {naive_tokens_per_s(r) / meas - 1:+.0%} |"
                      if r["metric"] == "tokens_per_s" else " | |"))
    return "\n".join(out)


if __name__ == "__main__":
    for fmt, name in FIT_ROWS.items():
        print(fmt, round(fit_quant_fraction(next(r for r in rows() if r["name"] == name)), 4))
    print(markdown_table())
