"""Bug bash by use (stop 15): what a user reads, checked against the same question asked another way.

Each test failed on the code before its fix; the docstring names what was wrong.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.hardware import get_gpu
from flopscalc.planner import plan

DAY = 86400.0
GIB = 2**30


# ---- --max-days shorter than the budget ---------------------------------------------------------------------------
# A deadline that stops the run before the budget is spent is the same question as a budget of the deadline: the GPU
# time after it is never used. The planner placed its optimum (and the shapes it weighs around it) at the budget's
# FLOPs, which no run can spend by then: a year of a 4070 Ti cut to 7 days weighed shapes around 2.9B and recommended
# GPT-2 medium at loss 2.811, where the 7-day plan finds 503M at 2.798; the header said the run delivers 1.10e21 FLOP
# (it delivers 2.28e19).

DEADLINE_CASES = {
    "a year cut to 7 days": ({"duration_s": 365 * DAY, "max_wall_clock_s": 7 * DAY}, {"duration_s": 7 * DAY}),
    "a year cut to 100 days": ({"duration_s": 365 * DAY, "max_wall_clock_s": 100 * DAY}, {"duration_s": 100 * DAY}),
    "money for 83 days cut to 30": ({"budget_usd": 1000.0, "usd_per_gpu_hour": 0.5, "max_wall_clock_s": 30 * DAY},
                                    {"duration_s": 30 * DAY}),
    "1e22 FLOP cut to 7 days": ({"flops": 1e22, "max_wall_clock_s": 7 * DAY}, {"duration_s": 7 * DAY}),
}


@pytest.mark.parametrize("case", list(DEADLINE_CASES))
def test_a_deadline_plans_as_a_budget_of_the_deadline(case):
    cut, plain = DEADLINE_CASES[case]
    gpu = get_gpu("4070ti")
    a, b = plan(gpu, **cut), plan(gpu, **plain)
    ra, rb = a.recommended, b.recommended
    assert ra.train_time_s == pytest.approx(cut["max_wall_clock_s"], rel=1e-9)
    # the same run: what the deadline leaves is a budget of the deadline
    assert (ra.model.n_layer, ra.model.n_embd) == (rb.model.n_layer, rb.model.n_embd)
    assert ra.loss == pytest.approx(rb.loss, rel=1e-12)
    # the header's optimum is the law's for what the run delivers (docs/planner.md step 2), and the plan says so
    assert a.allocation.c_flops == pytest.approx(ra.model_flops, rel=1e-9)
    assert a.allocation.n_params == pytest.approx(b.allocation.n_params, rel=1e-9)
    assert a.deadline_model_flops == pytest.approx(ra.model_flops, rel=1e-9)
    assert a.deadline_model_flops < a.budget.model_flops  # the budget holds more than the deadline lets it spend
    assert b.deadline_model_flops is None


def test_a_deadline_beyond_the_budget_changes_nothing():
    gpu = get_gpu("4070ti")
    a, b = plan(gpu, 30 * DAY, max_wall_clock_s=60 * DAY), plan(gpu, 30 * DAY)
    assert a.deadline_model_flops is None
    assert a.recommended.loss == b.recommended.loss and a.allocation.c_flops == b.allocation.c_flops


def test_the_header_says_what_the_deadline_lets_the_run_deliver(capsys):
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--max-days", "7", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rec = d["recommended"]
    assert d["deadline_model_flops"] == pytest.approx(rec["model_flops"], rel=1e-9)
    assert d["compute_optimal"]["c_flops"] == pytest.approx(rec["model_flops"], rel=1e-9)
    assert d["model_flops"] == pytest.approx(d["busy_flops"] * d["mfu"], rel=1e-12)  # the budget's, as before
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--max-days", "7"]) == 0
    out = capsys.readouterr().out
    budget_rows = out.split("Recommended run")[0]
    assert "model FLOPs the budget holds at the recommended run's MFU" in budget_rows
    deadline_row = next(line for line in budget_rows.splitlines() if line.startswith("by --max-days"))
    assert f"{rec['model_flops']:.2e}".replace("e+", "e") in deadline_row  # the units module's 2.28e19
    assert "model FLOPs the recommended run delivers" in deadline_row
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deadline_model_flops"] is None


# ---- finetune with a paged optimizer that does not fit ------------------------------------------------------------
# The line read "needs 64.08 GiB ...; weights, gradients and optimizer state alone take 75.02 GiB": a part larger
# than the whole, because the part counted the optimizer state a paged optimizer spills to CPU and the whole did not.

def _needs_and_states(text: str) -> tuple[float, float]:
    import re

    line = " ".join(text.split())
    needs = float(re.search(r"needs ([\d.]+) GiB", line).group(1))
    states = float(re.search(r"optimizer state alone take ([\d.]+) GiB", line).group(1))
    return needs, states


@pytest.mark.parametrize("paged", [False, True])
def test_finetune_states_are_part_of_what_it_needs(capsys, paged):
    args = ["finetune", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--method", "full", "--dataset-tokens", "50M",
            "--optimizer", "adamw8bit"] + (["--paged"] if paged else [])
    assert run(args) == 0
    needs, states = _needs_and_states(capsys.readouterr().out)
    assert states <= needs
    assert run([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert not d["fits"] and d["required_states_bytes"] <= d["required_bytes"]
    assert states == pytest.approx(d["required_states_bytes"] / GIB, abs=0.005)  # the line says what --json says
    # paging moves exactly the optimizer state off the GPU: from the states as from the whole
    spilled = d["components_bytes"]["optimizer_state"] if paged else 0.0
    assert d["states_bytes"] - d["required_states_bytes"] == pytest.approx(spilled, rel=1e-12)
    assert d["peak_bytes"] - d["required_bytes"] == pytest.approx(spilled, rel=1e-12)


# ---- step with an explicit layout the model cannot take -------------------------------------------------------------
# `step --pp 100 --n-gpus 64` on Llama 3.1 70B (80 layers, Dubey et al. 2024 Table 3) was told to "try --n-gpus 100",
# which is refused in turn: 80 layers do not fill 100 stages. A suggested --n-gpus must be one that is accepted.

def _suggested_gpus(err: str) -> int | None:
    import re

    m = re.search(r"try --n-gpus (\d+)", err)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("split", [["--pp", "100"], ["--pp", "20", "--interleave", "5"], ["--tp", "3"],
                                   ["--pp", "3"], ["--tp", "8", "--pp", "16"]])
def test_a_refused_layout_suggests_only_what_works(capsys, split):
    base = ["step", "--model", "llama-3.1-70b", "--gpu", "h100", "--json", *split]
    assert run([*base, "--n-gpus", "64"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    n = _suggested_gpus(err)
    if n is None:  # the model's own reason, which no GPU count changes
        assert "layers do not fill" in err or "must divide the 64 attention heads" in err
    else:
        assert run([*base, "--n-gpus", str(n)]) == 0, capsys.readouterr().err


def test_tensor_parallelism_across_nodes_is_said(capsys):
    # DGX H100: 8 GPUs per node on NVLink (NVIDIA DGX H100 user guide), so TP 16 crosses the network and TP 8 not
    for tp, crosses in (("16", True), ("8", False)):
        args = ["step", "--model", "llama-3.1-70b", "--gpu", "h100", "--n-gpus", "64", "--tp", tp]
        assert run([*args, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["tp_crosses_nodes"] is crosses
        assert run(args) == 0
        assert ("spans nodes of 8 GPUs" in capsys.readouterr().out) is crosses


# ---- Phi-3's pretraining length ------------------------------------------------------------------------------------
# Phi-3.5 mini's config.json states original_max_position_embeddings 4096 at the top level (Phi3Config's own field),
# where transformers takes the length LongRoPE extends from; flopscalc read it only inside rope_scaling, so --config
# planned, counted and timed Phi-3.5 at its 131,072 context ("a config.json ... states no pretraining length").

PHI35_MINI = {  # microsoft/Phi-3.5-mini-instruct config.json, the fields that shape the model and its RoPE
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu", "hidden_size": 3072,
    "intermediate_size": 8192, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "rope_scaling": {"long_factor": [1.0] * 48, "short_factor": [1.0] * 48, "type": "longrope"},
    "sliding_window": 262144, "tie_word_embeddings": False, "vocab_size": 32064,
}


def _transformers_trained_length(data: dict) -> int | None:
    """The length transformers' RoPE scaling takes as trained, from the config class it builds (None: no scaling)."""
    import copy

    transformers = pytest.importorskip("transformers")
    rope = transformers.AutoConfig.for_model(**copy.deepcopy(data)).rope_parameters  # it writes into rope_scaling
    return rope.get("original_max_position_embeddings") if rope.get("rope_type") != "default" else None


