"""Reference PyTorch modules built from a `flopscalc.model.ModelConfig`; `build_model` picks one.

`GPT` is GPT-2 (Radford et al. 2019) as nanoGPT writes it (pre-LN blocks, fused QKV, GELU with the tanh
approximation, tied LM head). `Decoder` is every other dense block the description holds: Llama-style (RMSNorm,
RoPE, SwiGLU, grouped-query attention, untied head, no biases) and what lies between (GeGLU, QKV-only bias, q/k
norm, parallel attention + MLP, plain LayerNorm), with Hugging Face Llama's parameter names. Parameter counts,
FLOPs and saved activations measured on either are checked against ``flopscalc.model.count_params``,
``flopscalc.flops`` and ``flopscalc.memory`` (tests/test_train_llama*.py for `Decoder`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import UsageError
from ..model import Mlp, ModelConfig, Position, QkNorm, window_cuts
from ..model import Norm as NormKind
from .config import model_unsupported

# GPT-2's initialisation: N(0, 0.02) for weights (Radford et al. 2019, sec. 2.3 / released code),
# residual projections scaled by 1/sqrt(2 * n_layer) (GPT-2 paper, sec. 2.3).
INIT_STD = 0.02


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's own has no ``bias=False`` before 2.1)."""

    def __init__(self, n_embd: int, bias: bool, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def window_mask(T: int, window: int | None, device) -> torch.Tensor | None:
    """The boolean (T, T) mask of sliding-window causal attention, True where query i may attend key j, or None when
    plain causal attention is the same (no window, or W >= T).

    Query i attends key j when j <= i and i - j < W: at most W keys, itself included (Mistral 7B, arXiv:2310.06825,
    sec. 2; transformers' ``sliding_window_overlay``: kv_idx > q_idx - sliding_window), the pairs
    `flopscalc.flops.attention_context` counts.
    """
    if not window_cuts(window, T):
        return None
    return torch.ones(T, T, dtype=torch.bool, device=device).tril().triu(-(window - 1))  # j <= i, i - j <= W - 1


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, **kw) -> torch.Tensor:
    """Causal SDPA, with the window's banded mask given explicitly when it cuts (``is_causal`` takes no window)."""
    mask = window_mask(q.size(-2), window, q.device)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)  # (B, nh, T, hs)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)  # (B, nh, T, hs)


