"""Time of one optimizer step under a parallel layout: the performance model's operations at the per-GPU shapes,
tensor/context/expert communication per layer, pipeline transfers and bubble, data-parallel reduction.

step_s = m x t_stage + (p - 1) / v x t_middle + DP exposed + DP overlap slowdown + optimizer
         ([1] sec. 2.2, unequal stages: [8]; the compute slowed beside hidden DP traffic: `perf.parallel` [11])
t_stage = per-micro-batch compute of the busiest stage (its layers + embedding or LM head and loss)
          + TP collectives + exposed CP ring + EP all-to-all + PP point-to-point (+ unfused gradient accumulation)
t_middle = the same for a stage of layers only (no embedding, LM head or loss)

- Pipeline schedule: in 1F1B the steady state runs at the busiest stage's pace (m x t_stage), while the warm-up and
  cool-down are one micro-batch's forward and backward through the other p - 1 stages ([8]); with evenly divided
  layers those are stages of layers only, so the bubble is (p-1)/v x t_middle, not (p-1)/v x t_stage. The last
  stage's LM head and loss (6% of a 1T stage of 2 layers) are paid m times, not m + p - 1.

- Per-GPU shapes: each layer's operations come from `perf.estimate_step` on the model as one tensor-parallel
  rank sees it (n_head / t heads, MLP width / t, vocabulary / t: [2] sec. 3), L / p layers, s / cp tokens per
  sequence; the GEMMs shrink, and `perf.gemm` prices their lower efficiency. Context parallelism gives each
  rank s / cp queries against all s keys, so attention costs cp times the s / cp-token core ([5]); sequence
  parallelism splits the norms, residual adds and dropouts by t ([3] sec. 4.2.2).
- TP: per layer and micro-batch two all-reduces forward and two backward ([2] sec. 3, the f and g operators),
  or as many all-gather + reduce-scatter pairs under SP ([3] sec. 4.2.2, same bytes); full recomputation
  repeats the forward's; not overlapped (Megatron-LM of [1, 3]). Each is a ring: (t-1)/t of the b s h 16-bit
  activation per pass over the achieved intra-node bus (`parallel`), plus NCCL's ring latency.
- PP: one activation forward and one gradient backward per micro-batch and chunk, b s h / t bytes each with
  the scatter/gather optimisation ([1] sec. 4.1), over the network unless the whole pipeline shares a node.
- CP: a ring passes K and V (d_kv / t wide) cp - 1 times forward, and K, V and their gradients backward ([5]);
  it overlaps the attention core, so only the excess is exposed.
- EP: two all-to-alls (dispatch, combine) forward and two backward per MoE layer ([6] sec. 2.2) of the
  top_k x tokens rows, (ep-1)/ep of them leaving each GPU; not overlapped.
- DP: `parallel.data_parallel_comm` on the parameters of one GPU over the dp x cp ranks, Megatron-LM's bucket for
  a layout that needs Megatron-LM, hidden behind the last micro-batch's backward only with ``Layout.dp_overlap``.
  A layout `flopscalc train` runs (TP, PP, CP, EP 1; DDP with ZeRO 0, FSDP with ZeRO 3) is priced term by term as
  the per-operation model prices that run (`perf.step.estimate_step`; tests/test_step_engine.py to 1e-9): its rank
  setup carries the data-parallel ranks and ZeRO stage (FSDP: 16-bit compute weights, so no autocast casts; the
  gradient accumulation and the update on this rank's shard, [12] sec. 5.2), the wire bytes are
  `memory.settings.grad_wire_bytes_per_param` (DDP's fp32 gradients, FSDP's 16-bit ones: [12] 7.2.1-7.2.2, [13]
  sec. 4.4), DDP hides its buckets behind the last backward (and its fp32 accumulation), FSDP its gathers behind
  every micro-batch's passes ([13] sec. 3.3: forward and backward prefetch), the default buckets and the network
  per GPU (`fabric.network_bytes_per_s`) are the per-operation model's.
- Megatron-LM's gradient accumulation: fused into the weight-gradient GEMM (``Layout.grad_accum_fusion``, [9]),
  or, in the 2021 code, a separate pass per micro-batch and stage that adds the 16-bit weight gradient to the main
  gradient ([10]): read 2 bytes, read and write the main gradient (16-bit for fp16 runs, fp32 with bf16).
- Megatron-LM's optimizer step ([11]) moves more than the AdamW update: the main gradients made fp32, unscaled
  and checked for inf/NaN (fp16), their norm for clipping, the fp32 weights copied to the 16-bit ones, the gradient
  buffer zeroed (`megatron_optimizer_bytes_per_param`).

The busiest and middle stages' compute per micro-batch are `layout.stage_cost`'s; this module adds the
communication, the pipeline schedule and the optimizer step.

References
----------
One numbering for the layout time modules (`layout.time`, `layout.stage_cost`): each lists the references
its code cites.

[1] Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
    arXiv:2104.04473, sec. 2.2 (1F1B, interleaving: bubble (p-1)/(m v), v x the communication), 4.1.
[2] Shoeybi et al. 2019, "Megatron-LM", arXiv:1909.08053, sec. 3 and Fig. 3 (f/g: 2 all-reduces per pass).
[3] Korthikanti et al. 2022, arXiv:2205.05198, sec. 4.2.2 (sequence parallelism).
[4] Megatron-LM ``megatron/core/parallel_state.py``: rank order tp-cp-ep-dp-pp.
[5] Liu et al. 2023, "Ring Attention with Blockwise Transformers", arXiv:2310.01889, sec. 3; Megatron-LM
    context parallelism (``docs/source/api-guide/context_parallel.rst``): K/V exchanged in a ring, overlapped.
[6] Lepikhin et al. 2020, "GShard", arXiv:2006.16668, sec. 2.2 (all-to-all dispatch and combine).
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

from dataclasses import dataclass

from ..flops import Recompute
from ..memory.precision import MemoryPrecision
from ..memory.settings import FP32_BYTES, HALF_BYTES, Optimizer, TrainingSetup, grad_wire_bytes_per_param
from ..model import ModelConfig, count_params, params_outside_blocks
from ..perf import StepOptions
from ..perf.collectives import megatron_bucket_bytes
from ..perf.fabric import ring_latency_s
from ..perf.ops import OPTIMIZER_RW_ELEMENTS
from ..perf.parallel import (
    OVERLAP_COMPUTE_SLOWDOWN,
    CommEstimate,
    data_parallel_comm,
    fsdp_unit_count,
    hiding_window_s,
)
from ..perf.step import MATMUL_PRECISION
from ..perf.utilization import causal_model_flops_per_token, model_flops_utilization
from .cluster import Cluster
from .memory import stage_params
from .spec import Engine, Layout
from .stage_cost import _compute_per_micro_batch, per_rank_model, stage_compute_s

# Bytes per parameter the perf model's AMP accumulation kernel moves (16-bit gradient read, fp32 .grad read and
# written: `perf.ops._precision_ops`) and its AdamW update (`perf.ops.OPTIMIZER_RW_ELEMENTS`, fp32 elements).
AMP_GRAD_ACCUMULATE_BYTES = HALF_BYTES + 2 * FP32_BYTES
ADAMW_UPDATE_BYTES = sum(OPTIMIZER_RW_ELEMENTS[Optimizer.adamw]) * FP32_BYTES


@dataclass(frozen=True)
class LayoutTime:
    """Predicted time of one optimizer step under a layout, by component (seconds, per GPU, all in lockstep)."""

    layout: Layout
    model: ModelConfig
    cluster: Cluster
    seq_len: int
    compute_s: float  # m x the busiest stage's per-micro-batch compute (and unfused gradient accumulation)
    bubble_s: float  # (p - 1) / v x a middle stage's per-micro-batch time ([8])
    tp_comm_s: float
    pp_comm_s: float
    cp_comm_exposed_s: float
    ep_comm_s: float
    dp: CommEstimate
    optimizer_s: float
    peak_flop_per_s: float
    model_flops_per_token: float  # causal attention, no recomputation (MFU)
    cp_slowdown_s: float = 0.0  # the attention core slowed by the CP ring it hides (`perf.parallel` [11])

    @property
    def components(self) -> dict[str, float]:
        return {"compute": self.compute_s, "pipeline bubble": self.bubble_s, "tensor-parallel comm": self.tp_comm_s,
                "pipeline p2p": self.pp_comm_s, "context-parallel comm (exposed)": self.cp_comm_exposed_s,
                "context-parallel overlap slowdown": self.cp_slowdown_s,
                "expert all-to-all": self.ep_comm_s, "data-parallel comm (exposed)": self.dp.exposed_s,
                "data-parallel overlap slowdown": self.dp.slowdown_s, "optimizer": self.optimizer_s}

    @property
    def step_s(self) -> float:
        return sum(self.components.values())

    @property
    def tokens_per_step(self) -> int:
        return self.layout.sequences_per_step() * self.seq_len

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_s

    @property
    def s_per_token(self) -> float:
        return self.step_s / self.tokens_per_step

    @property
    def mfu(self) -> float:
        """Model FLOPs per second over the dense peak of every GPU (PaLM App. B)."""
        return model_flops_utilization(self.model_flops_per_token, self.tokens_per_s, self.layout.n_gpus,
                                       self.peak_flop_per_s)

    @property
    def exposed_comm_s(self) -> float:
        return self.tp_comm_s + self.pp_comm_s + self.cp_comm_exposed_s + self.ep_comm_s + self.dp.exposed_s


def megatron_main_grad_bytes(precision: MemoryPrecision, grad_accum_fusion: bool) -> int:
    """Width of Megatron-LM's main gradient (bytes): fp32 when the fused wgrad GEMM accumulates into it ([9]:
    ``wgrad_gemm_accum_fp32``) or under bf16 ([10]: fp32 accumulation forced); else the parameters' 16 bits."""
    if precision is MemoryPrecision.fp16_mixed and not grad_accum_fusion:
        return HALF_BYTES
    return FP32_BYTES


