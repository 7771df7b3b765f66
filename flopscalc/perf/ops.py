"""The operations of one training step of a decoder-only transformer, each with its FLOPs, bytes and GEMM shape.

Every block `flopscalc.model.ModelConfig` describes (GPT-2, Llama-style, Qwen2, Gemma, OLMo, GPT-NeoX, mixtures of
experts), in the layout of its reference implementation: per block a norm, the fused Q/K/V linear (output width
d_attn + 2 d_kv: grouped-query attention [7]), optional q/k norm, RoPE, the attention core, the output projection,
a residual add, a norm, the MLP (2 linears and GELU, or gate/up/down and the gated product [8]; or a router,
dispatch, the routed experts, combine and shared experts [9]) and a residual add (a parallel block [10] adds both
branches in one); then the final norm, the LM head over the model's vocabulary and the cross-entropy.

A linear y = x W (x: t x d_in) costs a forward GEMM (t, d_out, d_in), an input-gradient GEMM (t, d_in, d_out)
and a weight-gradient GEMM (d_in, d_out, t) ([1] sec. 2.1: backward = 2 x forward); a bias is added in the
GEMM's epilogue and its gradient is a separate reduction over the tokens. GEMM FLOPs are 2 m n k ([2] App.);
the attention core's FLOPs come from `flopscalc.flops` (causal pairs when a fused kernel skips masked blocks).
The op FLOPs sum to `flopscalc.flops`'s exact count for every block (tests/test_perf_model.py). Memory-bound
kernels move the bytes listed at each op: every element read and written once, at the storage width of the
precision (2 bytes in 16-bit modes, 4 in fp32), fp32 where the reference implementation computes in fp32,
and the residual stream at the weights' width (fp32 under PyTorch AMP: `perf.block_ops` [20]).

The kinds of op and the step's implementation choices are `perf.op_kinds`'s; one block's operations are
`perf.block_ops`'s; this module lists a step's: the passes of every micro-batch and the update.

References
----------
One numbering for the step's op modules (`perf.ops`, `perf.op_kinds`, `perf.block_ops`): each lists the
references its code cites; the overview above also cites [1], [2] and [7]-[10], listed in
`perf.block_ops`.

[4] PyTorch autocast op reference (torch.amp docs, "CUDA Ops that can autocast to float32"): layer_norm,
    softmax, log_softmax, nll_loss and cross_entropy run in float32 under autocast.
[5] Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW), Algorithm 2: the update reads
    the parameter, gradient, first and second moments and writes parameter and both moments.
[6] Korthikanti et al. 2022, arXiv:2205.05198, sec. 4.1 (selective recomputation of the attention core).
[14] mosaicml/composer ``composer/optim/decoupled_weight_decay.py``, ``DecoupledAdamW.adamw``: a Python loop over
     the parameters, each updated by eager in-place ops (``param.mul_`` for weight decay when it is nonzero,
     ``exp_avg.mul_(beta1).add_``, ``exp_avg_sq.mul_(beta2).addcmul_``, ``exp_avg_sq.sqrt() / ...``, ``.add_(eps)``,
     ``param.addcdiv_``); the optimizer of llm-foundry's MPT yamls (``decoupled_adamw``, ``weight_decay: 0.0``).
[15] PyTorch ``torch.nn.utils.clip_grad_norm_`` (and FSDP's ``clip_grad_norm_``): the norm of each gradient, then
     every gradient ``mul_`` by the clamped coefficient, unconditionally (a test on it would synchronize host and
     device); the MPT yamls' ``gradient_clipping: {clipping_type: norm, clipping_threshold: 1.0}``.
[17] Dao-AILab/flash-attention v1.0.7 ``flash_attn/losses/cross_entropy.py`` (``CrossEntropyLoss``: saves the logits
     and one fp32 log-sum-exp per row; ``inplace_backward=False`` by default) and ``csrc/xentropy``: the forward
     reads each row twice (max and sum, then the sum of exponentials), the backward reads it once and writes the
     gradient in the logits' dtype (``at::empty_like(logits)``): 4 passes in 2 kernels. llm.c's fused classifier
     writes its gradient in place in one kernel (3 passes; `LossKernel.llmc`, [19]).
[18] mosaicml/composer ``trainer.py`` (0.16.3) ``_eval_train_metrics``: after each micro-batch's backward, under
     autocast and no_grad, each train metric runs ``torch.nn.CrossEntropyLoss`` on the logits
     (``composer/metrics/nlp.py``); llm-foundry's MPT has two, LanguageCrossEntropy and LanguagePerplexity.
[19] karpathy/llm.c ``llmc/fused_classifier.cuh``, ``fused_classifier_kernel5``: one block per row computes the
     softmax's max and sum in one online pass (``prepare_softmax_blockwide3``), the loss, then reads the row again
     ("same logits read again below, hopefully still in cache") and overwrites it with the gradient: 3 passes over
     the 16-bit logits in one kernel (2 from DRAM where the second read hits L2; the model prices 3).
"""

