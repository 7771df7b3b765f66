"""Seam review r15 follow-ups (b110): a timed device's GPU row names that product only, `train --gpu` keeps the rule
`bench` keeps, a config.json default that breaks the shape names its field, in-node layouts kept off say so, the
no-fit hint counts GPUs the way the plan would, and `memory` names context parallelism."""

from __future__ import annotations

import pytest

from tests.conftest import cli

# --- 1. the row of another product is refused for a timed CUDA device --------------------------------------------
# Names as torch.cuda.get_device_name reports them (nvidia-smi / CUDA deviceQuery output of those boards); each is
# another product than the row (RTX 3080 Ti vs 3080, 3060 Ti vs 3060, 5060 vs 5060 Ti, the RTX PRO 6000 Blackwell
# Server Edition vs the RTX 6000 Ada and vs the Workstation Edition row, the H200 NVL vs the H200 SXM, a laptop 3060
# vs the desktop card; NVIDIA's product pages list each separately with its own clocks, memory or power).
OTHER_PRODUCTS = [
    ("NVIDIA GeForce RTX 3080 Ti", "rtx-3080"),
    ("NVIDIA GeForce RTX 3060 Ti", "rtx-3060-12gb"),
    ("NVIDIA GeForce RTX 5060", "rtx-5060-ti-16gb"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-6000-ada"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000-blackwell"),
    ("NVIDIA H200 NVL", "h200-sxm"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", "rtx-3060-12gb"),
    ("Tesla V100-PCIE-16GB", "v100"),  # the PCIe board, not the SXM2 row
]
# the same product, named without a row of its own (a memory size or a letter suffix the database leaves out)
SAME_PRODUCT = [
    ("Tesla V100-SXM2-16GB", "v100"),
    ("NVIDIA A10G", "a10"),
    ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA GeForce RTX 3060", "rtx-3060-12gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
]


@pytest.mark.parametrize(("runtime_name", "row"), OTHER_PRODUCTS)
def test_a_row_of_another_product_is_refused(runtime_name, row):
    # was accepted: the first word with a digit (3080, 3060, 5060, 6000, h200) was all that was compared
    from flopscalc.errors import UsageError
    from flopscalc.hardware import get_gpu
    from flopscalc.train.gpu_row import refuse_row_of_another_device

    with pytest.raises(UsageError) as err:
        refuse_row_of_another_device("cuda", runtime_name, row, get_gpu(row))
    line = str(err.value)
    assert "\n" not in line and runtime_name in line and "--gpu-csv" in line and "--peak-tflops" in line


@pytest.mark.parametrize(("runtime_name", "row"), SAME_PRODUCT)
def test_a_row_of_the_same_product_is_accepted(runtime_name, row):
    from flopscalc.hardware import get_gpu
    from flopscalc.train.gpu_row import refuse_row_of_another_device

    refuse_row_of_another_device("cuda", runtime_name, row, get_gpu(row))  # no error


# --- 2. train --gpu on a CPU is refused as bench's is; --peak-tflops given is not advised again -----------------

SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32", "--vocab-size", "64"]


def _refused(capsys, *argv: str) -> str:
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("flopscalc: error: ") and err.count("\n") == 1, err
    return err


def test_train_with_a_gpu_row_on_a_cpu_is_refused(capsys):
    # was: exit 0, device "CPU x86_64", "MFU against NVIDIA H100 SXM5 80GB's dense fp32 peak"
    pytest.importorskip("torch")
    line = _refused(capsys, "train", "--synthetic", *SHAPE, "--micro-batch", "2", "--eval-batches", "1",
                    "--device", "cpu", "--steps", "2", "--warmup-steps", "0", "--gpu", "h100", "--json")
    assert "--gpu h100" in line and "the device timed is a CPU" in line


def test_bench_with_gpu_and_peak_tflops_on_a_cpu_says_drop_gpu_not_give_the_peak(capsys, monkeypatch):
    # was: "... drop --gpu ..., or give --peak-tflops to measure MFU" to a user who gave --peak-tflops
    pytest.importorskip("torch")
    from flopscalc.train import bench

    def timed(*a, **k):
        raise AssertionError("timed a setup before refusing --gpu")

    monkeypatch.setattr(bench, "_warm_trainer", timed)
    line = _refused(capsys, "bench", *SHAPE, "--device", "cpu", "--warmup-steps", "1", "--steps", "1",
                    "--gpu", "h100", "--peak-tflops", "1")
    assert "drop --gpu" in line and "give --peak-tflops without --gpu" in line
    assert "or give --peak-tflops" not in line


# --- 3. a config.json whose class default breaks the shape names the field; --n-kv-head mends it ----------------
# /tmp/r15/q2.json: a Qwen2 file without num_key_value_heads, 8 heads
Q2 = {"model_type": "qwen2", "hidden_size": 512, "intermediate_size": 1024, "num_attention_heads": 8,
      "num_hidden_layers": 2, "vocab_size": 1000, "max_position_embeddings": 2048}


def _write(tmp_path, data: dict):
    import json

    path = tmp_path / "q2.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_a_class_default_that_breaks_the_heads_names_the_field_and_the_class(capsys, tmp_path):
    # was: "n_head (8) must be a multiple of n_kv_head (32) ... try n_kv_head 8", naming no file or field
    transformers = pytest.importorskip("transformers")
    default = transformers.Qwen2Config().num_key_value_heads  # the independent reference: 32 in 5.24
    path = _write(tmp_path, Q2)
    line = _refused(capsys, "plan", "--config", path, "--gpu", "h100", "--days", "1")
    assert path in line and "leaves num_key_value_heads out" in line
    assert f"Qwen2Config default is {default}" in line and '"num_key_value_heads": 8' in line
    assert "--n-kv-head 8" in line


def test_n_kv_head_mends_a_file_whose_default_breaks_the_heads(capsys, tmp_path):
    # was refused: the file was checked before --n-kv-head applied. Reference: transformers' own Qwen2 module with
    # num_key_value_heads 8, built on the meta device
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tests.conftest import cli_json

    mended = cli_json(capsys, "memory", "--config", _write(tmp_path, Q2), "--gpu", "h100", "--n-kv-head", "8")
    with torch.device("meta"):
        module = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**Q2, num_key_value_heads=8))
    assert mended["n_params"] == sum(p.numel() for p in module.parameters())


