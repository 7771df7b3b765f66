"""FLOPs of training a GPT-style transformer: exact per-component counts and the published conventions.

One FLOP is one floating-point add or multiply; a multiply-accumulate is 2 FLOPs (Megatron-LM,
Narayanan et al. 2021, Appendix: "A_{m x k} X_{k x n} requires 2mkn FLOPs"). The exact engine counts
matrix-multiply FLOPs, the same operations PyTorch's ``FlopCounterMode`` counts (mm, addmm, bmm,
attention); element-wise work (softmax, GELU, LayerNorm, residual adds, biases) is left out, as every
convention below except Chinchilla's softmax term also leaves it out.

Functions take and return numbers (numpy-broadcastable); `Convention` wraps each paper's formula
so it can be applied to a `ModelConfig`. Modules: ``exact`` (the per-component counts and the constants),
``papers`` (the papers' closed forms), ``conventions`` (each applied to a config), ``summary`` (what
`flopscalc flops` reports); this package re-exports their public names.

References
----------
[1] Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, sec. 2.1, Table 1.
[2] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556, App. F.
[3] Chowdhery et al. 2022, "PaLM", arXiv:2204.02311, App. B.
[4] Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM", arXiv:2104.04473, sec. 5.1 eqs. (2)-(4) and Appendix.
[5] Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
    arXiv:2205.05198, sec. 4.1 (selective recomputation).
[6] Jiang et al. 2024, "Mixtral of Experts", arXiv:2401.04088, sec. 2.1 (router logits x W_g, top-2 experts).
[7] Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
    Checkpoints", arXiv:2305.13245, sec. 2.2 (K and V projections with fewer heads).
[8] Shazeer 2020, "GLU Variants Improve Transformer", arXiv:2002.05202, eq. 6 (three d x f matrices).

Models other than GPT-2's block (grouped-query attention, gated MLPs, mixtures of experts, a head width that is
not n_embd / n_head) are counted with the same terms at their own widths; the papers' closed forms (Kaplan,
Chinchilla, Megatron) assume GPT-2's block, so for other blocks each convention applies its idea to the actual
widths (see `CONVENTIONS` and docs/families/).
"""

from __future__ import annotations

from .._lazy import lazy_exports

# Every count needs these, so they load with the package; the rest loads on first use (below).
from .exact import (
    BACKWARD_TO_FORWARD,
    FLOPS_PER_MAC,
    FLOPS_PER_PARAM_TOKEN,
    ForwardFlops,
    Recompute,
    TrainingFlops,
    attention_context,
    forward_flops_per_token,
    tokens_per_step,
    training_flops_per_token,
)

# The papers' closed forms (papers), the conventions applied to a config (conventions) and `flopscalc flops`'s
# summary (summary) are exported lazily (PEP 562): `flopscalc plan` needs none of them, and importing all three
# with the package doubled its import time (issue 18).
_EXPORTS = {  # name -> the module of this package that defines it
    "chinchilla_forward_flops_per_sequence": "papers",
    "kaplan_flops_per_token": "papers",
    "megatron_flops_per_token": "papers",
    "megatron_params": "papers",
    "megatron_training_time_s": "papers",
    "palm_flops_per_token": "papers",
    "six_nd_flops_per_token": "papers",
    "CONVENTIONS": "conventions",
    "Convention": "conventions",
    "convention_flops_per_token": "conventions",
    "formula_as_applied": "conventions",
    "ConventionResult": "summary",
    "FlopsSummary": "summary",
    "StepCount": "summary",
    "step_count": "summary",
    "summarize": "summary",
}

__all__ = [  # every public name, sorted
    "BACKWARD_TO_FORWARD", "CONVENTIONS", "FLOPS_PER_MAC", "FLOPS_PER_PARAM_TOKEN", "Convention", "ConventionResult",
    "FlopsSummary", "ForwardFlops", "Recompute", "StepCount", "TrainingFlops", "attention_context",
    "chinchilla_forward_flops_per_sequence", "convention_flops_per_token", "formula_as_applied",
    "forward_flops_per_token",
    "kaplan_flops_per_token", "megatron_flops_per_token", "megatron_params", "megatron_training_time_s",
    "palm_flops_per_token", "six_nd_flops_per_token", "step_count", "summarize", "tokens_per_step",
    "training_flops_per_token",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
