"""Eager PyTorch on a GPU: GEMMs with a misaligned operand (`perf.gemm.misaligned`, brief b62).

Before this pricing, the step model priced the eager H200 trainer runs 23-50% too fast and the compiled ones within 2-9% (mb >= 16).
GPT-2's vocabulary of 50257 gives the LM head's three GEMMs an operand row length that is not a multiple of 16
bytes; cuBLAS then runs a one-element-aligned kernel (pytorch/pytorch #181718 names it), while torch.compile pads
the shapes (inductor's `pad_mm`). These tests check the alignment rule against inductor's own padding rule, the
flagged GEMMs against the reference module's weight shapes, the H200 rate against the committed measurements it is
derived from (in-sample: said so at each test) and the runs it was not derived from (out of sample).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from flopscalc.hardware import Precision, get_gpu
from flopscalc.memory import TrainingSetup
from flopscalc.memory.precision import trainer_memory_precision
from flopscalc.model.presets import PRESETS
from flopscalc.perf import estimate_step
from flopscalc.perf.device import device_perf, perf_rows
from flopscalc.perf.gemm import misaligned
from flopscalc.perf.op_kinds import SUSTAINED_FRACTION, OpClass, Phase, StepOptions
from flopscalc.perf.ops import step_ops
from flopscalc.perf.validation import consumer_rows, published_rows, row_config

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
H200 = get_gpu("h200")
BF16 = trainer_memory_precision("bf16")
EAGER = StepOptions()
COMPILED = StepOptions(gemm_shape_padding=True)


def _points(name: str) -> list[tuple[str, int, int, bool, float]]:
    """(model, micro-batch, seq, compiled, step time s) of a committed trainer table."""
    out = []
    for line in (RESULTS / name).read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) > 8 and cells[0] in PRESETS:
            out.append((cells[0], int(cells[2]), int(cells[3]), cells[4] == "on", float(cells[6].split()[0]) / 1e3))
    return out


def _step_s(name: str, mb: int, options: StepOptions, recompute: str = "none", device=None) -> float:
    setup = TrainingSetup(micro_batch=mb, seq_len=1024, precision=BF16, recompute=recompute)
    return estimate_step(PRESETS[name], setup, H200, options, device=device).step_s


EAGER_POINTS = (_points("trainer_h200-sxm_20261128_eager.md")
                + _points("trainer_h200-sxm_20261128_eager-sizes.md"))


def test_alignment_rule_is_inductors_padding_rule():
    """The rule equals the padding torch.compile applies (inductor `pad_mm`: 8 elements of a 16-bit type, 4 of fp32,
    a dimension of 1 left alone), and inductor pads by default: what `gemm_shape_padding` stands for."""
    torch = pytest.importorskip("torch")
    from torch._inductor import config
    from torch._inductor.fx_passes.pad_mm import get_alignment_size_dtype, get_padded_length

    assert config.shape_padding
    sizes = list(range(1, 200)) + [50257, 50264, 50304, 65, 1600, 2055, 2056, 32000, 128256]
    for dtype, nbytes in ((torch.bfloat16, 2), (torch.float16, 2), (torch.float32, 4)):
        for d in sizes:
            assert misaligned((d,), nbytes) == (get_padded_length(d, get_alignment_size_dtype(dtype)) > 0), (dtype, d)


@pytest.mark.parametrize("changes", [{"vocab_size": 50257}, {"vocab_size": 50304}, {"vocab_size": 65},
                                     {"n_embd": 100, "n_head": 4, "vocab_size": 50304}])
def test_flagged_gemms_are_the_reference_modules_misaligned_linears(changes):
    """One flagged forward GEMM per nn.Linear of the trainer's GPT whose weight has a dimension that is not a
    multiple of 8 (counted on the module, on the meta device), and each brings its two gradient GEMMs."""
    torch = pytest.importorskip("torch")
    from flopscalc.train.model import GPT

    cfg = PRESETS["gpt2"].with_(n_layer=2, **changes)
    with torch.device("meta"):
        model = GPT(cfg)
    bad_linears = sum(1 for m in model.modules()
                      if isinstance(m, torch.nn.Linear) and any(s % 8 for s in m.weight.shape))
    ops = step_ops(cfg, TrainingSetup(micro_batch=1, seq_len=128, precision=BF16))
    flagged = [op for op in ops if op.misaligned]
    assert all(op.op_class is OpClass.gemm for op in flagged)
    assert sum(op.count for op in flagged if op.phase is Phase.forward) == bad_linears
    assert sum(op.count for op in flagged) == 3 * bad_linears


def test_fp32_gemms_are_not_flagged():
    """The measured rates are of 16-bit GEMMs; an fp32 run (TF32, 4-element alignment) keeps the aligned pricing."""
    ops = step_ops(PRESETS["gpt2"], TrainingSetup(micro_batch=1, seq_len=128, precision="fp32"))
    assert not any(op.misaligned for op in ops)


# The points the H200 figure is derived from: GPT-2 124M and 355M; 774M and 1.56B are held out (and so stay out of
# sample for the cross-size calibration of benchmarks/bench_perf_own_gpu.py, which fits on the same small models).
DERIVATION_MODELS = ("gpt2", "gpt2-medium")
DERIVATION_POINTS = tuple(p for p in EAGER_POINTS if p[0] in DERIVATION_MODELS)
HELD_OUT_POINTS = tuple(p for p in EAGER_POINTS if p[0] not in DERIVATION_MODELS)


def test_h200_rate_is_rederived_from_the_small_models_eager_points():
    """IN-SAMPLE provenance of data/gpu_perf.csv's H200 figure: the four eager points of GPT-2 124M (mb 8/16/32) and
    355M less the aligned model, fitted as micro-batch x (a n_embd + b n_layer n_embd) + c; the n_embd term is the LM
    head's three GEMMs (the only misaligned ones) and gives their in-loop rate, stored before the sustained fraction.
    Fails when the measurements or the aligned pricing move, so the figure is re-derived rather than left stale."""
    np = pytest.importorskip("numpy")
    assert len(DERIVATION_POINTS) == 4 and len(HELD_OUT_POINTS) == 2
    rows, gaps, rates = [], [], []
    for name, mb, seq, compiled, measured_s in DERIVATION_POINTS:
        assert seq == 1024 and not compiled
        cfg = PRESETS[name]
        est = estimate_step(cfg, TrainingSetup(micro_batch=mb, seq_len=seq, precision=BF16), H200, COMPILED)
        rows.append([mb * cfg.n_embd, mb * cfg.n_layer * cfg.n_embd, 1.0])
        gaps.append(measured_s - est.step_s)
        lm = [p for p in est.ops if p.op.misaligned]
        rates.append((sum(p.op.flops * p.op.count for p in lm), sum(p.total_s for p in lm), mb * cfg.n_embd))
    (a, b, c), *_ = np.linalg.lstsq(np.array(rows), np.array(gaps), rcond=None)
    assert a > 0 and b > 0 and c > 0  # observed: 1.69e-6 s, 5.3e-8 s, 4.6 ms
    in_loop = statistics.median(flops / (aligned_s + a * x) for flops, aligned_s, x in rates)
    assert in_loop / 1e12 == pytest.approx(141.6, abs=0.05)
    stored = float(perf_rows()["h200-sxm"]["misaligned_gemm_tflops"])
    assert in_loop / SUSTAINED_FRACTION / 1e12 == pytest.approx(stored, abs=0.05)  # observed 174.79 against 174.8


def test_held_out_larger_models_move_toward_their_measurements():
    """OUT OF SAMPLE: GPT-2 774M and 1.56B (mb 8) were not in the derivation; with the misaligned pricing both move
    toward their measured step times and stay too fast. (Out of sample for the rate's value only: the misaligned
    pricing itself was added after their errors were seen.)"""
    for name, mb, _, _, measured in HELD_OUT_POINTS:
        before, after = _step_s(name, mb, COMPILED) / measured - 1, _step_s(name, mb, EAGER) / measured - 1
        assert abs(after) < abs(before) and after < 0
        assert abs(after) < 0.20  # observed -9.4% (774M), -8.6% (1.56B); before -28.2%, -23.0%


def test_rtx4090_rate_is_the_issues_align1_median():
    """pytorch/pytorch #181718: the align1 kernel at N = 2055, 2057, 2071, 2073 (TFLOP/s, as posted)."""
    posted = (115.6, 106.8, 110.9, 112.0)
    stored = float(perf_rows()["rtx-4090"]["misaligned_gemm_tflops"])
    assert stored == pytest.approx(statistics.median(posted), abs=0.05)
    dev = device_perf(get_gpu("rtx-4090"))
    assert dev.misaligned_gemm_fraction == pytest.approx(111.5e12 / get_gpu("rtx-4090").peak_flop_per_s(Precision.bf16))


