"""Review r5, helper b81: finetune states only what its memory and time models used; infer prices only what fits
and offers only changes the memory engine confirms.

Finetune: every Assumptions row is read against the objects the plan was computed from: a dtype a row names is
checked against the bytes of the memory breakdown, counted here from the model's shape (Llama 3.1 8B's published
8,030,261,248 parameters; LLaMA 65B's 65,285,660,672), a bandwidth share against the dequantization time, a rate
against the peak the time used. Infer: a setup that does not fit gets no time or cost (text and --json), and every
change its hint offers is run through `flopscalc infer` again, which must then fit one sequence.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from conftest import cli
from rich.console import Console

from flopscalc.finetune.memory import FinetuneSetup
from flopscalc.finetune.plan import plan_finetune
from flopscalc.hardware import Precision, get_gpu
from flopscalc.model import ModelConfig, get_preset
from flopscalc.perf.device import device_perf
from flopscalc.report.finetune import finetune_report

GIB = 2.0**30


def llama_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameters of a Llama block model counted from its shape: block linears (what bitsandbytes quantizes),
    embedding, untied LM head, RMSNorm weights (two per block and a final one)."""
    d, f, L = cfg.n_embd, cfg.n_inner, cfg.n_layer
    per_layer = d * d + 2 * d * cfg.d_kv + d * d + 3 * d * f  # q, k, v, o; gate, up, down
    return {"linear": L * per_layer, "embedding": cfg.vocab_size * d, "head": cfg.vocab_size * d,
            "norms": (2 * L + 1) * d}


LLAMA_8B = get_preset("llama-3.1-8b")
# LLaMA 65B (Touvron et al. 2023, arXiv:2302.13971, Table 2; released config.json: intermediate 22016, vocab 32000)
LLAMA_65B = ModelConfig(n_layer=80, n_head=64, n_embd=8192, ffn_dim=22016, vocab_size=32000, block_size=2048,
                        bias=False, tie_embeddings=False, mlp="swiglu", norm="rmsnorm", position="rope",
                        name="llama-65b")


def test_shape_counts_match_the_published_totals():
    assert sum(llama_counts(LLAMA_8B).values()) == 8_030_261_248  # Meta's model card / safetensors index
    assert sum(llama_counts(LLAMA_65B).values()) == 65_285_660_672  # sum of the released checkpoint's tensors


def rows(p) -> dict[str, str]:
    names = [a.name for a in p.assumptions]
    assert len(names) == len(set(names)), names  # one row per fact
    return {a.name: a.value for a in p.assumptions}


def header(p) -> str:
    console = Console(width=400, record=True, color_system=None, file=io.StringIO())
    console.print(finetune_report(p))
    return console.export_text().splitlines()[1]  # the setup line under the title


