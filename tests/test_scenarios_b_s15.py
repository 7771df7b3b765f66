"""Bug bash by use (stop 15, second pass): infer, scaling, runs, models, gpus, plot and the trainer, as users run them.

Each test failed on the code before its fix; the comment above it names what was wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.calibration import CalibrationPoint, CalibrationProfile, save_profile
from flopscalc.cli import run
from flopscalc.flops import training_flops_per_token
from flopscalc.model import PRESETS, count_params

REPO = Path(__file__).resolve().parents[1]


def _cpu_profile(path: Path, peak_flop_per_s: float | None) -> Path:
    """A two-point profile as 'calibrate' writes it on a CPU: with no database row and no --peak-tflops it holds no
    peak rate and no MFU (docs/trainer.md)."""
    cfg = PRESETS["gpt2"]
    f = training_flops_per_token(cfg, 64).model_flops_per_token
    pts = []
    for mb, step in ((2, 0.5), (4, 0.9)):
        achieved = mb * 64 * f / step
        pts.append(CalibrationPoint(
            model=cfg, n_params=count_params(cfg).total, micro_batch=mb, seq_len=64, grad_accum=1, n_devices=1,
            precision="fp32", compiled=False, step_time_s=step, tokens_per_s=mb * 64 / step,
            model_flops_per_token=f, achieved_flop_per_s=achieved, peak_flop_per_s=peak_flop_per_s,
            mfu=None if peak_flop_per_s is None else achieved / peak_flop_per_s))
    save_profile(CalibrationProfile("CPU x86_64", None, "2.13.0", "2026-11-28", tuple(pts)), path)
    return path


# ---- plot calibration --mfu on a profile without a peak rate ------------------------------------------------------
# '--mfu' sets the MFU at which the step-time panel predicts each point (tokens x FLOPs / (peak x MFU)) and the
# assumed-MFU line of the MFU panel; both need a peak rate. A CPU profile (calibrate without --gpu/--peak-tflops, the
# default on a CPU) has none, so both panels say "no peak rate" and '--mfu 0.3' changed nothing but the echoed
# 'assumed_mfu': the option was silently ignored (exit 0).

def test_plot_calibration_refuses_mfu_it_cannot_use(tmp_path, capsys):
    prof = _cpu_profile(tmp_path / "cpu.json", None)
    out = tmp_path / "c.png"
    assert run(["plot", "calibration", str(prof), "--mfu", "0.3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mfu" in err and "no peak rate" in err and "--peak-tflops" in err
    assert not out.exists()
    # without --mfu the same profile plots, its panels saying why they are empty
    assert run(["plot", "calibration", str(prof), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert all(p["predicted_step_time_s"] is None for p in d["points"])


def test_plot_calibration_mfu_moves_the_prediction_when_there_is_a_peak(tmp_path, capsys):
    prof = _cpu_profile(tmp_path / "cpu.json", 1e11)  # calibrate --peak-tflops 0.1
    got = {}
    for mfu in ("0.2", "0.4"):
        assert run(["plot", "calibration", str(prof), "--mfu", mfu, "--json"]) == 0
        got[mfu] = [p["predicted_step_time_s"] for p in json.loads(capsys.readouterr().out)["points"]]
    # predicted = tokens x FLOPs per token / (peak x MFU) (PaLM App. B): halving the MFU doubles it
    for a, b in zip(got["0.2"], got["0.4"]):
        assert a == pytest.approx(2 * b, rel=1e-12)


# ---- plot memory --gpu-csv without --gpu ---------------------------------------------------------------------------
# '--gpu-csv' only adds rows to the GPU lookup; 'plot memory' without '--gpu' looks nothing up, so the file was never
# read (not even checked to exist) and the chart came out as if it were absent. 'plot frontier' refuses the same case.

def test_plot_memory_refuses_gpu_csv_without_gpu(tmp_path, capsys):
    csv = tmp_path / "extra.csv"
    csv.write_text((REPO / "data" / "gpu_specs.csv").read_text(encoding="utf-8"), encoding="utf-8")
    assert run(["plot", "memory", "--model", "gpt2", "--gpu-csv", str(csv), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gpu-csv" in err and "--gpu" in err
    # with --gpu the file is read and the GPU's capacity drawn
    assert run(["plot", "memory", "--model", "gpt2", "--gpu", "4070ti", "--gpu-csv", str(csv), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["capacity_bytes"] == 12 * 2**30


# ---- an argument typed as an option; a group's option after a subcommand that refuses it -------------------------
# 'train prepare --out DIR' (the natural spelling: every other file-writing command has --out) said "--out is an
# option of 'flopscalc train', not of 'flopscalc train prepare': give it before 'prepare' (flopscalc train --out ...
# prepare ...)". train's --out is another thing (a --from-plan run's folder) and 'train --out D prepare' is refused
# in its turn ("'train prepare' would ignore it"): the advice led from one refusal to the next. prepare takes the
# folder as its argument OUT; train's own options (--seed ...) belong to a training run, which prepare is not.

def _refused(capsys, *argv: str) -> str:
    assert run(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_an_argument_typed_as_an_option_says_so(capsys, tmp_path):
    line = _refused(capsys, "train", "prepare", "--out", str(tmp_path / "d"), "--pydoc")
    assert "give OUT as its argument" in line and "flopscalc train prepare OUT" in line
    assert "give it before" not in line
    line = _refused(capsys, "scaling", "fit", "--runs-csv", "runs.csv")
    assert "give RUNS_CSV as its argument" in line
    # what it says works: the folder as the argument (byte tokenizer on Python's own docs, no torch)
    assert run(["train", "prepare", str(tmp_path / "d"), "--pydoc", "--json"]) == 0
    assert (tmp_path / "d" / "train.bin").exists()


def test_a_training_option_after_prepare_is_not_sent_before_it(capsys, tmp_path):
    line = _refused(capsys, "train", "prepare", str(tmp_path / "d"), "--pydoc", "--seed", "3")
    assert "--seed is an option of 'flopscalc train' itself" in line and "give it before" not in line
    # the advice the old line gave is refused too, so it was no advice
    _refused(capsys, "train", "--seed", "3", "prepare", str(tmp_path / "d"), "--pydoc")


# ---- scaling fit --bootstrap: the table's allocation rows and --json ------------------------------------------------
# With --bootstrap the table printed "N_opt at 1e+21 | 1.66B | 7.539e8 .. 3.701e9": the budget without its unit, the
# interval in another notation than the value beside it, and --json carried the interval but not the value (nor any
# D_opt the intervals also hold). Checked on the packaged Muennighoff et al. runs against Hoffmann eq. 4 computed here
# from the printed constants (data/datablations_runs.md: the fit reproduces the authors' 41-run constants).

def test_scaling_fit_bootstrap_reports_the_allocation_it_bootstraps(capsys):
    runs = str(REPO / "data" / "datablations_runs.csv")
    assert run(["scaling", "fit", runs, "--bootstrap", "8", "--grid", "small", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    k, boot = d["constants"], d["bootstrap"]
    g = (k["alpha"] * k["A"] / (k["beta"] * k["B"])) ** (1 / (k["alpha"] + k["beta"]))  # Hoffmann eq. 4
    for c in (1e21, 1e23, 1e25):
        n, t = boot["fit"][f"n_opt@{c:.0e}"], boot["fit"][f"d_opt@{c:.0e}"]
        assert n == pytest.approx(g * (c / 6) ** d["a"], rel=1e-9)
        assert 6 * n * t == pytest.approx(c, rel=1e-9)  # C = 6ND
        assert set(boot["intervals_95"]) == set(boot["fit"])  # every interval has its value beside it
    assert {kk: boot["fit"][kk] for kk in k} == k
    assert run(["scaling", "fit", runs, "--bootstrap", "8", "--grid", "small"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "N_opt at 1e+21" in line)
    assert "1e+21 FLOP" in row and "e8" not in row and "e9" not in row  # counts as counts: 919.29M .. 3.23B
    assert any("D_opt at 1e+25 FLOP" in line for line in out.splitlines())


# ---- infer: why no batch fits ---------------------------------------------------------------------------------------
# Llama 3.1 8B at a 128k prompt on a 24 GiB RTX 4090 printed "largest batch: none: the weights alone do not fit; try
# --weights int8 or int4" two lines below "weights 14.96 GiB" and above "longest sequence 39,340 tokens at batch 1".
# The weights fit; one sequence's KV cache does not fit beside them: 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 bytes
# = 128 KiB per token (Pope et al. 2022, sec. 2) x 131,200 tokens = 16.0 GiB, and 15.0 + 16.0 > 24 GiB.

def test_infer_says_which_part_does_not_fit(capsys):
    argv = ["infer", "--gpu", "4090", "--model", "llama-3.1-8b", "--context", "128k"]
    assert run([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    kv_per_token = 2 * 32 * 8 * 128 * 2
    assert d["kv_cache_bytes"] == kv_per_token * (128 * 1024 + 128)
    assert d["weights_bytes"] + d["cuda_context_bytes"] < d["gpu_memory_bytes"] < d["memory_bytes"]
    assert d["max_batch"] == 0 and d["max_seq_tokens"] > 0
    assert run([*argv]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("largest batch"))
    # the longest prompt that fits at batch 1 (review r5: the offer is computed; tests/test_r5_b81.py runs it)
    assert "weights alone" not in line and "--weights" not in line
    assert f"--context {d['max_seq_tokens'] - 128} or less" in line
    # where the weights really do not fit, it says so, and offers only what the memory engine confirms: 70B in no
    # format fits 12 GiB (int4: 36 GiB of weights, review r5), so a bigger GPU, with smaller formats where smaller
    for weights, offer in (("bf16", "--gpu h200-sxm (141 GiB), or --gpu h100-sxm (80 GiB) with --weights fp8"),
                           ("int8", "--gpu h100-sxm (80 GiB), or --gpu a100-pcie-40gb (40 GiB) with --weights int4"),
                           ("int4", "--gpu a100-pcie-40gb (40 GiB)")):
        assert run(["infer", "--gpu", "4070ti", "--model", "llama-3.1-70b", "--context", "1k", "--weights",
                    weights]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "the weights alone (" in out and offer in out and "try --weights" not in out


# ---- plot --dpi where it changes nothing ----------------------------------------------------------------------------
# --dpi is "Resolution of PNG files". With an .svg or .pdf file (vector: the PDF is the same bytes at 50 and 300 dpi,
# checked below) or with --json alone (no image at all) it was accepted and changed nothing.

def test_dpi_is_refused_where_it_would_change_nothing(tmp_path, capsys):
    from flopscalc import plots
    from flopscalc.plots._common import figure_bytes

    def fig():  # a fresh figure each time: saving one figure twice does not give the same PDF bytes
        return plots.draw_landscape(plots.landscape_data(None, (1e7, 1e12), (1e8, 1e14), None))

    assert figure_bytes(fig(), "pdf", 50) == figure_bytes(fig(), "pdf", 300)  # the premise: a vector file ignores it
    assert figure_bytes(fig(), "png", 50) != figure_bytes(fig(), "png", 300)
    for argv, why in ((["--out", str(tmp_path / "l.svg")], ".svg is a vector format"),
                      (["--out", str(tmp_path / "l.pdf")], ".pdf is a vector format"),
                      (["--json"], "--json alone writes no image")):
        assert run(["plot", "landscape", "--dpi", "300", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--dpi would be ignored" in err and why in err
    assert not list(tmp_path.iterdir())
    # a PNG takes it, with or without --json; vector files and --json take the default silently
    assert run(["plot", "landscape", "--dpi", "40", "--out", str(tmp_path / "l.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written_to"] == str(tmp_path / "l.png")
    assert run(["plot", "landscape", "--out", str(tmp_path / "l.svg")]) == 0


def test_infer_warns_when_a_sequence_runs_past_the_trained_context(capsys):
    # Llama 2 was trained at 4,096 tokens (its preset's context); an 8,192-token prompt was priced without a word
    from flopscalc.cli import run

    assert run(["infer", "--model", "llama-2-7b", "--gpu", "h100", "--context", "8192"]) == 0
    out = capsys.readouterr().out
    assert "past the trained context (4,096)" in out
    assert run(["infer", "--model", "llama-2-7b", "--gpu", "h100", "--context", "8192", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["past_trained_context"] is True
    assert run(["infer", "--model", "llama-2-7b", "--gpu", "h100", "--context", "2048", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["past_trained_context"] is False
