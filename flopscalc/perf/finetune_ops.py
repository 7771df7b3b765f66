"""The operations of one fine-tuning micro-batch step (full, LoRA, QLoRA), from the pre-training step's own ops.

Full fine-tuning is pre-training: `ops.step_ops` unchanged. With a frozen base (LoRA, QLoRA) the step is derived
from the same list, with the gradient bookkeeping of `flopscalc.finetune.flops` (which tensors need a gradient
is `finetune.activations.layer_flow`):

- frozen linears keep their forward GEMM and drop the weight-gradient GEMM (Kaplan et al. 2020, sec. 2.1:
  backward = 2 x forward, of which the frozen weight needs half); their input-gradient GEMM runs only in layers
  whose input needs a gradient (without checkpointing the first block's stream does not);
- each targeted linear gains its adapter (Hu et al. 2021, eq. 3: h = W0 x + B A x): forward x A [m x k][k x r]
  and (x A) B [m x r][r x n]; backward dB, d(x A), dA and, where the input needs a gradient, dx through A;
  re-run forward under gradient checkpointing as the block's forward is;
- the attention core's backward computes only the gradients the layer needs (`finetune.flops.core_backward_flops_per_token`);
  FlashAttention still re-computes S = Q K^T once per layer that back-propagates through it (Dao 2023, Alg. 2);
- QLoRA dequantizes each 4-bit weight before each matmul that uses it (bitsandbytes ``MatMul4Bit``: forward,
  input gradient, recomputed forward; the passes `finetune.flops.dequant_bytes_per_token` counts): one
  memory-bound op per quantized linear per pass, reading the stored weight and constants, writing bf16;
- the frozen embedding records nothing in backward; mixed-precision gradient accumulation and the optimizer
  run over the trainable (adapter) parameters only; autocast casts only what is stored in fp32 (the adapters,
  and QLoRA's LM head after ``prepare_model_for_kbit_training``), not the bf16 or 4-bit base.

GEMM FLOPs are 2 m n k (Narayanan et al. 2021, App.). The op FLOPs sum exactly to `finetune.flops`'s per-step
count plus FlashAttention's backward re-computation of S (tests/test_finetune_perf.py). Each op's bytes are
the inputs read and output written once at the compute width, as in `ops.py`.
"""

from __future__ import annotations

from dataclasses import replace

from ..finetune.activations import inputs_needing_grad, layer_flow
from ..finetune.adapters import Method, Quant, adapter_params_per_layer, int8_bytes, linear_shapes, nf4_bytes
from ..flops import Recompute, forward_flops_per_token
from ..memory.precision import MemoryPrecision
from ..memory.settings import FP32_BYTES, HALF_BYTES, TrainingSetup
from ..model import ModelConfig, count_params
from .op_kinds import Op, OpClass, Phase, StepOptions, act_bytes
from .ops import _optimizer_bytes, step_ops

# The base op list's names of each block linear (`block_ops._block_forward`): q, k, v are one fused GEMM.
BASE_LINEAR = {"q": "qkv", "k": "qkv", "v": "qkv", "o": "attn proj", "gate": "mlp gate", "up": "mlp up",
               "down": "mlp down"}
# Attention backward ops of the base list, by which product's gradient they compute (`block_ops._attention_ops`).
SCORE_GRADS = {"attn dQ=dS K": "q", "attn dK=dS^T Q": "k"}  # flops of Q K^T each
VALUE_GRADS = {"attn dP=dO V^T": "probs", "attn dV=P^T dO": "v"}  # flops of P V each


def training_setup(setup, *, flash: bool = True) -> TrainingSetup:
    """The pre-training setup of the same shape: micro-batch, sequence, recomputation, precision, optimizer."""
    from ..finetune.memory import Compute

    precision = MemoryPrecision.bf16_mixed if setup.compute is Compute.bf16 else MemoryPrecision.fp32
    return TrainingSetup(micro_batch=setup.micro_batch, seq_len=setup.seq_len, precision=precision,
                         optimizer=setup.optimizer, recompute=setup.recompute, flash=flash)


def _gemm(name, phase, m, n, k, a, count):
    return Op(name, OpClass.gemm, phase, 2.0 * m * n * k, a * (m * k + k * n + m * n), count, 1, (m, n, k, 1))


def _scaled(op: Op, count: int, share: float = 1.0) -> Op | None:
    if count <= 0 or share <= 0:
        return None
    return replace(op, count=count, flops=op.flops * share, bytes_moved=op.bytes_moved * share)


def _core_share(op: Op, flow, flash_scores: float) -> float:
    """Share of a base attention-backward op a layer with ``flow`` computes (`finetune.flops.core_backward_flops_per_token`)."""
    probs = flow.q or flow.k
    if op.flash:  # one kernel: dQ, dK (scores each), dP, dV (values each) and the re-computed S
        scores = values = flash_scores
        done = scores * (flow.q + flow.k) + values * (probs + flow.v) + (scores if flow.attention else 0.0)
        return done / op.flops
    need = {**SCORE_GRADS, **VALUE_GRADS}.get(op.name)
    if need is None:  # softmax backward, repeat_kv sum, dropout: run when any core input needs a gradient
        return 1.0 if flow.attention else 0.0
    return 1.0 if (probs if need == "probs" else getattr(flow, need)) else 0.0


def _dequant_bytes(d_in: int, d_out: int, setup) -> float:
    """One dequantization of a d_in x d_out weight: read the stored weight and constants, write bf16."""
    stored = int8_bytes(d_in, d_out) if Quant(setup.quant) is Quant.int8 else nf4_bytes(
        d_in * d_out, double_quant=setup.double_quant)
    return stored + HALF_BYTES * d_in * d_out


