"""`estimate_memory`: the training-memory breakdown of one GPU, as a typed `MemoryBreakdown`.

Peak model. Weights, master weights, optimizer state and communication buckets are alive all step.
On top of them, during backward, activations are freed layer by layer while gradients are allocated
layer by layer, so the footprint moves linearly between two ends and peaks at one of them:
- start of backward: every saved activation, the 16-bit weight copies, the logits, the loss-backward
  transients and the LM head's gradient;
- end of backward: every gradient.
On CUDA with PyTorch's loss (`cuda_loss_timing`, measured: tests/test_memory_cuda_recorded.py) the start is the
largest of three moments around the loss rather than all its buffers at once: the logits are dropped by the caller,
each loss buffer is released once its node has run, and the LM head's gradient comes after them.
With gradient accumulation (``grad_accum > 1``) the gradients of earlier micro-batches are alive
through the whole forward and backward, so both ends add up. Between steps the trainer calls
``zero_grad(set_to_none=True)``, which frees gradients. A fused optimizer step (the reference trainer's
``AdamW(fused=True)``) allocates no full-size temporaries, so the step never exceeds the backward's peak.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..assumption import Assumption
from ..errors import UsageError
from ..flops import Recompute
from ..model import ModelConfig, count_params, default_train_seq, past_context, past_context_warning
from .activations import ActivationBreakdown, activation_bytes, logits_buffer_bytes
from .settings import HALF_BYTES, Device, TrainingSetup
from .states import ModelStates, head_gradient_bytes, model_states
from .workspace import N_CUBLAS_HANDLES, cublas_workspace

# label, what it is, source: the order the renderers show components in
COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("weights", "weights", "parameters x bytes each; ZeRO-3 divides by GPUs (ZeRO sec. 5.3)"),
    ("master_weights", "fp32 master weights", "4 bytes/param in the optimizer partition (ZeRO sec. 3.1)"),
    ("weight_copies", "16-bit weight copies", "autocast cast cache (AMP) or unsharded FSDP units"),
    ("gradients", "gradients", "one per parameter in the gradient dtype; ZeRO-2 shards (sec. 5.2)"),
    ("optimizer_state", "optimizer state", "AdamW m, v (ZeRO sec. 3.1); 8-bit, SGD, Adafactor, Lion"),
    ("activations", "activations (saved for backward)", "Korthikanti et al. 2022 eq. 1, as the module saves"),
    ("logits_buffers", "logits + loss gradients", "b s V logits, 2 b s V loss-backward transients (CUDA autocast, fused: 1); with accumulation on CUDA, the LM head's fresh weight gradient"),
    ("comm_buckets", "communication buckets", "DDP gradient buckets / ZeRO reduce buckets"),
    ("blas_workspaces", "cuBLAS workspaces", "one per thread's handle, forward and backward: 32 MiB each on Hopper/Blackwell, 8.125 MiB before (PyTorch source)"),
    ("not_concurrent", "not alive at the same time", "gradients grow as activations are freed in backward"),
    ("allocator_overhead", "allocator overhead", "assumed fraction of allocated bytes"),
    ("cuda_context", "CUDA context", "outside PyTorch's allocator (pytorch#34323)"),
)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Memory of one training step on one GPU, by component (bytes per GPU)."""

    model: ModelConfig
    setup: TrainingSetup
    seq_len: int
    n_params: int
    states: ModelStates
    activations: ActivationBreakdown
    logits_bytes: float  # logits the forward returns, held by the caller
    loss_transient_bytes: float  # gradients of log-probabilities and logits at the start of backward
    head_gradient_bytes: float  # LM-head weight gradient, allocated first in backward
    warnings: tuple[str, ...] = ()
    assumptions: tuple[Assumption, ...] = field(default=(), repr=False)

    def component_bytes(self) -> dict[str, float]:
        """Every component of the peak, in the order of `COMPONENTS` (bytes)."""
        st = self.states
        allocated = self.allocated_peak_bytes
        return {
            "weights": st.weights_bytes,
            "master_weights": st.master_weights_bytes,
            "weight_copies": st.weight_copies_bytes,
            "gradients": st.gradients_bytes,
            "optimizer_state": st.optimizer_state_bytes,
            "activations": self.activations.total,
            "logits_buffers": self.logits_bytes + self.loss_transient_bytes + self._accumulating_head_gradient_bytes,
            "comm_buckets": st.comm_buckets_bytes,
            "blas_workspaces": self.blas_workspace_bytes,
            "not_concurrent": self._backward_alive_bytes - self._backward_sum_bytes,
            "allocator_overhead": cuda_only_bytes(self.setup.allocator_overhead_fraction * allocated,
                                                  self.setup.device, self.setup.cuda_runtime),
            "cuda_context": cuda_only_bytes(self.setup.cuda_context_bytes, self.setup.device, self.setup.cuda_runtime),
        }

    @property
    def model_states_bytes(self) -> float:
        """Weights, master weights, gradients and optimizer state (what ZeRO calls model states)."""
        st = self.states
        return st.weights_bytes + st.master_weights_bytes + st.gradients_bytes + st.optimizer_state_bytes

    @property
    def _accumulating_head_gradient_bytes(self) -> float:
        """The LM head's fresh weight gradient of a later micro-batch, alive beside the accumulated ``.grad`` until
        AccumulateGrad adds it in place (PyTorch ``torch/csrc/autograd/functions/accumulate_grad.h``: ``grad +=
        new_grad`` when a gradient exists): on CUDA with accumulation only, where `_backward_alive_bytes` counts it."""
        return self.head_gradient_bytes if cuda_loss_timing(self.setup) and self.setup.grad_accum > 1 else 0.0

    @property
    def _backward_sum_bytes(self) -> float:
        """Everything that comes and goes within a step, as if all were alive at once."""
        return (self.states.weight_copies_bytes + self.activations.total + self.logits_bytes
                + self.loss_transient_bytes + self._accumulating_head_gradient_bytes + self.states.gradients_bytes)

    @property
    def _backward_alive_bytes(self) -> float:
        """What of it is alive at the peak: the larger end of backward (see the module docstring)."""
        st = self.states
        if cuda_loss_timing(self.setup):
            start = self._cuda_start_bytes
            return start + st.gradients_bytes if self.setup.grad_accum > 1 else max(start, st.gradients_bytes)
        start = (st.weight_copies_bytes + self.activations.total + self.logits_bytes + self.loss_transient_bytes
                 + self.head_gradient_bytes)
        if self.setup.grad_accum > 1:
            return start - self.head_gradient_bytes + st.gradients_bytes
        return max(start, st.gradients_bytes)

    @property
    def _cuda_start_bytes(self) -> float:
        """The largest of three moments around the loss, on CUDA with PyTorch's loss (`cuda_loss_timing`), measured
        there (tests/test_memory_cuda_recorded.py):

        - the loss's forward: the weight casts still cached, the logits still returned, every saved tensor;
        - the loss's backward: its gradient beside the saved tensors; the caller has dropped the logits (settings
          [14]), and under full recomputation the autocast cache has been cleared, so only casts saved for backward
          remain (the LM head's: the blocks' casts are not saved inside ``checkpoint``);
        - the LM head's backward: the loss's buffers released (settings [13]), the logits' gradient and the head's
          weight gradient allocated.
        """
        st, acts = self.states, self.activations.total
        kept = st.weight_copies_bytes
        if self.setup.recompute is Recompute.full and self.setup.precision.mixed and not self.setup.deepspeed_style:
            kept = min(kept, HALF_BYTES * self.model.vocab_size * self.model.n_embd)  # the head's cast, saved by its mm
        forward_end = st.weight_copies_bytes + acts + self.logits_bytes
        loss_backward = kept + acts + self.loss_transient_bytes  # settings [12]-[14]
        head_backward = kept + acts - self.activations.loss + self.logits_bytes + self.head_gradient_bytes
        return max(forward_end, loss_backward, head_backward)

    @property
    def blas_workspace_bytes(self) -> float:
        """cuBLAS workspaces, taken from PyTorch's caching allocator on CUDA, sized by the GPU's architecture
        (`workspace.cublas_workspace`) (bytes; none on a CPU)."""
        return blas_workspace_bytes(self.setup)

    @property
    def allocated_peak_bytes(self) -> float:
        """Peak of PyTorch-allocated tensors: what ``torch.cuda.max_memory_allocated`` should show."""
        st = self.states
        persistent = st.weights_bytes + st.master_weights_bytes + st.optimizer_state_bytes + st.comm_buckets_bytes
        return persistent + self.blas_workspace_bytes + self._backward_alive_bytes

    @property
    def peak_bytes(self) -> float:
        """Allocated peak plus allocator overhead and CUDA context: what must fit on the GPU (bytes; on a CPU device,
        which has neither, the allocated peak)."""
        return sum(self.component_bytes().values())

    @property
    def cpu_offload_bytes(self) -> float:
        """CPU memory that optimizer offload uses (bytes)."""
        return self.states.cpu_offload_bytes


