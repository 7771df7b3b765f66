"""What the GPU database feeds (issue 14): precision fallback, unknown board power, device-hours, fit legend."""

from __future__ import annotations

import json

import pytest
from conftest import cli

from flopscalc.costs import energy_cost
from flopscalc.errors import DomainError, UsageError
from flopscalc.hardware import Precision, builtin_database, get_gpu, load_database, training_precision
from flopscalc.planner.budget import DEFAULT_PRECISION

# ------------------------------------------------------------------ precision: fp16 where there is no BF16

@pytest.mark.parametrize("key", ["v100", "t4"])
def test_gpus_without_bf16_fall_back_to_fp16_with_a_note(key):
    # V100 (Volta) and T4 (Turing) tensor cores take FP16 only: NVIDIA V100 / T4 datasheets list no BF16
    gpu = get_gpu(key)
    p, note = training_precision(gpu, None, DEFAULT_PRECISION)
    assert p is Precision.fp16 and note is not None and "fp16" in note and "\n" not in note


def test_gpus_with_bf16_keep_the_default_silently():
    for g in builtin_database():
        if g.bf16_flop_per_s is not None:
            assert training_precision(g, None, DEFAULT_PRECISION) == (DEFAULT_PRECISION, None), g.key


def test_explicit_bf16_on_a_v100_is_refused_suggesting_fp16():
    with pytest.raises(DomainError) as err:  # the GPU lacks it: no answer (exit 1), as peak_flop_per_s says
        training_precision(get_gpu("v100"), "bf16", DEFAULT_PRECISION)
    msg = str(err.value)
    assert "--precision fp16" in msg and "\n" not in msg