def check_against_the_engine(cfg: ModelConfig, p) -> None:
    """Every printed row agrees with what the plan used: bytes with the breakdown, rates with the time."""
    s, a, comps = p.setup, rows(p), p.memory.component_bytes()
    counts = llama_counts(cfg)
    n_total = sum(counts.values())
    n_trainable = p.memory.n_trainable
    # the rate: the time row names the precision whose peak the plan used, and the header says the same dtype
    rate = re.search(r"\b(bf16|fp16)\b (rate|peak)", a["time"]).group(1)
    assert p.peak_flop_per_s == p.gpu.peak_flop_per_s(Precision(rate))
    assert f"{rate} mixed precision" in header(p) and ("bf16 mixed" in header(p)) == (rate == "bf16")
    # which rows exist: only the ones that apply
    assert ("full fine-tuning" in a) == (s.method.value == "full")
    assert ("adapters" in a) == (s.method.value != "full")
    assert ("dequantization" in a) == ("non-quantized parameters" in a) == (s.method.value == "qlora")
    assert ("paged optimizer" in a) == s.paged
    text = " ".join(a.values()) + " " + header(p)
    nf4 = s.method.value == "qlora" and s.quant.value == "nf4"
    assert ("NF4" in text or "nf4" in text or "4-bit" in text or "4 bits" in text) == nf4
    assert ("double" in text) == (nf4 and s.double_quant)
    assert ("int8" in text) == (s.method.value == "qlora" and s.quant.value == "int8")
    # bytes the rows state, against the breakdown
    if s.method.value == "full":
        assert "fp32 weights" in a["full fine-tuning"] and "gradients" in a["full fine-tuning"]
        assert comps["weights"] == comps["gradients"] == 4 * n_total
    else:
        elem = 4 if a["adapters"].startswith("fp32") else 2 if a["adapters"].startswith("bf16") else None
        assert comps["adapter_weights"] == comps["gradients"] == elem * n_trainable
        if s.method.value == "lora":
            assert a["frozen base"].startswith(f"{rate} as loaded (2 bytes") and comps["base_weights"] == 2 * n_total
        else:
            codes = counts["linear"] * (0.5 if nf4 else 1.0)  # 4 or 8 bits per weight
            if a["non-quantized parameters"].startswith("fp32 (embedding, norms, LM head)"):
                other = 4 * (counts["embedding"] + counts["head"] + counts["norms"])
            else:
                assert a["non-quantized parameters"] == "embedding and LM head bf16, norms fp32"
                other = 2 * (counts["embedding"] + counts["head"]) + 4 * counts["norms"]
            assert comps["base_weights"] == codes + other
    n = n_total if s.method.value == "full" else n_trainable
    if "m and v in fp32 (8 bytes per element)" in a["optimizer"]:
        assert 8 * n < comps["optimizer_state"] < 8 * n + 4 * 20 * cfg.n_layer  # + a 4-byte step per tensor
    else:
        assert "8-bit AdamW" in a["optimizer"] and 2 * n < comps["optimizer_state"] < 2.1 * n
    if s.method.value == "qlora":  # the bandwidth the dequantization was priced at, against its time
        stored = codes + comps["quant_constants"]
        passes = 3 if s.recompute.value == "full" else 2  # forward, input gradient (+ recomputed forward)
        steps = p.processed_tokens / (s.micro_batch * s.seq_len)
        moved = steps * passes * (stored + 2 * counts["linear"])  # read stored, write 16-bit
        bandwidth = p.gpu.memory_bandwidth_bytes_per_s
        if p.time_model == "per-operation":
            fraction = device_perf(p.gpu).mem_bandwidth_fraction
            assert f"at {fraction:g} of the datasheet bandwidth" in a["dequantization"]
            assert p.dequant_s == pytest.approx(moved / (bandwidth * fraction), rel=1e-9)
        else:
            assert "at the datasheet bandwidth" in a["dequantization"]
            assert p.dequant_s == pytest.approx(moved / bandwidth, rel=1e-9)
        assert ("recomputed forward" in a["dequantization"]) == (passes == 3)


# method / flag combinations; on an RTX 4090 (bf16, every dequantization above the kernel floor) and a V100 (fp16)
COMBOS = [
    {"method": "full"},
    {"method": "full", "optimizer": "adamw8bit"},
    {"method": "lora"},
    {"method": "lora", "bf16_adapters": True, "optimizer": "adamw8bit", "paged": True},
    {"method": "qlora"},
    {"method": "qlora", "double_quant": False, "recompute": "none"},
    {"method": "qlora", "quant": "int8", "double_quant": False},
    {"method": "qlora", "bf16_adapters": True, "paged": True},
]


# --bf16-adapters is refused on a card without bf16 (test below), so those pairs are not generated
CASES = [(combo, gpu) for gpu in ("4090", "v100-sxm2-32gb") for combo in COMBOS
         if not (combo.get("bf16_adapters") and gpu.startswith("v100"))]


@pytest.mark.parametrize("efficiency", [None, 0.4])
@pytest.mark.parametrize("combo, gpu", CASES,
                         ids=lambda c: c if isinstance(c, str) else "-".join(f"{k}={v}" for k, v in c.items()))
def test_each_assumption_agrees_with_what_the_plan_used(combo, gpu, efficiency):
    p = plan_finetune(LLAMA_8B, FinetuneSetup(**combo), get_gpu(gpu), n_dataset_tokens=1e6, efficiency=efficiency)
    assert p.time_model == ("per-operation" if efficiency is None else "stated")
    check_against_the_engine(LLAMA_8B, p)


