"""Review r11 (helper b98): `flopscalc finetune` findings.

1. The fixes never offered --bf16-adapters, which alone makes the flagship QLoRA cases fit (Llama 3 8B on a 12 GB
   card at sequence 1024: 12.51 GiB -> 9.00; Llama 3 70B on an RTX A6000: 51.48 -> 43.84 of 48).
2. "first method that fits with these settings ... full" under "does not fit" for that same full setup: the method
   was judged at micro-batch 1, not at the user's micro-batch and accumulation.
3. --mean-sequence-tokens 0.5 was accepted ("100% padding", 1e-9 gave 8.58e6 years).
4. QLoRA and bitsandbytes optimizers were priced on a TPU, with CUDA context and cuBLAS rows.
5. Fractional optimizer steps and sequences ("0.0 optimizer steps", "0.0 sequences").

References: transformers' own ``Trainer.set_initial_training_values`` on a real torch DataLoader (5); the installed
bitsandbytes package's backends (4); the follow-up run of each offered fix (1); the plan's own verdict (2).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import cli, cli_json

from flopscalc.finetune.memory import FinetuneSetup
from flopscalc.finetune.plan import METHOD_ORDER, plan_finetune
from flopscalc.hardware import Precision, builtin_database, get_gpu
from flopscalc.hf_config import read_hf_config
from flopscalc.model import get_preset

# meta-llama/Llama-3.2-1B config.json (the reviewer's /tmp/r11/llama32_1b.json), the fields the model reads
LLAMA32_1B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "hidden_act": "silu", "hidden_size": 2048,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "vocab_size": 128256,
}
CUDA_ROWS = ("allocator_overhead", "cuda_context", "blas_workspaces")


def finetune(capsys, *argv):
    return cli_json(capsys, "finetune", *argv)


# ------------------------------------------------------------------ 1. --bf16-adapters among the fixes
@pytest.mark.parametrize("argv", [
    ("--model", "llama-3-8b", "--gpu", "4070ti", "--method", "qlora", "--seq", "1024"),
    ("--model", "llama-3-70b", "--gpu", "a6000"),
])
def test_bf16_adapters_is_offered_by_its_flag_and_following_it_fits(capsys, argv):
    d = finetune(capsys, *argv, "--dataset-tokens", "10M")
    assert not d["fits"]
    offered = [f for f in d["fixes"] if f["changes"] == ["--bf16-adapters"]]
    assert offered, [f["changes"] for f in d["fixes"]]
    followed = finetune(capsys, *argv, "--dataset-tokens", "10M", "--method", "qlora", "--bf16-adapters")
    assert followed["fits"]
    assert followed["required_bytes"] == offered[0]["required_bytes"]  # the fix priced what the flag runs


def test_bf16_adapters_ranks_before_shorter_sequences_and_bigger_gpus(capsys):
    d = finetune(capsys, "--model", "llama-3-8b", "--gpu", "4070ti", "--method", "qlora", "--seq", "1024",
                 "--dataset-tokens", "10M")
    order = [" + ".join(f["changes"]) for f in d["fixes"]]
    assert order[0] == "--bf16-adapters", order


def test_bf16_adapters_not_offered_where_the_cli_refuses_the_flag(capsys):
    """A card without a bf16 rate runs fp16, where the CLI refuses --bf16-adapters: no fix may name it."""
    gpu = next(g for g in builtin_database() if Precision.bf16 not in g.available_precisions()
               and g.fp16_flop_per_s and g.vendor == "NVIDIA")
    argv = ("--model", "llama-3-8b", "--gpu", gpu.key, "--method", "qlora", "--seq", "4096", "--dataset-tokens", "1M")
    d = finetune(capsys, *argv)
    assert not d["fits"]
    assert not any("--bf16-adapters" in c for f in d["fixes"] for c in f["changes"])
    code, _, err = cli(capsys, "finetune", *argv, "--bf16-adapters")
    assert code == 2 and "bf16" in err


def test_full_fine_tuning_fixes_never_name_bf16_adapters_alone(capsys):
    """bf16 adapters mean nothing to full fine-tuning: only with a method change to adapters."""
    d = finetune(capsys, "--model", "llama-3-8b", "--gpu", "4070ti", "--method", "full", "--dataset-tokens", "1M")
    for f in d["fixes"]:
        if "--bf16-adapters" in f["changes"]:
            assert any(c.startswith("method full -> ") for c in f["changes"]), f


# ------------------------------------------------------------------ 2. the cheapest method and the verdict agree
@pytest.fixture(scope="module")
def llama32_1b_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("r11") / "llama32_1b.json"
    path.write_text(json.dumps(LLAMA32_1B))
    return str(path)


def test_reviewer_case_does_not_name_the_method_that_does_not_fit(capsys, llama32_1b_json):
    d = finetune(capsys, "--config", llama32_1b_json, "--gpu", "4090", "--method", "full", "--seq", "1024",
                 "--micro-batch", "2", "--grad-accum", "4", "--dataset-tokens", "10M")
    assert d["fits"] is False
    assert d["cheapest_method"] != "full"
    code, out, _ = cli(capsys, "finetune", "--config", llama32_1b_json, "--gpu", "4090", "--method", "full", "--seq",
                       "1024", "--micro-batch", "2", "--grad-accum", "4", "--dataset-tokens", "10M")
    assert code == 0 and "does not fit" in out and "with these settings (full, lora, qlora): full" not in out


@pytest.mark.parametrize("micro_batch,grad_accum", [(1, 1), (2, 4), (4, 1), (8, 2)])
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_cheapest_method_never_contradicts_the_verdict(llama32_1b_json, method, micro_batch, grad_accum):
    """The named method is judged as the verdict is: if the setup does not fit, its own method is not named; if
    it fits, the named one is its method or a heavier one that also fits (full > lora > qlora in memory)."""
    cfg = read_hf_config(llama32_1b_json)  # full fits a 4090 at micro-batch 1, not at 2 (the reviewer's case)
    setup = FinetuneSetup(method=method, micro_batch=micro_batch, grad_accum=grad_accum, seq_len=1024)
    p = plan_finetune(cfg, setup, get_gpu("4090"), n_dataset_tokens=1e6)
    if not p.fits:
        assert p.cheapest_method is not p.setup.method
    else:
        assert p.cheapest_method is not None
        assert METHOD_ORDER.index(p.cheapest_method) <= METHOD_ORDER.index(p.setup.method)


def test_automatic_method_is_judged_at_the_users_micro_batch(capsys):
    """Without --method the plan is the first method that fits with these settings: it fits (or none does)."""
    d = finetune(capsys, "--model", "llama-3.1-8b", "--gpu", "4090", "--micro-batch", "8", "--seq", "2048",
                 "--dataset-tokens", "1M")
    assert d["method_chosen_automatically"]
    assert d["fits"] or d["cheapest_method"] is None


# ------------------------------------------------------------------ 3. --mean-sequence-tokens below one token
@pytest.mark.parametrize("mean", ["0.5", "1e-9", "0"])
def test_mean_sequence_tokens_below_one_is_refused(capsys, mean):
    code, out, err = cli(capsys, "finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "10M",
                         "--mean-sequence-tokens", mean)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "1..512" in err


def test_mean_sequence_tokens_of_one_is_accepted(capsys):
    d = finetune(capsys, "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1M",
                 "--mean-sequence-tokens", "1")
    assert d["mean_sequence_tokens"] == 1.0
    assert d["padding_fraction"] == pytest.approx(1 - 1 / 512)  # one token of 512 per sequence


# ------------------------------------------------------------------ 4. bitsandbytes where it runs
def _bnb_backends() -> set[str]:
    """The backends the installed bitsandbytes ships (its ``backends`` package), without importing it."""
    spec = importlib.util.find_spec("bitsandbytes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bitsandbytes not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "backends"
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}


def test_installed_bitsandbytes_has_no_tpu_or_trainium_backend_but_has_gaudi():
    """The reference the refusals follow: bitsandbytes ships a cuda (NVIDIA and ROCm), hpu (Gaudi), xpu, cpu, mps
    backend, and none for XLA (TPU) or Neuron (Trainium)."""
    names = _bnb_backends()
    assert {"cuda", "hpu"} <= names
    assert not names & {"xla", "tpu", "neuron", "trainium"}


@pytest.mark.parametrize("argv", [
    ("--gpu", "tpu-v5p", "--method", "qlora"),
    ("--gpu", "tpu-v5p", "--method", "lora", "--paged"),
    ("--gpu", "tpu-v5p", "--method", "full", "--optimizer", "adamw8bit"),
    ("--gpu", "trainium2", "--method", "qlora"),
    ("--gpu", "gaudi3", "--method", "qlora", "--optimizer", "adamw8bit"),
    ("--gpu", "gaudi3", "--method", "lora", "--paged"),
])
def test_bitsandbytes_features_refused_where_it_does_not_run(capsys, argv):
    code, out, err = cli(capsys, "finetune", "--model", "mistral-7b", *argv, "--dataset-tokens", "1M")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "bitsandbytes" in err


def test_qlora_runs_on_gaudi_and_amd(capsys):
    """bitsandbytes' table: QLoRA 4-bit on Intel Gaudi and AMD (ROCm) GPUs; not refused there."""
    for gpu in ("gaudi3", "mi300x"):
        assert finetune(capsys, "--model", "mistral-7b", "--gpu", gpu, "--method", "qlora",
                        "--dataset-tokens", "1M")["setup"]["method"] == "qlora"