def test_a_row_with_neither_bf16_nor_fp16_is_refused(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("key,name,memory_gib,fp32_tflop_per_s\nold,Old Card,8,5\n", encoding="utf-8")
    with pytest.raises(UsageError, match="fp32"):
        training_precision(load_database([p]).get("old"), None, DEFAULT_PRECISION)


def test_plan_on_a_v100_runs_at_fp16_by_default_and_says_so(capsys):
    code, out, err = cli(capsys, "plan", "--gpu", "v100", "--days", "30", "--json")
    assert code == 0, err
    d = json.loads(out)
    # the V100's dense FP16 tensor rate, 125 TFLOP/s (NVIDIA V100 datasheet, SXM2)
    assert d["precision"] == "fp16" and d["peak_flop_per_s_per_gpu"] == pytest.approx(125e12)
    assert any("fp16 mixed precision" in w for w in d["warnings"])


def test_plan_with_explicit_bf16_on_a_t4_exits_1_in_one_line(capsys):
    code, out, err = cli(capsys, "plan", "--gpu", "t4", "--days", "1", "--precision", "bf16")
    assert code == 1 and out == "" and err.count("\n") == 1 and "--precision fp16" in err


def test_plan_on_a_4070ti_keeps_bf16(capsys):
    code, out, err = cli(capsys, "plan", "--gpu", "4070ti", "--days", "1", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["precision"] == "bf16" and not any("mixed precision" in w for w in d["warnings"])


# ------------------------------------------------------------------ energy: unknown is not zero

def test_unknown_board_power_gives_unknown_energy():
    gpu = get_gpu("tpu-v5e")  # Google publishes no power for v5e (Cloud TPU v5e system architecture table)
    assert gpu.board_power_w is None
    e = energy_cost(gpu, 4, 86400.0, 0.9, cloud_usd_per_gpu_hour=1.2)
    assert e.facility_energy_j is None and e.facility_energy_kwh is None and not e.energy_known
    assert e.electricity_usd is None
    assert e.cloud_usd == pytest.approx(4 * 24 * 1.2)  # the GPU-hours do not need the power


def test_known_board_power_energy_is_power_times_busy_time():
    e = energy_cost(get_gpu("4070ti"), 2, 3600.0, 0.5)
    assert e.energy_known and e.facility_energy_kwh == pytest.approx(2 * 285 * 0.5 / 1000)  # 285 W TGP (Ada WP)


# The per-operation step model has no TPU figures (it refuses a TPU in one line), so TPU plans state an efficiency
TPU_MFU = ("--mfu", "0.4")


def test_plan_shows_unknown_energy_as_unknown(capsys):
    code, out, _ = cli(capsys, "plan", "--gpu", "tpu-v5e", "--days", "1", *TPU_MFU, "--json")
    assert code == 0 and json.loads(out)["energy"]["facility_energy_kwh"] is None
    code, out, _ = cli(capsys, "plan", "--gpu", "tpu-v5e", "--days", "1", *TPU_MFU)
    assert code == 0 and "unknown (no board power" in out and "0 kWh" not in out


@pytest.mark.parametrize("key,watts,source", [
    ("rtx-4070-ti-super", 285, "NVIDIA RTX 4070 family spec page, 285 W TGP (read via secondary reports only)"),
    ("mi250x", 280, "AMD Instinct MI250X product page: 560 W peak for the OAM, half for the one GCD the row is"),
    ("a100-pcie-40gb", 250, "NVIDIA A100 PCIe launch, June 2020: 250 W (400 W SXM4)"),
])
def test_board_power_filled_from_vendor_pages(key, watts, source):
    assert get_gpu(key).board_power_w == watts, source


def test_mi250x_is_the_device_software_sees_one_gcd():
    # ROCm/PyTorch/Slurm see an MI250X as two GPUs of 64 GiB (Pawsey Setonix guide, 'GCD vs GPU'): the row is one
    # GCD, half the OAM's published figures (220 CUs x 1024 BF16 FLOP/clock x 1.7 GHz = 383.0 TFLOP/s for two)
    gcd = get_gpu("mi250x")
    assert gcd.memory_bytes == 64 * 2**30
    assert gcd.bf16_flop_per_s == pytest.approx(110 * 1024 * 1.7e9, rel=0.001)
    assert gcd.memory_bandwidth_bytes_per_s == pytest.approx(3.2e12 / 2)


# ------------------------------------------------------------------ device-hours are named after the device

def test_runs_count_tpu_hours_as_chip_hours(capsys):
    code, out, _ = cli(capsys, "runs", "--json")
    assert code == 0
    runs = {r["run"]: r for r in json.loads(out)["runs"]}
    assert runs["palm-540b"]["gpu"] == "tpu-v4" and runs["palm-540b"]["device_hours_unit"] == "chip-h"
    assert runs["bloom-176b"]["device_hours_unit"] == "GPU-h"
    code, out, _ = cli(capsys, "runs")
    palm = next(line for line in out.splitlines() if line.startswith((" palm-540b", "palm-540b")))
    assert "chip-h" in palm and "GPU-h" not in palm


def test_plan_counts_tpu_time_in_chip_hours(capsys):
    code, out, _ = cli(capsys, "plan", "--gpu", "tpu-v5e", "--days", "1", *TPU_MFU)
    energy = next(line for line in out.splitlines() if line.lstrip().startswith("energy"))
    assert code == 0 and "24 chip-hours" in energy and "GPU" not in energy


def test_device_noun_by_segment():
    assert get_gpu("tpu-v4").device_noun == "chip" and get_gpu("h100").device_noun == "GPU"


# ------------------------------------------------------------------ the frontier plot's fit band

def test_frontier_fit_band_names_the_optimizer_the_offload_setups_use():
    from flopscalc import plots
    from flopscalc.memory import Optimizer
    from flopscalc.planner.options import searched_setups

    offloaded = {s["optimizer"] for s in searched_setups(1) if s["offload_optimizer"]}
    assert offloaded == {Optimizer.adamw}  # offload keeps AdamW (planner.options)
    fig = plots.frontier_figure(gpu=get_gpu("4070ti"), published=False)
    band = next(a for a in fig.axes[0].patches if a.get_gid() == "fit:any_setup")
    assert "AdamW" in band.get_label() and "8-bit" not in band.get_label()
