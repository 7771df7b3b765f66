"""Cards without a BF16 rate (V100, T4): every command prices the fp16 run that `flopscalc plan` recommends.

Found: `flopscalc step --model gpt2-xl --gpu v100`, `infer --model llama-3.1-8b --gpu v100 --context 2k` and
`finetune --model llama-3.1-8b --gpu v100 --dataset-tokens 1M` all stopped at their defaults with "has no BF16
tensor, FP32 accumulate rate" (exit 1), and `memory --gpu v100` said bf16-mixed, while `plan --gpu v100` falls
back to fp16 mixed precision with a note. Reference: the V100's and T4's FP16 tensor rate in data/gpu_specs.csv
(NVIDIA datasheets: 125 and 65 TFLOP/s dense).
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.hardware import get_gpu


def _json(capsys, argv) -> dict:
    assert run([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("gpu", ["v100", "t4"])
def test_step_default_on_a_card_without_bf16_is_fp16_mixed_at_its_fp16_rate(capsys, gpu):
    out = _json(capsys, ["step", "--model", "gpt2", "--gpu", gpu])
    assert out["precision"] == "fp16-mixed"
    assert out["peak_flop_per_s"] == get_gpu(gpu).peak_flop_per_s("fp16")
    assert len(out["notes"]) == 1 and "--precision" in out["notes"][0]


def test_step_memory_and_plan_agree_on_a_v100(capsys):
    plan = _json(capsys, ["plan", "--gpu", "v100", "--days", "30", "--model", "gpt2"])
    step = _json(capsys, ["step", "--model", "gpt2", "--gpu", "v100", "--seq", "1024"])
    memory = _json(capsys, ["memory", "--model", "gpt2", "--gpu", "v100", "--seq", "1024"])
    explicit = _json(capsys, ["memory", "--model", "gpt2", "--gpu", "v100", "--seq", "1024",
                              "--precision", "fp16-mixed"])
    assert plan["recommended"]["setup"]["precision"] == step["precision"] == memory["setup"]["precision"]
    assert memory["peak_bytes"] == explicit["peak_bytes"] == step["peak_memory_bytes"]


def test_a_card_with_bf16_keeps_bf16_and_says_nothing(capsys):
    out = _json(capsys, ["step", "--model", "gpt2", "--gpu", "h100", "--compile"])  # --compile: no eager-GEMM note
    assert out["precision"] == "bf16-mixed" and "notes" not in out
    assert out["peak_flop_per_s"] == get_gpu("h100").peak_flop_per_s("bf16")


def test_explicit_bf16_on_a_v100_is_refused_with_what_it_has(capsys):
    assert run(["step", "--model", "gpt2", "--gpu", "v100", "--precision", "bf16-mixed"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fp16-mixed" in err and "Traceback" not in err


def test_finetune_on_a_v100_is_priced_at_fp16(capsys):
    out = _json(capsys, ["finetune", "--model", "llama-3.1-8b", "--gpu", "v100", "--dataset-tokens", "1M"])
    assert out["peak_flop_per_s"] == get_gpu("v100").peak_flop_per_s("fp16")
    assert out["time_model"] == "per-operation" and out["time_s"] > 0
    assert any("fp16" in n and "--precision" not in n for n in out["notes"])  # finetune has no --precision


def test_infer_on_a_v100_serves_fp16_weights(capsys):
    out = _json(capsys, ["infer", "--model", "llama-3.1-8b", "--gpu", "v100", "--context", "2k"])
    assert out["weights"] == "fp16" and out["peak_flop_per_s"] == get_gpu("v100").peak_flop_per_s("fp16")
    assert run(["infer", "--model", "llama-3.1-8b", "--gpu", "v100", "--context", "2k", "--weights", "bf16"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "accepted on this card: fp16" in err


def test_int4_group_zero_is_refused_not_read_as_the_default(capsys):
    # was: '--int4-group 0' ran as group 128 ('or' took 0 for "not given")
    assert run(["infer", "--model", "llama-3.1-8b", "--gpu", "h100", "--context", "4k", "--weights", "int4",
                "--int4-group", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "int4 group" in err and "got 0" in err


def test_plot_frontier_on_a_v100_budgets_at_its_fp16_rate(capsys):
    # was: 'plot frontier --gpu v100 --days 30' stopped at "has no BF16 tensor rate" while 'plan' fell back to fp16
    from flopscalc.planner.budget import DEFAULT_MFU, DEFAULT_UTILIZATION

    out = _json(capsys, ["plot", "frontier", "--gpu", "v100", "--days", "30", "--mfu", str(DEFAULT_MFU)])
    rate = get_gpu("v100").peak_flop_per_s("fp16")
    budget = out["budget"]["c_flops"]
    assert budget == pytest.approx(rate * 30 * 86400 * DEFAULT_UTILIZATION * DEFAULT_MFU, rel=1e-12)
    assert len(out["notes"]) == 1 and "fp16" in out["notes"][0]


def test_plot_memory_and_memory_agree_on_a_v100(capsys):
    # was: 'plot memory --gpu v100' drew a bf16-mixed run while 'memory --gpu v100' reports fp16-mixed
    plot = _json(capsys, ["plot", "memory", "--gpu", "v100", "--model", "gpt2"])
    memory = _json(capsys, ["memory", "--gpu", "v100", "--model", "gpt2"])
    assert plot["setup"]["precision"] == memory["setup"]["precision"] == "fp16-mixed"
    assert plot["bars"][0]["peak_bytes"] == memory["peak_bytes"]
