"""Plots (issue 7): render every chart headless and check what it shows against the engines' numbers.

Each figure's artists carry a ``gid`` (e.g. ``law:chinchilla``, ``component:weights``) so the tests read the
plotted data back from the Figure itself, not from the function that computed it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.calibration import CalibrationPoint, CalibrationProfile, save_profile
from flopscalc.errors import DomainError, UsageError
from flopscalc.flops import Recompute, training_flops_per_token
from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.model import PRESETS, config_for_params, count_params
from flopscalc.scaling import BUILTIN_LAWS, flops_for_params, optimal
from flopscalc.scaling.allocate import optimal_arrays

matplotlib = pytest.importorskip("matplotlib")
from flopscalc import plots

GIB = 2.0**30
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def artists(ax, gid: str) -> list:
    """Every line, collection and patch of ``ax`` whose gid is ``gid``."""
    return [a for a in [*ax.get_lines(), *ax.collections, *ax.patches] if a.get_gid() == gid]


def one(ax, gid: str):
    found = artists(ax, gid)
    assert len(found) == 1, f"expected one artist {gid!r}, found {len(found)}"
    return found[0]


def legend_texts(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


# --------------------------------------------------------------------------------------------- frontier


@pytest.fixture(scope="module")
def frontier():
    gpu = get_gpu("4070ti")
    budget = 9.1e20
    fig = plots.frontier_figure(budget_flops=budget, budget_label="1 year", gpu=gpu)
    return fig, budget, gpu


def test_frontier_lines_are_the_laws_optima(frontier):
    fig, _, _ = frontier
    ax_n, ax_d = fig.axes
    for name in plots.frontier.DEFAULT_FRONTIER_LAWS:
        law = BUILTIN_LAWS[name]
        c, n = one(ax_n, f"law:{name}").get_data()
        _c2, d = one(ax_d, f"law:{name}").get_data()
        assert c[0] == pytest.approx(1e17) and c[-1] == pytest.approx(1e26)
        for i in (0, len(c) // 3, len(c) - 1):  # the scalar engine at the plotted x gives the plotted y
            a = optimal(law, float(c[i]))
            assert n[i] == pytest.approx(a.n_params, rel=1e-12)
            assert d[i] == pytest.approx(a.n_tokens, rel=1e-12)


def test_frontier_axes_labels_and_legend(frontier):
    fig, _, _ = frontier
    ax_n, ax_d = fig.axes
    for ax in (ax_n, ax_d):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "(count)" in ax_n.get_ylabel() and "(tokens)" in ax_d.get_ylabel()
    assert ax_d.get_xlabel() == "training compute C (FLOP)"
    texts = legend_texts(ax_n)
    for name in plots.frontier.DEFAULT_FRONTIER_LAWS:
        assert any(t.startswith(f"{name}:") for t in texts)
    assert any("N without embeddings" in t for t in texts)  # Kaplan's N is non-embedding
    assert any("GPT-2 presets" in t for t in texts) and any("published runs" in t for t in texts)


def test_frontier_presets_sit_on_the_first_law_at_their_optimal_budget(frontier):
    fig, _, _ = frontier
    ax_n, ax_d = fig.axes
    law = BUILTIN_LAWS["besiroglu2024"]
    xy_n = one(ax_n, "presets").get_offsets()
    xy_d = one(ax_d, "presets").get_offsets()
    assert len(xy_n) == len(PRESETS)
    for (c, n), (c2, d), cfg in zip(xy_n, xy_d, PRESETS.values()):
        assert n == count_params(cfg).total  # exact count of the preset
        assert c == c2 == pytest.approx(flops_for_params(law, n).c_flops, rel=1e-12)
        back = optimal(law, float(c))  # round trip: at that budget the optimum is this model
        assert back.n_params == pytest.approx(n, rel=1e-9)
        assert d == pytest.approx(back.n_tokens, rel=1e-9)
    # seed claim 4 (GPT-2 small compute-optimal ~2.37e18 FLOP on ~3.3B tokens) under Besiroglu's law: 2.34e18, 3.1B
    c_small = xy_n[0][0]
    assert c_small == pytest.approx(2.37e18, rel=0.03)


def test_frontier_published_runs_at_six_n_d(frontier):
    from flopscalc.runs import get_run

    fig, _, _ = frontier
    ax_n, ax_d = fig.axes
    xy = one(ax_n, "published_runs").get_offsets()
    xy_d = one(ax_d, "published_runs").get_offsets()
    # OPT-175B: 175B parameters on 300B tokens (Zhang et al. 2022, sec. 2.1-2.3) -> 6ND = 3.15e23
    run = get_run("opt-175b")
    n = count_params(run.config).total
    assert n == pytest.approx(175e9, rel=0.01)
    hits = [i for i, (c, y) in enumerate(xy) if y == n]
    assert len(hits) == 1
    assert xy[hits[0]][0] == pytest.approx(6 * 175e9 * 300e9, rel=0.01)
    assert xy_d[hits[0]][1] == 300e9
    # predictions (the Megatron GPT-3 estimate) and runs outside 1e17..1e26 FLOP are not marked
    assert len(xy) == sum(1 for r in plots.frontier_data()["published_runs"] if r["kind"] == "measured")


def test_frontier_budget_line_and_optimum(frontier):
    fig, budget, _ = frontier
    ax_n, ax_d = fig.axes
    assert list(one(ax_n, "budget").get_xdata()) == [budget, budget]
    star = one(ax_n, "budget_optimum").get_offsets()[0]
    a = optimal(BUILTIN_LAWS["besiroglu2024"], budget)
    assert star[0] == budget and star[1] == pytest.approx(a.n_params, rel=1e-12)
    assert one(ax_d, "budget_optimum").get_offsets()[0][1] == pytest.approx(a.n_tokens, rel=1e-12)


def _fits_at_micro_batch_1(cfg, gpu, **setup) -> bool:
    """The memory estimator, called directly: does ``cfg`` fit at micro-batch 1, keeping the planner's 5% free?"""
    s = TrainingSetup(micro_batch=1, seq_len=1024, grad_accum=2, **setup)
    return estimate_memory(cfg, s).peak_bytes <= gpu.memory_bytes * 0.95


