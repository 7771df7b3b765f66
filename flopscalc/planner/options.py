"""One candidate model under a budget: the training setup that fits, its speed, its tokens and its loss.

The planner (``planner/search.py``) calls `_evaluate` for a handful of model sizes around the scaling law's
compute-optimal N and for the GPT-2 presets, then recommends the one with the lowest predicted loss among
those that fit. The setup search itself (`choose_setup`, `searched_setups`, `min_gpus_to_plan`) is in
``planner/setups.py``, re-exported here; this module holds what it returns and how fast a setup runs.
Everything here is a pure function of frozen inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ..errors import UsageError
from ..flops import Recompute, training_flops_per_token
from ..hardware import GpuSpec, Precision
from ..memory import MemoryPrecision, TrainingSetup
from ..memory.precision import MEMORY_PRECISION  # noqa: F401  (re-exported: the planner modules import it from here)
from ..memory.settings import grad_wire_bytes_per_param
from ..model import ALL_PRESETS, PRESETS, ModelConfig, count_params, params_outside_blocks
from ..perf.offload import OffloadTime, host_link_bytes_per_s, offload_time
from ..perf.parallel import (
    CommEstimate,
    data_parallel_comm,
    fsdp_unit_count,
    hiding_window_s,
    scaling_efficiency,
)

if TYPE_CHECKING:
    from .growth import BatchGrowth

# Tokens per optimizer step by model size, from GPT-3's Table 2.1 (Brown et al. 2020): 0.5M tokens for
# 125M-760M, 1M for 1.3B-2.7B, 2M for 6.7B-13B, 3.2M at 175B; bounds between rows at round numbers
# (upper N bound, tokens per step).
GPT3_TOKENS_PER_STEP = ((1.0e9, 2**19), (4.0e9, 2**20), (5.0e10, 2**21), (math.inf, 3 * 2**20))
# Memory kept free when planning: the estimator's stated accuracy target is 10% of the measured peak
# (issue 3); half of that as margin keeps plans from sitting on the edge of the card.
PLAN_MEMORY_HEADROOM = 0.05


def usable_bytes(capacity_bytes: float) -> float:
    """Memory a plan may fill on a GPU of ``capacity_bytes``: all but `PLAN_MEMORY_HEADROOM`."""
    return capacity_bytes * (1 - PLAN_MEMORY_HEADROOM)
# A preset is "nearest" only within this factor in parameters: the presets themselves are spaced by about 2x
# (124M, 355M, 774M, 1.56B), so beyond it the name would describe a different model (a 32.7B model is not
# "nearly gpt2-xl").
NEAREST_PRESET_FACTOR = 2.0
# Most GPUs searched when a model fits none of the given count.
MAX_GPUS_SEARCHED = 4096


@lru_cache(maxsize=4096)
def _n_params(cfg: ModelConfig) -> int:
    """All parameters of ``cfg`` (`count_params`), kept: the search asks for them dozens of times per model."""
    return count_params(cfg).total


def target_tokens_per_step(n_params: float) -> int:
    """Tokens per optimizer step for a model of ``n_params`` parameters (GPT-3 Table 2.1)."""
    return next(tokens for bound, tokens in GPT3_TOKENS_PER_STEP if n_params < bound)


def same_model(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether ``a`` and ``b`` are one model whatever their names and contexts: the same block, shape and exact
    parameter count (a config.json of Qwen2.5-7B and the qwen2.5-7b preset differ only in the pretraining length
    the preset states; Llama 3.1 8B's config.json says ``attention_bias: false`` where the preset leaves it unset)."""
    def key(c: ModelConfig) -> tuple:
        return (c.n_layer, c.n_head, c.n_embd, c.d_kv, c.n_inner, c.vocab_size, c.mlp, c.norm, c.pos,
                c.tie_embeddings, c.n_expert, c.top_k, c.n_shared_expert, c.parallel_block, c.attn_window)

    return key(a) == key(b) and count_params(a).total == count_params(b).total


