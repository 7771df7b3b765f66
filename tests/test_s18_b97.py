"""s18 b97: the plan's compute-optimal point at long sequences; the preset label; past-context warnings.

References used here, written out in the tests rather than taken from the code under test:
- Hoffmann et al. 2022, eq. 4: the minimum of E + A/N^alpha + B/D^beta along C = 6ND is
  N = G (C/6)^a, D = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta).
- PaLM (Chowdhery et al. 2022) App. B: model FLOPs per token 6N + 12 L H Q T (dense attention).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flopscalc.cli import run
from flopscalc.hardware import get_gpu
from flopscalc.planner import plan
from flopscalc.scaling import BUILTIN_LAWS, optimal, optimal_data_constrained, optimal_per_token

DAY = 86400.0
CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"  # the published config.json files


def _eq4(law, c_flops: float) -> tuple[float, float]:
    """Hoffmann et al. 2022 eq. 4, from the law's constants."""
    f = law.loss_form
    g = (f.alpha * f.A / (f.beta * f.B)) ** (1 / (f.alpha + f.beta))
    a, b = f.beta / (f.alpha + f.beta), f.alpha / (f.alpha + f.beta)
    return g * (c_flops / 6) ** a, (c_flops / 6) ** b / g


# ------------------------------------------------------------------ the solver: limits with closed forms


@pytest.mark.parametrize("name", ["besiroglu2024", "chinchilla"])
@pytest.mark.parametrize("c", [1e19, 1e22, 1e25])
def test_with_six_n_flops_per_token_the_optimum_is_hoffmann_eq4(name, c):
    # no attention FLOPs: D x 6N = C is the law's own constraint, so its closed form
    law = BUILTIN_LAWS[name]
    a = optimal_per_token(law, c, lambda n: 6 * n)
    n4, d4 = _eq4(law, c)
    assert a.n_params == pytest.approx(n4, rel=1e-6) and a.n_tokens == pytest.approx(d4, rel=1e-6)
    assert a.c_flops == c and a.law_flops == pytest.approx(c, rel=1e-12)


@pytest.mark.parametrize("k", [5.5, 9.0, 38.0])
def test_a_constant_flops_per_parameter_is_eq4_at_the_budget_in_6nd_terms(k):
    # D = C / (kN) = (6C/k) / (6N): the optimum is eq. 4's at 6C/k, and 6ND is 6C/k
    law, c = BUILTIN_LAWS["besiroglu2024"], 2.11e22
    a = optimal_per_token(law, c, lambda n: k * n)
    n4, d4 = _eq4(law, 6 * c / k)
    assert a.n_params == pytest.approx(n4, rel=1e-6) and a.n_tokens == pytest.approx(d4, rel=1e-6)
    assert a.law_flops == pytest.approx(6 * c / k, rel=1e-9)
    assert a.tokens_per_param == pytest.approx(d4 / n4, rel=1e-6)  # the law's own ratio at its C


def test_with_six_n_and_a_data_limit_it_is_the_data_constrained_optimum():
    law, c, u = BUILTIN_LAWS["besiroglu2024"], 1e22, 50e9
    a = optimal_per_token(law, c, lambda n: 6 * n, u)
    ref = optimal_data_constrained(law, c, u)  # Muennighoff et al. 2023 eq. 7 along C = 6ND
    assert a.n_params == pytest.approx(ref.n_params, rel=1e-5) and a.loss == pytest.approx(ref.loss, abs=1e-12)


def test_an_allocation_rule_without_a_loss_gets_its_fixed_point():
    law = BUILTIN_LAWS["kaplan2020"]
    a = optimal_per_token(law, 1e21, lambda n: 6 * n)
    assert a.n_params == pytest.approx(optimal(law, 1e21).n_params, rel=1e-9)
    # with twice the FLOPs per token the budget is half in 6ND terms: N_opt(C/2)
    b = optimal_per_token(law, 1e21, lambda n: 12 * n)
    assert b.n_params == pytest.approx(optimal(law, 0.5e21).n_params, rel=1e-6)


# ------------------------------------------------------------------ the plan at 131,072 tokens (r10 #1)