def test_frontier_memory_region_is_the_largest_model_that_fits(frontier):
    from flopscalc.model import ModelConfig

    fig, _, gpu = frontier
    ax_n = fig.axes[0]
    fit = plots.frontier_data(gpu=gpu, published=False)["gpu_fit"]
    lightest = {"recompute": Recompute.full, "offload_optimizer": True}  # the ladder's last rung
    for key, setup in (("any_setup", lightest), ("plain_adamw", {})):
        band = one(ax_n, f"fit:{key}")
        top = band.get_y() + band.get_height()
        cfg = ModelConfig(**fit[f"shape_{key}"])
        assert top == count_params(cfg).total == fit[f"n_max_params_{key}"]
        assert _fits_at_micro_batch_1(cfg, gpu, **setup)  # the band's top model fits...
        bigger = config_for_params(1.05 * top)  # ...and the shaping rule's model 5% larger does not
        assert not _fits_at_micro_batch_1(bigger, gpu, **setup)
    # seed claim 6: GPT-2 XL (1.56B) does not fit 12 GiB with plain AdamW; full recompute + offload do
    xl = count_params(PRESETS["gpt2-xl"]).total
    assert fit["n_max_params_plain_adamw"] < xl < fit["n_max_params_any_setup"]
    assert not _fits_at_micro_batch_1(PRESETS["gpt2-xl"], gpu) and _fits_at_micro_batch_1(PRESETS["gpt2-xl"], gpu,
                                                                                         **lightest)