from __future__ import annotations

from ..flops import Recompute
from ..memory.activations import residual_bytes
from ..memory.precision import MemoryPrecision
from ..memory.settings import FP32_BYTES, HALF_BYTES, LossKernel, Optimizer, TrainingSetup
from ..model import ModelConfig, count_params, default_train_seq
from ..model.counts import mlp_unit_params
from .block_ops import _attention_ops, _block_backward_memory, _block_forward, _linear_ops, _stream_norm
from .op_kinds import Op, OpClass, OptimizerKernel, Phase, StepOptions, act_bytes
from .op_kinds import memory_op as _mem

# Bytes the optimizer moves per parameter it updates, as (read, write) element widths ([5] for AdamW:
# parameter, gradient, m, v read; parameter, m, v written). Mixed precision keeps fp32 parameters and states.
OPTIMIZER_RW_ELEMENTS = {
    Optimizer.adamw: (4, 3),  # [5] Algorithm 2
    Optimizer.adamw8bit: (4, 3),  # same tensors; the two states are 1 byte each (see _optimizer_bytes)
    Optimizer.sgd: (3, 2),  # parameter, gradient, momentum read; parameter, momentum written
    Optimizer.lion: (3, 2),  # one momentum buffer (Chen et al. 2023, Algorithm 2)
    Optimizer.adafactor: (3, 2),  # factored second moment: vectors only, counted as one state
    Optimizer.none: (0, 0),
}
# Composer's DecoupledAdamW ([14]) steps one parameter tensor at a time in eager ops (weight decay 0, as the MPT
# yamls set it): exp_avg.mul_ (read + write 2 elements), .add_(grad) (3), exp_avg_sq.mul_ (2), .addcmul_(grad, grad)
# (3), .sqrt() (2), / sqrt(bias_correction2) (2), .add_(eps) (2), param.addcdiv_(exp_avg, denom) (4): 20 fp32
# elements per parameter in 8 kernels, where a fused AdamW moves 7 ([5]) in one.
COMPOSER_ADAMW_RW_ELEMENTS, COMPOSER_ADAMW_KERNELS = 20, 8
# Gradient clipping by global norm ([15]): a norm reads every gradient, then every gradient is multiplied by the
# clamped coefficient (read + write): 3 elements per parameter, 2 kernels. The MPT yamls clip (norm, 1.0).
GRAD_CLIP_RW_ELEMENTS, GRAD_CLIP_KERNELS = 3, 2
# Embedding and LM-head weights are read in fp32 under mixed precision ([4]: the master weights are fp32).
MASTER_BYTES = FP32_BYTES


