"""What data parallelism sends per optimizer step: the collectives of DDP and ZeRO 1-3, their bytes, and how
many messages each is cut into (buckets, or FSDP's units).

DDP all-reduces the gradients once per step [1]; ZeRO stages 1-2 reduce-scatter the gradients and all-gather the
updated parameters (the same volume) [2]; ZeRO-3 / FSDP FULL_SHARD also all-gathers the parameters for every
forward and backward pass [2, 10]. Sharded gradients are reduce-scattered after every micro-batch [9]. Each
collective is cut into the buckets of the framework that runs it (DDP's 25 MiB, DeepSpeed's element counts,
Megatron-LM's), or FSDP's one message per wrapped unit and pass [12].

References
----------
One numbering for the data-parallel modules (`perf.parallel`, `perf.fabric`, `perf.collectives`): each lists
the references its code cites.

[1] Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations", J. Parallel
    Distrib. Comput. 69(2): a ring all-reduce sends and receives 2 (n-1)/n of the buffer per process.
[2] Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
    arXiv:1910.02054, sec. 7.2.1 (stages 1-2: 2 Psi, as DP) and sec. 7.2.2 (stage 3: 3 Psi).
[9] deepspeedai/DeepSpeed PR #338 ("Adding gradient accumulation support for ZeRO Stage 2": "Zero stage 2
    communicates during non gradient accumulation boundaries as well"); PyTorch FSDP ``no_sync`` docs: skipping
    the reduce-scatter "will accumulate the full model gradients (instead of gradient shards)". Sharded
    gradients are reduce-scattered after every micro-batch.
[10] PyTorch FSDP ``_runtime_utils._post_forward_reshard``: "Do not free the root's parameters in the
    post-forward for `FULL_SHARD` with the intention that they are immediately used for backward computation";
    FSDP2 ``fully_shard`` sets the root's ``reshard_after_forward`` to False likewise. The root unit (embeddings,
    final norm, an untied head) is gathered once per micro-batch, each block twice (counted on the wire by
    tests/test_train_ddp.py).
[12] Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel", VLDB 16(12), sec. 3:
    each wrapped unit's parameters are all-gathered before its forward and again before its backward, and its
    gradients reduce-scattered after its backward, one collective each. The trainers of the validation rows wrap
    each transformer block: mosaicml/examples MosaicGPT and llm-foundry MPT (`fsdp_wrap_fn`: `GPTBlock`,
    `MPTBlock`), torchtitan (`fully_shard` per TransformerBlock), `flopscalc train` (FSDP2, counted on the wire by
    tests/test_train_ddp.py: per micro-batch 2 gathers per block and 1 for the root, 1 reduce-scatter per unit).
"""

from __future__ import annotations

from ..errors import UsageError

# Gradient bucket of one node: PyTorch DDP's default, bucket_cap_mb=25 (torch.nn.parallel.DistributedDataParallel
# docs); the last bucket is reduced after backward ends and is never hidden.
DDP_BUCKET_BYTES = 25 * 2**20
# ZeRO runs go to DeepSpeed, whose buckets count elements (deepspeed/runtime/zero/config.py): reduce_bucket_size
# = 5e8 for the gradient reduce-scatter, allgather_bucket_size = 5e8 for stages 1-2's parameter all-gather, and
# stage3_prefetch_bucket_size = 5e7 for ZeRO-3's per-layer parameter gathers.
DEEPSPEED_REDUCE_BUCKET_PARAMS = 500_000_000
DEEPSPEED_ALLGATHER_BUCKET_PARAMS = 500_000_000
DEEPSPEED_PREFETCH_BUCKET_PARAMS = 50_000_000
# Megatron-LM (what a plan beyond `flopscalc train` points to) grows its bucket with the data-parallel size so
# the per-message latency stays a fixed share: bucket_size = max(40000000, 1000000 * data_parallel_size) parameters
# (Megatron-LM, megatron/training/training.py, get_model).
MEGATRON_BUCKET_MIN_PARAMS = 40_000_000
MEGATRON_BUCKET_PARAMS_PER_RANK = 1_000_000


def default_bucket_bytes(zero_stage: int, grad_bytes_per_param: float,
                         param_bytes_per_param: float) -> tuple[float, float]:
    """(gradient, parameter) bucket sizes in bytes of the framework that runs ``zero_stage``: PyTorch DDP's
    25 MiB for stage 0, DeepSpeed's element counts for ZeRO 1-3 (see the constants). ZeRO-3 run by FSDP is cut
    into its units instead (`data_parallel_comm`'s ``fsdp_units``: both step models price ZeRO-3 so)."""
    if zero_stage == 0:
        return DDP_BUCKET_BYTES, DDP_BUCKET_BYTES
    gather = DEEPSPEED_PREFETCH_BUCKET_PARAMS if zero_stage == 3 else DEEPSPEED_ALLGATHER_BUCKET_PARAMS
    return DEEPSPEED_REDUCE_BUCKET_PARAMS * grad_bytes_per_param, gather * param_bytes_per_param