@pytest.mark.parametrize("variant", ["as published", "top-level field absent", "top level beside a nested one",
                                     "no scaling (Phi-3 mini 4k)"])
def test_phi3_trains_at_the_length_transformers_takes_as_trained(variant):
    from flopscalc.hf_config import config_from_hf

    data = dict(PHI35_MINI)
    if variant == "top-level field absent":
        del data["original_max_position_embeddings"]  # Phi3Config's default, 4096
    elif variant == "top level beside a nested one":
        data["original_max_position_embeddings"] = 8192
        data["rope_scaling"] = {**data["rope_scaling"], "original_max_position_embeddings": 2048}
    elif variant == "no scaling (Phi-3 mini 4k)":
        data.update(max_position_embeddings=4096, rope_scaling=None, sliding_window=2047)
    trained = _transformers_trained_length(data)
    ours = config_from_hf(data).train_seq
    assert ours == (trained if trained is not None and trained < data["max_position_embeddings"] else None)
    if variant == "as published":
        assert ours == 4096


# ---- a fixed model on fixed tokens with --max-days --------------------------------------------------------------------
# `plan --model gpt2-xl --tokens 10B --max-days 30` on a 4070 Ti printed a 35-day run: the deadline was dropped without
# a word for a fixed run. It is refused (exit 1: no answer exists), naming what does fit in the deadline.

