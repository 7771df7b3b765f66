"""Shared test helpers: measure FLOPs and parameters on the reference PyTorch module."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("COLUMNS", "200")  # pinned terminal width for rendered tables


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (kept out of the default suite for time; see docs/testing.md)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long case kept out of the default run; pytest --run-slow runs it")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --run-slow (docs/testing.md)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def torchrun_log(pytestconfig) -> dict:
    """torchrun launches of the DDP/FSDP tests (tests/test_train_ddp.py) and the retries after a native abort,
    kept on the config so the session summary prints them: a retry is never silent."""
    log = {"runs": [], "retries": []}
    pytestconfig.flopscalc_torchrun = log
    return log


def pytest_terminal_summary(terminalreporter, config):
    log = getattr(config, "flopscalc_torchrun", None)
    if log and log["runs"]:
        terminalreporter.write_line(f"torchrun: {len(log['runs'])} two-process run(s), {len(log['retries'])} "
                                    "retried after a worker died by SIGABRT/SIGSEGV")
        for line in log["retries"]:
            terminalreporter.write_line(f"  retried: {line}")


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: deterministic and fast on a shared 2-core machine (the trainer tests use it)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def measure_flops(cfg, batch: int, seq: int, *, backward: bool = True, recompute: str = "none") -> dict:
    """Run the reference module on meta tensors under FlopCounterMode; return total and per-op FLOPs.

    Meta tensors carry shapes only, so GPT-2 XL costs nothing; on meta, scaled_dot_product_attention
    decomposes into matmuls the counter sees (on CPU the fused kernel is not counted at all).
    Non-reentrant checkpointing normally stops recomputing early (it skips the region's last op); early
    stop is turned off so the measurement is the full recomputed forward the papers count.
    """
    import torch
    from torch.utils.checkpoint import set_checkpoint_early_stop
    from torch.utils.flop_counter import FlopCounterMode

    from flopscalc.train.model import GPT

    with torch.device("meta"):
        model = GPT(cfg, recompute=recompute)
        idx = torch.zeros(batch, seq, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter, set_checkpoint_early_stop(False):
        _, loss = model(idx, idx)
        if backward:
            loss.backward()
    ops = {str(k).split(".")[1]: v for k, v in counter.get_flop_counts()["Global"].items()}
    return {"total": counter.get_total_flops(), "ops": ops}


# torch.compile's CPU backend (inductor) builds C++ kernels: it needs a compiler, which every CI machine has
needs_cxx = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                               reason="torch.compile on CPU needs a C++ compiler (g++ or clang++)")


def cli(capsys, *argv):
    """Run the real CLI (`flopscalc.cli.run`) in-process: (exit code, stdout, stderr)."""
    from flopscalc.cli import run

    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# A one-layer model small enough to calibrate on a CPU in seconds (the CPU profile fixture below)
TINY_SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--vocab-size", "64"]


@pytest.fixture(scope="session")
def cpu_profile(tmp_path_factory):
    """A calibration profile measured on this machine's CPU (`flopscalc calibrate --device cpu`, five micro-batches
    of `TINY_SHAPE`, one timed step per round): the path of the file it wrote."""
    torch = pytest.importorskip("torch")
    from flopscalc.cli import run

    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("cpu") / "cpu.json"
    batches = [x for b in (1, 2, 3, 4, 6) for x in ("--micro-batch", str(b))]
    try:
        assert run(["calibrate", "--out", str(out), *TINY_SHAPE, *batches, "--device", "cpu", "--warmup-steps", "1",
                    "--steps", "1", "--rounds", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    return out


def one_command_app(module):
    """A click command of a typer app holding only ``module``'s commands (a `flopscalc.cli` module with
    ``register``): a command tested alone, through click's runner."""
    import typer

    a = typer.Typer()
    module.register(a)

    @a.callback()
    def _root():
        """flopscalc (test harness: one command alone)."""

    return typer.main.get_command(a)


def invoke_json(app, *args) -> dict:
    """``app``'s (`one_command_app`) --json output for ``args``, parsed; the command must succeed."""
    import json

    from click.testing import CliRunner

    result = CliRunner().invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def refused(capsys, *argv, code: int = 2) -> str:
    """The one error line of a refused command line (exit ``code``), never a traceback."""
    got, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and lines[0].startswith("flopscalc: error: "), (got, out, err)
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_rendering(monkeypatch):
    """Every plot's data and drawing step fails loudly: a check that runs first (options, outputs) never reaches
    them."""
    from flopscalc import plots

    def boom(*a, **k):
        raise AssertionError("rendering started before the command line and its output were checked")

    for name in ("frontier_data", "isoflop_data", "landscape_data", "memory_data", "calibration_data",
                 "draw_frontier", "draw_isoflop", "draw_landscape", "draw_memory", "draw_calibration", "save_figure"):
        monkeypatch.setattr(plots, name, boom)


def cli_json(capsys, *argv):
    """The command's ``--json`` output, parsed; the command must succeed."""
    import json

    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def hf():
    """transformers (quiet), for the tests that check against its models; skips without torch or transformers."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


@pytest.fixture(scope="module")
def pydoc_split():
    """Python's pydoc text as bytes, split 90/10 into train and validation tokens (the training-loop tests)."""
    from flopscalc.train.data import byte_tokenize, pydoc_text

    tokens = byte_tokenize(pydoc_text())
    n_val = len(tokens) // 10
    return tokens[:-n_val], tokens[-n_val:]


# A saved scaling law as `scaling fit --save mylaw` wrote it (review r13's /tmp/r13/home/laws/mylaw.json): the saved-law
# naming and listing tests (test_s18_b103, test_s18_b109) write it under other file names.
SAVED_LAW_R13 = {
    "schema_version": 1, "name": "mylaw", "title": "fitted: approach 3 on 10 runs",
    "source": "fitted by flopscalc: approach 3 on runs.csv (10 runs)", "flop_convention": "C = 6ND",
    "n_counts_embeddings": None,
    "loss_form": {"kind": "parametric", "E": 2.187883431391027, "A": 172.55879020877748, "B": 19725.01096182305,
                  "alpha": 0.2845790326436539, "beta": 0.5045972439356297},
    "allocation": None, "uncertainty": {}, "uncertainty_kind": "", "notes": "",
    "fitted_range": {"n_params": [1e8, 1.6e9], "n_tokens": [2e9, 3.2e10], "c_flops": None,
                     "source": "the 10 runs of the fit"},
    "vocab_size": None, "repetition": None,
}
