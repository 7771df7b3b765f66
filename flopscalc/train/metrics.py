"""Metrics log: one JSON object per optimizer step (JSON Lines), flushed as it goes, easy to plot.

``pandas.read_json(path, lines=True)`` reads it back. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ..jsonsafe import dumps, nonfinite_word


class MetricsLog:
    """Append step metrics to a JSONL file (a callback for `Trainer`); a resumed run appends."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, metrics) -> None:
        row = asdict(metrics) if is_dataclass(metrics) else dict(metrics)
        # a diverged step's loss is nan: JSON has no NaN (RFC 8259 sec. 6), so the value is null and
        # "<name>_nonfinite" says which it was ("nan", "inf", "-inf")
        flags = {f"{key}_nonfinite": nonfinite_word(value) for key, value in row.items()
                 if isinstance(value, float) and not math.isfinite(value)}
        self._file.write(dumps({**row, **flags}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
