"""Upper bounds on the command line's whole-number options: the sanity bounds and `AtMost`, the click type that
refuses a value past one in one line."""

from __future__ import annotations

# ---- upper bounds on whole-number options: sanity bounds, not physics, far beyond any model or run made, that keep
# every product the engines form (bytes, FLOPs, steps) finite and printable. A value past one is refused in one line
# (`AtMost`); each names what it is measured against.
# Sequences per GPU per forward pass: ~500x the whole global batch of Llama 3 405B, 2,048 sequences of 8,192 tokens
# (16M tokens; Llama 3 Herd of Models, Dubey et al. 2024, sec. 3.4.1).
MAX_MICRO_BATCH = 1_000_000
# Micro-batches accumulated per step: the same global batch taken one sequence at a time is 2,048 micro-batches.
MAX_GRAD_ACCUM = 1_000_000
# Layers: 100x DeepNet's 1,000 (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers"), the deepest
# published transformer.
MAX_N_LAYER = 100_000
# Attention heads (query or key/value): ~800x Llama 3 405B's 128 (Dubey et al. 2024, Table 3).
MAX_N_HEAD = 100_000
# Width and MLP width: ~40x the 25,600 width of Megatron-LM's 1T model (Narayanan et al. 2021, Table 1); d_ff
# (4x that, 102,400) is within it too.
MAX_N_EMBD = 1_000_000
# Vocabulary: ~400x the 256k-token vocabulary of Gemma (Gemma Team 2024, sec. 2), the largest of a released model.
MAX_VOCAB = 100_000_000
# Tokens per sequence (--seq, --context): 10x the 10M-token context of Llama 4 Scout (Meta AI, "The Llama 4 herd",
# 2025-04-05), the longest of a released model (the same source as `perf.inference.formats.MAX_GEN_TOKENS`).
MAX_SEQ_TOKENS = 100_000_000
# Experts per MLP: ~10x the 1,048,576 of PEER (He 2024, "Mixture of A Million Experts").
MAX_N_EXPERT = 10_000_000
# Random seed: numpy's global generator takes 0 to 2**32 - 1 ("Seed must be between 0 and 2**32 - 1", numpy
# `np.random.seed`, a 32-bit unsigned integer); torch.manual_seed takes a wider 64-bit range, so numpy's binds.
MAX_SEED = 2**32 - 1
# Steps between validation passes or checkpoints: ~1,000x the ~1M optimizer steps of Llama 3 405B's pretraining
# (15.6T tokens at up to 16M tokens per step; Dubey et al. 2024, sec. 3.4.1).
MAX_STEP_INTERVAL = 1_000_000_000
# Micro-batches per validation pass: as many as one step may accumulate (`MAX_GRAD_ACCUM`).
MAX_EVAL_BATCHES = MAX_GRAD_ACCUM
# Bootstrap resamples of 'scaling fit': 10x the ~1,000 a 95% percentile interval asks for (Davison & Hinkley 1997,
# R = 999; Efron & Tibshirani 1993, about 1,000: `scaling.resampling.MIN_PERCENTILE_RESAMPLES`); 10x more draws cut the
# Monte Carlo error of a limit only ~3.2x (1/sqrt(R)). An approach-3 resample takes ~0.03-0.07 s on 2 cores (50 in
# 1.6-3.3 s, reviews r11/r13), so this bound is ~6-12 minutes, where 1e8 resamples would have been ~2-3 months.
MAX_BOOTSTRAP = 10_000


def _click_types():
    """The parser's types module: typer's vendored click (typer 0.26 on), else click (as `common.parser_exception`)."""
    try:
        from typer._click import types
    except ImportError:  # typer before it vendored click
        from click import types
    return types


class AtMost(_click_types().IntParamType):
    """A whole-number option with an upper bound: past ``at_most`` a one-line UsageError that says the bound, what it
    is measured against and what to do (``--micro-batch 99999999999999999999999`` printed a peak of
    84088640213012692598784 GiB and exited 0). Lower bounds stay with the engines, which say them per option, except
    ``at_least`` for a model's shape, whose engine check speaks in field names ("model n_layer must be a positive
    integer") that no option of the command line has."""

    def __init__(self, at_most: int, unit: str, reason: str, at_least: int | None = None) -> None:
        self.at_most, self.unit, self.reason, self.at_least = at_most, unit, reason, at_least

    def convert(self, value, param, ctx):
        n = super().convert(value, param, ctx)
        return self.check(n, value, param.opts[0] if param is not None and param.opts else "the value")

    def check(self, n: int, value: object, option: str) -> int:
        """``n`` (read from ``value`` as the user wrote it) if it is within the bounds; the one-line UsageError
        otherwise. Options read by their own parser (``infer --context 8k``) call it with the number they read."""
        if n > self.at_most:
            from ..errors import UsageError

            raise UsageError(f"{option} {value} is too large: at most {self.at_most:,} {self.unit} ({self.reason}); "
                             f"give a smaller {option}")
        if self.at_least is not None and n < self.at_least:
            from ..errors import UsageError

            raise UsageError(f"{option} {value} is too small: give {option} from {self.at_least} to "
                             f"{self.at_most:,} {self.unit}")
        return n


MICRO_BATCH_TYPE = AtMost(MAX_MICRO_BATCH, "sequences", "about 500x Llama 3 405B's whole global batch")
GRAD_ACCUM_TYPE = AtMost(MAX_GRAD_ACCUM, "micro-batches", "about 500x Llama 3 405B's global batch, one sequence each")
N_LAYER_TYPE = AtMost(MAX_N_LAYER, "layers", "100x the deepest published transformer, DeepNet's 1,000", at_least=1)
N_HEAD_TYPE = AtMost(MAX_N_HEAD, "heads", "about 800x Llama 3 405B's 128", at_least=1)
# --n-kv-head's lower bound is the model's (`option_words.kv_head_words`: which counts divide the heads)
N_KV_HEAD_TYPE = AtMost(MAX_N_HEAD, "heads", "about 800x Llama 3 405B's 128")
N_EMBD_TYPE = AtMost(MAX_N_EMBD, "units", "about 40x the widest published model, Megatron-LM 1T's 25,600", at_least=1)
VOCAB_TYPE = AtMost(MAX_VOCAB, "tokens", "about 400x Gemma's 256k", at_least=1)
SEQ_TYPE = AtMost(MAX_SEQ_TOKENS, "tokens", "10x the longest released context, Llama 4 Scout's 10M")
# a model's context length: the same bound as a sequence, and at least one position
BLOCK_SIZE_TYPE = AtMost(MAX_SEQ_TOKENS, "tokens", "10x the longest released context, Llama 4 Scout's 10M", at_least=1)
SEED_TYPE = AtMost(MAX_SEED, "(2**32 - 1)", "numpy's seed range, a 32-bit unsigned integer", at_least=0)
STEP_INTERVAL_TYPE = AtMost(MAX_STEP_INTERVAL, "steps", "about 1,000x Llama 3 405B's ~1M optimizer steps")
EVAL_BATCHES_TYPE = AtMost(MAX_EVAL_BATCHES, "micro-batches", "as many as --grad-accum allows one step")
BOOTSTRAP_TYPE = AtMost(MAX_BOOTSTRAP, "resamples", "10x the ~1,000 a 95% percentile interval needs; minutes per 1,000 "
                        "approach-3 resamples")
N_EXPERT_TYPE = AtMost(MAX_N_EXPERT, "experts", "about 10x PEER's million experts")