def test_a_fixed_run_past_the_deadline_is_refused(capsys):
    fixed = ["plan", "--gpu", "4070ti", "--model", "gpt2-xl", "--json"]
    assert run([*fixed, "--tokens", "10B"]) == 0
    days = json.loads(capsys.readouterr().out)["recommended"]["train_time_s"] / DAY
    assert days > 30
    assert run([*fixed, "--tokens", "10B", "--max-days", "30"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"takes {days:.3g} days" in err and "--max-days 30" in err
    # what fits in the deadline is what the same GPU trains in a 30-day budget
    assert run([*fixed, "--days", "30"]) == 0
    within = json.loads(capsys.readouterr().out)["recommended"]["n_tokens"]
    assert f"{within / 1e9:.1f}B tokens fit" in err
    # a fixed run inside its deadline is the same run as without one
    assert run([*fixed, "--tokens", "8B"]) == 0
    free = json.loads(capsys.readouterr().out)["recommended"]
    assert run([*fixed, "--tokens", "8B", "--max-days", "30"]) == 0
    capped = json.loads(capsys.readouterr().out)["recommended"]
    assert capped["train_time_s"] == free["train_time_s"] and capped["n_tokens"] == free["n_tokens"] == 8e9


# ---- --mfu beyond one node ------------------------------------------------------------------------------------------
# --mfu (or --calibration, or an fp32 plan) beyond one node keeps the data-parallel search (docs/planner.md), but the
# plan said nothing: Llama 3.1 70B on 2T tokens on 512 H100s at --mfu 0.4 came back as 512 ZeRO-3 replicas, 91.5
# days, beside 50.3 days for the TP/PP/CP layout the default plan finds, with no word that layouts were not weighed.

@pytest.mark.parametrize("extra, warned", [(["--mfu", "0.4"], True), (["--precision", "fp32"], True),
                                           (["--mfu", "0.4", "--no-layout-search"], False), ([], False)])
def test_a_plan_beyond_a_node_says_when_it_weighed_no_layouts(capsys, extra, warned):
    args = ["plan", "--gpu", "h100", "--n-gpus", "16", "--model", "gpt2-xl", "--tokens", "10B", "--json", *extra]
    assert run(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["recommended"].get("layout") is None or not warned  # warned plans hold data-parallel setups only
    said = [w for w in d["warnings"] if w.startswith("only data-parallel setups")]
    assert bool(said) is warned
    if warned:
        assert ("--mfu" if "--mfu" in extra else "fp32") in said[0]


def test_one_node_never_says_it(capsys):
    assert run(["plan", "--gpu", "h100", "--n-gpus", "8", "--model", "gpt2-xl", "--tokens", "10B", "--mfu", "0.4",
                "--json"]) == 0
    assert not any(w.startswith("only data-parallel") for w in json.loads(capsys.readouterr().out)["warnings"])


# ---- config.json fields that change the count ----------------------------------------------------------------------
# Gemma's attention_bias (GemmaAttention: q, k, v and o, transformers 5.24) was read by Llama's and OLMo's readers
# but not Gemma's: an attention_bias true Gemma config counted no biases. Every variant: our count equals
# sum(p.numel()) of the transformers module built from the same dict on the meta device.

GEMMA_2B = {  # google/gemma-2b config.json, the fields that shape the model
    "architectures": ["GemmaForCausalLM"], "model_type": "gemma", "attention_bias": False, "head_dim": 256,
    "hidden_act": "gelu", "hidden_size": 2048, "intermediate_size": 16384, "max_position_embeddings": 8192,
    "num_attention_heads": 8, "num_hidden_layers": 18, "num_key_value_heads": 1, "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0, "vocab_size": 256000,
}


@pytest.mark.parametrize("attention_bias", [False, True])
def test_gemma_count_equals_transformers(attention_bias):
    import copy

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from flopscalc.hf_config import config_from_hf
    from flopscalc.model import count_params

    data = {**GEMMA_2B, "attention_bias": attention_bias, "num_hidden_layers": 2}
    with torch.device("meta"):
        module = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**copy.deepcopy(data)))
    assert count_params(config_from_hf(data)).total == sum(p.numel() for p in module.parameters())


# ---- a sliding window in the plan --------------------------------------------------------------------------------------
# Mistral 7B v0.1 (window 4,096) planned at its 32,768 context on 8 H100s showed MFU 0.74 and HFU 0.99: the plan counted
# the dense 32,768 x 32,768 attention while its step time (the per-operation model's) runs a kernel that skips every
# pair outside the window. Under a window the plan counts the window's causal pairs, as `step` and `flops --causal` do.

MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1 config.json, the fields that shape the model
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "vocab_size": 32000,
}


