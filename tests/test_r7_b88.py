"""Review r7's finetune and infer seams (brief b88): each fix a report offers must fit when followed as printed, the
CPU rule for CUDA-only memory is one rule for every fine-tuning method, and time is priced only for a setup that
fits (and the text says so)."""

from __future__ import annotations

import json
import re

import pytest

from flopscalc.finetune.memory import Compute, FinetuneSetup, Method, finetune_memory
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.memory.settings import DEFAULT_CUDA_CONTEXT_BYTES, Device
from flopscalc.model import ModelConfig


@pytest.fixture
def cli_run(monkeypatch, capsys):
    """The real CLI (`cli.run`), 400 columns wide so no line wraps: (exit code, stdout, stderr)."""
    from flopscalc import cli

    monkeypatch.setenv("COLUMNS", "400")

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.run(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _json(cli_run, *args: str) -> dict:
    code, out, err = cli_run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


# ---- 1. finetune's "smaller micro-batch + --grad-accum N" fix fits when followed (full fine-tuning) -------------

GPT2_XL_FULL = ("finetune", "--model", "gpt2-xl", "--gpu", "a100-80gb", "--method", "full", "--dataset-tokens", "10M",
                "--seq", "1024", "--no-checkpointing")


def test_the_smaller_micro_batch_fix_fits_with_the_grad_accum_it_names(cli_run):
    d = _json(cli_run, *GPT2_XL_FULL, "--micro-batch", "64")
    assert not d["fits"]
    text = next(" ".join(f["changes"]) for f in d["fixes"] if " ".join(f["changes"]).startswith("micro-batch 64 ->"))
    batch, accum = map(int, re.fullmatch(r"micro-batch 64 -> (\d+) \(--grad-accum (\d+) keeps about the sequences "
                                         r"per step\)", text).groups())
    assert accum == -(-64 // batch)  # about the 64 sequences per step kept
    followed = _json(cli_run, *GPT2_XL_FULL, "--micro-batch", str(batch), "--grad-accum", str(accum))
    assert followed["fits"], text  # r7: micro-batch 17 with --grad-accum 4 needed 83.81 GiB of 80
    # the largest: one more sequence per forward, at the accumulation that keeps the step, does not fit
    more = _json(cli_run, *GPT2_XL_FULL, "--micro-batch", str(batch + 1), "--grad-accum", str(-(-64 // (batch + 1))))
    assert not more["fits"]


# ---- 2. one CPU rule for the CUDA context and the allocator's reserve, whatever the method ----------------------

LLAMA_2_LAYERS = ModelConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=128, block_size=64, bias=False,
                             tie_embeddings=False, mlp="swiglu", norm="rmsnorm", position="rope")


@pytest.mark.parametrize("method", list(Method))
def test_no_cuda_context_or_allocator_reserve_on_a_cpu_for_any_method(method):
    on = {d: finetune_memory(LLAMA_2_LAYERS, FinetuneSetup(method=method, micro_batch=2, seq_len=64,
                                                           compute=Compute.fp32, device=d)).component_bytes()
          for d in Device}
    assert on[Device.cpu]["cuda_context"] == 0 and on[Device.cpu]["allocator_overhead"] == 0  # r7: LoRA 512 MiB
    assert on[Device.cuda]["cuda_context"] == DEFAULT_CUDA_CONTEXT_BYTES and on[Device.cuda]["allocator_overhead"] > 0
    # the same rule as full training's engine applies (memory.estimate)
    full = estimate_memory(LLAMA_2_LAYERS, TrainingSetup(micro_batch=2, seq_len=64, precision=MemoryPrecision.fp32,
                                                         device=Device.cpu)).component_bytes()
    assert full["cuda_context"] == on[Device.cpu]["cuda_context"]
    assert full["allocator_overhead"] == on[Device.cpu]["allocator_overhead"]


# ---- 3. time is priced only for a setup that fits, and the past-context warning says which ----------------------

QLORA_LONG = ("finetune", "--model", "llama-3.1-8b", "--gpu", "h100", "--method", "qlora", "--dataset-tokens", "1M",
              "--seq", "200000")
TIME_FIELDS = ("compute_s", "dequant_s", "spill_s", "time_s")


def test_a_finetune_that_does_not_fit_prices_no_time(cli_run):
    d = _json(cli_run, *QLORA_LONG)
    assert d["fits"] is False
    assert all(d[k] is None for k in TIME_FIELDS)  # r7: time_s 762.34 with fits false
    assert "not even one sequence fits" in d["unpriced_reason"] and "time is not priced" in d["unpriced_reason"]
    assert all("memory is priced" in w and "time and memory" not in w for w in d["warnings"]) and d["warnings"]
    code, out, _ = cli_run(*QLORA_LONG)
    assert code == 0 and "does not fit" in out and "time and memory are priced" not in out
    assert "memory is priced" in out and d["unpriced_reason"] in out


def test_a_micro_batch_too_large_names_the_largest_in_its_unpriced_reason(cli_run):
    d = _json(cli_run, *GPT2_XL_FULL, "--micro-batch", "64")
    assert all(d[k] is None for k in TIME_FIELDS)
    # the largest is named; the advice is the listed fixes (one answer: r9), each of which fits when followed
    assert f"(the largest is {d['max_micro_batch']})" in d["unpriced_reason"] and d["fixes"]
    assert "changes listed below" in d["unpriced_reason"] and "give --micro-batch" not in d["unpriced_reason"]
    ok = _json(cli_run, *GPT2_XL_FULL, "--micro-batch", str(d["max_micro_batch"]))
    assert ok["fits"] and ok["unpriced_reason"] is None and all(ok[k] is not None for k in TIME_FIELDS)
    assert ok["time_s"] > 0


def test_a_fitting_finetune_past_the_context_says_time_is_priced(cli_run):
    args = ("finetune", "--model", "llama-2-7b", "--gpu", "h100", "--method", "qlora", "--dataset-tokens", "1M",
            "--seq", "8192")
    d = _json(cli_run, *args)
    assert d["fits"] and d["time_s"] > 0 and "time and memory are priced" in d["warnings"][0]


# ---- 4. infer's --context fixes say the batch they hold, and fit when run as printed ----------------------------

INFER_LONG = ("infer", "--model", "llama-3.1-8b", "--gpu", "4090", "--context", "128k")


@pytest.mark.parametrize("batch", [8, 1])
def test_each_printed_context_fix_fits_when_run_as_printed(cli_run, batch):
    code, out, err = cli_run(*INFER_LONG, "--batch", str(batch))
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("largest batch"))
    printed = re.findall(r"--context (\d+) or less \(largest batch (\d+)", line)
    assert printed, line  # r7: "--context 39212 or less" with no batch, which does not fit at --batch 8
    for context, largest in printed:
        # the user's other flags, at the user's batch where the fix holds it, else at the batch it prints
        run_batch = min(batch, int(largest))
        d = _json(cli_run, "infer", "--model", "llama-3.1-8b", "--gpu", "4090", "--context", context,
                  "--batch", str(run_batch))
        assert d["fits"] and d["max_batch"] == int(largest), (context, largest)
        # the longest: one more prompt token no longer holds that batch
        longer = _json(cli_run, "infer", "--model", "llama-3.1-8b", "--gpu", "4090", "--context",
                       str(int(context) + 1), "--batch", str(run_batch))
        assert longer["max_batch"] < int(largest)
    held = {int(b) for _, b in printed}
    assert (batch in held) and (1 in held)  # the user's own batch is offered, and the longest prompt at batch 1


def test_the_context_fix_at_the_users_batch_matches_the_longest_sequence_line(cli_run):
    d = _json(cli_run, *INFER_LONG, "--batch", "8")
    gen = d["gen"]
    at_batch = [f for f in d["fixes"] if f["context"] is not None and f["max_batch"] >= 8]
    assert len(at_batch) == 1 and at_batch[0]["context"] + gen == d["max_seq_tokens"]
