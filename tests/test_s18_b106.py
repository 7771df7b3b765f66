"""Diff review r14 on pipelines, labels and the life-cycle pick.

1. Interleaved uneven splits. Megatron-LM refuses uneven ends only in its --num-layers-per-virtual-pipeline-stage
   form; with --num-virtual-stages-per-pipeline-rank v it builds them, every end and middle rank a multiple of v.
   flopscalc prices the first form only. Before, the refusal of Qwen2.5-7B's 28 layers over PP 4 x 2 said Megatron-LM's
   chunks are equal; it now names the other form's settings, which the reference below (Megatron-LM's rule
   re-implemented from its source) builds as 6/8/8/6.
2. A model name the user gave with its own parenthesis ("my model (v2)") is never opened to fold overrides into it;
   only a list of overrides flopscalc wrote is joined.
3. With --target-loss and --inference-tokens, options reach one loss at their own speeds; the pick is the least
   `scaling.inference.life_cycle_flops_at_speed`, which is `lifetime_flops` at the plain pick's speed. Checked
   against the time the whole life takes on the plan's cluster, with options at different speeds.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import refused

from flopscalc.layout import Layout
from flopscalc.layout.spec import pipeline_split, uneven_virtual_ends
from flopscalc.model import count_params, get_preset, resolve_model, with_fields_named
from flopscalc.planner.lifecycle import life_cycle_pick
from flopscalc.planner.options import PlanOption
from flopscalc.scaling.io import get_law
from flopscalc.scaling.laws import n_for_law

QWEN_7B_FILE = Path(__file__).resolve().parents[1] / "data" / "configs" / "qwen2.5-7b.json"


# --- 1. interleaved uneven splits -------------------------------------------------------------------------------

class MegatronRefuses(ValueError):
    """Megatron-LM raises at start-up for these settings."""


def _flag(settings: str, name: str) -> int | None:
    m = re.search(rf"--{name} (\d+)", settings)
    return int(m.group(1)) if m else None


def megatron_virtual_uneven_chunks(n_layer: int, settings: str) -> list[list[int]]:
    """Layers Megatron-LM builds in each chunk of each pipeline rank for ``--num-virtual-stages-per-pipeline-rank v``
    with ``--decoder-first/last-pipeline-num-layers``, or `MegatronRefuses`. Re-implemented from Megatron-LM
    (core 0.12-0.14):

    - ``megatron/core/transformer/transformer_config.py`` ``__post_init__``: each given end > 0 ('must be larger than
      0') and divisible by v ('number of layers at first/last stage ... must be divisible by virtual pipeline
      parallel degree'); the rest over the stages left ('number of layers at middle stage ... must be divisible by
      the middle pipeline model parallel size'), each middle rank's share divisible by v ('number of layers on each
      middle pipeline rank ... must be divisible by virtual pipeline parallel degree');
    - ``megatron/core/transformer/transformer_layer.py`` ``get_transformer_layer_offset`` (interleaved uneven): per
      chunk, first // v on the first rank, (middle // v) // middle stages on each middle rank, last // v on the last.
    """
    pp = _flag(settings, "pipeline-model-parallel-size")
    v = _flag(settings, "num-virtual-stages-per-pipeline-rank")
    first = _flag(settings, "decoder-first-pipeline-num-layers")
    last = _flag(settings, "decoder-last-pipeline-num-layers")
    left, stages = n_layer, pp
    for n in (first, last):
        if n is not None:
            if n <= 0:
                raise MegatronRefuses("an uneven end stage must be larger than 0")
            if n % v:
                raise MegatronRefuses("an uneven end stage must be divisible by the virtual pipeline degree")
            left, stages = left - n, stages - 1
    if stages == 0:
        if left:  # Megatron-LM takes num_layers % 0 here: it fails at start-up
            raise MegatronRefuses("no middle stage for the middle layers")
        middle = 0
    else:
        if left % stages:
            raise MegatronRefuses("middle layers must be divisible by the middle pipeline stages")
        middle = left // stages
        if middle % v:
            raise MegatronRefuses("each middle rank's layers must be divisible by the virtual pipeline degree")
    per_rank = [middle] * pp
    if first is not None:
        per_rank[0] = first
    if last is not None:
        per_rank[-1] = last
    return [[n // v] * v for n in per_rank]


def _megatron_best_virtual_uneven(n_layer: int, pp: int, v: int) -> int | None:
    """The fewest layers on the busiest stage over every first / last count Megatron-LM's
    --num-virtual-stages-per-pipeline-rank form takes (both ends given), by trying them all; None if none."""
    best = None
    for first, last in itertools.product(range(1, n_layer + 1), repeat=2):
        s = (f"--pipeline-model-parallel-size {pp} --num-virtual-stages-per-pipeline-rank {v} "
             f"--decoder-first-pipeline-num-layers {first} --decoder-last-pipeline-num-layers {last}")
        try:
            chunks = megatron_virtual_uneven_chunks(n_layer, s)
        except MegatronRefuses:
            continue
        assert sum(map(sum, chunks)) == n_layer
        most = max(map(sum, chunks))
        best = most if best is None else min(best, most)
    return best


def _uneven_settings(line: str) -> str:
    """The Megatron-LM settings a refusal names for the uneven interleaved form."""
    m = re.search(r"\((--num-virtual-stages-per-pipeline-rank \d+ --decoder-first-pipeline-num-layers \d+ "
                  r"--decoder-last-pipeline-num-layers \d+)\)", line)
    assert m, line
    return m.group(1)


def test_qwen_pp4_x2_refusal_names_the_uneven_form_megatron_builds(capsys):
    # r14: refused with "--interleave 7 would" only, and "Megatron-LM's chunks are equal", while Megatron-LM builds
    # it with --num-virtual-stages-per-pipeline-rank 2 --decoder-first/last-pipeline-num-layers 6 (6/8/8/6)
    line = refused(capsys, "step", "--config", str(QWEN_7B_FILE), "--gpu", "h100", "--n-gpus", "8", "--pp", "4",
                   "--interleave", "2", "--grad-accum", "8")
    assert "chunks are equal" not in line
    assert "--interleave 7 would" in line  # the form flopscalc prices still has its answer
    assert "does not price" in line
    settings = "--pipeline-model-parallel-size 4 " + _uneven_settings(line)
    chunks = megatron_virtual_uneven_chunks(28, settings)
    assert [sum(c) for c in chunks] == [6, 8, 8, 6]
    assert chunks == [[3, 3], [4, 4], [4, 4], [3, 3]]


@pytest.mark.parametrize("pp", [3, 4, 8])
@pytest.mark.parametrize("v", [2, 3, 4])
def test_the_named_uneven_split_is_megatrons_most_balanced(pp, v):
    # whenever the equal-chunk form is refused, the refusal names an uneven split exactly when Megatron-LM's
    # --num-virtual-stages-per-pipeline-rank form has one with no stage over ceil(L / (p v)) x v layers (the brute
    # force over every first / last count), and the one named builds, balanced
    named = 0
    for n_layer in range(pp * v - 2, 97):
        if pipeline_split(n_layer, pp, v) is not None:
            continue
        bound = math.ceil(n_layer / (pp * v)) * v
        best = _megatron_best_virtual_uneven(n_layer, pp, v)
        ends = uneven_virtual_ends(n_layer, pp, v)
        assert (ends is not None) == (best is not None and best <= bound), (n_layer, pp, v, best, ends)
        if ends is None:
            continue
        named += 1
        s = (f"--pipeline-model-parallel-size {pp} --num-virtual-stages-per-pipeline-rank {v} "
             f"--decoder-first-pipeline-num-layers {ends[0]} --decoder-last-pipeline-num-layers {ends[1]}")
        stages = [sum(c) for c in megatron_virtual_uneven_chunks(n_layer, s)]
        assert sum(stages) == n_layer and max(stages) <= bound and stages[-1] <= stages[0]
        msg = Layout(pp=pp, interleave=v, n_micro=pp)._no_split_message(n_layer)
        assert _uneven_settings(msg) == s.split(f"{pp} ", 1)[1]
    assert named > 0


def test_the_equal_chunk_form_still_refuses_uneven_ends():
    # what flopscalc prints for a priced interleaved layout is the --num-layers-per-virtual-pipeline-stage form, with
    # no uneven flags (Megatron-LM's validate_args refuses the two together)
    flags = Layout(pp=4, interleave=7, n_micro=4).engine_settings(28)["Megatron-LM"]
    assert "--num-layers-per-virtual-pipeline-stage 1" in flags
    assert "--decoder-first-pipeline-num-layers" not in flags and "--num-virtual-stages" not in flags


# --- 2. the user's own parenthesis is not opened ----------------------------------------------------------------

def _config_file(tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(QWEN_7B_FILE.read_text())
    return str(path)


def test_a_users_parenthesis_keeps_its_overrides_outside(tmp_path):
    # r14: "my model (v2)" with --n-layer 2 printed "my model (v2, n_layer=2)"
    cfg = resolve_model(None, n_layer=2, config_file=_config_file(tmp_path, "my model (v2)"))
    assert cfg.n_layer == 2
    assert cfg.name == "my model (v2) (n_layer=2)"
    # a later override joins the list flopscalc wrote, not the user's
    assert with_fields_named(cfg, block_size=256).name == "my model (v2) (n_layer=2, block_size=256)"
    # a name with a parenthesis and no override of ours gets its own list
    plain = resolve_model(None, config_file=_config_file(tmp_path, "my model (v2)"))
    assert plain.name == "my model (v2)"
    assert with_fields_named(plain, block_size=256).name == "my model (v2) (block_size=256)"


def test_flopscalcs_own_override_list_is_still_joined():
    cfg = resolve_model("gpt2", arch={"mlp": "swiglu"})
    assert cfg.name == "gpt2 (mlp=swiglu)"
    assert with_fields_named(cfg, block_size=256).name == "gpt2 (mlp=swiglu, block_size=256)"
    # renamed since: the record no longer describes the name, and nothing is folded into it
    renamed = with_fields_named(cfg.with_(name="mine (a)"), block_size=256)
    assert renamed.name == "mine (a) (block_size=256)"


# --- 3. the target pick, priced by time -------------------------------------------------------------------------

T = 1e12  # tokens served


def _option(model, n_tokens: float, train_time_s: float, loss: float) -> PlanOption:
    return PlanOption(model=model, n_params=count_params(model).total, nearest_preset=None, chosen=None,
                      min_gpus=None, speed=None, n_tokens=n_tokens, train_time_s=train_time_s, loss=loss,
                      effective_tokens=None, unique_tokens=None)


def test_life_cycle_flops_at_speed_is_lifetime_flops_at_the_reference_speed():
    from flopscalc.scaling.inference import life_cycle_flops_at_speed, lifetime_flops

    n, d = 1.3e9, 2.6e10
    rate = 6 * n * d / 86_400.0  # trains in a day
    assert life_cycle_flops_at_speed(n, d, T, 86_400.0, rate) == pytest.approx(6 * n * d + 2 * n * T, rel=1e-12)
    assert life_cycle_flops_at_speed(n, d, T, 86_400.0, rate) == pytest.approx(lifetime_flops(n, d, T), rel=1e-12)
    # twice as slow: the extra day is worth another 6ND at the reference rate (Sardana et al. 2024's 6ND + 2NT,
    # training measured in the time it holds the cluster)
    assert life_cycle_flops_at_speed(n, d, T, 2 * 86_400.0, rate) == pytest.approx(12 * n * d + 2 * n * T, rel=1e-12)


@pytest.mark.parametrize("slow", [1.0, 3.0, 30.0])
def test_target_pick_is_the_shortest_life_on_the_cluster(slow):
    """Options that reach one loss: the pick is the one whose training plus serving takes the least time on the
    plan's cluster at the plain (fastest) pick's 6ND per second, serving 2NT at that rate too. With the smaller,
    longer-trained option ``slow`` times slower than its 6ND suggests, 6ND + 2NT alone favours it; the cluster's
    time does not once it is slow enough."""
    law = get_law("chinchilla")
    big, small = get_preset("gpt2-medium"), get_preset("gpt2")
    n_big, n_small = n_for_law(law, big), n_for_law(law, small)
    d_big = 20.0 * n_big
    d_small = 6 * n_big * d_big / (6 * n_small) * 1.5  # 1.5x the training FLOPs of the big one
    rate = 1e15  # FLOP/s of the plain pick
    fast = _option(big, d_big, 6 * n_big * d_big / rate, 3.0)
    other = _option(small, d_small, slow * 6 * n_small * d_small / rate, 3.0)
    options = [fast, other]

    def life_s(o):  # the cluster's time for the whole life, at the plain pick's rate [Sardana et al. 2024]
        return o.train_time_s + 2 * n_for_law(law, o.model) * T / rate

    want = min(options, key=life_s)
    got = life_cycle_pick(options, fast, law, "target", SimpleNamespace(inference_tokens=T))
    assert got is want
    by_flops = min(options, key=lambda o: 6 * n_for_law(law, o.model) * o.n_tokens + 2 * n_for_law(law, o.model) * T)
    assert by_flops is other  # the plain 6ND + 2NT picks the small one at every speed
    assert (got is other) == (slow < 10)  # ... the cluster's time only while it is not too slow
    # T -> 0: the fastest
    assert life_cycle_pick(options, fast, law, "target", SimpleNamespace(inference_tokens=0.0)) is fast