def _causal_or_window(T: int, window: int | None, device) -> torch.Tensor:
    """The mask the spelled-out attention applies: the window's band, else the causal lower triangle."""
    mask = window_mask(T, window, device)
    return torch.ones(T, T, dtype=torch.bool, device=device).tril() if mask is None else mask


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str = "sdpa"):
        super().__init__()
        self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        if attention not in ("sdpa", "math"):
            raise ValueError(f"attention must be 'sdpa' or 'math', got {attention!r}")
        self.attention = attention
        self.window = cfg.attn_window  # sliding window W (None: every earlier token)
        self.recompute_core = False  # selective recomputation (Korthikanti et al. 2022, sec. 4.1)

    def _core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v with a causal mask (banded to the last W keys under a sliding window)."""
        if self.attention == "sdpa":
            return _sdpa(q, k, v, self.window)  # (B, nh, T, hs)
        T = q.size(-2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
        mask = _causal_or_window(T, self.window, q.device)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return att @ v  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.recompute_core and torch.is_grad_enabled():
            y = checkpoint(self._core, q, k, v, use_reentrant=False)  # (B, nh, T, hs)
        else:
            y = self._core(q, k, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.n_inner, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_inner, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str = "sdpa"):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg, attention)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


RECOMPUTE_MODES = ("none", "selective", "full")


def _init_gpt2(model: nn.Module, n_layer: int, residual: tuple[str, ...]) -> None:
    """GPT-2's initialisation in place: every linear and embedding N(0, INIT_STD), biases zero, then the residual
    projections named by ``residual`` (parameter-name suffixes) N(0, INIT_STD / sqrt(2 n_layer)) (sec. 2.3)."""
    model.apply(GPT._init_weights)
    for name, p in model.named_parameters():
        if name.endswith(residual):
            nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * n_layer))


class GPT(nn.Module):
    """GPT-2 decoder.

    ``attention='math'`` spells attention out as matmuls (FLOP counters see them on any device);
    ``recompute`` is activation recomputation: ``'selective'`` recomputes the attention core
    (Korthikanti et al. 2022, sec. 4.1), ``'full'`` every block (Chen et al. 2016).
    """

    def __init__(self, cfg: ModelConfig, attention: str = "sdpa", recompute: str = "none"):
        super().__init__()
        if recompute not in RECOMPUTE_MODES:
            raise ValueError(f"recompute must be one of {RECOMPUTE_MODES}, got {recompute!r}")
        if not is_gpt2_layout(cfg):
            raise ValueError(f"GPT builds GPT-2's block only, not {cfg.family}; build_model(cfg) picks Decoder")
        self.cfg = cfg
        self.recompute = recompute
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_embedding else None
        self.h = nn.ModuleList(Block(cfg, attention) for _ in range(cfg.n_layer))
        self.ln_f = LayerNorm(cfg.n_embd, cfg.bias, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        for block in self.h:
            block.attn.recompute_core = recompute == "selective"
        _init_gpt2(self, cfg.n_layer, ("c_proj.weight",))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        if self.cfg.seq_limited_by_context and T > self.cfg.block_size:  # only a learned table has a last row
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.cfg.block_size}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.h:
            if self.recompute == "full" and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)  # (B, T, C)
            else:
                x = block(x)  # (B, T, C)
        x = self.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


# ---------------------------------------------------------------- every other block: Llama-style and between

# The normalisation epsilon and the RoPE base are the model's (``ModelConfig.norm_eps`` / ``rope_theta``, read from a
# config.json's rms_norm_eps / rope_theta): a Llama 3 file's 500000 reaches the module.

class Norm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019, eq. 4: gain, no mean, no bias), LayerNorm, or LayerNorm without gain or bias
    (OLMo 1), over the last ``width`` features, by ``F.rms_norm`` / ``F.layer_norm`` (on a CPU, torch runs
    ``rms_norm`` under autograd as its composite, which saves the normalised tensor too: docs/trainer.md)."""

    def __init__(self, kind: NormKind, width: int, bias: bool, eps: float):
        super().__init__()
        self.kind, self.width, self.eps = kind, width, eps
        plain = kind is NormKind.layernorm_plain
        self.weight = None if plain else nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width)) if kind is NormKind.layernorm and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind is NormKind.rmsnorm:
            return F.rms_norm(x, (self.width,), self.weight, self.eps)  # Zhang & Sennrich 2019, eq. 4
        return F.layer_norm(x, (self.width,), self.weight, self.bias, self.eps)


def rope_tables(seq_len: int, head_dim: int, theta: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's angles t * theta_i for positions 0..seq_len-1, each (T, head_dim).

    Su et al. 2021, eq. 15 (theta_i = base^(-2i/d), base = ``theta``, the model's ``rope_theta``) and eq. 34; the two halves of the head repeat the angles, as
    Hugging Face's ``rotate_half`` convention pairs feature i with i + d/2 (GPT-NeoX / Llama layout).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.int64).float()
                                     / head_dim))  # Su et al. 2021, eq. 15
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)  # (T, hd/2)
    emb = torch.cat((angles, angles), dim=-1)  # (T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (i, i + d/2) of every head by its position's angle (Su et al. 2021, eq. 34)."""
    return x * cos + _rotate_half(x) * sin  # (B, nh, T, hs)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs matmuls in on ``device_type``, or None when autocast is off (or unknown there)."""
    on = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
    return torch.get_autocast_dtype(device_type) if on else None


def _cast_once(x: torch.Tensor) -> torch.Tensor:
    """``x`` in autocast's dtype when autocast is on: several linears reading one input then share one 16-bit copy
    (autocast casts a non-parameter input anew for every op; a fused QKV or gate/up matmul casts it once)."""
    dtype = _autocast_dtype(x.device.type)
    return x if dtype is None else x.to(dtype)


