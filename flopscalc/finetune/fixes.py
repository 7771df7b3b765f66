"""What fits a fine-tuning setup on one GPU, and the ranked changes that would make one fit: the largest
micro-batch and sequence, the first of full, LoRA and QLoRA that fits, and `suggest_fixes`.

Moved out of `finetune.plan` (which composes them into a `FinetunePlan`) to keep that module readable in one sitting.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from ..errors import UsageError
from ..flops import Recompute
from ..hardware import GpuSpec, Precision, builtin_database
from ..memory.fit import largest_that_fits
from ..memory.settings import Optimizer
from ..memory.workspace import on_gpu
from ..model import ModelConfig
from ..units import GIB
from .adapters import Method
from .backends import bitsandbytes_refusal
from .memory import FinetuneSetup, finetune_memory

# Largest micro-batch searched (sequences).
MAX_MICRO_BATCH_SEARCHED = 4096
# Longest sequence searched where no position table caps it (tokens): the CLI's --seq cap
# (`cli.bounds.MAX_SEQ_TOKENS`, 10x the longest released context, Llama 4 Scout's 10M).
MAX_SEQ_SEARCHED = 100_000_000
# Smallest LoRA rank a fix proposes (Hu et al. 2021, Table 6: rank 1-8 already matches on GPT-3 q/v adaptation).
MIN_FIX_RANK = 4
# Disruption of each change, for ranking fixes (a judgement, not a measurement). Checkpointing costs one more
# forward (~33% more compute; Korthikanti et al. 2022, Table 4); paged and 8-bit optimizers change little
# (QLoRA sec. 3; Dettmers et al. 2022b: 8-bit Adam matches 32-bit); a lower rank or a quantized base can cost
# quality (QLoRA sec. 4: NF4 + DQ matches 16-bit LoRA on their benchmarks); shorter sequences truncate the data;
# a bigger GPU costs money; a smaller micro-batch keeps the tokens per step with --grad-accum (as
# `memory.advice.CHANGE_COST` ranks it).
# bf16 adapters (--bf16-adapters) are QLoRA's own recipe (artidoro/qlora qlora.py casts the LoRA layers, and with
# QLoRA the embedding and LM head, to bf16 under --bf16; peft keeps them fp32 with autocast_adapter_dtype=True), the
# dtypes the paper's results were trained in, so they rank with the other changes that cost little.
CHANGE_COST = {"recompute": 1, "paged": 1, "optimizer": 1, "micro_batch": 1, "bf16_adapters": 1, "method:lora": 2,
               "method:qlora": 2, "rank": 2, "seq": 3, "gpu": 4}
# The flag a fix names for bf16 adapters: what the user types.
BF16_ADAPTERS_FLAG = "--bf16-adapters"
# Methods from most to least memory: the "cheapest" that fits is the first that does.
METHOD_ORDER = (Method.full, Method.lora, Method.qlora)


@dataclass(frozen=True)
class Fix:
    """A change (or set of changes) that makes the fine-tune fit, and its memory."""

    changes: tuple[str, ...]
    cost: int
    setup: FinetuneSetup
    peak_bytes: float
    required_bytes: float  # what must be on the GPU (the peak less what a paged optimizer spills): <= capacity
    capacity_bytes: float  # usable memory of the GPU the fix runs on
    gpu: str | None = None  # set for the "bigger GPU" fix




def with_method(setup: FinetuneSetup, method: Method, **changes) -> FinetuneSetup:
    """``setup`` with another method (bf16 adapters mean nothing to full fine-tuning) and other changes."""
    return replace(setup, method=method, bf16_adapters=setup.bf16_adapters and method is not Method.full, **changes)


def _fits(cfg: ModelConfig, setup: FinetuneSetup, usable: float) -> bool:
    """Whether ``setup`` fits; a trial the model cannot describe (LoRA on a mixture of experts) is not a fix."""
    try:
        return finetune_memory(cfg, setup).required_bytes() <= usable
    except UsageError:
        return False


def largest_micro_batch(cfg: ModelConfig, setup: FinetuneSetup, usable: float) -> int:
    """Largest micro-batch (sequences) that fits at the setup's sequence length; 0 if none."""
    return largest_that_fits(lambda b: _fits(cfg, replace(setup, micro_batch=b), usable), MAX_MICRO_BATCH_SEARCHED)


def largest_seq_len(cfg: ModelConfig, setup: FinetuneSetup, usable: float) -> int:
    """Longest sequence (tokens) that fits at micro-batch 1; 0 if none. Capped at the context only where a learned
    position table stops longer ones, as `perf.inference.max_seq_tokens` caps it (RoPE runs past its trained
    context: the reports warn that quality there is not predicted)."""
    upper = cfg.block_size if cfg.seq_limited_by_context else MAX_SEQ_SEARCHED
    return largest_that_fits(lambda s: _fits(cfg, replace(setup, micro_batch=1, seq_len=s), usable), upper)


