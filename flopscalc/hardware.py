"""GPU database: `GpuSpec` rows from ``data/gpu_specs.csv``, looked up by forgiving names.

The CSV is read once, lazily, with the standard library (no pandas at start-up). Peak rates in it
are dense (never the 2:4-sparsity figures) in TFLOP/s; memory capacity in GiB (vendors' "GB" for
device DRAM is binary: a "12 GB" card has 12 x 2^30 bytes); bandwidths in decimal GB/s.
A user's CSV with the same columns (any subset beyond the required ones) adds or overrides rows.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import re
import unicodedata
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

from .errors import DomainError, UsageError
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
# Words dropped before matching names: brands and product-line words users add or leave out.
BRAND_WORDS = {"nvidia", "geforce", "amd", "instinct", "google", "cloud", "radeon", "tesla", "intel", "habana",
               "aws", "amazon"}


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


# Characters a GPU name may hold after NFKC normalisation and case folding: letters, digits, spaces and the
# separators vendors use ("RTX 4070 Ti", "a100-sxm-80gb", "B200 (HGX B200, 180GB)"). Anything else is refused
# with a suggestion rather than dropped, so "h100\U0001f4a5" is not silently read as an H100.
NAME_SEPARATORS = frozenset(" \t-_.,/()+")
NAME_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def fold_name(text: str) -> str:
    """NFKC-normalise and case-fold a GPU name: full-width 'ＲＴＸ４０９０' -> 'rtx4090'."""
    return unicodedata.normalize("NFKC", text).casefold()


def junk_characters(text: str) -> list[str]:
    """Characters of ``text`` (after `fold_name`) that no GPU name uses, in order of appearance."""
    folded = fold_name(text)
    return list(dict.fromkeys(c for c in folded if c not in NAME_LETTERS and c not in NAME_SEPARATORS
                              and not c.isspace()))


def _norm_tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", fold_name(text)) if t not in BRAND_WORDS]


def normalize_name(text: str) -> str:
    """Folded, brand words dropped, separators removed: 'RTX 4070 Ti' -> 'rtx4070ti'."""
    return "".join(_norm_tokens(text))


def token_bag(text: str) -> str:
    """Order-free form: words split at letter/digit boundaries, sorted: 'A100 80GB SXM' == 'a100-sxm-80gb'."""
    parts = re.findall(r"[a-z]+|[0-9]+", " ".join(_norm_tokens(text)))
    return " ".join(sorted(parts))


def _name_forms(spec: GpuSpec) -> set[str]:
    forms = {normalize_name(spec.key), normalize_name(spec.name)}
    forms |= {normalize_name(a) for a in spec.aliases}
    # GeForce/RTX names are typed without the 'rtx': '4070ti', '3090'
    forms |= {f[3:] for f in list(forms) if re.match(r"rtx\d", f)}
    return {f for f in forms if f}


def model_number(text: str) -> str | None:
    """The first word of a GPU name with a digit in it, brand words dropped (None if it has none): 'Tesla
    V100-SXM2-16GB' -> 'v100', 'NVIDIA A10G' -> 'a10g', 'NVIDIA GH200 480GB' -> 'gh200'."""
    return next((t for t in _norm_tokens(text) if any(c.isdigit() for c in t)), None)


def _words(text: str) -> set[str]:
    """Whole words of a name, split at letter/digit boundaries: 'H100 SXM5' -> {'h', '100', 'sxm', '5'}."""
    return set(token_bag(text).split())


