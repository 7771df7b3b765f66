"""A plan says what it assumed where it prints the number (brief s17/b75):

1. beyond one node, the network between nodes (its Gb/s per GPU and source), in `plan` and `step`; `plan
   --network-gbps` prices the layouts on another network, refused as `step` refuses it;
2. the plan's MFU names its convention (dense attention, PaLM App. B) and gives the causal one `step` prints;
3. the "kernels" row describes the engine that priced the recommended run (eager PyTorch, or Megatron-LM);
4. a mixture of experts' step time carries one warning that it is unvalidated, in `plan` and `step`.

References are independent of the code under test: the DGX H100 and DGX A100 NICs (400 and 200 Gb/s per GPU,
NVIDIA DGX H100 user guide; Narayanan et al. 2021 sec. 5), `flopscalc step` (another command, another path) for the
same layout and model, and PaLM App. B's attention term (dense 12 L d T per token, causal pairs 6 L d (T + 1)).
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run

MOE_WORDS = "MoE step time is not validated against any published run"

# Llama 3 8B's config.json fields (meta-llama/Meta-Llama-3-8B): the brief's model for a 512-GPU plan.
LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "hidden_act": "silu", "rms_norm_eps": 1e-5,
             "rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def llama_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(LLAMA3_8B))
    return str(path)


def _out(capsys, *argv) -> tuple[int, str, str]:
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(capsys, *argv) -> dict:
    code, out, err = _out(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _plan_512(capsys, config, *extra) -> dict:
    return _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "512", "--config", config, "--tokens", "1T", *extra)


def _assumptions(d: dict) -> dict:
    return {a["name"]: a for a in d["assumptions"]}


def _step_of_plan_layout(capsys, config, plan: dict, *extra) -> dict:
    """`flopscalc step` on the layout the plan recommends: the same model, GPUs, layout and sequence."""
    lay = plan["recommended"]["layout"]
    s = plan["recommended"]["setup"]
    return _json(capsys, "step", "--gpu", "h100", "--config", config, "--n-gpus", str(lay["n_gpus"]),
                 "--tp", str(lay["tp"]), "--pp", str(lay["pp"]), "--cp", str(lay["cp"]),
                 "--interleave", str(lay["interleave"]), "--zero", str(lay["zero_stage"]),
                 "--micro-batch", str(lay["micro_batch"]), "--grad-accum", str(lay["n_micro"]),
                 "--recompute", lay["recompute"], "--seq", str(s["seq_len"]),
                 *(["--sequence-parallel"] if lay["sequence_parallel"] else []), *extra)


# 1. The network between nodes ---------------------------------------------------------------------------------------

def test_a_multi_node_plan_states_the_dgx_h100_network(capsys, llama_config):
    d = _plan_512(capsys, llama_config)
    row = _assumptions(d)["network between nodes"]
    assert row["value"] == "400 Gb/s per GPU"  # DGX H100 user guide: 8 x ConnectX-7 400 Gb/s for 8 GPUs
    assert "DGX H100" in row["source"]
    code, out, _ = _out(capsys, "plan", "--gpu", "h100", "--n-gpus", "512", "--config", llama_config,
                        "--tokens", "1T")
    assert code == 0 and "network between nodes" in out and "400 Gb/s per GPU" in out


def test_an_a100_plan_states_the_dgx_a100_network(capsys):
    d = _json(capsys, "plan", "--gpu", "a100", "--n-gpus", "16", "--model", "gpt2", "--tokens", "10B")
    assert _assumptions(d)["network between nodes"]["value"] == "200 Gb/s per GPU"  # Narayanan et al. 2021 sec. 5


def test_a_data_parallel_plan_beyond_a_node_states_its_network_too(capsys):
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "16", "--model", "gpt2", "--tokens", "10B",
              "--no-layout-search")
    assert "layout" not in d["recommended"]
    assert _assumptions(d)["network between nodes"]["value"] == "400 Gb/s per GPU"


def test_one_node_plans_state_no_network(capsys):
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "8", "--model", "gpt2", "--tokens", "10B")
    assert "network between nodes" not in _assumptions(d)


def test_plan_network_gbps_prices_the_layouts_on_that_network_as_step_does(capsys, llama_config):
    fast = _plan_512(capsys, llama_config)
    slow = _plan_512(capsys, llama_config, "--network-gbps", "100")
    assert _assumptions(slow)["network between nodes"]["value"] == "100 Gb/s per GPU"
    assert "--network-gbps 100" in _assumptions(slow)["network between nodes"]["source"]
    # a quarter of the network: the step waits longer on the data-parallel reduction
    assert slow["recommended"]["speed"]["step_s"] > fast["recommended"]["speed"]["step_s"]
    # the same layout priced by `step --network-gbps 100`: the same step time, and step's (causal) MFU
    step = _step_of_plan_layout(capsys, llama_config, slow, "--network-gbps", "100")
    assert step["network_bytes_per_s_per_gpu"] == 100e9 / 8
    assert step["step_s"] == pytest.approx(slow["recommended"]["speed"]["step_s"], rel=1e-9)
    assert step["mfu"] == pytest.approx(slow["recommended"]["speed"]["mfu_causal"], rel=1e-9)


@pytest.mark.parametrize(("argv", "words"), [
    (["--n-gpus", "8", "--network-gbps", "100"], "fit one node"),
    (["--n-gpus", "16", "--network-gbps", "0"], "positive"),
    (["--n-gpus", "16", "--network-gbps", "nan"], "positive"),
    (["--n-gpus", "16", "--network-gbps", "100", "--mfu", "0.4"], "--mfu"),
    (["--n-gpus", "16", "--network-gbps", "100", "--no-layout-search"], "--no-layout-search"),
])
def test_plan_refuses_a_network_it_would_not_use(capsys, argv, words):
    code, out, err = _out(capsys, "plan", "--gpu", "h100", "--model", "gpt2", "--tokens", "10B", *argv)
    assert code == 2 and out == ""
    assert "--network-gbps" in err and words in err and len(err.strip().splitlines()) == 1


def test_step_refuses_a_network_on_one_node_with_plans_words(capsys):
    code, _, step_err = _out(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--n-gpus", "8",
                             "--network-gbps", "100")
    assert code == 2
    code, _, plan_err = _out(capsys, "plan", "--gpu", "h100", "--model", "gpt2", "--tokens", "10B", "--n-gpus", "8",
                             "--network-gbps", "100")
    assert code == 2 and step_err == plan_err  # one rule, one line


def test_step_text_names_the_network_beyond_one_node(capsys):
    code, out, _ = _out(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--n-gpus", "16")
    assert code == 0 and "network between nodes" in out and "400 Gb/s per GPU" in out
    code, out, _ = _out(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--n-gpus", "8")
    assert code == 0 and "network between nodes" not in out
    d = _json(capsys, "step", "--gpu", "a100", "--model", "gpt2", "--n-gpus", "16")
    assert d["network_bytes_per_s_per_gpu"] * 8 == 200e9 and "DGX A100" in d["network_source"]


def test_step_layout_text_names_the_network_it_was_given(capsys, llama_config):
    code, out, _ = _out(capsys, "step", "--gpu", "h100", "--config", llama_config, "--n-gpus", "512", "--cp", "2",
                        "--zero", "1", "--network-gbps", "100")
    assert code == 0 and "network between nodes: 100 Gb/s per GPU" in out


# 2. The MFU convention ----------------------------------------------------------------------------------------------

def test_the_plan_mfu_is_dense_and_its_causal_twin_is_steps(capsys, llama_config):
    d = _plan_512(capsys, llama_config)
    sp = d["recommended"]["speed"]
    assert d["mfu_convention"] == sp["mfu_convention"] == "dense attention, PaLM App. B"
    step = _step_of_plan_layout(capsys, llama_config, d)
    assert step["step_s"] == pytest.approx(sp["step_s"], rel=1e-9)
    assert sp["mfu_causal"] == pytest.approx(step["mfu"], rel=1e-9)  # the brief's 46% beside the plan's 0.52
    assert d["mfu_causal"] == pytest.approx(step["mfu"], rel=1e-9)


def test_the_two_mfus_differ_by_palm_attention_term(capsys, llama_config):
    # PaLM App. B: dense attention costs 12 L d T FLOPs per token (fwd + bwd); the causal pairs T (T + 1) / 2 per
    # sequence cost 6 L d (T + 1): the causal count is 6 L d (T - 1) fewer, and MFU is linear in the count
    d = _plan_512(capsys, llama_config)
    sp, m, seq = d["recommended"]["speed"], d["recommended"]["model"], d["recommended"]["setup"]["seq_len"]
    width = m["n_head"] * d["recommended"]["model"]["head_dim"]
    fewer = 6 * m["n_layer"] * width * (seq - 1)
    assert sp["mfu_causal"] / sp["mfu"] == pytest.approx(1 - fewer / sp["model_flops_per_token"], rel=1e-12)
    assert sp["mfu"] / sp["mfu_causal"] == pytest.approx(1.125, abs=0.01)  # the brief's ratio at sequence 8192


def test_the_text_names_the_convention_where_the_mfu_is_printed(capsys, llama_config):
    d = _plan_512(capsys, llama_config)
    mfu, causal = d["recommended"]["speed"]["mfu"], d["recommended"]["speed"]["mfu_causal"]
    code, out, _ = _out(capsys, "plan", "--gpu", "h100", "--n-gpus", "512", "--config", llama_config,
                        "--tokens", "1T")
    flat = " ".join(out.split())  # rich wraps the notes column
    assert code == 0
    assert f"MFU {mfu:.2f} (dense attention, PaLM App. B; causal {causal:.2f})" in flat  # the step row
    assert "MFU, HFU: dense attention, PaLM App. B" in flat  # the options table's caption
    assert f"'flopscalc step' counts the causal pairs: MFU {causal:.2f}" in flat  # the Assumptions row
    assert f"MFU (dense attention, PaLM App. B; causal {d['mfu_causal']:.3g})" in flat  # the budget's x MFU line


# 3. The kernels row -------------------------------------------------------------------------------------------------

def test_a_megatron_layout_is_not_said_to_run_eager_pytorch(capsys, llama_config):
    d = _plan_512(capsys, llama_config)
    assert d["recommended"]["layout"]["engine"] == "Megatron-LM"
    kernels = _assumptions(d)["kernels"]
    assert "eager" not in kernels["value"] and "3-18%" not in kernels["source"]
    assert "Megatron-LM" in kernels["value"] and "Narayanan" in kernels["source"]


def test_a_data_parallel_plan_still_says_eager_pytorch(capsys):
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "16", "--model", "gpt2", "--tokens", "10B",
              "--no-layout-search")
    kernels = _assumptions(d)["kernels"]
    assert "eager PyTorch" in kernels["value"] and "3-18% too fast" in kernels["source"]


# 4. Mixtures of experts ---------------------------------------------------------------------------------------------

def test_a_moe_plan_warns_its_step_time_is_unvalidated(capsys):
    moe = _json(capsys, "plan", "--gpu", "h100", "--model", "gpt2", "--experts", "8", "--top-k", "2",
                "--tokens", "1B")
    dense = _json(capsys, "plan", "--gpu", "h100", "--model", "gpt2", "--tokens", "1B")
    assert sum(w.startswith(MOE_WORDS) for w in moe["warnings"]) == 1
    assert not any(MOE_WORDS in w for w in dense["warnings"])


@pytest.mark.parametrize(("extra", "dense_extra"), [
    ([], []), (["--n-gpus", "8", "--ep", "8"], ["--n-gpus", "8", "--tp", "1"]),  # a dense model has no --ep
    (["--n-gpus", "16", "--search"], ["--n-gpus", "16", "--search"])])
def test_moe_step_notes_say_the_same(capsys, extra, dense_extra):
    d = _json(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--experts", "8", "--top-k", "2", *extra)
    plan = _json(capsys, "plan", "--gpu", "h100", "--model", "gpt2", "--experts", "8", "--top-k", "2",
                 "--tokens", "1B")
    shared = [w for w in plan["warnings"] if w.startswith(MOE_WORDS)]
    assert shared and shared[0] in d["notes"]  # one text for plan, step and step with a layout
    code, out, _ = _out(capsys, "step", "--gpu", "h100", "--model", "gpt2", *dense_extra)
    assert code == 0 and MOE_WORDS not in out


def test_the_moe_note_is_printed_in_step_text(capsys):
    code, out, _ = _out(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--experts", "8", "--top-k", "2")
    assert code == 0 and MOE_WORDS in " ".join(out.split())


def test_under_a_binding_sliding_window_the_plan_says_causal_and_matches_step(capsys, tmp_path):
    # Mistral 7B v0.1 (Jiang et al. 2023, Table 1): a 4,096-token window, here under 8,192-token sequences; every
    # kernel skips the pairs outside the window, so plan and step count the same causal pairs and print one MFU
    cfg = {**LLAMA3_8B, "model_type": "mistral", "architectures": ["MistralForCausalLM"], "vocab_size": 32000,
           "sliding_window": 4096, "max_position_embeddings": 32768}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    # the data-parallel search, whose setup `step` takes flag for flag (at 8,192 tokens the plan also weighs the
    # layouts of the node, and Megatron-LM's PP2x4 is faster here: b96)
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "8", "--config", str(path), "--seq", "8192",
              "--tokens", "10B", "--no-layout-search")
    sp, s = d["recommended"]["speed"], d["recommended"]["setup"]
    assert sp["mfu_convention"] == "causal attention in the sliding window"
    step = _json(capsys, "step", "--gpu", "h100", "--config", str(path), "--n-gpus", "8", "--seq", "8192",
                 "--zero", str(s["zero_stage"]), "--micro-batch", str(s["micro_batch"]),
                 "--grad-accum", str(s["grad_accum"]), "--recompute", s["recompute"])
    assert step["step_s"] == pytest.approx(sp["step_s"], rel=1e-9)
    assert sp["mfu"] == pytest.approx(step["mfu"], rel=1e-9) and sp["mfu_causal"] == pytest.approx(step["mfu"],
                                                                                                    rel=1e-9)
    code, out, _ = _out(capsys, "plan", "--gpu", "h100", "--n-gpus", "8", "--config", str(path), "--seq", "8192",
                        "--tokens", "10B", "--no-layout-search")
    assert code == 0 and f"MFU {sp['mfu']:.2f} (causal attention in the sliding window), HFU" in " ".join(out.split())


def test_the_csv_rows_carry_the_convention_and_steps_mfu(capsys, llama_config):
    import csv
    import io

    d = _plan_512(capsys, llama_config)
    code, out, _ = _out(capsys, "plan", "--gpu", "h100", "--n-gpus", "512", "--config", llama_config,
                        "--tokens", "1T", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    rec = next(row for row in rows if row["recommended"] == "True")
    assert code == 0 and rec["mfu_convention"] == "dense attention, PaLM App. B"
    step = _step_of_plan_layout(capsys, llama_config, d)
    assert float(rec["mfu_causal"]) == pytest.approx(step["mfu"], rel=1e-9)


@pytest.mark.parametrize(("zero_stage", "engine"), [(0, "DDP"), (3, "FSDP"), (1, "Megatron-LM")])
def test_the_kernels_row_follows_the_engine_of_the_recommended_layout(zero_stage, engine):
    # The layout search rarely recommends a layout 'flopscalc train' runs (ZeRO 1 needs Megatron-LM's distributed
    # optimizer, and it is the cheapest), so the rule is checked on the recommended layout with its ZeRO stage
    # changed: TP1 PP1 with ZeRO 0 is DDP, with ZeRO 3 FSDP (both priced term by term as eager PyTorch, layout.time
    # [12, 13]), with ZeRO 1 Megatron-LM
    from dataclasses import replace

    from flopscalc.hardware import get_gpu
    from flopscalc.model import get_preset
    from flopscalc.planner import PlanRequest, plan
    from flopscalc.planner.notes import _kernels_assumption

    p = plan(PlanRequest(get_gpu("h100"), n_gpus=16, model=get_preset("gpt2"), n_tokens=10e9))
    rec = p.recommended
    lay = replace(rec.chosen.layout, zero_stage=zero_stage)
    assert engine in lay.engine().value
    row = _kernels_assumption(replace(rec, chosen=replace(rec.chosen, layout=lay)), None)
    assert ("eager PyTorch" in row.value) == (engine != "Megatron-LM")
    assert ("Megatron-LM" in row.value) == (engine == "Megatron-LM")
