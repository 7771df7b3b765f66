"""Settings of a training run that decide its memory: `TrainingSetup`, its enums and the named knobs (the
precision enum and its tables: precision.py).

Every assumption the estimator makes is a constant here with its source (the cuBLAS workspace, sized by the GPU's
architecture: `workspace.py`). Sizes are bytes.

References
----------
[1] Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
    arXiv:1910.02054, sec. 3.1 (16 bytes per parameter for mixed-precision Adam) and sec. 5 (stages).
[2] Ren et al. 2021, "ZeRO-Offload: Democratizing Billion-Scale Model Training", arXiv:2101.06840, sec. 4.1.
[3] Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization", arXiv:2110.02861, sec. 2;
    bitsandbytes ``optim/optimizer.py`` (``Optimizer2State.init_state``: uint8 states, one fp32 absmax
    per 256 elements, tensors under ``min_8bit_size`` = 4096 elements keep 32-bit states).
[4] Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    arXiv:1804.04235, sec. 3 (factored second moment: one row and one column vector per matrix).
[5] Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms" (Lion), arXiv:2302.06675,
    Algorithm 2 (a single momentum buffer).
[6] PyTorch ``DistributedDataParallel`` docs, ``bucket_cap_mb`` and ``gradient_as_bucket_view``
    ("the saved memory size will be equal to the total gradients size").
[7] DeepSpeed configuration docs, ZeRO ``reduce_bucket_size`` / ``allgather_bucket_size`` (default 5e8 elements).
[8] Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel",
    arXiv:2304.11277, sec. 3.2-3.3 (one unit unsharded at a time, plus one prefetched).
[9] PyTorch issue #34323 ("nvidia-smi shows usage of 781MB" right after CUDA initialisation) and the
    ``torch.cuda.memory_allocated`` docs (context and cached blocks are not counted there).
[10] Dao-AILab/flash-attention v1.0.7 ``flash_attn/losses/cross_entropy.py`` and ``csrc/xentropy``: the backward
     writes the logits' gradient into a new tensor (``at::empty_like(logits)``; ``inplace_backward=False`` by
     default).
[11] karpathy/llm.c ``train_gpt2.cu`` (commit 00247dc): one activation buffer ``output`` holds the logits
     (``matmul_forward_cublaslt(acts.output, acts.lnf, params.wte, ...)``) and, "in training mode, ... the
     *gradients* of the logits": ``fused_classifier(acts.output, acts.losses, dloss, ...)`` overwrites them in place
     and ``matmul_backward(..., acts.output, acts.lnf, params.wte, ...)`` reads the gradient from the same buffer
     (``llmc/fused_classifier.cuh``: "replaces logits with logit gradients").
[12] PyTorch ``aten/src/ATen/autocast_mode.cpp``: CUDA autocast lists ``log_softmax`` as fp32_set_opt_dtype and
     ``nll_loss`` as fp32 and has no ``cross_entropy_loss`` (the CPU list runs ``cross_entropy_loss`` whole in fp32);
     ``autocast_mode.h``: fp32_set_opt_dtype leaves an op alone when "the output type is already set"; and
     ``aten/src/ATen/native/LossNLL.cpp`` ``cross_entropy_loss_symint`` sets it: ``at::log_softmax(self, class_dim,
     self.scalar_type())``. So on CUDA the log-probabilities stay 16-bit (saved by ``log_softmax``), ``nll_loss``
     saves an fp32 copy of them (``NllLossBackward0::self_``, ``torch/csrc/autograd/generated/Functions.h``) and
     its backward writes an fp32 gradient, which is cast back to 16 bits before ``log_softmax``'s backward.
[13] PyTorch ``torch/csrc/autograd/engine.cpp`` ``evaluate_function``: a node's saved tensors are released
     (``release_variables``) as soon as it has run, so each loss buffer is gone before the next node allocates.
[14] The reference trainer (``flopscalc/train/trainer.py``: ``loss = self.model(x, y)[1]``) and
     ``benchmarks/bench_memory_gpu.py`` drop the logits before backward, and no node of PyTorch's loss saves them
     (``log_softmax`` saves its output, the casts nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from functools import lru_cache

from ..errors import UsageError
from ..flops import Recompute
from .precision import MemoryPrecision  # a field of TrainingSetup

MIB = 2.0**20

# ---------------------------------------------------------------- bytes per element

FP32_BYTES = 4  # IEEE single
HALF_BYTES = 2  # bf16 / fp16
INDEX_BYTES = 8  # token ids and targets are int64 (torch.long), what nn.Embedding and cross_entropy take
MASK_BYTES = 1  # torch.bool causal mask saved by masked_fill in the math attention path

# ---------------------------------------------------------------- optimizer constants

# 8-bit Adam: two uint8 states per element plus one fp32 absmax per block of 256 elements for each state ([3]).
ADAM8BIT_BLOCK_ELEMENTS = 256
# bitsandbytes keeps 32-bit (fp32) states for tensors with fewer elements than this ([3], ``min_8bit_size``).
ADAM8BIT_MIN_8BIT_ELEMENTS = 4096
# PyTorch AdamW and Adafactor keep a float32 ``step`` scalar per parameter tensor (torch.optim source).
OPTIMIZER_STEP_BYTES = 4

# ---------------------------------------------------------------- overhead knobs (modelled, not measured)

# CUDA context + kernels: [9] reports 781 MB right after start-up (eager module loading); lazy loading
# (CUDA >= 11.7, default in PyTorch builds since 2.x) trims it. 512 MiB is a middle figure; pass yours.
DEFAULT_CUDA_CONTEXT_BYTES = 512 * MIB
# Caching-allocator fragmentation: reserved exceeds allocated by a workload-dependent amount ([9]).
# 5% is an assumption, not a measurement; benchmarks/bench_memory_gpu.py reports reserved/allocated.
DEFAULT_ALLOCATOR_OVERHEAD_FRACTION = 0.05
# DeepSpeed's default reduce/all-gather bucket size, in elements ([7]); one bucket of each kind is live.
ZERO_BUCKET_ELEMENTS = 5e8
# FSDP keeps the unit being computed and the prefetched next one unsharded ([8]).
FSDP_UNSHARDED_UNITS = 2


def check_gpu_architecture(architecture: str | None, device: Device) -> None:
    """Refuse a GPU architecture that is not a name, or one given to a CPU estimate (which has no cuBLAS workspace)."""
    if architecture is None:
        return
    if not isinstance(architecture, str):  # "" is a GPU row without one (a --gpu-csv row): not known, said
        raise UsageError(f"GPU architecture must be a name such as 'Hopper' or 'Ada Lovelace' (the architecture "
                         f"column of the GPU database), got {architecture!r}")
    if device is Device.cpu:
        raise UsageError(f"GPU architecture {architecture!r} sets a CUDA GPU's cuBLAS workspace, and a CPU estimate "
                         "has none; drop the architecture or estimate for device cuda")


class Optimizer(str, Enum):
    """Optimizer whose state sits beside the weights."""

    adamw = "adamw"  # m and v ([1] sec. 3.1)
    adamw8bit = "adamw8bit"  # bitsandbytes 8-bit AdamW ([3])
    sgd = "sgd"  # SGD with momentum: one buffer
    adafactor = "adafactor"  # factored second moment, no first moment ([4]; torch.optim.Adafactor)
    lion = "lion"  # one momentum buffer ([5])
    none = "none"  # no optimizer state (e.g. forward/backward only)


class LossKernel(str, Enum):
    """Which fused cross-entropy kernel runs when the loss is fused (``TrainingSetup.fused_loss``): its passes over
    the logits (`perf.ops` [17], [19]) and whether the logits' gradient has a buffer of its own ([10], [11])."""

    flash_attn = "flash-attn"  # flash-attn's CrossEntropyLoss [10]: the gradient in a new tensor
    llmc = "llmc"  # llm.c's fused classifier [11]: the gradient written over the logits


