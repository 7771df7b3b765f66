"""Several processes through PyTorch's own stack: torchrun's environment, DDP or FSDP, NCCL or gloo.

Launch with ``torchrun --nproc_per_node N -m flopscalc train ...`` (or ``python -m torch.distributed.run``);
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR/PORT), which is all read here.
NCCL is the backend on CUDA, gloo on CPU (PyTorch docs, "Distributed communication package":
"use the NCCL backend for distributed GPU training, use the Gloo backend for distributed CPU training").
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import DomainError, UsageError


@dataclass(frozen=True)
class DistInfo:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env(env: dict | None = None) -> DistInfo:
    """Read torchrun's RANK, LOCAL_RANK and WORLD_SIZE; one process when they are absent."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return DistInfo()
    try:
        info = DistInfo(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]))
    except ValueError:
        raise UsageError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (launch with torchrun)") from None
    if not (0 <= info.rank < info.world_size and info.world_size >= 1):
        raise UsageError(f"RANK {info.rank} is outside 0..WORLD_SIZE-1 ({info.world_size})")
    return info


def pick_device(requested: str, info: DistInfo) -> torch.device:
    """``auto``: this process's GPU (``cuda:LOCAL_RANK``) when CUDA is present, else the CPU."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        if info.local_rank >= torch.cuda.device_count():
            raise DomainError(f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} GPU(s) visible")
        return torch.device("cuda", info.local_rank)
    if requested == "cuda":
        raise DomainError("--device cuda asked for, but this torch sees no CUDA GPU; use --device cpu")
    return torch.device("cpu")


def init_process_group(info: DistInfo, device: torch.device) -> None:
    """Join the process group (env:// rendezvous set up by torchrun); nothing for one process."""
    if not info.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"  # PyTorch distributed docs, "Which backend to use?"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# fp32: torchtitan's default (mixed_precision_reduce = "float32"); a bf16 ring reduce-scatter rounds once per hop
FSDP_BF16_REDUCE_DTYPE = "float32"  # the gradients' reduce-scatter dtype when the weights are gathered in bf16


def fsdp_mixed_precision(precision: str):
    """The FSDP2 `MixedPrecisionPolicy` for a run at ``precision`` (resolved: fp32 or bf16); None for fp32.

    bf16: each unit's parameters are all-gathered and computed in bf16 (2 bytes per parameter on the wire, as ZeRO
    sec. 7.2.2 and the planner price them), gradients reduce-scattered in `FSDP_BF16_REDUCE_DTYPE`, and the sharded
    fp32 parameters stay the optimizer's master copy (PyTorch docs, ``MixedPrecisionPolicy``).
    """
    if precision == "fp32":
        return None
    if precision != "bf16":
        raise UsageError(f"FSDP precision must be fp32 or bf16 (auto resolved first), got {precision!r}")
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=getattr(torch, FSDP_BF16_REDUCE_DTYPE))


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, mode: str,
               precision: str = "fp32") -> nn.Module:
    """DDP (gradients all-reduced) or FSDP2 (parameters, gradients and optimizer state sharded).

    FSDP shards each transformer block, then the root (embeddings, final norm, tied head), the layout
    PyTorch's FSDP2 tutorial uses, each with `fsdp_mixed_precision` (``precision``: the run's resolved fp32 or bf16).
    DDP keeps fp32 weights under autocast whatever the precision. One process: the model unchanged.
    """
    if not info.enabled:
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp_policy = fsdp_mixed_precision(precision) or MixedPrecisionPolicy()  # the default: no casts
        for block in model.h:
            fully_shard(block, mp_policy=mp_policy)
        fully_shard(model, mp_policy=mp_policy)
        return model
    raise UsageError(f"--parallel must be ddp or fsdp, got {mode!r}")


def gradient_sync(model: nn.Module, sync: bool):
    """Context in which backward does (``sync=True``) or skips the gradient all-reduce (accumulation).

    DDP skips it on accumulation micro-batches (``no_sync``). FSDP reduce-scatters every micro-batch: skipping
    (``set_requires_gradient_sync(False)``) would accumulate the full, unsharded gradients on every GPU until the
    last micro-batch (PyTorch FSDP docs, ``no_sync``: "FSDP will accumulate the full model gradients (instead of
    gradient shards)"), which the memory estimate of a sharded run does not hold; DeepSpeed's ZeRO-2 and 3 reduce
    every micro-step too (deepspeedai/DeepSpeed PR #338). `perf.collectives.comm_volume_bytes` prices it so.
    """
    if sync or not hasattr(model, "no_sync"):  # FSDP2 modules have no `no_sync`; one process has nothing to skip
        return contextlib.nullcontext()
    return model.no_sync()  # DDP


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a scalar tensor over all processes (a no-op for one)."""
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (so a Ctrl-C stops all ranks at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
