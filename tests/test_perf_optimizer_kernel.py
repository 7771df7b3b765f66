"""The optimizer step as llm-foundry's MPT runs take it (`StepOptions.optimizer_kernel = composer`), against bytes
counted from the ops themselves.

Reference: the update of Composer's DecoupledAdamW.adamw (mosaicml/composer composer/optim/decoupled_weight_decay.py,
weight decay 0 as the MPT yamls set it), written out op for op below, and PyTorch's own
torch.nn.utils.clip_grad_norm_, run on CPU tensors under a dispatch mode that adds up the bytes each aten op reads
(its distinct tensor arguments) and writes (its outputs). Per-tensor scalars (the norms, their stack, the coefficient:
one element each) are left out: they are not per-parameter traffic.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode

from flopscalc.hardware import get_gpu
from flopscalc.memory.settings import TrainingSetup
from flopscalc.model import ModelConfig, count_params
from flopscalc.perf.op_kinds import OpClass, OptimizerKernel, StepOptions
from flopscalc.perf.ops import step_ops
from flopscalc.perf.step import estimate_step


class _Bytes(TorchDispatchMode):
    """DRAM bytes an eager op stream moves: each op reads its distinct tensor inputs and writes its outputs."""

    def __init__(self):
        super().__init__()
        self.bytes = 0
        self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat_in = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        flat_out = [o for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        reads = {t.data_ptr(): t for t in flat_in if t.numel() > 1}  # the same tensor passed twice is read once
        writes = [t for t in flat_out if t.numel() > 1]
        moved = sum(t.numel() * t.element_size() for t in [*reads.values(), *writes])
        if moved:
            self.bytes += moved
            self.kernels += 1
        return out


def _composer_decoupled_adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=6e-4, beta1=0.9, beta2=0.95,
                                   eps=1e-8):
    # DecoupledAdamW.adamw's body for one parameter, weight_decay == 0 (no param.mul_)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


def _measured_bytes_per_param(n: int = 4096) -> tuple[float, int, float, int]:
    param = torch.randn(n)
    grad, exp_avg, exp_avg_sq = torch.randn(n), torch.zeros(n), torch.zeros(n)
    param.grad = grad
    with _Bytes() as adam:
        _composer_decoupled_adamw_step(param, grad, exp_avg, exp_avg_sq, step=1)
    with _Bytes() as clip:
        torch.nn.utils.clip_grad_norm_([param], max_norm=1.0, foreach=False)
    return adam.bytes / n, adam.kernels, clip.bytes / n, clip.kernels


def _optimizer_op_bytes(options: StepOptions, setup: TrainingSetup, cfg: ModelConfig) -> float:
    return sum(op.bytes_moved * op.count for op in step_ops(cfg, setup, options) if op.op_class is OpClass.optimizer)


CFG = ModelConfig(n_layer=4, n_head=4, n_embd=256, block_size=512, vocab_size=50368, bias=True)
SETUP = TrainingSetup(micro_batch=2, seq_len=512, precision="bf16-mixed", flash=True, n_gpus=8, zero_stage=3)


def test_composer_optimizer_bytes_equal_the_ops_counted_one_by_one():
    adam_bytes, adam_kernels, clip_bytes, clip_kernels = _measured_bytes_per_param()
    assert (adam_bytes, adam_kernels) == (80.0, 8)  # 20 fp32 elements, 8 eager kernels
    assert (clip_bytes, clip_kernels) == (12.0, 2)  # the norm reads the gradient, mul_ reads and writes it
    shard = count_params(CFG).total / SETUP.n_gpus  # FULL_SHARD: this GPU's partition of the fp32 states
    priced = _optimizer_op_bytes(StepOptions(optimizer_kernel=OptimizerKernel.composer), SETUP, CFG)
    assert priced == (adam_bytes + clip_bytes) * shard
    ops = [op for op in step_ops(CFG, SETUP, StepOptions(optimizer_kernel=OptimizerKernel.composer))
           if op.op_class is OpClass.optimizer]
    assert [op.kernels for op in ops] == [adam_kernels, clip_kernels]


def test_the_composer_step_only_slows_the_optimizer_and_is_refused_for_other_optimizers():
    gpu = get_gpu("h100")
    fused = estimate_step(CFG, SETUP, gpu, StepOptions())
    eager = estimate_step(CFG, SETUP, gpu, StepOptions(optimizer_kernel=OptimizerKernel.composer))
    for name, seconds in fused.class_seconds.items():
        if name != "optimizer":
            assert eager.class_seconds[name] == seconds, name
    assert eager.class_seconds["optimizer"] > 3 * fused.class_seconds["optimizer"]
    with pytest.raises(ValueError, match="DecoupledAdamW"):
        step_ops(CFG, TrainingSetup(micro_batch=2, seq_len=512, precision="bf16-mixed", optimizer="sgd"),
                 StepOptions(optimizer_kernel=OptimizerKernel.composer))