# ---------------------------------------------------------------------------------------------- isoflop


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    """Synthetic runs on three IsoFLOP budgets from Besiroglu's law with 1% noise (seeded)."""
    law = BUILTIN_LAWS["besiroglu2024"]
    rng = np.random.default_rng(7)
    rows = ["n_params,n_tokens,loss"]
    for c in (6e18, 3e19, 1e20):
        for n in optimal(law, c).n_params * np.logspace(-0.7, 0.7, 5):
            d = c / (6 * n) * (1 + rng.uniform(-0.04, 0.04))  # FLOPs within 4% of the budget
            rows.append(f"{n:.6g},{d:.6g},{float(law.loss(n, d)) * math.exp(rng.normal(0, 0.01)):.5f}")
    rows.append("3e7,5e8,3.9")  # a lone run at 9e16 FLOP: no IsoFLOP profile of its own
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_isoflop_curves_and_minima():
    law = BUILTIN_LAWS["besiroglu2024"]
    budgets = [1e18, 1e20, 1e22]
    fig = plots.isoflop_figure(budgets, "besiroglu2024")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "(nats/token)" in ax.get_ylabel() and "(count" in ax.get_xlabel()
    minima = one(ax, "minima").get_offsets()
    for c, (n_min, loss_min) in zip(budgets, minima):
        a = optimal(law, c)
        assert n_min == pytest.approx(a.n_params, rel=1e-12) and loss_min == pytest.approx(a.loss, rel=1e-12)
        n, loss = one(ax, f"curve:{c:g}").get_data()
        assert np.allclose(loss, law.loss(n, c / (6 * n)), rtol=1e-12)  # y = L(N, C/6N)
        step = math.log(n[1] / n[0])
        assert abs(math.log(n[np.argmin(loss)] / n_min)) <= step  # the curve's own floor is at the marker
    assert [f"predicted, C = {plots._common.sci_label(c)} FLOP" for c in budgets] == legend_texts(ax)[:3]


def test_isoflop_numeric_minimum_for_kaplan():
    law = BUILTIN_LAWS["kaplan2020"]
    data = plots.isoflop_data([1e20], "kaplan2020")
    curve = data["curves"][0]
    assert curve["min_method"].startswith("numeric")
    n = curve["min_n_params"]
    for f in (0.98, 1.02):  # a local minimum of L(N, C/6N): 2% either way is higher
        assert law.loss(n * f, 1e20 / (6 * n * f)) > curve["min_loss"]


def test_isoflop_runs_overlay_grouped_by_flops(runs_csv):
    from flopscalc.scaling.io import read_runs

    fig = plots.isoflop_figure(runs_csv=runs_csv)
    ax = fig.axes[0]
    runs = read_runs(runs_csv)
    groups = [a for a in ax.collections if (a.get_gid() or "").startswith("runs:")]
    assert len(groups) == 3 and sum(len(g.get_offsets()) for g in groups) == len(runs) - 1
    assert [tuple(xy) for xy in one(ax, "other_runs").get_offsets()] == [(3e7, 3.9)]
    plotted = sorted(tuple(xy) for g in [*groups, one(ax, "other_runs")] for xy in g.get_offsets())
    assert plotted == sorted(zip(runs.n_params, runs.loss))
    curves = [a for a in ax.get_lines() if (a.get_gid() or "").startswith("curve:")]
    assert len(curves) == 3  # budgets default to the groups' FLOPs
    centres = sorted(float(g.get_gid().split(":")[1]) for g in groups)
    assert centres == pytest.approx([6e18, 3e19, 1e20], rel=0.05)  # the budgets the runs were drawn on


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e15, 1e25), min_size=1, max_size=40), st.floats(0.01, 1.0))
def test_group_by_flops_partitions_within_tolerance(c, tol):
    groups = plots.group_by_flops(c, tol)
    idx = sorted(i for g in groups for i in g)
    assert idx == list(range(len(c)))  # every run in exactly one group
    for g in groups:
        vals = np.asarray(c)[g]
        assert vals.max() <= vals.min() * (1 + tol) * (1 + 1e-12)


def test_isoflop_needs_a_loss_formula():
    with pytest.raises(DomainError, match="no loss formula"):
        plots.isoflop_data([1e20], "chinchilla-a1")


# -------------------------------------------------------------------------------------------- landscape


def test_landscape_iso_compute_lines_and_optimal_path():
    law = BUILTIN_LAWS["chinchilla"]
    fig = plots.landscape_figure("chinchilla", (1e7, 1e12), (1e8, 1e14))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "(count)" in ax.get_xlabel() and "(tokens)" in ax.get_ylabel()
    assert fig.axes[1].get_ylabel() == "predicted loss (nats/token)"  # the colour bar
    n, d = one(ax, "optimal_path").get_data()
    n_ref, d_ref = optimal_arrays(law, 6 * n * d)
    assert np.allclose(n, n_ref, rtol=1e-9) and np.allclose(d, d_ref, rtol=1e-9)
    isos = [a for a in ax.get_lines() if (a.get_gid() or "").startswith("iso:")]
    assert [float(a.get_gid()[4:]) for a in isos] == pytest.approx([10.0**k for k in range(17, 26)], rel=1e-6)
    for line in isos:
        c = float(line.get_gid()[4:])
        x, y = line.get_data()
        assert np.allclose(6 * np.asarray(x) * np.asarray(y), c, rtol=1e-12)  # C = 6ND
        # along the line, the lowest loss is where the optimal path crosses it (closed form vs a dense search)
        nn = np.logspace(math.log10(x[0]), math.log10(x[-1]), 20001)
        best = nn[np.argmin(law.loss(nn, c / (6 * nn)))]
        assert best == pytest.approx(optimal(law, c).n_params, rel=0.002)