def test_qlora_65b_recipe_states_bf16_embedding_and_head():
    """QLoRA's 65B run (qlora.py: bf16 adapters, embedding and head, paged AdamW) on a 48 GB card: the frozen
    weights are the NF4 codes plus 2 bytes x (embedding + head) + fp32 norms, 31.14 GiB, and the rows say so."""
    setup = FinetuneSetup(method="qlora", bf16_adapters=True, paged=True, rank=64)
    p = plan_finetune(LLAMA_65B, setup, get_gpu("rtx-a6000"), n_dataset_tokens=1e6)
    assert round(p.memory.component_bytes()["base_weights"] / GIB, 2) == 31.14
    check_against_the_engine(LLAMA_65B, p)
    assert "bf16 adapters, embedding and LM head" in header(p)
    assert not any("fp32" in a.value for a in p.assumptions if a.name in ("adapters",))


def test_finetune_cli_refuses_flags_that_would_change_nothing(capsys):
    base = ("finetune", "--model", "llama-3.1-8b", "--dataset-tokens", "1M")
    for flag in ("--double-quant", "--no-double-quant"):  # double quantization is of NF4's constants only
        code, out, err = cli(capsys, *base, "--gpu", "4090", "--quant", "int8", flag)
        assert code == 2 and out == "" and err.count("\n") == 1 and "NF4" in err
    code, out, err = cli(capsys, *base, "--gpu", "v100-sxm2-32gb", "--method", "qlora", "--bf16-adapters")
    assert code == 2 and out == "" and err.count("\n") == 1 and "bf16" in err
    code, out, err = cli(capsys, *base, "--gpu", "4090", "--quant", "int8", "--json")
    d = json.loads(out)
    assert code == 0 and d["setup"]["quant"] == "int8" and d["setup"]["double_quant"] is False
    assert not any("double" in a["value"] or "4-bit" in a["value"] for a in d["assumptions"])


# ---- infer: no time or cost for what does not fit; only confirmed changes offered ----------------------------------