def finetune_step_ops(cfg: ModelConfig, setup, options: StepOptions | None = None, *,
                      flash: bool = True) -> list[Op]:
    """Every operation of one fine-tuning micro-batch step of ``cfg`` under ``setup`` (a `FinetuneSetup`)."""
    train = training_setup(setup, flash=flash)
    if train.precision.mixed and (setup.method is Method.lora or setup.bf16_adapters):
        # a bf16 base (LoRA; QLoRA's qlora.py with --bf16-adapters) makes a 16-bit residual stream, as the fine-tuning
        # memory engine counts it (finetune.activations: the embedding's dtype); peft's QLoRA upcast keeps it fp32
        options = replace(options or StepOptions(), half_weights=True)
    base = step_ops(cfg, train, options)
    if setup.method is Method.full:
        return base
    L, t, r = cfg.n_layer, setup.micro_batch * setup.seq_len, setup.rank
    a = act_bytes(train.precision)
    recompute = setup.recompute is Recompute.full
    gated = cfg.mlp.n_matrices == 3
    first, later = layer_flow(setup.targets, recompute, gated), layer_flow(setup.targets, True, gated)
    flows = ((first, 1), (later, L - 1))  # (flow, layers with it); one micro-batch
    needs = [(inputs_needing_grad(f), n) for f, n in flows]
    fwd = forward_flops_per_token(cfg, setup.seq_len, causal=flash)
    flash_scores = fwd.attn_scores / L * t  # one layer's Q K^T (FLOP)
    block_dgrad = {f"{v} dgrad": k for k, v in BASE_LINEAR.items()}
    ops: list[Op] = []
    for op in base:
        if op.name.endswith("wgrad") or op.name == "embedding scatter-add" or op.phase is Phase.step:
            continue  # frozen weights; frozen embedding; the optimizer is re-made over the adapters below
        if op.name in block_dgrad:
            fused = [k for k, v in BASE_LINEAR.items() if f"{v} dgrad" == op.name and k in linear_shapes(cfg)]
            ops += [x for need, n in needs if (x := _scaled(op, n, 1.0 if need[fused[0]] else 0.0))]
        elif op.phase is Phase.backward and op.op_class is OpClass.attention or op.name.startswith(
                ("repeat_kv bwd", "attn softmax bwd", "attn dropout bwd")):
            ops += [x for f, n in flows if (x := _scaled(op, n, _core_share(op, f, flash_scores)))]
        elif op.name == "lm head dgrad" and not (later if L > 1 else first).stream_out:
            continue
        elif op.name == "autocast weight casts":  # the bf16 base (LoRA) needs no cast; 4-bit is dequantized
            ops += _frozen_base_casts(cfg, setup, op)
        elif op.name == "grad accumulate to fp32":
            ops.append(replace(op, bytes_moved=op.bytes_moved * _trainable(cfg, setup) / count_params(cfg).total))
        else:
            ops.append(op)
    shapes = linear_shapes(cfg)
    for name in setup.targets:
        d_in, d_out = shapes[name]
        for phase, n in ((Phase.forward, L),) + (((Phase.recompute, L),) if recompute else ()):
            ops += [_gemm(f"lora {name} A fwd", phase, t, r, d_in, a, n),
                    _gemm(f"lora {name} B fwd", phase, t, d_out, r, a, n)]
        ops += [_gemm(f"lora {name} B wgrad", Phase.backward, r, d_out, t, a, L),
                _gemm(f"lora {name} B dgrad", Phase.backward, t, r, d_out, a, L),
                _gemm(f"lora {name} A wgrad", Phase.backward, d_in, r, t, a, L)]
        n_dx = sum(n for need, n in needs if need[name])
        if n_dx:
            ops.append(_gemm(f"lora {name} A dgrad", Phase.backward, t, d_in, r, a, n_dx))
    if setup.method is Method.qlora:
        passes = ((Phase.forward, "fwd"), (Phase.backward, "dgrad")) + (
            ((Phase.recompute, "recompute"),) if recompute else ())
        for phase, label in passes:  # the passes finetune.flops.dequant_bytes_per_token counts, every layer
            ops += [Op(f"dequantize {name} ({label})", OpClass.memory, phase, 0.0,
                       _dequant_bytes(*shapes[name], setup), L) for name in shapes]
    if setup.optimizer.value != "none":
        ops.append(Op(f"{setup.optimizer.value} update (adapters)", OpClass.optimizer, Phase.step, 0.0,
                      _optimizer_bytes(train) * _trainable(cfg, setup), 1, 2 * len(setup.targets) * L))
    return ops


def _frozen_base_casts(cfg: ModelConfig, setup, casts: Op) -> list[Op]:
    """Autocast's fp32 -> bf16 casts with a frozen base (`finetune.memory`): the base is loaded in bf16 (LoRA) or
    4-bit (QLoRA), so only fp32 adapters are cast, each forward (recomputed ones too); after peft's
    ``prepare_model_for_kbit_training`` QLoRA's LM head is fp32 too, cast once per micro-batch."""
    ops = []
    if not setup.bf16_adapters:
        ops.append(replace(casts, name="autocast adapter casts", bytes_moved=_trainable(cfg, setup) * (
            FP32_BYTES + HALF_BYTES), kernels=2 * len(setup.targets) * cfg.n_layer))
        if setup.method is Method.qlora:
            ops.append(Op("autocast lm head cast", OpClass.memory, Phase.forward, 0.0,
                          cfg.vocab_size * cfg.n_embd * (FP32_BYTES + HALF_BYTES), 1))
    return ops


def _trainable(cfg: ModelConfig, setup) -> int:
    return cfg.n_layer * adapter_params_per_layer(cfg, setup.targets, setup.rank)


__all__ = ["BASE_LINEAR", "finetune_step_ops", "training_setup"]