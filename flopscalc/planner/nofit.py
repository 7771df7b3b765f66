"""What to suggest when `step --search` finds no layout that fits: only a setup that was checked to fit.

The layout engine keeps the optimizer on the GPU (`layout.memory`), so a model whose states overflow every layout
can still fit a data-parallel setup with ZeRO-3 and the optimizer offloaded to the CPU (ZeRO-Offload, Ren et al.
2021, arXiv:2101.06840): `plan` weighs both. The hint names that setup when `choose_setup` finds one at the same
GPUs and sequence, else the fewest GPUs on which the plan finds a run (`min_gpus_to_plan`, as plan's own no-fit
does); it never suggests a smaller batch or a shorter sequence it has not checked.
"""

from __future__ import annotations

from ..hardware import GpuSpec, Precision
from ..memory import MemoryPrecision, Optimizer
from ..memory.precision import MEMORY_PRECISION
from ..units import GIB

# The budget precision the data-parallel search is run at for each storage precision the layout search accepts:
# the inverse of `memory.precision.MEMORY_PRECISION` on those two.
_BUDGET_PRECISION = {MEMORY_PRECISION[p]: p for p in (Precision.bf16, Precision.fp16)}


def search_no_fit_hint(cfg, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: MemoryPrecision,
                       global_batch: int) -> str:
    """One clause for `step --search`'s refusal: a data-parallel 'flopscalc step' that fits on the same ``n_gpus``
    at ``seq_len`` (about ``global_batch`` sequences per step), else the GPU count the plan fits on, else none."""
    from .setups import choose_setup, min_gpus_to_plan

    budget = _BUDGET_PRECISION[precision]
    chosen = choose_setup(cfg, gpu, n_gpus, seq_len, budget, tokens_per_step=global_batch * seq_len)
    if chosen is not None:
        s = chosen.setup
        flags = ([f"--zero {s.zero_stage}"] if s.zero_stage else []) + (["--offload"] if s.offload_optimizer else []) \
            + ([f"--optimizer {s.optimizer.value}"] if s.optimizer is not Optimizer.adamw else []) \
            + [f"--recompute {s.recompute.value}", f"--micro-batch {s.micro_batch}", f"--grad-accum {s.grad_accum}",
               f"--seq {seq_len}", f"--precision {precision.value}"]
        # every GPU a data-parallel replica: micro-batch x accumulation x GPUs sequences a step
        step_batch = s.micro_batch * s.grad_accum * n_gpus
        changed = "" if step_batch == global_batch else f", {step_batch:,} sequences a step, not the {global_batch:,} asked"
        return (f"a data-parallel setup fits ({chosen.peak_memory_bytes / GIB:.1f} GiB per GPU, its optimizer "
                f"{'on the CPU' if s.offload_optimizer else 'on the GPU'}{changed}): 'flopscalc step' with the same "
                f"model, --gpu and --n-gpus {n_gpus} {' '.join(flags)} (without --search) prices it")
    n = min_gpus_to_plan(cfg, gpu, seq_len, budget, None)
    if n is not None and n > n_gpus:
        return f"no data-parallel setup fits either; 'flopscalc plan' finds a run at this sequence from --n-gpus {n}"
    return "no data-parallel setup fits either, on up to the most GPUs the plan searches"
