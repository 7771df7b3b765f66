"""Memory per GPU under a parallel layout: weights, gradients, optimizer state and activations.

Parameters are split by TP x PP (routed experts also by EP) and their training state sharded by ZeRO over
the data-parallel (x context-parallel) ranks; activations follow Korthikanti et al. [1] Table 2, generalised
from GPT-3's block to grouped-query attention, gated MLPs and experts by counting the same saved tensors.
The first pipeline stage holds the embedding, the last the LM head and the logits; each stage holds the layers
the emitted Megatron-LM settings build: when the layers leave slots spare, the end stages carry fewer
(`spec.pipeline_split`, [5]). Stage r holds the activations of the
micro-batches Megatron-LM's schedule ([6]) has run forward and not yet backward: min(p - r, m) under 1F1B ([2] sec.
2.2.1), and with v chunks per stage its interleaved order counted chunk by chunk (`peak_layers_in_flight`: on the
first stage p (1 + (p-1)/(p v)) micro-batches, [1] sec. 4.3, never more than all m). The peak is the largest of the
first, the second (the fullest stage of layers only) and the last stage.

Per layer and micro-batch, in bytes at 16 bit, with s tokens per sequence on this GPU (s / cp), b, h, t:
- replicated by TP: two norm inputs 4sbh, QKV input 2sbh, MLP input 2sbh, two dropout masks 2sbh = 10sbh
  (divided by t under sequence parallelism);
- split by TP: Q, K, V 2sb(d_attn + 2 d_kv) (GPT-3: 6sbh), projection input 2sb d_attn (2sbh), MLP: GELU
  input and down input 2 x 2sbf (16sbh at f = 4h), gated: gate, up and product 3 x 2sbf; a mixture of experts
  stores that for top_k x tokens rows and the router's fp32 probabilities;
- attention core, split by TP: softmax output 2as^2b, dropout mask as^2b and output 2as^2b = 5as^2b
  (FlashAttention: a fp32 logsumexp per head and token instead); selective recompute drops it;
- full recompute keeps each layer's input, 2sbh (/t with SP) ([1] sec. 4, "2sbhL").
GPT-3 shapes give [1] Table 2's rows exactly (tests/test_layout_memory.py).

References
----------
[1] Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
    arXiv:2205.05198, Table 2, eq. 1-4, sec. 4.1 (selective), 4.2.2 (sequence parallelism), 4.3 (pipelines).
[2] Narayanan et al. 2021, arXiv:2104.04473, sec. 2.2.1 (1F1B: at most p micro-batches in flight).
[3] Megatron-LM ``docs/source/api-guide/dist_optimizer.md``: bytes per parameter with bf16 parameters and fp32
    gradients: 18 without, 6 + 12/d with the distributed optimizer (d data-parallel ranks).
[4] Rajbhandari et al. 2020, "ZeRO", arXiv:1910.02054, sec. 5 (P_os, P_os+g, P_os+g+p).
[5] Dubey et al. 2024, "The Llama 3 Herd of Models", arXiv:2407.21783, sec. 3.3.2 ("To balance the pipeline, we
    reduce one Transformer layer each from the first and the last stages").
[6] Megatron-LM ``megatron/core/pipeline_parallel/schedules.py``: ``forward_backward_pipelining_without_interleaving``
    (rank r runs min(p - r - 1, m) warm-up forwards, then one forward and one backward at a time) and
    ``..._with_interleaving`` (warm-up 2 (p - r - 1) + (v - 1) p forwards, all m v when m = p, capped at m v; forward
    k runs chunk (k mod p v) // p, backward k chunk v - 1 - (k mod p v) // p).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from ..flops import Recompute
from ..memory.settings import (
    DEFAULT_ALLOCATOR_OVERHEAD_FRACTION,
    DEFAULT_CUDA_CONTEXT_BYTES,
    FP32_BYTES,
    FSDP_UNSHARDED_UNITS,
    HALF_BYTES,
    MASK_BYTES,
)
from ..memory.workspace import N_CUBLAS_HANDLES, cublas_workspace
from ..model import Mlp, ModelConfig, count_params
from ..model.counts import mlp_unit_params
from .spec import Engine, Layout, chunk_layers

# Training state per parameter under mixed precision with AdamW ([3]): a 16-bit weight, an fp32 gradient
# (Megatron's main_grad), an fp32 master copy and two fp32 moments.
WEIGHT_BYTES = HALF_BYTES
GRAD_BYTES = FP32_BYTES
ADAM_STATE_BYTES = 3 * FP32_BYTES  # master weight + m + v ([4] sec. 3.1: K = 12)


@dataclass(frozen=True)
class LayoutMemory:
    """Peak memory of the busiest GPU (the first, second or last pipeline stage), by component (bytes)."""

    weights: float
    gradients: float
    optimizer: float
    activations: float  # saved for backward, every micro-batch in flight
    logits: float  # last stage: fp32 logits / log-probabilities of one micro-batch (vocabulary split by TP)
    cuda_context: float  # the CUDA context alone (outside PyTorch's allocator)
    fragmentation: float
    stage: str  # "first", "second" or "last": which stage is the peak
    n_params_per_gpu: float
    n_in_flight: float  # micro-batches' activations that stage holds at its peak (chunks held / chunks per stage)
    # <= 0: what the memory engine subtracts for tensors not alive at its peak (gradients grow as backward frees
    # activations; `memory.estimate` "not_concurrent"); only the DDP/FSDP path (`trainer_layout_memory`) has one
    not_concurrent: float = 0.0
    # cuBLAS's workspaces (`memory.workspace.cublas_workspace` x `N_CUBLAS_HANDLES`), a row of their own as
    # `flopscalc memory` prints them
    blas_workspaces: float = 0.0

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.cuda_context
                + self.blas_workspaces + self.fragmentation + self.not_concurrent)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _state_bytes_per_param(zero_stage: int, shards: int) -> tuple[float, float, float]:
    """(weight, gradient, optimizer) bytes per parameter of this GPU's slice, sharded over ``shards`` ranks."""
    if zero_stage == 0:
        return WEIGHT_BYTES, GRAD_BYTES, ADAM_STATE_BYTES  # [3] 18 bytes
    if zero_stage == 1:
        return WEIGHT_BYTES, GRAD_BYTES, ADAM_STATE_BYTES / shards  # [3] 6 + 12/d
    if zero_stage == 2:
        return WEIGHT_BYTES, GRAD_BYTES / shards, ADAM_STATE_BYTES / shards  # [4] P_os+g
    return WEIGHT_BYTES / shards, GRAD_BYTES / shards, ADAM_STATE_BYTES / shards  # [4] P_os+g+p


