"""Published training runs: predict each run's wall clock from its hardware, model and reported efficiency.

A row of ``data/published_runs.csv`` is one published run (or, marked ``kind=prediction``, a paper's own
estimate): the model (a GPT-2-layout shape, or only a parameter count), tokens, GPU type and count, and
what the authors reported: MFU, tokens per second or achieved TFLOP/s per GPU, and wall clock or GPU-hours.

The prediction is the planner's arithmetic: time = model FLOPs / (n_gpus x peak x MFU) [PaLM App. B].
Model FLOPs are flopscalc's own: the exact matmul count (`flops.training_flops_per_token`) when the shape
is published and fits the GPT-2 layout, else 6N per token (`flops.six_nd_flops_per_token`). A reported rate
is first turned into the achieved FLOP/s *in the authors' convention* (``flop_convention``) and then
re-expressed as flopscalc's MFU, so a number reported under one convention is never divided by FLOPs
counted under another. The CSV is read lazily, once, with the standard library.

References
----------
[1] Chowdhery et al. 2022, "PaLM", arXiv:2204.02311, App. B (MFU definition, 6N + 12 L H Q T).
[2] Narayanan et al. 2021, "Megatron-LM", arXiv:2104.04473, eq. 3 (FLOPs with full recomputation).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from .errors import DomainError, UsageError
from .flops import (
    convention_flops_per_token,
    palm_flops_per_token,
    six_nd_flops_per_token,
    training_flops_per_token,
)
from .hardware import Precision, get_gpu
from .model import ModelConfig, get_preset
from .perf.utilization import seconds_at_utilization
from .units import SECONDS_PER_DAY, SECONDS_PER_HOUR, TERA

# How a run's model is given: an explicit GPT-2-layout shape, or only its parameter count (then 6N per token).
SHAPE_GPT2_LAYOUT = "gpt2-layout"
SHAPE_PARAMS_ONLY = "params-only"
# Authors' FLOP conventions a reported MFU or TFLOP/s can be stated in (see docs/flops.md).
AUTHOR_CONVENTIONS = ("exact", "6nd", "palm", "palm-causal", "megatron", "megatron-model")
# Reported quantities a prediction can start from, in the order used when a row names none.
BASES = ("mfu", "tokens_per_s", "tflop_per_s")
DOWNTIME_VALUES = ("yes", "no", "unknown")
KINDS = ("measured", "prediction")

_INT_FIELDS = ("n_layer", "n_head", "n_embd", "head_dim", "vocab_size", "seq_len", "n_gpus")
_FLOAT_FIELDS = ("n_params", "n_tokens", "reported_mfu", "reported_tokens_per_s",
                 "reported_tflop_per_s_per_gpu", "reported_wall_clock_days", "reported_gpu_hours",
                 "reported_duty_cycle")
_BOOL_FIELDS = ("bias", "pos_embedding")


@dataclass(frozen=True)
class PublishedRun:
    """One published training run and what its authors reported (units in the field names)."""

    run: str
    kind: str  # "measured" or "prediction" (a paper's own estimate, not a measurement)
    model_shape: str  # a GPT-2 preset name, "gpt2-layout" (shape columns) or "params-only"
    n_layer: int | None
    n_head: int | None
    n_embd: int | None
    head_dim: int | None  # only for params-only rows whose convention needs it (PaLM: 256 != n_embd / n_head)
    vocab_size: int | None
    seq_len: int | None
    bias: bool | None
    pos_embedding: bool | None
    n_params: float | None  # params-only rows: the parameter count N of 6N
    n_tokens: float
    gpu: str  # key in data/gpu_specs.csv
    n_gpus: int | None  # None when the authors give GPU-hours but not the GPU count
    precision: str
    reported_mfu: float | None  # fraction, in the authors' flop_convention
    reported_tokens_per_s: float | None  # whole run, all GPUs
    reported_tflop_per_s_per_gpu: float | None  # in the authors' flop_convention
    reported_wall_clock_days: float | None
    reported_gpu_hours: float | None
    wall_clock_includes_downtime: str  # yes / no / unknown
    reported_duty_cycle: float | None  # fraction of wall clock spent training, when the authors give it
    flop_convention: str  # the authors' FLOP convention for reported_mfu / reported_tflop_per_s_per_gpu
    basis: str | None  # the reported quantity the headline prediction uses
    source: str
    notes: str

    def __post_init__(self) -> None:
        where = f"published run {self.run!r}"
        if self.kind not in KINDS:
            raise UsageError(f"{where}: kind {self.kind!r}; accepted: {', '.join(KINDS)}")
        if self.flop_convention not in AUTHOR_CONVENTIONS:
            raise UsageError(f"{where}: flop_convention {self.flop_convention!r}; "
                             f"accepted: {', '.join(AUTHOR_CONVENTIONS)}")
        if self.wall_clock_includes_downtime not in DOWNTIME_VALUES:
            raise UsageError(f"{where}: wall_clock_includes_downtime {self.wall_clock_includes_downtime!r}; "
                             f"accepted: {', '.join(DOWNTIME_VALUES)}")
        if self.basis is not None and self.basis not in BASES:
            raise UsageError(f"{where}: basis {self.basis!r}; accepted: {', '.join(BASES)}")
        if not self.n_tokens > 0 or (self.n_gpus is not None and self.n_gpus < 1):
            raise UsageError(f"{where}: n_tokens and n_gpus must be positive")
        if self.model_shape == SHAPE_PARAMS_ONLY and not (self.n_params and self.n_params > 0):
            raise UsageError(f"{where}: a params-only row needs n_params")
        for name in ("reported_mfu", "reported_duty_cycle"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise UsageError(f"{where}: {name} is a fraction in (0, 1], got {value}")

    @property
    def config(self) -> ModelConfig | None:
        """The run's `ModelConfig` when its shape is published in the GPT-2 layout, else None."""
        if self.model_shape == SHAPE_PARAMS_ONLY:
            return None
        if self.model_shape != SHAPE_GPT2_LAYOUT:
            cfg = get_preset(self.model_shape)
            overridable = ("vocab_size", "bias", "pos_embedding")
            changes = {k: getattr(self, k) for k in overridable if getattr(self, k) is not None}
            if self.seq_len is not None:
                changes["block_size"] = self.seq_len
            return cfg.with_(**changes) if changes else cfg
        needed = ("n_layer", "n_head", "n_embd", "vocab_size", "seq_len")
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            raise UsageError(f"published run {self.run!r}: a gpt2-layout row needs {', '.join(missing)}")
        return ModelConfig(
            n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, block_size=self.seq_len,
            vocab_size=self.vocab_size, bias=True if self.bias is None else self.bias,
            pos_embedding=True if self.pos_embedding is None else self.pos_embedding, name=self.run,
        )

    @property
    def available_bases(self) -> tuple[str, ...]:
        """Reported quantities a prediction can start from, in `BASES` order."""
        have = {"mfu": self.reported_mfu, "tokens_per_s": self.reported_tokens_per_s,
                "tflop_per_s": self.reported_tflop_per_s_per_gpu}
        return tuple(b for b in BASES if have[b] is not None)

    @property
    def reported_wall_clock_s(self) -> float | None:
        days = self.reported_wall_clock_days
        return None if days is None else days * SECONDS_PER_DAY

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def model_flops_per_token(run: PublishedRun) -> float:
    """flopscalc's model FLOPs per token (FLOP/token): exact matmul count, or 6N when only N is known."""
    cfg = run.config
    if cfg is None:
        return six_nd_flops_per_token(run.n_params)  # Kaplan et al. 2020 sec. 2.1
    return training_flops_per_token(cfg, run.seq_len or cfg.block_size).model_flops_per_token