def test_landscape_grid_is_the_law():
    law = BUILTIN_LAWS["besiroglu2024"]
    data = plots.landscape_data("besiroglu2024", (1e8, 1e10), (1e9, 1e11))
    n, d, loss = np.array(data["n_params"]), np.array(data["n_tokens"]), np.array(data["loss"])
    assert loss.shape == (len(d), len(n))
    for i, j in ((0, 0), (10, 50), (-1, -1)):
        assert loss[i, j] == pytest.approx(float(law.loss(n[j], d[i])), rel=1e-12)
    with pytest.raises(UsageError):
        plots.landscape_data("besiroglu2024", (1e10, 1e8), (1e9, 1e11))


# ----------------------------------------------------------------------------------------------- memory


def test_memory_bars_are_the_component_bytes():
    gpu = get_gpu("4070ti")
    setup = TrainingSetup(micro_batch=4, gpu_architecture=gpu.architecture)  # the bars carry the GPU's cuBLAS workspace
    fig = plots.memory_figure(list(PRESETS), gpu, setup)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "memory per GPU (GiB)"
    for k, cfg in enumerate(PRESETS.values()):
        comp = estimate_memory(cfg, setup).component_bytes()
        for key, value in comp.items():
            bars = artists(ax, f"component:{key}")
            if key == "not_concurrent":  # drawn as a hatched segment of the negative value's size
                assert bars[k].get_height() == pytest.approx(-value / GIB, rel=1e-12)
            elif value > 0:
                assert bars[k].get_height() == pytest.approx(value / GIB, rel=1e-12)
            else:
                assert all(b.get_height() == 0 for b in bars)  # a zero component adds no height (or no bar)
        peak = one(ax, "peak").get_segments()[k][0][1]
        assert peak == pytest.approx(estimate_memory(cfg, setup).peak_bytes / GIB, rel=1e-12)
        top = max(p.get_y() + p.get_height() for p in ax.patches if p.get_x() < k < p.get_x() + 1)
        assert top - bars_height(ax, "component:not_concurrent", k) == pytest.approx(peak, rel=1e-9)
    # the RTX 4070 Ti's 12 GB (NVIDIA spec sheet) is drawn at 12 GiB
    assert list(one(ax, "capacity").get_ydata()) == [12.0, 12.0]
    assert any("RTX 4070 Ti: 12 GiB" in t for t in legend_texts(ax))


def bars_height(ax, gid: str, k: int) -> float:
    found = artists(ax, gid)
    return found[k].get_height() if found else 0.0


def test_memory_micro_batch_sweep_labels():
    fig = plots.memory_figure(["gpt2"], None, TrainingSetup(), micro_batches=[1, 8, 32])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mb 1", "mb 8", "mb 32"]
    peaks = [seg[0][1] for seg in one(ax, "peak").get_segments()]
    assert peaks == sorted(peaks)  # more sequences, more memory
    with pytest.raises(UsageError, match="micro-batches"):
        plots.memory_data(["gpt2"], micro_batches=[0])


# ------------------------------------------------------------------------------------------ calibration