def megatron_optimizer_bytes_per_param(precision: MemoryPrecision, grad_accum_fusion: bool) -> int:
    """Bytes Megatron-LM's mixed-precision optimizer step moves per parameter it updates ([11]), AdamW included."""
    g = megatron_main_grad_bytes(precision, grad_accum_fusion)
    to_fp32 = g + FP32_BYTES if g < FP32_BYTES else 0  # [11] main_grad.float(): a copy only of a 16-bit buffer
    unscale = 2 * FP32_BYTES if precision is MemoryPrecision.fp16_mixed else 0  # [11] read + write, fp16 scaler
    norm = FP32_BYTES  # [11] clip_grad_norm reads every fp32 gradient once
    to_model = FP32_BYTES + HALF_BYTES  # [11] fp32 weights read, 16-bit model weights written
    zero = g  # [11] zero_grad_buffer writes the main gradients
    return to_fp32 + unscale + norm + ADAMW_UPDATE_BYTES + to_model + zero


def _ring_s(n: int, nbytes: float, bus: float, cluster: Cluster, span: int, *, all_reduce: bool) -> float:
    """One ring collective over ``n`` ranks of ``nbytes`` (alpha-beta, `fabric.ring_latency_s`)."""
    if n <= 1:
        return 0.0
    factor = 2 if all_reduce else 1
    return factor * (n - 1) / n * nbytes / bus + ring_latency_s(n, cluster.fabric(min(span, cluster.gpus_per_node)),
                                                                 all_reduce=all_reduce)