def _nearest(n_params: float, presets: dict[str, ModelConfig]) -> str | None:
    """The preset of ``presets`` closest in log(parameters), if within NEAREST_PRESET_FACTOR."""
    if not presets:
        return None
    name = min(presets, key=lambda k: abs(math.log(_n_params(presets[k]) / n_params)))
    ratio = _n_params(presets[name]) / n_params
    return name if 1 / NEAREST_PRESET_FACTOR <= ratio <= NEAREST_PRESET_FACTOR else None


def nearest_preset(n_params: float, presets: dict[str, ModelConfig] | None = None,
                   model: ModelConfig | None = None) -> str | None:
    """The preset of ``presets`` (default: GPT-2's) closest in log(parameters), or None when none is within
    NEAREST_PRESET_FACTOR. A ``model`` that is itself a preset (any family's, by name, else `same_model`) is its own
    nearest: llama-3-70b is planned in the llama-3.1 family, whose 70B has its parameters, and a config.json of
    Qwen2.5-7B is the qwen2.5-7b preset. A model outside every family (``presets`` empty: Qwen, Mixtral, a
    config.json of another kind) is compared with every preset of its architecture, then every preset of its kind
    (dense or mixture of experts)."""
    if model is not None:
        if ALL_PRESETS.get(model.name) == model:
            return model.name
        same = [name for name, cfg in ALL_PRESETS.items() if same_model(cfg, model)]
        if same:  # Llama 3 and 3.1 8B are one shape: the one of the model's context and RoPE base
            return max(same, key=lambda k: (ALL_PRESETS[k].block_size == model.block_size,
                                            ALL_PRESETS[k].rope_theta == model.rope_theta))
    from .family import _block_kind  # the family's test of one architecture (`family.model_family`)

    presets = PRESETS if presets is None else presets
    if presets or model is None:
        return _nearest(n_params, presets)
    return (_nearest(n_params, {k: c for k, c in ALL_PRESETS.items() if _block_kind(c) == _block_kind(model)})
            or _nearest(n_params, {k: c for k, c in ALL_PRESETS.items() if c.is_moe == model.is_moe}))


@dataclass(frozen=True)
class ChosenSetup:
    """The training configuration that fits, and its shape of a step."""

    setup: TrainingSetup  # micro-batch, grad accumulation, precision, optimizer, recompute, ZeRO, offload
    peak_memory_bytes: float
    capacity_bytes: float
    max_micro_batch: int
    tokens_per_step: int
    cpu_offload_bytes: float = 0.0  # host memory per GPU for the offloaded optimizer (0 without offload)
    layout: object = None  # layout.Layout when the layout search chose it (`planner.layout`); None: data parallel
    layouts: object = field(default=None, compare=False, repr=False)  # layout.search.LayoutSearch: the ranking