class Device(str, Enum):
    """Whose autocast policy and kernels decide a few dtypes (see docs/memory.md)."""

    cuda = "cuda"
    cpu = "cpu"


# Most GPUs a plan or a setup is asked for (--n-gpus): a sanity bound, not physics, ~60x the 16,384 H100s Llama 3 405B
# trained on (Dubey et al. 2024, "The Llama 3 Herd of Models", sec. 3.3.1). A count of 1e23 kept the layout search
# looking for its divisors for hours.
MAX_N_GPUS = 1_000_000


def check_gpu_count_bound(n_gpus: int) -> None:
    """UsageError for a GPU count past `MAX_N_GPUS` (every TrainingSetup, the plan's request and a budget built
    alone check it)."""
    if n_gpus > MAX_N_GPUS:
        raise UsageError(f"number of GPUs must be at most {MAX_N_GPUS:,} (about 60x the largest published "
                         f"training run's 16,384), got {n_gpus:,}")


@dataclass(frozen=True)
class TrainingSetup:
    """Settings of one training step that decide memory per GPU.

    Parameters
    ----------
    micro_batch : int
        Sequences per GPU per forward pass (count).
    seq_len : int or None
        Tokens per sequence; None means the model's default, `model.default_train_seq` (its pretraining length,
        else ``block_size``).
    precision : MemoryPrecision
        Storage precision policy.
    optimizer : Optimizer
    recompute : Recompute
        Activation recomputation: none, selective (attention core) or full (every block).
    flash : bool
        Fused attention (``scaled_dot_product_attention``; saves output + logsumexp, no T x T scores).
    grad_accum : int
        Micro-batches accumulated per optimizer step (count); above 1 the gradients stay allocated
        through every forward pass.
    n_gpus : int
        Data-parallel GPUs (count).
    zero_stage : int
        ZeRO stage 0-3 ([1] sec. 5): 1 shards optimizer state (and fp32 master weights), 2 also
        gradients, 3 also weights. FSDP ``FULL_SHARD`` is the ZeRO-3 equivalent, ``SHARD_GRAD_OP`` ZeRO-2.
    offload_optimizer : bool
        ZeRO-Offload ([2]): optimizer state and fp32 master weights live in CPU memory.
    device : Device
        Autocast policy / kernels to model (CUDA by default; the CPU tests use ``cpu``).
    cuda_context_bytes : float
        Memory the CUDA context takes outside PyTorch's allocator (bytes).
    allocator_overhead_fraction : float
        Caching-allocator overhead as a fraction of allocated bytes (0-1).
    dropout : bool
        Dropout layers on (GPT-2's embedding, attention-probability and residual dropouts): their masks are saved
        for backward (Korthikanti et al. 2022, eq. 1). The reference module has none (default False).
    fused_loss : bool
        Cross-entropy in one kernel on the 16-bit logits (flash-attn's ``CrossEntropyLoss``, the default loss of
        MosaicML's llm-foundry; llm.c's fused classifier): it saves one fp32 log-sum-exp per token, not the fp32
        log-probabilities, and its backward writes one gradient the size of the logits. Default: PyTorch's
        ``F.cross_entropy`` under autocast (fp32 log-probabilities).
    loss_kernel : LossKernel
        Which fused kernel runs the loss when ``fused_loss`` (flash-attn's by default; llm.c's writes the logits'
        gradient in place, [11]); a kernel other than the default without ``fused_loss`` is refused.
    low_precision_norm : bool
        Norms run on a 16-bit copy of their input outside autocast and save it (MPT's
        ``low_precision_layernorm``); by default autocast runs ``layer_norm`` in fp32 and it saves an fp32 input.
    reduce_fp32 : bool or None
        Under mixed precision with ZeRO 1-3, whether gradients cross the network in fp32 (True) or in the 16-bit
        weights' dtype (False). None: as the tools flopscalc names for the stage run it (`fp32_reduce`).
    gpu_architecture : str or None
        The CUDA GPU's architecture (``GpuSpec.architecture``, e.g. "Ada Lovelace"), which sets PyTorch's cuBLAS
        workspace size (`cublas_workspace`). None: not known, so the larger size is assumed (and said). A CPU
        estimate has no cuBLAS workspace, so naming one there is refused.
    cuda_runtime : bool
        The accelerator runs PyTorch's CUDA runtime (NVIDIA; AMD through ROCm/HIP; `workspace.runs_cuda`, set from
        the GPU by `workspace.on_gpu` / `workspace.gpu_setup_fields`). False (TPU, Trainium, Gaudi): no CUDA context,
        allocator reserve or cuBLAS workspace is counted, and that runtime's own memory is not modelled.
    """

    micro_batch: int = 1
    seq_len: int | None = None
    precision: MemoryPrecision = MemoryPrecision.bf16_mixed
    optimizer: Optimizer = Optimizer.adamw
    recompute: Recompute = Recompute.none
    flash: bool = True
    grad_accum: int = 1
    n_gpus: int = 1
    zero_stage: int = 0
    offload_optimizer: bool = False
    device: Device = Device.cuda
    cuda_context_bytes: float = DEFAULT_CUDA_CONTEXT_BYTES
    allocator_overhead_fraction: float = DEFAULT_ALLOCATOR_OVERHEAD_FRACTION
    dropout: bool = False
    fused_loss: bool = False
    loss_kernel: LossKernel = LossKernel.flash_attn
    low_precision_norm: bool = False
    reduce_fp32: bool | None = None
    gpu_architecture: str | None = None
    cuda_runtime: bool = True

    def __post_init__(self) -> None:
        for name, enum in (("precision", MemoryPrecision), ("optimizer", Optimizer),
                           ("recompute", Recompute), ("device", Device), ("loss_kernel", LossKernel)):
            value = getattr(self, name)
            if type(value) is enum:  # already a member (the planner builds thousands): nothing to convert
                continue
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise UsageError(f"{name} {value!r} is not one of {', '.join(e.value for e in enum)}") from None
        for name in ("micro_batch", "n_gpus", "grad_accum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name.replace('_', '-')} must be a positive whole number, got {value!r}; "
                                 "try 1")
        check_gpu_count_bound(self.n_gpus)  # `flopscalc step/memory --n-gpus 1e20` printed a 1.8e16 s step
        if self.seq_len is not None and (isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int)
                                         or self.seq_len < 1):
            raise UsageError(f"sequence length must be a positive whole number of tokens, got {self.seq_len!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise UsageError(f"ZeRO stage must be 0, 1, 2 or 3, got {self.zero_stage!r} "
                             "(FSDP FULL_SHARD is stage 3, SHARD_GRAD_OP stage 2)")
        if self.offload_optimizer and self.optimizer is Optimizer.none:
            raise UsageError("optimizer offload needs an optimizer to offload; drop --offload or pick "
                             "--optimizer adamw")
        if self.loss_kernel is not LossKernel.flash_attn and not self.fused_loss:
            raise UsageError(f"loss kernel {self.loss_kernel.value!r} is a fused cross-entropy kernel, so it runs only "
                             "with a fused loss; set fused_loss (--fused-loss) or leave the kernel at its default")
        check_gpu_architecture(self.gpu_architecture, self.device)
        if not (self.cuda_context_bytes >= 0):
            raise UsageError(f"CUDA context size must be >= 0 bytes, got {self.cuda_context_bytes!r}")
        if not (0 <= self.allocator_overhead_fraction < 1):
            raise UsageError("allocator overhead must be a fraction in [0, 1), "
                             f"got {self.allocator_overhead_fraction!r}")

    @property
    def deepspeed_style(self) -> bool:
        """Mixed precision with 16-bit weights/grads and fp32 master copies in the optimizer ([1] sec. 3.1).

        True under ZeRO stages 1-3 or optimizer offload; stage 0 is PyTorch AMP (fp32 weights are the
        master weights, fp32 gradients, a 16-bit autocast copy of the matmul weights).
        """
        return self.precision.mixed and (self.zero_stage > 0 or self.offload_optimizer)

    @property
    def fp32_reduce(self) -> bool:
        """Whether ZeRO 1-3 under mixed precision reduces fp32 gradients: as given, else FSDP (stage 3) as `flopscalc
        train` and torchtitan run it (``MixedPrecisionPolicy(reduce_dtype=torch.float32)``) in fp32, DeepSpeed's
        stages 1-2 in the weights' dtype (Rajbhandari et al. 2020, sec. 7.2.1: 2 bytes per parameter)."""
        return self.zero_stage == 3 if self.reduce_fp32 is None else self.reduce_fp32

    @property
    def reduce_dtype_used(self) -> bool:
        """Whether ``reduce_fp32`` (the gradients' reduction dtype) is used: `reduce_dtype_used`."""
        return reduce_dtype_used(self.precision, self.zero_stage)

    def warnings(self) -> list[str]:
        """Legal but doubtful settings, as sentences (never errors)."""
        out = []
        if self.zero_stage > 0 and self.n_gpus == 1:
            out.append(f"ZeRO stage {self.zero_stage} on one GPU shards nothing across GPUs"
                       + (" and only adds gather buffers" if self.zero_stage == 3 else "")
                       + "; it matters only with --n-gpus > 1")
        if self.precision is MemoryPrecision.bf16_pure:
            out.append("pure bf16 (no fp32 master weights) can lose small updates to rounding; "
                       "use Kahan summation or stochastic rounding in the optimizer")
        if self.offload_optimizer:
            out.append("optimizer offload runs the optimizer step on the CPU and moves gradients and weights over "
                       "PCIe every step (ZeRO-Offload, Ren et al. 2021); 'flopscalc plan' puts that time in the step")
        if self.reduce_fp32 is not None and not self.reduce_dtype_used:
            out.append(f"the gradient reduce dtype is chosen only under mixed precision with ZeRO 1-3; at "
                       f"{self.precision.value} and ZeRO {self.zero_stage} the gradients cross the network in their "
                       "own dtype, so the fp32/16-bit choice given is not used")
        if self.low_precision_norm and not self.precision.mixed:
            out.append(f"a low-precision norm changes what a norm saves only under autocast (bf16-mixed, fp16-mixed); "
                       f"at {self.precision.value} the norms already run in the weights' dtype, so it is not used")
        return out