def default_training_precision(gpu: GpuSpec, default: Precision = DEFAULT_PRECISION) -> Precision | None:
    """The precision a run on ``gpu`` trains at when none is asked for: ``default`` where the card has its rate, else
    `FALLBACK_PRECISION` (FP16 with loss scaling) where it has that, else None. The one rule behind every command's
    default: `training_precision` (plan, plot, finetune) and `memory.settings.storage_precision` (step, memory)."""
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
    def _forms(self) -> dict[str, list[str]]:
        """Normalised key/name/alias -> the rows that declare it; built on the first lookup (a listing needs none)."""
        forms: dict[str, list[str]] = {}
        for s in self.specs.values():
            for f in _name_forms(s):
                forms.setdefault(f, []).append(s.key)
        return forms

    @functools.cached_property
    def _bags(self) -> dict[str, list[str]]:
        """`_forms` order-free (`token_bag`)."""
        bags: dict[str, list[str]] = {}
        for s in self.specs.values():
            for text in (s.key, s.name, *s.aliases):
                if token_bag(text):
                    keys = bags.setdefault(token_bag(text), [])
                    if s.key not in keys:
                        keys.append(s.key)
        return bags

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
        """Find a GPU by key, name or declared alias.

        Case, full-width characters (NFKC), spaces, hyphens, brand words and word order are ignored; the
        name must otherwise match whole: a prefix ('h20' of 'h200') or a name with characters no GPU name
        uses ('h100' plus an emoji) is refused with a suggestion, and a name two rows declare is refused
        as ambiguous. Raises UsageError (one line).
        """
        junk = junk_characters(name)
        if junk:
            shown = " ".join(repr(c) for c in junk)
            raise UsageError(f"GPU name {name!r} contains {shown}, which no GPU name uses (letters, digits, spaces "
                             f"and - _ . , / ( ) +){self._hint(name)}")
        keys = self._forms.get(normalize_name(name)) or self._bags.get(token_bag(name)) or []
        if len(keys) == 1:
            return self.specs[keys[0]]
        if len(keys) > 1:
            raise UsageError(f"GPU name {name!r} is ambiguous: it names {' and '.join(keys)}; give one of those keys")
        raise UsageError(f"unknown GPU {name!r}{self._hint(name)}")

    def family_variants(self, name: str) -> tuple[str, ...] | None:
        """The other rows of the family when ``name`` is a family name one row lists as an alias, else None.

        A family name ('a100', 'h100', '3060') keeps the model number of the resolved row's key and leaves out words
        its key or name holds (a size, a form factor: 'a100' of 'a100-sxm-80gb'); it still names that one row, never
        another product. The tuple holds the keys of the other rows whose key, name or an alias holds every word of
        ``name`` (empty: no other variant is in the database). None when ``name`` is the row's key or names it whole
        ('4090' for 'rtx-4090', 'h20'), or is another spelling of it: a word the row's key and name lack
        ('a100-pcie-80g', 'tpuv4', 'trn2'), or a codename without the model number ('grace-hopper' of 'gh200').
        """
        spec = self.get(name)
        words = _words(name)
        key_words = _words(spec.key)
        if not (key_words - words - {"rtx"}):  # GeForce names are typed without the 'rtx' ('4070ti')
            return None
        if not words < key_words | _words(spec.name) or not any(w.isdigit() for w in words & key_words):
            return None  # a spelling of the one product, not a family of several
        return tuple(k for k, s in self.specs.items() if k != spec.key
                     and any(words <= _words(t) for t in (s.key, s.name, *s.aliases)))

    def _hint(self, name: str) -> str:
        """'; did you mean X or Y?' from whole-word, prefix and spelling neighbours of ``name``."""
        cleaned = "".join(c if c in NAME_LETTERS or c in NAME_SEPARATORS else " " for c in fold_name(name))
        q = normalize_name(cleaned)
        if not q:
            return "; run 'flopscalc gpus' to list them"
        exact = self._forms.get(q) or self._bags.get(token_bag(cleaned)) or []
        if exact:  # the name without its junk characters is a GPU's
            return f"; did you mean {' or '.join(exact)}?"
        words = _words(cleaned)
        subset = [k for k, s in self.specs.items()
                  if any(words <= _words(t) for t in (s.key, s.name, *s.aliases))]
        prefixed = sorted({k for f, ks in self._forms.items() if f.startswith(q) for k in ks})
        close = difflib.get_close_matches(q, list(self._forms), n=3, cutoff=0.6)
        keys = list(dict.fromkeys([*subset, *prefixed, *(k for c in close for k in self._forms[c])]))[:5]
        return f"; did you mean {' or '.join(keys)}?" if keys else "; run 'flopscalc gpus' to list them"


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