@pytest.fixture(scope="module")
def long_plan():
    # r10 #1 with a FLOP budget, so every option spends the same model FLOPs and lies on the budget's constraint
    return plan(get_gpu("h100"), n_gpus=16, flops=2.1e22, family="llama", seq_len=131072)


def test_the_long_sequence_optimum_is_a_point_the_budget_buys(long_plan):
    a, law = long_plan.allocation, long_plan.law
    assert a.c_flops == pytest.approx(2.1e22, rel=1e-12)
    # 6ND is what the law counts; attention (PaLM App. B's 12 L H Q T at T = 131,072) is most of the model FLOPs,
    # so the optimum's 6ND is well below the budget (eq. 4 on the model FLOPs made them equal: 13.3B x 265B)
    assert 6 * a.n_params * a.n_tokens == pytest.approx(a.law_flops, rel=1e-12)
    assert a.law_flops < 0.5 * a.c_flops
    # its tokens per parameter are the law's own at the budget in its convention (eq. 4), not 4 per parameter
    n4, d4 = _eq4(law, a.law_flops)
    assert a.tokens_per_param == pytest.approx(d4 / n4, rel=0.05)
    # the options around it, each a shape on the same FLOPs: the optimum's loss is theirs at its best, within the
    # 2^(1/2) spacing of the shapes (the header said 2.101 where the best option reached 2.20)
    shaped = [o.loss for o in long_plan.options if o.fits and not o.model.name and o.loss is not None]
    assert a.loss <= min(shaped) + 1e-9
    assert min(shaped) - a.loss < 0.005
    # the options are centred on it: the shape nearest it is within the spacing
    near = min(long_plan.options, key=lambda o: abs(math.log(o.n_params / a.n_params)))
    assert abs(math.log(near.n_params / a.n_params)) < math.log(2) / 2


def test_the_optimum_flops_per_token_follow_palm_appendix_b(long_plan):
    # the FLOPs per token the optimum was bought at are 6N + 12 L H Q T of a Llama-3-shaped model of its size,
    # up to what PaLM's count leaves out: the untied embedding table counted in N but computing nothing, and GQA's
    # narrower K, V (8 of 32 heads) -- together under 10% of 6N
    a = long_plan.allocation
    near = min((o for o in long_plan.options if not o.model.name), key=lambda o: abs(math.log(o.n_params / a.n_params)))
    m = near.model
    palm_ratio = (6 * near.n_params + 12 * m.n_layer * m.n_head * m.head_dim * 131072) / near.n_params
    assert a.c_flops / a.n_tokens / a.n_params == pytest.approx(palm_ratio, rel=0.1)


def test_the_header_says_the_law_counts_six_nd(long_plan):
    from rich.console import Console

    from flopscalc.report.plan import plan_report
    from flopscalc.report.plan_data import plan_dict

    console = Console(width=200, record=True)
    console.print(plan_report(long_plan))
    text = console.export_text()
    assert "as the law counts" in text and "C = 6ND" in text
    d = plan_dict(long_plan)["compute_optimal"]
    assert d["law_flops"] == pytest.approx(long_plan.allocation.law_flops)


def test_the_main_job_optimum_moves_only_a_little():
    # at 1,024 tokens attention is T / 6d of 6N, a few percent for d ~ 2,000: the optimum stays near eq. 4's
    p = plan(get_gpu("4070ti"), 365 * DAY)
    a = p.allocation
    n4, _ = _eq4(p.law, a.c_flops)
    assert 0.9 < a.n_params / n4 < 1.0


# ------------------------------------------------------------------ the preset a config.json is (r10 #5)


@pytest.mark.parametrize(("config", "preset"), [("qwen2.5-7b", "qwen2.5-7b"), ("mixtral-8x7b-v0.1", "mixtral-8x7b"),
                                              ("llama-3.1-8b", "llama-3.1-8b")])  # not llama-3-8b, of one shape