def make_profile(peak: bool = True, memory: bool = True) -> CalibrationProfile:
    """Points whose step time follows from a chosen MFU: step = tokens x FLOPs/token / (peak x MFU)."""
    h100 = get_gpu("h100")
    pk = h100.peak_flop_per_s("bf16")
    pts = []
    for name, mfus in (("gpt2", {4: 0.30, 16: 0.38}), ("gpt2-medium", {4: 0.36, 16: 0.44})):
        cfg = PRESETS[name]
        f = training_flops_per_token(cfg, 1024).model_flops_per_token
        for mb, mfu in mfus.items():
            step = mb * 1024 * f / (mfu * pk)
            pred = estimate_memory(cfg, TrainingSetup(micro_batch=mb)).allocated_peak_bytes
            pts.append(CalibrationPoint(
                model=cfg, n_params=count_params(cfg).total, micro_batch=mb, seq_len=1024, grad_accum=1, n_devices=1,
                precision="bf16", compiled=False, step_time_s=step, tokens_per_s=mb * 1024 / step,
                model_flops_per_token=f, achieved_flop_per_s=mfu * pk, peak_flop_per_s=pk if peak else None,
                mfu=mfu if peak else None, peak_memory_bytes=1.05 * pred if memory else None,
                predicted_memory_bytes=pred))
    return CalibrationProfile("H100 test", "h100", "2.13.0", "2025-01-01", tuple(pts))


def test_calibration_panels():
    profile = make_profile()
    fig = plots.calibration_figure(profile, assumed_mfu=0.4)
    ax_t, ax_m, ax_mem = fig.axes[:3]
    # step time: predicted at MFU 0.4 = measured x measured MFU / 0.4 (MFU = achieved / peak, PaLM App. B)
    for m in ("gpt2", "gpt2-medium"):
        sel = [p for p in profile.points if p.model.name == m]
        xy = one(ax_t, f"time:{m}").get_offsets()
        for (pred, meas), p in zip(xy, sel):
            assert meas == p.step_time_s and pred == pytest.approx(p.step_time_s * p.mfu / 0.4, rel=1e-9)
    assert ax_t.get_xscale() == "log" and "(s/step)" in ax_t.get_xlabel()
    # MFU panel: the measured MFUs, and the planner's interpolation at the largest micro-batch
    xy16 = one(ax_m, "mfu:16").get_offsets()
    assert sorted(y for _, y in xy16) == [0.38, 0.44]
    n, curve = one(ax_m, "mfu_curve").get_data()
    assert curve[np.argmin(abs(np.log(n / count_params(PRESETS["gpt2"]).total)))] == pytest.approx(0.38, abs=0.01)
    assert list(one(ax_m, "assumed_mfu").get_ydata()) == [0.4, 0.4]
    # memory panel: (predicted, measured) in GiB
    for (pred, meas) in one(ax_mem, "memory:gpt2").get_offsets():
        assert meas == pytest.approx(1.05 * pred, rel=1e-12)
    assert "(GiB)" in ax_mem.get_xlabel() and "(GiB)" in ax_mem.get_ylabel()


def test_calibration_without_peak_or_memory_says_so():
    fig = plots.calibration_figure(make_profile(peak=False, memory=False))
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "no peak rate" in texts and "no measured peak memory" in texts


# ------------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("suffix, magic", [(".png", PNG_MAGIC), (".svg", b"<?xml"), (".pdf", b"%PDF-")])
def test_save_writes_each_format_atomically(tmp_path, suffix, magic):
    fig = plots.landscape_figure(n_range=(1e8, 1e10), d_range=(1e9, 1e11))
    path = tmp_path / f"plot{suffix}"
    path.write_bytes(b"old")
    assert plots.save_figure(fig, path) == path
    data = path.read_bytes()
    assert data.startswith(magic)
    if suffix == ".svg":
        assert b"<svg" in data[:2000]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions, not the temp file's 0600


def test_save_refuses_unknown_suffix(tmp_path):
    fig = plots.landscape_figure(n_range=(1e8, 1e10), d_range=(1e9, 1e11))
    with pytest.raises(UsageError, match=r"\.png, \.svg, \.pdf"):
        plots.save_figure(fig, tmp_path / "plot.gif")
    assert not any(tmp_path.iterdir())


# -------------------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def run():
    """The real app's entry point, `flopscalc.cli.run`: the plot commands as users reach them."""
    from flopscalc.cli import run as cli_run

    return cli_run


