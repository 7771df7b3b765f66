"""The compute of one pipeline stage under a layout, per micro-batch: the performance model's operations at the
per-GPU shapes (see `layout.time`, which adds the communication, the bubble and the optimizer).

Each layer's operations come from `perf.estimate_step` on the model as one tensor-parallel rank sees it
(`per_rank_model`: n_head / t heads, MLP width / t, vocabulary / t, L / p layers), s / cp tokens per sequence;
context parallelism costs the attention core cp times the s / cp-token core ([5]); sequence parallelism splits the
norms, residual adds and dropouts by t ([3] sec. 4.2.2). The ops fall into the stage's body (layers), its ends
(embedding; final norm, LM head and loss), the backward a data-parallel reduction can hide, the optimizer and the
gradient accumulation (`_StageCost`). Each stage holds the layers the emitted Megatron-LM settings build
(`spec.pipeline_split`): with spare layer slots the end stages carry fewer ([7]); the middle stage (layers only) is
what the pipeline's warm-up and cool-down pass through ([8]).

References
----------
One numbering for the layout time modules (`layout.time`, `layout.stage_cost`): each lists the references
its code cites.

[1] Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
    arXiv:2104.04473, sec. 2.2 (1F1B, interleaving: bubble (p-1)/(m v), v x the communication), 4.1.
[3] Korthikanti et al. 2022, arXiv:2205.05198, sec. 4.2.2 (sequence parallelism).
[5] Liu et al. 2023, "Ring Attention with Blockwise Transformers", arXiv:2310.01889, sec. 3; Megatron-LM
    context parallelism (``docs/source/api-guide/context_parallel.rst``): K/V exchanged in a ring, overlapped.
[7] Dubey et al. 2024, "The Llama 3 Herd of Models", arXiv:2407.21783, sec. 3.3.2 ("To balance the pipeline, we
    reduce one Transformer layer each from the first and the last stages").
[8] A synchronous pipeline of stages with per-micro-batch times t_1..t_p runs m micro-batches in
    sum_i t_i + (m - 1) max_i t_i (the flow-shop makespan; [1] sec. 2.2's (p-1)/m bubble is its equal-stage case):
    the first micro-batch fills every stage once, the rest leave at the slowest stage's pace.
[9] Megatron-LM ``megatron/core/tensor_parallel/layers.py``, ``LinearWithGradAccumulationAndAsyncCommunication``:
    with ``gradient_accumulation_fusion`` the backward calls ``fused_weight_gradient_mlp_cuda.wgrad_gemm_accum_fp32``
    into ``weight.main_grad`` (Korthikanti et al. 2022's code path for sequence parallelism is the same function).
[10] Megatron-LM ``megatron/model/distributed.py`` (2021), ``DistributedDataParallel._make_param_hook``:
    ``param.main_grad.add_(param.grad.data)`` after every backward; the buffer is in the parameters' dtype unless
    ``--accumulate-allreduce-grads-in-fp32`` (forced for bf16, ``megatron/arguments.py``).
[11] Megatron-LM ``megatron/optimizer/optimizer.py``, ``MixedPrecisionOptimizer.step`` (2021-22):
    ``_copy_model_grads_to_main_grads`` (``main_grad.float()``), ``_unscale_main_grads_and_check_for_nan`` (fp16
    grad scaler), ``clip_grad_norm`` (an L2 norm over the fp32 gradients), ``optimizer.step`` (apex FusedAdam),
    ``_copy_main_params_to_model_params``; ``zero_grad_buffer`` at the next step.
[12] Rajbhandari et al. 2020, "ZeRO", arXiv:1910.02054, sec. 5.2 (P_os+g: each rank reduces and updates its
    gradient partition), 7.2.1 (stages 1-2: 2 Psi per step), 7.2.2 (stage 3: 3 Psi).
[13] Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel", VLDB 16(12), sec. 3.3
    (the next unit's all-gather issued during the current unit's forward and backward: forward / backward
    prefetch), sec. 4.4 (mixed precision: low-precision all-gather and reduce-scatter of the shards).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from ..flops import Recompute
from ..memory.precision import MemoryPrecision
from ..memory.settings import TrainingSetup
from ..model import ModelConfig
from ..perf import StepEstimate, StepOptions, estimate_step
from ..perf.op_kinds import OpClass, Phase
from .spec import Engine, Layout

FIRST_STAGE_OPS = ("embedding",)
LAST_STAGE_OPS = ("final norm", "lm head", "cross-entropy", "fused cross-entropy")
SEQUENCE_PARALLEL_OPS = ("norm 1", "norm 2", "residual", "dropout")
# Megatron-LM keeps 16-bit weights, so PyTorch AMP's per-forward weight casts do not run; its gradient
# accumulation is priced by `layout_time` (fused [9] or a separate pass [10]), not as the perf model's AMP kernel.
MEGATRON_SKIPPED_OPS = ("autocast weight casts",)
GRAD_ACCUMULATE_OP = "grad accumulate to fp32"
# Share of the GEMMs' priced rate Megatron-LM sustains (`perf.op_kinds.StepOptions.sustained_fraction`, which scales the
# GEMMs only since perf commit 6d18201): FITTED on the ten Narayanan et al. 2021 Table 1 rows only (median ratio to
# the implied iteration time closest to 1; re-derived by tests/test_layout_validation.py); Korthikanti et al. 2022
# Table 5 is held out. The reverse fold (fitted on Korthikanti only) gives the same 0.86 and holds Narayanan out
# (`validation.HELD_OUT_FOLDS`). 0.82 (0.85 reverse) before the 2021 runs' unfused gradient accumulation [10], the
# Megatron optimizer step [11] and the middle-stage bubble [8]; 0.83 before perf 6d18201. Layouts `flopscalc train`
# runs (DDP, FSDP) keep the PyTorch-loop figure `perf.op_kinds.SUSTAINED_FRACTION`.
MEGATRON_SUSTAINED_FRACTION = 0.86


def per_rank_model(cfg: ModelConfig, tp: int, n_layer: int, ep: int = 1) -> ModelConfig:
    """The model one tensor-parallel rank of one pipeline stage computes: heads, MLP and vocabulary / t, L / p
    layers, n_expert / ep local experts (each receiving ep times the rows: uniform routing).

    The local experts receive the top_k x tokens rows of the ep ranks, so top_k may exceed them (Mixtral's top-2 with
    one expert per GPU: each GPU's expert takes 2 x its tokens' rows, GShard sec. 2.2); `perf`'s uniform routing
    (`block_ops.expert_rows`: tokens x top_k rows over the local experts) and the FLOP count (top_k experts per token) are
    right for it. The rank model says it holds one of ``ep`` shards (`ModelConfig.expert_shards`), which is what lets
    top_k exceed its experts. Its parameters are the local experts' only."""
    t = tp
    changes = {"n_layer": n_layer, "n_head": cfg.n_head // t,
                   "n_kv_head": max(1, cfg.kv_heads // t), "head_size": cfg.head_dim, "ffn_dim": cfg.n_inner // t,
                   "mlp_ratio": 4.0, "vocab_size": math.ceil(cfg.vocab_size / t)}
    if cfg.is_moe:
        changes.update(n_expert=cfg.n_expert // ep, expert_ffn_dim=cfg.expert_inner // t,
                       expert_shards=cfg.expert_shards * ep)
        if cfg.n_shared_expert:
            changes["shared_expert_ffn_dim"] = cfg.shared_expert_inner // t
    return cfg.with_(**changes)


@dataclass(frozen=True)
class _StageCost:
    body_s: float  # one micro-batch through this GPU's layers (forward, backward, recompute)
    first_s: float  # embedding, one micro-batch
    last_s: float  # final norm, LM head, loss, one micro-batch
    backward_s: float  # backward part of body + ends (what a DP reduction can hide)
    attention_s: float  # attention core, one micro-batch, all layers of the stage
    optimizer_s: float  # optimizer update of the unsharded slice
    grad_accum_s: float  # fp32 gradient accumulation kernel, one micro-batch


@functools.lru_cache(maxsize=65536)
def _stage_cost(cfg: ModelConfig, layout_key: tuple, seq_len: int, gpu, precision: MemoryPrecision, flash: bool,
                options: StepOptions, megatron: bool, dp_shard: tuple[int, int] = (1, 0), fused_loss: bool = False,
                dropout: bool = False) -> _StageCost:
    """The busiest stage's costs. Every field is affine in the layer count (block ops are counted per layer,
    their kernel floors too; the optimizer and cast ops move bytes in proportion to the parameters), so a stage
    of n layers is priced from ranks of 1 and 2 layers: c(n) = c(1) + (n - 1) (c(2) - c(1)). This keeps the
    search's pricing to one pair per shape instead of one per layer count. A layout `flopscalc train` runs
    (``dp_shard`` = (data-parallel ranks, ZeRO stage) of DDP or FSDP; one stage, the whole model) is priced
    directly: its sharded optimizer and gradient kernels can sit on their launch floors at 1 or 2 layers."""
    tp, n_layers, *rest = layout_key
    if n_layers <= 2 or dp_shard != (1, 0):
        return _rank_cost(cfg, layout_key, seq_len, gpu, precision, flash, options, megatron, dp_shard, fused_loss,
                          dropout)
    one = _rank_cost(cfg, (tp, 1, *rest), seq_len, gpu, precision, flash, options, megatron, (1, 0), fused_loss,
                     dropout)
    two = _rank_cost(cfg, (tp, 2, *rest), seq_len, gpu, precision, flash, options, megatron, (1, 0), fused_loss,
                     dropout)
    a1, a2 = vars(one).values(), vars(two).values()
    return _StageCost(*(a + (n_layers - 1) * (b - a) for a, b in zip(a1, a2, strict=True)))


@functools.lru_cache(maxsize=32768)
def _rank_cost(cfg: ModelConfig, layout_key: tuple, seq_len: int, gpu, precision: MemoryPrecision, flash: bool,
               options: StepOptions, megatron: bool, dp_shard: tuple[int, int] = (1, 0), fused_loss: bool = False,
               dropout: bool = False) -> _StageCost:
    """One rank's costs; ``dp_shard`` (ranks, ZeRO stage) is the data parallelism of a DDP/FSDP layout, which the
    per-operation model prices in the setup itself (`rank_setup`): FSDP's 16-bit compute weights (no autocast
    casts), the sharded gradient accumulation and update ([12] sec. 5.2, [13] sec. 4.4)."""
    tp, _, cp, _, _, _, sp = layout_key
    est = _rank_step(cfg, layout_key, seq_len, gpu, precision, flash, options, dp_shard, fused_loss, dropout)
    body = first = last = backward = attention = optimizer = accum = 0.0
    for p in est.ops:
        name, s = p.op.name, p.total_s
        if megatron and name.startswith(MEGATRON_SKIPPED_OPS):
            continue
        if p.op.op_class is OpClass.attention or name.startswith("repeat_kv"):
            s *= cp  # [5] s / cp queries against all s keys
            attention += s
        if sp and tp > 1 and name.startswith(SEQUENCE_PARALLEL_OPS):
            s /= tp  # [3] 4.2.2
        if p.op.phase is Phase.step:
            optimizer += s
            continue
        if name.startswith(GRAD_ACCUMULATE_OP):
            accum += s
            continue
        if name.startswith(FIRST_STAGE_OPS):
            first += s
        elif name.startswith(LAST_STAGE_OPS):
            last += s
        else:
            body += s
        if p.op.phase in (Phase.backward, Phase.recompute):
            backward += s
    return _StageCost(body, first, last, backward, attention, optimizer, accum)


def _rank_step(cfg: ModelConfig, layout_key: tuple, seq_len: int, gpu, precision: MemoryPrecision, flash: bool,
               options: StepOptions, dp_shard: tuple[int, int], fused_loss: bool, dropout: bool) -> StepEstimate:
    """The per-operation model's step of one rank (`per_rank_model`, s / cp tokens per sequence, one micro-batch);
    ``dp_shard``: see `_rank_cost`."""
    tp, n_layers, cp, ep, b, recompute, _ = layout_key
    n_dp, zero = dp_shard
    setup = TrainingSetup(micro_batch=b, seq_len=seq_len // cp, precision=precision, recompute=recompute,
                          flash=flash, grad_accum=1, n_gpus=n_dp, zero_stage=zero, fused_loss=fused_loss,
                          dropout=dropout)
    return estimate_step(per_rank_model(cfg, tp, n_layers, ep), setup, gpu, options)


def _stage_options(layout: Layout, options: StepOptions | None) -> StepOptions:
    """The options a stage of ``layout`` is priced with: ``options`` (default: the engine's sustained fraction); for
    a layout Megatron-LM runs, its padded GEMM shapes."""
    megatron = layout.engine() is Engine.megatron
    options = options or StepOptions(sustained_fraction=MEGATRON_SUSTAINED_FRACTION if megatron else 0.0)
    if megatron:
        # Megatron-LM runs a 16-bit module (Float16Module; fp32 main params in its optimizer): no fp32 residual
        # stream (`StepOptions.half_weights`); with fused kernels and the vocabulary padded
        # (--make-vocab-size-divisible-by 128), priced as `StepOptions.gemm_shape_padding` prices a compiled run
        options = replace(options, gemm_shape_padding=True, half_weights=True)
    return options


def rank_estimate(cfg: ModelConfig, layout: Layout, gpu, seq_len: int, *,
                  precision: MemoryPrecision = MemoryPrecision.bf16_mixed, flash: bool = True,
                  options: StepOptions | None = None, fused_loss: bool = False,
                  dropout: bool = False) -> StepEstimate:
    """The per-operation model's step of one rank of ``layout``'s busiest stage, one micro-batch, priced with the
    options its compute is (`_stage_options`): the operations and kernels behind `compute_per_micro_batch_s` (the
    embedding and the LM head included; which end a stage holds is `_compute_per_micro_batch`'s)."""
    *key, _, _, _, shard = compute_key(cfg, layout)
    return _rank_step(cfg, tuple(key), seq_len, gpu, precision, flash, _stage_options(layout, options), shard,
                      fused_loss, dropout)


def _stage_layers(cfg: ModelConfig, layout: Layout) -> tuple[int, int, int]:
    """(first, middle, last) stage's transformer layers, as the emitted Megatron-LM settings place them
    (`Layout.pipeline_split`, which refuses a split Megatron-LM does not take); the middle is the second stage, the
    layers-only stage the warm-up and cool-down pass through ([8]). Without a pipeline, (L, L, L)."""
    split = layout.pipeline_split(cfg.n_layer)
    stages = [split.stage_layers(r) for r in range(layout.pp)]
    # the engine's invariant: the priced stages hold the model's layers, each exactly once
    assert sum(stages) == cfg.n_layer, f"stages {stages} do not hold the {cfg.n_layer} layers"
    return stages[0], stages[min(1, layout.pp - 1)], stages[-1]


def compute_key(cfg: ModelConfig, layout: Layout) -> tuple:
    """What the busiest stage's compute depends on (two layouts with one key compute alike, per micro-batch)."""
    megatron = layout.engine() is Engine.megatron
    return (layout.tp, layout.layers_per_stage(cfg.n_layer), layout.cp, layout.ep, layout.micro_batch,
            Recompute(layout.recompute), layout.sequence_parallel, megatron, layout.pp > 1,
            _stage_layers(cfg, layout), dp_shard(layout))


def dp_shard(layout: Layout) -> tuple[int, int]:
    """(data-parallel ranks, ZeRO stage) that a layout's per-rank setup carries: a layout `flopscalc train` runs
    (DDP, FSDP) is priced as the per-operation model prices that run (`perf.step.estimate_step` with n_gpus = dp and
    its ZeRO stage); Megatron-LM's sharding is priced in `layout_time` (its own optimizer step, [11]): (1, 0)."""
    if layout.engine() is Engine.megatron:
        return (1, 0)
    return (layout.dp * layout.cp, layout.zero_stage)


def _compute_per_micro_batch(cfg: ModelConfig, layout: Layout, gpu, seq_len: int, precision: MemoryPrecision,
                             flash: bool, options: StepOptions | None, fused_loss: bool = False,
                             dropout: bool = False) -> tuple[_StageCost, float, float]:
    """The busiest stage's costs, its compute for one micro-batch (layers + embedding and/or LM head, s) and a
    middle stage's (layers only: what the pipeline's warm-up and cool-down pass through, [8]).

    Each stage is priced with the layers the emitted Megatron-LM settings give it (`Layout.pipeline_split`): the
    first with the embedding, the last with the final norm, LM head and loss, the ones between with layers only;
    the busiest is the slowest of them. Where the layers leave slots spare, the end stages carry fewer layers ([7]:
    the embedding and the loss take a layer's place; or Megatron-LM's uneven first and last stages), so their ends
    replace layers instead of adding to the busiest stage. With two stages the other stage of the bubble is priced
    as a full one (n layers, no end)."""
    *key, megatron, pipelined, (n_first, n_middle, n_last), shard = compute_key(cfg, layout)
    options = _stage_options(layout, options)
    cost = _stage_cost(cfg, tuple(key), seq_len, gpu, precision, flash, options, megatron, shard, fused_loss, dropout)
    if not pipelined:
        whole = cost.body_s + cost.first_s + cost.last_s
        return cost, whole, whole

    def body(n: int) -> float:  # n layers, no end
        return cost.body_s if n == key[1] else _body_with_layers(cfg, tuple(key), n, seq_len, gpu, precision, flash,
                                                                  options, megatron, fused_loss, dropout)

    first, last = body(n_first) + cost.first_s, body(n_last) + cost.last_s
    if layout.pp == 2:
        return cost, max(first, last), cost.body_s
    middle = body(n_middle)
    return cost, max(first, middle, last), middle


def _body_with_layers(cfg, key: tuple, n: int, seq_len, gpu, precision, flash, options, megatron, fused_loss=False,
                      dropout=False) -> float:
    """The body (layers only) of a stage of ``n`` layers, otherwise ``key``'s, by the same affine rule as
    `_stage_cost` (an empty stage's body is the intercept c(0) = 2 c(1) - c(2))."""
    tp, _, *rest = key
    if n >= 1:
        return _stage_cost(cfg, (tp, n, *rest), seq_len, gpu, precision, flash, options, megatron, (1, 0),
                           fused_loss, dropout).body_s
    one = _rank_cost(cfg, (tp, 1, *rest), seq_len, gpu, precision, flash, options, megatron, (1, 0), fused_loss,
                     dropout).body_s
    two = _rank_cost(cfg, (tp, 2, *rest), seq_len, gpu, precision, flash, options, megatron, (1, 0), fused_loss,
                     dropout).body_s
    return 2 * one - two


def compute_per_micro_batch_s(cfg: ModelConfig, layout: Layout, gpu, seq_len: int, *,
                              precision: MemoryPrecision = MemoryPrecision.bf16_mixed, flash: bool = True,
                              options: StepOptions | None = None, fused_loss: bool = False,
                              dropout: bool = False) -> float:
    """The busiest stage's compute for one micro-batch (s): its layers, embedding and/or LM head and loss."""
    return _compute_per_micro_batch(cfg, layout, gpu, seq_len, precision, flash, options, fused_loss, dropout)[1]


def stage_compute_s(cfg: ModelConfig, layout: Layout, gpu, seq_len: int, *,
                    precision: MemoryPrecision = MemoryPrecision.bf16_mixed, flash: bool = True,
                    options: StepOptions | None = None, fused_loss: bool = False,
                    dropout: bool = False) -> tuple[float, float]:
    """(busiest stage, middle stage) compute for one micro-batch (s); the middle stage holds layers only ([8])."""
    return _compute_per_micro_batch(cfg, layout, gpu, seq_len, precision, flash, options, fused_loss, dropout)[1:]
