"""Review r13 (trainer and calibration) and r11 #2: a profile names the device it timed, --parallel is refused in one
process, a --resume checkpoint that is a directory is said to be one, and `train` on a CPU runs at the thread count
`calibrate` times, so a CPU profile predicts it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import cli

torch = pytest.importorskip("torch")

SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32", "--vocab-size", "64"]
TRAIN = ["train", "--synthetic", *SHAPE, "--micro-batch", "2", "--eval-batches", "1", "--device", "cpu",
         "--steps", "2", "--warmup-steps", "0", "--json"]
# five setups: enough for calibrate to fit, so the only reason left to refuse is the --gpu row
SWEEP = [*SHAPE, "--device", "cpu", "--warmup-steps", "1", "--steps", "1", "--rounds", "1",
         *(x for b in (1, 2, 3, 4, 6) for x in ("--micro-batch", str(b)))]


def refused(capsys, *argv: str) -> str:
    """Run the CLI; it must exit 2 with one line on stderr (returned)."""
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("flopscalc: error: ") and err.count("\n") == 1, err
    return err


# --- 1. --gpu names the device timed (a profile's gpu_key is matched by 'plan' and 'step') ---------------------

BENCH = ["bench", *SHAPE, "--device", "cpu", "--warmup-steps", "1", "--steps", "1"]


@pytest.mark.parametrize("command,with_out", [(["calibrate", *SWEEP], True), (BENCH, True), (BENCH, False)])
def test_a_gpu_row_for_a_cpu_run_is_refused_before_timing(capsys, tmp_path, monkeypatch, command, with_out):
    # was: exit 0, "Benchmark on CPU x86_64 (h100-sxm)", a profile with gpu_key h100-sxm that 'plan --gpu h100'
    # and 'step --gpu h100' then used as an H100's
    from flopscalc.train import bench

    def timed(*a, **k):
        raise AssertionError("timed a setup before refusing --gpu")

    monkeypatch.setattr(bench, "_warm_trainer", timed)
    out = tmp_path / "p.json"
    line = refused(capsys, *command, "--gpu", "h100", *(["--out", str(out)] if with_out else []))
    assert "--gpu h100" in line and "the device timed is a CPU" in line and "--peak-tflops" in line
    assert not out.exists()


def test_a_cpu_run_without_a_row_is_told_to_state_a_peak_not_to_name_a_gpu():
    from flopscalc.train.bench import resolve_peak

    _, spec, peak, notes = resolve_peak("cpu", "fp32", None, None)
    assert spec is None and peak is None
    assert "--peak-tflops" in notes[-1] and "--gpu" not in notes[-1]


# Names as torch.cuda.get_device_name reports them on those boards ("NVIDIA H200": this project's H200 session,
# benchmarks/results/calibration_h200-sxm_*.json; "NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-16GB", "NVIDIA A10G",
# "NVIDIA GH200 480GB", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe": CUDA deviceQuery / nvidia-smi output).
CUDA_ROWS = [
    ("NVIDIA H100 80GB HBM3", "h100", True),  # the name maps to h100-sxm, as --gpu h100 does
    ("NVIDIA H100 80GB HBM3", "h100-pcie", False),
    ("NVIDIA H100 PCIe", "h100", False),
    ("NVIDIA H200", "h200-sxm", True),
    ("NVIDIA A100-SXM4-80GB", "a100-40gb", False),
    # names the database has no row for: --gpu names them, by a row with the same model number
    ("Tesla V100-SXM2-16GB", "v100", True),
    ("NVIDIA A10G", "a10", True),
    ("NVIDIA A10G", "a100", False),
    ("NVIDIA GH200 480GB", "gh200", True),
    ("NVIDIA GH200 480GB", "h100", False),
    ("NVIDIA H200 NVL", "h100-nvl", False),
]


@pytest.mark.parametrize("cuda_name,gpu,accepted", CUDA_ROWS)
def test_on_cuda_the_row_must_be_the_devices(monkeypatch, cuda_name, gpu, accepted):
    from flopscalc.errors import UsageError
    from flopscalc.model import ModelConfig
    from flopscalc.train import bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: cuda_name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))  # TF32: every row here has it

    class Timed(Exception):
        pass

    def timed(*a, **k):
        raise Timed

    monkeypatch.setattr(bench, "_warm_trainer", timed)
    monkeypatch.setattr(bench, "measure", timed)
    tiny = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=64)
    setup = bench.BenchSetup(tiny, 2, 16, device="cuda", precision="fp32", warmup_steps=1, timed_steps=1)
    if accepted:
        with pytest.raises(Timed):  # on to the timing
            bench.run_benchmarks([setup], gpu=gpu)
    else:
        with pytest.raises(UsageError, match=f"--gpu {gpu} names the GPU database row .* the device timed is "
                                             f"{cuda_name}"):
            bench.run_benchmarks([setup], gpu=gpu)


def _cpu_profile_naming(cpu_profile, tmp_path, gpu_key: str):
    """The CPU profile `calibrate` wrote (tests/conftest.py), with the gpu_key 'calibrate --gpu' used to write."""
    data = json.loads(cpu_profile.read_text())
    assert data["device_name"].startswith("CPU") and data["gpu_key"] is None
    path = tmp_path / "named.json"
    path.write_text(json.dumps({**data, "gpu_key": gpu_key}))
    return path


def _bench_profile_naming(cpu_profile, tmp_path, gpu_key: str):
    """What 'bench --gpu h100 --out' wrote on a CPU: no fitted factors, and each point's MFU against the row's
    fp32 peak (PaLM App. B: achieved model FLOP/s over the peak), which 'plan --calibration' reads."""
    from flopscalc.hardware import get_gpu

    data = json.loads(cpu_profile.read_text())
    peak = get_gpu(gpu_key).peak_flop_per_s("fp32")
    points = [{**p, "peak_flop_per_s": peak, "mfu": p["achieved_flop_per_s"] / peak} for p in data["points"]]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({**data, "gpu_key": gpu_key, "device_factors": None, "points": points}))
    return path


@pytest.mark.parametrize("command,written_by", [
    (["step", "--gpu", "h100", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--vocab", "64", "--seq", "32",
      "--precision", "fp32"], _cpu_profile_naming),
    (["plan", "--gpu", "h100", "--days", "3"], _bench_profile_naming),
])
def test_a_cpu_profile_that_names_a_gpu_is_refused_on_reading(capsys, tmp_path, cpu_profile, command, written_by):
    # was: exit 0, pricing the H100 with the CPU's fitted rates (GPT-2 "gemm 8.972 s") or its MFU (6.9e-05)
    path = written_by(cpu_profile, tmp_path, "h100-sxm")
    line = refused(capsys, *command, "--calibration", str(path))
    assert "measured on a CPU" in line and "h100-sxm" in line and "without --gpu" in line


def test_the_same_cpu_profile_without_a_gpu_key_still_prices_the_cpu(capsys, cpu_profile):
    code, out, err = cli(capsys, "step", "--gpu", "cpu", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                         "--vocab", "64", "--seq", "32", "--precision", "fp32", "--calibration", str(cpu_profile),
                         "--json")
    assert code == 0, err
    fitted = json.loads(cpu_profile.read_text())["device_factors"]["gemm_flop_per_s"]
    assert json.loads(out)["peak_flop_per_s"] == fitted  # a CPU's peak is its fitted GEMM rate (perf.calibrate)


# --- 2. --parallel in one process ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
@pytest.mark.parametrize("world", [None, "1"])
def test_an_explicit_parallel_mode_in_one_process_is_refused(capsys, monkeypatch, mode, world):
    # was: exit 0, world_size 1, the model never wrapped, nothing said
    if world is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:  # torchrun --nproc_per_node 1
        monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("LOCAL_RANK", "0")
    line = refused(capsys, *TRAIN, "--parallel", mode)
    assert f"--parallel {mode} runs only under torchrun with 2 or more processes" in line
    assert ("WORLD_SIZE 1" in line) == (world is not None)


def test_one_process_without_parallel_still_trains(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, out, err = cli(capsys, *TRAIN)
    assert code == 0, err
    assert json.loads(out)["world_size"] == 1


# --- 3. a --resume checkpoint that is a directory --------------------------------------------------------------

def test_resuming_from_a_directory_says_it_is_one(capsys, tmp_path):
    # was: "checkpoint DIR does not exist" for a directory that exists
    folder = tmp_path / "adir"
    folder.mkdir()
    line = refused(capsys, *TRAIN, "--checkpoint", str(folder), "--resume")
    assert f"checkpoint {folder} is a directory" in line and "does not exist" not in line
    code, _, err = cli(capsys, *TRAIN, "--checkpoint", str(folder / "run.pt"))  # a checkpoint inside it
    assert code == 0, err
    line = refused(capsys, *TRAIN, "--checkpoint", str(folder), "--resume")
    assert f"{folder / 'run.pt'}" in line  # the file it holds is named


def test_resuming_from_a_missing_file_still_says_so(capsys, tmp_path):
    line = refused(capsys, *TRAIN, "--checkpoint", str(tmp_path / "none.pt"), "--resume")
    assert "does not exist" in line and "drop --resume" in line


# --- 4. train's threads on a CPU: calibrate's rule --------------------------------------------------------------

def _threads_seen(monkeypatch, capsys, *extra: str) -> tuple[list[int], dict]:
    """torch's intra-op thread count inside every training step of a tiny run, and the run's JSON."""
    from flopscalc.train.trainer import Trainer

    seen = []
    step = Trainer.train_step

    def spy(self):
        seen.append(torch.get_num_threads())
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", spy)
    code, out, err = cli(capsys, *TRAIN, *extra)
    assert code == 0, err
    return seen, json.loads(out)


@pytest.mark.parametrize("requested", [None, 2])
def test_train_on_a_cpu_uses_calibrates_thread_rule_and_says_so(monkeypatch, capsys, cpu_profile, requested):
    # was: torch's own count (2 on this machine) while calibrate timed 1: the reviewer's 8x256 model trained at
    # 106-110 ms a step against a calibrated 225 ms (203-207 ms at OMP_NUM_THREADS=1)
    from flopscalc.train.config import usable_cores

    if usable_cores() < 2:
        pytest.skip("needs 2 usable cores to tell one thread from torch's default")
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what torch picks on 2 cores: the run must not keep it
    try:
        seen, out = _threads_seen(monkeypatch, capsys, *(["--threads", str(requested)] if requested else []))
        assert torch.get_num_threads() == 2  # the process's setting is given back
    finally:
        torch.set_num_threads(before)
    expected = requested or 1
    assert seen == [expected] * 2 and out["n_cpu_threads"] == expected
    assert any(n.startswith(f"CPU threads: torch used {expected} intra-op thread") for n in out["notes"])
    if requested is None:  # the count a CPU profile was timed at (`calibrate` with no --threads)
        assert json.loads(cpu_profile.read_text())["n_cpu_threads"] == out["n_cpu_threads"]


@pytest.mark.parametrize("threads,says", [("0", "--threads must be a positive integer"),
                                          ("100000", "is more than the")])
def test_train_threads_are_bounded_as_benchs(capsys, threads, says):
    assert says in refused(capsys, *TRAIN, "--threads", threads)