def author_flops_per_token(run: PublishedRun) -> float:
    """FLOPs per token under the authors' convention (FLOP/token): what their MFU or TFLOP/s divides by."""
    conv, cfg = run.flop_convention, run.config
    if cfg is not None:
        seq = run.seq_len or cfg.block_size
        if conv == "palm-causal":  # 6N + 6 L H Q T: PaLM's attention term with the causal half (llm.c's MFU)
            return convention_flops_per_token(cfg, "palm", seq, causal=True)
        return convention_flops_per_token(cfg, conv, seq)
    if conv == "6nd":
        return six_nd_flops_per_token(run.n_params)  # Kaplan et al. 2020 sec. 2.1
    if conv in ("palm", "palm-causal"):
        need = [k for k in ("n_layer", "n_head", "head_dim", "seq_len") if getattr(run, k) is None]
        if need:
            raise UsageError(f"published run {run.run!r}: the PaLM convention needs {', '.join(need)}")
        return palm_flops_per_token(run.n_params, run.n_layer, run.n_head, run.head_dim, run.seq_len,
                                    causal=conv == "palm-causal")  # [1] App. B
    raise DomainError(f"published run {run.run!r}: convention {conv!r} needs the model shape; "
                      "give the gpt2-layout columns or use 6nd/palm")


