"""The papers' closed forms of training FLOPs, numbers in: 6ND, Kaplan, Chinchilla, PaLM, Megatron-LM.

References [1]-[4] are listed in `flopscalc.flops`'s docstring.
"""

from __future__ import annotations

from .exact import BACKWARD_TO_FORWARD, FLOPS_PER_PARAM_TOKEN


def six_nd_flops_per_token(n_params):
    """Training FLOPs per token, C = 6N ([1] sec. 2.1: forward 2N, backward 4N)."""
    return FLOPS_PER_PARAM_TOKEN * n_params  # [1] sec. 2.1


def kaplan_flops_per_token(n_layer, d_model, d_attn, d_ff, n_ctx):
    """Training FLOPs per token by Kaplan's Table 1: 3 x C_forward, C_forward = 2N + 2 n_layer n_ctx d_attn.

    N = 2 d_model n_layer (2 d_attn + d_ff) is non-embedding and ignores biases and LayerNorms; the
    de-embedding (LM head) is left out of the total ([1] Table 1, "Total (Non-Embedding)").
    """
    n = 2 * d_model * n_layer * (2 * d_attn + d_ff)  # [1] Table 1
    c_forward = 2 * n + 2 * n_layer * n_ctx * d_attn  # [1] Table 1
    return (1 + BACKWARD_TO_FORWARD) * c_forward


def chinchilla_forward_flops_per_sequence(
    seq_len, vocab_size, d_model, num_heads, key_size, num_layers, ffw_size,
    *, embeddings: bool = True, logits: bool = True, causal: bool = False,
):
    """Forward FLOPs of one sequence by Chinchilla's Appendix F accounting ([2] App. F).

    ``embeddings``/``logits`` switch those terms off: [2]'s Table A4 ratios leave them out (per the
    authors, quoted in nanoGPT's ``scaling_laws.ipynb``). ``causal`` halves the seq_len^2 terms.
    """
    kh = key_size * num_heads
    s2 = seq_len * seq_len * (0.5 if causal else 1.0)
    emb = 2 * seq_len * vocab_size * d_model if embeddings else 0  # [2] App. F "Embeddings"
    attention = (
        2 * 3 * seq_len * d_model * kh  # [2] App. F "Key, query and value projections"
        + 2 * s2 * kh  # [2] App. F "Key @ Query logits"
        + 3 * num_heads * s2  # [2] App. F "Softmax"
        + 2 * s2 * kh  # [2] App. F "Softmax @ query reductions"
        + 2 * seq_len * kh * d_model  # [2] App. F "Final Linear"
    )
    dense = 2 * seq_len * (d_model * ffw_size + d_model * ffw_size)  # [2] App. F "Dense Block"
    final = 2 * seq_len * d_model * vocab_size if logits else 0  # [2] App. F "Final Logits"
    return emb + num_layers * (attention + dense) + final


def palm_flops_per_token(n_params, n_layer, n_head, head_dim, seq_len, *, causal: bool = False):
    """Model FLOPs per token, 6N + 12 L H Q T ([3] App. B); ``causal`` halves the attention term."""
    return 6.0 * n_params + (6.0 if causal else 12.0) * n_layer * n_head * head_dim * seq_len  # [3] App. B


def megatron_flops_per_token(n_layer, hidden, seq_len, vocab_size, *, recompute: bool = True,
                             causal: bool = False):
    """Training FLOPs per token by Megatron-LM ([4] eq. 3 divided by B s), with full recompute by default.

    ``recompute=False`` drops the extra forward of the blocks, giving 72 l h^2 (1 + s/6h + V/12lh)
    ([4] Appendix: fwd + bwd = 3 x (24Bsh^2 + 4Bs^2h) per layer, logits 6BshV). ``causal`` halves s/6h.
    """
    s = seq_len * (0.5 if causal else 1.0)
    if recompute:
        return 96.0 * n_layer * hidden**2 * (1 + s / (6 * hidden) + vocab_size / (16 * n_layer * hidden))  # [4] eq. 3
    return 72.0 * n_layer * hidden**2 * (1 + s / (6 * hidden) + vocab_size / (12 * n_layer * hidden))  # [4] App.


def megatron_params(n_layer, hidden, vocab_size, seq_len):
    """Parameter count P = 12 l h^2 (1 + 13/12h + (V + s)/12lh) ([4] eq. 2)."""
    return 12.0 * n_layer * hidden**2 * (1 + 13 / (12 * hidden) + (vocab_size + seq_len) / (12 * n_layer * hidden))  # [4] eq. 2


def megatron_training_time_s(n_tokens, n_params, n_gpus, flop_per_s_per_gpu):
    """End-to-end training time ~ 8 T P / (n X) with full recompute ([4] eq. 4), in seconds."""
    return 8.0 * n_tokens * n_params / (n_gpus * flop_per_s_per_gpu)  # [4] eq. 4