def test_a_config_json_of_a_preset_is_named_as_that_preset(capsys, config, preset):
    # the configs hold the published models' own config.json (data/configs/README.md); the presets are built from the
    # papers: the same model when the counts agree exactly (Qwen2.5-7B: 7,615,616,512 parameters)
    from flopscalc.hf_config import read_hf_config
    from flopscalc.model import ALL_PRESETS, count_params

    cfg = read_hf_config(CONFIGS / f"{config}.json")
    assert count_params(cfg).total == count_params(ALL_PRESETS[preset]).total
    data = _plan_json(capsys, "--config", str(CONFIGS / f"{config}.json"), "--gpu", "h100", "--n-gpus", "8", "--days",
                      "30", "--seq", "4096")
    assert data["recommended"]["nearest_preset"] == preset
    assert run(["plan", "--config", str(CONFIGS / f"{config}.json"), "--gpu", "h100", "--n-gpus", "8", "--days", "30",
                "--seq", "4096"]) == 0
    assert f"the preset {preset}" in capsys.readouterr().out


def test_a_model_outside_every_family_is_compared_with_every_preset_of_its_kind():
    from flopscalc.hf_config import read_hf_config
    from flopscalc.model import ALL_PRESETS
    from flopscalc.planner.options import nearest_preset

    gemma = read_hf_config(CONFIGS / "gemma-7b.json")  # GeGLU, 256-wide heads: no preset of its architecture
    name = nearest_preset(8.5e9, {}, gemma)
    assert name is not None and not ALL_PRESETS[name].is_moe
    assert 0.5 <= _total(ALL_PRESETS[name]) / 8.5e9 <= 2
    # a shaped model still gets its family's nearest only, and says which presets were searched when none is near
    assert nearest_preset(20e9, {"gpt2-xl": ALL_PRESETS["gpt2-xl"]}) is None


def test_the_label_says_which_presets_were_searched(capsys):
    # 8 H100s for 30 days shape a GPT-2 model of several billion parameters, past 2x of GPT-2's largest preset
    # (gpt2-xl, 1.56B): only the family's presets were searched, and the label says so
    import json

    assert run(["plan", "--gpu", "h100", "--n-gpus", "8", "--days", "30", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["recommended"]
    assert r["n_params"] > 2 * 1_557_611_200 and r["nearest_preset"] is None
    assert run(["plan", "--gpu", "h100", "--n-gpus", "8", "--days", "30"]) == 0
    assert "no GPT-2 preset within 2x its size" in capsys.readouterr().out


def _total(cfg):
    from flopscalc.model import count_params

    return count_params(cfg).total


# ------------------------------------------------------------------ past a RoPE context (r10 #4)


def _plan_json(capsys, *args):
    import json

    assert run(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


PAST = "8,192 tokens per sequence is past the trained context (4,096)"


@pytest.mark.parametrize("args", [
    ("step", "--model", "llama-2-7b", "--seq", "8192", "--gpu", "h100"),
    ("flops", "--model", "llama-2-7b", "--seq", "8192", "--tokens", "1B"),
    ("plan", "--model", "llama-2-7b", "--seq", "8192", "--gpu", "h100", "--days", "10"),
    ("step", "--model", "llama-2-7b", "--seq", "8192", "--gpu", "h100", "--n-gpus", "16", "--tp", "2"),
])
def test_past_the_trained_context_step_flops_and_plan_warn_in_text_and_json(capsys, args):
    # Llama 2's context is 4,096 (Touvron et al. 2023, Table 1); RoPE takes 8,192 but the model never read that far
    import json

    assert run(list(args)) == 0
    assert PAST in capsys.readouterr().out
    assert run([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [w for w in d["warnings"] if w.startswith(PAST)]


@pytest.mark.parametrize("args", [
    ("step", "--model", "llama-2-7b", "--seq", "4096", "--gpu", "h100"),
    ("flops", "--model", "llama-2-7b", "--seq", "4096", "--tokens", "1B"),
    ("plan", "--model", "llama-2-7b", "--seq", "4096", "--gpu", "h100", "--days", "10"),
])
def test_within_the_trained_context_no_warning(capsys, args):
    import json

    assert run([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert not [w for w in d.get("warnings", ()) if "past the trained context" in w]
