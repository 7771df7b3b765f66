"""Diff review r14 of b98's finetune change (helper b105).

1. Padding mixed the round-up to whole sequences/steps into 1 - tokens x epochs / processed ("100% padding" beside
   "assumed full, no padding"): padding is 1 - mean / seq, the round-up is shown apart.
2. The steps line was false arithmetic ("30 sequences / (4 x 2) = 6"): it now prints the rule applied, each arrow
   true.
3. The CUDA-runtime rule lived only in finetune: `memory`, `plan`, `layout`, `step` counted a CUDA context, allocator
   reserve and cuBLAS workspaces on a TPU.
4. The bitsandbytes refusal named --method qlora the user never typed, and its advice led to another refusal; the
   device list for 8-bit optimizers named Gaudi.
5. The first-method line named qlora as tried where it was skipped, and "none of" beside a chosen method.
6. --targets q,all-linear was refused as if all-linear were not a target.

References: the arithmetic the printed line states, recomputed with math.ceil (2); transformers' own Trainer rule
for steps (quoted in finetune/steps.py, checked in test_s18_b98.py); the bitsandbytes README's accelerator table
quoted in finetune/backends.py (4); each refusal's advice, followed (4).
"""

from __future__ import annotations

import math
import re

import pytest
from conftest import cli, cli_json

from flopscalc.finetune.adapters import parse_targets

MISTRAL_LORA = ("finetune", "--model", "mistral-7b", "--gpu", "h100", "--method", "lora")


# --- 1. padding is 1 - mean / seq; the round-up apart ---

def test_one_token_is_not_padding_when_examples_are_assumed_full(capsys):
    # one 1-token "example", assumed to fill its 512-token sequence: 0% padding (the note says so); the 511
    # positions past the data are the whole sequence the run takes, reported as the round-up
    j = cli_json(capsys, *MISTRAL_LORA, "--dataset-tokens", "1")
    assert j["padding_fraction"] == 0.0
    assert j["processed_tokens"] == 512
    assert j["roundup_tokens"] == 512 - 1
    code, out, _ = cli(capsys, *MISTRAL_LORA, "--dataset-tokens", "1")
    assert code == 0
    text = " ".join(out.split())
    assert "100% padding" not in text and "0% padding" in text
    assert "511 of them past the data" in text


def test_padding_is_one_minus_mean_over_seq(capsys):
    # 1M tokens of 128-token examples in 512-token sequences: 3/4 of each sequence is padding, whatever the epochs
    for epochs in ("1", "0.001", "3"):
        j = cli_json(capsys, *MISTRAL_LORA, "--dataset-tokens", "1M", "--mean-sequence-tokens", "128",
                     "--epochs", epochs)
        assert j["padding_fraction"] == 1 - 128 / 512
        # the processed tokens are the data with its padding, plus the round-up (never less)
        assert j["processed_tokens"] == pytest.approx(1e6 * float(epochs) * 512 / 128 + j["roundup_tokens"])
    j = cli_json(capsys, *MISTRAL_LORA, "--dataset-tokens", "1M", "--epochs", "0.001")
    assert j["padding_fraction"] == 0.0  # was 2%: the round-up of 0.001 epochs to 2 whole steps
    assert j["roundup_tokens"] > 0


def test_packed_has_no_padding_and_a_part_filled_last_sequence(capsys):
    j = cli_json(capsys, *MISTRAL_LORA, "--dataset-tokens", "1000", "--packing", "--seq", "512")
    assert j["padding_fraction"] == 0.0
    assert j["roundup_tokens"] == 2 * 512 - 1000  # ceil(1000 / 512) = 2 sequences, 24 positions past the data


# --- 2. the steps line states the rule, and its arithmetic is true ---

STEPS = re.compile(r"steps: ([\d,]+) sequences? an epoch -> ceil\(([\d,]+) / micro-batch ([\d,]+)\) = ([\d,]+) "
                   r"micro-batch(?:es)? -> max\(ceil\(([\d,]+) / ([\d,]+) accumulated\), 1\) = ([\d,]+) optimizer "
                   r"steps? an epoch x ([\d.e+-]+) epochs?(?:, rounded up,)? = ([\d,]+) optimizer (steps?) ")


def _steps_line(capsys, *extra):
    code, out, err = cli(capsys, *MISTRAL_LORA, *extra)
    assert code == 0, err
    m = STEPS.search(" ".join(out.split()))
    assert m, out
    *nums, word = m.groups()
    return [float(n.replace(",", "")) for n in nums], word


