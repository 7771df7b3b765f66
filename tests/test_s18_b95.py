"""Pipeline stages hold the model's layers exactly as the emitted Megatron-LM settings build them (r10 #2).

The reference is Megatron-LM's own rule, re-implemented below from its source (`megatron_chunks`): the flags the
layout prints are parsed and fed to it, and every stage the engine prices (its memory and its compute) must hold
what Megatron-LM would build, the stages summing to the model's layers. Before the fix, 28 layers over PP 8 were
priced as 3, 4, ..., 4, 3 = 30 layers while the printed `--decoder-first/last-pipeline-num-layers 2` build 2 on
each end; Mixtral's 56 and Nemo's 40 layers over PP 16 printed no split at all (Megatron-LM refuses them) and were
priced anyway.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest
from conftest import cli, refused

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.hf_config import config_from_hf
from flopscalc.layout import Layout, cluster_for
from flopscalc.layout.memory import stage_params
from flopscalc.layout.search import search_layouts
from flopscalc.layout.spec import pipeline_split
from flopscalc.layout.stage_cost import compute_key, stage_compute_s
from flopscalc.model import count_params

QWEN_7B = json.loads((Path(__file__).resolve().parents[1] / "data" / "configs" / "qwen2.5-7b.json").read_text())
# the reviewer's config.json files (r10), the fields transformers reads
MIXTRAL_8X22B = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_act": "silu",
                 "hidden_size": 6144, "intermediate_size": 16384, "max_position_embeddings": 65536,
                 "num_attention_heads": 48, "num_experts_per_tok": 2, "num_hidden_layers": 56,
                 "num_key_value_heads": 8, "num_local_experts": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000,
                 "sliding_window": None, "tie_word_embeddings": False, "vocab_size": 32000}
MISTRAL_NEMO_12B = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "head_dim": 128,
                    "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 14336,
                    "max_position_embeddings": 1024000, "num_attention_heads": 32, "num_hidden_layers": 40,
                    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
                    "sliding_window": None, "tie_word_embeddings": False, "vocab_size": 131072}


class MegatronRefuses(ValueError):
    """Megatron-LM raises at start-up for these settings."""


def _flag(settings: str, name: str) -> int | None:
    m = re.search(rf"--{name} (\d+)", settings)
    return int(m.group(1)) if m else None


def megatron_chunks(n_layer: int, settings: str) -> list[list[int]]:
    """Layers Megatron-LM builds in each chunk of each pipeline rank for a command line ``settings``, or
    `MegatronRefuses`. Re-implemented from Megatron-LM (core 0.12-0.14):

    - ``megatron/training/arguments.py`` ``validate_args``: with ``--num-layers-per-virtual-pipeline-stage`` the
      uneven flags are refused ('please use --num-virtual-stages-per-pipeline-rank ...'); that flag sets v
      directly (virtual_pipeline_model_parallel_size) and may not be given with the other ('No more than one of
      ...'), (num_layers [+1 embedding]
      [+1 loss]) % pp == 0 and (that / pp) % layers-per-virtual-stage == 0; without interleaving and without the
      uneven flags, 'Number of layers should be divisible by the pipeline-model-parallel size' on the same sum;
    - ``megatron/core/transformer/transformer_config.py`` ``__post_init__``: the uneven first/last counts must be
      > 0, may not be combined with ``account_for_embedding/loss_in_pipeline_split``, and 'number of layers at
      middle stage ... must be divisible by the middle pipeline model parallel size'; interleaved (v set), 'number
      of layers at first/last stage ... must be divisible by virtual pipeline parallel degree' and 'number of layers
      on each middle pipeline rank ... must be divisible by virtual pipeline parallel degree';
    - ``megatron/core/transformer/transformer_block.py`` ``get_num_layers_to_build``: uneven: the first / last stage
      build their counts, the others (L - first - last) / (stages left); else (L + slots) / pp per stage, / vp per
      chunk, and one fewer on the first chunk of the first stage (embedding) and the last chunk of the last (loss);
    - ``megatron/core/transformer/transformer_layer.py`` ``get_transformer_layer_offset``, interleaved uneven: per
      chunk, first // v on the first stage, (middle // v) // (middle stages) on each middle one, last // v on the last.
    """
    pp = _flag(settings, "pipeline-model-parallel-size") or 1
    per_virtual = _flag(settings, "num-layers-per-virtual-pipeline-stage")
    first = _flag(settings, "decoder-first-pipeline-num-layers")
    last = _flag(settings, "decoder-last-pipeline-num-layers")
    emb = "--account-for-embedding-in-pipeline-split" in settings
    loss = "--account-for-loss-in-pipeline-split" in settings
    stages_per_rank = _flag(settings, "num-virtual-stages-per-pipeline-rank")
    if per_virtual is not None and stages_per_rank is not None:
        raise MegatronRefuses("No more than one of --num-layers-per-virtual-pipeline-stage, "
                              "--num-virtual-stages-per-pipeline-rank")
    uneven = first is not None or last is not None
    if uneven and (emb or loss):
        raise MegatronRefuses("uneven stages with account-for-embedding/loss")
    if uneven:
        if per_virtual is not None:
            raise MegatronRefuses("please use --num-virtual-stages-per-pipeline-rank with uneven pipelines")
        v = stages_per_rank or 1
        left, stages_left = n_layer, pp
        for n in (first, last):
            if n is not None:
                if n <= 0:
                    raise MegatronRefuses("an uneven end stage must be larger than 0")
                if n % v:
                    raise MegatronRefuses("an uneven end stage must be divisible by virtual pipeline parallel degree")
                left, stages_left = left - n, stages_left - 1
        if stages_left == 0:  # both ends of PP 2 given: Megatron-LM takes num_layers % 0 here (ZeroDivisionError)
            raise MegatronRefuses("no middle stage: the middle layers are divided by zero stages")
        if stages_left and left % stages_left:
            raise MegatronRefuses("middle layers must be divisible by the middle pipeline stages")
        middle = left // stages_left if stages_left else 0
        if middle % v:
            raise MegatronRefuses("each middle rank's layers must be divisible by virtual pipeline parallel degree")
        per_rank = [middle] * pp
        if first is not None:
            per_rank[0] = first
        if last is not None:
            per_rank[-1] = last
        return [[n // v] * v for n in per_rank]
    total = n_layer + emb + loss
    if total % pp:
        raise MegatronRefuses("Number of layers should be divisible by the pipeline-model-parallel size")
    per_stage = total // pp
    vp = stages_per_rank or 1
    if per_stage % vp:
        raise MegatronRefuses("layers per stage must be divisible by the virtual stages per rank")
    if per_virtual is not None:
        if per_stage % per_virtual:
            raise MegatronRefuses("layers per stage must be divisible by layers per virtual stage")
        vp = per_stage // per_virtual
    chunks = [[per_stage // vp] * vp for _ in range(pp)]
    if emb:
        chunks[0][0] -= 1
    if loss:
        chunks[-1][-1] -= 1
    if any(n < 0 for c in chunks for n in c):
        raise MegatronRefuses("Not enough layers in the first/last virtual pipeline stage")
    return chunks


def fewest_on_busiest_stage(n_layer: int, settings) -> int | None:
    """The fewest layers on the busiest stage over the Megatron-LM ``settings`` strings given (each run through
    `megatron_chunks`; those it refuses skipped, every built split checked to hold ``n_layer``); None if it refuses
    them all. The brute-force reference of the uneven-pipeline tests (test_s18_b106, test_s18_b112)."""
    best = None
    for s in settings:
        try:
            chunks = megatron_chunks(n_layer, s)
        except MegatronRefuses:
            continue
        assert sum(map(sum, chunks)) == n_layer
        most = max(map(sum, chunks))
        best = most if best is None else min(best, most)
    return best


def megatron_most_balanced(n_layer: int, pp: int) -> int | None:
    """The fewest layers on the busiest stage over every setting Megatron-LM takes without interleaving (the
    account-for flags, and every first/last count), found by trying them all; None if it takes none."""
    best = None
    options = [None, *range(1, n_layer + 1)]
    for emb, loss in itertools.product((False, True), repeat=2):
        flags = ("--account-for-embedding-in-pipeline-split " if emb else "") + (
            "--account-for-loss-in-pipeline-split" if loss else "")
        settings = f"--pipeline-model-parallel-size {pp} {flags}"
        for first, last in itertools.product(options, options):
            if (first is not None or last is not None) and (emb or loss):
                continue
            s = settings + (f" --decoder-first-pipeline-num-layers {first}" if first else "") + (
                f" --decoder-last-pipeline-num-layers {last}" if last else "")
            try:
                most = max(sum(c) for c in megatron_chunks(n_layer, s))
            except MegatronRefuses:
                continue
            best = most if best is None else min(best, most)
    return best


@pytest.mark.parametrize("pp", [2, 4, 8, 16])
@pytest.mark.parametrize("interleave", [1, 2, 4])
def test_stages_are_what_megatron_builds_for_the_printed_flags(pp, interleave):
    for n_layer in range(max(1, pp * interleave - 2), 130):
        layout = Layout(pp=pp, interleave=interleave, n_micro=pp)
        split = pipeline_split(n_layer, pp, interleave)
        if split is None:
            with pytest.raises(UsageError):
                layout.engine_settings(n_layer)
            continue
        want = megatron_chunks(n_layer, layout.engine_settings(n_layer)["Megatron-LM"])
        got = [list(split.chunk_layers(r)) for r in range(pp)]
        assert got == want, (n_layer, pp, interleave)
        assert sum(map(sum, got)) == n_layer
        assert max(map(sum, got)) <= math.ceil(n_layer / (pp * interleave)) * interleave


@pytest.mark.parametrize("pp", [2, 4, 8, 16])
def test_a_pipeline_is_refused_exactly_when_megatron_has_no_balanced_split(pp):
    # accepted iff some setting Megatron-LM takes puts at most ceil(L / p) layers on every stage (the brute force
    # tries every account-for flag and every first/last count)
    for n_layer in range(pp, 100):
        best = megatron_most_balanced(n_layer, pp)
        balanced = best is not None and best <= math.ceil(n_layer / pp)
        assert (pipeline_split(n_layer, pp, 1) is not None) == balanced, (n_layer, pp, best)


def _per_gpu_reference(data: dict, tp: int) -> tuple[float, float, float, float]:
    """(embedding, one layer, LM head, final norm) parameters on one GPU of Megatron's tensor parallelism, counted on
    the module transformers builds on the meta device: linear weights and the QKV biases split by t (column
    parallel), the vocabulary split by t (VocabParallelEmbedding), norms replicated (Shoeybi et al. 2019 sec. 3)."""
    torch = pytest.importorskip("torch")
    hf = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = hf.AutoModelForCausalLM.from_config(hf.AutoConfig.for_model(**data))

    def per_gpu(module) -> float:
        return sum(p.numel() / (tp if p.dim() == 2 or "_proj.bias" in name else 1)
                   for name, p in module.named_parameters())

    inner = model.model
    return (per_gpu(inner.embed_tokens), per_gpu(inner.layers[0]), per_gpu(model.lm_head), per_gpu(inner.norm))


def test_qwen_7b_pp8_stage_parameters_follow_the_printed_split():
    # 28 layers over PP 8: the printed --decoder-first/last-pipeline-num-layers 2 build 2, 4 x 6, 2 (the priced
    # first stage held 3 layers before, 622.1M parameters per GPU at TP 2; now 2: 505.6M)
    cfg = config_from_hf(QWEN_7B, name="qwen2.5-7b")
    layout = Layout(tp=2, pp=8, dp=4, n_micro=16)
    per_rank = [sum(c) for c in megatron_chunks(cfg.n_layer, layout.engine_settings(cfg.n_layer)["Megatron-LM"])]
    assert per_rank == [2, 4, 4, 4, 4, 4, 4, 2]
    emb, layer, head, norm = _per_gpu_reference(QWEN_7B, tp=2)
    got = {k: sum(v) for k, v in stage_params(cfg, layout).items()}
    assert got["first"] == pytest.approx(emb + per_rank[0] * layer, rel=1e-12)
    assert got["second"] == pytest.approx(per_rank[1] * layer, rel=1e-12)
    assert got["last"] == pytest.approx(per_rank[-1] * layer + head + norm, rel=1e-12)
    # the compute is priced on the same stages
    assert compute_key(cfg, layout)[-2] == (per_rank[0], per_rank[1], per_rank[-1])


def test_qwen_7b_pp8_busiest_stage_is_the_slowest_of_the_built_stages():
    # Megatron-LM builds 2 + embedding, 4, ..., 4, 2 + LM head and loss: the busiest stage's compute must be the
    # slower of a 2-layer end stage with the LM head (every stage of PP 14 holds 2 layers, its busiest is the last)
    # and a 4-layer stage of layers only (the middle of PP 7); before, the ends were priced with 3 layers
    cfg = config_from_hf(QWEN_7B, name="qwen2.5-7b")
    gpu = get_gpu("h100")
    busiest, middle = stage_compute_s(cfg, Layout(tp=2, pp=8, dp=4, n_micro=16), gpu, 4096)
    two_and_head, _ = stage_compute_s(cfg, Layout(tp=2, pp=14, dp=1, n_micro=16), gpu, 4096)
    _, four = stage_compute_s(cfg, Layout(tp=2, pp=7, dp=4, n_micro=16), gpu, 4096)
    assert middle == four
    assert busiest == max(two_and_head, four)


@pytest.mark.parametrize("n_layer, pp", [(28, 8), (56, 16), (40, 16), (126, 16), (80, 16), (61, 8)])
def test_priced_stage_layers_sum_to_the_model(n_layer, pp):
    cfg = config_from_hf(QWEN_7B, name="qwen2.5-7b").with_(n_layer=n_layer)
    layout = Layout(tp=1, pp=pp, dp=1, n_micro=pp)
    split = pipeline_split(n_layer, pp, 1)
    if split is None:
        with pytest.raises(UsageError, match=rf"--pp {pp} as Megatron-LM"):
            layout.check_model(cfg, 4096)
        return
    layout.check_model(cfg, 4096)
    stages = [split.stage_layers(r) for r in range(pp)]
    assert sum(stages) == n_layer == sum(map(sum, megatron_chunks(n_layer, layout.engine_settings(n_layer)[
        "Megatron-LM"])))
    per_layer = count_params(cfg.with_(n_layer=2)).total - count_params(cfg.with_(n_layer=1)).total
    got = stage_params(cfg, layout)
    assert got["second"][0] == pytest.approx(stages[1] * per_layer, rel=1e-12)


def _write(tmp_path, data: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_step_qwen_pp8_prints_and_prices_the_same_split(capsys, tmp_path):
    code, out, err = cli(capsys, "step", "--config", _write(tmp_path, QWEN_7B), "--gpu", "h100", "--n-gpus", "64",
                         "--pp", "8", "--tp", "2", "--seq", "4096", "--grad-accum", "16", "--json")
    assert code == 0, err
    d = json.loads(out)
    per_rank = [sum(c) for c in megatron_chunks(28, d["engine_settings"]["Megatron-LM"])]
    assert sum(per_rank) == 28
    emb, layer, head, norm = _per_gpu_reference(QWEN_7B, tp=2)
    stage_reference = {"first": emb + per_rank[0] * layer, "second": per_rank[1] * layer,
                       "last": per_rank[-1] * layer + head + norm}
    assert d["memory_bytes"]["n_params_per_gpu"] == pytest.approx(stage_reference[d["memory_peak_stage"]], rel=1e-12)


@pytest.mark.parametrize("data, argv, works", [
    (MIXTRAL_8X22B, ["--n-gpus", "512", "--pp", "16", "--tp", "4", "--ep", "2", "--grad-accum", "32",
                     "--sequence-parallel"], [2, 4, 8]),
    (MISTRAL_NEMO_12B, ["--n-gpus", "512", "--pp", "16", "--tp", "2", "--grad-accum", "32"], [2, 4, 8]),
])
def test_step_refuses_a_pipeline_megatron_cannot_split(capsys, tmp_path, data, argv, works):
    line = refused(capsys, "step", "--config", _write(tmp_path, data), "--gpu", "h100", "--seq", "4096", *argv)
    n_layer = data["num_hidden_layers"]
    assert f"{n_layer} layers do not split over --pp 16" in line
    named = [int(p) for p in re.search(r"--pp ([\d, ]+) would", line).group(1).split(", ")]
    assert named == works
    # each degree named has a balanced split Megatron-LM takes, and 16 has none (the brute force)
    for p in named:
        assert megatron_most_balanced(n_layer, p) <= math.ceil(n_layer / p)
    best = megatron_most_balanced(n_layer, 16)
    assert best is None or best > math.ceil(n_layer / 16)


def test_the_search_skips_pipelines_megatron_cannot_split():
    # 40 layers on 16 GPUs: PP 16 has no split (Nemo's case); the search must count it as not splitting, never
    # price it, and every layout it ranks must price the stages Megatron-LM builds for its printed flags
    cfg = config_from_hf({**MISTRAL_NEMO_12B, "hidden_size": 256, "head_dim": 32, "num_attention_heads": 8,
                          "intermediate_size": 512, "vocab_size": 1024}, name="tiny-40")
    result = search_layouts(cfg, cluster_for(get_gpu("h100"), 16), 1024, 64, top=10**6, prune=False)
    assert result.rejected.get("model does not split", 0) > 0
    assert all(r.layout.pp != 16 for r in result.ranked)
    assert {r.layout.pp for r in result.ranked} >= {2, 4, 8}
    for r in result.ranked:
        lay = r.layout
        built = [sum(c) for c in megatron_chunks(40, lay.engine_settings(40)["Megatron-LM"])]
        assert sum(built) == 40
        assert compute_key(cfg, lay)[-2] == (built[0], built[min(1, lay.pp - 1)], built[-1])
