"""A saved law keeps what makes its predictions honest: its fitted range, vocabulary and repetition decay."""

from __future__ import annotations

import json

import pytest

from flopscalc.scaling import BUILTIN_LAWS
from flopscalc.scaling.io import law_from_dict, law_to_dict


@pytest.mark.parametrize("name", sorted(BUILTIN_LAWS))
def test_save_load_keeps_range_vocabulary_and_repetition(name):
    law = BUILTIN_LAWS[name]
    back = law_from_dict(json.loads(json.dumps(law_to_dict(law))), "test")
    assert back.fitted_range == law.fitted_range
    assert back.vocab_size == law.vocab_size
    assert back.repetition == law.repetition
    assert back.loss_form == law.loss_form


def test_files_written_before_these_fields_still_load():
    d = law_to_dict(BUILTIN_LAWS["chinchilla"])
    for key in ("fitted_range", "vocab_size", "repetition"):
        d.pop(key)
    back = law_from_dict(d, "old file")
    assert back.fitted_range is None and back.vocab_size is None and back.repetition is None


def test_a_saved_fit_warns_outside_the_runs_it_was_fitted_on(tmp_path, monkeypatch, capsys):
    from flopscalc.cli import run

    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    runs = tmp_path / "runs.csv"
    # 12 runs of a Chinchilla-shaped law [Hoffmann et al. 2022, eq. 2] between 10M-100M params and 0.2B-2B tokens
    rows = ["n_params,n_tokens,loss"]
    for n in (1e7, 2e7, 5e7, 1e8):
        for d in (2e8, 6e8, 2e9):
            rows.append(f"{n},{d},{1.7 + 406.4 / n**0.34 + 410.7 / d**0.28}")
    runs.write_text("\n".join(rows) + "\n")
    assert run(["scaling", "fit", str(runs), "--save", "mine", "--grid", "small"]) == 0
    capsys.readouterr()
    inside = ["scaling", "loss", "--law", "mine", "--params", "50M", "--tokens", "1B", "--json"]
    assert run(inside) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    assert run(["scaling", "loss", "--law", "mine", "--params", "10B", "--tokens", "200B", "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("100x above" in w and "parameters" in w for w in warnings)
    assert any("100x above" in w and "tokens" in w for w in warnings)
