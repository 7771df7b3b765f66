"""`flopscalc step`: exit codes, --json contract, every option moves a computed field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from flopscalc.cli import run

DEFAULTS = {"--gpu": "a100-80gb", "--model": "gpt2", "--micro-batch": "8", "--seq": "512"}
BASE = ("step", *[x for kv in DEFAULTS.items() for x in kv])


def argv_with(*extra):
    """The base command with ``extra`` options, an option given in ``extra`` replacing its default."""
    given = set(extra[::1])
    base = [x for k, v in DEFAULTS.items() if k not in given for x in (k, v)]
    return ("step", *base, *extra)


def step_json(capsys, *extra):
    code, out, err = cli(capsys, *argv_with(*extra), "--json")
    assert code == 0, err
    return json.loads(out)


def test_json_holds_the_contract_fields_and_they_agree(capsys):
    d = step_json(capsys, "--n-gpus", "4")
    for key in ("step_s", "tokens_per_s", "mfu", "hfu", "class_seconds"):
        assert key in d
    assert sum(d["class_seconds"].values()) == pytest.approx(d["step_s"])
    assert d["tokens_per_s"] == pytest.approx(8 * 512 * 4 / d["step_s"])  # whole run, all GPUs
    assert 0 < d["mfu"] <= d["hfu"] <= 1
    assert set(d["class_seconds"]) == {"gemm", "attention", "memory-bound", "optimizer", "communication exposed",
                                       "overlap slowdown",
                                       "offload"}


def test_table_output_names_classes_and_utilisation(capsys):
    code, out, err = cli(capsys, *BASE)
    assert code == 0 and err == ""
    for text in ("gemm", "attention", "memory-bound", "communication exposed", "MFU", "HFU", "tokens/s"):
        assert text in out


@pytest.mark.parametrize("extra,field,direction", [
    (("--recompute", "full"), "step_s", +1),
    (("--no-flash",), "step_s", +1),
    (("--grad-accum", "4"), "step_s", +1),
    (("--micro-batch", "16"), "step_s", +1),
    (("--precision", "fp32"), "step_s", +1),
    (("--dropout",), "step_s", +1),
    (("--fused-loss",), "step_s", -1),
    (("--sustained", "1"), "step_s", -1),
    (("--n-gpus", "8", "--zero", "3"), "communication_s", +1),
    (("--offload",), "step_s", +1),
])
def test_every_option_moves_a_computed_field(capsys, extra, field, direction):
    base = step_json(capsys)
    moved = step_json(capsys, *extra)
    assert (moved[field] - base[field]) * direction > 0


def test_recompute_separates_hfu_from_mfu_by_flops_py_ratio(capsys):
    from flopscalc.flops import training_flops_per_token
    from flopscalc.model import PRESETS

    d = step_json(capsys, "--recompute", "full")
    t = training_flops_per_token(PRESETS["gpt2"], 512, recompute="full", causal=True)
    # executed: the recomputed blocks and FlashAttention-2's backward Q K^T (Dao 2023, Alg. 2)
    expected = (t.hardware_flops_per_token + t.forward.attn_scores) / t.model_flops_per_token
    assert d["hfu"] / d["mfu"] == pytest.approx(expected, rel=1e-12)


def test_explicit_shape_and_any_gpu(capsys):
    d = step_json(capsys, "--gpu", "4090")
    assert d["gpu"] == "rtx-4090"
    code, out, err = cli(capsys, "step", "--gpu", "h100", "--n-layer", "4", "--n-head", "4", "--n-embd", "256",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "4x256"


@pytest.mark.parametrize("argv,code", [
    (("step", "--gpu", "cpu", "--model", "gpt2"), 1),
    (("step", "--gpu", "tpu-v4", "--model", "gpt2"), 1),
    (("step", "--gpu", "a100", "--model", "gpt2", "--sustained", "1.5"), 2),
    (("step", "--gpu", "a100-80gb", "--model", "gpt2", "--seq", "4096"), 2),
    (("step", "--gpu", "nosuchgpu", "--model", "gpt2"), 2),
    (("step", "--gpu", "a100-80gb", "--model", "gpt2", "--zero", "5"), 2),
    (("step", "--gpu", "a100-80gb", "--model", "gpt2", "--n-layer", "4"), 2),
    (("step", "--gpu", "a100-80gb", "--model", "gpt2", "--micro-batch", "0"), 2),
])
def test_bad_input_is_one_line_and_an_exit_code(capsys, argv, code):
    got, out, err = cli(capsys, *argv)
    assert got == code
    assert err.startswith("flopscalc: error: ") and err.count("\n") == 1 and out == ""


@pytest.mark.parametrize("model", [["--model", "gpt2"], ["--model", "mixtral-8x7b", "--seq", "2048"],
                                   ["--config", "data/configs/qwen1.5-moe-a2.7b.json", "--seq", "2048"]])
def test_step_imports_no_heavy_library(model):
    import subprocess
    import sys

    code = ("import sys; from flopscalc.cli import run; "
            f"code = run(['step', '--gpu', 'h100', *{model!r}, '--json']); assert code == 0; "
            "heavy = [m for m in ('pandas', 'scipy', 'matplotlib', 'torch') if m in sys.modules]; "
            "sys.stderr.write(repr(heavy))")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root)
    assert done.returncode == 0 and done.stderr == "[]", done.stderr


@pytest.mark.parametrize("gpu,fits", [("4070ti", False), ("h100", True)])
def test_step_says_whether_the_setup_fits_as_memory_does(capsys, gpu, fits):
    # seed claim 6: GPT-2 XL with AdamW at micro-batch 1 needs ~25.2 GiB, more than a 12 GB card holds
    flags = ["--model", "gpt2-xl", "--gpu", gpu, "--micro-batch", "1"]
    assert run(["step", *flags, "--json"]) == 0
    step = json.loads(capsys.readouterr().out)
    assert run(["memory", *flags, "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)
    assert step["peak_memory_bytes"] == memory["peak_bytes"]  # the same estimate for the same flags
    assert step["fits"] is fits
    assert (step["peak_memory_bytes"] > step["memory_bytes_per_gpu"]) is not fits


# ---------------------------------------------------------------- every block the architecture describes

LLAMA_CONFIG = str(Path(__file__).resolve().parents[1] / "data" / "configs" / "llama-3.1-8b.json")


def test_llama_config_file_on_8_h100s_with_fsdp_and_full_recompute(capsys):
    code, out, err = cli(capsys, "step", "--config", LLAMA_CONFIG, "--seq", "8192", "--gpu", "h100", "--n-gpus", "8",
                         "--zero", "3", "--recompute", "full", "--micro-batch", "1", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["tokens_per_s"] == pytest.approx(8192 * 8 / d["step_s"])
    # the numerators are flopscalc.flops's for the file's model (GQA 32/8, SwiGLU 14336, vocabulary 128,256)
    from flopscalc.flops import training_flops_per_token
    from flopscalc.hf_config import read_hf_config

    t = training_flops_per_token(read_hf_config(LLAMA_CONFIG), 8192, recompute="full", causal=True)
    assert d["model_flops_per_token"] == t.model_flops_per_token
    assert d["hfu"] / d["mfu"] == pytest.approx((t.hardware_flops_per_token + t.forward.attn_scores)
                                                / t.model_flops_per_token, rel=1e-12)
    assert 0 < d["mfu"] <= d["hfu"] <= 1 and d["fits"] is True


@pytest.mark.parametrize("model", ["mixtral-8x7b", "llama-3.1-70b", "qwen2.5-7b", "olmo-2-7b", "pythia-1b"])
def test_every_family_preset_is_priced(capsys, model):
    d = step_json(capsys, "--model", model, "--gpu", "h100", "--seq", "2048", "--micro-batch", "1")
    assert 0 < d["mfu"] <= d["hfu"] <= 1 and sum(d["class_seconds"].values()) == pytest.approx(d["step_s"])


def test_a_mixture_of_experts_runs_below_the_mfu_of_its_dense_twin(capsys):
    # Mixtral's active width is two experts of 14,336; a dense MLP of 28,672 does the same model FLOPs per token,
    # but its GEMMs keep all the rows, while each expert sees tokens x 2 / 8 (and dispatch/combine move bytes)
    moe = step_json(capsys, "--model", "mixtral-8x7b", "--gpu", "h100", "--seq", "1024", "--micro-batch", "1")
    dense = step_json(capsys, "--model", "mistral-7b", "--ffn", "28672", "--gpu", "h100", "--seq", "1024",
                      "--micro-batch", "1")
    assert moe["model_flops_per_token"] == pytest.approx(dense["model_flops_per_token"], rel=1e-3)
    assert moe["mfu"] < dense["mfu"]


@pytest.mark.parametrize("extra,direction", [
    (("--n-kv-head", "8"), -1),  # grouped-query attention: a narrower QKV GEMM
    (("--mlp", "gelu"), -1),  # 2 matrices of 4096 x 11008 instead of gate, up and down
    (("--experts", "8", "--top-k", "2"), +1),
    (("--vocab", "128256"), +1),
])
def test_architecture_options_move_the_step_time(capsys, extra, direction):
    base = step_json(capsys, "--model", "llama-2-7b", "--gpu", "a100-80gb", "--seq", "2048", "--micro-batch", "1")
    moved = step_json(capsys, "--model", "llama-2-7b", "--gpu", "a100-80gb", "--seq", "2048", "--micro-batch", "1",
                      *extra)
    assert (moved["step_s"] - base["step_s"]) * direction > 0


@pytest.mark.parametrize("flag", ["--dropout", "--fused-loss"])
def test_step_prices_the_memory_of_the_step_it_times(capsys, flag):
    # `step` prints the memory per GPU of the setup it times: with a flag that changes what is saved for backward
    # (dropout's masks; a fused loss's log-sum-exp instead of fp32 log-probabilities) it must equal `memory`'s peak
    # for the same flags, and differ from the step without the flag (it ignored --dropout before)
    shape = ("--gpu", "a100-80gb", "--model", "gpt2", "--micro-batch", "8", "--seq", "512")
    with_flag = step_json(capsys, flag)["peak_memory_bytes"]
    without = step_json(capsys)["peak_memory_bytes"]
    code, out, err = cli(capsys, "memory", *shape, flag, "--json")
    assert code == 0, err
    assert with_flag == pytest.approx(json.loads(out)["peak_bytes"], rel=1e-12)
    assert with_flag != pytest.approx(without, rel=1e-3)


def test_an_explicit_fsdp_layout_prices_the_fused_loss_in_its_memory(capsys):
    # 'step --tp 1 --zero 3' (the layout model, an FSDP layout flopscalc train runs) takes its memory from the memory
    # engine; with --fused-loss that must be the fused loss's memory, as 'memory --fused-loss' says (it was PyTorch's)
    args = ("--gpu", "a100-80gb", "--model", "gpt2-xl", "--micro-batch", "8", "--seq", "1024", "--n-gpus", "8",
            "--zero", "3")
    code, out, err = cli(capsys, "step", *args, "--tp", "1", "--fused-loss", "--json")
    assert code == 0, err
    layout_peak = json.loads(out)["memory_bytes"]["total"]
    code, out2, err = cli(capsys, "memory", *args, "--fused-loss", "--json")
    assert code == 0, err
    assert layout_peak == pytest.approx(json.loads(out2)["peak_bytes"], rel=1e-12)
