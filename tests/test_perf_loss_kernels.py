"""The loss's kernels as the MosaicML runs ran them: Composer's train-metric cross-entropy passes, against bytes
counted from the ops themselves, and the fused cross-entropy's place in the step.

Reference for the train metrics: ``torch.nn.CrossEntropyLoss(reduction='sum')`` (composer/metrics/nlp.py's
LanguageCrossEntropy and LanguagePerplexity) run under autocast and no_grad on 16-bit logits, on CPU tensors under
a dispatch mode that records each aten op's tensor reads and writes. ``nll_loss`` gathers one element per row (the
target's log-probability), so its read of the log-probabilities is not a pass over them: it is left out, as the
step model leaves it out.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode

from flopscalc.errors import UsageError
from flopscalc.memory.settings import TrainingSetup
from flopscalc.model import ModelConfig
from flopscalc.perf.op_kinds import Phase, StepOptions
from flopscalc.perf.ops import step_ops

CFG = ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=64, vocab_size=1000)


class _Passes(TorchDispatchMode):
    """Bytes each aten op reads (distinct tensor inputs) and writes (outputs), by op name."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = {t.data_ptr(): t for t in torch.utils._pytree.tree_leaves((args, kwargs))
               if isinstance(t, torch.Tensor) and t.numel() > 1}
        outs = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.numel() > 1]
        self.ops.append((func.__name__, sum(t.numel() * t.element_size() for t in [*ins.values(), *outs])))
        return out


def _metric_pass_bytes(tokens: int, vocab: int) -> tuple[int, int]:
    logits = torch.randn(tokens, vocab).to(torch.bfloat16)
    targets = torch.randint(0, vocab, (tokens,))
    mode = _Passes()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), mode:
        torch.nn.CrossEntropyLoss(reduction="sum")(logits, targets)
    passes = [(name, moved) for name, moved in mode.ops if not name.startswith("nll_loss")]
    return sum(moved for _, moved in passes), len(mode.ops)


@pytest.mark.parametrize("micro_batch,passes", [(1, 1), (3, 2)])
def test_a_train_metric_pass_moves_what_torch_cross_entropy_moves(micro_batch, passes):
    setup = TrainingSetup(micro_batch=micro_batch, seq_len=64, grad_accum=2)
    ops = step_ops(CFG, setup, StepOptions(metric_ce_passes=passes))
    (metric,) = [op for op in ops if op.name.startswith("train-metric")]
    measured, kernels = _metric_pass_bytes(micro_batch * 64, CFG.vocab_size)
    assert metric.bytes_moved == passes * measured  # cast to fp32, log_softmax: read and write each
    assert metric.kernels == passes * kernels  # cast, log_softmax, nll_loss
    assert metric.count == setup.grad_accum and metric.phase is Phase.forward  # after every micro-batch
    assert not [op for op in step_ops(CFG, setup) if op.name.startswith("train-metric")]  # none unless asked


def test_the_fused_loss_replaces_the_fp32_loss_and_moves_less():
    # flash-attn's kernel reads the 16-bit logits twice forward, once backward, and writes one 16-bit gradient;
    # PyTorch's autocast path casts them to fp32 and runs log_softmax and its backward in fp32
    setup = TrainingSetup(micro_batch=2, seq_len=64)
    plain = [op for op in step_ops(CFG, setup) if "cross-entropy" in op.name]
    fused = [op for op in step_ops(CFG, replace(setup, fused_loss=True)) if "cross-entropy" in op.name]
    assert {op.name for op in fused} == {"fused cross-entropy fwd", "fused cross-entropy bwd"}
    assert not {op.name for op in fused} & {op.name for op in plain}
    logits_bytes = 2 * 128 * CFG.vocab_size  # b s V in bf16
    assert sum(op.bytes_moved for op in fused) == 4 * logits_bytes
    assert sum(op.bytes_moved for op in plain) > 3 * sum(op.bytes_moved for op in fused)


def test_llmcs_in_place_classifier_makes_one_pass_fewer_in_one_kernel():
    # karpathy/llm.c fused_classifier_kernel5 (ops [19]): an online-softmax read of each row, a second read, and the
    # gradient written over the logits, all in one kernel: 3 passes over the 16-bit logits where flash-attn's
    # CrossEntropyLoss makes 4 in 2 kernels ([17])
    from flopscalc.perf.ops import LossKernel

    setup = TrainingSetup(micro_batch=2, seq_len=64)
    logits_bytes = 2 * 128 * CFG.vocab_size  # b s V in bf16
    llmc = [op for op in step_ops(CFG, replace(setup, fused_loss=True, loss_kernel=LossKernel.llmc))
            if "classifier" in op.name or "cross-entropy" in op.name]
    assert sum(op.bytes_moved for op in llmc) == 3 * logits_bytes
    assert sum(op.kernels for op in llmc) == 1
    assert {op.phase for op in llmc} == {Phase.forward, Phase.backward}
    # the kernel is chosen only with a fused loss: without one the setup refuses it (it would be ignored)
    with pytest.raises(UsageError, match="runs only with a fused loss"):
        replace(setup, loss_kernel=LossKernel.llmc)


def test_the_llmc_rows_state_llmcs_classifier():
    from flopscalc.perf.ops import LossKernel
    from flopscalc.perf.validation import published_rows, row_config

    rows = [r for r in published_rows() if r["run"].startswith("llmc-")]
    assert len(rows) == 2
    for r in rows:
        _, setup, _ = row_config(r)
        assert setup.fused_loss and setup.loss_kernel is LossKernel.llmc
