"""`BenchSetup` with LoRA on: the point's FLOPs are what ``FlopCounterMode`` counts in the LoRA step, the settings
are checked as the trainer's, and off (the default) it times full training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from flopscalc.errors import UsageError
from flopscalc.model import ModelConfig
from flopscalc.train.bench import BenchSetup, measure
from flopscalc.train.lora import apply_lora
from flopscalc.train.model import build_model
from tests.conftest import measure_flops

BATCH, SEQ, RANK = 2, 16, 4
TINY = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=64, name="tiny")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _counted_lora_flops_per_token(targets: tuple[str, ...]) -> float:
    """Forward + backward FLOPs of the LoRA module per token, by ``FlopCounterMode`` (math attention, whose matmuls
    the counter sees; the adapters' alpha does not change the count)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = apply_lora(build_model(TINY, attention="math"), RANK, float(RANK), targets)
    x = torch.randint(0, TINY.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    counter = FlopCounterMode(display=False)
    with counter:
        model(x, x)[1].backward()
    return counter.get_total_flops() / (BATCH * SEQ)


def test_lora_bench_point_counts_the_lora_step():
    setup = BenchSetup(TINY, micro_batch=BATCH, seq_len=SEQ, device="cpu", warmup_steps=1, timed_steps=2,
                       lora_rank=RANK, lora_targets="q,v")
    p = measure(setup, peak_flop_per_s=1e12)
    counted = _counted_lora_flops_per_token(("q", "v"))
    assert p.model_flops_per_token == counted
    assert counted != measure_flops(TINY, BATCH, SEQ)["total"] / (BATCH * SEQ)  # not the pre-training step's
    assert p.achieved_flop_per_s == pytest.approx(p.tokens_per_s * counted, rel=1e-12)


def test_bench_setup_without_lora_times_full_training():
    p = measure(BenchSetup(TINY, micro_batch=BATCH, seq_len=SEQ, device="cpu", warmup_steps=1, timed_steps=2), None)
    assert p.model_flops_per_token == measure_flops(TINY, BATCH, SEQ)["total"] / (BATCH * SEQ)


@pytest.mark.parametrize("kwargs,words", [
    ({"lora_alpha": 4.0}, "applies only to LoRA"),
    ({"lora_rank": 4, "lora_targets": "qkv"}, "not one of"),
    ({"lora_rank": -1}, "--lora-rank"),
])
def test_lora_settings_are_checked_as_the_trainers(kwargs, words):
    setup = BenchSetup(TINY, micro_batch=BATCH, seq_len=SEQ, device="cpu", **kwargs)
    with pytest.raises(UsageError, match=words):
        setup.train_config()


def test_calibration_refuses_lora_steps_before_timing_anything():
    # the profile's device factors are fitted to the pre-training step model (perf/step.py); a LoRA step skips the
    # frozen weights' gradients, so fitting to it would make every later plan too fast: one line, nothing timed
    from flopscalc.errors import UsageError
    from flopscalc.model import resolve_model
    from flopscalc.train.bench import BenchSetup
    from flopscalc.train.calibrate import run_calibration

    setup = BenchSetup(model=resolve_model("gpt2"), micro_batch=1, seq_len=8, lora_rank=4, device="cpu")
    with pytest.raises(UsageError, match="drop the LoRA settings"):
        run_calibration([setup])