class Attention(nn.Module):
    """Multi-head, grouped-query (Ainslie et al. 2023) or multi-query attention with separate Q, K, V projections,
    an optional q/k RMSNorm (OLMo 2 over all heads, Qwen3 per head) and RoPE."""

    def __init__(self, cfg: ModelConfig, attention: str = "sdpa"):
        super().__init__()
        if attention not in ("sdpa", "math"):
            raise ValueError(f"attention must be 'sdpa' or 'math', got {attention!r}")
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.qk_norm, self.attention = cfg.qk_norm, attention
        self.window = cfg.attn_window  # sliding window W (None: every earlier token)
        self.q_proj = nn.Linear(cfg.n_embd, cfg.d_attn, bias=cfg.has_qkv_bias)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.d_kv, bias=cfg.has_qkv_bias)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.d_kv, bias=cfg.has_qkv_bias)
        self.o_proj = nn.Linear(cfg.d_attn, cfg.n_embd, bias=cfg.has_out_bias)
        if cfg.qk_norm is not QkNorm.none:
            full = cfg.qk_norm is QkNorm.full
            self.q_norm = Norm(NormKind.rmsnorm, cfg.d_attn if full else cfg.head_dim, False, cfg.norm_eps)
            self.k_norm = Norm(NormKind.rmsnorm, cfg.d_kv if full else cfg.head_dim, False, cfg.norm_eps)
        self.recompute_core = False  # selective recomputation (Korthikanti et al. 2022, sec. 4.1)

    def _core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v with a causal mask (banded to the last W keys under a sliding window); each K/V
        head serves n_head / n_kv_head query heads."""
        B, H, T, hs = q.size()
        group = H // k.size(1)
        if self.attention == "sdpa":
            gqa = {"enable_gqa": True} if group > 1 else {}
            return _sdpa(q, k, v, self.window, **gqa)  # (B, nh, T, hs)
        # the heads that share a K/V head stacked along the sequence: no copy of K or V to n_head heads
        qg = q.reshape(B, k.size(1), group * T, hs)  # (B, nkv, g T, hs)
        att = (qg @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nkv, g T, T)
        mask = _causal_or_window(T, self.window, q.device)
        att = att.view(B, H, T, T).masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, nh, T, T)
        return (att.view(B, k.size(1), group * T, T) @ v).view(B, H, T, hs)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.size()
        x = _cast_once(x)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, T, nh hs), 2 x (B, T, nkv hs)
        if self.qk_norm is QkNorm.full:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(B, T, self.n_head, self.head_dim)  # (B, T, nh, hs)
        k = k.view(B, T, self.n_kv_head, self.head_dim)  # (B, T, nkv, hs)
        if self.qk_norm is QkNorm.head:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, nh, T, hs), (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.recompute_core and torch.is_grad_enabled():
            y = checkpoint(self._core, q, k, v, use_reentrant=False)  # (B, nh, T, hs)
        else:
            y = self._core(q, k, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, nh hs)
        return self.o_proj(y)  # (B, T, C)


class GatedMLP(nn.Module):
    """SwiGLU or GeGLU, down(act(gate(x)) * up(x)) (Shazeer 2020, arXiv:2002.05202, eq. 6), or GELU's
    down(gelu(up(x))) with Llama-style names."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, f, bias = cfg.n_embd, cfg.n_inner, cfg.has_mlp_bias
        self.kind = cfg.mlp
        if cfg.mlp is not Mlp.gelu:
            self.gate_proj = nn.Linear(d, f, bias=bias)
        self.up_proj = nn.Linear(d, f, bias=bias)
        self.down_proj = nn.Linear(f, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind is Mlp.gelu:
            return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))  # (B, T, C)
        x = _cast_once(x)
        gate = self.gate_proj(x)  # (B, T, f)
        # Swish_1 = SiLU (Shazeer 2020, eq. 5); GeGLU's GELU with the tanh approximation, as Gemma's gelu_pytorch_tanh
        act = F.silu(gate) if self.kind is Mlp.swiglu else F.gelu(gate, approximate="tanh")
        return self.down_proj(act * self.up_proj(x))  # (B, T, C)


