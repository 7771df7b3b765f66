"""Published parallel training runs (``data/published_layouts.csv``) against the layout model.

Rows: Korthikanti et al. 2022 Table 5 iteration times (22B-1T, full recompute vs sequence parallel + selective),
Narayanan et al. 2021 Table 1 achieved teraFLOP/s per GPU (1.7B-1T; turned into the iteration time it implies
with their eq. 3 FLOPs), Dubey et al. 2024 Table 4 (Llama 3 405B, BF16 MFU).

The one fitted number, `MEGATRON_SUSTAINED_FRACTION`, is fitted on the Narayanan Table 1 rows only (the grid value
whose median predicted / published time is closest to 1); the Korthikanti and Llama 3 rows are held out. The reverse
fold (`HELD_OUT_FOLDS`) fits the same number on the Korthikanti rows only and holds the Narayanan rows out, so each
table has an out-of-sample error (docs/parallelism.md, "Which rows are in-sample").
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from ..flops import Recompute, convention_flops_per_token
from ..memory.precision import MemoryPrecision
from ..model import ModelConfig
from ..perf import StepOptions
from ..perf.utilization import model_flops_utilization
from ..units import TERA
from .cluster import cluster_for
from .spec import Layout
from .stage_cost import MEGATRON_SUSTAINED_FRACTION
from .time import LayoutTime, layout_time

FIT_SUBSET = "narayanan-t1"  # the rows the shipped MEGATRON_SUSTAINED_FRACTION is fitted on
KORTHIKANTI_SUBSET = "korthikanti-t5"
# Two-fold cross-validation over the two Megatron-LM sources: (rows the fraction is fitted on, rows held out).
HELD_OUT_FOLDS = ((FIT_SUBSET, KORTHIKANTI_SUBSET), (KORTHIKANTI_SUBSET, FIT_SUBSET))
# How a source counts the model FLOPs of its MFU: Dubey et al. 2024 sec. 3.3.2 defines MFU after Chowdhery et al.
# (PaLM), App. B: 6N + 12 L H Q T per token, the attention core counted dense (not halved for the causal mask);
# at Llama 3's 128K sequence that is 1.40x the causal count `LayoutTime.mfu` uses, at 8K 1.04x.
MFU_CONVENTION_BY_TABLE = {"llama3-t4": "palm"}
# Llama 3's interleaving degree, not printed but implied by Dubey et al. 2024 sec. 3.3.2: "the first model chunk on
# the first stage has only the embedding" after removing one layer from that stage, so a chunk is one layer, and
# 126 layers + embedding + loss fill 16 stages x 8 one-layer chunks. (data/published_layouts.csv still says 1.)
LLAMA3_INTERLEAVE_IMPLIED = 8


def narayanan_flops_per_iteration(batch: int, seq: int, n_layer: int, d: int, vocab: int) -> float:
    """FLOPs of one iteration with full recomputation: 96 B s l h^2 (1 + s/6h + V/16lh) (Narayanan 2021, eq. 3)."""
    return 96 * batch * seq * n_layer * d**2 * (1 + seq / (6 * d) + vocab / (16 * n_layer * d))


@dataclass(frozen=True)
class PublishedLayout:
    name: str
    table: str
    cfg: ModelConfig
    layout: Layout
    gpu_key: str
    seq_len: int
    precision: MemoryPrecision
    flash: bool
    metric: str  # iteration_s, tflop_per_s_per_gpu or mfu
    published: float
    source: str

    def predict(self, sustained: float | None = None, layout: Layout | None = None) -> LayoutTime:
        from ..hardware import get_gpu

        layout = layout or self.layout
        cluster = cluster_for(get_gpu(self.gpu_key), layout.n_gpus)
        opts = StepOptions(sustained_fraction=sustained or MEGATRON_SUSTAINED_FRACTION)
        return layout_time(self.cfg, layout, cluster, self.seq_len, precision=self.precision, flash=self.flash,
                           options=opts)

    def published_step_s(self) -> float | None:
        """The iteration time the row states or implies (s); None for an MFU row."""
        if self.metric == "iteration_s":
            return self.published
        if self.metric == "tflop_per_s_per_gpu":
            f = narayanan_flops_per_iteration(self.layout.sequences_per_step(), self.seq_len, self.cfg.n_layer,
                                              self.cfg.n_embd, self.cfg.vocab_size)
            return f / (self.published * TERA * self.layout.n_gpus)
        return None

    def predicted_mfu(self, pred: LayoutTime) -> float:
        """MFU of a prediction counted as the source counts it (`MFU_CONVENTION_BY_TABLE`; else causal exact)."""
        convention = MFU_CONVENTION_BY_TABLE.get(self.table)
        if convention is None:
            return pred.mfu
        flops = convention_flops_per_token(self.cfg, convention, self.seq_len)
        return model_flops_utilization(flops, pred.tokens_per_s, self.layout.n_gpus, pred.peak_flop_per_s)

    def error(self, sustained: float | None = None, layout: Layout | None = None) -> float:
        """Relative error of the prediction: iteration time, or MFU for an MFU row (predicted / published - 1).
        ``layout`` replaces the row's (the schedules a source implies but does not print)."""
        pred = self.predict(sustained, layout)
        ref = self.published_step_s()
        return pred.step_s / ref - 1 if ref is not None else self.predicted_mfu(pred) / self.published - 1


def _csv_path() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "published_layouts.csv"


@functools.lru_cache(maxsize=1)
def published_layouts() -> tuple[PublishedLayout, ...]:
    rows = []
    with open(_csv_path(), encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            kv = int(r["n_kv_head"]) if r["n_kv_head"] else None
            ffn = int(r["ffn_dim"]) if r["ffn_dim"] else None
            llama = kv is not None
            cfg = ModelConfig(n_layer=int(r["n_layer"]), n_head=int(r["n_head"]), n_embd=int(r["n_embd"]),
                              vocab_size=int(r["vocab_size"]), block_size=int(r["seq_len"]), name=r["name"],
                              n_kv_head=kv, ffn_dim=ffn, **({"mlp": "swiglu", "norm": "rmsnorm", "position": "rope",
                                                                 "bias": False, "tie_embeddings": False} if llama else {}))
            n, t, p, cp, b = (int(r[k]) for k in ("n_gpus", "tp", "pp", "cp", "micro_batch"))
            dp = n // (t * p * cp)
            layout = Layout(tp=t, pp=p, dp=dp, cp=cp, interleave=int(r["interleave"]),
                            sequence_parallel=r["sequence_parallel"] == "true", zero_stage=int(r["zero_stage"]),
                            micro_batch=b, n_micro=int(r["global_batch"]) // (b * dp),
                            recompute=Recompute(r["recompute"]), dp_overlap=r["dp_overlap"] == "true",
                            grad_accum_fusion=r["grad_accum_fusion"] == "true")
            rows.append(PublishedLayout(r["name"], r["source_table"], cfg, layout, r["gpu"], int(r["seq_len"]),
                                        MemoryPrecision(r["precision"]), r["flash"] == "true", r["metric"],
                                        float(r["published"]), r["source"]))
    return tuple(rows)


def rows_of(table: str) -> tuple[PublishedLayout, ...]:
    """The published rows of one source table (``source_table`` column)."""
    return tuple(r for r in published_layouts() if r.table == table)


def fit_sustained_fraction(rows, grid=None) -> float:
    """Sustained fraction whose median predicted/published iteration time over ``rows`` is closest to 1."""
    import statistics

    grid = grid or [x / 100 for x in range(70, 101)]
    return min(grid, key=lambda s: abs(statistics.median(r.error(s) for r in rows)))