@pytest.mark.parametrize("extra, steps", [
    # the reviewer's: 10 sequences an epoch, 3 micro-batches, 2 steps an epoch, x 3 = 6 (30 / 8 = 3.75 is not 6)
    (("--dataset-tokens", "10240", "--packing", "--seq", "1024", "--micro-batch", "4", "--grad-accum", "2",
      "--epochs", "3"), 6),
    # accumulation past an epoch's micro-batches: one step an epoch (transformers' max(..., 1))
    (("--dataset-tokens", "10M", "--micro-batch", "4", "--grad-accum", "5000"), 1),
    (("--dataset-tokens", "1M", "--epochs", "0.001"), 2),
])
def test_steps_line_is_true_arithmetic(capsys, extra, steps):
    (seq, seq2, mb, micro, micro2, ga, per_epoch, epochs, total), word = _steps_line(capsys, *extra)
    assert seq == seq2 and micro == micro2
    assert micro == math.ceil(seq / mb)
    assert per_epoch == max(math.ceil(micro / ga), 1)
    assert total == math.ceil(epochs * per_epoch) == steps
    assert word == ("step" if total == 1 else "steps")


# --- 6. all-linear stands alone ---

@pytest.mark.parametrize("option, argv", [
    ("--targets", ("finetune", "--model", "mistral-7b", "--gpu", "h100", "--dataset-tokens", "1M")),
    ("--lora-targets", ("train", "--synthetic", "--config", "data/configs/llama-3.1-8b.json", "--lora-rank", "4")),
])
@pytest.mark.parametrize("targets", ["q,all-linear", "all-linear,v_proj"])
def test_all_linear_mixed_with_names_is_refused_as_such(capsys, option, argv, targets):
    code, out, err = cli(capsys, *argv, option, targets)
    assert code == 2 and out == ""
    line = " ".join(err.split())
    assert "all-linear stands alone" in line and "is not one of" not in line  # all-linear IS one of the targets
    named = targets.replace("all-linear", "").strip(",").removesuffix("_proj")
    assert f"{option} all-linear" in line and f"{option} {named}" in line  # both ways out, each a valid value
    for suggestion in ("all-linear", named):  # following either suggestion is accepted
        assert parse_targets(suggestion, option)


# --- 4. the bitsandbytes refusal names what the user typed, and following it works ---

LLAMA_TPU = ("finetune", "--config", "data/configs/llama-3.1-8b.json", "--gpu", "tpu-v5p", "--dataset-tokens", "50M")


def test_quant_alone_on_a_tpu_names_quant_and_its_advice_is_accepted(capsys):
    code, out, err = cli(capsys, *LLAMA_TPU, "--quant", "nf4")
    line = " ".join(err.split())
    assert code == 2 and out == ""
    assert "--method qlora" not in line  # never typed
    assert "(--quant nf4)" in line and "drop --quant nf4 and use --method lora or full" in line
    # follow the advice both ways: each is accepted
    for method in ("lora", "full"):
        code, _, err = cli(capsys, *LLAMA_TPU, "--method", method)
        assert code == 0, err
    # the old advice, '--quant nf4 --method lora', is the contradiction it always was, and is refused as one
    code, _, err = cli(capsys, *LLAMA_TPU, "--quant", "nf4", "--method", "lora")
    assert code == 2 and "--quant" in err


def test_double_quant_alone_is_named_too(capsys):
    code, _, err = cli(capsys, *LLAMA_TPU, "--double-quant")
    line = " ".join(err.split())
    assert code == 2 and "(--double-quant)" in line and "drop --double-quant and use --method lora" in line