def _per_gpu_batch(cfg: ModelConfig, seq_len: int, n_gpus: int, tokens_per_step: int | None = None) -> int:
    """Sequences per GPU per optimizer step: ``tokens_per_step`` (default GPT-3's), the same for every setup
    searched."""
    tokens = target_tokens_per_step(_n_params(cfg)) if tokens_per_step is None else tokens_per_step
    return max(1, tokens // (seq_len * n_gpus))


class StepRates:
    """What both step speeds (`Throughput` here, `planner.layout.LayoutSpeed`) derive from their step the same way:
    rates, MFU, HFU and scaling efficiency. A subclass has ``step_s``, ``compute_s``, ``comm``,
    ``tokens_per_step``, ``model_flops_per_token``, ``hardware_flops_per_token``, ``n_gpus``,
    ``peak_flop_per_s_per_gpu`` and ``flash_recompute_flops_per_token``."""

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second while busy, all GPUs together."""
        return self.tokens_per_step / self.step_s

    @property
    def model_flop_per_s(self) -> float:
        """Model FLOPs per second while busy, all GPUs together."""
        return self.tokens_per_s * self.model_flops_per_token

    @property
    def scaling_efficiency(self) -> float:
        return scaling_efficiency(self.compute_s, self.comm)

    @property
    def mfu(self) -> float:
        """Model FLOPs utilization: model FLOPs (no recomputation) over peak x step time (Chowdhery et al. 2022,
        App. B); the step time includes exposed communication and offload."""
        from ..perf.utilization import model_flops_utilization  # here: `perf` is slow to import

        return model_flops_utilization(self.model_flops_per_token, self.tokens_per_step / self.step_s, self.n_gpus,
                                       self.peak_flop_per_s_per_gpu)  # PaLM App. B

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilization: as `mfu` with recomputation counted (Korthikanti et al. 2022, sec. 5),
        FlashAttention's backward recomputation of the scores included (``flash_recompute_flops_per_token``)."""
        from ..perf.utilization import model_flops_utilization  # here: `perf` is slow to import

        executed = self.hardware_flops_per_token + self.flash_recompute_flops_per_token
        return model_flops_utilization(executed, self.tokens_per_step / self.step_s, self.n_gpus,
                                       self.peak_flop_per_s_per_gpu)  # Korthikanti et al. 2022, sec. 5


@dataclass(frozen=True)
class Throughput(StepRates):
    """Speed of one optimizer step on ``n_gpus`` GPUs."""

    compute_s: float  # per step, all micro-batches, hardware FLOPs at the hardware efficiency
    comm: CommEstimate
    tokens_per_step: int
    model_flops_per_token: float
    hardware_flops_per_token: float  # with recomputation
    hardware_efficiency: float  # hardware FLOP/s over peak while computing (= MFU of a step without recompute)
    offload: OffloadTime  # host link + CPU optimizer step under optimizer offload (zero without)
    n_gpus: int
    peak_flop_per_s_per_gpu: float  # dense peak at the plan's precision
    flash_recompute_flops_per_token: float = 0.0  # FlashAttention's backward recomputation of the scores (HFU only)

    @property
    def step_s(self) -> float:
        return self.compute_s + self.comm.cost_s + self.offload.total_s  # cost: exposed + overlap slowdown


# The plan's MFU convention, named wherever it prints an MFU or HFU: attention counted dense (PaLM App. B's 12 L H Q T,
# as its laws and FlopCounterMode count it), or the window's causal pairs where a sliding window binds
# (`_training_flops`). `flopscalc step` counts the causal pairs (llm.c's 6N + 6LCT): 1.125x fewer FLOPs for Llama 3 8B
# at sequence 8192, so its MFU is that much lower for the same step time.
MFU_DENSE_CONVENTION = "dense attention, PaLM App. B"
MFU_WINDOW_CONVENTION = "causal attention in the sliding window"
# Above this relative gap between the plan's MFU and the causal one, a report prints both: half of the last printed
# digit of an MFU near 0.5 at two decimals (0.005 / 0.5); our judgement of "material", not a published figure.
MFU_CONVENTION_GAP_REL = 0.01


def window_binds(cfg: ModelConfig, seq_len: int) -> bool:
    """Whether a sliding window shorter than the sequence limits the keys a query sees (Mistral 7B, Jiang et al.
    2023, sec. 2): then the plan counts the window's causal pairs (`_training_flops`)."""
    return cfg.attn_window is not None and cfg.attn_window < seq_len


def flash_recompute(flops, flash: bool) -> float:
    """FLOPs per token FlashAttention's backward recomputes beyond ``flops``' hardware FLOPs (0 without flash)."""
    return flops.executed_flops_per_token(flash) - flops.hardware_flops_per_token


@lru_cache(maxsize=1024)
def _training_flops(cfg: ModelConfig, seq_len: int, recompute: Recompute):
    """`training_flops_per_token` in the plan's convention, kept: the search times dozens of setups of one model.

    Attention is counted dense, every query over all T keys (PaLM App. B's 12 L H Q T, as the laws and
    FlopCounterMode count it), except under a sliding window shorter than the sequence: every kernel the plan prices
    (`perf.step`, `layout.time`) skips the pairs outside the window, and the dense T x T would credit the GPUs with
    work no kernel does (Mistral 7B at sequence 32,768 on 8 H100s: MFU 0.74 and HFU 0.99 for a step the
    per-operation model prices at HFU 0.51). The plan then counts the window's causal pairs, as `step` does."""
    return training_flops_per_token(cfg, seq_len, recompute=recompute, causal=window_binds(cfg, seq_len))


@lru_cache(maxsize=4096)
def _offload_time(cfg: ModelConfig, setup: TrainingSetup, link_bytes_per_s: float) -> OffloadTime:
    """`offload_time`, kept: the search prices each offloading setup of a model more than once (a pure function)."""
    return offload_time(cfg, setup, link_bytes_per_s=link_bytes_per_s)


def throughput(cfg: ModelConfig, setup: TrainingSetup, tokens_per_step: int, gpu: GpuSpec, precision: Precision,
               efficiency: float) -> Throughput:
    """Step time from FLOPs and efficiency, plus the communication backward does not hide and the host link
    and CPU optimizer step of offload (`flopscalc.perf.offload`).

    ``efficiency`` is the GPU's hardware efficiency while computing: the MFU of a step without recomputation,
    which is what `--mfu` and the default state. With recomputation the GPU runs the extra forward at the same
    rate, so the step's MFU drops by model/hardware FLOPs while its HFU stays (Korthikanti et al. 2022, sec. 5).
    """
    s = setup
    seq_len = s.seq_len
    mfu = efficiency
    flops = _training_flops(cfg, seq_len, s.recompute)
    peak = gpu.peak_flop_per_s(precision)
    tokens_per_gpu = tokens_per_step / s.n_gpus
    from ..perf.utilization import seconds_at_utilization  # here: `perf` is slow to import

    # per GPU (n_gpus=1): each GPU does its share of the step's FLOPs
    compute_s = seconds_at_utilization(tokens_per_gpu * flops.hardware_flops_per_token, 1, peak, mfu)
    backward_s = seconds_at_utilization(  # one micro-batch's
        s.micro_batch * seq_len * flops.backward_flops_per_token, 1, peak, mfu)
    n = _n_params(cfg)
    comm = data_parallel_comm(  # hidden as the per-operation model hides it (`perf.parallel.hiding_window_s`)
        n, s.n_gpus, s.zero_stage, gpu=gpu,
        backward_s=hiding_window_s(s.zero_stage, s.grad_accum, backward_s, compute_s / s.grad_accum),
        grad_bytes_per_param=grad_wire_bytes_per_param(s),
        param_bytes_per_param=4.0 if s.precision is MemoryPrecision.fp32 else 2.0, grad_accum=s.grad_accum,
        root_params=params_outside_blocks(cfg), fsdp_units=fsdp_unit_count(cfg.n_layer, s.zero_stage),
    )
    return Throughput(compute_s, comm, tokens_per_step, flops.model_flops_per_token,
                      flops.hardware_flops_per_token, efficiency,
                      _offload_time(cfg, s, host_link_bytes_per_s(gpu)), s.n_gpus, peak, flash_recompute(flops, s.flash))


# The budgets for which the batch may grow to hide communication: those where a faster step buys more tokens (a
# time or money budget) or an earlier finish (a target loss). A FLOP budget or fixed tokens buys no more tokens
# from speed, so a larger batch there would only make each token worth less (Kaplan et al. 2020, eq. 5.5).
GROW_BATCH_KINDS = ("time", "money", "target")


@dataclass(frozen=True)
class PlanOption:
    """A model size evaluated under the budget: setup, speed, tokens, predicted loss."""

    model: ModelConfig
    n_params: int
    nearest_preset: str | None  # None when no preset is within NEAREST_PRESET_FACTOR
    chosen: ChosenSetup | None  # None: fits no setup on the given GPUs
    min_gpus: int | None  # fewest GPUs that would hold it, when ``chosen`` is None
    speed: Throughput | None
    n_tokens: float  # tokens trained within the budget (0 when it does not fit)
    train_time_s: float  # wall-clock time of training those tokens
    loss: float | None  # predicted loss (nats/token) under the plan's law
    effective_tokens: float | None  # data-constrained effective tokens when the dataset is limited
    unique_tokens: float | None
    batch: BatchGrowth | None = None  # set when the batch grew past GPT-3's to hide communication
    floor_loss: float | None = None  # under a target it never reaches: its loss with unlimited tokens (search._option)

    @property
    def fits(self) -> bool:
        return self.chosen is not None

    @property
    def reaches_target(self) -> bool:
        """Under a target loss: whether it fits a setup and some number of tokens reaches the target (its tokens are
        infinite where none does)."""
        return self.fits and math.isfinite(self.n_tokens)

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def useful_tokens(self) -> float:
        """Tokens as worth at GPT-3's batch, what the law's loss is predicted on: ``n_tokens``, times
        `BatchGrowth.token_value` when the batch grew (Kaplan et al. 2020 eq. 5.5)."""
        return self.n_tokens if self.batch is None else self.n_tokens * self.batch.token_value

    @property
    def epochs(self) -> float | None:
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens

    @property
    def model_flops(self) -> float:
        return 0.0 if self.speed is None else self.n_tokens * self.speed.model_flops_per_token

    @property
    def mfu_convention(self) -> str:
        """How this option's MFU and HFU count attention (`_training_flops`): dense, every query over all T keys (PaLM
        App. B, as the laws and FlopCounterMode count it), or the causal pairs under a binding sliding window."""
        return (MFU_WINDOW_CONVENTION if window_binds(self.model, self.chosen.setup.seq_len)
                else MFU_DENSE_CONVENTION)

    @property
    def mfu_causal(self) -> float | None:
        """The MFU `flopscalc step` prints for this run: the same step time over model FLOPs with attention over the
        causal pairs (`perf.utilization.causal_model_flops_per_token`, llm.c's 6N + 6LCT); None when nothing fits."""
        if self.speed is None:
            return None
        from ..perf.utilization import causal_model_flops_per_token, model_flops_utilization

        sp = self.speed
        return model_flops_utilization(causal_model_flops_per_token(self.model, self.chosen.setup.seq_len),
                                       sp.tokens_per_s, sp.n_gpus, sp.peak_flop_per_s_per_gpu)  # PaLM App. B

    @property
    def mfu_conventions_differ(self) -> bool:
        """Whether the causal MFU differs from this option's by more than `MFU_CONVENTION_GAP_REL` (then a report
        that prints the MFU prints the causal one beside it)."""
        return self.speed is not None and abs(self.mfu_causal / self.speed.mfu - 1) > MFU_CONVENTION_GAP_REL

    @property
    def n_steps(self) -> int:
        """Optimizer steps: a run takes whole steps, so the last partial one counts."""
        if self.speed is None or not math.isfinite(self.n_tokens):
            return 0
        return math.ceil(self.n_tokens / self.speed.tokens_per_step - 1e-9)


def check_positive(value: float | None, what: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{what} must be a positive number, got {value}")


# Names that moved to `planner.setups` (the setup search) and `planner.growth` (batch growth), re-exported here.
_SETUPS = ("RECOMPUTE_SEARCHED", "OPTIMIZERS_SEARCHED", "ZERO_STAGES_SEARCHED", "TIE_REL", "FLOOR_SLACK",
           "searched_setups", "tools_needed", "choose_setup", "lightest_peak_bytes", "min_gpus_to_plan")


# On first use (PEP 562): `setups` builds on this module's types, and one GPU never grows its batch.
__getattr__, __dir__ = lazy_exports(__name__, {**dict.fromkeys(_SETUPS, "setups"),
                                               "BatchGrowth": "growth", "grow_batch": "growth"})