def step_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Every operation of one optimizer step on one GPU, with its count (layers x micro-batches): the passes of
    every micro-batch (`pass_ops`), then the weight casts, gradient accumulation and update (`update_ops`)."""
    return pass_ops(cfg, setup, options) + update_ops(cfg, setup, options)


# The fields of `TrainingSetup` that `pass_ops` reads (with the model and `PASS_OPTION_FIELDS`): a step's passes are the
# same for every optimizer and GPU count (`perf.step` prices them once for all of those); ZeRO and offload only
# through the residual stream's width (below).
PASS_FIELDS = ("micro_batch", "seq_len", "grad_accum", "precision", "recompute", "flash", "dropout", "fused_loss",
               "loss_kernel",
               # these two only through `TrainingSetup.deepspeed_style`: 16-bit weights make a 16-bit residual stream,
               # PyTorch AMP's fp32 weights an fp32 one (block_ops [20], `memory.activations.residual_bytes`)
               "zero_stage", "offload_optimizer")
# The fields of `StepOptions` that `pass_ops` reads (the others price its ops: `perf.step`, or build `update_ops`).
PASS_OPTION_FIELDS = ("metric_ce_passes", "gemm_shape_padding", "half_weights")


def pass_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """The forward, loss, recomputation and backward of every micro-batch of one step (counts: layers x
    micro-batches), in `step_ops`'s order; they read only `PASS_FIELDS` of ``setup``."""
    return forward_ops(cfg, setup, options) + recompute_ops(cfg, setup, options) + backward_ops(cfg, setup, options)


def _pass_shape(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None):
    """(seq, micro-batch, tokens per micro-batch, activation bytes, embedding weight bytes, position tables,
    occurrences of a block op per step, of a model op per step, residual-stream bytes per element)."""
    seq = setup.seq_len or default_train_seq(cfg)
    b, acc = setup.micro_batch, setup.grad_accum
    w = MASTER_BYTES if setup.precision is not MemoryPrecision.bf16_pure else HALF_BYTES
    a = act_bytes(setup.precision)
    # block_ops [20]: the stream has the weights' dtype (fp32 under PyTorch AMP), the memory engine's rule; a compiled
    # graph (inductor: `StepOptions.gemm_shape_padding`) fuses each residual add with the norm and cast after it, one
    # kernel reading the fp32 stream and the branch and writing the stream and the 16-bit norm output, about what the
    # eager 16-bit add and norm move, so it is priced as those (the H200 compiled rows, docs/performance_model.md)
    r = a if options is not None and (options.gemm_shape_padding or options.half_weights) else residual_bytes(setup)
    return seq, b, b * seq, a, w, 1 if cfg.pos_embedding else 0, cfg.n_layer * acc, acc, r