class DecoderBlock(nn.Module):
    """Pre-norm block; ``parallel_block``: attention and MLP read the same input (GPT-J; Black et al. 2022,
    arXiv:2204.06745, sec. 2.1) and add to the residual together."""

    def __init__(self, cfg: ModelConfig, attention: str = "sdpa"):
        super().__init__()
        self.parallel = cfg.parallel_block
        self.input_layernorm = Norm(cfg.norm, cfg.n_embd, cfg.bias, cfg.norm_eps)
        self.self_attn = Attention(cfg, attention)
        self.post_attention_layernorm = Norm(cfg.norm, cfg.n_embd, cfg.bias, cfg.norm_eps)
        self.mlp = GatedMLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None, sin: torch.Tensor | None = None) -> torch.Tensor:
        if self.parallel:
            return x + self.self_attn(self.input_layernorm(x), cos, sin) + self.mlp(self.post_attention_layernorm(x))
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


def is_gpt2_layout(cfg: ModelConfig) -> bool:
    """``cfg`` is the block `GPT` builds (``ModelConfig.is_gpt2_layout``, shared with the memory engine)."""
    return cfg.is_gpt2_layout


class Decoder(nn.Module):
    """Any dense block `ModelConfig` describes besides GPT-2's: Llama-style (RMSNorm, RoPE, SwiGLU, GQA, untied head,
    no biases; Touvron et al. 2023, sec. 2.2) and what lies between (GeGLU, QKV-only bias, q/k norm, parallel
    blocks, plain LayerNorm). Parameter names are Hugging Face Llama's (``flopscalc.memory.param_shapes``), so a
    ``LlamaForCausalLM`` state dict loads with the ``model.`` prefix removed. ``attention`` and ``recompute`` as `GPT`.
    """

    def __init__(self, cfg: ModelConfig, attention: str = "sdpa", recompute: str = "none"):
        super().__init__()
        if recompute not in RECOMPUTE_MODES:
            raise ValueError(f"recompute must be one of {RECOMPUTE_MODES}, got {recompute!r}")
        why = model_unsupported(cfg)  # one line, also given before torch by TrainConfig
        if why:
            raise UsageError(why)
        self.cfg, self.recompute = cfg, recompute
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_embedding else None
        self.layers = nn.ModuleList(DecoderBlock(cfg, attention) for _ in range(cfg.n_layer))
        self.norm = Norm(cfg.norm, cfg.n_embd, cfg.bias, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        for block in self.layers:
            block.self_attn.recompute_core = recompute == "selective"
        _init_gpt2(self, cfg.n_layer, ("o_proj.weight", "down_proj.weight"))

    @property
    def h(self) -> nn.ModuleList:
        """The blocks, under GPT's name (FSDP wraps and ``--compile`` compiles each one)."""
        return self.layers

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        if self.cfg.seq_limited_by_context and T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.cfg.block_size}")
        x = self.embed_tokens(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        cos = sin = None
        if self.cfg.pos is Position.rope:  # one table for all layers, in the dtype the projections produce
            dtype = _autocast_dtype(idx.device.type) or self.lm_head.weight.dtype
            cos, sin = rope_tables(T, self.cfg.head_dim, self.cfg.rope_theta, idx.device, dtype)  # 2 x (T, hs)
        for block in self.layers:
            if self.recompute == "full" and torch.is_grad_enabled():
                x = checkpoint(block, x, cos, sin, use_reentrant=False)  # (B, T, C)
            else:
                x = block(x, cos, sin)  # (B, T, C)
        logits = self.lm_head(self.norm(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def build_model(cfg: ModelConfig, attention: str = "sdpa", recompute: str = "none") -> nn.Module:
    """The reference module for ``cfg``: `GPT` for GPT-2's block, `Decoder` for any other dense block."""
    cls = GPT if is_gpt2_layout(cfg) else Decoder
    return cls(cfg, attention=attention, recompute=recompute)
