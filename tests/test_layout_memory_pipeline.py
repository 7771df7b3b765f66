"""Which layers and micro-batches each pipeline stage holds, against Dubey et al. 2024 (Llama 3, arXiv:2407.21783)
sec. 3.3.2, Narayanan et al. 2021 (arXiv:2104.04473) sec. 2.2, Korthikanti et al. 2022 (arXiv:2205.05198) sec. 4.3,
Megatron-LM's schedules (``megatron/core/pipeline_parallel/schedules.py``) and the reference module's parameters
counted on the meta device."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flopscalc.layout import Layout, activation_bytes_per_layer, layout_memory
from flopscalc.layout.memory import in_flight_micro_batches, peak_layers_in_flight, stage_params
from flopscalc.layout.spec import EMBEDDING_AND_LOSS_CHUNKS, chunk_layers
from flopscalc.model import get_preset

LLAMA_405B = get_preset("llama-3.1-405b")  # Dubey et al. 2024 Table 3: 126 layers, width 16,384, FFN 53,248
SEQ = 8192


def test_llama3_405b_end_chunks_hold_only_the_embedding_and_the_loss():
    # Dubey et al. 2024 sec. 3.3.2: "we reduce one Transformer layer each from the first and the last stages ...
    # the first model chunk on the first stage has only the embedding, and the last model chunk on the last stage
    # has only output projection and loss calculation"; 126 layers over PP 16 x 8 one-layer chunks
    first, last = chunk_layers(126, 16, 8, 0), chunk_layers(126, 16, 8, 15)
    assert first == (0,) + (1,) * 7
    assert last == (1,) * 7 + (0,)
    assert all(chunk_layers(126, 16, 8, r) == (1,) * 8 for r in range(1, 15))
    # without interleaving the same balance: 7 layers on each end stage, 8 on the 14 between
    assert [sum(chunk_layers(126, 16, 1, r)) for r in (0, 1, 14, 15)] == [7, 8, 8, 7]


@given(L=st.integers(1, 200), p=st.integers(2, 32), v=st.integers(1, 8))
def test_every_layer_sits_on_exactly_one_stage(L, p, v):
    # conservation: the stages' chunks hold the model's L layers, whenever the embedding and the loss fill the slots
    # the layers leave (the layouts `Layout.check_model` accepts)
    spare = p * v * -(-L // (p * v)) - L
    if L < p * v - EMBEDDING_AND_LOSS_CHUNKS or spare > EMBEDDING_AND_LOSS_CHUNKS:
        return
    assert sum(sum(chunk_layers(L, p, v, r)) for r in range(p)) == L


def test_stage_parameters_equal_the_reference_module_counted_on_the_meta_device():
    """Stage parameters per GPU of Llama 3 405B at TP 8, PP 16 x 8 (Dubey et al. 2024 Table 4 and sec. 3.3.2),
    from the PyTorch module itself: Megatron's tensor parallelism splits every linear weight and the vocabulary by
    t and replicates the norms (Shoeybi et al. 2019 sec. 3; Megatron's VocabParallelEmbedding)."""
    torch = pytest.importorskip("torch")
    from flopscalc.train.model import build_model

    t = 8
    with torch.device("meta"):
        model = build_model(LLAMA_405B)

    def per_gpu(module) -> float:
        return sum(p.numel() / (t if p.dim() == 2 else 1) for p in module.parameters())

    def blocks(n: int) -> float:
        return sum(per_gpu(b) for b in list(model.layers)[:n])

    got = stage_params(LLAMA_405B, Layout(tp=t, pp=16, interleave=8, n_micro=16))
    assert sum(got["first"]) == pytest.approx(per_gpu(model.embed_tokens) + blocks(7), rel=1e-12)
    assert sum(got["second"]) == pytest.approx(blocks(8), rel=1e-12)
    assert sum(got["last"]) == pytest.approx(per_gpu(model.lm_head) + per_gpu(model.norm) + blocks(7), rel=1e-12)


@pytest.mark.parametrize(("p", "m"), [(16, 16), (16, 32), (8, 3), (4, 100)])
def test_each_1f1b_stage_holds_p_minus_its_rank_micro_batches(p, m):
    # Narayanan et al. 2021 sec. 2.2.1 (PipeDream-Flush): stage r runs p - r - 1 warm-up forwards, then one forward
    # before each backward, so it holds min(p - r, m) micro-batches' activations
    for r in range(p):
        assert peak_layers_in_flight(p, 1, m, r, (1.0,)) == min(p - r, m)


def test_interleaved_stages_never_hold_more_micro_batches_than_there_are():
    # limit case: 16 micro-batches on 16 stages of 8 chunks (Llama 3's 16K-GPU rows, Table 4: batch 16 per DP
    # group; micro-batch 1 assumed). Megatron-LM runs every forward first when m = p, so each stage holds all 16,
    # not Korthikanti's p (1 + (p-1)/(p v)) = 17.9, which assumes m large enough to reach the steady state
    assert in_flight_micro_batches(Layout(pp=16, interleave=8, n_micro=16)) == 16
    assert in_flight_micro_batches(Layout(pp=16, interleave=8, n_micro=256)) == pytest.approx(16 * (1 + 15 / 128))


def test_the_embedding_chunk_takes_the_first_stages_extra_warm_up():
    # Llama 3 405B on 8K GPUs (Table 4: DP 64, batch 32 per DP group: m = 32 at micro-batch 1), PP 16 x 8.
    # Counted by hand from Megatron-LM's interleaved order (forward k runs chunk (k mod 128) // 16): stage 0's
    # 2 x 15 + 7 x 16 = 142 warm-up forwards and the steady state's first are 16 of chunk 0 (the embedding alone),
    # 16 each of chunks 1-7 (one layer each) and 15 of chunk 0 again: 112 layers' activations held, 7 x 16, where a
    # stage of eight one-layer chunks holds 143.
    first = chunk_layers(126, 16, 8, 0)
    assert peak_layers_in_flight(16, 8, 32, 0, tuple(float(n) for n in first)) == 112
    assert peak_layers_in_flight(16, 8, 32, 0, (1.0,) * 8) == 143


def test_llama3_405b_peaks_on_the_second_stage_under_1f1b():
    # the balanced end stages (7 layers) hold 16 micro-batches (the first) and 1 (the last); the second holds
    # p - 1 = 15 micro-batches (Narayanan sec. 2.2.1) of 8 layers: 120 > 7 x 16 = 112 layer-micro-batches
    lay = Layout(tp=8, pp=16, dp=128, sequence_parallel=True, zero_stage=1, n_micro=16)
    mem = layout_memory(LLAMA_405B, lay, SEQ, flash=True, dropout=False)
    per_layer = activation_bytes_per_layer(LLAMA_405B, SEQ, 1, tp=8, sequence_parallel=True, flash=True,
                                           dropout=False)
    assert mem.stage == "second"
    assert mem.n_in_flight == 15
    assert mem.activations == pytest.approx(15 * 8 * per_layer, rel=1e-12)
    assert in_flight_micro_batches(lay) == 16  # the first stage holds more micro-batches, of fewer layers