def model_flops(run: PublishedRun) -> float:
    """Model FLOPs of the whole run (FLOP) = tokens x flopscalc's FLOPs per token."""
    return run.n_tokens * model_flops_per_token(run)


def peak_flop_per_s(run: PublishedRun) -> float:
    """Dense peak of one of the run's GPUs at its precision, from data/gpu_specs.csv (FLOP/s)."""
    return get_gpu(run.gpu).peak_flop_per_s(Precision(run.precision))


def _basis(run: PublishedRun, basis: str | None) -> str:
    if basis is None:
        basis = run.basis or (run.available_bases[0] if run.available_bases else None)
    if basis is None:
        raise DomainError(f"published run {run.run!r} reports no MFU, tokens/s or TFLOP/s, so its wall clock "
                          "cannot be predicted; use implied_mfu() to see the MFU its reported time implies")
    if basis not in BASES:
        raise UsageError(f"unknown basis {basis!r}; accepted: {', '.join(BASES)}")
    if basis not in run.available_bases:
        raise DomainError(f"published run {run.run!r} reports no {basis}; it reports: "
                          f"{', '.join(run.available_bases) or 'none'}")
    return basis


def achieved_flop_per_s_per_gpu(run: PublishedRun, basis: str | None = None) -> float:
    """Achieved model FLOP/s per GPU in flopscalc's FLOP count, from one reported quantity (FLOP/s).

    A rate stated in the authors' convention is scaled by flopscalc / author FLOPs per token, so the token
    throughput it stands for is kept. The authors' peak is taken to equal the database's (see the docs).
    """
    basis = _basis(run, basis)
    ratio = model_flops_per_token(run) / author_flops_per_token(run)
    if basis == "mfu":
        return run.reported_mfu * peak_flop_per_s(run) * ratio  # [1] App. B: MFU = achieved / peak
    if basis == "tokens_per_s":
        return run.reported_tokens_per_s * model_flops_per_token(run) / _n_gpus(run)
    return run.reported_tflop_per_s_per_gpu * TERA * ratio


def mfu(run: PublishedRun, basis: str | None = None) -> float:
    """The run's MFU with flopscalc's model FLOPs in the numerator (fraction)."""
    return achieved_flop_per_s_per_gpu(run, basis) / peak_flop_per_s(run)


def _n_gpus(run: PublishedRun) -> int:
    if run.n_gpus is None:
        raise DomainError(f"published run {run.run!r} gives no GPU count; only GPU-hours can be predicted")
    return run.n_gpus


def predict_gpu_hours(run: PublishedRun, basis: str | None = None) -> float:
    """Predicted GPU-hours = model FLOPs / (peak x MFU) (GPU-h) [1] App. B; no downtime."""
    return seconds_at_utilization(model_flops(run), 1, peak_flop_per_s(run), mfu(run, basis)) / SECONDS_PER_HOUR


def predict_wall_clock_s(run: PublishedRun, basis: str | None = None) -> float:
    """Predicted training time (s) = model FLOPs / (n_gpus x peak x MFU) [1] App. B; no downtime."""
    return model_flops(run) / (_n_gpus(run) * peak_flop_per_s(run) * mfu(run, basis))


def implied_mfu(run: PublishedRun) -> float:
    """MFU the reported GPU-hours (or wall clock x n_gpus) imply, downtime included (fraction)."""
    if run.reported_gpu_hours is not None:
        gpu_s = run.reported_gpu_hours * SECONDS_PER_HOUR
    elif run.reported_wall_clock_s is not None:
        gpu_s = run.reported_wall_clock_s * _n_gpus(run)
    else:
        raise DomainError(f"published run {run.run!r} reports neither wall clock nor GPU-hours")
    return model_flops(run) / (peak_flop_per_s(run) * gpu_s)