@functools.lru_cache(maxsize=64)
def _param_split(cfg: ModelConfig):
    """(parameter count, routed-expert parameters of all layers)."""
    routed = 0
    if cfg.is_moe:
        ew, eb = mlp_unit_params(cfg, cfg.expert_inner)
        routed = cfg.n_layer * cfg.n_expert * (ew + eb)
    return count_params(cfg), routed


def stage_params(cfg: ModelConfig, layout: Layout) -> dict[str, tuple[float, float]]:
    """Parameters on one GPU of the first, the second (``pp`` > 2: the first stage of layers only) and the last
    stage: {stage: (dense, routed experts)} (count).

    Linear weights split by TP, routed experts by TP x EP, norms replicated; each stage's layers as
    `spec.chunk_layers` places them; the token embedding (vocabulary-parallel) and position table on the first
    stage, the LM head (a copy of a tied embedding when pp > 1, Megatron's ``word_embeddings`` on the last stage) and
    final norm on the last.
    """
    return dict(_stage_params(cfg, layout.tp, layout.pp, layout.interleave, layout.ep))


@functools.lru_cache(maxsize=4096)  # the search asks for the same split once per micro-batch, ZeRO stage, recompute
def _stage_params(cfg: ModelConfig, tp: int, pp: int, interleave: int, ep: int) -> dict[str, tuple[float, float]]:
    pc, routed = _param_split(cfg)
    L, t = cfg.n_layer, tp
    norms = pc.layernorm - cfg.norm_params
    per_layer_dense = ((pc.attention + pc.mlp - routed) / t + norms) / L
    per_layer_experts = routed / (t * ep) / L

    def body(rank: int) -> tuple[float, float]:
        layers = sum(chunk_layers(L, pp, interleave, rank))
        return per_layer_dense * layers, per_layer_experts * layers

    emb = pc.token_embedding / t + pc.position_embedding
    head = (pc.lm_head or (pc.token_embedding if pp > 1 else 0)) / t + cfg.norm_params
    first, last = body(0), body(pp - 1)
    if pp == 1:
        return {"first": (first[0] + emb + head, first[1]), "last": (first[0] + emb + head, first[1])}
    stages = {"first": (first[0] + emb, first[1])}
    if pp > 2:
        stages["second"] = body(1)
    stages["last"] = (last[0] + head, last[1])
    return stages