def compute_lower_bound_s(cfg: ModelConfig, layout: Layout, gpu, seq_len: int, *,
                          precision: MemoryPrecision = MemoryPrecision.bf16_mixed, flash: bool = True,
                          options: StepOptions | None = None, fused_loss: bool = False,
                          dropout: bool = False) -> float:
    """A lower bound on `layout_time`'s step (s): the busiest stage's compute over m micro-batches and a middle
    stage's over the bubble, m x compute + (p-1)/v x middle ([1] 2.2, [8]). Every other component
    (communication, gradient accumulation, optimizer) is >= 0, so step_s >= this bound exactly; the search skips a
    layout whose bound per token already loses."""
    busiest, middle = stage_compute_s(cfg, layout, gpu, seq_len, precision=precision, flash=flash, options=options,
                                      fused_loss=fused_loss, dropout=dropout)
    return bound_from_compute_s(layout, busiest, middle)


def bound_from_compute_s(layout: Layout, compute_per_micro_batch: float, middle_per_micro_batch: float | None = None
                         ) -> float:
    """`compute_lower_bound_s` from the busiest (and middle) stage's compute per micro-batch (s):
    m x busiest + (p-1)/v x middle ([8]; the middle stage defaults to the busiest)."""
    middle = compute_per_micro_batch if middle_per_micro_batch is None else middle_per_micro_batch
    return layout.n_micro * compute_per_micro_batch + (layout.pp - 1) / layout.interleave * middle  # [1] 2.2, [8]


