"""Pipeline stage balance: when the layers leave pipeline slots free, the first and last stages carry a layer fewer
and their embedding / LM head take its place (Dubey et al. 2024 sec. 3.3.2: "To balance the pipeline, we reduce one
Transformer layer each from the first and the last stages"), instead of adding to the busiest stage."""

from __future__ import annotations

import dataclasses

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.layout import Layout, cluster_for, layout_time
from flopscalc.layout.stage_cost import compute_per_micro_batch_s
from flopscalc.model import get_preset

GPU = get_gpu("h100")
SEQ = 8192


def _llama_405b(n_layer: int):
    return dataclasses.replace(get_preset("llama-3.1-405b"), n_layer=n_layer)


def test_llama3_pipeline_busiest_stage_is_a_full_middle_stage():
    """126 layers on 16 stages x 8 one-layer chunks (sec. 3.3.2): the middle stages hold 8 layers, the end stages
    7 plus the embedding or the LM head and loss, each lighter than a layer; so the busiest stage computes what a
    stage of 8 layers without ends computes: 8/7 of a 7-layer stage's body."""
    lay = Layout(tp=8, pp=16, dp=1, interleave=8, sequence_parallel=True, zero_stage=0, n_micro=16)
    balanced = compute_per_micro_batch_s(_llama_405b(126), lay, GPU, SEQ)
    full = compute_per_micro_batch_s(_llama_405b(128), lay, GPU, SEQ)  # every slot a layer: the ends add
    seven = compute_per_micro_batch_s(_llama_405b(112), Layout(tp=8, pp=16, dp=1, interleave=7,
                                                               sequence_parallel=True, n_micro=16), GPU, SEQ)
    assert balanced < full
    head_and_loss = full - balanced  # what the 128-layer pipeline's last stage adds beyond its 8 layers
    assert balanced == pytest.approx((seven - head_and_loss) * 8 / 7, rel=1e-9)


def test_pipelines_that_fill_every_slot_are_unchanged():
    """Korthikanti's and Narayanan's pipelines divide the layers evenly: the ends add to the busiest stage."""
    cfg = get_preset("llama-3.1-70b")  # 80 layers
    lay = Layout(tp=8, pp=4, dp=1, interleave=2, sequence_parallel=True, n_micro=8)
    lt = layout_time(cfg, lay, cluster_for(GPU, 32), SEQ)
    assert lt.compute_s / lay.n_micro > compute_per_micro_batch_s(dataclasses.replace(cfg, n_layer=78), lay, GPU, SEQ)


def test_at_most_the_embedding_and_loss_chunks_may_hold_no_layer():
    """Llama 3's schedule leaves two chunks without a transformer layer (embedding, loss); a third is refused."""
    from flopscalc.errors import UsageError

    lay = Layout(tp=8, pp=16, dp=1, interleave=8, sequence_parallel=True, n_micro=16)
    lay.check_model(_llama_405b(126), SEQ)  # 128 slots, 2 empty
    with pytest.raises(UsageError, match="do not fill"):
        lay.check_model(_llama_405b(125), SEQ)