def test_out_of_sample_recompute_runs_move_toward_their_measurements():
    """The three eager recomputation runs of the same session were not in the derivation. Errors (predicted /
    measured - 1) aligned -> misaligned pricing: XL full -16.9% -> -3.2%, XL selective -23.3% -> -9.1%, GPT-2
    mb16 full -44.6% -> -12.3%; the bound 20% is one the aligned pricing fails on two of the three."""
    cases = (("recompute-full-gpt2-xl", "gpt2-xl", "full"), ("recompute-selective-gpt2-xl", "gpt2-xl", "selective"),
             ("recompute-full-gpt2", "gpt2", "full"))
    before, after = [], []
    for tag, name, recompute in cases:
        point = json.loads((RESULTS / f"calibration_h200-sxm_20261128_{tag}.json").read_text())["points"][0]
        measured = point["step_time_s"]
        before.append(_step_s(name, point["micro_batch"], COMPILED, recompute) / measured - 1)
        after.append(_step_s(name, point["micro_batch"], EAGER, recompute) / measured - 1)
    assert all(abs(y) < abs(x) for x, y in zip(before, after))
    assert max(abs(e) for e in after) < 0.20  # observed 0.123
    assert sum(abs(e) >= 0.20 for e in before) == 2


def test_in_sample_eager_rows_and_the_compiled_rows():
    """IN-SAMPLE for four of these six (124M and 355M; `DERIVATION_POINTS`): every eager error shrinks (median
    |error| 43.0% -> 12.0%, all still too fast: a per-step cost remains unpriced). The compiled points price the
    GEMMs as padded, exactly the model without any misaligned rate."""
    errors = [(_step_s(n, mb, COMPILED) / t - 1, _step_s(n, mb, EAGER) / t - 1) for n, mb, _, _, t in EAGER_POINTS]
    assert all(abs(after) < abs(before) and after < 0 for before, after in errors)
    assert statistics.median(abs(y) for _, y in errors) < 0.20  # observed 0.120; before 0.430
    no_rate = replace(device_perf(H200), misaligned_gemm_fraction=None)
    for name, mb, _, compiled, _ in _points("trainer_h200-sxm_20261128_compiled.md"):
        assert compiled
        # with 16-bit weights (ZeRO 1) the stream is 16-bit under either pricing (`ops._pass_shape`)
        z1 = TrainingSetup(micro_batch=mb, seq_len=1024, precision=BF16, zero_stage=1)
        assert (estimate_step(PRESETS[name], z1, H200, COMPILED).step_s
                == estimate_step(PRESETS[name], z1, H200, EAGER, device=no_rate).step_s)


def test_gpus_without_a_rate_and_the_published_rows_are_unchanged():
    """No measured misaligned rate (A100, RTX 4070 Ti): eager and padded pricing agree. No published row has a
    misaligned GEMM on a GPU with a rate, so the validation tables do not move; compiled rows are marked padded."""
    # 16-bit weights (ZeRO 1): a 16-bit residual stream under either pricing, so the GEMM padding alone differs (a
    # compiled graph also fuses an fp32 stream's kernels: `ops._pass_shape`)
    setup = TrainingSetup(micro_batch=8, seq_len=1024, precision=BF16, zero_stage=1)
    for key in ("a100-sxm-80gb", "rtx-4070-ti"):
        gpu = get_gpu(key)
        assert estimate_step(PRESETS["gpt2"], setup, gpu, EAGER).step_s == estimate_step(
            PRESETS["gpt2"], setup, gpu, COMPILED).step_s
    for row in published_rows() + consumer_rows():
        cfg, st, options = row_config(row)
        assert options.gemm_shape_padding == ((row.get("torch_compile") or "").strip() == "true")
        if device_perf(get_gpu(row["gpu"])).misaligned_gemm_fraction is not None:
            assert not any(op.misaligned for op in step_ops(cfg, st, options)), row["run"]
