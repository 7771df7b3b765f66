"""Diff review r14 on pipelines, labels and the life-cycle pick.

1. Interleaved uneven splits. Megatron-LM refuses uneven ends only in its --num-layers-per-virtual-pipeline-stage
   form; with --num-virtual-stages-per-pipeline-rank v it builds them, every end and middle rank a multiple of v.
   Before, Qwen2.5-7B's 28 layers over PP 4 x 2 were refused ("Megatron-LM's chunks are equal"); now they are priced
   as Megatron-LM builds them for the printed flags, 6/8/8/6 (its rule re-implemented from its source).
2. A model name the user gave with its own parenthesis ("my model (v2)") is never opened to fold overrides into it;
   only a list of overrides flopscalc wrote is joined.
3. With --target-loss and --inference-tokens, options reach one loss at their own speeds; the pick is the least
   `scaling.inference.life_cycle_flops_at_speed`, which is `lifetime_flops` at the plain pick's speed. Checked
   against the time the whole life takes on the plan's cluster, with options at different speeds.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import cli
from test_s18_b95 import MegatronRefuses, _per_gpu_reference, fewest_on_busiest_stage, megatron_chunks

from flopscalc.errors import UsageError
from flopscalc.hf_config import config_from_hf
from flopscalc.layout import Layout
from flopscalc.layout.memory import stage_params
from flopscalc.layout.spec import chunk_layers, pipeline_split
from flopscalc.layout.stage_cost import compute_key
from flopscalc.model import count_params, get_preset, resolve_model, with_fields_named
from flopscalc.planner.lifecycle import life_cycle_pick
from flopscalc.planner.options import PlanOption
from flopscalc.scaling.io import get_law
from flopscalc.scaling.laws import n_for_law

QWEN_7B_FILE = Path(__file__).resolve().parents[1] / "data" / "configs" / "qwen2.5-7b.json"


# --- 1. interleaved uneven splits -------------------------------------------------------------------------------
# The reference is Megatron-LM's rule re-implemented from its source in tests/test_s18_b95.py (`megatron_chunks`),
# extended there to --num-virtual-stages-per-pipeline-rank (transformer_config.py __post_init__,
# transformer_layer.py get_transformer_layer_offset).

def _megatron_best_virtual_uneven(n_layer: int, pp: int, v: int) -> int | None:
    """The fewest layers on the busiest stage over every first / last count Megatron-LM's
    --num-virtual-stages-per-pipeline-rank form takes (both ends given), by trying them all; None if none."""
    return fewest_on_busiest_stage(n_layer, (
        f"--pipeline-model-parallel-size {pp} --num-virtual-stages-per-pipeline-rank {v} "
        f"--decoder-first-pipeline-num-layers {first} --decoder-last-pipeline-num-layers {last}"
        for first, last in itertools.product(range(1, n_layer + 1), repeat=2)))


def test_qwen_pp4_x2_runs_with_the_uneven_virtual_stage_form(capsys):
    # r14: refused ("--interleave 7 would"; "Megatron-LM's chunks are equal") while Megatron-LM builds it with
    # --num-virtual-stages-per-pipeline-rank 2 --decoder-first/last-pipeline-num-layers 6: stages 6/8/8/6
    code, out, err = cli(capsys, "step", "--config", str(QWEN_7B_FILE), "--gpu", "h100", "--n-gpus", "8", "--pp",
                         "4", "--interleave", "2", "--grad-accum", "8", "--json")
    assert code == 0, err
    d = json.loads(out)
    flags = d["engine_settings"]["Megatron-LM"]
    assert "--num-layers-per-virtual-pipeline-stage" not in flags  # that form refuses uneven ends
    chunks = megatron_chunks(28, flags)
    assert chunks == [[3, 3], [4, 4], [4, 4], [3, 3]]
    # priced on the stages Megatron-LM builds: parameters per GPU of the peak stage, counted on the transformers
    # module on the meta device (tests/test_s18_b95.py `_per_gpu_reference`)
    emb, layer, head, norm = _per_gpu_reference(json.loads(QWEN_7B_FILE.read_text()), tp=1)
    per_rank = [sum(c) for c in chunks]
    stage_reference = {"first": emb + per_rank[0] * layer, "second": per_rank[1] * layer,
                       "last": per_rank[-1] * layer + head + norm}
    assert d["memory_bytes"]["n_params_per_gpu"] == pytest.approx(stage_reference[d["memory_peak_stage"]], rel=1e-12)


def test_qwen_pp4_x2_compute_and_memory_follow_the_built_chunks():
    cfg = config_from_hf(json.loads(QWEN_7B_FILE.read_text()), name="qwen2.5-7b")
    layout = Layout(pp=4, dp=2, interleave=2, n_micro=8)
    built = megatron_chunks(28, layout.engine_settings(28)["Megatron-LM"])
    assert [list(chunk_layers(28, 4, 2, r)) for r in range(4)] == built
    assert compute_key(cfg, layout)[-2] == (sum(built[0]), sum(built[1]), sum(built[-1]))
    emb, layer, head, norm = _per_gpu_reference(json.loads(QWEN_7B_FILE.read_text()), tp=1)
    got = {k: sum(v) for k, v in stage_params(cfg, layout).items()}
    assert got["first"] == pytest.approx(emb + sum(built[0]) * layer, rel=1e-12)
    assert got["second"] == pytest.approx(sum(built[1]) * layer, rel=1e-12)
    assert got["last"] == pytest.approx(sum(built[-1]) * layer + head + norm, rel=1e-12)


@pytest.mark.parametrize("pp", [3, 4, 8])
@pytest.mark.parametrize("v", [2, 3, 4])
def test_an_interleaved_pipeline_is_refused_exactly_when_megatron_has_no_balanced_split(pp, v):
    # where the equal-chunk form leaves more than the embedding's and the loss's slots, a split exists exactly when
    # Megatron-LM's --num-virtual-stages-per-pipeline-rank form has one with no stage over ceil(L / (p v)) x v (the
    # brute force over every first / last count); the printed flags build the priced chunks
    uneven = 0
    for n_layer in range(pp * v - 2, 97):
        bound = math.ceil(n_layer / (pp * v)) * v
        if pp * bound - n_layer <= 2:
            continue  # the equal-chunk form (tests/test_s18_b95.py)
        best = _megatron_best_virtual_uneven(n_layer, pp, v)
        split = pipeline_split(n_layer, pp, v)
        assert (split is not None) == (best is not None and best <= bound), (n_layer, pp, v, best)
        layout = Layout(pp=pp, interleave=v, n_micro=pp)
        if split is None:
            with pytest.raises(UsageError, match="uneven end stages with every stage a multiple"):
                layout.engine_settings(n_layer)
            continue
        uneven += 1
        flags = layout.engine_settings(n_layer)["Megatron-LM"]
        assert f"--num-virtual-stages-per-pipeline-rank {v}" in flags
        built = megatron_chunks(n_layer, flags)
        assert [list(split.chunk_layers(r)) for r in range(pp)] == built
        assert max(map(sum, built)) <= bound and sum(built[-1]) <= sum(built[0])
    assert uneven > 0


def test_two_stages_take_the_uneven_interleaved_split_from_the_first_count_alone():
    # b112 (FR-C): with both counts Megatron-LM has no middle stage to take the rest (refused); with the first count
    # alone the last stage takes it: 12 layers, PP 2 x 4 (4 slots spare) build 8/4, which is what is printed
    with pytest.raises(MegatronRefuses):
        megatron_chunks(12, "--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 4 "
                            "--decoder-first-pipeline-num-layers 8 --decoder-last-pipeline-num-layers 4")
    layout = Layout(pp=2, interleave=4, n_micro=2)
    layout.check_model(get_preset("gpt2"), 1024)
    assert megatron_chunks(12, layout.engine_settings(12)["Megatron-LM"]) == [[2, 2, 2, 2], [1, 1, 1, 1]]


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