@functools.lru_cache(maxsize=4096)
def peak_layers_in_flight(pp: int, interleave: int, n_micro: int, rank: int, chunks: tuple[float, ...]) -> float:
    """The most a pipeline stage holds at once of what its micro-batches leave for backward, in units of ``chunks``
    (one weight per model chunk: its layers, or its bytes), under Megatron-LM's schedules ([6]).

    1F1B (v = 1): min(p - r, m) micro-batches ([2] sec. 2.2.1: warm-up forwards, then a forward before each
    backward). Interleaved: the warm-up forwards, then one forward and one backward at a time, each chunk's weight
    added at its forward and dropped at its backward; the steady state repeats every p v steps (each chunk runs p
    forwards and p backwards in a period), so one period finds the peak."""
    p, v, m, r = pp, interleave, n_micro, rank
    if v == 1:
        return min(p - r, m) * chunks[0]  # [6] warm-up min(p - r - 1, m), then one forward more

    def chunk(k: int) -> int:
        return (k % (p * v)) // p  # [6] get_model_chunk_id, forward

    total = m * v
    warmup = total if m == p else min(2 * (p - r - 1) + (v - 1) * p, total)  # [6]
    held = sum(chunks[chunk(k)] for k in range(warmup))
    peak = held
    for i in range(min(total - warmup, p * v)):
        held += chunks[chunk(warmup + i)]
        peak = max(peak, held)
        held -= chunks[v - 1 - chunk(i)]  # [6] backward k runs chunk v - 1 - (k mod p v) // p
    return peak


@functools.lru_cache(maxsize=8192)  # pure; the search asks again for every ZeRO stage of a split
def activation_bytes_per_layer(cfg: ModelConfig, seq_len: int, micro_batch: int, *, tp: int = 1, cp: int = 1,
                               sequence_parallel: bool = False, recompute: Recompute = Recompute.none,
                               flash: bool = False, dropout: bool = True) -> float:
    """Bytes one layer saves for backward for one micro-batch on one GPU ([1] Table 2, generalised)."""
    s, b, h = seq_len / cp, micro_batch, cfg.n_embd
    sb = s * b
    if recompute is Recompute.full:
        return HALF_BYTES * sb * h / (tp if sequence_parallel else 1)  # [1] sec. 4: the layer input, 2sbh
    masks = 2 * MASK_BYTES * h if dropout else 0
    replicated = sb * (2 * HALF_BYTES * h + HALF_BYTES * h + HALF_BYTES * h + masks)  # [1] Table 2: 10sbh
    qkv = HALF_BYTES * (cfg.d_attn + 2 * cfg.d_kv)  # [1] 4.1: Q, K (for QK^T) and V
    proj = HALF_BYTES * cfg.d_attn
    per_width = 3 * HALF_BYTES if cfg.mlp is not Mlp.gelu else 2 * HALF_BYTES  # gated: gate, up, product
    if cfg.is_moe:
        mlp = (cfg.top_k * per_width * cfg.expert_inner + FP32_BYTES * cfg.n_expert
               + per_width * cfg.n_shared_expert * cfg.shared_expert_inner)
    else:
        mlp = per_width * cfg.n_inner  # [1] Table 2: 8sbh + 8sbh at f = 4h
    split = sb * (qkv + proj + mlp)
    if flash:
        core = FP32_BYTES * cfg.n_head * sb  # logsumexp per head and query (Dao 2023, Alg. 1)
    else:  # [1] 4.1: softmax 2as^2b, dropout mask as^2b, dropout output 2as^2b; keys over the whole sequence
        per_score = HALF_BYTES + (MASK_BYTES + HALF_BYTES if dropout else 0)
        core = per_score * cfg.n_head * sb * seq_len
    if recompute is Recompute.selective:
        core = 0.0  # [1] 4.1: the attention core is recomputed
    return replicated / (tp if sequence_parallel else 1) + (split + core) / tp


