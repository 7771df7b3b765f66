"""GPU database: `GpuSpec` rows from ``data/gpu_specs.csv``, looked up by forgiving names.

The CSV is read once, lazily, with the standard library (no pandas at start-up). Peak rates in it
are dense (never the 2:4-sparsity figures) in TFLOP/s; memory capacity in GiB (vendors' "GB" for
device DRAM is binary: a "12 GB" card has 12 x 2^30 bytes); bandwidths in decimal GB/s.
A user's CSV with the same columns (any subset beyond the required ones) adds or overrides rows.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

from .errors import DomainError, UsageError
from .gpu_names import GpuNames
from .units import GIB, GIGA, TERA


class Precision(str, Enum):
    """Arithmetic a training run's matmuls use; picks the peak rate from the database."""

    fp32 = "fp32"  # FP32 on non-tensor units (CUDA cores / vector units)
    tf32 = "tf32"  # TF32 tensor cores
    bf16 = "bf16"  # BF16 tensor, FP32 accumulate (mixed-precision training's usual case)
    fp16 = "fp16"  # FP16 tensor, FP32 accumulate
    fp16_acc16 = "fp16-acc16"  # FP16 tensor, FP16 accumulate (GeForce: 2x the FP32-accumulate rate)
    fp8 = "fp8"  # FP8 tensor (FP32 accumulate on GeForce)