def test_a_files_own_kv_heads_that_break_the_shape_are_named_as_its_field(capsys, tmp_path):
    line = _refused(capsys, "memory", "--config", _write(tmp_path, {**Q2, "num_key_value_heads": 3}), "--gpu", "h100")
    assert "field 'num_key_value_heads' (3)" in line and "num_attention_heads 8" in line


# --- 4. inside a node, an option that keeps the layouts out says so where they may pay -------------------------
# tests/data/r15_qwen15_moe.json: the reviewer's copy of Qwen/Qwen1.5-MoE-A2.7B's config.json
MOE = "tests/data/r15_qwen15_moe.json"
MOE_PLAN = ["plan", "--config", MOE, "--gpu", "h100", "--n-gpus", "8", "--days", "7", "--seq", "4096", "--json"]
SKIPPED = "only data-parallel setups (ZeRO, offload, recomputation) were weighed on these 8 GPUs"


def test_the_moe_plan_of_one_node_takes_expert_parallelism_without_options(capsys):
    # the premise: on these GPUs the node's layouts pay for this model (review r10 #3: EP4, 191.1k vs 148.7k tokens/s)
    from tests.conftest import cli_json

    plan = cli_json(capsys, *MOE_PLAN)
    assert plan["recommended"]["layout"]["ep"] > 1
    assert not any(SKIPPED in w for w in plan["warnings"])


@pytest.mark.parametrize("option", [["--mfu", "0.4"], ["--precision", "fp32"]])
def test_an_option_that_keeps_the_node_layouts_out_says_so(capsys, option):
    # was: ZeRO-2 8-bit at 174.2k tokens/s and no warning (the warning was for plans beyond one node only)
    from tests.conftest import cli_json

    plan = cli_json(capsys, *MOE_PLAN, *option)
    assert plan["recommended"].get("layout") is None
    assert any(SKIPPED in w and option[0] in w or SKIPPED in w and "fp32" in w for w in plan["warnings"])


def test_no_warning_where_the_node_layouts_would_not_be_weighed(capsys):
    # a dense model at a short sequence: the plan keeps the data-parallel search alone with or without --mfu
    from tests.conftest import cli_json

    plan = cli_json(capsys, "plan", "--model", "gpt2", "--gpu", "h100", "--n-gpus", "8", "--days", "1", "--mfu", "0.4",
                    "--json")
    assert not any(SKIPPED in w for w in plan["warnings"])
    asked = cli_json(capsys, *MOE_PLAN, "--no-layout-search")  # asked for: no warning
    assert not any(SKIPPED in w for w in asked["warnings"])


