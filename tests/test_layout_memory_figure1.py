"""Memory per GPU against Korthikanti et al. 2022 (arXiv:2205.05198) Figure 1 and Figure 7: the published figures
are the expected values; target (issue 13) within 5%.

Figure 1 ("Parameters, optimizer state, and activations memory", GiB per GPU) and Figure 7 (activation memory as
a percentage of the tensor-parallel baseline, Eq. 2) print no numbers in the paper; the bar heights used here are
those transcribed by the Calculon authors in calculon-ai/calculon ``calculon/llm/validation.py`` (``seqsel_fig1``,
``seqsel_fig7``, commit 2dd9c5c8), cited as such. They are the paper's own formulas, not measurements: every
Figure 1 value equals 18 bytes x 12 L h^2 / (t p) for parameters + optimizer state, and Eq. 2 (baseline) or
Eq. 6 (present work) x L x the interleaving factor 1 + (p-1)/(p m) (sec. 4.2.3) for activations, to the last digit
(45.5625 GiB = 18 x 48 x 12 x 6144^2 / 8 bytes). So this validates the whole-GPU composition (split by TP x PP,
1F1B in-flight micro-batches, interleaving, first stage) against the paper's, not against a profiler.

Two terms the figure leaves out and we keep, both from the paper's own text: the first stage's embedding tables
(sec. 3: word embedding v x h, split by TP, and learned positions s x h) and the embedding dropout mask of the p
micro-batches in flight (sec. 4.3: sbhp, / t under sequence parallelism). The parameter check adds the tables to
the figure's value (sec. 3 sizes); without them 530B and 1T differ by 9.2% and 11.0% (a test shows it).

Observed (docs/parallelism.md): parameters + optimizer within 0.06% (with the embedding tables), activations
within 2.4% (worst: 1T baseline, the sbhp mask), Figure 7 ratios within 1.1%.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from flopscalc.flops import Recompute
from flopscalc.layout import Layout, activation_bytes_per_layer, layout_memory
from flopscalc.model import ModelConfig
from flopscalc.units import GIB

SEQ, VOCAB = 2048, 51200  # Korthikanti sec. 6: s = 2048, v = 51200 for every model
MIXED_PRECISION_STATE_BYTES = 18  # Korthikanti Figure 1's parameters + optimizer bars: 18 bytes per parameter
REL_TOL = 0.05  # issue 13's memory target


@dataclass(frozen=True)
class Run:
    """Korthikanti Table 3 (heads, hidden, layers, t, p, micro-batch, global batch) and sec. 6 (interleave m = 3
    for 175B and 530B)."""

    a: int
    h: int
    n_layer: int
    tp: int
    pp: int
    interleave: int
    micro_batch: int
    global_batch: int

    def cfg(self) -> ModelConfig:
        return ModelConfig(n_layer=self.n_layer, n_head=self.a, n_embd=self.h, vocab_size=VOCAB, block_size=SEQ)

    def layout(self, mode: str) -> Layout:
        rc, sp = MODES[mode]
        return Layout(tp=self.tp, pp=self.pp, interleave=self.interleave, micro_batch=self.micro_batch,
                      n_micro=self.global_batch // self.micro_batch, sequence_parallel=sp, recompute=rc)


RUNS = {"22B": Run(64, 6144, 48, 8, 1, 1, 4, 4), "175B": Run(96, 12288, 96, 8, 8, 3, 1, 64),
        "530B": Run(128, 20480, 105, 8, 35, 3, 1, 280), "1T": Run(160, 25600, 128, 8, 64, 1, 1, 512)}
# Figure 1's two bars per model: "baseline" (tensor parallel, no recomputation) and "present work" (sequence
# parallel + selective recomputation); Figure 7 adds each technique alone and full recomputation.
MODES = {"baseline": (Recompute.none, False), "seq": (Recompute.none, True), "sel": (Recompute.selective, False),
         "seqsel": (Recompute.selective, True), "full": (Recompute.full, False)}

# Korthikanti et al. 2022 Figure 1, GiB per GPU (transcribed in calculon/llm/validation.py, seqsel_fig1):
# {model: (parameters + optimizer state, activations baseline, activations present work)}
FIGURE_1_GIB = {"22B": (45.5625, 59.25, 9.5625), "175B": (45.5625, 66.84375, 12.3515625),
                "530B": (31.640625, 114.0234375, 23.076171875), "1T": (32.958984375, 131.25, 26.5625)}
# Korthikanti et al. 2022 Figure 7, % of the tensor-parallel baseline (calculon/llm/validation.py, seqsel_fig7)
FIGURE_7_PCT = {"22B": {"seq": 66.84, "sel": 49.42, "seqsel": 16.18, "full": 7.64},
                "175B": {"seq": 62.04, "sel": 56.53, "seqsel": 18.49, "full": 8.71},
                "530B": {"seq": 58.31, "sel": 62.04, "seqsel": 20.27, "full": 9.42},
                "1T": {"seq": 58.31, "sel": 62.04, "seqsel": 20.27, "full": 9.42}}
FIGURE_7_REL_TOL = 0.02  # bar heights read off a figure to 4 digits; observed <= 1.1% (530B/1T full: 9.42 vs 9.52)


def _embedding_tables_gib(run: Run) -> float:
    """Training state of the first stage's embedding tables, which Figure 1 leaves out: the word embedding v x h
    split by TP and the learned positions s x h (Korthikanti sec. 3), at Figure 1's 18 bytes per parameter."""
    return MIXED_PRECISION_STATE_BYTES * (VOCAB * run.h / run.tp + SEQ * run.h) / GIB


