"""Model configs and parameter counts, checked against published counts and against PyTorch.

Two independent references:
- published totals of the released GPT-2 checkpoints (all with biases, learned position embeddings
  and the LM head tied to the token embedding), as `sum(p.numel())` over HuggingFace's GPT2LMHeadModel
  gives them and nanoGPT's README lists (124M / 350M / 774M / 1558M); nanoGPT's
  ``transformer_sizing.ipynb`` gives 124,337,664 for GPT-2 small with ``bias=False``;
- ``sum(p.numel() for p in model.parameters())`` over the reference module
  ``flopscalc.train.model.GPT`` built on the meta device (shapes only, no memory).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import DomainError, UsageError
from flopscalc.model import (
    PRESETS,
    ModelConfig,
    config_for_params,
    count_params,
    get_preset,
    resolve_model,
)

# (preset, total parameters, source)
PUBLISHED_TOTALS = [
    ("gpt2", 124_439_808, "HF gpt2 checkpoint, sum(p.numel()); nanoGPT README 124M"),
    ("gpt2-medium", 354_823_168, "HF gpt2-medium checkpoint; nanoGPT README 350M"),
    ("gpt2-large", 774_030_080, "HF gpt2-large checkpoint; nanoGPT README 774M"),
    ("gpt2-xl", 1_557_611_200, "HF gpt2-xl checkpoint; nanoGPT README 1558M"),
]
# nanoGPT prints get_num_params() (total minus the position table) when it loads a checkpoint:
# "number of parameters: 123.65M" for gpt2, "1555.97M" for gpt2-xl (two decimals in millions).
NANOGPT_PRINTED_M = {"gpt2": 123.65, "gpt2-xl": 1555.97}


def build_meta(cfg: ModelConfig):
    """The reference PyTorch module on the meta device (shapes only)."""
    import torch

    from flopscalc.train.model import GPT

    with torch.device("meta"):
        return GPT(cfg)


def measured_components(model) -> dict[str, int]:
    """Parameters grouped by module-name prefix; a tied LM head is listed once (under wte)."""
    groups = {"token_embedding": 0, "position_embedding": 0, "attention": 0, "mlp": 0,
              "layernorm": 0, "lm_head": 0}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "wte":
            key = "token_embedding"
        elif parts[0] == "wpe":
            key = "position_embedding"
        elif parts[0] == "lm_head":
            key = "lm_head"
        elif parts[0] == "ln_f" or (parts[0] == "h" and parts[2] in ("ln_1", "ln_2")):
            key = "layernorm"
        elif parts[0] == "h" and parts[2] == "attn":
            key = "attention"
        elif parts[0] == "h" and parts[2] == "mlp":
            key = "mlp"
        else:
            raise AssertionError(f"unexpected parameter {name}")
        groups[key] += p.numel()
    return groups


def measured_matmul_weights(model) -> int:
    """Weights multiplied per token: every nn.Linear weight, the LM head counted even when tied."""
    from torch import nn

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


# ------------------------------------------------------------------ published counts

@pytest.mark.parametrize("name,expected,source", PUBLISHED_TOTALS)
def test_preset_totals_match_released_checkpoints(name, expected, source):
    assert count_params(PRESETS[name]).total == expected, source


def test_gpt2_small_without_biases_matches_nanogpt_notebook():
    # nanoGPT transformer_sizing.ipynb: "expected: 124337664" for GPTConfig(bias=False) at GPT-2 small shape
    assert count_params(PRESETS["gpt2"].with_(bias=False)).total == 124_337_664


@pytest.mark.parametrize("name", sorted(NANOGPT_PRINTED_M))
def test_nanogpt_convention_excludes_only_the_position_table(name):
    # nanoGPT get_num_params(non_embedding=True): n_params - wpe.numel(); printed as "%.2fM"
    pc = count_params(PRESETS[name])
    assert round(pc.without_position / 1e6, 2) == NANOGPT_PRINTED_M[name]


@pytest.mark.parametrize("name", list(PRESETS))
def test_kaplan_non_embedding_is_close_to_12_L_d_squared(name):
    # Kaplan et al. 2020, Table 1 / sec. 2.1: N ~= 2 d_model n_layer (2 d_attn + d_ff) = 12 n_layer d_model^2,
    # excluding embeddings and dropping O(n_layer d_model) bias and LayerNorm terms (< 0.5% here).
    cfg = PRESETS[name]
    approx = 12 * cfg.n_layer * cfg.n_embd**2
    assert count_params(cfg).non_embedding == pytest.approx(approx, rel=5e-3)


def test_preset_shapes_follow_the_gpt2_paper():
    # Radford et al. 2019, Table 2: layers 12/24/36/48, d_model 768/1024/1280/1600; head width 64
    shapes = {n: (c.n_layer, c.n_embd, c.head_dim, c.vocab_size, c.block_size) for n, c in PRESETS.items()}
    assert shapes == {
        "gpt2": (12, 768, 64, 50257, 1024),
        "gpt2-medium": (24, 1024, 64, 50257, 1024),
        "gpt2-large": (36, 1280, 64, 50257, 1024),
        "gpt2-xl": (48, 1600, 64, 50257, 1024),
    }


# ------------------------------------------------------------------ against PyTorch

VARIANTS = [
    *[pytest.param(PRESETS[n], id=n) for n in PRESETS],
    pytest.param(PRESETS["gpt2"].with_(bias=False), id="gpt2-nobias"),
    pytest.param(PRESETS["gpt2"].with_(tie_embeddings=False), id="gpt2-untied"),
    pytest.param(PRESETS["gpt2"].with_(pos_embedding=False), id="gpt2-nopos"),
    pytest.param(PRESETS["gpt2"].with_(mlp_ratio=8 / 3), id="gpt2-mlp8/3"),
    pytest.param(PRESETS["gpt2"].with_(vocab_size=50304), id="gpt2-vocab50304"),
    pytest.param(PRESETS["gpt2-medium"].with_(bias=False, tie_embeddings=False, pos_embedding=False,
                                              block_size=2048), id="medium-all-off"),
    pytest.param(ModelConfig(n_layer=3, n_head=5, n_embd=40, block_size=17, vocab_size=97, mlp_ratio=2.5),
                 id="odd-small"),
    pytest.param(ModelConfig(n_layer=1, n_head=1, n_embd=1, block_size=1, vocab_size=1), id="tiny"),
]


@pytest.mark.parametrize("cfg", VARIANTS)
def test_count_matches_pytorch_module(torch, cfg):
    model = build_meta(cfg)
    pc = count_params(cfg)
    assert pc.total == sum(p.numel() for p in model.parameters())
    assert dataclasses.asdict(pc) | {"matmul": 0} == measured_components(model) | {"matmul": 0}
    assert pc.matmul == measured_matmul_weights(model)


@pytest.mark.parametrize("cfg", VARIANTS)
def test_non_embedding_conventions_match_pytorch(torch, cfg):
    model = build_meta(cfg)
    named = dict(model.named_parameters())
    total = sum(p.numel() for p in named.values())
    wpe = named["wpe.weight"].numel() if "wpe.weight" in named else 0
    vocab = sum(p.numel() for n, p in named.items() if n.split(".")[0] in ("wte", "lm_head"))
    pc = count_params(cfg)
    # Kaplan et al. 2020, sec. 2.1: "excluding all vocabulary and positional embeddings"
    assert pc.non_embedding == total - wpe - vocab
    # nanoGPT model.py get_num_params(non_embedding=True): subtracts the position table only
    assert pc.without_position == total - wpe


small_configs = st.builds(
    lambda n_layer, n_head, head_dim, block, vocab, bias, tie, pos, ratio: ModelConfig(
        n_layer=n_layer, n_head=n_head, n_embd=n_head * head_dim * 2, block_size=block, vocab_size=vocab,
        bias=bias, tie_embeddings=tie, pos_embedding=pos, mlp_ratio=ratio),
    st.integers(1, 4), st.integers(1, 4), st.integers(1, 12), st.integers(1, 64), st.integers(1, 500),
    st.booleans(), st.booleans(), st.booleans(), st.sampled_from([1.0, 1.5, 2.0, 3.5, 4.0]),
)


@settings(max_examples=40, deadline=None)
@given(small_configs)
def test_random_configs_match_pytorch(torch, cfg):
    model = build_meta(cfg)
    assert count_params(cfg).total == sum(p.numel() for p in model.parameters())
    assert count_params(cfg).matmul == measured_matmul_weights(model)


# ------------------------------------------------------------------ invariants

@settings(max_examples=100, deadline=None)
@given(small_configs.filter(lambda c: c.n_layer < 4))
def test_count_is_affine_and_increasing_in_layers(cfg):
    # every block is identical, so each extra layer adds the same positive amount
    c0, c1, c2 = (count_params(cfg.with_(n_layer=cfg.n_layer + k)).total for k in range(3))
    assert c2 - c1 == c1 - c0 > 0


@settings(max_examples=100, deadline=None)
@given(small_configs)
def test_count_increases_with_width(cfg):
    wider = cfg.with_(n_embd=cfg.n_embd + 2 * cfg.n_head)  # keep n_embd divisible by n_head and ratio x n_embd integral
    assert count_params(wider).total > count_params(cfg).total
    assert count_params(wider).non_embedding > count_params(cfg).non_embedding


@settings(max_examples=100, deadline=None)
@given(small_configs)
def test_untying_adds_exactly_one_vocab_matrix(cfg):
    tied, untied = count_params(cfg.with_(tie_embeddings=True)), count_params(cfg.with_(tie_embeddings=False))
    assert untied.total - tied.total == cfg.vocab_size * cfg.n_embd
    assert untied.non_embedding == tied.non_embedding


# ------------------------------------------------------------------ shaping rule

def test_124m_gives_gpt2_small_shape():
    cfg = config_for_params(124e6)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (12, 12, 768)


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=math.log10(1e7), max_value=math.log10(2e10)))
def test_config_for_params_lands_within_two_percent(log10_target):
    target = 10**log10_target
    cfg = config_for_params(target)
    assert cfg.head_dim == 64
    assert count_params(cfg).total == pytest.approx(target, rel=0.02)  # SHAPE_PARAM_TOLERANCE
    if target >= 1e8:
        # Kaplan et al. 2020, sec. 3.1 / Fig. 5: loss within a few % for aspect ratios ~20-200;
        # the rule aims at 64 (GPT-2 small's 768 / 12)
        assert 20 <= cfg.n_embd / cfg.n_layer <= 200


@settings(max_examples=10, deadline=None)
@given(st.floats(min_value=math.log10(2e7), max_value=math.log10(1e10)))
def test_config_for_params_can_match_kaplan_non_embedding(log10_target):
    target = 10**log10_target
    cfg = config_for_params(target, count="non_embedding")
    assert count_params(cfg).non_embedding == pytest.approx(target, rel=0.02)


@pytest.mark.parametrize("target", [124e6, 1.5e9, 7e9])
def test_config_for_params_picks_the_best_aspect_among_on_target_shapes(target):
    """Exhaustive search (every depth, every head count) vs the rule's bisection: among shapes within
    2% of the target, none has a width/depth ratio closer (in log) to 64."""
    base = PRESETS["gpt2"]
    best = math.inf
    for n_layer in range(1, 257):
        for n_head in range(1, 1025):
            n = count_params(base.with_(n_layer=n_layer, n_head=n_head, n_embd=64 * n_head)).total
            if n > target * 1.02:
                break
            if n >= target / 1.02:
                best = min(best, abs(math.log(64 * n_head / n_layer / 64)))
    cfg = config_for_params(target)
    assert abs(math.log(cfg.n_embd / cfg.n_layer / 64)) == pytest.approx(best, abs=1e-12)


def test_config_for_params_keeps_the_base_settings():
    base = PRESETS["gpt2"].with_(bias=False, vocab_size=32000, tie_embeddings=False)
    cfg = config_for_params(3e8, base=base)
    assert (cfg.bias, cfg.vocab_size, cfg.tie_embeddings) == (False, 32000, False)
    assert count_params(cfg).total == pytest.approx(3e8, rel=0.02)


def test_unreachable_target_is_a_domain_error():
    # 10k parameters: even 1 layer x 64 wide has 50257 x 64 = 3.2M in the token embedding alone
    with pytest.raises(DomainError) as err:
        config_for_params(1e4)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [0, -1e6, float("nan"), float("inf")])
def test_config_for_params_rejects_non_positive_targets(bad):
    with pytest.raises(UsageError):
        config_for_params(bad)


def test_config_for_params_rejects_unknown_count_kind():
    with pytest.raises(UsageError, match="non_embedding"):
        config_for_params(1e8, count="kaplan")


# ------------------------------------------------------------------ presets and validation

@pytest.mark.parametrize("alias,key", [
    ("gpt2", "gpt2"), ("GPT2", "gpt2"), ("gpt2-small", "gpt2"), ("small", "gpt2"), ("124m", "gpt2"),
    ("124M", "gpt2"), ("gpt2_medium", "gpt2-medium"), ("medium", "gpt2-medium"), ("350M", "gpt2-medium"),
    (" gpt2-large ", "gpt2-large"), ("774m", "gpt2-large"), ("XL", "gpt2-xl"), ("1.5B", "gpt2-xl"),
    ("gpt2 xl", "gpt2-xl"),
])
def test_get_preset_aliases(alias, key):
    assert get_preset(alias) is PRESETS[key]


@pytest.mark.parametrize("typo,suggestion", [("gpt2-mediun", "gpt2-medium"), ("gpt2-xxl", "gpt2-xl"),
                                             ("gtp2", "gpt2")])
def test_get_preset_did_you_mean(typo, suggestion):
    with pytest.raises(UsageError) as err:
        get_preset(typo)
    msg = str(err.value)
    assert "\n" not in msg and repr(typo) in msg
    assert f"did you mean {suggestion}" in msg  # the nearest named first
    assert "gpt2-large" in msg  # lists what is accepted


def test_get_preset_unknown_without_a_close_match():
    with pytest.raises(UsageError) as err:
        get_preset("llama-70b")
    assert "\n" not in str(err.value) and "gpt2-xl" in str(err.value)


def test_n_embd_must_divide_by_n_head():
    with pytest.raises(UsageError) as err:
        ModelConfig(n_layer=2, n_head=5, n_embd=768)
    msg = str(err.value)
    assert "\n" not in msg and "768" in msg and "5" in msg


@pytest.mark.parametrize("field,value", [
    ("n_layer", 0), ("n_layer", -1), ("n_head", 0), ("n_embd", 0), ("vocab_size", 0), ("block_size", 0),
    ("n_layer", 1.5), ("n_layer", True), ("n_embd", "768"),
])
def test_fields_must_be_positive_integers(field, value):
    kwargs = {"n_layer": 2, "n_head": 2, "n_embd": 8} | {field: value}
    with pytest.raises(UsageError, match=field):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("ratio", [0.0, -4.0, 0.3])  # 0.3 x 8 = 2.4 is not a whole number of units
def test_mlp_ratio_must_give_a_whole_positive_width(ratio):
    with pytest.raises(UsageError, match="mlp_ratio"):
        ModelConfig(n_layer=2, n_head=2, n_embd=8, mlp_ratio=ratio)


def test_config_is_frozen_and_with_revalidates():
    cfg = PRESETS["gpt2"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_layer = 3  # type: ignore[misc]
    with pytest.raises(UsageError):
        cfg.with_(n_head=7)  # 768 / 7 is not whole
    assert cfg.with_(n_layer=6).n_layer == 6 and cfg.n_layer == 12


def test_resolve_model_needs_exactly_one_way():
    assert resolve_model("gpt2") is PRESETS["gpt2"]
    assert resolve_model(n_layer=2, n_head=2, n_embd=128).n_embd == 128
    assert count_params(resolve_model(n_params=3.5e8)).total == pytest.approx(3.5e8, rel=0.02)
    with pytest.raises(UsageError):
        resolve_model("gpt2", n_params=1e8)
    with pytest.raises(UsageError):
        resolve_model()
    with pytest.raises(UsageError, match="all of"):
        resolve_model(n_layer=2, n_head=2)