def forward_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Embedding, blocks (with their GEMMs' gradients), final norm, LM head and the loss, of every micro-batch;
    the same under every recomputation."""
    options = options or StepOptions()
    seq, b, t, a, w, pos, per_layer, acc, r = _pass_shape(cfg, setup, options)
    d, V = cfg.n_embd, cfg.vocab_size
    # the gather writes the stream in the weights' dtype (block_ops [20]: ``r``)
    ops = [Op("embedding gather", OpClass.memory, Phase.forward, 0.0, (1 + pos) * w * t * d + r * t * d, acc, 1 + pos)]
    ops += _block_forward(cfg, setup, seq, b, a, per_layer, Phase.forward, options, r)
    ops += _stream_norm("final norm", cfg.norm, t, t * d, a, r, acc, Phase.forward)
    ops += _linear_ops("lm head", t, d, V, a, acc, Phase.forward)  # tied or untied: the same GEMMs
    # ---- loss: [4] autocast runs cross-entropy in fp32 (cast, log_softmax, nll; backward mirrors it)
    # one fp32 cross-entropy forward: cast to fp32; log_softmax read + write (nll reads a row's target) [4]
    fp32_ce_fwd = (a + FP32_BYTES) * t * V + 2 * FP32_BYTES * t * V
    if setup.fused_loss and setup.loss_kernel is LossKernel.llmc:  # [19]: one kernel, 3 passes, in place
        ops += [_mem("fused classifier (online softmax read)", Phase.forward, a * t * V, acc),
                _mem("fused classifier (read, gradient in place)", Phase.backward, 2 * a * t * V, acc, 0)]
    elif setup.fused_loss:  # [17]: two reads forward; a read and a 16-bit write backward
        ops += [_mem("fused cross-entropy fwd", Phase.forward, 2 * a * t * V, acc),
                _mem("fused cross-entropy bwd", Phase.backward, 2 * a * t * V, acc)]
    else:
        loss_bwd = 2 * FP32_BYTES * t * V + (FP32_BYTES + a) * t * V  # softmax grad; cast back
        ops += [_mem("cross-entropy fwd (fp32)", Phase.forward, fp32_ce_fwd, acc, 3),
                _mem("cross-entropy bwd (fp32)", Phase.backward, loss_bwd, acc, 2)]
    if options.metric_ce_passes:  # [18]: the same fp32 forward per pass, no backward
        ops.append(_mem("train-metric cross-entropy (fp32)", Phase.forward, options.metric_ce_passes * fp32_ce_fwd,
                        acc, 3 * options.metric_ce_passes))
    return ops


def recompute_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """Recomputation: [6] selective re-runs the attention core; full re-runs every block's forward."""
    options = options or StepOptions()
    seq, b, _, a, _, _, per_layer, _, r = _pass_shape(cfg, setup, options)
    if setup.recompute is Recompute.full:
        return _block_forward(cfg, setup, seq, b, a, per_layer, Phase.recompute, options, r)
    if setup.recompute is Recompute.selective:
        return _attention_ops(cfg, setup, seq, b, a, per_layer, Phase.recompute, options, backward=False)
    return []


def backward_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """The backward's attention core and memory-bound kernels (the block GEMMs' gradients come with their forward
    GEMMs, `forward_ops`); the same under every recomputation."""
    options = options or StepOptions()
    seq, b, t, a, w, pos, per_layer, acc, r = _pass_shape(cfg, setup, options)
    d = cfg.n_embd
    ops = _attention_ops(cfg, setup, seq, b, a, per_layer, Phase.backward, options, backward=True)
    ops += _block_backward_memory(cfg, setup, seq, b, a, per_layer, options, r)
    ops += _stream_norm("final norm", cfg.norm, t, t * d, a, r, acc, Phase.backward, backward=True)
    # the stream's gradient (``r`` bytes, block_ops [20]) scatter-added into the weights' gradient
    ops.append(Op("embedding scatter-add", OpClass.memory, Phase.backward, 0.0, (1 + pos) * (r + 2 * w) * t * d,
                  acc, 1 + pos))
    return ops


def update_ops(cfg: ModelConfig, setup: TrainingSetup, options: StepOptions | None = None) -> list[Op]:
    """What a step adds to its passes: autocast's weight casts, the fp32 gradient accumulation and the optimizer
    update (its kernel from ``options``), in `step_ops`'s order."""
    return _precision_ops(cfg, setup, setup.grad_accum) + _optimizer_ops(cfg, setup, options)


def linears_per_layer(cfg: ModelConfig) -> int:
    """Weight matrices of one block as the reference modules hold them (kernels of per-tensor casts and updates)."""
    attn = 2  # fused qkv, output projection
    if not cfg.is_moe:
        return attn + cfg.mlp.n_matrices
    shared = (cfg.mlp.n_matrices + (1 if cfg.shared_expert_gate else 0)) if cfg.n_shared_expert else 0
    return attn + 1 + cfg.n_expert * cfg.mlp.n_matrices + shared  # router, every expert, shared experts


def _cast_weights(cfg: ModelConfig, setup: TrainingSetup) -> int:
    """Weights autocast casts in one forward: those multiplied, every expert that receives a token included."""
    pc = count_params(cfg)
    if not cfg.is_moe:
        return pc.matmul
    tokens = setup.micro_batch * (setup.seq_len or default_train_seq(cfg))
    used = min(cfg.n_expert, tokens * cfg.top_k)  # uniform routing (`expert_rows`)
    expert_w = mlp_unit_params(cfg, cfg.expert_inner)[0]
    return pc.matmul + cfg.n_layer * (used - cfg.top_k) * expert_w


def _precision_ops(cfg, setup, acc):
    """Autocast's weight casts and the fp32 gradient accumulation of mixed precision (PyTorch AMP)."""
    if not setup.precision.mixed:
        return []
    pc = count_params(cfg)
    n_forwards = acc * (2 if setup.recompute is Recompute.full else 1)
    kernels = linears_per_layer(cfg) * cfg.n_layer + 1
    ops = []
    if not setup.deepspeed_style:  # PyTorch AMP: fp32 weights, cast to 16-bit for every forward
        ops.append(_mem("autocast weight casts", Phase.forward, _cast_weights(cfg, setup) * (FP32_BYTES + HALF_BYTES),
                        n_forwards, kernels))
    # 16-bit weight gradients accumulated into fp32 .grad: read 16-bit, read-modify-write fp32; ZeRO >= 2 keeps
    # only this GPU's gradient partition (Rajbhandari et al. 2020, sec. 5.2, P_os+g), so it accumulates that shard
    grads = pc.total / setup.n_gpus if setup.zero_stage >= 2 else pc.total
    ops.append(_mem("grad accumulate to fp32", Phase.backward, grads * (HALF_BYTES + 2 * FP32_BYTES), acc,
                    kernels))
    return ops


def _optimizer_bytes(setup: TrainingSetup) -> float:
    """Bytes the optimizer moves per parameter it updates ([5] for AdamW)."""
    reads, writes = OPTIMIZER_RW_ELEMENTS[setup.optimizer]
    if setup.optimizer is Optimizer.adamw8bit:  # parameter and gradient fp32, states 1 byte each
        return 2 * FP32_BYTES + 2 * 1 + FP32_BYTES + 2 * 1
    width = HALF_BYTES if setup.precision is MemoryPrecision.bf16_pure else FP32_BYTES
    extra = HALF_BYTES if setup.deepspeed_style else 0  # the 16-bit copy of the updated weights
    return (reads + writes) * width + extra


def _optimizer_ops(cfg, setup, options: StepOptions | None = None) -> list[Op]:
    if setup.optimizer is Optimizer.none or setup.offload_optimizer:  # offload: the CPU runs it (offload.py)
        return []
    n = count_params(cfg).total
    shard = n / setup.n_gpus if setup.zero_stage >= 1 else n  # ZeRO >= 1 updates this GPU's partition only
    if options is not None and options.optimizer_kernel is OptimizerKernel.composer:
        if setup.optimizer is not Optimizer.adamw:
            raise ValueError(f"optimizer kernel 'composer' is Composer's DecoupledAdamW; got {setup.optimizer.value}")
        width = HALF_BYTES if setup.precision is MemoryPrecision.bf16_pure else FP32_BYTES
        return [Op("adamw update (Composer, eager)", OpClass.optimizer, Phase.step, 0.0,  # [14]
                   COMPOSER_ADAMW_RW_ELEMENTS * width * shard, 1, COMPOSER_ADAMW_KERNELS),
                Op("gradient clipping by norm", OpClass.optimizer, Phase.step, 0.0,  # [15]
                   GRAD_CLIP_RW_ELEMENTS * width * shard, 1, GRAD_CLIP_KERNELS)]
    return [Op(f"{setup.optimizer.value} update", OpClass.optimizer, Phase.step, 0.0,
               _optimizer_bytes(setup) * shard, 1, 1)]
