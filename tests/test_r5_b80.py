"""Review r5, helper b80: finetune's paging link, --grad-accum, the fixes table's on-GPU figure, and a --seq past a
RoPE model's trained context.

References: PCI-SIG's x16 rates per direction (4.0: 31.5 GB/s, 5.0: 63 GB/s) bound any host copy; the pre-training
step model (`perf.step.estimate_step`) and the memory command (`flopscalc memory --grad-accum`) are the other paths
that price and count accumulation; each fix is re-planned on its own to show it fits; infer's warning is its own
renderer's text.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import invoke_json, one_command_app

from flopscalc.finetune.memory import FinetuneSetup, finetune_memory
from flopscalc.finetune.plan import plan_finetune
from flopscalc.hardware import get_gpu
from flopscalc.memory.settings import TrainingSetup
from flopscalc.model import get_preset
from flopscalc.perf.step import estimate_step

GIB = 2.0**30
# PCI-SIG: PCIe x16 bandwidth per direction, GB/s (3.0 15.75, 4.0 31.5, 5.0 63); a host copy cannot beat it
PCIE_X16_SPEC_BYTES_PER_S = {"a100-80gb": 31.5e9, "h100-sxm": 63e9}


@pytest.fixture(scope="module")
def app():
    from flopscalc.cli import finetune as cli_finetune

    return one_command_app(cli_finetune)


def run_json(app, *args) -> dict:
    return invoke_json(app, "finetune", *args)


@pytest.fixture
def run_text(monkeypatch, capsys):
    """The real CLI (`cli.run`), rendered 400 columns wide so no line wraps: (exit code 0 asserted) stdout."""
    from flopscalc import cli

    monkeypatch.setenv("COLUMNS", "400")

    def run(*args, command: str = "finetune") -> str:
        code = cli.run([command, *args])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    return run


# ---- 1. paging crosses PCIe to host memory, not NVLink ----------------------------------------------------------

@pytest.mark.parametrize("gpu", sorted(PCIE_X16_SPEC_BYTES_PER_S))
def test_paging_moves_at_a_host_copy_rate_not_nvlink(app, gpu):
    d = run_json(app, "--model", "llama-3-8b", "--gpu", gpu, "--method", "full", "--paged", "--dataset-tokens", "10M")
    assert d["spill_bytes"] > 0 and d["spill_s"] > 0
    implied = 2 * d["spill_bytes"] * d["n_optimizer_steps"] / d["spill_s"]  # out and back each optimizer step
    spec = get_gpu(gpu)
    assert implied <= PCIE_X16_SPEC_BYTES_PER_S[gpu]  # was ~300 GB/s (A100's NVLink 3) before the fix
    assert implied < spec.interconnect_bytes_per_s / 5
    # the rate ZeRO-Offload's optimizer offload is priced at (perf.step -> perf.offload), stated in the JSON
    from flopscalc.perf.offload import host_link_bytes_per_s

    assert implied == pytest.approx(host_link_bytes_per_s(spec), rel=1e-12)
    assert d["paging_link_bytes_per_s"] == pytest.approx(implied, rel=1e-12)
    assert d["paging_link"].startswith("PCIe ")


def test_the_time_line_says_which_link_paging_is_priced_at(run_text):
    out = run_text("--model", "llama-3-8b", "--gpu", "a100-80gb", "--method", "full", "--paged",
                   "--dataset-tokens", "10M")
    line = next(x for x in out.splitlines() if x.startswith("time:"))
    assert "paging" in line and "over PCIe 4.0 x16 at 25 GB/s" in line


# ---- 1. --grad-accum ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grad_accum", [1, 4])
def test_full_finetune_per_optimizer_step_is_the_pretraining_step_model(grad_accum):
    """Full fine-tuning is pre-training: its time per optimizer step must equal `estimate_step`'s, which runs the
    passes every micro-batch and the update once per step (an exact model: an exact test)."""
    cfg, gpu = get_preset("llama-3-8b"), get_gpu("h100-sxm")
    setup = FinetuneSetup(method="full", micro_batch=2, seq_len=1024, grad_accum=grad_accum)
    plan = plan_finetune(cfg, setup, gpu, n_dataset_tokens=2048 * 4 * 100, packing=True)
    assert plan.n_optimizer_steps == 800 / (2 * grad_accum)
    step = estimate_step(cfg, TrainingSetup(micro_batch=2, seq_len=1024, grad_accum=grad_accum,
                                            precision="bf16-mixed", optimizer="adamw", recompute="full", flash=True),
                         gpu)
    assert plan.compute_s / plan.n_optimizer_steps == pytest.approx(step.step_s, rel=1e-12)


def test_accumulation_pages_and_updates_once_per_optimizer_step():
    """QLoRA on a 12 GiB card with a paged optimizer (the review's 3060 case) spills; accumulating 4 micro-batches
    pages a quarter as often and keeps every pass: the adapters' memory does not move (its peak already counts their
    gradients alive beside the activations)."""
    cfg, gpu = get_preset("llama-3-8b"), get_gpu("3060")
    base = FinetuneSetup(method="qlora", rank=64, seq_len=512, paged=True)
    # 2**20 tokens: 2048 whole sequences, so 4 divides the micro-batches (steps round up per epoch, review r11)
    one = plan_finetune(cfg, base, gpu, n_dataset_tokens=2**20, packing=True)
    four = plan_finetune(cfg, FinetuneSetup(method="qlora", rank=64, seq_len=512, paged=True, grad_accum=4), gpu,
                         n_dataset_tokens=2**20, packing=True)
    assert one.spill_bytes > 0 and four.memory.peak_bytes == one.memory.peak_bytes
    assert four.spill_s * 4 == pytest.approx(one.spill_s, rel=1e-12)
    assert four.dequant_s == pytest.approx(one.dequant_s, rel=1e-12)  # every micro-batch still dequantizes
    # the update is the only op run less often: what is saved is 3/4 of one micro-batch's update per micro-batch
    assert 0 < one.compute_s - four.compute_s < 0.05 * one.compute_s


@pytest.mark.parametrize("grad_accum", ["1", "4"])
def test_full_finetune_memory_counts_accumulation_as_the_memory_command(app, grad_accum):
    import typer

    from flopscalc.cli import memory as cli_memory  # the memory command, the other path to the same engine

    a = typer.Typer()
    cli_memory.register(a)

    @a.callback()
    def _root():
        """harness"""

    mem = CliRunner().invoke(typer.main.get_command(a), [
        "memory", "--model", "llama-3-8b", "--gpu", "a100-80gb", "--seq", "512", "--micro-batch", "1",
        "--grad-accum", grad_accum, "--recompute", "full", "--json"], catch_exceptions=False)
    ft = run_json(app, "--model", "llama-3-8b", "--gpu", "a100-80gb", "--method", "full", "--dataset-tokens", "1M",
                  "--grad-accum", grad_accum)
    assert ft["peak_bytes"] == json.loads(mem.output)["peak_bytes"]
    assert ft["setup"]["grad_accum"] == int(grad_accum)


def test_grad_accum_moves_the_steps_and_the_time(app):
    base = ["--model", "llama-3-8b", "--gpu", "3060", "--method", "qlora", "--dataset-tokens", "10M", "--paged",
            "--rank", "64"]
    one, eight = run_json(app, *base), run_json(app, *base, "--grad-accum", "8")
    # whole steps, the last of the epoch partial (transformers Trainer: ceil(micro-batches / accumulation); r11)
    assert eight["n_optimizer_steps"] == -(-one["n_optimizer_steps"] // 8)
    assert eight["time_s"] < one["time_s"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_grad_accum_is_one_line_exit_2(capsys, value):
    from flopscalc import cli

    code = cli.run(["finetune", "--model", "llama-3-8b", "--gpu", "4090", "--dataset-tokens", "10M",
                    "--grad-accum", value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--grad-accum must be a positive whole number" in err


# ---- 2. the fixes table shows what each fix needs on the GPU, and each fits by it ------------------------------------

@pytest.mark.parametrize("args", [
    ("--model", "llama-3-8b", "--gpu", "a100-80gb", "--method", "full"),
    ("--model", "llama-3-8b", "--gpu", "3060", "--method", "qlora", "--rank", "64", "--seq", "1024", "--paged"),
    ("--model", "llama-3-8b", "--gpu", "4090", "--method", "lora", "--micro-batch", "64"),
    # full fine-tuning, where accumulation adds the earlier micro-batches' gradients (review r7): the smaller
    # micro-batch must fit with the --grad-accum its text names
    ("--model", "llama-3-8b", "--gpu", "b200", "--method", "full", "--micro-batch", "8", "--seq", "2048",
     "--grad-accum", "1", "--no-checkpointing"),  # flags last: _replan pairs the options before them
])
def test_every_listed_fix_fits_when_planned_on_its_own(app, args):
    d = run_json(app, *args, "--dataset-tokens", "10M")
    assert not d["fits"] and d["fixes"]
    cfg = get_preset("llama-3-8b")
    for f in d["fixes"]:
        assert f["required_bytes"] <= f["capacity_bytes"], f["changes"]
        # re-planned independently: the setup the fix describes fits on its GPU
        plan = _replan(cfg, args, f)
        assert plan.fits, f["changes"]
        assert plan.memory.required_bytes() == pytest.approx(f["required_bytes"], rel=1e-12)


def _replan(cfg, args, fix):
    opts = dict(zip(args[::2], args[1::2]))
    changes = " ".join(fix["changes"])
    setup = FinetuneSetup(method=opts["--method"], rank=int(opts.get("--rank", 16)), seq_len=int(opts.get("--seq", 512)),
                          micro_batch=int(opts.get("--micro-batch", 1)), paged="--paged" in args,
                          grad_accum=int(opts.get("--grad-accum", 1)),
                          recompute="none" if "--no-checkpointing" in args else "full")
    gpu = get_gpu(fix["gpu"] or opts["--gpu"])
    import re
    from dataclasses import replace

    from flopscalc.finetune.plan import with_method

    if m := re.search(r"method \w+ -> (\w+)", changes):
        setup = with_method(setup, m.group(1))
    if "paged optimizer" in changes:
        setup = replace(setup, paged=True)
    if "adamw8bit" in changes:
        setup = replace(setup, optimizer="adamw8bit")
    if m := re.search(r"rank \d+ -> (\d+)", changes):
        setup = replace(setup, rank=int(m.group(1)))
    if m := re.search(r"sequences \d+ -> (\d+)", changes):
        setup = replace(setup, seq_len=int(m.group(1)), micro_batch=1)
    if m := re.search(r"micro-batch \d+ -> (\d+)", changes):
        setup = replace(setup, micro_batch=int(m.group(1)))
    if m := re.search(r"--grad-accum (\d+)", changes):  # what the fix tells the user to pass with it
        setup = replace(setup, grad_accum=int(m.group(1)))
    if "checkpointing on" in changes:
        setup = replace(setup, recompute="full")
    if "--bf16-adapters" in fix["changes"]:  # the flag the fix names (review r11)
        setup = replace(setup, bf16_adapters=True)
    return plan_finetune(cfg, setup, gpu, n_dataset_tokens=1e7)


def test_the_fixes_table_shows_x_of_y_gib_on_the_gpu(run_text):
    out = run_text("--model", "llama-3-8b", "--gpu", "a100-80gb", "--method", "full", "--dataset-tokens", "10M")
    row = next(x for x in out.splitlines() if x.strip().split("  ")[-1:] and "paged optimizer" in x
               and "GiB" in x and "of" in x)
    paged = finetune_memory(get_preset("llama-3-8b"), FinetuneSetup(method="full", paged=True,
                                                                    gpu_architecture="Ampere"))
    assert f"{paged.required_bytes() / GIB:.2f} of 80.00 GiB" in row  # not the un-paged peak, 126.16
    assert "126.16" not in row


def test_a_micro_batch_that_does_not_fit_gets_a_smaller_micro_batch_not_a_longer_sequence(app):
    d = run_json(app, "--model", "llama-3-8b", "--gpu", "4090", "--method", "lora", "--micro-batch", "64",
                 "--dataset-tokens", "10M")
    changes = [" ".join(f["changes"]) for f in d["fixes"]]
    assert not any("sequences 512 ->" in c for c in changes)  # a "fix" that lengthened the sequence
    batch = next(c for c in changes if c.startswith("micro-batch 64 ->"))
    assert int(batch.split("-> ")[1].split()[0]) == d["max_micro_batch"] >= 1


# ---- 3. a --seq past a RoPE model's trained context -------------------------------------------------------------

def test_seq_past_rope_context_warns_as_infer_does(app, run_text):
    from flopscalc.model.sequence import past_context_warning

    args = ("--model", "llama-2-7b", "--gpu", "4090", "--method", "qlora", "--seq", "8192", "--dataset-tokens", "10M")
    d = run_json(app, *args)
    cfg = get_preset("llama-2-7b")
    assert cfg.block_size == 4096 and d["warnings"] == [past_context_warning(8192, 4096)]
    out = run_text(*args)
    assert "warning: " + past_context_warning(8192, 4096) in out
    # infer's own renderer says the same words for the same case
    inf = " ".join(run_text("--model", "llama-2-7b", "--gpu", "4090", "--context", "8000", "--gen", "192",
                            command="infer").split())
    assert past_context_warning(8192, 4096) in inf


def test_longest_sequence_is_not_capped_at_a_rope_context_as_infer_does_not(app, run_text):
    d = run_json(app, "--model", "llama-2-7b", "--gpu", "4090", "--method", "qlora", "--seq", "8192",
                 "--dataset-tokens", "10M")
    assert d["max_seq_len"] > 4096  # was capped at 4096 though 8192 itself fits
    cfg, gpu = get_preset("llama-2-7b"), get_gpu("4090")
    at = FinetuneSetup(method="qlora", seq_len=d["max_seq_len"], gpu_architecture=gpu.architecture)
    assert finetune_memory(cfg, at).required_bytes() <= gpu.memory_bytes
    from dataclasses import replace

    assert finetune_memory(cfg, replace(at, seq_len=d["max_seq_len"] + 1)).required_bytes() > gpu.memory_bytes
    out = run_text("--model", "llama-2-7b", "--gpu", "4090", "--method", "qlora", "--seq", "8192",
                   "--dataset-tokens", "10M")
    assert f"{d['max_seq_len']} tokens (uncapped; past the trained context 4096)" in out


def test_a_learned_position_table_still_caps_and_refuses():
    from flopscalc.errors import UsageError
    from flopscalc.finetune.plan import largest_seq_len

    cfg = get_preset("gpt2")
    assert largest_seq_len(cfg, FinetuneSetup(method="full"), 80 * GIB) == cfg.block_size
    with pytest.raises(UsageError, match="learned position table"):
        finetune_memory(cfg, FinetuneSetup(method="full", seq_len=cfg.block_size + 1))


def test_no_warning_within_the_context(app):
    d = run_json(app, "--model", "llama-2-7b", "--gpu", "4090", "--method", "qlora", "--seq", "4096",
                 "--dataset-tokens", "10M")
    assert d["warnings"] == []
