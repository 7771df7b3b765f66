"""Metrics log: one JSON object per optimizer step (JSON Lines), flushed as it goes, easy to plot.

``pandas.read_json(path, lines=True)`` reads it back. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path


class MetricsLog:
    """Append step metrics to a JSONL file (a callback for `Trainer`); a resumed run appends."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, metrics) -> None:
        row = asdict(metrics) if is_dataclass(metrics) else dict(metrics)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
