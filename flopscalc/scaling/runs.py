"""`Runs`: a validated table of training runs (N, D, loss, optional FLOPs) to fit scaling laws to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from .laws import FLOPS_PER_PARAM_TOKEN


@dataclass(frozen=True)
class Runs:
    """Training runs: ``n_params`` (parameters), ``n_tokens`` (training tokens), ``loss`` (nats/token),
    ``c_flops`` (training FLOPs; 6ND when not given), ``source`` (file name, for messages) and
    ``lines`` (the file line of each run, for messages)."""

    n_params: np.ndarray
    n_tokens: np.ndarray
    loss: np.ndarray
    c_flops: np.ndarray
    source: str = "runs"
    lines: tuple[int, ...] = ()

    @classmethod
    def from_arrays(cls, n_params, n_tokens, loss, c_flops=None, source: str = "runs") -> Runs:
        n, d, l = (np.asarray(v, float).ravel() for v in (n_params, n_tokens, loss))
        if not (len(n) == len(d) == len(l)):
            raise UsageError(f"{source}: N, D and loss have different lengths ({len(n)}, {len(d)}, {len(l)})")
        c = FLOPS_PER_PARAM_TOKEN * n * d if c_flops is None else np.asarray(c_flops, float).ravel()
        runs = cls(n, d, l, c, source, tuple(range(1, len(n) + 1)))
        runs.validate()
        return runs

    def __len__(self) -> int:
        return len(self.loss)

    def _where(self, i: int) -> str:
        line = self.lines[i] if i < len(self.lines) else i + 1
        return f"{self.source}, line {line}"

    def validate(self) -> None:
        """Every value finite and positive; raises UsageError naming the run's line."""
        for name, arr in (("parameters", self.n_params), ("tokens", self.n_tokens), ("loss", self.loss),
                          ("FLOPs", self.c_flops)):
            bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
            if bad.size:
                i = int(bad[0])
                raise UsageError(f"{self._where(i)}: {name} must be a positive number, got {arr[i]}; "
                                 f"fix or remove that row ({bad.size} such row(s) in all)")

    def require_fit_ready(self, n_constants: int) -> None:
        """Enough runs and enough spread to fit ``n_constants`` constants, or a UsageError."""
        if len(self) <= n_constants:
            raise UsageError(f"{self.source}: {len(self)} run(s) cannot determine {n_constants} constants; "
                             f"give at least {n_constants + 1} runs (Chinchilla used 400+)")
        if np.unique(self.n_params).size < 2:
            raise UsageError(f"{self.source}: every run has the same parameter count "
                             f"({self.n_params[0]:.4g}); vary N to fit how loss depends on it")
        if np.unique(self.n_tokens).size < 2:
            raise UsageError(f"{self.source}: every run has the same token count "
                             f"({self.n_tokens[0]:.4g}); vary D to fit how loss depends on it")

    def subset(self, mask) -> Runs:
        idx = np.flatnonzero(mask)
        lines = tuple(self.lines[i] for i in idx) if self.lines else ()
        return Runs(self.n_params[idx], self.n_tokens[idx], self.loss[idx], self.c_flops[idx], self.source, lines)

    def drop_highest_loss(self, k: int) -> Runs:
        """These runs without the ``k`` highest-loss ones (Besiroglu et al. 2024, sec. 3, drop 5)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise UsageError(f"the number of highest-loss runs to exclude must be a whole number >= 0, got {k!r}; "
                             "e.g. --exclude-highest-loss 5 (Besiroglu et al. 2024)")
        if k == 0:
            return self
        if k >= len(self):
            raise UsageError(f"{self.source}: cannot exclude {k} of {len(self)} runs")
        keep = np.ones(len(self), bool)
        keep[np.argsort(self.loss)[len(self) - k:]] = False
        return self.subset(keep)


def seeded_rng(seed: int) -> np.random.Generator:
    """numpy's generator for a bootstrap ``seed``: a whole number >= 0 (numpy's SeedSequence refuses negatives)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"the bootstrap seed must be a whole number >= 0, got {seed!r}; e.g. --seed 0")
    return np.random.default_rng(seed)