def test_no_cuda_rows_on_a_tpu(capsys):
    tpu = finetune(capsys, "--model", "mistral-7b", "--gpu", "tpu-v5p", "--method", "lora", "--dataset-tokens", "1M")
    gpu = finetune(capsys, "--model", "mistral-7b", "--gpu", "h100", "--method", "lora", "--dataset-tokens", "1M")
    for key in CUDA_ROWS:
        assert tpu["components_bytes"][key] == 0.0 and gpu["components_bytes"][key] > 0.0, key
    assert tpu["peak_bytes"] == sum(tpu["components_bytes"].values())
    assert any("CUDA runtime" in n for n in tpu["notes"])


def test_no_cuda_rows_for_full_fine_tuning_on_a_tpu(capsys):
    tpu = finetune(capsys, "--model", "pythia-1b", "--gpu", "tpu-v5p", "--method", "full", "--dataset-tokens", "1M")
    gpu = finetune(capsys, "--model", "pythia-1b", "--gpu", "h100", "--method", "full", "--dataset-tokens", "1M")
    for key in CUDA_ROWS:
        assert tpu["components_bytes"][key] == 0.0 and gpu["components_bytes"][key] > 0.0, key


def test_automatic_method_on_a_tpu_leaves_qlora_out(capsys):
    """Llama 3.1 8B on a 16 GiB TPU v5e: LoRA's bf16 base does not fit, QLoRA would, but cannot run there."""
    d = finetune(capsys, "--model", "llama-3.1-8b", "--gpu", "tpu-v5e", "--dataset-tokens", "1M")
    assert d["setup"]["method"] == "lora" and not d["fits"] and d["cheapest_method"] is None


