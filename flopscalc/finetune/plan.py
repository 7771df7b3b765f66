"""A fine-tuning plan on one GPU: does it fit, the largest micro-batch and sequence, the time, and ranked fixes.

Time ("per-operation", the default): the step's operations (`perf.finetune_ops`: the base model's ops without
frozen weight gradients, plus adapter GEMMs and QLoRA's dequantizations) priced as `perf.step.estimate_step`
prices its own (`perf.step.price_ops`), times micro-batch steps. Time ("stated", ``efficiency`` given, or a GPU
the per-operation model does not price): FLOPs over the GPU's 16-bit peak times that efficiency
(`flopscalc.planner.budget.DEFAULT_MFU` on fallback), plus QLoRA's dequantization bytes over the memory bandwidth.
With gradient accumulation the forward and backward run every micro-batch and the optimizer update once per
optimizer step (as `perf.step.estimate_step` divides them). Either way, when a paged optimizer spills, the spilled
state crosses the host link (PCIe, `perf.offload.host_link_bytes_per_s`) twice per optimizer step: bitsandbytes'
paged optimizers allocate their state in CUDA unified memory, which the driver evicts to CPU memory when the
forward and backward need the room, and prefetches back before each update (bitsandbytes ``optim/optimizer.py``
``Optimizer8bit.prefetch_state`` -> ``functional.prefetch_tensor``: ``cudaMemPrefetchAsync``), so the pages move at
the copy rate, not by faults.
The attention core is priced with causal pairs (fused kernels skip masked blocks; ``flopscalc.flops``).
The fit search and the fixes are in `finetune.fixes`.
Sequences and optimizer steps are whole, at least one step an epoch (`steps.run_steps`: transformers' Trainer count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..assumption import Assumption
from ..errors import UsageError
from ..hardware import DEFAULT_PRECISION, GpuSpec, Precision, training_precision
from ..memory.workspace import no_cuda_runtime_note, on_gpu
from ..model import ModelConfig
from ..perf.offload import host_link_bytes_per_s, pcie_generation
from ..perf.op_kinds import Phase
from ..perf.utilization import seconds_at_utilization
from ..planner.budget import DEFAULT_MFU
from ..units import GIB
from .adapters import Method
from .assumptions import PER_OPERATION, STATED, finetune_assumptions
from .backends import check_bitsandbytes
from .fixes import (
    METHOD_ORDER,
    Fix,
    MethodTrial,
    cheapest_method,
    largest_micro_batch,
    largest_seq_len,
    method_trials,
    suggest_fixes,
    with_method,
)
from .flops import FinetuneFlops, dequant_bytes_per_token, finetune_flops_per_token
from .memory import FinetuneMemory, FinetuneSetup, finetune_memory
from .steps import RunSteps, run_steps

# the fit search and the fixes live in fixes.py; callers of finetune.plan still find them here
__all__ = ["METHOD_ORDER", "FinetunePlan", "Fix", "MethodTrial", "cheapest_method", "largest_micro_batch",
           "largest_seq_len", "method_trials",
           "plan_finetune", "suggest_fixes", "with_method"]


@dataclass(frozen=True)
class FinetunePlan:
    """Everything ``flopscalc finetune`` shows (bytes, tokens, FLOPs, seconds)."""

    model: ModelConfig
    gpu: GpuSpec
    setup: FinetuneSetup
    memory: FinetuneMemory
    usable_bytes: float
    fits: bool
    spill_bytes: float  # optimizer state a paged optimizer moves to CPU memory (0 when it fits)
    paging_link: str  # the host link paging crosses, e.g. "PCIe 4.0 x16"
    paging_link_bytes_per_s: float  # its measured copy rate per direction (perf.offload.host_link_bytes_per_s)
    max_micro_batch: int  # at the setup's sequence length (0 if none fits)
    max_seq_len: int  # at micro-batch 1; past a RoPE model's context when it fits (0 if none fits)
    n_dataset_tokens: float
    n_epochs: float
    packing: bool
    mean_sequence_tokens: float
    run: RunSteps  # whole sequences, micro-batches and optimizer steps, per epoch and in all (`steps.run_steps`)
    processed_tokens: float  # sequences x sequence length: what the GPU computes on, padding included
    flops: FinetuneFlops  # per processed token, causal attention
    compute_s: float
    dequant_s: float
    spill_s: float
    efficiency: float | None  # the stated fraction of peak; None when the per-operation model priced the time
    peak_flop_per_s: float
    fixes: tuple[Fix, ...]
    method_trials: tuple[MethodTrial, ...]  # full, LoRA, QLoRA with the other settings as given (`fixes.method_trials`)
    assumptions: tuple[Assumption, ...]
    notes: tuple[str, ...]
    time_model: str = "stated"  # "per-operation" (perf.finetune_ops) or "stated" (FLOPs / (peak x efficiency))

    @property
    def precision(self) -> Precision:
        """The 16-bit rate the time is priced at: bf16, or fp16 on a card without bf16 (`training_precision`)."""
        return training_precision(self.gpu, None, DEFAULT_PRECISION)[0]

    @property
    def cheapest_method(self) -> Method | None:
        """The first of full, LoRA, QLoRA that fits with the other settings as given; None when none does."""
        return next((t.method for t in self.method_trials if t.fits), None)

    @property
    def n_sequences(self) -> int:
        """Whole sequences over every epoch (`steps.run_steps`)."""
        return self.run.n_sequences

    @property
    def n_optimizer_steps(self) -> int:
        """Per epoch max(ceil(micro-batches / accumulation), 1), x epochs rounded up (`steps.run_steps`)."""
        return self.run.n_optimizer_steps

    @property
    def padding_fraction(self) -> float:
        """Share of each padded sequence that is padding: 1 - mean example / sequence (0 packed, or when the examples
        are assumed to fill the sequence). The round-up to whole sequences and steps is `roundup_tokens`, apart."""
        return 1.0 - self.mean_sequence_tokens / self.setup.seq_len

    @property
    def roundup_tokens(self) -> float:
        """Positions computed past the data: the processed tokens less the data's tokens x epochs with their
        padding, i.e. the part-filled last sequence and the sequences the whole last step takes (tokens, >= 0)."""
        needed = self.n_dataset_tokens * self.n_epochs * self.setup.seq_len / self.mean_sequence_tokens
        return max(0.0, self.processed_tokens - needed)

    @property
    def time_s(self) -> float:
        return self.compute_s + self.dequant_s + self.spill_s

    @property
    def total_flops(self) -> float:
        return self.flops.hardware_flops_per_token * self.processed_tokens



def plan_finetune(cfg: ModelConfig, setup: FinetuneSetup, gpu: GpuSpec, *, n_dataset_tokens: float,
                  n_epochs: float = 1.0, packing: bool = False, mean_sequence_tokens: float | None = None,
                  efficiency: float | None = None, headroom: float = 0.0) -> FinetunePlan:
    """The fine-tuning plan of ``cfg`` on ``gpu`` for a dataset of ``n_dataset_tokens`` tokens, ``n_epochs`` times.

    Parameters
    ----------
    n_dataset_tokens : float
        Tokens in the dataset (tokens), counted without padding.
    n_epochs : float
        Passes over the dataset.
    packing : bool
        Examples packed end to end into full sequences (no padding).
    mean_sequence_tokens : float, optional
        Padded sequences: the mean example length (tokens); each example is one sequence padded to ``seq_len``,
        so the padding fraction is 1 - mean / seq_len. Default: ``seq_len`` (no padding), stated as a note.
    efficiency : float, optional
        Stated hardware efficiency, the fraction of the 16-bit peak the matmuls reach: prices the time as
        FLOPs / (peak x efficiency). Default: the per-operation model (``DEFAULT_MFU`` on a GPU it cannot price).
    headroom : float
        Share of GPU memory to keep free (0-1).
    """
    if not 0 < n_dataset_tokens < math.inf:
        raise UsageError(f"dataset tokens must be positive and finite, got {n_dataset_tokens:g}; try "
                         "--dataset-tokens 50M")
    if not 0 < n_epochs < math.inf:  # inf epochs printed 'time: nan ... nan% padding'
        raise UsageError(f"epochs must be positive and finite, got {n_epochs:g}; try --epochs 3")
    if efficiency is not None and not 0 < efficiency <= 1:
        raise UsageError(f"efficiency must be a fraction in (0, 1], got {efficiency!r}; try {DEFAULT_MFU}")
    if not 0 <= headroom < 1:
        raise UsageError(f"headroom must be a fraction in [0, 1), got {headroom!r}")
    notes = []
    if packing and mean_sequence_tokens is not None:
        raise UsageError("--mean-sequence-tokens describes padded sequences; with --packing every sequence is "
                         "full: give one of the two")
    if mean_sequence_tokens is None:
        mean = float(setup.seq_len)
        if not packing:
            notes.append(f"padded sequences assumed full ({setup.seq_len} tokens per example, no padding); give "
                         "--mean-sequence-tokens for your data's mean example length, or --packing")
    else:
        mean = float(mean_sequence_tokens)
        if not 1 <= mean <= setup.seq_len:  # an example holds at least one token
            raise UsageError(f"mean sequence length must be in 1..{setup.seq_len} tokens (the --seq), got {mean:g}; "
                             "longer examples are truncated to --seq")
    check_bitsandbytes(setup.method, setup.optimizer, setup.paged, gpu)  # QLoRA, 8-bit, paged: backends [1]
    setup = on_gpu(setup, gpu)  # its cuBLAS workspace, and whether it runs the CUDA runtime at all (workspace [3])
    if note := no_cuda_runtime_note(gpu):
        notes.append(note)
    memory = finetune_memory(cfg, setup)
    usable = gpu.memory_bytes * (1 - headroom)
    required = memory.required_bytes()
    fits_ = required <= usable
    spill = max(0.0, memory.peak_bytes - usable) if (setup.paged and fits_) else 0.0
    precision, _ = training_precision(gpu, None, DEFAULT_PRECISION)  # its note points at plan's --precision
    if precision is not DEFAULT_PRECISION:
        notes.append(f"{gpu.name} has no {DEFAULT_PRECISION.value} rate in the GPU database, so the time is priced at "
                     f"its {precision.value} rate ({precision.value} mixed precision with loss scaling, as 'flopscalc "
                     "plan' does on this card); the memory is the same")
    peak = gpu.peak_flop_per_s(precision)
    # whole sequences, at least one optimizer step per epoch (`steps.run_steps`: the Trainer's own count)
    run = run_steps(math.ceil(n_dataset_tokens / (setup.seq_len if packing else mean)), setup.micro_batch,
                    setup.grad_accum, n_epochs)
    n_seq, n_steps = run.n_sequences, run.n_optimizer_steps
    processed = n_seq * setup.seq_len
    flops = finetune_flops_per_token(cfg, setup, causal=True)
    n_micro = n_seq / setup.micro_batch  # passes priced per sequence: an epoch's last, smaller micro-batch pro rata
    priced = None
    if efficiency is None:
        priced, note = _per_operation(cfg, setup, gpu, precision)
        if note:
            notes.append(note)
    if priced is not None:  # passes every micro-batch, the update once per optimizer step (perf.step.estimate_step)
        dequant_s = n_micro * sum(p.total_s for p in priced if p.op.name.startswith("dequantize"))
        compute_s = (n_micro * sum(p.total_s for p in priced if p.op.phase is not Phase.step)
                     + n_steps * sum(p.total_s for p in priced if p.op.phase is Phase.step) - dequant_s)
    else:
        efficiency = DEFAULT_MFU if efficiency is None else efficiency
        compute_s = seconds_at_utilization(flops.hardware_flops_per_token * processed, 1, peak, efficiency)
        bandwidth = gpu.memory_bandwidth_bytes_per_s
        dequant_s = dequant_bytes_per_token(cfg, setup) * processed / bandwidth if bandwidth else 0.0
    link = host_link_bytes_per_s(gpu)  # PCIe to host memory, not the GPU-to-GPU interconnect
    link_name = f"PCIe {pcie_generation(gpu)}.0 x16"
    spill_s = 2 * spill * n_steps / link  # evicted during the passes, prefetched back for each update
    if spill:
        notes.append(f"the paged optimizer keeps {spill / GIB:.2f} GiB of optimizer state in CPU memory and pages "
                     f"it out and back over the host link ({link_name}, {link / 1e9:g} GB/s measured copy rate) "
                     "each optimizer step; --grad-accum pages once per that many micro-batches")
    trials = method_trials(cfg, setup, usable, gpu)
    assumptions = finetune_assumptions(setup, gpu, precision, time_model=PER_OPERATION if priced is not None else
                                       STATED, efficiency=efficiency)
    return FinetunePlan(
        model=cfg, gpu=gpu, setup=setup, memory=memory, usable_bytes=usable, fits=fits_, spill_bytes=spill,
        paging_link=link_name, paging_link_bytes_per_s=link,
        max_micro_batch=largest_micro_batch(cfg, setup, usable), max_seq_len=largest_seq_len(cfg, setup, usable),
        n_dataset_tokens=float(n_dataset_tokens), n_epochs=float(n_epochs), packing=packing,
        mean_sequence_tokens=mean, run=run, processed_tokens=processed, flops=flops,
        compute_s=compute_s, dequant_s=dequant_s, spill_s=spill_s, efficiency=efficiency, peak_flop_per_s=peak,
        fixes=suggest_fixes(cfg, setup, gpu, usable, headroom=headroom), method_trials=trials,
        assumptions=assumptions, notes=tuple(notes), time_model="per-operation" if priced is not None else "stated")


def _per_operation(cfg: ModelConfig, setup: FinetuneSetup, gpu: GpuSpec, precision: Precision):
    """(priced ops of one micro-batch step, None), or (None, why) when the per-operation model cannot price ``gpu``.

    ``precision``: the rate `plan_finetune` chose (`hardware.training_precision`: FP16 on a card without BF16);
    the 16-bit storage is the same, so only the rate the GEMMs are priced at follows it."""
    from ..errors import DomainError
    from ..perf.device import device_perf
    from ..perf.finetune_ops import finetune_step_ops, training_setup
    from ..perf.step import price_ops

    try:
        device_perf(gpu)  # TPUs: no sourced kernel figures
        if gpu.memory_bandwidth_bytes_per_s is None:
            raise DomainError(f"{gpu.name} has no memory bandwidth in the GPU database")
    except DomainError as e:
        return None, (f"time at the stated {DEFAULT_MFU:.0%} of peak: the per-operation model cannot price this "
                      f"device ({e})")
    from ..memory.precision import MEMORY_PRECISION, MemoryPrecision

    ops = finetune_step_ops(cfg, setup, flash=True)
    storage = training_setup(setup).precision
    if storage is MemoryPrecision.bf16_mixed:
        storage = MEMORY_PRECISION[precision]  # fp16-mixed where the plan fell back to fp16
    return price_ops(ops, gpu, storage), None
