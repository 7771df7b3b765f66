"""`flopscalc plot memory` shows every component: the hatched "not alive at the same time" bar is drawn beside the
stack, never over a component (it used to cover GPT-2 medium's activations, 1.13 GiB of hatch over 1.04 GiB of
activations at micro-batch 1, so the red bar and its legend entry matched nothing visible)."""

from __future__ import annotations

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from flopscalc import plots
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.model import get_preset

MODELS = ["gpt2", "gpt2-medium"]


def _overlap_area(a, b) -> float:
    """Area shared by two axis-aligned rectangles (data units)."""
    (ax0, ay0), (ax1, ay1) = a.get_bbox().get_points()
    (bx0, by0), (bx1, by1) = b.get_bbox().get_points()
    return max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))


@pytest.fixture(scope="module")
def figure():
    fig = plots.memory_figure(MODELS, None, TrainingSetup())
    yield fig
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_the_case_hides_a_component_unless_drawn_apart():
    """The premise: the negative component is larger than the top component (activations) of GPT-2 medium."""
    comp = estimate_memory(get_preset("gpt2-medium"), TrainingSetup()).component_bytes()
    assert -comp["not_concurrent"] > comp["activations"] > 0


def test_every_nonzero_component_is_in_the_legend_and_visible(figure):
    ax = figure.axes[0]
    fig_labels = {c["key"]: c["label"] for c in plots.memory_data(MODELS)["components"]}
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    hatched = [p for p in ax.patches if p.get_gid() == "component:not_concurrent"]
    assert hatched and all(p.get_height() > 0 for p in hatched)
    for name in MODELS:
        comp = estimate_memory(get_preset(name), TrainingSetup()).component_bytes()
        for key, value in comp.items():
            if key == "not_concurrent" or value <= 0:
                continue
            assert fig_labels[key] in legend, key
            patches = [p for p in ax.patches if p.get_gid() == f"component:{key}" and p.get_height() > 0]
            assert patches, key
            for p in patches:
                assert p.get_width() * p.get_height() > 0
                assert p.get_facecolor()[3] > 0 and p.get_visible()  # an opaque fill in its own colour
                # nothing drawn over it: the hatched bar shares no area with any component
                assert all(_overlap_area(p, h) == 0 for h in hatched), key


def test_the_hatch_still_spans_peak_to_top_of_each_stack(figure):
    ax = figure.axes[0]
    hatched = [p for p in ax.patches if p.get_gid() == "component:not_concurrent"]
    for k, name in enumerate(MODELS):
        est = estimate_memory(get_preset(name), TrainingSetup())
        stack_top = sum(v for key, v in est.component_bytes().items() if key != "not_concurrent") / 2**30
        assert hatched[k].get_y() == pytest.approx(est.peak_bytes / 2**30, rel=1e-9)  # bottom of the hatch: peak
        assert hatched[k].get_y() + hatched[k].get_height() == pytest.approx(stack_top, rel=1e-9)
