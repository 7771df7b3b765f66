"""LoRA on the reference modules: frozen base, trainable low-rank adapters on chosen linear layers.

A LoRA linear computes ``y = W x + (alpha / r) B A dropout(x)`` (Hu et al. 2021, "LoRA", arXiv:2106.09685, sec. 4.1,
eq. 3: h = W0 x + B A x, with the product scaled by alpha / r), ``A: d_in -> r`` and ``B: r -> d_out`` without
biases, ``A`` Kaiming-uniform and ``B`` zero so the model starts exactly where the base is (peft 0.21
``LoraLayer.reset_lora_parameters`` with ``init_lora_weights=True``; Hu et al. sec. 4.1: "zero initialization
for B"). Every base parameter is frozen (``requires_grad=False``), norms and embeddings included, as
``peft.get_peft_model`` leaves them with ``bias="none"``.

Target names are `flopscalc.finetune.adapters.TARGETS` (q, k, v, o, gate, up, down, or all-linear: every block
linear, never the LM head). On `Decoder` they are Hugging Face Llama's ``q_proj`` ... ``down_proj``. On `GPT`
(GPT-2's block) o, up and down are ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj``; q, k and v are slices of the
fused ``attn.c_attn``, and each targeted slice gets its own adapter of width d (`LoraFusedLinear`, as the LoRA
authors' ``loralib.MergedLinear`` with ``enable_lora=[True, False, True]`` adapts GPT-2's q and v). So a trainable
count is r (d_in + d_out) per targeted projection on both modules, what `finetune.adapters.count_adapters` counts.
peft with ``target_modules=["c_attn"]`` on transformers' GPT-2 instead puts one adapter of width 3d on the fused
layer: r (d + 3d) parameters, not q, k and v's 3 r (d + d); that layout is not what flopscalc models.

FLOPs: `lora_model_flops_per_token` is `finetune.flops.finetune_flops_per_token` (frozen linears run forward and
input gradient only), plus, on GPT-2's fused QKV, the first layer's attention-core gradients the fused output
forces (its q, k and v slices need a gradient together). Equal to ``FlopCounterMode`` (tests/test_train_lora.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..finetune.activations import layer_flow
from ..finetune.adapters import TARGETS
from ..finetune.flops import core_backward_flops_per_token, finetune_flops_per_token
from ..finetune.memory import FinetuneSetup
from ..model import ModelConfig
from .model import GPT, is_gpt2_layout

# peft's Kaiming-uniform gain for lora_A, the nn.Linear default (peft ``reset_lora_parameters``; loralib layers.py).
LORA_A_KAIMING_A = math.sqrt(5)
# GPT-2's fused c_attn holds q, k, v in this order along its output (nanoGPT ``c_attn(x).split(n_embd, dim=2)``).
FUSED_QKV = ("q", "k", "v")
# GPT-2's other block linears under their Llama-style target names (nanoGPT module paths inside a Block).
GPT2_LINEARS = {"o": ("attn", "c_proj"), "up": ("mlp", "c_fc"), "down": ("mlp", "c_proj")}
# Decoder's block linears (Hugging Face Llama names).
DECODER_LINEARS = {"q": ("self_attn", "q_proj"), "k": ("self_attn", "k_proj"), "v": ("self_attn", "v_proj"),
                   "o": ("self_attn", "o_proj"), "gate": ("mlp", "gate_proj"), "up": ("mlp", "up_proj"),
                   "down": ("mlp", "down_proj")}


def _adapter(d_in: int, d_out: int, rank: int, like: torch.Tensor) -> tuple[nn.Linear, nn.Linear]:
    """lora_A (Kaiming-uniform) and lora_B (zeros), on the base weight's device and dtype (peft's init)."""
    kw = {"bias": False, "device": like.device, "dtype": like.dtype}
    a, b = nn.Linear(d_in, rank, **kw), nn.Linear(rank, d_out, **kw)
    nn.init.kaiming_uniform_(a.weight, a=LORA_A_KAIMING_A)  # peft reset_lora_parameters
    nn.init.zeros_(b.weight)  # Hu et al. 2021, sec. 4.1: B = 0, so B A = 0 at the start
    return a, b


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus one adapter: base(x) + (alpha / r) B(A(dropout(x))) (Hu et al. 2021, eq. 3)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base_layer = base
        self.lora_A, self.lora_B = _adapter(base.in_features, base.out_features, rank, base.weight)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / rank  # Hu et al. 2021, sec. 4.1: scale delta W x by alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling  # (..., d_out)


class LoraFusedLinear(nn.Module):
    """A frozen fused linear (GPT-2's c_attn: q, k, v side by side) with one adapter per targeted slice; the slices
    not targeted pass through (loralib ``MergedLinear``, Hu et al.'s released GPT-2 code)."""

    def __init__(self, base: nn.Linear, slices: tuple[str, ...], targets: tuple[str, ...], rank: int, alpha: float,
                 dropout: float = 0.0):
        super().__init__()
        self.base_layer, self.slices = base, slices
        self.width = base.out_features // len(slices)
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        for name in (s for s in slices if s in targets):
            self.lora_A[name], self.lora_B[name] = _adapter(base.in_features, self.width, rank, base.weight)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / rank  # Hu et al. 2021, sec. 4.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.base_layer(x).split(self.width, dim=-1))  # len(slices) x (..., width)
        for i, name in enumerate(self.slices):
            if name in self.lora_A:
                parts[i] = parts[i] + self.lora_B[name](self.lora_A[name](self.lora_dropout(x))) * self.scaling
        return torch.cat(parts, dim=-1)  # (..., d_out)


def _parent(block: nn.Module, path: tuple[str, str]) -> tuple[nn.Module, str]:
    return getattr(block, path[0]), path[1]


def apply_lora(model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...], dropout: float = 0.0) -> nn.Module:
    """Freeze every parameter of ``model`` (`GPT` or `Decoder`) and wrap its targeted block linears in adapters.

    ``targets`` are names from `finetune.adapters.TARGETS` (`finetune.adapters.parse_targets` reads
    ``all-linear`` and comma lists); in place, returns ``model``. The adapters are drawn from torch's global
    generator, in block order, so a seeded run builds the same adapters every time.
    """
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"LoRA targets must be among {TARGETS}, got {targets!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    model.requires_grad_(False)
    gpt = isinstance(model, GPT)
    linears = GPT2_LINEARS if gpt else DECODER_LINEARS
    if "gate" in targets and (gpt or not hasattr(model.h[0].mlp, "gate_proj")):
        raise ValueError("this model's MLP has no gate projection; drop 'gate' from the LoRA targets")
    for block in model.h:
        if gpt and any(t in FUSED_QKV for t in targets):
            block.attn.c_attn = LoraFusedLinear(block.attn.c_attn, FUSED_QKV, targets, rank, alpha, dropout)
        for name in targets:
            if name in linears:
                parent, attr = _parent(block, linears[name])
                setattr(parent, attr, LoraLinear(getattr(parent, attr), rank, alpha, dropout))
    return model


def n_trainable_params(model: nn.Module) -> int:
    """Parameters the optimizer updates (count): those with ``requires_grad``, a shared tensor once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_model_flops_per_token(cfg: ModelConfig, seq_len: int, rank: int, targets: tuple[str, ...]) -> float:
    """Model FLOPs per token of one LoRA training step of the reference module for ``cfg`` (FLOP / token).

    `finetune.flops.finetune_flops_per_token` (frozen linears: forward and input gradient; adapters: forward,
    both weight gradients and their input gradient; attention core: the gradients its inputs need), without
    recomputation (model FLOPs, as MFU counts: Chowdhery et al. 2022, App. B). On GPT-2's fused c_attn an adapter on
    any of q, k, v makes the whole fused output need a gradient, so in the first block (whose input needs none)
    the core computes dQ, dK and dV all, where separate projections compute only the targeted ones.
    """
    setup = FinetuneSetup(method="lora", rank=rank, targets=targets, micro_batch=1, seq_len=seq_len,
                          compute="fp32", device="cpu", recompute="none")
    flops = finetune_flops_per_token(cfg, setup).model_flops_per_token
    if is_gpt2_layout(cfg):
        first = layer_flow(targets, False, gated=False)
        if first.attention:  # the fused output needs a gradient: all of q, k, v do (finetune.flops' core count)
            fused = layer_flow(FUSED_QKV, False, gated=False)
            flops += (core_backward_flops_per_token(cfg, fused, seq_len, False)
                      - core_backward_flops_per_token(cfg, first, seq_len, False))
    return flops