def test_a_windowed_plan_counts_what_its_step_runs(capsys, tmp_path):
    # --no-layout-search: at its 32k context the plan may weigh a layout of the node (CP); this checks the data-parallel
    # setup the plan prices against the same setup given to step
    path = tmp_path / "mistral-7b.json"
    path.write_text(json.dumps(MISTRAL_7B))
    assert run(["plan", "--config", str(path), "--tokens", "100B", "--gpu", "h100", "--n-gpus", "8",
                "--no-layout-search", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommended"]
    s, speed = rec["setup"], rec["speed"]
    assert run(["flops", "--config", str(path), "--causal", "--tokens", "1", "--json"]) == 0
    per_token = json.loads(capsys.readouterr().out)["per_token"]["model_flops"]
    assert speed["model_flops_per_token"] == pytest.approx(per_token, rel=1e-12)
    step = ["step", "--config", str(path), "--gpu", "h100", "--n-gpus", "8", "--micro-batch", str(s["micro_batch"]),
            "--grad-accum", str(s["grad_accum"]), "--zero", str(s["zero_stage"]), "--recompute", s["recompute"],
            "--optimizer", s["optimizer"], "--json"] + (["--offload"] if s["offload_optimizer"] else [])
    assert run(step) == 0
    d = json.loads(capsys.readouterr().out)
    assert speed["step_s"] == pytest.approx(d["step_s"], rel=1e-12)
    assert speed["mfu"] == pytest.approx(d["mfu"], rel=1e-9)  # both count the window's causal pairs
    # both count flash's backward Q K^T in HFU (issue 11 item 1), over the window's causal pairs
    assert 0 < speed["mfu"] < speed["hfu"] < 1 and speed["hfu"] == pytest.approx(d["hfu"], rel=1e-9)


# ---- LoRA on GPT-NeoX --------------------------------------------------------------------------------------------------
# A sequential GPT-NeoX (use_parallel_residual false, e.g. RedPajama-INCITE) took LoRA on q, k, v as three adapters,
# where GPT-NeoX holds one query_key_value linear and peft puts one adapter on it: 9.4M trainable counted for
# q,k,v,o,up,down on a Pythia-1B-shaped model, 8.4M in peft. A parallel one (Pythia) was first told to drop 'gate'
# from --targets and then refused for its block. Now the block is refused first, q, k, v are refused with the
# targets that are modelled, and those equal peft's count.

NEOX_SMALL = {"model_type": "gpt_neox", "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
              "num_hidden_layers": 2, "vocab_size": 97, "max_position_embeddings": 128, "hidden_act": "gelu",
              "use_parallel_residual": False, "tie_word_embeddings": False, "rotary_pct": 0.25}


def _peft_trainable(data: dict, targets: list[str]) -> int:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**data))
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=targets, lora_dropout=0.0))
    return model.get_nb_trainable_parameters()[0]


