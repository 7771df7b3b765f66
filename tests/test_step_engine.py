"""`flopscalc step` says which time model priced the step, and the reason it gives for the two models' different
MFU on the same run is the whole difference.

Without layout options the per-operation model prices the step (data parallelism as `flopscalc train` runs it);
``--tp/--pp/...`` switch to the layout model. The note claims the two share compute and optimizer pricing and, for layouts that need
Megatron-LM, differ in the data-parallel gradient buckets (and the sustained fraction); the tests check that claim
against the two models' own outputs: with one GPU they agree, on 64 GPUs a DDP layout agrees whole, and a
Megatron-LM layout differs only in the exposed data-parallel communication.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run

RUN = ["step", "--model", "gpt2-xl", "--gpu", "h100", "--micro-batch", "8", "--json"]
LAYOUT = ["--tp", "1", "--pp", "1"]


def _json(capsys, *argv) -> dict:
    assert run([*argv]) == 0
    return json.loads(capsys.readouterr().out)


def _text(capsys, *argv) -> str:
    assert run([*argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("extra,model", [([], "per-operation"), (LAYOUT, "layout")])
def test_the_report_and_the_json_name_the_time_model(capsys, extra, model):
    argv = [a for a in RUN if a != "--json"] + ["--n-gpus", "64", *extra]
    text = " ".join(_text(capsys, *argv).split())  # unwrapped
    assert f"priced by the {model} model" in text or f"priced by the {model} step model" in text
    assert "gradient buckets" in text  # says which buckets priced it
    data = _json(capsys, *RUN, "--n-gpus", "64", *extra)
    assert data["step_model"] == model
    assert any(f"priced by the {model}" in n for n in data["notes"])


def test_on_one_gpu_the_two_models_price_the_same_step(capsys):
    """No data parallelism, a layout that needs no Megatron-LM: nothing the note names applies, so they agree."""
    per_op = _json(capsys, *RUN, "--n-gpus", "1")
    layout = _json(capsys, *RUN, "--n-gpus", "1", *LAYOUT)
    assert layout["engine"].startswith("flopscalc train")  # not a Megatron layout: the PyTorch-loop fraction
    assert per_op["step_s"] == pytest.approx(layout["step_s"], rel=1e-12)
    assert per_op["mfu"] == pytest.approx(layout["mfu"], rel=1e-12)
    assert (per_op["step_model"], layout["step_model"]) == ("per-operation", "layout")
    # nothing about the engine to explain; both faces name eager PyTorch's unaligned LM head (vocabulary 50,257), the
    # same GEMMs (the same price: step_s agrees above), each with the remedy it accepts (the layout face refuses
    # --compile)
    assert per_op["notes"] and all(n.startswith("eager PyTorch:") for n in per_op["notes"])
    assert len(layout["notes"]) == 1 and layout["notes"][0].startswith("eager PyTorch:")
    assert per_op["notes"][0].split(";")[0] == layout["notes"][0].split(";")[0]


def test_on_64_gpus_a_ddp_layout_is_priced_as_the_per_operation_model_prices_it(capsys):
    """A layout 'flopscalc train' runs (TP 1, PP 1, ZeRO 0: DDP) uses DDP's buckets and DDP's overlap in both models,
    so the whole step agrees, the exposed data-parallel communication included (it was 31.5% against 40.6% MFU when
    the layout model priced Megatron-LM's buckets for it)."""
    per_op = _json(capsys, *RUN, "--n-gpus", "64")
    layout = _json(capsys, *RUN, "--n-gpus", "64", *LAYOUT)
    assert layout["engine"].startswith("flopscalc train")
    per_op_rest = per_op["step_s"] - per_op["class_seconds"]["communication exposed"]
    layout_rest = layout["step_s"] - layout["time_s"]["data-parallel comm (exposed)"]
    assert per_op_rest == pytest.approx(layout_rest, rel=1e-12)  # compute + optimizer: the same pricing
    assert layout["time_s"]["data-parallel comm (exposed)"] == pytest.approx(
        per_op["class_seconds"]["communication exposed"], rel=1e-12)
    assert layout["mfu"] == pytest.approx(per_op["mfu"], rel=1e-12)


def test_a_layout_that_needs_megatron_keeps_megatron_buckets(capsys):
    """ZeRO-1 on TP 1, PP 1 is Megatron-LM's distributed optimizer: fewer, larger buckets than DeepSpeed's ZeRO-1
    (the per-operation model's), so less exposed ring latency; compute + optimizer still agree."""
    per_op = _json(capsys, *RUN, "--n-gpus", "64", "--zero", "1")
    layout = _json(capsys, *RUN, "--n-gpus", "64", "--zero", "1", *LAYOUT)
    assert layout["engine"] == "Megatron-LM"
    assert layout["time_s"]["data-parallel comm (exposed)"] < per_op["class_seconds"]["communication exposed"]


def test_the_layout_models_note_names_the_buckets_of_the_engine_that_runs_the_layout():
    from flopscalc.layout.spec import Engine
    from flopscalc.report.step import LAYOUT_MODEL, engine_note

    ddp = engine_note(LAYOUT_MODEL, Engine.torchrun_ddp.value)
    assert "DDP's 25 MiB" in ddp and "Megatron" not in ddp and "same step" in ddp
    megatron = engine_note(LAYOUT_MODEL, Engine.megatron.value)
    assert "Megatron-LM's gradient buckets" in megatron and "another MFU" in megatron


# ---- one data-parallel run, one price (issue 13/11): every layout `flopscalc train` runs, over a grid ----------------

GRID_MODELS = {"gpt2": (8, 1024), "gpt2-xl": (8, 1024), "llama-2-7b": (2, 4096)}  # (micro-batch, sequence)


def _both_models(preset, gpu_key, n_gpus, zero, grad_accum, recompute, precision="bf16-mixed"):
    """The per-operation model's estimate and the layout model's time of one DDP/FSDP run."""
    from flopscalc.flops import Recompute
    from flopscalc.hardware import get_gpu
    from flopscalc.layout import cluster_for, layout_time
    from flopscalc.layout.spec import Layout
    from flopscalc.memory import TrainingSetup
    from flopscalc.model import get_preset
    from flopscalc.perf import StepOptions, estimate_step

    cfg, gpu = get_preset(preset), get_gpu(gpu_key)
    mb, seq = GRID_MODELS[preset]
    setup = TrainingSetup(micro_batch=mb, seq_len=seq, precision=precision, recompute=recompute,
                          grad_accum=grad_accum, n_gpus=n_gpus, zero_stage=zero)
    est = estimate_step(cfg, setup, gpu, StepOptions())
    lay = Layout(tp=1, pp=1, dp=n_gpus, zero_stage=zero, micro_batch=mb, n_micro=grad_accum,
                 recompute=Recompute(recompute))
    lt = layout_time(cfg, lay, cluster_for(gpu, n_gpus), seq, precision=setup.precision)
    return est, lt


@pytest.mark.parametrize("preset", list(GRID_MODELS))
@pytest.mark.parametrize("gpu_key", ["h100", "a100-sxm-80gb"])
@pytest.mark.parametrize("n_gpus", [8, 64, 256])
@pytest.mark.parametrize("zero", [0, 3])
def test_ddp_and_fsdp_layouts_are_priced_term_by_term_as_the_per_operation_model_prices_them(preset, gpu_key,
                                                                                             n_gpus, zero):
    """TP = PP = CP = EP = 1 with ZeRO 0 (DDP) or 3 (FSDP) is a run `flopscalc train` runs: both models price every
    term alike (compute and optimizer, wire bytes, the overlap, the network beyond a node), to 1e-9. Before: FSDP
    differed by 2-4% at accumulation 1 and up to 48% at 4 (autocast casts and fp32 gradients on the wire in the layout
    model, its gathers hidden behind the last backward only); A100 beyond a node by 0.9% (two network figures)."""
    for grad_accum in (1, 4):
        for recompute in ("none", "full"):
            est, lt = _both_models(preset, gpu_key, n_gpus, zero, grad_accum, recompute)
            assert lt.layout.engine().value.startswith("flopscalc train")
            assert lt.compute_s + lt.optimizer_s == pytest.approx(est.step_s - est.comm.cost_s, rel=1e-9)
            assert lt.dp.volume_bytes == pytest.approx(est.comm.volume_bytes, rel=1e-9)
            assert lt.dp.comm_s == pytest.approx(est.comm.comm_s, rel=1e-9)
            assert lt.dp.hidden_s == pytest.approx(est.comm.hidden_s, rel=1e-9)
            assert lt.dp.slowdown_s == pytest.approx(est.comm.slowdown_s, rel=1e-9)
            assert lt.step_s == pytest.approx(est.step_s, rel=1e-9)
            assert lt.mfu == pytest.approx(est.mfu, rel=1e-9)


@pytest.mark.parametrize("zero", [0, 3])
def test_fp16_ddp_and_fsdp_layouts_send_the_per_operation_models_gradient_bytes(zero):
    """fp16 under DDP keeps fp32 gradients on fp32 weights (torch.amp), so 4 bytes a gradient on the wire, not 2."""
    est, lt = _both_models("gpt2-xl", "h100", 64, zero, 4, "none", precision="fp16-mixed")
    assert lt.dp.volume_bytes == pytest.approx(est.comm.volume_bytes, rel=1e-12)
    assert lt.step_s == pytest.approx(est.step_s, rel=1e-9)


def test_fsdp_moves_three_psi_per_step_at_one_micro_batch_its_gradients_in_fp32():
    """ZeRO (Rajbhandari et al. 2020) sec. 7.2.2: stage 3 moves 3 Psi per step (a gradient reduce-scatter and a
    parameter all-gather for the forward and again for the backward), each a ring's (n-1)/n share. The gathers
    carry 16-bit parameters (FSDP's param_dtype bf16); the reduce-scatter fp32 gradients, as `flopscalc train`'s
    FSDP2 runs it (``MixedPrecisionPolicy(reduce_dtype=torch.float32)``, torchtitan's default), so 4 + 2 x 2 bytes;
    with 16-bit reduction (FSDP's default policy, Composer's PURE) 3 x 2 bytes, the paper's count. FSDP's root unit
    (embeddings, final norm: the parameters outside the blocks) stays gathered from forward to backward (PyTorch
    FSDP ``_post_forward_reshard``), so its parameters are gathered once: 2 Psi - root of gathers."""
    from flopscalc.model import count_params, get_preset, params_outside_blocks

    n_gpus = 64
    est, lt = _both_models("gpt2-xl", "h100", n_gpus, 3, 1, "none")
    psi = count_params(get_preset("gpt2-xl")).total
    root = params_outside_blocks(get_preset("gpt2-xl"))
    ring = (n_gpus - 1) / n_gpus
    assert lt.dp.volume_bytes == pytest.approx((4 * psi + 2 * (2 * psi - root)) * ring, rel=1e-12)
    assert est.comm.volume_bytes == pytest.approx(lt.dp.volume_bytes, rel=1e-12)
    from flopscalc.hardware import get_gpu
    from flopscalc.memory import TrainingSetup
    from flopscalc.perf import estimate_step

    mb, seq = GRID_MODELS["gpt2-xl"]
    bf16 = estimate_step(get_preset("gpt2-xl"), TrainingSetup(micro_batch=mb, seq_len=seq, n_gpus=n_gpus,
                                                              zero_stage=3, reduce_fp32=False), get_gpu("h100"))
    assert bf16.comm.volume_bytes == pytest.approx((3 * psi - root) * 2 * ring, rel=1e-12)


def test_fsdp_hides_every_micro_batchs_gathers_behind_that_micro_batchs_passes():
    """FSDP prefetches the next unit's all-gather during the current unit's forward and backward (Zhao et al. 2023,
    "PyTorch FSDP", sec. 3.3.2 backward prefetch, 3.3.3 forward prefetch), for every micro-batch: more micro-batches
    add gathers, reduce-scatters (sharded gradients reduce after every micro-batch) and the compute that hides them,
    so only the two collectives at each micro-batch's ends stay exposed: the root unit's gather before its forward and
    its reduce-scatter after its backward (`parallel.fsdp_edge_s`), 2.1 ms a micro-batch here. The layout model hid
    them behind the last backward only: 6.5 -> 56.3 ms exposed for gpt2-xl on 64 H100s at accumulation 1 -> 4."""
    one = _both_models("gpt2-xl", "h100", 64, 3, 1, "none")[1].dp
    four = _both_models("gpt2-xl", "h100", 64, 3, 4, "none")[1].dp
    assert four.comm_s > 2.4 * one.comm_s
    # bytes per parameter (ZeRO sec. 7.2.2; fp32 reduce-scatter, bf16 gathers for forward and backward), per
    # micro-batch: 4 + 2 x 2 at accumulation 1, 4 x 4 + 4 x 2 x 2 at 4 (2.5x before the per-micro-batch reductions)
    assert four.volume_bytes == pytest.approx((4 * 4 + 4 * 2 * 2) / (4 + 2 * 2) * one.volume_bytes, rel=1e-12)
    assert four.exposed_s == pytest.approx(4 * one.exposed_s, rel=1e-12)
    assert four.exposed_s < 0.01  # 8.5 ms, against the 56.3 of hiding behind the last backward only


def test_both_models_cross_the_network_of_one_table():
    """DGX A100 carries one 200 Gb/s HDR HCA per GPU (Narayanan et al. 2021 sec. 5), DGX H100 one 400 Gb/s
    ConnectX-7: the per-operation model's fabric (`gpu_fabric`) and the layout model's cluster use the same figure,
    at NCCL's achieved share (`NETWORK_BUS_EFFICIENCY`). A GeForce Ampere card rings through host memory inside a
    node (no peer-to-peer) and crosses the same table's network beyond it."""
    from flopscalc.hardware import get_gpu
    from flopscalc.layout import cluster_for
    from flopscalc.perf.fabric import NETWORK_BUS_EFFICIENCY, gpu_fabric

    for key, gbps in (("a100-sxm-80gb", 200), ("h100", 400), ("rtx-3090", 200)):
        gpu = get_gpu(key)
        expected = gbps * 1e9 / 8 * NETWORK_BUS_EFFICIENCY
        assert gpu_fabric(gpu, 64).network_bus_bytes_per_s == pytest.approx(expected, rel=1e-12)
        assert cluster_for(gpu, 64).network_bus_bytes_per_s == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("zero", [1, 2])
def test_zero_1_and_2_on_one_stage_are_a_documented_difference_megatron_against_deepspeed(zero):
    """ZeRO-1/2 with TP = PP = 1 is not a run `flopscalc train` runs: the per-operation model prices it as
    DeepSpeed (its reduce/all-gather buckets, `collectives.default_bucket_bytes`; AMP kernels at the PyTorch-loop
    fraction), the layout model as Megatron-LM's distributed optimizer (its buckets, its optimizer step, the fitted
    0.86 fraction). The two prices differ, and the layout's engine says why."""
    est, lt = _both_models("gpt2-xl", "h100", 64, zero, 4, "none")
    assert lt.layout.engine().value == "Megatron-LM"
    assert lt.step_s != pytest.approx(est.step_s, rel=1e-3)


def test_on_64_gpus_an_fsdp_layout_is_the_same_step_in_the_cli_and_its_note_says_so(capsys):
    """`step --zero 3` with and without `--tp 1 --pp 1`: one run, one step time and MFU (3.0% apart before)."""
    per_op = _json(capsys, *RUN, "--n-gpus", "64", "--zero", "3")
    layout = _json(capsys, *RUN, "--n-gpus", "64", "--zero", "3", *LAYOUT)
    assert layout["engine"] == "flopscalc train (FSDP)"
    assert layout["step_s"] == pytest.approx(per_op["step_s"], rel=1e-9)
    assert layout["mfu"] == pytest.approx(per_op["mfu"], rel=1e-9)
    assert any("(FSDP)" in n and "same step" in n for n in layout["notes"])