def layout_time(cfg: ModelConfig, layout: Layout, cluster: Cluster, seq_len: int, *,
                precision: MemoryPrecision = MemoryPrecision.bf16_mixed, flash: bool = True,
                options: StepOptions | None = None, fused_loss: bool = False, dropout: bool = False) -> LayoutTime:
    """Predict one optimizer step of ``cfg`` under ``layout`` on ``cluster`` (see the module docstring); the
    step's fused loss and dropout are the per-rank setup's (`memory.TrainingSetup`), ``options`` its kernels."""
    layout.check_model(cfg, seq_len)
    gpu = cluster.gpu
    t, p, v, cp, ep, m, b = layout.tp, layout.pp, layout.interleave, layout.cp, layout.ep, layout.n_micro, \
        layout.micro_batch
    megatron = layout.engine() is Engine.megatron
    cost, compute_mb, middle_mb = _compute_per_micro_batch(cfg, layout, gpu, seq_len, precision, flash, options,
                                                           fused_loss, dropout)
    layers = layout.layers_per_stage(cfg.n_layer)
    n_params = max(sum(x) for x in stage_params(cfg, layout).values())  # the fullest stage's, one GPU
    s_local = seq_len // cp
    act = HALF_BYTES * b * s_local * cfg.n_embd  # one 16-bit activation b x s x h
    # ---- tensor parallel: 2 collectives per pass of attention + MLP [2]; full recompute repeats the forward's
    passes = 3 if layout.recompute is Recompute.full else 2
    tp_bus = cluster.link_bytes_per_s(t)
    if layout.sequence_parallel:  # [3] all-gather + reduce-scatter, same bytes as one all-reduce
        one = _ring_s(t, act, tp_bus, cluster, t, all_reduce=False) * 2
    else:
        one = _ring_s(t, act, tp_bus, cluster, t, all_reduce=True)
    tp_mb = 2 * passes * one * layers
    # ---- context parallel: K, V ring [5], overlapped with the attention core
    cp_mb = cp_slow_mb = 0.0
    if cp > 1:
        kv = HALF_BYTES * b * s_local * 2 * cfg.d_kv / t
        span = t * cp
        ring = 3 * (cp - 1) * (kv / cluster.link_bytes_per_s(span) + cluster.hop_s(span)) * layers
        cp_mb = max(0.0, ring - cost.attention_s)
        cp_slow_mb = OVERLAP_COMPUTE_SLOWDOWN * min(ring, cost.attention_s)  # `perf.parallel` [11], as for DP
    # ---- expert parallel: 4 all-to-alls per MoE layer [6] (6 with full recompute)
    ep_mb = 0.0
    if ep > 1:
        span = t * cp * ep
        rows = HALF_BYTES * b * s_local * cfg.top_k * cfg.n_embd * (ep - 1) / ep / (t if layout.sequence_parallel else 1)
        ep_mb = (passes * 2) * (rows / cluster.link_bytes_per_s(span) + cluster.hop_s(span)) * layers
    # ---- pipeline: forward activation and backward gradient per micro-batch and chunk, / t ([1] 4.1)
    pp_mb = 0.0
    if p > 1:
        # Stage k holds ranks k G .. (k+1) G - 1, G = tp x cp x dp ([4]: pp outermost); rank r sends to r + G. Stages
        # run in lockstep, so the slowest boundary paces every micro-batch, and some boundary crosses a node exactly
        # when the pipeline's p G GPUs exceed one (for G < node, r = node - 1 < (p-1) G pairs with r + G >= node)
        span = t * cp * layout.dp * p
        pp_mb = 2 * v * (act / t / cluster.link_bytes_per_s(span) + cluster.hop_s(span))
    # ---- Megatron-LM without the fused wgrad accumulation: one pass per micro-batch over the stage's gradients [10]
    accum_mb = 0.0
    if megatron and not layout.grad_accum_fusion and cost.grad_accum_s > 0:
        per_param_s = cost.grad_accum_s / count_params(per_rank_model(cfg, t, layers, ep)).total
        main = megatron_main_grad_bytes(precision, layout.grad_accum_fusion)
        accum_mb = per_param_s * n_params * (HALF_BYTES + 2 * main) / AMP_GRAD_ACCUMULATE_BYTES  # [10] 2 + 2 x main
    comm_mb = accum_mb + tp_mb + cp_mb + cp_slow_mb + ep_mb + pp_mb  # per micro-batch on every stage, besides compute
    bubble = (p - 1) / v * (middle_mb + comm_mb)  # [1] 2.2, [8]: warm-up and cool-down through the other stages
    # ---- data parallel over dp x cp ranks, hidden behind the last backward if overlapped; Megatron-LM's bucket for
    # a layout that needs it, else the bucket of what runs it (PyTorch DDP's 25 MiB; `collectives.default_bucket_bytes`)
    dp_n = layout.dp * cp
    if megatron:  # the main gradients are what Megatron reduces [10]
        grad_bytes = megatron_main_grad_bytes(precision, layout.grad_accum_fusion)
    else:  # DDP's fp32 gradients, FSDP's 16-bit ones ([12] 7.2.1-7.2.2; the per-operation model's one rule)
        grad_bytes = grad_wire_bytes_per_param(TrainingSetup(precision=precision, zero_stage=layout.zero_stage,
                                                             n_gpus=dp_n))
    per_node = max(1, cluster.gpus_per_node // t)  # the dp x cp group's members inside one node [4]
    shards = dp_n if layout.zero_stage >= 1 else 1
    hide = cost.backward_s if layout.dp_overlap else 0.0
    if layout.dp_overlap and not megatron:  # the per-operation model's window (its backward holds the fp32 gradient
        # accumulation under DDP); FSDP prefetches every pass's gathers [13]
        passes = cost.body_s + cost.first_s + cost.last_s + cost.grad_accum_s
        hide = hiding_window_s(layout.zero_stage, m, cost.backward_s + cost.grad_accum_s, passes)
    stage = layout.zero_stage if dp_n > 1 else 0
    dp = data_parallel_comm(n_params, dp_n, stage, fabric=cluster.fabric(per_node),
                            backward_s=hide, grad_bytes_per_param=grad_bytes, param_bytes_per_param=HALF_BYTES,
                            grad_accum=m, bucket_bytes=megatron_bucket_bytes(dp_n, grad_bytes) if megatron else None,
                            root_params=0 if megatron else params_outside_blocks(cfg),  # FSDP's root: [13]
                            fsdp_units=None if megatron else fsdp_unit_count(cfg.n_layer, stage))
    if megatron:  # [11] the whole mixed-precision step, at the AdamW update's rate per byte
        optimizer = (cost.optimizer_s / shards * megatron_optimizer_bytes_per_param(precision, layout.grad_accum_fusion)
                     / ADAMW_UPDATE_BYTES)
    else:  # DDP/FSDP: the update and the fp32 accumulation of every micro-batch, sharded in the rank's setup
        optimizer = cost.optimizer_s + cost.grad_accum_s * m
    model_flops = causal_model_flops_per_token(cfg, seq_len)
    peak = gpu.peak_flop_per_s(MATMUL_PRECISION[precision])
    return LayoutTime(layout, cfg, cluster, seq_len, (compute_mb + accum_mb) * m, bubble, tp_mb * m, pp_mb * m,
                      cp_mb * m, ep_mb * m, dp, optimizer, peak, model_flops, cp_slow_mb * m)