def _bnb_readme_rows():
    """(accelerator, LLM.int8, QLoRA 4-bit, 8-bit optimizers) of the installed bitsandbytes' README table."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        text = metadata("bitsandbytes").get_payload()
    except PackageNotFoundError:
        pytest.skip("bitsandbytes not installed")
    table = text[text.index("Accelerator support"):text.index("</table>")]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", table, flags=re.DOTALL):
        cells = [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.DOTALL)]
        if len(cells) == 6:
            rows.append((" ".join(cells[1]), *(" ".join(c) for c in cells[3:])))
    assert rows
    return rows


def test_optimizer_refusal_lists_where_bitsandbytes_optimizers_run_not_gaudi(capsys):
    rows = _bnb_readme_rows()
    gaudi = [r for r in rows if "Gaudi" in r[0]]
    assert gaudi and all(r[3] == "❌" for r in gaudi)  # the installed README: no 8-bit optimizers on Gaudi
    for gpu in ("tpu-v5p", "gaudi3"):
        code, _, err = cli(capsys, "finetune", "--config", "data/configs/llama-3.1-8b.json", "--gpu", gpu,
                           "--dataset-tokens", "50M", "--method", "lora", "--optimizer", "adamw8bit")
        line = " ".join(err.split())
        assert code == 2
        listed = re.search(r"optimizers on ([^:)]*\))", line).group(1)  # the devices the refusal offers
        assert "NVIDIA" in listed and "Gaudi" not in listed.replace("not Intel Gaudi", "")  # Gaudi only as a 'not'
    # QLoRA's list keeps Gaudi, where the README marks 4-bit partly supported
    assert all(r[2] != "❌" for r in gaudi)
    code, _, err = cli(capsys, *LLAMA_TPU, "--method", "qlora")
    assert code == 2 and "Intel Gaudi (partly)" in " ".join(err.split())


# --- 5. the methods tried are the methods printed ---

def test_methods_line_names_what_was_tried_and_what_was_skipped(capsys):
    j = cli_json(capsys, "finetune", "--config", "data/configs/llama-3.1-8b.json", "--gpu", "tpu-v5e",
                 "--dataset-tokens", "50M")
    trials = {t["method"]: t for t in j["method_trials"]}
    assert trials["qlora"]["skipped"] and "bitsandbytes" in trials["qlora"]["skipped"]
    assert not trials["full"]["fits"] and not trials["lora"]["fits"] and j["cheapest_method"] is None
    assert not j["fits"] and j["setup"]["method"] == "lora"
    code, out, _ = cli(capsys, "finetune", "--config", "data/configs/llama-3.1-8b.json", "--gpu", "tpu-v5e",
                       "--dataset-tokens", "50M")
    text = " ".join(out.split())
    assert code == 0
    assert "none of full, lora, qlora" not in text and "the first of full, lora that fits" not in text
    assert "none of full, lora fits with these settings" in text
    assert "tried full, lora; qlora skipped: needs bitsandbytes, not on Google Cloud TPU v5e" in text
    # on a CUDA GPU all three are tried, and the first that fits is named
    code, out, _ = cli(capsys, "finetune", "--config", "data/configs/llama-3.1-8b.json", "--gpu", "4070ti",
                       "--dataset-tokens", "50M")
    text = " ".join(out.split())
    assert "first method that fits with these settings: qlora (tried full, lora, qlora)" in text


# --- 3. one CUDA-runtime rule: memory, plan, layouts and finetune alike ---

RUNTIME_NOTE = ("does not run PyTorch's CUDA runtime, so no CUDA context, caching-allocator reserve or cuBLAS "
                "workspace is counted; its own runtime's memory is not modelled")
RUNTIME_KEYS = ("cuda_context", "allocator_overhead", "blas_workspaces")


def test_memory_on_a_tpu_counts_no_cuda_runtime(capsys):
    """The TPU's peak is the same setup's on a CUDA device of the same (unnamed-rule) architecture less exactly the
    three CUDA-runtime rows; every other component is the same bytes. PyTorch/XLA has no CUDA context, caching
    allocator or cuBLAS handle (PyTorch "HIP (ROCm) semantics": only ROCm rides torch.cuda)."""
    from dataclasses import replace

    from flopscalc.hardware import get_gpu
    from flopscalc.memory import TrainingSetup, estimate_memory
    from flopscalc.memory.workspace import on_gpu, runs_cuda
    from flopscalc.model import get_preset

    tpu = get_gpu("tpu-v5p")
    assert not runs_cuda(tpu) and runs_cuda(get_gpu("h100")) and runs_cuda(get_gpu("mi300x"))
    cfg = get_preset("mistral-7b")
    on_tpu = on_gpu(TrainingSetup(), tpu)
    assert on_tpu.cuda_runtime is False
    as_cuda = replace(on_tpu, cuda_runtime=True)
    c_tpu = estimate_memory(cfg, on_tpu).component_bytes()
    c_cuda = estimate_memory(cfg, as_cuda).component_bytes()
    assert all(c_cuda[k] > 0 for k in RUNTIME_KEYS) and all(c_tpu[k] == 0 for k in RUNTIME_KEYS)
    assert {k: v for k, v in c_tpu.items() if k not in RUNTIME_KEYS} == \
        {k: v for k, v in c_cuda.items() if k not in RUNTIME_KEYS}
    # the CLI: no CUDA rows, the note, and the JSON components at zero (was cuBLAS 0.06, allocator 7.30, context 0.50)
    code, out, _ = cli(capsys, "memory", "--model", "mistral-7b", "--gpu", "tpu-v5p")
    text = " ".join(out.split())
    assert code == 0 and "CUDA context" not in text.split("Assumptions")[0] and "cuBLAS workspaces 0" not in text
    assert f"Google Cloud TPU v5p {RUNTIME_NOTE}" in text
    j = cli_json(capsys, "memory", "--model", "mistral-7b", "--gpu", "tpu-v5p")
    comps = j["breakdown"]["components_bytes"] if "breakdown" in j else j["components_bytes"]
    assert all(comps[k] == 0 for k in RUNTIME_KEYS)
    assert any(RUNTIME_NOTE in n for n in j["notes"])
    # on a CUDA GPU nothing changes: the rows are there and no such note
    j = cli_json(capsys, "memory", "--model", "mistral-7b", "--gpu", "h100")
    comps = j["breakdown"]["components_bytes"] if "breakdown" in j else j["components_bytes"]
    assert all(comps[k] > 0 for k in RUNTIME_KEYS) and not any(RUNTIME_NOTE in n for n in j.get("notes", []))


def test_finetune_and_plan_say_the_same_note(capsys):
    ft = cli_json(capsys, "finetune", "--model", "mistral-7b", "--gpu", "tpu-v5p", "--method", "full",
                  "--dataset-tokens", "1M")
    assert all(ft["components_bytes"][k] == 0 for k in RUNTIME_KEYS)
    plan = cli_json(capsys, "plan", "--gpu", "tpu-v5p", "--days", "30")
    for notes in (ft["notes"], plan["notes"]):
        assert "Google Cloud TPU v5p " + RUNTIME_NOTE in notes


@pytest.mark.parametrize("layout", [{"tp": 2, "dp": 4}, {"dp": 8, "zero_stage": 3}])  # Megatron's count; the trainer's
def test_layout_memory_on_a_tpu_counts_no_cuda_runtime(layout):
    from flopscalc.layout.memory import layout_memory
    from flopscalc.layout.spec import Layout
    from flopscalc.model import get_preset

    cfg, lay = get_preset("mistral-7b"), Layout(**layout)
    cuda = layout_memory(cfg, lay, 4096, flash=True, gpu_architecture="TPU v5p")
    tpu = layout_memory(cfg, lay, 4096, flash=True, gpu_architecture="TPU v5p", cuda_runtime=False)
    assert cuda.cuda_context > 0 and cuda.blas_workspaces > 0 and cuda.fragmentation > 0
    assert tpu.cuda_context == tpu.blas_workspaces == tpu.fragmentation == 0
    assert (tpu.weights, tpu.gradients, tpu.optimizer, tpu.activations, tpu.logits) == \
        (cuda.weights, cuda.gradients, cuda.optimizer, cuda.activations, cuda.logits)


def test_the_plan_search_judges_a_tpu_without_the_cuda_runtime(capsys):
    """The plan's recommended peak on a TPU is the memory engine's for that setup and model without the CUDA rows
    (was 82.57e9 bytes with them for --days 30)."""
    from flopscalc.memory import TrainingSetup, estimate_memory
    from flopscalc.model import ModelConfig

    rec = cli_json(capsys, "plan", "--gpu", "tpu-v5p", "--days", "30")["recommended"]
    m, st = rec["model"], rec["setup"]
    assert m["family"] == "GPT-2 block"  # the shape fields below describe it
    cfg = ModelConfig(n_layer=m["n_layer"], n_head=m["n_head"], n_embd=m["n_embd"], block_size=m["block_size"],
                      vocab_size=m["vocab_size"], bias=m["bias"])
    setup = TrainingSetup(micro_batch=st["micro_batch"], seq_len=st["seq_len"], precision=st["precision"],
                          optimizer=st["optimizer"], recompute=st["recompute"], flash=st["flash"],
                          grad_accum=st["grad_accum"], n_gpus=st["n_gpus"], zero_stage=st["zero_stage"],
                          offload_optimizer=st["offload_optimizer"], gpu_architecture="TPU v5p")
    with_runtime = estimate_memory(cfg, setup)
    without = with_runtime.peak_bytes - sum(with_runtime.component_bytes()[k] for k in RUNTIME_KEYS)
    assert rec["memory"]["peak_bytes"] == pytest.approx(without, rel=1e-12)
    assert rec["memory"]["peak_bytes"] < with_runtime.peak_bytes


@pytest.mark.parametrize("given", [("--cuda-context", "1GiB"), ("--allocator-overhead", "0.1")])
def test_cuda_runtime_options_on_a_tpu_are_refused_not_dropped(capsys, given):
    code, out, err = cli(capsys, "memory", "--model", "mistral-7b", "--gpu", "tpu-v5p", *given)
    assert code == 2 and out == "" and f"drop {given[0]}" in " ".join(err.split())
    # on a CUDA GPU the option moves the computed row it names
    base = cli_json(capsys, "memory", "--model", "mistral-7b", "--gpu", "h100")
    moved = cli_json(capsys, "memory", "--model", "mistral-7b", "--gpu", "h100", *given)
    key = "cuda_context" if given[0] == "--cuda-context" else "allocator_overhead"
    comps = [d["breakdown"]["components_bytes"] if "breakdown" in d else d["components_bytes"] for d in (base, moved)]
    assert comps[1][key] > comps[0][key]