def cuda_only_bytes(value_bytes: float, device: Device, cuda_runtime: bool = True) -> float:
    """``value_bytes`` on a CUDA device, 0 on a CPU or an accelerator without PyTorch's CUDA runtime (TPU, Trainium,
    Gaudi: `workspace.runs_cuda`): the CUDA context and the caching allocator's reserve are CUDA's (a CPU step
    allocates what PyTorch's CPU allocator is asked for, tests/test_memory_measured.py). The one rule for full
    training, layouts and fine-tuning alike."""
    return value_bytes if device is Device.cuda and cuda_runtime else 0.0


def blas_workspace_bytes(setup: TrainingSetup) -> float:
    """cuBLAS workspaces of one training step (bytes): one per handle, the forward's and autograd's (workspace [1],
    [2]), each PyTorch's default for the setup's GPU architecture; none on a CPU or without the CUDA runtime."""
    if setup.device is not Device.cuda or not setup.cuda_runtime:
        return 0.0
    return N_CUBLAS_HANDLES * cublas_workspace(setup.gpu_architecture)[0]  # workspace [1]: size by compute capability


def cuda_loss_timing(setup: TrainingSetup) -> bool:
    """Whether the peak is priced moment by moment around the loss (`MemoryBreakdown._cuda_start_bytes`): on CUDA
    with PyTorch's cross-entropy, where the allocator's peak was measured (benchmarks/results/memory_cuda_*.json).
    Elsewhere (the CPU; a fused loss kernel, which saves the logits) every buffer of the loss counts at once."""
    return setup.device is Device.cuda and not setup.fused_loss


