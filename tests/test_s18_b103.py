"""Review r13, helper b103: saved-law files, `step --search` and option bounds the reviewer found unchecked.

Each test failed before its fix: a copied law file answered under the name written inside it (`--law best` printed
"mylaw: ...", a file whose inner name was "chinchilla" printed "chinchilla: ... 2.7869" where the built-in gives
2.5800); a law file without `loss_form` loaded as an allocation-only law (exit 1, naming the inner name, not the
file); `scaling optimal --inference-tokens 0` was accepted while `plan` refused it; `step --search` dropped --zero,
--recompute, and --micro-batch/--grad-accum beside --global-batch unseen; `finetune --epochs 1e308` printed a nan
time; `flops --n-gpus 1e20` ran. Every case drives the real app in-process and checks the contract: the exit code and
ONE line starting "flopscalc: error:" (conftest `refused`), and that the bound itself, or the option without the
conflicting one, is still accepted.

The law files are the reviewer's (/tmp/r13/home/laws/mylaw.json, a `scaling fit --save mylaw` on 10 runs), written
here as a dict. The reference for their predicted loss is the parametric form itself, L = E + A/N^alpha + B/D^beta
[Hoffmann et al. 2022, eq. 2], evaluated on the file's constants; the built-in's is the same form on the published
constants [Hoffmann et al. 2022, eq. 10 / App. D.2: E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28].
"""

from __future__ import annotations

import json

import pytest
from conftest import SAVED_LAW_R13 as MYLAW
from conftest import cli, cli_json, refused

from flopscalc.memory.settings import MAX_N_GPUS
from flopscalc.units import MAX_N_TOKENS

N, D = 1e9, 20e9  # the reviewer's --params 1B --tokens 20B
CHINCHILLA_EQ10 = (1.69, 406.4, 410.7, 0.34, 0.28)  # Hoffmann et al. 2022, eq. 10


def hoffmann_loss(e: float, a: float, b: float, alpha: float, beta: float, n: float = N, d: float = D) -> float:
    return e + a / n**alpha + b / d**beta  # Hoffmann et al. 2022, eq. 2


def file_loss(d: dict) -> float:
    f = d["loss_form"]
    return hoffmann_loss(f["E"], f["A"], f["B"], f["alpha"], f["beta"])


@pytest.fixture
def laws(tmp_path, monkeypatch):
    """The laws folder of a fresh FLOPSCALC_HOME, and a writer of law files in it."""
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    folder = tmp_path / "laws"
    folder.mkdir()

    def write(file_name: str, d: dict):
        path = folder / file_name
        path.write_text(json.dumps(d, indent=2) + "\n")
        return path

    return write


def listed(capsys) -> list[str]:
    return [x["name"] for x in cli_json(capsys, "scaling", "laws")["laws"]]


# ------------------------------------------------------------------ 1. a saved law is named by its file