def _accum_keeping_step(setup: FinetuneSetup, micro_batch: int) -> int:
    """Micro-batches per optimizer step that keep about ``setup``'s sequences per step at ``micro_batch``."""
    return math.ceil(setup.grad_accum * setup.micro_batch / micro_batch)


def _smaller_micro_batch(cfg: ModelConfig, setup: FinetuneSetup, usable: float) -> FinetuneSetup | None:
    """``setup`` at the largest smaller micro-batch that fits with the accumulation the fix tells the user to pass
    (`_accum_keeping_step`); None when none does. Priced with that accumulation: for full fine-tuning it keeps
    the earlier micro-batches' gradients alive (`memory.estimate`), so the micro-batch that fits at the old
    accumulation may not fit at the new one."""
    def trial(b: int) -> FinetuneSetup:
        return replace(setup, micro_batch=b, grad_accum=_accum_keeping_step(setup, b))
    # memory grows with b at any accumulation > 1, and every b below the old micro-batch accumulates
    if setup.micro_batch == 1:
        return None
    batch = largest_that_fits(lambda b: _fits(cfg, trial(b), usable), setup.micro_batch - 1)
    return trial(batch) if batch else None


def _candidates(setup: FinetuneSetup, gpu: GpuSpec) -> dict[str, list]:
    """Each setting a fix may change, the setup's own value first. bf16 adapters only on a card with a bf16 rate
    (the CLI refuses --bf16-adapters elsewhere: the plan runs fp16 there)."""
    methods = list(METHOD_ORDER[METHOD_ORDER.index(setup.method):])
    ranks = [setup.rank] + [r for r in (setup.rank // 2, setup.rank // 4) if r >= MIN_FIX_RANK and r < setup.rank]
    bf16 = not setup.bf16_adapters and Precision.bf16 in gpu.available_precisions()
    return {
        "method": methods,
        "bf16_adapters": [setup.bf16_adapters] + ([True] if bf16 else []),
        "recompute": [setup.recompute] + ([Recompute.full] if setup.recompute is Recompute.none else []),
        "optimizer": [setup.optimizer] + ([Optimizer.adamw8bit] if setup.optimizer is Optimizer.adamw else []),
        "paged": [setup.paged] + ([True] if not setup.paged else []),
        "rank": sorted(set(ranks), reverse=True),
    }


def _describe(old: FinetuneSetup, new: FinetuneSetup) -> tuple[tuple[str, ...], int]:
    changes, cost = [], 0
    if new.method is not old.method:
        changes.append(f"method {old.method.value} -> {new.method.value}")
        cost += CHANGE_COST[f"method:{new.method.value}"]
    if new.recompute is not old.recompute:
        changes.append("gradient checkpointing on")
        cost += CHANGE_COST["recompute"]
    if new.optimizer is not old.optimizer:
        changes.append(f"optimizer {old.optimizer.value} -> {new.optimizer.value}")
        cost += CHANGE_COST["optimizer"]
    if new.paged and not old.paged:
        changes.append("paged optimizer")
        cost += CHANGE_COST["paged"]
    if new.rank != old.rank and new.method is not Method.full:
        changes.append(f"rank {old.rank} -> {new.rank}")
        cost += CHANGE_COST["rank"]
    if new.bf16_adapters and not old.bf16_adapters:
        changes.append(BF16_ADAPTERS_FLAG)
        cost += CHANGE_COST["bf16_adapters"]
    return tuple(changes), cost


@dataclass(frozen=True)
class MethodTrial:
    """One method judged with the setup's other settings: whether it fits, or why it was not tried."""

    method: Method
    fits: bool
    skipped: str | None = None  # why it was not tried (bitsandbytes absent, adapters not modelled); None if tried


def method_trials(cfg: ModelConfig, setup: FinetuneSetup, usable_bytes: float,
                  gpu: GpuSpec | None = None) -> tuple[MethodTrial, ...]:
    """Full, LoRA and QLoRA, each judged with every other setting of ``setup`` as given (micro-batch, accumulation and
    sequence included), as `plan_finetune` judges the setup itself. On ``gpu`` a method that needs bitsandbytes where
    it does not run (`backends.bitsandbytes_refusal`) is skipped, and so is one the model cannot describe (LoRA on a
    mixture of experts, GPT-2's fused layers), each with the reason."""
    trials = []
    for m in METHOD_ORDER:
        trial = with_method(setup, m)
        if gpu is not None and bitsandbytes_refusal(m, setup.optimizer, setup.paged, gpu):
            trials.append(MethodTrial(m, False, f"needs bitsandbytes, not on {gpu.name}"))
            continue
        try:
            trials.append(MethodTrial(m, finetune_memory(cfg, trial).required_bytes() <= usable_bytes))
        except UsageError:
            trials.append(MethodTrial(m, False, f"not modelled for {cfg.name}"))
    return tuple(trials)


def cheapest_method(cfg: ModelConfig, setup: FinetuneSetup, usable_bytes: float,
                    gpu: GpuSpec | None = None) -> Method | None:
    """The first of full, LoRA and QLoRA that fits ``usable_bytes`` with every other setting of ``setup`` as given
    (`method_trials`; None when none does): what a planner names for a fine-tune. Judged as `plan_finetune` judges
    the setup itself, so it never names the method the verdict says does not fit."""
    return next((t.method for t in method_trials(cfg, setup, usable_bytes, gpu) if t.fits), None)


def suggest_fixes(cfg: ModelConfig, setup: FinetuneSetup, gpu: GpuSpec, usable: float, limit: int = 5,
                  headroom: float = 0.0) -> tuple[Fix, ...]:
    """Ranked changes that make ``setup`` fit (fewest, least disruptive first); empty when it fits already."""
    if _fits(cfg, setup, usable):
        return ()
    options = _candidates(setup, gpu)
    found = []
    for values in itertools.product(*options.values()):
        chosen = dict(zip(options, values))
        method, bf16 = chosen.pop("method"), chosen.pop("bf16_adapters")
        if method is Method.full and (chosen["rank"] != setup.rank or bf16 != setup.bf16_adapters):
            continue  # rank and adapter dtype mean nothing to full fine-tuning
        trial = replace(with_method(setup, method, **chosen), bf16_adapters=bf16)
        if bitsandbytes_refusal(trial.method, trial.optimizer, trial.paged, gpu):
            continue  # QLoRA, 8-bit or paged optimizers where bitsandbytes does not run
        if _fits(cfg, trial, usable):
            found.append(_fix(cfg, *_describe(setup, trial), trial, usable))
    keys = [set(f.changes) for f in found]
    fixes = [f for f, k in zip(found, keys) if not any(o < k for o in keys)]
    if smaller := _smaller_micro_batch(cfg, setup, usable):  # the sequence kept, fewer sequences per forward
        change = (f"micro-batch {setup.micro_batch} -> {smaller.micro_batch} (--grad-accum {smaller.grad_accum} keeps "
                  "about the sequences per step)")
        fixes.append(_fix(cfg, (change,), CHANGE_COST["micro_batch"], smaller, usable))
    elif seq := largest_seq_len(cfg, setup, usable):
        fewer = (f"micro-batch {setup.micro_batch} -> 1",) if setup.micro_batch > 1 else ()
        fixes.append(_fix(cfg, fewer + (f"sequences {setup.seq_len} -> {seq} tokens",),
                          CHANGE_COST["seq"] + (CHANGE_COST["micro_batch"] if fewer else 0),
                          replace(setup, micro_batch=1, seq_len=seq), usable))
    bigger = sorted((g for g in builtin_database() if g.memory_bytes > gpu.memory_bytes),
                    key=lambda g: (g.memory_bytes, g.launch_price_usd or float("inf")))
    for g in bigger:
        if bitsandbytes_refusal(setup.method, setup.optimizer, setup.paged, g):
            continue  # bitsandbytes does not run there (backends [1])
        on_g = on_gpu(replace(setup, gpu_architecture=None), g)  # its cuBLAS workspace and runtime (workspace [1], [3])
        need = finetune_memory(cfg, on_g)
        if need.required_bytes() <= g.memory_bytes * (1 - headroom):
            fixes.append(Fix((f"a GPU with more memory: {g.name} ({g.memory_bytes / GIB:.0f} GiB)",),
                             CHANGE_COST["gpu"], on_g, need.peak_bytes, need.required_bytes(),
                             g.memory_bytes * (1 - headroom), g.key))
            break
    fixes.sort(key=lambda f: (f.cost, len(f.changes), f.required_bytes))
    return tuple(fixes[:limit])


def _fix(cfg: ModelConfig, changes: tuple[str, ...], cost: int, setup: FinetuneSetup, usable: float) -> Fix:
    """A `Fix`: ``setup`` on the planned GPU, with its peak and what must be on the GPU."""
    need = finetune_memory(cfg, setup)
    return Fix(changes, cost, setup, need.peak_bytes, need.required_bytes(), usable)