def test_tpu_fixes_name_no_bitsandbytes_feature(capsys):
    d = finetune(capsys, "--model", "llama-3.1-8b", "--gpu", "tpu-v5e", "--method", "lora", "--dataset-tokens", "1M")
    assert not d["fits"]
    words = [c for f in d["fixes"] for c in f["changes"]]
    assert not any("qlora" in c or "adamw8bit" in c or "paged" in c for c in words), words


def test_a_bigger_gpu_for_qlora_is_one_bitsandbytes_runs_on(capsys):
    """QLoRA fixes never send the user to a TPU or Trainium, whatever its memory."""
    for model in ("llama-3-70b", "llama-3.1-8b"):
        for gpu in ("4070ti", "a6000", "4090"):
            d = finetune(capsys, "--model", model, "--gpu", gpu, "--method", "qlora", "--seq", "8192",
                         "--dataset-tokens", "1M")
            for f in d["fixes"]:
                if f["gpu"] is not None:
                    assert get_gpu(f["gpu"]).vendor not in ("Google", "AWS"), f


# ------------------------------------------------------------------ 5. whole sequences and optimizer steps
def _trainer_counts(n_sequences: int, micro_batch: int, grad_accum: int, n_epochs: float, tmp_path):
    """(max_steps, num_examples) from transformers' own ``Trainer.set_initial_training_values`` over a torch
    DataLoader of ``n_sequences`` examples (``drop_last=False``, the Trainer's default)."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.data import DataLoader

    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=micro_batch,
                                          gradient_accumulation_steps=grad_accum, num_train_epochs=n_epochs,
                                          report_to=[], use_cpu=True)
    loader = DataLoader(list(range(n_sequences)), batch_size=micro_batch)
    trainer = SimpleNamespace(get_total_train_batch_size=lambda a: micro_batch * grad_accum, get_sp_size=lambda: 1,
                              num_examples=lambda dl: len(dl.dataset))
    values = transformers.Trainer.set_initial_training_values(trainer, args, loader)
    return values[-1], values[2]  # max_steps, num_examples


@pytest.mark.parametrize("n_sequences,micro_batch,grad_accum,n_epochs", [
    (1, 1, 1, 1), (3, 1, 2, 1), (3, 1, 2, 2), (10, 4, 1, 3), (10, 4, 2, 1), (7, 2, 1_000_000, 3), (100, 3, 7, 2.5),
    (2000, 1, 1_000_000, 1), (19, 5, 3, 0.3),
])
def test_optimizer_steps_are_the_trainers(tmp_path, n_sequences, micro_batch, grad_accum, n_epochs):
    max_steps, n_examples = _trainer_counts(n_sequences, micro_batch, grad_accum, n_epochs, tmp_path)
    setup = FinetuneSetup(method="lora", micro_batch=micro_batch, grad_accum=grad_accum, seq_len=256)
    p = plan_finetune(get_preset("mistral-7b"), setup, get_gpu("h100"), n_dataset_tokens=n_sequences * 256,
                      n_epochs=n_epochs, packing=True)
    assert p.n_optimizer_steps == max_steps
    if n_epochs == int(n_epochs):
        assert p.n_sequences == n_examples * n_epochs
        assert p.processed_tokens == n_examples * n_epochs * 256


def test_reviewer_cases_take_whole_steps_and_sequences(capsys):
    d = finetune(capsys, "--model", "mistral-7b", "--gpu", "4090", "--method", "qlora", "--paged", "--dataset-tokens",
                 "1M", "--grad-accum", "1000000")
    assert d["n_optimizer_steps"] == 1
    one = finetune(capsys, "--model", "mistral-7b", "--gpu", "4090", "--method", "qlora", "--dataset-tokens", "1")
    assert one["n_optimizer_steps"] == 1 and one["processed_tokens"] == 512  # one whole sequence
    code, out, _ = cli(capsys, "finetune", "--model", "mistral-7b", "--gpu", "4090", "--method", "qlora",
                       "--dataset-tokens", "1")
    assert code == 0 and "= 1 optimizer step (" in " ".join(out.split())  # the line's wording: review r14, b105


def test_partial_sequences_round_up_per_epoch():
    """1000 tokens in 512-token packed sequences: 2 sequences an epoch (the second part-filled), 6 in 3 epochs."""
    setup = FinetuneSetup(method="lora", seq_len=512)
    p = plan_finetune(get_preset("mistral-7b"), setup, get_gpu("h100"), n_dataset_tokens=1000, n_epochs=3,
                      packing=True)
    assert p.n_sequences == 3 * math.ceil(1000 / 512) == 6
    assert p.n_optimizer_steps == 6
