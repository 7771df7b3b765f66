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


ROWS = "".join(f"{n:g},{20 * n:g},{1.8 + 400 / n**0.34 + 400 / (20 * n)**0.28:.4f}\n"
               for n in (7e7, 1.5e8, 3e8, 6e8, 1.2e9, 2.4e9))


def test_two_columns_for_one_quantity_are_refused(tmp_path, capsys):
    # was: 'n_params,params,...' read the first and dropped the other without a word
    f = tmp_path / "runs.csv"
    f.write_text("n_params,params,n_tokens,loss\n" + "".join(
        f"{r.split(',')[0]},{r}" for r in ROWS.splitlines(keepends=True)), encoding="utf-8")
    assert run(["scaling", "fit", str(f), "--grid", "small"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'n_params'" in err and "'params'" in err


def test_tab_separated_runs_file_is_named_as_such(tmp_path, capsys):
    # was: "missing column(s) n_params, loss, n_tokens (or c_flops); found n_params\tn_tokens\tloss"
    f = tmp_path / "runs.tsv"
    f.write_text("n_params\tn_tokens\tloss\n" + ROWS.replace(",", "\t"), encoding="utf-8")
    assert run(["scaling", "fit", str(f), "--grid", "small"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tab-separated" in err


def test_the_same_rows_comma_separated_fit(tmp_path, capsys):
    f = tmp_path / "runs.csv"
    f.write_text("n_params,n_tokens,loss\n" + ROWS, encoding="utf-8")
    assert run(["scaling", "fit", str(f), "--grid", "small"]) == 0


def test_a_suffixed_number_in_a_cell_says_how_to_write_it(tmp_path, capsys):
    f = tmp_path / "runs.csv"
    f.write_text("n_params,n_tokens,loss\n1.5B,30B,2.5\n" + ROWS, encoding="utf-8")
    assert run(["scaling", "fit", str(f)]) == 2
    assert "1.5e9" in capsys.readouterr().err


# three IsoFLOP budgets x five sizes, loss from Hoffmann et al. 2022 eq. 10's constants (approach 2 can fit them)
ISOFLOP_ROWS = "".join(f"{n:g},{c / (6 * n):g},{1.69 + 406.4 / n**0.34 + 410.7 / (c / (6 * n))**0.28:.5f}\n"
                       for c in (1e19, 1e20, 1e21) for n in (c / 6e10 * f for f in (0.25, 0.5, 1, 2, 4)))


@pytest.mark.parametrize("approach", ["2", "3"])
def test_negative_bootstrap_seed_is_one_usage_line(tmp_path, capsys, approach):
    # was: a numpy traceback 'ValueError: expected non-negative integer' after the whole fit
    f = tmp_path / "runs.csv"
    f.write_text("n_params,n_tokens,loss\n" + ISOFLOP_ROWS, encoding="utf-8")
    assert run(["scaling", "fit", str(f), "--approach", approach, "--bootstrap", "3"]
               + (["--grid", "small"] if approach == "3" else [])) == 0
    capsys.readouterr()
    argv = ["scaling", "fit", str(f), "--approach", approach, "--bootstrap", "3", "--seed", "-1"]
    assert run(argv + (["--grid", "small"] if approach == "3" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flopscalc: error:") and "\n" not in err and "seed" in err


def test_negative_exclude_highest_loss_is_refused(tmp_path, capsys):
    # was: '--exclude-highest-loss -1' fitted all the runs without a word
    f = tmp_path / "runs.csv"
    f.write_text("n_params,n_tokens,loss\n" + ROWS, encoding="utf-8")
    assert run(["scaling", "fit", str(f), "--grid", "small", "--exclude-highest-loss", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "exclude" in err
