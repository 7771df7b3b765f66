"""CLI wiring and contracts: exit codes, one-line errors, --json values, every option matters, lazy imports."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, cli_json

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_prints_budget_candidates_and_sources(capsys):
    code, out, err = cli(capsys, "plan", "--gpu", "4070ti", "--days", "365")
    assert code == 0 and err == ""
    for text in ("RTX 4070 Ti", "2.28e21", "gpt2-xl", "Hoffmann", "Llama 3", "gpu_specs.csv"):
        assert text in out


def test_seed_invocation_shows_1_14e21(capsys):
    code, out, _ = cli(capsys, "plan", "--gpu", "4070ti", "--days", "365", "--precision", "fp32",
                       "--utilization", "0.9", "--mfu", "1")
    assert code == 0 and "1.14e21" in out


def test_plan_json_values(capsys):
    d = cli_json(capsys, "plan", "--gpu", "RTX 4070 Ti", "--hours", "24", "--n-gpus", "2")
    assert d["gpu"] == "rtx-4070-ti" and d["n_gpus"] == 2 and d["duration_s"] == 86400
    assert d["peak_flop_per_s_per_gpu"] == pytest.approx(80.2e12)
    assert d["peak_flops"] == pytest.approx(2 * 80.2e12 * 86400, rel=1e-12)  # GPUs x peak x time
    assert d["busy_flops"] == pytest.approx(0.9 * d["peak_flops"], rel=1e-12)  # default duty cycle 0.9
    # the hardware efficiency is what the GPUs reach while computing (by default the per-operation model's,
    # with --mfu the stated one); communication only takes from it
    eff = d["recommended"]["speed"]["hardware_efficiency"]
    assert 0 < eff <= 1 and 0 < d["recommended"]["model_flops"] <= eff * d["busy_flops"] * (1 + 1e-12)
    stated = cli_json(capsys, "plan", "--gpu", "RTX 4070 Ti", "--hours", "24", "--n-gpus", "2", "--mfu", "0.4")
    assert 0 < stated["recommended"]["model_flops"] <= 0.4 * stated["busy_flops"] * (1 + 1e-12)
    assert [c["model"] for c in d["candidates"]] == ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
    assert d["candidates"][3]["n_params"] == 1_557_611_200


PLAN_BASE = ["plan", "--gpu", "4070ti", "--days", "10"]
FIXED_RUN = ["plan", "--gpu", "4070ti", "--model", "gpt2", "--tokens", "1B"]  # gpt2 fits one 4070 Ti as is


def _with(base, option):
    """``base`` with ``option`` (a flag and its value, or a lone flag) set or replaced."""
    argv = list(base)
    if option[0] in argv and len(option) == 2:
        argv[argv.index(option[0]) + 1] = option[1]
    else:
        argv += option
    return argv


def _peak(gpu, precision):
    from flopscalc.hardware import Precision, builtin_database

    return builtin_database().get(gpu).peak_flop_per_s(Precision(precision))


# Each option must move a computed number (never an echoed input) the way a definition or a paper says:
# the budget is peak x time x duty cycle (x GPUs), so it is linear in each; more compute never predicts a worse
# loss (every scaling law is decreasing in N and D).
PLAN_BUDGET_FACTORS = {  # option -> factor on the busy FLOPs (peak x time x duty cycle) against PLAN_BASE
    "days": (["--days", "20"], lambda: 2.0),
    "n-gpus": (["--n-gpus", "3"], lambda: 3.0),
    "utilization": (["--utilization", "0.5"], lambda: 0.5 / 0.9),  # default duty cycle 0.9
    "gpu": (["--gpu", "4090"], lambda: _peak("4090", "bf16") / _peak("4070ti", "bf16")),
    "precision": (["--precision", "fp32"], lambda: _peak("4070ti", "fp32") / _peak("4070ti", "bf16")),
}


@pytest.mark.parametrize("name", list(PLAN_BUDGET_FACTORS))
def test_every_plan_budget_option_scales_the_budget_and_moves_the_loss(capsys, name):
    option, factor = PLAN_BUDGET_FACTORS[name]
    base = cli_json(capsys, *PLAN_BASE)
    got = cli_json(capsys, *_with(PLAN_BASE, option))
    assert got["busy_flops"] == pytest.approx(factor() * base["busy_flops"], rel=1e-12)
    more = factor() > 1
    assert (got["recommended"]["loss"] < base["recommended"]["loss"]) == more  # more compute, lower loss
    assert (got["recommended"]["n_tokens"] * got["recommended"]["speed"]["model_flops_per_token"]
            > base["recommended"]["n_tokens"] * base["recommended"]["speed"]["model_flops_per_token"]) == more


def test_plan_mfu_divides_the_training_time(capsys):
    # MFU = model FLOPs / (peak x time) (Chowdhery et al. 2022, App. B): one GPU, no recomputation, no offload
    # and no communication, so the time of a fixed run is inversely proportional to it (constant-MFU arithmetic:
    # both runs state their efficiency)
    base = cli_json(capsys, *_with(FIXED_RUN, ["--mfu", "0.4"]))
    got = cli_json(capsys, *_with(FIXED_RUN, ["--mfu", "0.3"]))
    assert base["recommended"]["setup"]["recompute"] == got["recommended"]["setup"]["recompute"] == "none"
    assert got["recommended"]["train_time_s"] == pytest.approx(base["recommended"]["train_time_s"] * 0.4 / 0.3,
                                                                rel=1e-12)
    lower = cli_json(capsys, *_with(PLAN_BASE, ["--mfu", "0.3"]))
    assert lower["recommended"]["loss"] > cli_json(capsys, *_with(PLAN_BASE, ["--mfu", "0.4"]))["recommended"]["loss"]


def test_plan_seq_moves_the_attention_flops_by_palm_appendix_b(capsys):
    # PaLM App. B: model FLOPs per token = 6N + 12 L H Q T, so shortening T from 1024 to 256 removes exactly
    # 12 L d (1024 - 256) per token for the same model (H Q = d)
    base = cli_json(capsys, *FIXED_RUN)
    got = cli_json(capsys, *_with(FIXED_RUN, ["--seq", "256"]))
    L, d = 12, 768  # GPT-2 small (Radford et al. 2019, Table 2)
    drop = base["recommended"]["speed"]["model_flops_per_token"] - got["recommended"]["speed"]["model_flops_per_token"]
    assert drop == 12 * L * d * (1024 - 256)


def test_duration_forms_agree(capsys):
    days = cli_json(capsys, "plan", "--gpu", "4070ti", "--days", "14")
    assert cli_json(capsys, "plan", "--gpu", "4070ti", "--duration", "2w")["model_flops"] == days["model_flops"]
    assert cli_json(capsys, "plan", "--gpu", "4070ti", "--hours", "336")["model_flops"] == days["model_flops"]


def test_flops_json_matches_six_nd_for_the_seed_claim_2(capsys):
    # SEED_CLAIMS.md #2: 6 x 1.5e9 x 1e10 = 9e19 with 6ND; the exact count is larger (attention + LM head).
    d = cli_json(capsys, "flops", "--model", "gpt2-xl", "--tokens", "10B")
    six = next(c for c in d["conventions"] if c["key"] == "6nd")
    assert six["flops_per_run"] == pytest.approx(6 * 1_557_611_200 * 1e10, rel=1e-12)
    assert d["per_run"]["model_flops"] > six["flops_per_run"]
    assert d["n_tokens"] == 1e10


FLOPS_BASE = ["flops", "--model", "gpt2", "--tokens", "1B", "--seq", "512"]
GPT2_L, GPT2_D, BASE_SEQ = 12, 768, 512  # GPT-2 small (Radford et al. 2019, Table 2) at FLOPS_BASE's --seq


def _core(d):
    """Forward FLOPs per token of the attention core (Q K^T and attention x V)."""
    f = d["forward_flops_per_token"]
    return f["attn_scores"] + f["attn_values"]


def _not_core(d):
    return {k: v for k, v in d["forward_flops_per_token"].items() if k not in ("attn_scores", "attn_values")}


def test_flops_tokens_scale_the_run_only(capsys):
    base = cli_json(capsys, *FLOPS_BASE)
    got = cli_json(capsys, *_with(FLOPS_BASE, ["--tokens", "2B"]))
    assert got["per_token"] == base["per_token"]
    assert got["per_run"]["model_flops"] == 2 * base["per_run"]["model_flops"]  # C = F D: linear in tokens
    assert got["n_steps"] == 2 * base["n_steps"]


@pytest.mark.parametrize("option,factor", [(["--micro-batch", "4"], 4), (["--grad-accum", "4"], 4),
                                           (["--n-gpus", "2"], 2)])
def test_flops_batch_options_scale_the_step_only(capsys, option, factor):
    base = cli_json(capsys, *FLOPS_BASE)
    got = cli_json(capsys, *_with(FLOPS_BASE, option))
    assert got["per_token"] == base["per_token"] and got["per_run"] == base["per_run"]
    assert got["tokens_per_step"] == factor * base["tokens_per_step"]  # micro-batch x seq x accum x GPUs
    assert got["per_step"]["model_flops"] == factor * base["per_step"]["model_flops"]
    # a run takes whole steps: the tokens need ceil(D / tokens per step) of them
    assert got["n_steps"] == math.ceil(base["n_steps"] / factor)
    assert isinstance(got["n_steps"], int)


def test_flops_larger_model_costs_more_per_token(capsys):
    base = cli_json(capsys, *FLOPS_BASE)
    got = cli_json(capsys, *_with(FLOPS_BASE, ["--model", "gpt2-medium"]))
    assert got["per_token"]["model_flops"] > base["per_token"]["model_flops"]
    # every matmul weight costs 6 FLOPs per token in training (Kaplan et al. 2020, sec. 2.1): the MLP grows by
    # 6 x its extra weights, 2 matrices of d x 4d per layer
    mlp_weights = {name: 2 * 4 * d * d * L for name, L, d in (("gpt2", 12, 768), ("gpt2-medium", 24, 1024))}
    assert 3 * (got["forward_flops_per_token"]["mlp"] - base["forward_flops_per_token"]["mlp"]) == 6 * (
        mlp_weights["gpt2-medium"] - mlp_weights["gpt2"])


def test_flops_seq_moves_the_attention_core_by_palm_appendix_b(capsys):
    base = cli_json(capsys, *FLOPS_BASE)
    got = cli_json(capsys, *_with(FLOPS_BASE, ["--seq", "1024"]))
    assert _not_core(got) == _not_core(base)  # only the attention core depends on the context
    # PaLM App. B: 12 L H Q T per token in training (H Q = d), linear in T
    assert got["per_token"]["model_flops"] - base["per_token"]["model_flops"] == 12 * GPT2_L * GPT2_D * (1024 - 512)


def test_flops_causal_keeps_only_the_unmasked_pairs(capsys):
    base = cli_json(capsys, *FLOPS_BASE)
    got = cli_json(capsys, *_with(FLOPS_BASE, ["--causal"]))
    assert _not_core(got) == _not_core(base)
    # a causal mask leaves T (T + 1) / 2 of the T^2 query-key pairs; T = 1 would be the limit case of no saving
    assert _core(got) == pytest.approx(_core(base) * (BASE_SEQ + 1) / (2 * BASE_SEQ), rel=1e-15)
    assert got["per_token"]["model_flops"] < base["per_token"]["model_flops"]


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_flops_recompute_adds_hardware_flops_only(capsys, mode):
    base = cli_json(capsys, *FLOPS_BASE)
    got = cli_json(capsys, *_with(FLOPS_BASE, ["--recompute", mode]))
    assert base["per_token"]["hardware_flops"] == base["per_token"]["model_flops"]  # limit case: nothing redone
    assert got["per_token"]["model_flops"] == base["per_token"]["model_flops"]  # MFU counts no recompute (PaLM)
    extra = got["per_token"]["hardware_flops"] - got["per_token"]["model_flops"]
    f = got["forward_flops_per_token"]
    # full: every transformer layer's forward runs once more, not the LM head (Narayanan et al. 2021, sec. 5.1:
    # 96 B s l h^2 (1 + s/6h) for the layers, 4 passes, but the logits' 6 B s h V, 3 passes); selective: only
    # the attention core (Korthikanti et al. 2022, sec. 4.1)
    layers = got["per_token"]["forward_flops"] - f["lm_head"] - f["embedding"]
    assert extra == (layers if mode == "full" else _core(got))


def test_flops_shapes_by_params_and_explicit_shape(capsys):
    by_params = cli_json(capsys, "flops", "--params", "124M", "--tokens", "1B")
    assert by_params["model"]["n_layer"] == 12 and by_params["model"]["n_embd"] == 768
    explicit = cli_json(capsys, "flops", "--n-layer", "12", "--n-head", "12", "--n-embd", "768", "--tokens", "1B")
    assert explicit["per_run"] == by_params["per_run"]


def test_gpus_list_and_show(capsys):
    d = cli_json(capsys, "gpus")
    assert len(d["gpus"]) >= 25
    show = cli_json(capsys, "gpus", "show", "4070ti")
    assert show["key"] == "rtx-4070-ti" and show["source"]
    code, out, _ = cli(capsys, "gpus", "show", "h100")
    assert code == 0 and "H100" in out


def test_user_gpu_csv_reaches_plan(capsys, tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("key,name,memory_gib,bf16_tflop_per_s,source\nmy-card,My Card,24,100,my own benchmark\n")
    d = cli_json(capsys, "plan", "--gpu", "my card", "--days", "1", "--gpu-csv", str(csv))
    assert d["gpu"] == "my-card" and d["peak_flop_per_s_per_gpu"] == 100e12


def test_models_lists_presets(capsys):
    d = cli_json(capsys, "models")
    assert {m["name"]: m["n_params"] for m in d["models"]}["gpt2"] == 124_439_808


@pytest.mark.parametrize("argv,code,pattern", [
    (["plan", "--gpu", "4070t", "--days", "1"], 2, r"unknown GPU '4070t'; did you mean .*rtx-4070-ti"),
    (["plan", "--gpu", "4070ti", "--days", "0"], 2, r"--days must be a positive"),
    (["plan", "--gpu", "4070ti", "--days", "-3"], 2, r"--days must be a positive"),
    (["plan", "--gpu", "4070ti", "--days", "inf"], 2, r"--days must be a positive, finite time"),
    (["plan", "--gpu", "4070ti"], 2, r"--days, --hours or --duration"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--hours", "2"], 2, r"--days and --hours"),
    (["plan", "--gpu", "4070ti", "--duration", "12XB"], 2, r"12XB"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--mfu", "2"], 2, r"mfu"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--precision", "fp64"], 2, r"fp64"),
    (["plan", "--gpu", "v100", "--days", "1", "--precision", "fp8"], 1, r"no FP8"),
    (["flops", "--model", "gpt5", "--tokens", "1B"], 2, r"gpt5"),
    (["flops", "--model", "gpt2", "--tokens", "1..5B"], 2, r"1\.\.5B"),
    (["flops", "--model", "gpt2", "--tokens", "1B", "--seq", "4096"], 2, r"4096"),
    (["flops", "--model", "gpt2", "--params", "124M", "--tokens", "1B"], 2, r"model"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--bogus"], 2, r"--bogus"),
    # the face resolves the law (the planner does no I/O): one line, a suggestion, where saved laws are read from
    (["plan", "--gpu", "4070ti", "--days", "1", "--law", "chinchila"], 2,
     r"unknown scaling law 'chinchila'; did you mean chinchilla\?; run 'flopscalc scaling laws' .*saved laws"),
    (["gpus", "show", "4070t"], 2, r"did you mean"),
])
def test_bad_input_gets_one_line_and_the_right_exit_code(capsys, argv, code, pattern):
    got, out, err = cli(capsys, *argv)
    assert got == code
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscalc: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def test_malformed_user_csv_names_file_and_line(capsys, tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("key,name,memory_gib,bf16_tflop_per_s,source\nok,OK card,8,50,me\nbad,Bad card,lots,50,me\n")
    code, _, err = cli(capsys, "gpus", "--gpu-csv", str(csv))
    assert code == 2 and "bad.csv:3" in err and "memory_gib" in err


def _python(*args, **kw):
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, cwd=ROOT, **kw)


def test_console_script_entry_points_exit_codes_without_traceback():
    ok = _python("-m", "flopscalc", "plan", "--gpu", "4070ti", "--days", "365")
    assert ok.returncode == 0 and "2.28e21" in ok.stdout
    bad = _python("-m", "flopscalc", "plan", "--gpu", "4070t", "--days", "365")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscalc: error: unknown GPU '4070t'; did you mean ")
    assert "rtx-4070-ti" in lines[0]  # the nearest key is suggested (the list grows with the database)


def test_cli_and_package_import_no_heavy_libraries():
    code = ("import sys, flopscalc, flopscalc.cli; "
            "from flopscalc.cli import run; run(['plan', '--gpu', '4070ti', '--days', '365', '--json']); "
            "heavy = [m for m in ('pandas', 'scipy', 'matplotlib', 'torch') if m in sys.modules]; "
            "sys.stderr.write(repr(heavy))")
    r = _python("-c", code)
    assert r.returncode == 0 and r.stderr == "[]", r.stderr


def test_readme_commands_and_ci_script_agree():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.DOTALL)
    main_cmd = next(b.strip() for b in blocks if "flopscalc plan --gpu 4070ti --days 365" in b)
    test_cmd = next(b.strip() for b in blocks if "pytest" in b)
    assert main_cmd.startswith("python3 -m venv") and test_cmd.startswith("python3 -m venv")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci


def test_runs_lists_published_runs_with_their_errors(capsys):
    from flopscalc.runs import compare, get_run

    d = cli_json(capsys, "runs")
    by_name = {r["run"]: r for r in d["runs"]}
    assert len(by_name) >= 6 and "llmc-gpt2-124m" in by_name
    assert by_name["bloom-176b"]["error"] == pytest.approx(compare(get_run("bloom-176b")).error)
    code, out, _ = cli(capsys, "runs")
    assert code == 0 and "opt-175b" in out


def test_readme_shows_what_the_main_job_prints():
    # every line of the README's example (rendered 100 columns wide) is a line the command prints today
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```text\n\$ flopscalc plan --gpu 4070ti --days 365\n(.*?)```", readme, flags=re.DOTALL)[1]
    shown = [line.rstrip() for line in block.splitlines() if line.strip() and line.strip() != "..."]
    out = _python("-m", "flopscalc", "plan", "--gpu", "4070ti", "--days", "365", env={**os.environ, "COLUMNS": "100"})
    printed = {line.rstrip() for line in out.stdout.splitlines()}
    missing = [line for line in shown if line not in printed]
    assert not missing, missing