def test_a_copied_law_file_answers_under_its_own_name(capsys, laws):
    laws("mylaw.json", MYLAW)
    laws("best.json", MYLAW)  # cp mylaw.json best.json
    d = cli_json(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", "--law", "best")
    assert d["law"] == "best"  # was "mylaw"
    assert d["loss"] == pytest.approx(file_loss(MYLAW), rel=1e-12)
    names = listed(capsys)
    assert names.count("best") == 1 and names.count("mylaw") == 1  # was "mylaw" twice, no "best"


def test_a_file_whose_inner_name_is_a_builtin_cannot_pass_for_it(capsys, laws):
    laws("mine.json", {**MYLAW, "name": "chinchilla"})
    mine = cli_json(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", "--law", "mine")
    builtin = cli_json(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", "--law", "chinchilla")
    assert mine["law"] == "mine"  # was "chinchilla", with the file's 2.7869
    assert mine["loss"] == pytest.approx(file_loss(MYLAW), rel=1e-12)
    assert builtin["law"] == "chinchilla"
    assert builtin["loss"] == pytest.approx(hoffmann_loss(*CHINCHILLA_EQ10), rel=1e-12)  # 2.5800
    assert abs(mine["loss"] - builtin["loss"]) > 0.2  # the two laws are told apart: 2.787 vs 2.580
    assert cli_json(capsys, "plan", "--gpu", "4070ti", "--days", "365", "--law", "mine")["law"]["name"] == "mine"
    names = listed(capsys)
    assert names.count("chinchilla") == 1 and names.count("mine") == 1  # "chinchilla" was listed twice


def test_a_file_named_as_a_builtin_is_refused_and_the_builtin_kept(capsys, laws):
    path = laws("Chinchilla-A1.json", MYLAW)  # an alias-free built-in name, in another case
    code, out, err = cli(capsys, "scaling", "laws", "--json")
    assert code == 0
    warning = [ln for ln in err.splitlines() if ln.startswith("flopscalc: warning:")]
    assert len(warning) == 1 and str(path) in warning[0] and "built-in" in warning[0] and "rename" in warning[0]
    names = [x["name"] for x in json.loads(out)["laws"]]
    assert names.count("chinchilla-a1") == 1 and "mylaw" not in names  # was listed as "mylaw" (its inner name)
    d = cli_json(capsys, "scaling", "optimal", "--flops", "1e21", "--law", "chinchilla-a1")
    assert d["law"] == "chinchilla-a1" and d["law_source"].startswith("Hoffmann")  # the built-in, not the file


# ------------------------------------------------------------------ 2. loss_form and allocation are required


@pytest.mark.parametrize("field", ["loss_form", "allocation"])
def test_a_law_file_without_loss_form_or_allocation_is_refused_naming_the_file(capsys, laws, field):
    d = {k: v for k, v in MYLAW.items() if k != field}
    path = laws("lnoform.json", d)
    line = refused(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", "--law", "lnoform")
    assert str(path) in line and f"field {field} is missing" in line  # was exit 1 "law 'mylaw' is an allocation rule"


def test_an_explicit_null_loss_form_is_an_allocation_only_law_named_by_its_file(capsys, laws):
    laws("rule.json", {**MYLAW, "loss_form": None, "allocation": {"k_n": 0.1, "a": 0.5}})
    line = refused(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", "--law", "rule", code=1)
    assert "'rule'" in line and "allocation rule" in line and "mylaw" not in line


# ------------------------------------------------------------------ 3. --inference-tokens 0


def test_scaling_optimal_refuses_zero_inference_tokens_as_plan_does(capsys):
    line = refused(capsys, "scaling", "optimal", "--flops", "1e21", "--inference-tokens", "0")
    assert "--inference-tokens" in line and "positive" in line
    refused(capsys, "plan", "--gpu", "4070ti", "--days", "365", "--inference-tokens", "0")  # the rule it follows
    d = cli_json(capsys, "scaling", "optimal", "--flops", "1e21", "--inference-tokens", "1")  # the smallest count
    assert d["inference_aware"]


# ------------------------------------------------------------------ 4. step --search refuses what it chooses

SEARCH = ["step", "--gpu", "h100", "--model", "gpt2", "--search", "--n-gpus", "8"]


@pytest.mark.parametrize("extra, named", [
    (["--recompute", "full"], ["--recompute"]),
    (["--zero", "3"], ["--zero"]),
    (["--zero", "0"], ["--zero"]),  # typed, even at the default: the search would still choose ZeRO itself
    (["--recompute", "none", "--zero", "1"], ["--zero", "--recompute"]),
    (["--global-batch", "64", "--micro-batch", "2"], ["--micro-batch"]),
    (["--global-batch", "64", "--grad-accum", "2"], ["--grad-accum"]),
])
def test_search_refuses_the_options_it_would_ignore(capsys, extra, named):
    line = refused(capsys, *SEARCH, *extra)
    assert all(n in line for n in named) and ("--search" in line)
    assert "{" not in line  # every part of the line is formatted (b109: "drop {'them' if ...}" was printed raw)


def test_search_still_takes_its_batch_from_micro_batch_and_grad_accum_without_global_batch(capsys):
    d = cli_json(capsys, *SEARCH, "--micro-batch", "2", "--grad-accum", "3")
    assert d["global_batch"] == 8 * 2 * 3  # --n-gpus x --micro-batch x --grad-accum (the --global-batch help)
    assert cli_json(capsys, *SEARCH, "--global-batch", "64")["global_batch"] == 64


# ------------------------------------------------------------------ 5. finetune: dataset tokens x epochs bounded

FINETUNE = ["finetune", "--model", "gpt2", "--gpu", "4090"]


@pytest.mark.parametrize("tokens, epochs", [("1e6", "1e308"), ("1e18", "1e10"), ("1e17", "10.5")])
def test_finetune_caps_tokens_processed_at_the_dataset_bound(capsys, tokens, epochs):
    line = refused(capsys, *FINETUNE, "--dataset-tokens", tokens, "--epochs", epochs)
    assert "--epochs" in line and "--dataset-tokens" in line and "at most 1e18" in line


def test_finetune_accepts_tokens_processed_at_the_bound(capsys):
    assert 1e17 * 10 == MAX_N_TOKENS  # exact in binary floating point, so the bound itself is tested
    d = cli_json(capsys, *FINETUNE, "--dataset-tokens", "1e17", "--epochs", "10")
    assert d["processed_tokens"] == MAX_N_TOKENS


# ------------------------------------------------------------------ 6. flops --n-gpus bounded as step/memory are


def test_flops_bounds_the_gpu_count_as_step_does(capsys):
    refused(capsys, "flops", "--model", "gpt2", "--tokens", "300B", "--n-gpus", "100000000000000000000")
    over = str(MAX_N_GPUS + 1)
    line = refused(capsys, "flops", "--model", "gpt2", "--tokens", "300B", "--n-gpus", over)
    assert line == refused(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--n-gpus", over)  # the same rule
    assert cli_json(capsys, "flops", "--model", "gpt2", "--tokens", "300B", "--n-gpus", str(MAX_N_GPUS))
