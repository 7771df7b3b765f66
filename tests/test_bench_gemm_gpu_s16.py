"""benchmarks/bench_gemm_gpu.py refuses what it cannot honour with one line and exit 2: a recorded run priced as
another GPU, ``--out`` beside ``--from-json`` (nothing would be written), and measuring without CUDA."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "benchmarks" / "results" / "gemm_h200-sxm_20261128.json"


def _script():
    spec = importlib.util.spec_from_file_location("bench_gemm_gpu", ROOT / "benchmarks" / "bench_gemm_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _refusal(capsys, code: int) -> str:
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and "Traceback" not in out.err, out
    assert len(out.err.strip().splitlines()) == 1, out.err
    return out.err


def test_the_recorded_h200_run_is_priced_for_the_h200(capsys):
    assert _script().main(["--from-json", str(RECORDED), "--gpu", "h200"]) == 0
    shapes = {k for k in json.loads(RECORDED.read_text()) if k.count("x") == 2}
    assert len(capsys.readouterr().out.strip().splitlines()) == len(shapes) == 7


@pytest.mark.parametrize("gpu", ["h100", "4070ti", "a100"])
def test_a_recorded_run_is_not_priced_as_another_gpu(capsys, gpu):
    err = _refusal(capsys, _script().main(["--from-json", str(RECORDED), "--gpu", gpu]))
    assert "measured on NVIDIA H200 (h200-sxm)" in err and "--gpu h200-sxm" in err


def test_out_with_from_json_is_refused_and_nothing_is_written(capsys, tmp_path):
    out = tmp_path / "x.json"
    err = _refusal(capsys, _script().main(["--from-json", str(RECORDED), "--gpu", "h200", "--out", str(out)]))
    assert "--out" in err and not out.exists()


def test_a_missing_or_foreign_file_is_one_line(capsys, tmp_path):
    mod = _script()
    assert "no such file" in _refusal(capsys, mod.main(["--from-json", str(tmp_path / "none.json")]))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert "holds no rates object" in _refusal(capsys, mod.main(["--from-json", str(bad)]))
    bad.write_text("{not json")
    assert "is not JSON" in _refusal(capsys, mod.main(["--from-json", str(bad)]))


def test_measuring_without_cuda_is_refused(capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mod = _script()
    monkeypatch.setattr(mod, "measure", lambda: pytest.fail("measured without CUDA"))
    err = _refusal(capsys, mod.main([]))
    assert "needs a CUDA device" in err and "--from-json" in err
