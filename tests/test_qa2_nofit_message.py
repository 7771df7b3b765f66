"""QA pass 2, bug 1: a model that fits nowhere is told so ("does not fit"), with its size by the house count
format (1000s: 984.3B), not "fits" and "984251M parameters". The size quoted is checked against the size asked
for (--params 1T: the nearest Llama shape), read back with the house parser."""

from __future__ import annotations

import re

import pytest

from flopscalc.cli import run
from flopscalc.units import parse_count

ASKED_PARAMS = 1e12
# the shape search lands within a few percent of the size asked (--params); 5% is loose enough for any family
SHAPE_REL_TOL = 0.05


def _err(capsys, *argv) -> tuple[int, str]:
    code = run(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("n_gpus", ["1", "16"])  # one GPU (the single-GPU message), 16 (the layout message)
def test_a_model_that_fits_nowhere_is_said_not_to_fit_with_a_formatted_count(capsys, n_gpus):
    code, err = _err(capsys, "plan", "--gpu", "h100", "--n-gpus", n_gpus, "--days", "3", "--params", "1T",
                     "--family", "llama")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "does not fit" in err
    assert not re.search(r"\bfits (in )?\d", err)  # never "fits 80.0 GiB"
    m = re.search(r"\(([0-9.]+[kMBT]?) parameters\)", err)
    assert m is not None, err
    assert parse_count(m[1]) == pytest.approx(ASKED_PARAMS, rel=SHAPE_REL_TOL)
    assert float(re.match(r"[0-9.]+", m[1])[0]) < 1000  # scaled by 1000s, not 984251M


def test_no_candidate_fitting_is_one_plain_negative(capsys, tmp_path):
    # 0.2 GiB per GPU (--memory) holds no GPT-2 preset: "no candidate fits", never "no candidate ... fits no"
    code, err = _err(capsys, "plan", "--gpu", "h100", "--memory", "0.2GiB", "--days", "1")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no candidate fits" in err and "fits no" not in err