@pytest.mark.parametrize("model", RUNS)
def test_parameters_and_optimizer_per_gpu_match_figure_1(model):
    run = RUNS[model]
    mem = layout_memory(run.cfg(), run.layout("seqsel"), SEQ)
    assert mem.stage == "first"
    ours = (mem.weights + mem.gradients + mem.optimizer) / GIB
    expected = FIGURE_1_GIB[model][0] + _embedding_tables_gib(run)
    assert ours == pytest.approx(expected, rel=REL_TOL)  # observed <= 0.06% (layer norms and biases)


def test_figure_1_leaves_out_the_embedding_tables():
    """The adjustment above matters: against the raw bars, the two deepest pipelines miss the 5% target because
    the first stage also holds the embedding (9.2% for 530B, 11.0% for 1T)."""
    for model in ("530B", "1T"):
        run = RUNS[model]
        mem = layout_memory(run.cfg(), run.layout("seqsel"), SEQ)
        assert (mem.weights + mem.gradients + mem.optimizer) / GIB / FIGURE_1_GIB[model][0] - 1 > REL_TOL


@pytest.mark.parametrize("model", RUNS)
@pytest.mark.parametrize(("mode", "column"), [("baseline", 1), ("seqsel", 2)])
def test_activations_per_gpu_match_figure_1(model, mode, column):
    """First stage, every micro-batch in flight (1F1B, interleaving), dropout masks included as in the paper."""
    run = RUNS[model]
    mem = layout_memory(run.cfg(), run.layout(mode), SEQ)
    assert mem.activations / GIB == pytest.approx(FIGURE_1_GIB[model][column], rel=REL_TOL)  # observed <= 2.4%


@pytest.mark.parametrize("model", RUNS)
@pytest.mark.parametrize("mode", ["seq", "sel", "seqsel", "full"])
def test_activation_saving_per_layer_matches_figure_7(model, mode):
    run = RUNS[model]
    rc, sp = MODES[mode]
    base = activation_bytes_per_layer(run.cfg(), SEQ, run.micro_batch, tp=run.tp)
    ours = activation_bytes_per_layer(run.cfg(), SEQ, run.micro_batch, tp=run.tp, sequence_parallel=sp, recompute=rc)
    assert 100 * ours / base == pytest.approx(FIGURE_7_PCT[model][mode], rel=FIGURE_7_REL_TOL)


@pytest.mark.parametrize("model", RUNS)
def test_baselines_exceed_and_present_work_fits_an_80_gb_a100(model):
    """Sec. 1 on Figure 1: "for all these cases, the required memory for the baseline cases is above the 80GB";
    sec. 6.1: without sequence parallelism and selective recomputation together none of the models fits. The
    whole GPU here includes the CUDA context and allocator overhead the figure leaves out."""
    run = RUNS[model]
    a100_bytes = 80e9  # Korthikanti sec. 6: 80GB A100
    for mode in ("baseline", "seq", "sel"):
        assert layout_memory(run.cfg(), run.layout(mode), SEQ).total > a100_bytes
    assert layout_memory(run.cfg(), run.layout("seqsel"), SEQ).total < a100_bytes
