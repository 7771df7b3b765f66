"""Each base constant and shared formula has one definition (issue 17, item 6; STYLE habit 15).

A copy is how a bug survives in one place and not the other: these scan the package source for
retyped literals and second definitions, so a new copy fails here rather than drifting silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flopscalc
from flopscalc import flops, units
from flopscalc.scaling import laws

PACKAGE = Path(flopscalc.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_base_constants_have_their_defining_values():
    # IEC 80000-13: 1 GiB = 1024^3 bytes; SI: tera = 10^12, giga = 10^9; a day is 24 h of 3600 s.
    assert units.GIB == 1024**3
    assert units.TERA == 10**12 and units.GIGA == 10**9
    assert units.SECONDS_PER_DAY == 24 * 60 * 60


def test_six_nd_is_two_flops_per_mac_times_forward_plus_backward():
    # Kaplan et al. 2020, sec. 2.1: forward 2N, backward 4N per token.
    assert flops.FLOPS_PER_PARAM_TOKEN == 6
    assert laws.FLOPS_PER_PARAM_TOKEN is flops.FLOPS_PER_PARAM_TOKEN


@pytest.mark.parametrize("name", ["GIB", "GIGA", "TERA", "SECONDS_PER_DAY", "SECONDS_PER_HOUR",
                                  "FLOPS_PER_PARAM_TOKEN", "BACKWARD_TO_FORWARD", "FLOPS_PER_MAC",
                                  "MATMUL_PRECISION", "MEMORY_PRECISION", "TRAINER_MEMORY_PRECISION",
                                  "CHINCHILLA_TOKENS_PER_PARAM"])
def test_constant_is_assigned_in_one_module(name):
    owners = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                owners.append(path.relative_to(PACKAGE).as_posix())
    assert len(owners) == 1, f"{name} assigned in {owners}"


# Literals that spell a shared constant, found in the code (not in comments or docstrings): 2**30 (GiB),
# 86400 and 3600 (a day and an hour in seconds), 6.0 * x for C = 6ND. units.py and flops/ (exact, papers) own them.
OWNERS = {"units.py", "flops/exact.py", "flops/papers.py"}


def _is_num(node, *values) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in values


RETYPED = {
    "GiB as 2**30": lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) and _is_num(n.left, 2)
    and _is_num(n.right, 30),
    "a day as 86400": lambda n: _is_num(n, 86400),
    "an hour as 3600": lambda n: _is_num(n, 3600),
    "C = 6ND as 6.0 *": lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult) and _is_num(n.left, 6)
    and isinstance(n.left.value, float),
}


@pytest.mark.parametrize("what", sorted(RETYPED))
def test_no_retyped_literal_outside_the_owner(what):
    hits = [f"{path.relative_to(PACKAGE).as_posix()}:{node.lineno}" for path in SOURCES
            if path.relative_to(PACKAGE).as_posix() not in OWNERS
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if RETYPED[what](node)]
    assert not hits, f"{what} retyped at {hits}; import it from flopscalc.units / flopscalc.flops"


def test_the_literal_scan_can_fail():
    """The scan above finds each pattern in a line that retypes it."""
    for what, line in (("GiB as 2**30", "x = y / 2**30"), ("a day as 86400", "d = s / 86400.0"),
                       ("an hour as 3600", "h = s / 3600"), ("C = 6ND as 6.0 *", "c = 6.0 * n * d")):
        assert any(RETYPED[what](node) for node in ast.walk(ast.parse(line))), what


def test_bootstrap_allocation_and_law_share_the_closed_form():
    """The bootstrap's N_opt/D_opt samples and ParametricLoss.n_opt/d_opt are one formula (equal but for the
    exp(log A) round trip of the fit's parameterisation, ~1e-16).

    Limit case as the independent anchor: with alpha = beta and A = B, G = 1 and N_opt = D_opt = sqrt(C/6)
    [H22, eq. 4], so C = 6 N D holds with N = D.
    """
    import numpy as np

    from flopscalc.scaling.fit import _allocation_samples
    from flopscalc.scaling.laws import ParametricLoss, chinchilla_allocation

    law = ParametricLoss(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # [H22, eq. 10]
    x = np.array([[np.log(law.A), np.log(law.B), np.log(law.E), law.alpha, law.beta]])
    s = _allocation_samples(x, (1e21, 1e24))
    assert s["n_opt@1e+21"][0] == pytest.approx(law.n_opt(1e21), rel=1e-14)
    assert s["d_opt@1e+24"][0] == pytest.approx(law.d_opt(1e24), rel=1e-14)
    n, d = chinchilla_allocation(6e20, 5.0, 5.0, 0.3, 0.3)
    assert n == pytest.approx(1e10, rel=1e-12) and d == pytest.approx(1e10, rel=1e-12)


def test_resolve_law_is_the_one_name_to_law_step(tmp_path):
    from flopscalc.errors import UsageError
    from flopscalc.scaling.io import resolve_law, save_law
    from flopscalc.scaling.laws import BUILTIN_LAWS, DEFAULT_LAW

    assert resolve_law(None, tmp_path) is BUILTIN_LAWS[DEFAULT_LAW]
    assert resolve_law("", tmp_path) is BUILTIN_LAWS[DEFAULT_LAW]
    chin = BUILTIN_LAWS["chinchilla"]
    assert resolve_law(chin) is chin
    from dataclasses import replace
    save_law(replace(chin, name="mine", aliases=()), tmp_path)
    assert resolve_law("mine", tmp_path).loss_form == chin.loss_form  # a saved law, read back from disk
    with pytest.raises(UsageError, match="unknown scaling law"):
        resolve_law("no-such-law", tmp_path)


def test_law_parameter_count_follows_the_laws_convention():
    """Kaplan et al. count non-embedding parameters [K20, sec. 1.1]; Chinchilla all of them [H22, Table A9]:
    for GPT-2 small the difference is exactly the token and position embeddings, (50257 + 1024) x 768."""
    from flopscalc.model import get_preset
    from flopscalc.scaling.laws import BUILTIN_LAWS, n_for_law

    cfg = get_preset("gpt2")
    kaplan = next(law for law in BUILTIN_LAWS.values() if law.n_counts_embeddings is False)
    assert n_for_law(BUILTIN_LAWS["chinchilla"], cfg) - n_for_law(kaplan, cfg) == (50257 + 1024) * 768


def test_mfu_reproduces_palm_540b():
    """PaLM 540B (Chowdhery et al. 2022): 238.3K tokens/s on 6144 TPU v4 chips of 275 TFLOP/s (bf16) is 46.2% MFU
    (sec. 4 / App. B), with 6N + 12LHQT model FLOPs per token, N = 540.35B, L = 118, H = 48, Q = 256, T = 2048
    (Table 1). The paper prints three digits: tolerance half a unit of the last, 0.05% absolute."""
    from flopscalc.flops import palm_flops_per_token
    from flopscalc.perf.utilization import model_flops_utilization, seconds_at_utilization

    per_token = palm_flops_per_token(540.35e9, 118, 48, 256, 2048)
    mfu = model_flops_utilization(per_token, 238.3e3, 6144, 275e12)
    assert mfu == pytest.approx(0.462, abs=5e-4)
    # the inverse: a second of that throughput takes one second at that utilization
    assert seconds_at_utilization(238.3e3 * per_token, 6144, 275e12, mfu) == pytest.approx(1.0, rel=1e-12)


def test_scaling_loss_refuses_non_positive_inputs_in_the_engine(capsys):
    """The CLI no longer checks N, D, U itself: predict_loss refuses them, one line, exit 2."""
    from flopscalc.cli import run

    for args, what in ((["--params", "0", "--tokens", "10B"], "parameter count"),
                       (["--params", "1B", "--tokens", "-5"], "training tokens"),
                       (["--params", "1B", "--tokens", "10B", "--unique-tokens", "0"], "unique tokens")):
        assert run(["scaling", "loss", *args]) == 2
        err = capsys.readouterr().err
        assert what in err and "positive" in err and len(err.strip().splitlines()) == 1


def test_precision_words_are_related_in_one_place():
    """Every storage precision computes at some peak, every peak has a storage policy, and the trainer's
    names cover train.config.PRECISIONS; mixed precision round-trips (bf16-pure shares bf16's peak)."""
    from flopscalc.hardware import Precision
    from flopscalc.memory.precision import (
        MATMUL_PRECISION,
        MEMORY_PRECISION,
        TRAINER_MEMORY_PRECISION,
        MemoryPrecision,
    )
    from flopscalc.train.config import PRECISIONS
    from flopscalc.train.from_plan import PRECISION_TO_TRAINER

    assert set(MATMUL_PRECISION) == set(MemoryPrecision) and set(MEMORY_PRECISION) == set(Precision)
    assert set(TRAINER_MEMORY_PRECISION) == set(PRECISIONS) - {"auto"}
    for m in (MemoryPrecision.fp32, MemoryPrecision.bf16_mixed, MemoryPrecision.fp16_mixed):
        assert MEMORY_PRECISION[MATMUL_PRECISION[m]] is m
    assert {TRAINER_MEMORY_PRECISION[t].value: t for t in TRAINER_MEMORY_PRECISION} == PRECISION_TO_TRAINER
