"""Scaling commands on inputs a user really gives: each refusal one line with the right exit code, no traceback."""

from __future__ import annotations

import pytest

from flopscalc.cli import run


@pytest.mark.parametrize("header", ["n_params,n_tokens,loss", "n_params,c_flops,loss"])
def test_header_only_runs_file_is_one_usage_line(tmp_path, capsys, header):
    # was: TypeError traceback ('NoneType' object is not iterable) from the D = C / 6N fallback
    f = tmp_path / "runs.csv"
    f.write_text(header + "\n", encoding="utf-8")
    assert run(["scaling", "fit", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flopscalc: error:") and "header only" in err and "\n" not in err


def test_allocation_rule_with_inference_tokens_names_the_real_reason(capsys):
    # chinchilla-a1 is an allocation rule without a loss formula; at 1e25 FLOP the old message said
    # "give a larger budget", which can never help. Hoffmann et al. 2022 Table 3 gives approach 1 no loss.
    assert run(["scaling", "optimal", "--flops", "1e25", "--law", "chinchilla-a1", "--inference-tokens", "1T"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no parametric loss" in err and "larger budget" not in err and "\n" not in err