# Entries a kept table (`kept`) holds before it starts afresh: a plan fills a few hundred.
KEPT_MAX = 4096


def kept(table: dict, key, make):
    """``table[key]``, made by ``make()`` the first time: a pure function's results kept by the fields they read
    (so a setup differing elsewhere finds them), where `functools.lru_cache` would need the setup rebuilt from
    those fields. The table starts afresh beyond KEPT_MAX entries."""
    try:
        return table[key]
    except KeyError:
        if len(table) >= KEPT_MAX:
            table.clear()
        value = table[key] = make()
        return value


@lru_cache(maxsize=16384)  # searches ask for the same setups at the same micro-batches, model after model
def with_micro_batch(setup: TrainingSetup, micro_batch: int, grad_accum: int | None = None) -> TrainingSetup:
    """``setup`` at ``micro_batch`` sequences (and ``grad_accum`` micro-batches): `dataclasses.replace`, kept."""
    if grad_accum is None:
        return replace(setup, micro_batch=micro_batch)
    return replace(setup, micro_batch=micro_batch, grad_accum=grad_accum)


def reduce_dtype_used(precision: MemoryPrecision, zero_stage: int) -> bool:
    """Whether a choice of the gradients' reduction dtype (``TrainingSetup.reduce_fp32``, ``--reduce-dtype``) is
    used: only mixed precision under ZeRO 1-3 reduces gradients whose dtype differs from the weights' it updates
    ([1] sec. 7.2.1: the 16-bit gradients, or fp32 as FSDP2's ``reduce_dtype``); fp32 and pure bf16 send theirs in
    the weights' dtype, and plain DDP under autocast its fp32 gradients (`grad_wire_bytes_per_param`). The one rule
    the setup's warning, ``--reduce-dtype``'s refusal and the bytes on the wire share."""
    return precision.mixed and zero_stage > 0


def grad_wire_bytes_per_param(setup: TrainingSetup) -> float:
    """Bytes per parameter of the gradients data parallelism moves (the one rule the planner and step share).

    fp32 training sends fp32 gradients (4); bf16-pure keeps them in bf16 (2). Mixed precision under ZeRO 1-3
    reduces the fp16/bf16 gradients before the fp32 master update ([1] sec. 7.2.1: 2Ψ per all-reduce, 3Ψ at
    stage 3), so 2, unless it reduces in fp32 (`TrainingSetup.fp32_reduce`: FSDP2 with ``reduce_dtype=float32``,
    as `flopscalc train` and torchtitan run it), 4; plain DDP under torch autocast keeps fp32 gradients on fp32
    weights ([6]), so 4.
    """
    if setup.reduce_dtype_used:
        return 4.0 if setup.fp32_reduce else 2.0
    return 2.0 if setup.precision is MemoryPrecision.bf16_pure else 4.0  # fp32, or AMP's fp32 gradients
