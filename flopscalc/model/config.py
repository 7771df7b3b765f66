"""`ModelConfig`: one description of a decoder-only transformer, from GPT-2 to Llama-style and mixture-of-experts.

Field names follow GPT-2 / nanoGPT (``n_layer``, ``n_head``, ``n_embd``, ``block_size``, ``vocab_size``); the
family options default to GPT-2's, so ``ModelConfig(n_layer=12, n_head=12, n_embd=768)`` is GPT-2 small and
every GPT-2 count is what it was before the options existed. The same description builds the reference
PyTorch module (``flopscalc.train.model``) and, in the tests, the Hugging Face ``transformers`` module
(``flopscalc.hf_config``), so counted and predicted numbers are about one model.

What each option means, with its source (formulas per family in ``docs/families/``):

- ``n_kv_head``: key/value heads. Equal to ``n_head`` is multi-head attention (Vaswani et al. 2017), 1 is
  multi-query (Shazeer 2019, arXiv:1911.02150), in between grouped-query (Ainslie et al. 2023, arXiv:2305.13245).
- ``head_size``: per-head width when it is not ``n_embd / n_head`` (Gemma 7B: 16 heads of 256 on a width of
  3072; Gemma Team 2024, arXiv:2403.08295, Table 1).
- ``mlp``: ``gelu`` is the 2-matrix MLP of GPT-2; ``swiglu`` / ``geglu`` the 3-matrix gated MLP
  (Shazeer 2020, arXiv:2002.05202, eq. 5-6) of Llama / Gemma.
- ``ffn_dim``: the MLP's hidden width d_ff when it is not ``mlp_ratio x n_embd`` (Llama 2 7B: 11008).
- ``norm``: ``layernorm`` (Ba et al. 2016), ``rmsnorm`` (Zhang & Sennrich 2019, arXiv:1910.07467: a gain,
  no bias, no mean), ``layernorm_plain`` (no gain, no bias: OLMo 1, Groeneveld et al. 2024, arXiv:2402.00838,
  sec. 2.1 "non-parametric layer norm").
- ``position``: ``learned`` (a table of ``block_size`` rows, GPT-2), ``rope`` (Su et al. 2021,
  arXiv:2104.09864), ``alibi`` (Press et al. 2022, arXiv:2108.12409) or ``none``. Only a learned table limits the
  sequence to ``block_size``; with the others ``block_size`` is the trained context and longer sequences are
  accepted.
- ``bias`` switches every linear's bias and LayerNorm's bias; ``qkv_bias`` / ``out_bias`` / ``mlp_bias`` override
  it per linear (Qwen2: biases on Q, K, V only; Qwen2 report, arXiv:2407.10671, sec. 2.2.1).
- ``qk_norm``: RMSNorm on queries and keys, over all heads (``full``: OLMo 2, arXiv:2501.00656, sec. 3.2) or per
  head (``head``: Qwen3, arXiv:2505.09388, sec. 2).
- ``parallel_block``: attention and MLP read the same input and add to the residual together (GPT-J; GPT-NeoX,
  Black et al. 2022, arXiv:2204.06745, sec. 2.1); the parameter count is unchanged, activations differ.
- ``rope_theta``: RoPE's base b in theta_i = b^(-2(i-1)/d) (Su et al. 2021, eq. 15; 10000 there and in Llama 2,
  500000 in Llama 3, Llama Team 2024, arXiv:2407.21783, Table 3); only with ``rope``.
- ``norm_eps``: the epsilon every normalisation adds to the variance (or mean square) before the square root
  (Ba et al. 2016, eq. 4's denominator; Zhang & Sennrich 2019, eq. 4): 1e-5 in GPT-2 and Llama 2/3, 1e-6 in Qwen2.
  Neither field moves a parameter count, a FLOP or a byte: only the numbers a run computes (the reference trainer
  uses both).
- ``n_expert`` > 0: every MLP is a mixture of experts (Shazeer et al. 2017, arXiv:1701.06538; Mixtral, Jiang
  et al. 2024, arXiv:2401.04088, sec. 2.1): a router ``n_embd -> n_expert``, ``top_k`` experts per token of width
  ``expert_ffn_dim``, and ``n_shared_expert`` always-on experts of width ``shared_expert_ffn_dim``, optionally
  behind a sigmoid gate ``n_embd -> 1`` (Qwen1.5-MoE / Qwen2-MoE, ``shared_expert_gate``).
- ``attn_window``: sliding-window attention, each token attends to at most W previous tokens (itself included) and
  the KV cache is a rolling buffer of W tokens (Mistral 7B, Jiang et al. 2023, arXiv:2310.06825, sec. 2; config.json
  ``sliding_window``: 4096 in Mistral 7B v0.1, 2047 in Phi-3-mini-4k). ``None``: full causal attention. It moves
  the causal attention count, the KV cache and decode's KV reads, never a parameter.
- ``expert_shards`` > 1: the model is one rank's share of a mixture of experts split over that many expert-parallel
  ranks (Lepikhin et al. 2021, GShard, arXiv:2006.16668, sec. 2.2): ``n_expert`` are its local experts, which take
  the ``top_k`` x tokens rows of all the ranks under uniform routing, so ``top_k`` may exceed them (Mixtral's
  top-2 with one expert per GPU). Only the layout engine builds such a model (`layout.stage_cost.per_rank_model`); a whole
  model has 1, and then top_k is at most n_expert.
- ``train_seq``: the sequence length the model was pretrained at, where its source states one shorter than the
  context ``block_size`` (Llama 3.1: 8,192 tokens, then a long-context phase to 131,072; Dubey et al. 2024,
  arXiv:2407.21783, sec. 3.4.1). ``None``: the context is the pretraining length, or no source states one (a
  config.json states only the context). The training commands default to it (`model.sequence.default_train_seq`);
  inference never reads it. It moves no parameter count, FLOP or byte of a given sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum

from ..errors import UsageError
from .option_words import ExpertCountError, HeadCountError, KvHeadCountError

# GPT-2 BPE vocabulary size (Radford et al. 2019, sec. 2.2; 50,257 tokens in the released encoder).
GPT2_VOCAB_SIZE = 50257
# GPT-2 context length (Radford et al. 2019, sec. 2.3: "increase the context size from 512 to 1024").
GPT2_BLOCK_SIZE = 1024
# RoPE base (Su et al. 2021, arXiv:2104.09864, eq. 15: theta_i = 10000^(-2(i-1)/d)); Llama 2 and transformers'
# default_theta use it too.
DEFAULT_ROPE_THETA = 10000.0
# Normalisation epsilon: GPT-2's layer_norm_epsilon (openai/gpt-2 model.py norm(), epsilon=1e-5; HF GPT2Config 1e-5)
# and Llama 2/3's rms_norm_eps (1e-5 in their released config.json).
DEFAULT_NORM_EPS = 1e-5
# Head dimension used by GPT-2 and GPT-3 (Brown et al. 2020, Table 2.1: d_head = 64 up to 1.3B params).
DEFAULT_HEAD_DIM = 64


class Mlp(str, Enum):
    """MLP kind: 2-matrix GELU or 3-matrix gated (Shazeer 2020, eq. 5-6)."""

    gelu = "gelu"
    swiglu = "swiglu"
    geglu = "geglu"

    @property
    def n_matrices(self) -> int:
        """Weight matrices per MLP: up and down, plus the gate for the gated kinds."""
        return 2 if self is Mlp.gelu else 3


class Norm(str, Enum):
    """Normalisation layer kind."""

    layernorm = "layernorm"
    rmsnorm = "rmsnorm"
    layernorm_plain = "layernorm_plain"  # OLMo 1: no gain, no bias


class Position(str, Enum):
    """Position scheme."""

    learned = "learned"
    rope = "rope"
    alibi = "alibi"
    none = "none"


class QkNorm(str, Enum):
    """Normalisation of queries and keys before attention."""

    none = "none"
    full = "full"  # RMSNorm over n_head x head_dim (q) and n_kv_head x head_dim (k): OLMo 2
    head = "head"  # RMSNorm over head_dim, shared by heads: Qwen3


def _positive(name: str, value, *, zero_ok: bool = False) -> None:
    low = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative" if zero_ok else "a positive"
        raise UsageError(f"model {name} must be {kind} integer, got {value!r}")


def _enum(cls, value, name: str):
    try:
        return cls(value)
    except ValueError:
        raise UsageError(f"model {name} must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None



def window_cuts(window: int | None, seq_len: int | None) -> bool:
    """Whether a sliding window of ``window`` tokens bands attention over sequences of ``seq_len``: only when it is
    shorter than the sequence; a window of at least the sequence is plain causal attention (Mistral 7B,
    arXiv:2310.06825, sec. 2). The one rule the FLOP, memory and trainer code share."""
    return window is not None and seq_len is not None and window < seq_len

@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only transformer; the defaults are GPT-2's (see the module docstring).

    Parameters
    ----------
    n_layer, n_head, n_embd : int
        Blocks, query heads, residual width d_model.
    block_size : int
        Context length in tokens (the learned position table's size; the trained context otherwise).
    vocab_size : int
        Rows of the token embedding.
    bias : bool
        Biases in linear layers and LayerNorms (GPT-2: True).
    tie_embeddings : bool
        LM head shares the token-embedding matrix (GPT-2: True).
    pos_embedding : bool
        A learned absolute position table exists (default: True unless ``position`` says otherwise); given
        with ``position``, the two must agree.
    mlp_ratio : float
        MLP hidden width as a multiple of ``n_embd`` (GPT-2: 4); ``ffn_dim`` gives it in units instead.
    name : str
        Label shown in reports.
    n_kv_head, head_size, ffn_dim, mlp, norm, position, qkv_bias, out_bias, mlp_bias, qk_norm, parallel_block,
    n_expert, top_k, n_shared_expert, expert_ffn_dim, shared_expert_ffn_dim, shared_expert_gate, router_bias
        Family options (module docstring); ``None`` means "as GPT-2 / as the general setting".
    rope_theta : float
        RoPE's base (only with ``position='rope'``); moves no count, FLOP or byte.
    norm_eps : float
        Epsilon of every LayerNorm / RMSNorm (and q/k norm); moves no count, FLOP or byte.
    fused_projections : bool
        q, k, v held as one ``qkv_proj`` and, with a gated MLP, gate, up as one ``gate_up_proj`` (Phi-3's modules;
        GPT-NeoX's ``query_key_value``): the same weights, FLOPs and bytes as separate ones; only LoRA differs
        (peft puts one adapter on each fused module).
    attn_window : int, optional
        Sliding attention window W in tokens (``None``: every earlier token); see the module docstring.
    expert_shards : int
        Expert-parallel ranks the experts are split over, of which this model is one (1: the whole model); see
        the module docstring.
    train_seq : int, optional
        Pretraining sequence length in tokens when its source states one shorter than ``block_size`` (``None``: the
        context); one equal to ``block_size`` is stored as ``None``, so equal models compare equal. See the module
        docstring.
    """

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int = GPT2_BLOCK_SIZE
    vocab_size: int = GPT2_VOCAB_SIZE
    bias: bool = True
    tie_embeddings: bool = True
    pos_embedding: bool | None = None
    mlp_ratio: float = 4.0
    name: str = "custom"
    n_kv_head: int | None = None
    head_size: int | None = None
    ffn_dim: int | None = None
    mlp: Mlp = Mlp.gelu
    norm: Norm = Norm.layernorm
    position: Position | None = None
    qkv_bias: bool | None = None
    out_bias: bool | None = None
    mlp_bias: bool | None = None
    qk_norm: QkNorm = QkNorm.none
    parallel_block: bool = False
    n_expert: int = 0
    top_k: int = 0
    n_shared_expert: int = 0
    expert_ffn_dim: int | None = None
    shared_expert_ffn_dim: int | None = None
    shared_expert_gate: bool = False
    router_bias: bool = False
    rope_theta: float = DEFAULT_ROPE_THETA
    norm_eps: float = DEFAULT_NORM_EPS
    fused_projections: bool = False
    attn_window: int | None = None
    expert_shards: int = 1
    train_seq: int | None = None

    def __post_init__(self) -> None:
        for field in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "expert_shards"):
            _positive(field, getattr(self, field))
        kv = self.n_kv_head
        if isinstance(kv, int) and not isinstance(kv, bool) and kv < 1:  # a face words it as its option (option_words)
            raise KvHeadCountError(self.n_head, kv)
        for field in ("n_kv_head", "head_size", "ffn_dim", "expert_ffn_dim", "shared_expert_ffn_dim", "attn_window",
                      "train_seq"):
            if getattr(self, field) is not None:
                _positive(field, getattr(self, field))
        if self.train_seq is not None and self.train_seq > self.block_size:
            raise UsageError(f"model train_seq ({self.train_seq}) is the pretraining sequence length and cannot exceed "
                             f"the context block_size ({self.block_size}); give a shorter train_seq or a longer context")
        if self.train_seq == self.block_size:  # the context is the pretraining length: one spelling, so equal compares
            object.__setattr__(self, "train_seq", None)
        for field in ("n_expert", "top_k", "n_shared_expert"):
            _positive(field, getattr(self, field), zero_ok=True)
        object.__setattr__(self, "mlp", _enum(Mlp, self.mlp, "mlp"))
        object.__setattr__(self, "norm", _enum(Norm, self.norm, "norm"))
        object.__setattr__(self, "qk_norm", _enum(QkNorm, self.qk_norm, "qk_norm"))
        # position and pos_embedding say one thing twice: derive the one not given, refuse a contradiction
        if self.position is None:
            learned = True if self.pos_embedding is None else bool(self.pos_embedding)
            object.__setattr__(self, "position", Position.learned if learned else Position.none)
        else:
            object.__setattr__(self, "position", _enum(Position, self.position, "position"))
        if self.pos_embedding is None:
            object.__setattr__(self, "pos_embedding", self.position is Position.learned)
        elif bool(self.pos_embedding) != (self.position is Position.learned):
            raise UsageError(f"position {self.position.value!r} contradicts pos_embedding={self.pos_embedding}; "
                             "a learned table is position 'learned' (give one of the two)")
        for field in ("rope_theta", "norm_eps"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
                raise UsageError(f"model {field} must be a positive number, got {value!r}")
            object.__setattr__(self, field, float(value))
        if self.position is not Position.rope and self.rope_theta != DEFAULT_ROPE_THETA:
            raise UsageError(f"rope_theta {self.rope_theta:g} is RoPE's base, but the position scheme is "
                             f"{self.position.value!r}; give --pos rope or drop rope_theta")
        if self.head_size is None and self.n_embd % self.n_head:
            raise HeadCountError(self.n_embd, self.n_head)
        if self.n_head % self.kv_heads:
            raise KvHeadCountError(self.n_head, self.kv_heads)
        if not (self.mlp_ratio > 0) or abs(self.mlp_ratio * self.n_embd - round(self.mlp_ratio * self.n_embd)) > 1e-6:
            raise UsageError(f"mlp_ratio x n_embd must be a positive integer, got {self.mlp_ratio} x {self.n_embd}")
        if self.ffn_dim is not None and self.mlp_ratio != 4.0:
            raise UsageError(f"give the MLP width once: ffn_dim={self.ffn_dim} or mlp_ratio={self.mlp_ratio}, not both")
        if self.n_expert == 0:
            moe = {"top_k": self.top_k, "n_shared_expert": self.n_shared_expert,
                   "expert_ffn_dim": self.expert_ffn_dim, "shared_expert_ffn_dim": self.shared_expert_ffn_dim,
                   "shared_expert_gate": self.shared_expert_gate, "router_bias": self.router_bias,
                   "expert_shards": self.expert_shards != 1}
            given = [k for k, v in moe.items() if v not in (0, None, False)]
            if given:
                raise ExpertCountError(f"{', '.join(given)} describe a mixture of experts; give n_expert (--experts) "
                                       "too", 0, self.top_k, tuple(given))
        elif self.expert_shards == 1 and not 1 <= self.top_k <= self.n_expert:
            raise ExpertCountError(f"top_k must be between 1 and n_expert ({self.n_expert}), got {self.top_k}",
                                   self.n_expert, self.top_k)
        elif not 1 <= self.top_k <= self.n_expert * self.expert_shards:  # a rank's share: the model's top_k
            raise UsageError(f"top_k must be between 1 and the {self.n_expert * self.expert_shards} experts of "
                             f"{self.expert_shards} shards, got {self.top_k}")
        if self.n_shared_expert == 0 and (self.shared_expert_ffn_dim is not None or self.shared_expert_gate):
            raise UsageError("shared_expert_ffn_dim and shared_expert_gate need n_shared_expert > 0")

    # ---------------------------------------------------------------- hashing
    # A plan hashes configs thousands of times (lru_cache keys of the engines); the dataclass's hash rebuilds and hashes
    # the tuple of all fields each time. It is kept on the instance after the first call: the same value
    # (hash of the fields' tuple, as dataclass(frozen=True) defines it), outside the fields (not in eq, repr,
    # asdict or replace) and left out of pickles and copies, since str and Enum hashes differ between processes.

    def __hash__(self) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            h = hash(tuple([getattr(self, name) for name in _FIELD_NAMES]))
            object.__setattr__(self, "_hash", h)
            return h

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state

    # ---------------------------------------------------------------- derived shape

    @property
    def head_dim(self) -> int:
        """Per-head width d_head (n_embd / n_head unless ``head_size`` says otherwise)."""
        return self.head_size if self.head_size is not None else self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads (n_head for multi-head attention)."""
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def d_attn(self) -> int:
        """Width of all query heads together, n_head x head_dim."""
        return self.n_head * self.head_dim

    @property
    def d_kv(self) -> int:
        """Width of the keys (and of the values), n_kv_head x head_dim."""
        return self.kv_heads * self.head_dim

    @property
    def n_inner(self) -> int:
        """Hidden width d_ff of the dense MLP (and the default expert width)."""
        return self.ffn_dim if self.ffn_dim is not None else round(self.mlp_ratio * self.n_embd)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def expert_inner(self) -> int:
        """Hidden width of one routed expert."""
        return self.expert_ffn_dim if self.expert_ffn_dim is not None else self.n_inner

    @property
    def shared_expert_inner(self) -> int:
        """Hidden width of one shared expert."""
        return self.shared_expert_ffn_dim if self.shared_expert_ffn_dim is not None else self.expert_inner

    @property
    def pos(self) -> Position:
        """The position scheme (``position``; derived from ``pos_embedding`` when only that was given)."""
        return self.position

    @property
    def seq_limited_by_context(self) -> bool:
        """Only a learned position table stops sequences longer than ``block_size``."""
        return self.pos is Position.learned

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def has_out_bias(self) -> bool:
        return self.bias if self.out_bias is None else self.out_bias

    @property
    def has_mlp_bias(self) -> bool:
        return self.bias if self.mlp_bias is None else self.mlp_bias

    @property
    def norm_params(self) -> int:
        """Parameters of one normalisation layer over n_embd: gain (+ bias for a biased LayerNorm)."""
        if self.norm is Norm.layernorm_plain:
            return 0
        if self.norm is Norm.rmsnorm:
            return self.n_embd  # gain only (Zhang & Sennrich 2019, eq. 4)
        return self.n_embd + (self.n_embd if self.bias else 0)  # gain and bias (Ba et al. 2016)

    @property
    def is_gpt2_block(self) -> bool:
        """The block GPT-2 and the papers' closed forms assume: MHA, head_dim x n_head = n_embd, GELU, dense."""
        return (self.mlp is Mlp.gelu and self.kv_heads == self.n_head and self.d_attn == self.n_embd
                and not self.is_moe)

    @property
    def is_gpt2_layout(self) -> bool:
        """The block the reference trainer builds as GPT-2's module (fused QKV ``c_attn``, ``c_fc``/``c_proj`` names):
        GPT-2's block with LayerNorm, sequential, no q/k norm, learned or no positions and one bias setting.

        One predicate for the three places that must agree: ``flopscalc.train.model.build_model`` (GPT or Decoder),
        ``flopscalc.memory.param_shapes`` (the tensors an optimizer keeps state for) and the activation estimate.
        Anything else (e.g. Pythia's parallel block, RoPE, a QKV-only bias) is built with q, k, v apart."""
        one_bias = all(b in (None, self.bias) for b in (self.qkv_bias, self.out_bias, self.mlp_bias))
        return (self.is_gpt2_block and self.norm is Norm.layernorm and self.qk_norm is QkNorm.none
                and not self.parallel_block and self.pos in (Position.learned, Position.none) and one_bias)

    @property
    def family(self) -> str:
        """A short label of the block: what reports print beside the shape."""
        parts = []
        if self.kv_heads != self.n_head:
            parts.append("MQA" if self.kv_heads == 1 else f"GQA {self.n_head}/{self.kv_heads}")
        if self.mlp is not Mlp.gelu:
            parts.append(self.mlp.value)
        if self.norm is not Norm.layernorm:
            parts.append(self.norm.value)
        if self.pos is not Position.learned:
            parts.append(self.pos.value)
        if self.parallel_block:
            parts.append("parallel")
        if self.is_moe:
            shared = f"+{self.n_shared_expert}s" if self.n_shared_expert else ""
            parts.append(f"MoE {self.n_expert}x top-{self.top_k}{shared}")
        return ", ".join(parts) if parts else "GPT-2 block"

    def with_(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again); changing one of position / pos_embedding moves both, and
        leaving RoPE (without a new ``rope_theta``) drops RoPE's base with it; a context shortened below the
        pretraining length (``train_seq``) shortens that too, since no sequence is longer than the context."""
        if ("block_size" in changes and "train_seq" not in changes and self.train_seq is not None
                and changes["block_size"] < self.train_seq):
            changes["train_seq"] = None  # clamped to the new context, which is then the pretraining length
        if "rope_theta" not in changes and ("position" in changes or "pos_embedding" in changes):
            new = changes.get("position")
            if new is None:
                new = Position.learned if changes["pos_embedding"] in (None, True) else Position.none
            if _enum(Position, new, "position") is not Position.rope:
                changes["rope_theta"] = DEFAULT_ROPE_THETA
        if "position" in changes and "pos_embedding" not in changes:
            changes["pos_embedding"] = None
        elif "pos_embedding" in changes and "position" not in changes:
            changes["position"] = None
        return replace(self, **changes)


_FIELD_NAMES = tuple(f.name for f in fields(ModelConfig))  # the dataclass's hash order (every field compares)