@dataclass(frozen=True)
class RunComparison:
    """Predicted against reported for one run and one basis (units in the field names)."""

    run: PublishedRun
    basis: str
    model_flops: float
    mfu: float  # flopscalc-convention MFU used for the prediction
    predicted_wall_clock_s: float | None  # None when the run gives no GPU count
    predicted_gpu_hours: float
    compared: str  # "gpu_hours" or "wall_clock": which reported quantity the error is about
    reported: float  # that quantity, in GPU-h or s
    error: float  # predicted / reported - 1
    error_with_duty_cycle: float | None  # predicted / duty cycle / reported - 1, if a duty cycle is given
    device_noun: str = "GPU"  # "GPU", or "chip" for TPUs: the unit of the run's device-hours ("chip-h")

    @property
    def implied_duty_cycle(self) -> float:
        """Predicted / reported: the fraction of the reported time the prediction accounts for."""
        return 1.0 + self.error


def compare(run: PublishedRun, basis: str | None = None) -> RunComparison:
    """Predict ``run`` from one reported quantity and compare with its reported GPU-hours or wall clock."""
    basis = _basis(run, basis)
    gpu_h = predict_gpu_hours(run, basis)
    wall_s = None if run.n_gpus is None else predict_wall_clock_s(run, basis)
    if run.reported_gpu_hours is not None:  # GPU-hours first: they survive changes of GPU count mid-run
        compared, reported, predicted = "gpu_hours", run.reported_gpu_hours, gpu_h
    elif run.reported_wall_clock_s is not None:
        compared, reported = "wall_clock", run.reported_wall_clock_s
        predicted = predict_wall_clock_s(run, basis)
    else:
        raise DomainError(f"published run {run.run!r} reports neither wall clock nor GPU-hours to compare")
    duty = None if run.reported_duty_cycle is None else predicted / run.reported_duty_cycle / reported - 1.0
    return RunComparison(run, basis, model_flops(run), mfu(run, basis), wall_s, gpu_h, compared, reported,
                         predicted / reported - 1.0, duty, get_gpu(run.gpu).device_noun)


# ------------------------------------------------------------------ the CSV


def _parse(row: dict[str, str], where: str) -> PublishedRun:
    values: dict = {}
    for f in fields(PublishedRun):
        raw = (row.get(f.name) or "").strip()
        try:
            if f.name in _INT_FIELDS:
                values[f.name] = int(raw) if raw else None
            elif f.name in _FLOAT_FIELDS:
                values[f.name] = float(raw) if raw else None
            elif f.name in _BOOL_FIELDS:
                if raw.lower() not in ("", "true", "false"):
                    raise ValueError(raw)
                values[f.name] = None if not raw else raw.lower() == "true"
            else:
                values[f.name] = raw or None
        except ValueError:
            raise UsageError(f"{where}: column {f.name!r} is {raw!r}, which is not a valid value") from None
    for required in ("run", "kind", "model_shape", "n_tokens", "gpu", "precision", "flop_convention",
                     "wall_clock_includes_downtime", "source"):
        if values[required] is None:
            raise UsageError(f"{where}: required column {required!r} is empty")
    values["notes"] = values["notes"] or ""
    return PublishedRun(**values)


def read_published_runs(path: str | Path, text: str | None = None) -> tuple[PublishedRun, ...]:
    """Parse a published-runs CSV; a malformed row raises UsageError naming the file and line."""
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read published-runs file {str(path)!r}: {e.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    expected = [f.name for f in fields(PublishedRun)]
    if reader.fieldnames != expected:
        raise UsageError(f"{path}: header must be exactly: {','.join(expected)}")
    runs = tuple(_parse(row, f"{path}:{reader.line_num}") for row in reader)
    names = [r.run for r in runs]
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: run names repeat")
    return runs


@functools.lru_cache(maxsize=1)
def published_runs() -> tuple[PublishedRun, ...]:
    """The runs shipped in data/published_runs.csv, parsed once on first use."""
    packaged = resources.files("flopscalc") / "data" / "published_runs.csv"
    if packaged.is_file():  # installed wheel (needs the force-include described in docs/published_runs.md)
        return read_published_runs("published_runs.csv", packaged.read_text(encoding="utf-8"))
    repo = Path(__file__).resolve().parent.parent / "data" / "published_runs.csv"
    return read_published_runs(repo)


def get_run(name: str) -> PublishedRun:
    """One shipped run by its ``run`` name."""
    for r in published_runs():
        if r.run == name:
            return r
    names = ", ".join(r.run for r in published_runs())
    raise UsageError(f"unknown published run {name!r}; accepted: {names}")