def test_cli_writes_png_and_prints_path(run, tmp_path, capsys):
    out = tmp_path / "mem.png"
    assert run(["plot", "memory", "--gpu", "4070ti", "--model", "gpt2", "--micro-batch", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_cli_json_is_the_plotted_numbers(run, tmp_path, capsys):
    out = tmp_path / "iso.svg"
    assert run(["plot", "isoflop", "--flops", "1e20", "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written_to"] == str(out) and out.read_bytes().startswith(b"<?xml")
    a = optimal(BUILTIN_LAWS["besiroglu2024"], 1e20)
    assert data["curves"][0]["min_n_params"] == pytest.approx(a.n_params, rel=1e-12)


def test_cli_frontier_budget_from_gpu_days(run, capsys):
    assert run(["plot", "frontier", "--gpu", "4070ti", "--days", "365", "--mfu", "0.4", "--json",
                "--no-published"]) == 0
    data = json.loads(capsys.readouterr().out)
    # seed claim 1: the 4070 Ti's BF16 tensor peak (80.2 TFLOP/s) x 90% x 1 year = 2.28e21; x MFU 0.4 = 9.1e20
    assert data["budget"]["c_flops"] == pytest.approx(2.28e21 * 0.4, rel=0.01)
    assert data["published_runs"] == [] and data["gpu_fit"]["capacity_bytes"] == 12 * GIB


def test_cli_frontier_budget_is_the_plans_without_mfu(run, capsys):
    # without --mfu the budget line is the model FLOPs 'plan' says its recommended run delivers on the same GPUs
    # and days (it was a constant MFU of 0.4 while plan predicted another), and the label says where it came from
    assert run(["plot", "frontier", "--gpu", "4070ti", "--days", "365", "--json", "--no-published"]) == 0
    budget = json.loads(capsys.readouterr().out)["budget"]
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    delivered = planned["recommended"]["model_flops"]
    assert budget["c_flops"] == pytest.approx(delivered, rel=1e-9)
    assert budget["c_flops"] != pytest.approx(2.28e21 * 0.4, rel=0.01) and "as plan predicts" in budget["label"]


@pytest.mark.parametrize("gpu, extra", [
    ("4070ti", ("--memory", "6GiB")),  # the plan behind the budget had the database's 12 GiB: MFU 0.54, not 0.40
    ("h100", ("--n-gpus", "64")),  # a layout-search plan predicts its MFU; the label said "as plan assumes"
])
def test_cli_frontier_budget_is_the_plan_of_the_same_options(run, capsys, gpu, extra):
    # the plan whose MFU sets the budget is asked the options the chart was given, and its MFU is a prediction
    argv = ("--gpu", gpu, "--days", "30", *extra)
    assert run(["plot", "frontier", *argv, "--json", "--no-published"]) == 0
    budget = json.loads(capsys.readouterr().out)["budget"]
    assert run(["plan", *argv, "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["hardware_efficiency"] is None  # no stated constant: the per-operation or layout model's MFU
    assert budget["c_flops"] == pytest.approx(planned["recommended"]["model_flops"], rel=1e-9)
    assert "as plan predicts" in budget["label"]


@pytest.mark.parametrize("argv, code, message", [
    (["plot", "landscape", "--out", "x.gif"], 2, "accepted: .png, .svg, .pdf"),
    (["plot", "landscape"], 2, "--out FILE"),
    (["plot", "frontier", "--days", "30", "--json"], 2, "--days needs --gpu"),
    (["plot", "frontier", "--flops", "1e21", "--gpu", "4070ti", "--days", "3", "--json"], 2, "budget once"),
    (["plot", "frontier", "--c-min", "1e22", "--c-max", "1e20", "--json"], 2, "low < high"),
    (["plot", "landscape", "--law", "chinchilla-a2", "--json"], 1, "no loss formula"),
    (["plot", "calibration", "missing.json", "--json"], 2, "does not exist"),
    (["plot", "isoflop", "--law", "nosuchlaw", "--json"], 2, "unknown scaling law"),
])
def test_cli_errors_are_one_line(run, capsys, tmp_path, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    assert run(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("flopscalc: error: ") and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_calibration_from_a_profile_file(run, tmp_path, capsys):
    path = save_profile(make_profile(), tmp_path / "prof.json")
    out = tmp_path / "cal.pdf"
    assert run(["plot", "calibration", str(path), "--out", str(out), "--mfu", "0.5"]) == 0
    assert out.read_bytes().startswith(b"%PDF-")


def test_importing_the_plot_cli_loads_no_heavy_module():
    code = ("import sys, flopscalc.cli.plot, flopscalc.plots; "
            "print(','.join(m for m in ('matplotlib', 'pandas', 'scipy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