# --- 5. the no-fit hint counts GPUs as the plan without the option would -----------------------------------------
# tests/data/r15_qwen25_7b.json: the reviewer's copy of Qwen/Qwen2.5-7B's config.json (131,072-token context)
QWEN7B = ["plan", "--config", "tests/data/r15_qwen25_7b.json", "--gpu", "h100", "--days", "30"]


@pytest.mark.parametrize("options", [["--n-gpus", "2", "--mfu", "0.4"], ["--n-gpus", "1", "--no-layout-search"],
                                     ["--n-gpus", "1", "--mfu", "0.4"]])
def test_the_no_fit_hint_names_the_gpus_the_plan_without_the_option_runs_on(capsys, options):
    # was: "not even 4096 GPUs hold it", while the plain plan runs on 4 (context parallelism)
    import re

    from tests.conftest import cli_json

    code, _, err = cli(capsys, *QWEN7B, *options)
    assert code == 1 and err.count("\n") == 1, err
    found = re.search(r"it would fit on (\d+) GPUs without (--[a-z-]+)", err)
    assert found and found.group(2) == options[2], err
    n = found.group(1)
    plan = cli_json(capsys, *QWEN7B, "--n-gpus", n)  # the count named runs without the option...
    assert plan["recommended"]["layout"]["cp"] > 1
    fewer = cli(capsys, *QWEN7B, "--n-gpus", str(int(n) - 1))  # ...and is the fewest
    assert fewer[0] == 1


# --- 6. inside a node a layout is taken only where it splits the model ------------------------------------------

def test_the_node_takes_no_pure_data_parallel_layout(capsys):
    # was: the 2.1B-6.1B options became Megatron-LM "TP1 PP1 DP8" layouts ("flopscalc train cannot run it"), the same
    # data-parallel run the setup search prices, at the layout engine's (Megatron-LM) price instead of eager PyTorch's
    from tests.conftest import cli_json

    plan = cli_json(capsys, "plan", "--family", "llama", "--gpu", "h100", "--n-gpus", "8", "--days", "30",
                    "--seq", "8192")
    layouts = [o["layout"] for o in plan["options"] if o.get("layout")]
    assert layouts, "the premise: at 8,192 tokens some option takes a layout (context parallelism)"
    assert all(max(lay["tp"], lay["pp"], lay["cp"], lay["ep"]) > 1 for lay in layouts), layouts
    plain = [o for o in plan["options"] if not o.get("layout") and o.get("fits", True) and o.get("speed")]
    assert plain, "the smaller options keep their data-parallel setups"


def test_splits_the_model_is_false_only_for_pure_data_parallelism():
    from flopscalc.layout.spec import Layout
    from flopscalc.planner.node import splits_the_model

    assert not splits_the_model(Layout(dp=8))
    assert all(splits_the_model(Layout(dp=4, **{k: 2})) for k in ("tp", "pp", "cp", "ep"))


# --- 7. memory names context parallelism where a CP layout of the same GPUs fits ----------------------------------

def test_memory_names_the_context_parallel_layout_that_fits_and_step_agrees(capsys):
    # was: "nothing fits" offering only --seq 8192, while plan runs TP1 PP1 DP4 CP2 on the same 8 H100s
    import re

    from tests.conftest import cli_json

    mem = cli_json(capsys, "memory", "--config", "tests/data/r15_qwen25_7b.json", "--gpu", "h100", "--n-gpus", "8")
    assert not mem["fits"]
    said = re.search(r"CP(\d+) over these 8 GPUs fits .*?: ([\d.]+) GiB per GPU .*?'flopscalc step (--n-gpus 8 --cp "
                     r"\d+ --zero \d --recompute full)'", mem["no_fix_reason"])
    assert said, mem["no_fix_reason"]
    # the command it names, priced by step's own layout report, fits in the memory said
    step = cli_json(capsys, "step", "--config", "tests/data/r15_qwen25_7b.json", "--gpu", "h100", *said.group(3).split())
    assert step["fits"] and step["layout"]["cp"] == int(said.group(1))
    assert step["memory_bytes"]["total"] / 2**30 == pytest.approx(float(said.group(2)), abs=0.05)


def test_memory_names_no_context_parallelism_below_its_shortest_sequence_or_on_one_gpu(capsys):
    from tests.conftest import cli_json

    for extra in (["--n-gpus", "2", "--seq", "4096", "--model", "llama-3.1-405b"],
                  ["--n-gpus", "1", "--config", "tests/data/r15_qwen25_7b.json"]):
        mem = cli_json(capsys, "memory", "--gpu", "h100", *extra)
        assert mem["no_fix_reason"] and "context parallelism" not in mem["no_fix_reason"], extra