ASSUMPTIONS = (
    Assumption("mixed precision at ZeRO stage 0", "PyTorch AMP: fp32 params (= master), fp32 grads, 16-bit cast cache",
               "torch.autocast docs; what flopscalc.train does"),
    Assumption("mixed precision under ZeRO 1-3 / offload", "16-bit params and grads, fp32 master + states sharded",
               "Rajbhandari et al. 2020 sec. 3.1 and 5; Ren et al. 2021 sec. 4.1"),
    Assumption("activations", "what flopscalc.train.model saves (no dropout; fp32 residual under autocast, 16-bit "
               "with 16-bit weights); other "
               "blocks: the same operations with fused RMSNorm and native GQA attention (memory/activations.py)",
               "Korthikanti et al. 2022 sec. 4 eq. 1, adapted; measured in tests/test_memory_measured.py"),
    Assumption("peak", "the larger end of backward: all activations, or all gradients (both with grad-accum > 1); on "
               "CUDA the loss's buffers counted at its largest moment, the logits dropped by the caller",
               "activations are freed and gradients allocated layer by layer; zero_grad(set_to_none=True); "
               "measured on an H200 (docs/memory.md)"),
    Assumption("optimizer step temporaries", "none (fused AdamW)", "PyTorch AdamW docs, fused=True"),
)


def estimate_memory(cfg: ModelConfig, setup: TrainingSetup | None = None) -> MemoryBreakdown:
    """Training memory of ``cfg`` under ``setup`` on one GPU, by component (bytes per GPU).

    Raises UsageError when the sequence is longer than a learned position table (RoPE, ALiBi and no position
    embedding take any length).
    """
    setup = setup or TrainingSetup()
    seq_len = default_train_seq(cfg) if setup.seq_len is None else setup.seq_len
    if seq_len > cfg.block_size and cfg.seq_limited_by_context:  # only a learned position table has a last row
        raise UsageError(f"sequence length {seq_len} is longer than the model's context ({cfg.block_size} "
                         f"tokens, its learned position table); pass --seq {cfg.block_size} or less")
    logits, transient = logits_buffer_bytes(cfg, setup, seq_len)
    warnings = setup.warnings()
    if past_context(cfg, seq_len):  # RoPE, ALiBi or no positions: it runs, but past the length it was trained at
        warnings.append(past_context_warning(seq_len, cfg.block_size, priced="memory is priced"))
    return MemoryBreakdown(
        model=cfg,
        setup=setup,
        seq_len=seq_len,
        n_params=count_params(cfg).total,
        states=model_states(cfg, setup),
        activations=activation_bytes(cfg, setup, seq_len),
        logits_bytes=logits,
        loss_transient_bytes=transient,
        head_gradient_bytes=head_gradient_bytes(cfg, setup),
        warnings=tuple(warnings),
        assumptions=_assumptions(setup.cuda_context_bytes, setup.allocator_overhead_fraction,
                                 setup.device is Device.cuda and setup.cuda_runtime, setup.gpu_architecture),
    )


@functools.lru_cache(maxsize=64)  # the same lines for every setup a planner tries
def _assumptions(cuda_context_bytes: float, allocator_overhead_fraction: float, cuda: bool,
                 gpu_architecture: str | None) -> tuple[Assumption, ...]:
    workspaces = ()
    if cuda:  # a CPU has no cuBLAS workspace
        each, why = cublas_workspace(gpu_architecture)
        workspaces = (Assumption("cuBLAS workspaces", f"{N_CUBLAS_HANDLES} x {each / 2**20:g} MiB; {why}",
                                 "PyTorch CublasHandlePool.cpp parseChosenWorkspaceSize; one handle per thread"),)
    if not cuda:  # neither a CUDA context nor the caching allocator's reserve on a CPU
        return ASSUMPTIONS
    return ASSUMPTIONS + workspaces + (
        Assumption("CUDA context", f"{cuda_context_bytes / 2**20:.0f} MiB",
                   "PyTorch issue #34323 (781 MB eager); lazy loading trims it"),
        Assumption("allocator overhead", f"{allocator_overhead_fraction:.0%} of allocated",
                   "assumption; compare max_memory_reserved / max_memory_allocated"),
    )
