"""Memory of one fine-tuning step on one GPU: full, LoRA and QLoRA, by component.

Full fine-tuning is pre-training's memory (`flopscalc.memory.estimate_memory`, unchanged). LoRA and QLoRA are
modelled as ``peft`` + ``transformers`` run them:

- the base is frozen: no gradients and no optimizer state for it (``requires_grad=False``); LoRA keeps it in
  16-bit, QLoRA quantizes the block linears (`adapters.quantized_bytes`) and, as peft's
  ``prepare_model_for_kbit_training`` does (the QLoRA recipe), casts the remaining 16-bit parameters (embedding,
  norms, LM head) to fp32;
- adapters are fp32 (``get_peft_model(autocast_adapter_dtype=True)``, peft's default) and run in bf16 under
  autocast, whose bf16 copies backward keeps (`saved_adapter_casts`); their gradients and optimizer state
  are fp32 (AdamW m and v: Rajbhandari et al. 2020, sec. 3.1; 8-bit AdamW: Dettmers et al. 2022b);
- a frozen fp32 LM head under autocast is cast to bf16 each forward and the cast is saved for its input gradient;
- bitsandbytes' 4-bit matmul saves no activation, dequantizes the weight to bf16 in the backward
  (``MatMul4Bit.backward``: one layer's weight at a time);
- activations follow what autograd saves with a frozen base (`flopscalc.finetune.activations`);
- paged optimizers (QLoRA sec. 3, "Paged Optimizers": NVIDIA unified memory pages optimizer state to CPU memory
  when the GPU runs out) leave the peak unchanged when it fits and let the optimizer state spill otherwise.

Peak: every component added up. The adapters' gradients are counted alive with the activations (they are
allocated during backward while activations are freed; for adapters they are well under 1% of the peak, so the
sum is a small overestimate, where the pre-training estimator takes the larger end of backward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

from ..errors import UsageError
from ..flops import Recompute
from ..memory import TrainingSetup, estimate_memory, logits_buffer_bytes
from ..memory.estimate import blas_workspace_bytes, cuda_only_bytes
from ..memory.precision import MemoryPrecision
from ..memory.settings import (
    ADAM8BIT_BLOCK_ELEMENTS,
    ADAM8BIT_MIN_8BIT_ELEMENTS,
    DEFAULT_ALLOCATOR_OVERHEAD_FRACTION,
    DEFAULT_CUDA_CONTEXT_BYTES,
    FP32_BYTES,
    HALF_BYTES,
    OPTIMIZER_STEP_BYTES,
    Device,
    Optimizer,
    check_gpu_architecture,
)
from ..model import ModelConfig, count_params
from .activations import inputs_needing_grad, layer_flow, lora_activation_bytes
from .adapters import (
    AdapterCount,
    Method,
    Quant,
    check_lora_model,
    count_adapters,
    linear_shapes,
    quantized_bytes,
)

# Components that do not depend on the micro-batch or the sequence.
STATE_KEYS = frozenset({"weights", "master_weights", "gradients", "optimizer_state", "base_weights", "quant_constants",
                        "adapter_weights"})
# Default LoRA rank: the example (--rank 16); peft's own default is 8 (``LoraConfig.r``).
DEFAULT_RANK = 16
# Default tokens per sequence: a choice, not a measurement. Instruction examples are short (qlora.py truncates
# sources at 1024 and targets at 256 tokens and pads to the longest in the batch); state yours with --seq.
DEFAULT_SEQ_LEN = 512


class Compute(str, Enum):
    """Dtypes of the run: bf16 autocast on a GPU (what the Trainer's ``bf16=True`` does), or all fp32 (CPU check)."""

    bf16 = "bf16"
    fp32 = "fp32"


@dataclass(frozen=True)
class FinetuneSetup:
    """One fine-tuning configuration (see the module docstring for what each choice stores).

    Parameters
    ----------
    method : Method
    rank : int
        LoRA rank r (ignored by ``full``; refused with it by the CLI).
    targets : tuple of str
        Targeted linears (`adapters.TARGETS`).
    quant : Quant
        QLoRA's base-weight format.
    double_quant : bool
        Quantize NF4's constants too (QLoRA sec. 3).
    micro_batch, seq_len : int
        Sequences per forward (sequences), tokens per sequence (tokens).
    grad_accum : int
        Micro-batches accumulated per optimizer step (count). Full fine-tuning counts it as pre-training does
        (`memory.estimate`: earlier micro-batches' gradients alive through forward and backward); with adapters the
        peak already counts their gradients alive beside every activation (module docstring), which is the
        accumulating case, so it moves nothing there.
    optimizer : Optimizer
        adamw or adamw8bit (trainable parameters only).
    paged : bool
        Paged optimizer: optimizer state may spill to CPU memory.
    recompute : Recompute
        none or full (gradient checkpointing, one checkpoint per block as transformers does).
    compute : Compute
    bf16_adapters : bool
        QLoRA's own recipe (Dettmers' ``qlora.py``: LoRA layers cast to bf16, embedding and LM head back to bf16,
        norms fp32, bitsandbytes' 32-bit paged AdamW) instead of peft's defaults (fp32 adapters and, after
        ``prepare_model_for_kbit_training``, every non-quantized parameter fp32).
    device : Device
    gpu_architecture : str or None
        The CUDA GPU's architecture, which sizes PyTorch's cuBLAS workspaces (`memory.TrainingSetup`'s field of the
        name); `plan_finetune` sets its GPU's. None: not known, the larger size assumed.
    cuda_runtime : bool
        The accelerator runs PyTorch's CUDA runtime (NVIDIA; AMD through ROCm/HIP): its CUDA context, caching-allocator
        reserve and cuBLAS workspaces are counted. False (TPU, Trainium, Gaudi; `memory.workspace.runs_cuda`) leaves those
        three out, and that runtime's own memory is not modelled.
    """

    method: Method = Method.qlora
    rank: int = DEFAULT_RANK
    targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
    quant: Quant = Quant.nf4
    double_quant: bool = True
    micro_batch: int = 1
    seq_len: int = DEFAULT_SEQ_LEN
    grad_accum: int = 1
    optimizer: Optimizer = Optimizer.adamw
    paged: bool = False
    recompute: Recompute = Recompute.full
    compute: Compute = Compute.bf16
    bf16_adapters: bool = False
    device: Device = Device.cuda
    cuda_context_bytes: float = DEFAULT_CUDA_CONTEXT_BYTES
    allocator_overhead_fraction: float = DEFAULT_ALLOCATOR_OVERHEAD_FRACTION
    gpu_architecture: str | None = None
    cuda_runtime: bool = True

    def __post_init__(self) -> None:
        for name, enum in (("method", Method), ("quant", Quant), ("optimizer", Optimizer),
                           ("recompute", Recompute), ("compute", Compute), ("device", Device)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                raise UsageError(f"{name} {getattr(self, name)!r} is not one of "
                                 f"{', '.join(e.value for e in enum)}") from None
        for name, option in (("micro_batch", "--micro-batch"), ("seq_len", "--seq"), ("rank", "--rank"),
                             ("grad_accum", "--grad-accum")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"{option} must be a positive whole number, got {v!r}; try {option} 1")
        check_gpu_architecture(self.gpu_architecture, self.device)
        if self.optimizer not in (Optimizer.adamw, Optimizer.adamw8bit):
            raise UsageError(f"fine-tuning optimizer {self.optimizer.value!r} is not modelled; use adamw or adamw8bit")
        if self.recompute is Recompute.selective:
            raise UsageError("fine-tuning models recompute none or full (transformers' gradient checkpointing)")
        if self.bf16_adapters and (self.compute is Compute.fp32 or self.method is Method.full):
            raise UsageError("bf16 adapters need --method lora or qlora in bf16; drop --bf16-adapters")


@dataclass(frozen=True)
class FinetuneMemory:
    """Memory of one fine-tuning step, by component (bytes per GPU)."""

    model: ModelConfig
    setup: FinetuneSetup
    n_trainable: int
    n_total: int
    components: tuple[tuple[str, str, float], ...]  # (key, label, bytes) in display order
    spillable_bytes: float  # optimizer state a paged optimizer may move to CPU memory

    def component_bytes(self) -> dict[str, float]:
        return {k: b for k, _, b in self.components}

    @property
    def peak_bytes(self) -> float:
        return sum(b for _, _, b in self.components)

    @property
    def states_bytes(self) -> float:
        """Weights, gradients and optimizer state: what no batch or sequence change shrinks (bytes)."""
        return sum(b for k, _, b in self.components if k in STATE_KEYS)

    def required_bytes(self) -> float:
        """What must be on the GPU: the peak, less the optimizer state a paged optimizer can spill."""
        return self.peak_bytes - (self.spillable_bytes if self.setup.paged else 0.0)

    @property
    def required_states_bytes(self) -> float:
        """The part of `states_bytes` that must be on the GPU: less the optimizer state a paged optimizer can spill
        (bytes; part of `required_bytes`, as `states_bytes` is of the peak)."""
        return self.states_bytes - (self.spillable_bytes if self.setup.paged else 0.0)


def adapter_optimizer_bytes(cfg: ModelConfig, setup: FinetuneSetup) -> float:
    """Optimizer state of the adapters (bytes): AdamW m, v in fp32 plus a step per tensor; 8-bit blockwise."""
    shapes = linear_shapes(cfg)
    tensors = [n for t in setup.targets for n in (setup.rank * shapes[t][0], shapes[t][1] * setup.rank)]
    tensors *= cfg.n_layer
    if setup.optimizer is Optimizer.adamw:  # fp32 adapters, or bitsandbytes' 32-bit AdamW on bf16 ones
        return 2 * FP32_BYTES * sum(tensors) + OPTIMIZER_STEP_BYTES * len(tensors)  # ZeRO sec. 3.1; torch step
    total = 0.0
    for k in tensors:  # bitsandbytes Optimizer2State: uint8 states + fp32 absmax per 256 (Dettmers 2022b sec. 2)
        if k >= ADAM8BIT_MIN_8BIT_ELEMENTS:
            total += 2 * (k + FP32_BYTES * math.ceil(k / ADAM8BIT_BLOCK_ELEMENTS))
        else:
            total += 2 * FP32_BYTES * k
    return total


def saved_adapter_casts(cfg: ModelConfig, setup: FinetuneSetup) -> int:
    """Adapter elements whose bf16 autocast copy is alive at the start of backward (count).

    Autocast casts each fp32 adapter weight once per forward (its cache holds leaves that require grad) and drops
    the cache when the forward leaves autocast; what stays is what backward saved: ``lora_B``'s weight always (for
    the intermediate's gradient), ``lora_A``'s only where its input needs a gradient (not before the first adapter in
    layer 0). With checkpointing the forward saves none of them and backward re-runs one layer at a time.
    """
    shapes = linear_shapes(cfg)
    per_layer = sum(setup.rank * (shapes[t][0] + shapes[t][1]) for t in setup.targets)
    if setup.recompute is Recompute.full:
        return per_layer  # one layer re-run in backward
    needs = inputs_needing_grad(layer_flow(setup.targets, False, cfg.mlp.n_matrices == 3))
    skipped = sum(setup.rank * shapes[t][0] for t in setup.targets if not needs[t])  # layer 0's unsaved A weights
    return cfg.n_layer * per_layer - skipped


def _full(cfg: ModelConfig, setup: FinetuneSetup) -> FinetuneMemory:
    prec = MemoryPrecision.fp32 if setup.compute is Compute.fp32 else MemoryPrecision.bf16_mixed
    train = TrainingSetup(micro_batch=setup.micro_batch, seq_len=setup.seq_len, grad_accum=setup.grad_accum,
                          precision=prec, optimizer=setup.optimizer, recompute=setup.recompute, device=setup.device,
                          cuda_context_bytes=setup.cuda_context_bytes,
                          allocator_overhead_fraction=setup.allocator_overhead_fraction,
                          gpu_architecture=setup.gpu_architecture, cuda_runtime=setup.cuda_runtime)
    bd = estimate_memory(cfg, train)
    from ..memory import COMPONENTS

    labels = {k: label for k, label, _ in COMPONENTS}
    comps = tuple((k, labels[k], b) for k, b in bd.component_bytes().items())
    n = count_params(cfg).total
    return FinetuneMemory(cfg, setup, n, n, comps, bd.states.optimizer_state_bytes)


def finetune_memory(cfg: ModelConfig, setup: FinetuneSetup) -> FinetuneMemory:
    """Memory of one fine-tuning step of ``cfg`` under ``setup`` (bytes per GPU), by component."""
    if setup.seq_len > cfg.block_size and cfg.seq_limited_by_context:
        raise UsageError(f"sequence length {setup.seq_len} is longer than the model's learned position table "
                         f"({cfg.block_size}); pass --seq {cfg.block_size} or less")
    # without the CUDA runtime (setup.cuda_runtime False) each engine counts no context, allocator reserve or cuBLAS
    # workspace itself (memory.estimate.cuda_only_bytes, memory.workspace [3])
    return _full(cfg, setup) if setup.method is Method.full else _adapters(cfg, setup)


def _adapters(cfg: ModelConfig, setup: FinetuneSetup) -> FinetuneMemory:
    """LoRA and QLoRA memory (`finetune_memory`)."""
    check_lora_model(cfg, setup.targets)
    pc = count_params(cfg)
    adapters: AdapterCount = count_adapters(cfg, setup.targets, setup.rank, pc.total)
    n_lora = adapters.n_params
    bf16 = setup.compute is Compute.bf16
    adapter_elem = HALF_BYTES if setup.bf16_adapters else FP32_BYTES
    quant_b, quant_data_b, n_quant = 0.0, 0.0, 0
    if setup.method is Method.qlora:
        quant_b, n_quant = quantized_bytes(cfg, setup.quant, double_quant=setup.double_quant)
        quant_data_b = n_quant * (0.5 if setup.quant is Quant.nf4 else 1.0)  # 4 or 8 bits per weight
        if setup.bf16_adapters:  # qlora.py: norms fp32, everything else not quantized in bf16
            other_b = FP32_BYTES * pc.layernorm + HALF_BYTES * (pc.total - n_quant - pc.layernorm)
        else:  # prepare_model_for_kbit_training: every non-quantized 16-bit parameter -> fp32 (peft utils/other.py)
            other_b = FP32_BYTES * (pc.total - n_quant)
    else:
        other_b = (HALF_BYTES if bf16 else FP32_BYTES) * pc.total  # frozen base as loaded
    base_b = other_b + quant_data_b
    adapter_b = adapter_elem * n_lora  # peft autocast_adapter_dtype=True keeps adapters fp32; qlora.py casts to bf16
    casts = 0.0
    if bf16 and not setup.bf16_adapters:
        casts += HALF_BYTES * saved_adapter_casts(cfg, setup)  # bf16 copies of fp32 adapters saved for backward
        if setup.method is Method.qlora:
            casts += HALF_BYTES * cfg.vocab_size * cfg.n_embd  # fp32 LM head cast to bf16, saved for dx
    grads = adapter_elem * n_lora  # only adapters get .grad, in their dtype
    opt = adapter_optimizer_bytes(cfg, setup)
    acts = lora_activation_bytes(cfg, setup)
    train = TrainingSetup(micro_batch=setup.micro_batch, seq_len=setup.seq_len,
                          precision=MemoryPrecision.bf16_mixed if bf16 else MemoryPrecision.fp32, device=setup.device,
                          gpu_architecture=setup.gpu_architecture, cuda_runtime=setup.cuda_runtime)
    # logits + loss-backward transients of transformers' loss on fp32 logits (ForCausalLMLoss: ``logits.float()``)
    logits, transient = logits_buffer_bytes(cfg, train, setup.seq_len, upcast_logits=True)
    dequant = 0.0
    if setup.method is Method.qlora:
        elem = HALF_BYTES if bf16 else FP32_BYTES  # dequantized to the compute dtype (bnb ``compute_dtype``)
        dequant = elem * max(i * o for i, o in linear_shapes(cfg).values())  # one layer's weight at a time
    alloc = (base_b + (quant_b - quant_data_b) + adapter_b + casts + grads + opt + acts.total + logits + transient
             + dequant)
    comps = (
        ("base_weights", "frozen base weights", base_b),
        ("quant_constants", "quantization constants", quant_b - quant_data_b),
        ("adapter_weights", "LoRA adapters", adapter_b),
        ("weight_copies", "bf16 weight casts (autocast)", casts),
        ("gradients", "gradients (adapters only)", grads),
        ("optimizer_state", "optimizer state (adapters only)", opt),
        ("activations", "activations (saved for backward)", acts.total),
        ("logits_buffers", "logits + loss gradients", logits + transient),
        ("dequant_buffer", "dequantized weight (one layer)", dequant),
        ("allocator_overhead", "allocator overhead", cuda_only_bytes(setup.allocator_overhead_fraction * alloc,
                                                                     setup.device, setup.cuda_runtime)),
        ("cuda_context", "CUDA context", cuda_only_bytes(setup.cuda_context_bytes, setup.device,
                                                         setup.cuda_runtime)),
        # cuBLAS workspaces from PyTorch's allocator, as the full-training estimate counts them (memory.workspace [1])
        ("blas_workspaces", "cuBLAS workspaces", blas_workspace_bytes(train)),
    )
    return FinetuneMemory(cfg, setup, n_lora, pc.total + n_lora, comps, opt)


def with_(setup: FinetuneSetup, **changes) -> FinetuneSetup:
    """A copy of ``setup`` with some fields changed (validated again)."""
    return replace(setup, **changes)