PRECISION_COLUMNS = {
    Precision.fp32: "fp32_tflop_per_s",
    Precision.tf32: "tf32_tflop_per_s",
    Precision.bf16: "bf16_tflop_per_s",
    Precision.fp16: "fp16_tflop_per_s",
    Precision.fp16_acc16: "fp16_acc16_tflop_per_s",
    Precision.fp8: "fp8_tflop_per_s",
}
PRECISION_HELP = {
    Precision.fp32: "FP32 (non-tensor)",
    Precision.tf32: "TF32 tensor",
    Precision.bf16: "BF16 tensor, FP32 accumulate",
    Precision.fp16: "FP16 tensor, FP32 accumulate",
    Precision.fp16_acc16: "FP16 tensor, FP16 accumulate",
    Precision.fp8: "FP8 tensor",
}
# Default precision: mixed-precision BF16 on tensor cores, FP32 accumulate (the usual training setup); every command
# that picks one (plan, step, memory, finetune) starts from it (`default_training_precision`).
DEFAULT_PRECISION = Precision.bf16
# Mixed precision on GPUs without BF16 (Volta V100, Turing T4): FP16 with FP32 master weights and loss scaling,
# the usual setup before BF16 arrived with Ampere (Micikevicius et al. 2018, "Mixed Precision Training", sec. 3).
FALLBACK_PRECISION = Precision.fp16
COLUMNS = [
    "key", "name", "aliases", "vendor", "segment", "architecture", "release_year", "memory_gib",
    "memory_type", "memory_bandwidth_gb_per_s", *PRECISION_COLUMNS.values(), "board_power_w",
    "launch_price_usd", "interconnect", "interconnect_gb_per_s", "source", "notes",
]
REQUIRED_COLUMNS = ("key", "name", "memory_gib")
NUMERIC_COLUMNS = (
    "release_year", "memory_gib", "memory_bandwidth_gb_per_s", *PRECISION_COLUMNS.values(),
    "board_power_w", "launch_price_usd", "interconnect_gb_per_s",
)
# Segments whose rows are not GPUs: their hours are counted in chip-hours, not GPU-hours.
NON_GPU_SEGMENTS = ("tpu", "accelerator")


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator: memory, bandwidth, dense peak rates, power, price and where they come from."""

    key: str
    name: str
    aliases: tuple[str, ...]
    vendor: str
    segment: str
    architecture: str
    release_year: int | None
    memory_bytes: float
    memory_type: str
    memory_bandwidth_bytes_per_s: float | None
    fp32_flop_per_s: float | None
    tf32_flop_per_s: float | None
    bf16_flop_per_s: float | None
    fp16_flop_per_s: float | None
    fp16_acc16_flop_per_s: float | None
    fp8_flop_per_s: float | None
    board_power_w: float | None
    launch_price_usd: float | None
    interconnect: str
    interconnect_bytes_per_s: float | None
    source: str
    notes: str
    origin: str  # file (and line) the row came from

    def peak_flop_per_s(self, precision: Precision | str) -> float:
        """Dense peak rate for ``precision`` (FLOP/s); DomainError if the database has none."""
        p = Precision(precision)
        value = getattr(self, p.name + "_flop_per_s")
        if value is None:
            have = ", ".join(q.value for q in Precision if getattr(self, q.name + "_flop_per_s") is not None)
            raise DomainError(
                f"{self.name} has no {PRECISION_HELP[p]} rate in the GPU database; available: {have}"
            )
        return value

    @property
    def device_noun(self) -> str:
        """What one device is called in counts and hours: 'chip' for TPUs and other non-GPU accelerators."""
        return "chip" if self.segment in NON_GPU_SEGMENTS else "GPU"

    def available_precisions(self) -> list[Precision]:
        return [p for p in Precision if getattr(self, p.name + "_flop_per_s") is not None]

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def default_training_precision(gpu: GpuSpec, default: Precision = DEFAULT_PRECISION) -> Precision | None:
    """The precision a run on ``gpu`` trains at when none is asked for: ``default`` where the card has its rate, else
    `FALLBACK_PRECISION` (FP16 with loss scaling) where it has that, else None. The one rule behind every command's
    default: `training_precision` (plan, plot, finetune) and `memory.precision.storage_precision` (step, memory)."""
    have = gpu.available_precisions()
    return next((p for p in (default, FALLBACK_PRECISION) if p in have), None)


def training_precision(gpu: GpuSpec, requested: Precision | str | None,
                       default: Precision) -> tuple[Precision, str | None]:
    """The precision to plan ``gpu`` at, and a note when it is not the default.

    ``requested`` None (the user chose none): ``default`` where ``gpu`` has it, else `FALLBACK_PRECISION`
    (FP16 mixed precision) with a note saying so. A requested precision ``gpu`` lacks is a DomainError (as
    `GpuSpec.peak_flop_per_s` raises) that suggests one it has. Raises UsageError when neither the default nor the fallback exists on ``gpu``.
    """
    have = gpu.available_precisions()
    have_text = ", ".join(p.value for p in have)
    preferred = default_training_precision(gpu, default)
    if requested is not None:
        p = Precision(requested)
        if p in have:
            return p, None
        better = preferred or have[0]
        raise DomainError(f"{gpu.name} has no {PRECISION_HELP[p]} rate in the GPU database; use --precision "
                         f"{better.value} ({PRECISION_HELP[better]}); available: {have_text}")
    if preferred is default:
        return default, None
    # the note and the error name the card's rates, not --precision values: plan and plot take these names, but
    # memory, step and finetune spell theirs differently (bf16-mixed, fp16-mixed) and word their own notes
    if preferred is FALLBACK_PRECISION:
        return FALLBACK_PRECISION, (
            f"{gpu.name} has no {PRECISION_HELP[default]} rate, so {FALLBACK_PRECISION.value} mixed precision is used "
            f"({PRECISION_HELP[FALLBACK_PRECISION]}, with loss scaling); choose another with --precision (the card's "
            f"rates in the GPU database: {have_text})")
    raise UsageError(f"{gpu.name} has neither {default.value} nor {FALLBACK_PRECISION.value} in the GPU database; "
                     f"choose a precision it has with --precision (the card's rates in the GPU database: "
                     f"{have_text})")


def _number(raw: str, column: str, where: str) -> float | None:
    raw = raw.strip()
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{where}: column {column!r} is {raw!r}, expected a number or an empty cell") from None
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{where}: column {column!r} is {raw!r}, expected a positive finite number")
    return value


def _row_to_spec(row: dict[str, str], where: str) -> GpuSpec:
    for col in REQUIRED_COLUMNS:
        if not (row.get(col) or "").strip():
            raise UsageError(f"{where}: required column {col!r} is empty")
    num = {c: _number(row.get(c) or "", c, where) for c in NUMERIC_COLUMNS}
    if not any(num[c] for c in PRECISION_COLUMNS.values()):
        raise UsageError(f"{where}: no peak rate given; fill at least one of {', '.join(PRECISION_COLUMNS.values())}")

    def scaled(col: str, unit: float) -> float | None:
        return None if num[col] is None else num[col] * unit

    text = {c: (row.get(c) or "").strip() for c in ("key", "name", "vendor", "segment", "architecture",
                                                    "memory_type", "interconnect", "source", "notes")}
    return GpuSpec(
        key=text["key"].lower(),
        name=text["name"],
        aliases=tuple(a.strip() for a in (row.get("aliases") or "").split(";") if a.strip()),
        vendor=text["vendor"],
        segment=text["segment"],
        architecture=text["architecture"],
        release_year=int(num["release_year"]) if num["release_year"] else None,
        memory_bytes=num["memory_gib"] * GIB,
        memory_type=text["memory_type"],
        memory_bandwidth_bytes_per_s=scaled("memory_bandwidth_gb_per_s", GIGA),
        fp32_flop_per_s=scaled("fp32_tflop_per_s", TERA),
        tf32_flop_per_s=scaled("tf32_tflop_per_s", TERA),
        bf16_flop_per_s=scaled("bf16_tflop_per_s", TERA),
        fp16_flop_per_s=scaled("fp16_tflop_per_s", TERA),
        fp16_acc16_flop_per_s=scaled("fp16_acc16_tflop_per_s", TERA),
        fp8_flop_per_s=scaled("fp8_tflop_per_s", TERA),
        board_power_w=num["board_power_w"],
        launch_price_usd=num["launch_price_usd"],
        interconnect=text["interconnect"],
        interconnect_bytes_per_s=scaled("interconnect_gb_per_s", GIGA),
        source=text["source"] or f"user file {where}",
        notes=text["notes"],
        origin=where,
    )


def read_gpu_csv(path: str | Path, text: str | None = None) -> list[GpuSpec]:
    """Parse a GPU CSV; a malformed row raises UsageError naming the file and line."""
    path = Path(path)
    if text is None:
        from .textfile import read_csv_text

        text = read_csv_text(path, "GPU file")
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}; the header must name at least "
                         f"{', '.join(REQUIRED_COLUMNS)} and one peak-rate column")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise UsageError(f"{path}: unknown column(s) {', '.join(unknown)}; accepted: {', '.join(COLUMNS)}")
    specs, seen = [], {}
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row:
            raise UsageError(f"{where}: more cells than the header has columns")
        spec = _row_to_spec(row, where)
        if spec.key in seen:
            raise UsageError(f"{where}: key {spec.key!r} repeats line {seen[spec.key]}")
        seen[spec.key] = reader.line_num
        specs.append(spec)
    return specs


class GpuDatabase:
    """GPU rows by key, with a forgiving but never guessing name lookup (`get`)."""

    def __init__(self, specs: list[GpuSpec]):
        self.specs: dict[str, GpuSpec] = {s.key: s for s in specs}

    @functools.cached_property
    def _names(self) -> GpuNames:
        """The name index (`gpu_names.GpuNames`), built on the first lookup (a listing needs none)."""
        return GpuNames(self.specs)

    def __iter__(self):
        return iter(self.specs.values())

    def __len__(self) -> int:
        return len(self.specs)

    def with_rows(self, specs: list[GpuSpec]) -> GpuDatabase:
        """A new database with ``specs`` added, replacing rows of the same key."""
        merged = dict(self.specs)
        merged.update({s.key: s for s in specs})
        return GpuDatabase(list(merged.values()))

    def get(self, name: str) -> GpuSpec:
        """Find a GPU by key, name or declared alias, forgivingly spelt, never guessed (`gpu_names.GpuNames.get`).
        Raises UsageError (one line)."""
        return self._names.get(name)

    def family_variants(self, name: str) -> tuple[str, ...] | None:
        """The other rows of the family when ``name`` is a family name, else None
        (`gpu_names.GpuNames.family_variants`)."""
        return self._names.family_variants(name)

def _builtin_csv_text() -> tuple[str, str]:
    here = Path(__file__).resolve().parent
    packaged = here / "data" / "gpu_specs.csv"
    if packaged.is_file():  # installed wheel: the CSV is force-included into the package
        return packaged.read_text(encoding="utf-8"), "gpu_specs.csv"
    if not here.is_dir():  # imported from a zip: importlib.resources reads it (slow to import, so only here)
        from importlib import resources

        zipped = resources.files("flopscalc") / "data" / "gpu_specs.csv"
        return zipped.read_text(encoding="utf-8"), "gpu_specs.csv"
    repo = here.parent / "data" / "gpu_specs.csv"  # source tree / editable install
    return repo.read_text(encoding="utf-8"), str(repo)


@functools.lru_cache(maxsize=1)
def builtin_database() -> GpuDatabase:
    """The GPU database shipped with flopscalc, parsed once on first use."""
    text, where = _builtin_csv_text()
    return GpuDatabase(read_gpu_csv(where, text))


def load_database(extra_csv: list[str | Path] | tuple = ()) -> GpuDatabase:
    """The shipped database plus the rows of each user CSV in ``extra_csv`` (later files win)."""
    db = builtin_database()
    for path in extra_csv:
        db = db.with_rows(read_gpu_csv(path))
    return db


def get_gpu(name: str, extra_csv: list[str | Path] | tuple = ()) -> GpuSpec:
    """Look up one GPU by key, name or alias, forgivingly spelt (``4070ti``, ``RTX 4070 Ti``, ``rtx-4070-ti``)."""
    return load_database(extra_csv).get(name)