def infer(capsys, *argv):
    code, out, err = cli(capsys, "infer", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


TIME_FIELDS = ("prefill_s", "decode_s_per_token", "tokens_per_s", "decode_tokens_per_s", "tokens_per_s_per_sequence",
               "prefill_tokens_per_s", "decode_step_seconds_by_class", "usd_per_million_tokens")


def test_no_time_or_cost_for_a_setup_that_does_not_fit(capsys):
    argv = ("--model", "llama-3-70b", "--gpu", "4090", "--context", "1k", "--usd-per-gpu-hour", "0.5")
    d = infer(capsys, *argv)
    # 70.6B parameters x 2 bytes of bf16 weights > 24 GiB (the reviewer's 132.46 GiB of 24.00 GiB)
    assert d["fits"] is False and d["weights_bytes"] > d["gpu_memory_bytes"]
    assert all(d[k] is None for k in TIME_FIELDS) and "does not fit" not in d["unpriced_reason"]
    assert "not even one sequence fits" in d["unpriced_reason"]
    code, out, _ = cli(capsys, "infer", *argv)
    assert code == 0 and not re.search(r"\$\d|\d ms\b|\d s\b", out) and "tokens/s" not in out
    assert "not priced" in out
    # a batch past the largest: the same, with the largest batch named; a fitting one is priced (limit case)
    d = infer(capsys, "--model", "llama-3.1-8b", "--gpu", "4090", "--context", "8k", "--batch", "64")
    assert d["fits"] is False and 0 < d["max_batch"] < 64 and all(d[k] is None for k in TIME_FIELDS)
    assert f"--batch {d['max_batch']} or less" in d["unpriced_reason"]
    ok = infer(capsys, "--model", "llama-3.1-8b", "--gpu", "4090", "--context", "8k", "--batch",
               str(d["max_batch"]), "--usd-per-gpu-hour", "0.5")
    assert ok["fits"] is True and ok["unpriced_reason"] is None and all(ok[k] is not None for k in TIME_FIELDS)


def options_of(fix: dict, given_gpu: str) -> list[str]:
    out = ["--gpu", fix["gpu"] or given_gpu]
    if fix["weights"]:
        out += ["--weights", fix["weights"]]
    if fix["kv"]:
        out += ["--kv", fix["kv"]]
    return out


@pytest.mark.parametrize(("model", "gpu", "context", "weights"), [
    ("llama-3-70b", "4090", "1k", "bf16"),  # the reviewer's case: int8 and int4 weights do not fit 24 GiB either
    ("llama-3-70b", "4090", "1k", "int4"),  # 37.39 GiB of 24: only a bigger GPU
    ("llama-3.1-70b", "h100", "1k", "bf16"),  # 141 GB of weights on 80 GiB: fp8, int8, int4 do fit
    ("llama-3.1-8b", "4090", "128k", "bf16"),  # the weights fit, one sequence's cache does not: a shorter prompt
    ("llama-3.1-405b", "h100", "1k", "bf16"),  # only int4, only on a 256 GiB card
    ("llama-3.1-70b", "v100-sxm2-32gb", "1k", "fp16"),  # no bf16: int8 / int4 GEMMs cannot run here
])
def test_every_offered_change_fits_when_run(capsys, model, gpu, context, weights):
    base = ("--model", model, "--context", context)
    d = infer(capsys, *base, "--gpu", gpu, "--weights", weights)
    assert d["max_batch"] == 0 and d["fixes"], d
    code, out, _ = cli(capsys, "infer", *base, "--gpu", gpu, "--weights", weights)
    hint = " ".join(next(x for x in out.split("\n\n") if "largest batch" in x).split())
    assert "try --weights" not in hint
    for fix in d["fixes"]:
        argv = [*base, *options_of(fix, gpu)]
        if "--weights" not in argv:
            argv += ["--weights", weights]
        if fix["context"]:
            argv[argv.index("--context") + 1] = str(fix["context"])
        got = infer(capsys, *argv)
        assert got["max_batch"] == fix["max_batch"] >= 1 and got["fits"] is True  # batch 1 fits, by infer itself
        assert got["memory_bytes"] == fix["memory_bytes"] <= got["gpu_memory_bytes"]
        shown = " ".join(options_of(fix, gpu)[2:]) if fix["gpu"] is None else f"--gpu {fix['gpu']}"
        assert (f"--context {fix['context']}" if fix["context"] else shown) in hint
    # nothing that fits on this GPU is left out: every smaller weight format the card has a rate for is offered
    # when it fits, or the hint says none does
    for smaller in ("fp8", "int8", "int4"):
        code, out, _ = cli(capsys, "infer", *base, "--gpu", gpu, "--weights", smaller, "--json")
        if code != 0:
            continue  # no rate for it on this card (refused in one line)
        alt = json.loads(out)
        if alt["weights_bytes"] < d["weights_bytes"] and alt["max_batch"] >= 1:
            assert any(f["weights"] == smaller and f["gpu"] is None for f in d["fixes"])
    if not any(f["gpu"] is None for f in d["fixes"]):
        assert "fits on this GPU" in hint


def test_the_bigger_gpu_offered_is_the_smallest_that_holds_it(capsys):
    """The offered GPU holds one sequence, and every GPU of the database with less memory either cannot hold it
    or cannot run it ('flopscalc infer' on it refuses: a TPU, no bf16 rate): 70B in bf16 needs 132.46 GiB."""
    from flopscalc.hardware import builtin_database

    argv = ("--model", "llama-3-70b", "--context", "1k")
    d = infer(capsys, *argv, "--gpu", "4090")
    offered = next(f for f in d["fixes"] if f["weights"] is None)
    held = get_gpu(offered["gpu"]).memory_bytes
    smaller = [g for g in builtin_database() if get_gpu("4090").memory_bytes < g.memory_bytes < held]
    assert len(smaller) > 20
    for g in smaller:
        code, out, _ = cli(capsys, "infer", *argv, "--gpu", g.key, "--json")
        assert code != 0 or json.loads(out)["max_batch"] == 0, g.key


def test_dequantization_row_on_a_gpu_without_a_bandwidth_says_it_is_not_priced():
    """Limit case: a --gpu-csv row without a memory bandwidth falls back to the stated time model, which prices
    the dequantization at zero; the row says it is not priced rather than 'at the datasheet bandwidth'."""
    from dataclasses import replace

    gpu = replace(get_gpu("4090"), memory_bandwidth_bytes_per_s=None)
    p = plan_finetune(LLAMA_8B, FinetuneSetup(method="qlora"), gpu, n_dataset_tokens=1e6)
    assert p.time_model == "stated" and p.dequant_s == 0.0
    assert "not priced" in rows(p)["dequantization"] and "datasheet" not in rows(p)["dequantization"]