def test_every_admitted_interleaved_layout_has_a_megatron_chunk_size():
    """Megatron-LM's chunks are equal: L + (loss, embedding slots) = PP x v x layers per chunk (or, with
    --num-virtual-stages-per-pipeline-rank, uneven ends that are multiples of v). A layout the check admits must
    satisfy it, else its printed --num-layers-per-virtual-pipeline-stage runs another schedule than the
    one priced (GPT-2's 12 layers on PP 2 x v 4 printed 2 layers a chunk: Megatron-LM builds v = 3 from that) or
    none (248 layers on PP 32 x v 4, the 16,384-H100 plan's pick: 248 / 32 is not whole)."""
    from flopscalc.errors import UsageError

    admitted = refused = 0
    for n_layer in range(4, 130):
        cfg = dataclasses.replace(get_preset("gpt2"), n_layer=n_layer)
        for pp in (2, 3, 4, 8, 16, 32):
            for v in (2, 3, 4, 8):
                lay = Layout(pp=pp, interleave=v, n_micro=pp)
                try:
                    lay.check_model(cfg, 1024)
                except UsageError:
                    refused += 1
                    continue
                admitted += 1
                flags = lay.engine_settings(n_layer)["Megatron-LM"]
                if f"--num-virtual-stages-per-pipeline-rank {v}" in flags:
                    # Megatron-LM's uneven interleaved form (transformer_config.py __post_init__): each end and
                    # each middle rank's share a multiple of v (tests/test_s18_b106.py checks the chunks built)
                    first = int(flags.split("--decoder-first-pipeline-num-layers ")[1].split()[0])
                    if pp == 2:  # the first count alone, the last stage taking the rest (tests/test_s18_b112.py)
                        assert "--decoder-last-pipeline-num-layers" not in flags
                        assert first % v == 0 and (n_layer - first) % v == 0
                        continue
                    last = int(flags.split("--decoder-last-pipeline-num-layers ")[1].split()[0])
                    assert first % v == 0 and last % v == 0 and (n_layer - first - last) % ((pp - 2) * v) == 0
                    continue
                per_chunk = int(flags.split("--num-layers-per-virtual-pipeline-stage ")[1].split()[0])
                assert per_chunk * pp * v - n_layer in (0, 1, 2), (n_layer, pp, v)
    assert admitted > 300 and refused > 300
    # GPT-2's 12 layers on PP 2 x 4: Megatron-LM builds 8/4 from --decoder-first-pipeline-num-layers 8 (b112)
    assert "--decoder-first-pipeline-num-layers 8" in Layout(pp=2, interleave=4, n_micro=2).engine_settings(12)[
        "Megatron-LM"]


@pytest.mark.parametrize(("n_layer", "pp", "v", "ends"), [
    (126, 16, 8, 2),  # Llama 3 405B (Dubey et al. 2024 sec. 3.3.2): a chunk each for the embedding and the loss
    (127, 32, 2, 1),  # one slot left: the loss takes it (the larger end, as `layout.time` prices it)
    (96, 8, 3, 0),  # Korthikanti et al. 2022's 175B, PP 8 x 3: every slot a layer
])
def test_megatron_settings_give_the_empty_pipeline_slots_to_the_loss_and_embedding(n_layer, pp, v, ends):
    """Megatron-LM needs the layers per virtual stage as a whole number; when the layers leave slots, its
    --account-for-loss-in-pipeline-split / --account-for-embedding-in-pipeline-split count the loss and the
    embedding as a layer each (megatron/training/arguments.py), so chunks x layers per chunk = layers + ends."""
    flags = Layout(pp=pp, interleave=v, n_micro=pp).engine_settings(n_layer)["Megatron-LM"]
    per_chunk = int(flags.split("--num-layers-per-virtual-pipeline-stage ")[1].split()[0])
    assert per_chunk * pp * v == n_layer + ends
    assert ("--account-for-loss-in-pipeline-split" in flags) == (ends >= 1)
    assert ("--account-for-embedding-in-pipeline-split" in flags) == (ends == 2)


@pytest.mark.parametrize(("precision", "fused", "expected"), [
    # main grad -> fp32 copy, unscale (fp16), norm, AdamW (4 fp32 read, 3 written), fp32 -> 16-bit copy, zero buffer
    ("fp16-mixed", True, 0 + 8 + 4 + 28 + 6 + 4),
    ("fp16-mixed", False, 6 + 8 + 4 + 28 + 6 + 2),
    ("bf16-mixed", True, 0 + 0 + 4 + 28 + 6 + 4),
])
def test_megatron_optimizer_step_bytes_by_the_steps_of_its_mixed_precision_optimizer(precision, fused, expected):
    """Megatron-LM MixedPrecisionOptimizer.step, counted step by step from megatron/optimizer/optimizer.py: the main
    gradient is fp32 with the fused accumulation or bf16 (16-bit only for an unfused fp16 run, copied by .float()),
    the grad scaler runs for fp16 only."""
    from flopscalc.layout.time import megatron_optimizer_bytes_per_param
    from flopscalc.memory.precision import MemoryPrecision

    assert megatron_optimizer_bytes_per_param(MemoryPrecision(precision), fused) == expected