def trainer_layout_memory(cfg: ModelConfig, layout: Layout, seq_len: int, *, flash: bool = False,
                          dropout: bool = True, fused_loss: bool = False,
                          cuda_context_bytes: float = DEFAULT_CUDA_CONTEXT_BYTES,
                          fragmentation_fraction: float = DEFAULT_ALLOCATOR_OVERHEAD_FRACTION,
                          gpu_architecture: str | None = None, cuda_runtime: bool = True) -> LayoutMemory:
    """The memory engine's peak (`flopscalc.memory.estimate_memory`, validated against measured bytes and the
    published runs) of a DDP / FSDP layout as `flopscalc train` runs it (bf16 autocast; FSDP with 16-bit weights),
    in `LayoutMemory`'s components: the 16-bit copies with the weights, the logits, loss transients and buckets
    with the activations, the concurrency correction and the cuBLAS workspaces as rows of their own. ``fused_loss``: the step's cross-entropy kernel (`TrainingSetup.fused_loss`), so the memory is that of
    the step the layout model times.
    ``gpu_architecture``: the GPU's (`TrainingSetup.gpu_architecture`: its cuBLAS workspace; None, the larger);
    ``cuda_runtime``: whether it runs PyTorch's CUDA runtime (`memory.workspace.runs_cuda`; without it no CUDA
    context, allocator reserve or cuBLAS workspace)."""
    from ..memory import TrainingSetup, estimate_memory

    setup = TrainingSetup(micro_batch=layout.micro_batch, seq_len=seq_len, recompute=layout.recompute, flash=flash,
                          grad_accum=layout.n_micro, n_gpus=layout.dp, zero_stage=layout.zero_stage,
                          dropout=dropout, fused_loss=fused_loss, cuda_context_bytes=cuda_context_bytes,
                          allocator_overhead_fraction=fragmentation_fraction, gpu_architecture=gpu_architecture,
                          cuda_runtime=cuda_runtime)
    c = estimate_memory(cfg, setup).component_bytes()
    weights = c["weights"] + c["master_weights"] + c["weight_copies"]
    return LayoutMemory(weights=weights, gradients=c["gradients"], not_concurrent=c["not_concurrent"],
                        optimizer=c["optimizer_state"], activations=c["activations"] + c["comm_buckets"],
                        logits=c["logits_buffers"], cuda_context=c["cuda_context"],
                        blas_workspaces=c["blas_workspaces"],
                        fragmentation=c["allocator_overhead"], stage="first",
                        n_params_per_gpu=count_params(cfg).total, n_in_flight=1.0)


def in_flight_micro_batches(layout: Layout) -> float:
    """Micro-batches whose activations the first stage holds (of equal chunks): min(m, p) under 1F1B ([2] 2.2.1),
    p (1 + (p-1)/(p v)) with v chunks per stage ([1] sec. 4.3), never more than the m there are."""
    v = layout.interleave
    return peak_layers_in_flight(layout.pp, v, layout.n_micro, 0, (1.0,) * v) / v


def layout_memory(cfg: ModelConfig, layout: Layout, seq_len: int, *, flash: bool = False, dropout: bool = True,
                  fused_loss: bool = False, cuda_context_bytes: float = DEFAULT_CUDA_CONTEXT_BYTES,
                  fragmentation_fraction: float = DEFAULT_ALLOCATOR_OVERHEAD_FRACTION,
                  gpu_architecture: str | None = None, cuda_runtime: bool = True) -> LayoutMemory:
    """Peak memory per GPU of ``cfg`` trained under ``layout`` (bytes, by component): the busier stage, on a GPU of
    ``gpu_architecture`` (its cuBLAS workspace, `memory.workspace.cublas_workspace`; None: not known, the larger), which
    runs PyTorch's CUDA runtime or not (``cuda_runtime``, `memory.workspace.runs_cuda`: without it no CUDA context,
    allocator reserve or cuBLAS workspace)."""
    per_layer = activation_bytes_per_layer(cfg, seq_len, layout.micro_batch, tp=layout.tp, cp=layout.cp,
                                           sequence_parallel=layout.sequence_parallel, recompute=layout.recompute,
                                           flash=flash, dropout=dropout)
    return memory_from_parts(cfg, layout, seq_len, per_layer, stage_params(cfg, layout), dropout=dropout,
                             flash=flash, fused_loss=fused_loss, cuda_context_bytes=cuda_context_bytes,
                             fragmentation_fraction=fragmentation_fraction, gpu_architecture=gpu_architecture,
                             cuda_runtime=cuda_runtime)