def test_gpt_neox_lora_targets_are_peft_s(tmp_path, capsys):
    from flopscalc.finetune.adapters import count_adapters
    from flopscalc.hf_config import config_from_hf

    path = tmp_path / "neox.json"
    path.write_text(json.dumps(NEOX_SMALL))
    argv = ["finetune", "--config", str(path), "--gpu", "4090", "--dataset-tokens", "1M", "--method", "lora"]
    assert run(argv) == 2  # the default targets: q, k, v (and gate) are not separate linears here
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "query_key_value" in err and "--targets o,up,down" in err
    assert run([*argv, "--targets", "o,up,down", "--rank", "4", "--json"]) == 0
    trainable = json.loads(capsys.readouterr().out)["n_trainable_params"]
    assert trainable == _peft_trainable(NEOX_SMALL, ["dense", "dense_h_to_4h", "dense_4h_to_h"])
    # the fused module takes one adapter in peft, not the three separate ones a Llama block would
    cfg = config_from_hf(NEOX_SMALL)
    assert count_adapters(cfg, ("q", "k", "v"), 4, 0).n_params != _peft_trainable(NEOX_SMALL, ["query_key_value"])
    # a parallel block is refused for the block, before any target
    assert run(["finetune", "--model", "pythia-1b", "--gpu", "4090", "--dataset-tokens", "1M", "--method", "lora"]) == 2
    err = capsys.readouterr().err
    assert "sequential blocks" in err and "drop 'gate'" not in err


def test_phi3_with_a_null_top_level_length_is_refused_in_one_line():
    # a null top-level original_max_position_embeddings beside a LongRoPE scaling was a TypeError (None < int);
    # transformers copies the null over the nested value and cannot scale with it either (review of stop 15)
    from flopscalc.errors import UsageError
    from flopscalc.hf_config import config_from_hf

    data = {**PHI35_MINI, "original_max_position_embeddings": None}
    with pytest.raises(UsageError, match="original_max_position_embeddings"):
        config_from_hf(data)


def test_a_refused_precision_lists_every_one_the_card_accepts(capsys):
    # the 'accepted on this card' list left out bf16-pure, which the CLI accepts (review of stop 15): a TPU v4 has
    # only a BF16 rate in the database, so both BF16 precisions are what it can time
    from flopscalc.cli import run

    assert run(["step", "--gpu", "tpu-v4", "--model", "gpt2", "--precision", "fp16-mixed"]) in (1, 2)
    err = capsys.readouterr().err
    assert "bf16-mixed" in err and "bf16-pure" in err and len(err.strip().splitlines()) == 1