def megatron_bucket_bytes(n_gpus: int, grad_bytes_per_param: float) -> float:
    """Megatron-LM's gradient bucket for ``n_gpus`` data-parallel ranks (bytes): max(40M, 1M x ranks) parameters.

    Pass it as ``bucket_bytes`` for runs that would use Megatron-LM instead of DDP or DeepSpeed.
    """
    return max(MEGATRON_BUCKET_MIN_PARAMS, MEGATRON_BUCKET_PARAMS_PER_RANK * n_gpus) * grad_bytes_per_param


def comm_volume_bytes(n_params: float, n_gpus: int, zero_stage: int, *, grad_bytes_per_param: float = 4.0,
                      param_bytes_per_param: float = 2.0, grad_accum: int = 1, root_params: float = 0.0) -> float:
    """Bytes each GPU sends per optimizer step under data parallelism with ZeRO stage 0-3.

    Parameters
    ----------
    n_params : float
        Parameters of the model (count).
    n_gpus : int
        Data-parallel GPUs.
    zero_stage : int
        0 (plain DDP), 1-2 (optimizer state / gradients sharded), 3 (parameters sharded; FSDP FULL_SHARD).
    grad_bytes_per_param : float
        Bytes of one reduced gradient element: 4 when gradients are fp32 (AMP with fp32 parameters), 2 in bf16.
    param_bytes_per_param : float
        Bytes of one all-gathered parameter element (the compute copy, 2 in bf16/fp16).
    grad_accum : int
        Micro-batches per step: ZeRO-3 gathers parameters again for each one, and ZeRO-2 and 3 reduce-scatter the
        gradients after each one, keeping them sharded ([9]); stage 1 and DDP reduce once per step.
    root_params : float
        Parameters of FSDP's root unit (`model.counts.params_outside_blocks`), which ZeRO-3 gathers once per
        micro-batch instead of twice ([10]); 0 gathers every parameter twice (the ZeRO paper's count).
    """
    if n_gpus < 1:
        raise UsageError(f"number of GPUs must be at least 1, got {n_gpus}")
    ring = (n_gpus - 1) / n_gpus  # [1]: each step of a ring moves 1/n of the buffer, n-1 steps per phase
    calls = collectives(n_params, zero_stage, grad_bytes_per_param, param_bytes_per_param, grad_accum, root_params)
    return sum((2 if all_reduce else 1) * ring * total for total, _, all_reduce in calls)  # [1] all-reduce = RS + AG


def collectives(n_params: float, zero_stage: int, grad_bytes_per_param: float, param_bytes_per_param: float,
                grad_accum: int, root_params: float = 0.0) -> list[tuple[float, str, bool]]:
    """The collectives of one optimizer step: (bytes of the whole buffer, "grad", "param" or "root" (the gathers of
    FSDP's root unit, [10]), whether an all-reduce), the one list `comm_volume_bytes` and `data_parallel_comm` (its
    buckets or FSDP units, and latency) both read."""
    if zero_stage not in (0, 1, 2, 3):
        raise UsageError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero_stage}")
    grad_total, param_total = n_params * grad_bytes_per_param, n_params * param_bytes_per_param
    if zero_stage == 0:
        return [(grad_total, "grad", True)]  # [1] one all-reduce of all gradients
    # [2] 7.2.1: reduce-scatter the gradients, all-gather the updated parameters: 2 Psi in all; stages 2-3
    # reduce-scatter after every micro-batch [9]
    calls = [(grad_total, "grad", False)] * gradient_reductions(zero_stage, grad_accum)
    if zero_stage < 3:
        return calls + [(param_total, "param", False)]
    # [2] 7.2.2: parameters all-gathered for forward and again for backward, per micro-batch (3 Psi at accum 1);
    # the root unit once [10]
    root_total = root_params * param_bytes_per_param
    calls += [(param_total - root_total, "param", False)] * (2 * grad_accum)
    return calls + ([(root_total, "root", False)] * grad_accum if root_total > 0 else [])


def gradient_reductions(zero_stage: int, grad_accum: int) -> int:
    """Gradient reductions per optimizer step: one per micro-batch where gradients are sharded (ZeRO-2 and 3 [9]:
    each micro-batch's gradients are reduce-scattered into this rank's shard), else one (DDP's ``no_sync``; ZeRO-1
    accumulates the full gradients locally)."""
    return grad_accum if zero_stage >= 2 else 1


def fsdp_messages(kind: str, fsdp_units: int, root_params: float) -> int:
    """Collectives FSDP sends for one entry of `collectives` ([12]): a gradient reduce-scatter per unit and the
    root's, a parameter gather per unit (the blocks'; the root's entry is its own, one gather)."""
    if kind == "grad":
        return fsdp_units + (1 if root_params > 0 else 0)
    return fsdp_units if kind == "param" else 1