def memory_from_parts(cfg: ModelConfig, layout: Layout, seq_len: int, per_layer: float,
                      params: dict[str, tuple[float, float]], *, dropout: bool = True, flash: bool = False,
                      fused_loss: bool = False, cuda_context_bytes: float = DEFAULT_CUDA_CONTEXT_BYTES,
                      fragmentation_fraction: float = DEFAULT_ALLOCATOR_OVERHEAD_FRACTION,
                      gpu_architecture: str | None = None, cuda_runtime: bool = True) -> LayoutMemory:
    """`layout_memory` from its two parts, ``per_layer`` (`activation_bytes_per_layer`) and ``params``
    (`stage_params`), which the search computes once per split and micro-batch instead of once per candidate.

    A layout `flopscalc train` runs (plain DDP or FSDP: `Layout.engine`) is the memory engine's estimate of that
    run (`trainer_layout_memory`), not Korthikanti's count of Megatron-LM's kernels: one run, one memory price.
    ``fused_loss`` reaches only that estimate: the Megatron count keeps its fp32 logits."""
    if layout.engine() is not Engine.megatron:
        return trainer_layout_memory(cfg, layout, seq_len, flash=flash, dropout=dropout, fused_loss=fused_loss,
                                     cuda_context_bytes=cuda_context_bytes,
                                     fragmentation_fraction=fragmentation_fraction,
                                     gpu_architecture=gpu_architecture, cuda_runtime=cuda_runtime)
    if not cuda_runtime:  # no CUDA context, allocator reserve or cuBLAS workspace (memory.workspace [3])
        cuda_context_bytes, fragmentation_fraction = 0.0, 0.0
    dense_shards = layout.dp * layout.cp
    expert_shards = max(1, dense_shards // layout.ep)
    w_d, g_d, o_d = _state_bytes_per_param(layout.zero_stage, dense_shards)
    w_e, g_e, o_e = _state_bytes_per_param(layout.zero_stage, expert_shards)
    s_local = seq_len / layout.cp
    workspaces = (N_CUBLAS_HANDLES * cublas_workspace(gpu_architecture)[0]  # memory.workspace [1], by architecture
                  if cuda_runtime else 0.0)
    best = best_total = None
    for stage, (dense, experts) in params.items():
        rank = {"first": 0, "second": 1}.get(stage, layout.pp - 1)  # `stage_params`' stages
        chunks = chunk_layers(cfg.n_layer, layout.pp, layout.interleave, rank)
        weights, grads, optim = dense * w_d + experts * w_e, dense * g_d + experts * g_e, dense * o_d + experts * o_e
        if layout.zero_stage == 3:  # FSDP gathers whole units (a layer) ahead of use [4]
            weights += FSDP_UNSHARDED_UNITS * WEIGHT_BYTES * (dense + experts) / max(1, sum(chunks))
        chunk_bytes = [per_layer * n for n in chunks]
        if stage == "first" and dropout:  # embedding dropout mask ([1] sec. 4.3), split by TP under SP
            chunk_bytes[0] += MASK_BYTES * s_local * layout.micro_batch * cfg.n_embd / (
                layout.tp if layout.sequence_parallel else 1)
        acts = peak_layers_in_flight(layout.pp, layout.interleave, layout.n_micro, rank, tuple(chunk_bytes))
        held = peak_layers_in_flight(layout.pp, layout.interleave, layout.n_micro, rank, (1.0,) * len(chunks))
        logits = 0.0
        if stage == "last" or layout.pp == 1:  # fp32 logits of one micro-batch, vocabulary split by TP
            logits = FP32_BYTES * s_local * layout.micro_batch * cfg.vocab_size / layout.tp
        base = weights + grads + optim + acts + logits
        # the CUDA context and cuBLAS's workspaces, as the DDP/FSDP path counts them (memory.workspace [1])
        parts = (weights, grads, optim, acts, logits, cuda_context_bytes, fragmentation_fraction * base)
        total = sum(parts)  # the workspaces are the same on every stage: they do not choose the peak one
        if best is None or total > best_total:
            best, best_total = (parts, stage, dense + experts, held / len(chunks)), total
    return LayoutMemory(*best[0], *best[1:], blas_workspaces=workspaces)
