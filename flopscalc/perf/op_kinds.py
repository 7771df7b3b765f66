"""The kinds a step's operations come in, and the implementation choices that price them.

`Op` is one kernel (or a few fused ones) of the step with its FLOPs, bytes and GEMM shape; `OpClass` says how it is
priced (GEMM, attention, memory-bound, optimizer) and `Phase` where in the step it runs. `StepOptions` holds the
choices only the step time depends on: the fused attention kernel, how the optimizer step runs ([5], [14], [15]),
a trainer's metric passes over the logits ([18]), and the fitted `SUSTAINED_FRACTION` of the GEMMs.

References
----------
One numbering for the step's op modules (`perf.ops`, `perf.op_kinds`, `perf.block_ops`): each lists the
references its code cites.

[5] Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW), Algorithm 2: the update reads
    the parameter, gradient, first and second moments and writes parameter and both moments.
[14] mosaicml/composer ``composer/optim/decoupled_weight_decay.py``, ``DecoupledAdamW.adamw``: a Python loop over
     the parameters, each updated by eager in-place ops (``param.mul_`` for weight decay when it is nonzero,
     ``exp_avg.mul_(beta1).add_``, ``exp_avg_sq.mul_(beta2).addcmul_``, ``exp_avg_sq.sqrt() / ...``, ``.add_(eps)``,
     ``param.addcdiv_``); the optimizer of llm-foundry's MPT yamls (``decoupled_adamw``, ``weight_decay: 0.0``).
[15] PyTorch ``torch.nn.utils.clip_grad_norm_`` (and FSDP's ``clip_grad_norm_``): the norm of each gradient, then
     every gradient ``mul_`` by the clamped coefficient, unconditionally (a test on it would synchronize host and
     device); the MPT yamls' ``gradient_clipping: {clipping_type: norm, clipping_threshold: 1.0}``.
[18] mosaicml/composer ``trainer.py`` (0.16.3) ``_eval_train_metrics``: after each micro-batch's backward, under
     autocast and no_grad, each train metric runs ``torch.nn.CrossEntropyLoss`` on the logits
     (``composer/metrics/nlp.py``); llm-foundry's MPT has two, LanguageCrossEntropy and LanguagePerplexity.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..memory.precision import MemoryPrecision
from ..memory.settings import FP32_BYTES, HALF_BYTES

# The one fitted number of the model: the share of their priced rate the GEMMs sustain in a real training loop
# (clocks below boost under load, framework and allocator overhead, communication kernels taking SMs), fitted as
# the value at which the median of measured / predicted tokens/s over the fit subset named in
# docs/performance_model.md is 1 (the 9 MosaicML A100-80GB rows at sequence 2048 of
# data/published_throughput.csv: 0.808, by bisection; 0.806 before the compute beside hidden collectives was
# slowed (`perf.parallel` [11]), 0.797 before their loss kernel and train metrics were priced, 2026-11-28).
# Those rows spend 80-95% of their priced time in GEMMs, so the fraction scales the GEMMs only; attention and
# memory-bound kernels keep their sourced rates. (Until 2026-11 it scaled every kernel, 0.76: that also slowed the
# attention kernel, which the long-sequence rows reject.) Errors are reported on the other rows only;
# tests/test_perf_validation.py re-derives it from the CSV.
SUSTAINED_FRACTION = 0.81
# What every report of a mixture of experts' step time says beside it (`plan`, `step`, `step` with a layout): no
# published MoE training throughput with its setup stated was found, so none of the time model's terms for the router,
# the experts' small GEMMs or the all-to-all has been checked (docs/performance_model.md, "Where the model is
# weakest", item 8).
MOE_STEP_TIME_NOTE = ("MoE step time is not validated against any published run: the router, the experts' GEMMs at "
                      "uniform routing and the expert-parallel all-to-all are priced by the same roofline as dense "
                      "layers, unchecked (docs/performance_model.md, 'Where the model is weakest', item 8)")


class AttentionKernel(str, Enum):
    """Which fused attention kernel runs (their rates differ per GPU: `perf.device`)."""

    flash2 = "flash2"  # FlashAttention-2 CUDA kernels: flash-attn 2, PyTorch SDPA's flash backend, cuDNN's
    triton = "triton"  # FlashAttention in Triton (flash_attn_triton.py; llm-foundry's attn_impl: triton)


class OptimizerKernel(str, Enum):
    """How the optimizer step runs: its FLOPs are nil, its bytes per parameter differ."""

    fused = "fused"  # one pass per tensor ([5]): torch AdamW(fused=True), llm.c's kernel
    composer = "composer"  # Composer's eager DecoupledAdamW loop, then clipping by norm ([14], [15]): llm-foundry


class OpClass(str, Enum):
    gemm = "gemm"
    attention = "attention"
    memory = "memory-bound"
    optimizer = "optimizer"


class Phase(str, Enum):
    forward = "forward"
    backward = "backward"
    recompute = "recompute"
    step = "optimizer step"


@dataclass(frozen=True)
class Op:
    """One kernel (or a few fused ones) of the step, per occurrence; ``count`` occurrences per step per GPU."""

    name: str
    op_class: OpClass
    phase: Phase
    flops: float  # FLOP per occurrence
    bytes_moved: float  # DRAM bytes per occurrence
    count: int  # occurrences per optimizer step on one GPU
    kernels: int = 1  # kernel launches per occurrence
    gemm_shape: tuple[int, int, int, int] | None = None  # (m, n, k, batch) of a GEMM
    flash: bool = False  # a fused attention kernel (priced at the flash efficiency)
    head_dim: int | None = None  # a fused attention kernel's head dimension (its tiles: `kernel_head_dim`)
    # a 16-bit GEMM with an operand row length that is not a multiple of 16 bytes (`gemm.misaligned`): cuBLAS runs
    # a one-element-aligned kernel (`gemm` [4]); fp32 GEMMs are not flagged (no measured rate for them)
    misaligned: bool = False


@dataclass(frozen=True)
class StepOptions:
    """Implementation choices that change the step's memory traffic, not its FLOPs. Whether the loss is fused, by
    which kernel, and whether dropout runs are the setup's (``TrainingSetup.fused_loss``, ``.loss_kernel``,
    ``.dropout``: the memory engine reads them there too); these are the choices only the step time depends on."""

    # cross-entropy passes a trainer runs over the logits per micro-batch for its training metrics (fp32 under
    # autocast, no backward) [18]: Composer with llm-foundry's MPT runs 2
    metric_ce_passes: int = 0
    # Share of the GEMMs' priced rate a real training loop sustains (clocks, framework, overlap interference);
    # FITTED, see SUSTAINED_FRACTION. 1.0 gives the unfitted roofline sum.
    sustained_fraction: float = 0.0  # 0 means "use SUSTAINED_FRACTION"
    attention_kernel: AttentionKernel = AttentionKernel.flash2  # the fused kernel when setup.flash
    # the framework pads misaligned GEMM dimensions (torch.compile's inductor: `gemm` [5]), so `Op.misaligned` GEMMs
    # run the aligned kernels; False: eager PyTorch, which hands cuBLAS the shapes as they are. It stands for the
    # compiled graph, which also fuses the fp32 residual stream's add, norm and cast (`ops._pass_shape`)
    gemm_shape_padding: bool = False
    # the module's weights are 16-bit whatever the setup's precision says (a LoRA base in bf16: peft keeps the frozen
    # base in the dtype it was loaded in), so the residual stream is 16-bit (`ops._pass_shape`, block_ops [20])
    half_weights: bool = False
    optimizer_kernel: OptimizerKernel = OptimizerKernel.fused  # how the AdamW step runs
    # the cluster's network per GPU between nodes (raw bytes/s per direction; a plan's --network-gbps, the layout
    # search's `layout.Cluster.network_bytes_per_s`); None: the GPU generation's (`fabric.network_bytes_per_s`)
    network_bytes_per_s: float | None = None

    @property
    def sustained(self) -> float:
        return self.sustained_fraction or SUSTAINED_FRACTION


def act_bytes(precision: MemoryPrecision) -> int:
    """Storage width of one activation element (bytes): fp32, or 16-bit under autocast or pure bf16."""
    return FP32_BYTES if precision is MemoryPrecision.fp32 else HALF_BYTES


def memory_op(name, phase, bytes_moved, n, kernels=1):
    """A memory-bound kernel: no FLOPs, ``bytes_moved`` per occurrence, ``n`` occurrences a step."""
    return Op(name, OpClass.memory, phase, 0.0, bytes_moved, n, kernels)
