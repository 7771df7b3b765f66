"""Three of `ModelConfig`'s validation errors, in the engine's words (field names) and in the command line's: option
names (``--n-head``) instead of field names (``n_head``), and only values the user gave. `ModelConfig.__post_init__`
raises `HeadCountError` / `KvHeadCountError` (grouped-query heads) / `ExpertCountError`; `resolve_model` (where the
command line's model options reach the engine) rewords them with `head_count_words` / `kv_head_words` /
`expert_words`. Both wordings of a head count use one rule (`head_count_fixes`, `nearest_divisors`).
"""

from __future__ import annotations

import math

from ..errors import UsageError

# Candidate divisors searched for the head-count suggestion (`head_count_fixes`): a bound on an error path's work.
HEAD_FIX_SEARCH = 10**6


def head_count_fixes(n_embd: int, n_head: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The nearest fixes when ``n_head`` does not divide ``n_embd`` (every head takes an equal share of the width):
    the divisors of ``n_embd`` nearest ``n_head`` (the one below and the one above, where they exist), and the
    multiples of ``n_head`` nearest ``n_embd`` (positive ones). The one rule both wordings of the error use.
    Divisors come in pairs (d, n_embd / d) with d up to the square root, searched up to `HEAD_FIX_SEARCH`: complete
    for widths up to its square (10**12), and an absurd width still answers at once."""
    heads = nearest_divisors(n_embd, n_head)
    below = n_embd // n_head * n_head
    return heads, tuple(w for w in (below, below + n_head) if w > 0)


def nearest_divisors(n: int, near: int) -> tuple[int, ...]:
    """The divisors of ``n`` nearest ``near``: the largest below it and the smallest above it, where they exist.
    Divisors come in pairs (d, n / d) with d up to the square root, searched up to `HEAD_FIX_SEARCH`."""
    divisors = set()
    for d in range(1, min(math.isqrt(n), HEAD_FIX_SEARCH) + 1):
        if n % d == 0:
            divisors.update((d, n // d))
    return tuple(d for d in (max((d for d in divisors if d < near), default=None),
                             min((d for d in divisors if d > near), default=None)) if d is not None)


class HeadCountError(UsageError):
    """A width that the head count does not divide (no head width given); the fields let a face word it in its own
    option names (`flopscalc.model.shaping.resolve_model`)."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        self.n_embd, self.n_head = n_embd, n_head
        heads, widths = head_count_fixes(n_embd, n_head)
        super().__init__(f"n_embd ({n_embd}) must be divisible by n_head ({n_head}); try n_head "
                         f"{' or '.join(map(str, heads))}, n_embd {' or '.join(map(str, widths))}, or give the head "
                         "width (head_size)")


class KvHeadCountError(UsageError):
    """A key/value head count that does not divide the query heads (grouped-query attention shares each key/value
    head among an equal group of query heads; Ainslie et al. 2023, arXiv:2305.13245, sec. 2.2); the fields let
    `resolve_model` word it in the options given (`kv_head_words`)."""

    def __init__(self, n_head: int, n_kv_head: int) -> None:
        self.n_head, self.n_kv_head = n_head, n_kv_head
        if n_kv_head < 1:
            super().__init__(f"n_kv_head must be a positive integer that divides n_head ({n_head}), got "
                             f"{n_kv_head}; try n_kv_head {_kv_extremes(n_head)}")
            return
        super().__init__(f"n_head ({n_head}) must be a multiple of n_kv_head ({n_kv_head}): grouped-query "
                         "attention shares each key/value head among a whole group of heads; try n_kv_head "
                         f"{' or '.join(map(str, nearest_divisors(n_head, n_kv_head)))}")


def _kv_extremes(n_head: int) -> str:
    """The two ends of the key/value head counts: 1 (multi-query, Shazeer 2019, arXiv:1911.02150) and ``n_head``
    (multi-head); grouped-query attention takes a divisor between (Ainslie et al. 2023, sec. 2.2)."""
    return "1 (multi-query)" if n_head == 1 else f"1 (multi-query) or {n_head} (multi-head)"


def kv_head_words(e: KvHeadCountError, n_head_given: bool) -> UsageError:
    """``e`` in option names: the query heads as --n-head where the user gave it, and the divisors of the head count
    nearest the key/value heads given (`nearest_divisors`) offered as --n-kv-head."""
    if e.n_kv_head < 1:
        heads = f"--n-head {e.n_head}" if n_head_given else f"the model's {e.n_head} heads"
        return UsageError(f"--n-kv-head {e.n_kv_head} is not a number of key/value heads: give a positive number of "
                          f"key/value heads that divides {heads}, e.g. --n-kv-head {_kv_extremes(e.n_head)}")
    count = f"--n-head {e.n_head} is" if n_head_given else f"the model's {e.n_head} heads are"
    return UsageError(f"{count} not a multiple of {e.n_kv_head} key/value heads (grouped-query attention shares "
                      f"each key/value head among a whole group of query heads); try --n-kv-head "
                      f"{' or '.join(map(str, nearest_divisors(e.n_head, e.n_kv_head)))}")


class ExpertCountError(UsageError):
    """top_k out of 1..n_expert, or MoE settings on a dense model; the fields let a face word it in its own option
    names. ``n_expert`` 0: the model is dense and ``given`` names the MoE fields set."""

    def __init__(self, message: str, n_expert: int, top_k: int, given: tuple[str, ...] = ()) -> None:
        self.n_expert, self.top_k, self.given = n_expert, top_k, given
        super().__init__(message)


# The ways of naming a model, as the command-line options that give them (`resolve_model`'s ``ways``).
NAMING_OPTIONS = {"model": "--model (a preset)", "config": "--config (a config.json)", "params": "--params (e.g. 350M)",
                  "shape": "--n-layer, --n-head and --n-embd together"}
# Example values in the suggestions (examples, not defaults): Mixtral 8x7B routes each token to 2 of 8 experts
# (Jiang et al. 2024, arXiv:2401.04088, sec. 2.1), as GShard's top-2 gating does (Lepikhin et al. 2020, sec. 2.2).
EXAMPLE_N_EXPERT = 8
EXAMPLE_TOP_K = 2
# ModelConfig's MoE fields that have a command-line option (the others come only from a config.json).
MOE_OPTIONS = {"top_k": "--top-k", "n_shared_expert": "--shared-experts"}


def naming_options(ways=tuple(NAMING_OPTIONS)) -> str:
    """'--model (a preset), --config (a config.json), or ...': the ways a command has of naming a model."""
    said = [NAMING_OPTIONS[w] for w in ways]
    return " or ".join(said) if len(said) < 3 else f"{', '.join(said[:-1])}, or {said[-1]}"


def head_count_words(e: HeadCountError, n_head_given: bool, n_embd_given: bool) -> UsageError:
    """``e`` with the head count and width named as the options the user gave (--n-head, --n-embd), and the nearest
    fixes (`head_count_fixes`) offered as those options; a value the user did not give is named as the model's."""
    heads, widths = head_count_fixes(e.n_embd, e.n_head)
    width = f"--n-embd {e.n_embd}" if n_embd_given else f"the model's width ({e.n_embd})"
    count = f"--n-head {e.n_head}" if n_head_given else f"its {e.n_head} heads"
    fixes = []
    if n_head_given and heads:
        fixes.append(f"--n-head {' or '.join(map(str, heads))}")
    if n_embd_given and widths:
        fixes.append(f"--n-embd {' or '.join(map(str, widths))}")
    return UsageError(f"{width} is not divisible by {count} (every head takes an equal share of the width); try "
                      f"{', or '.join(fixes)}")


def expert_words(e: ExpertCountError, arch: dict, model_name: str | None) -> UsageError:
    """``e`` in the words of --experts, --top-k and --shared-experts (``arch``: the architecture options given, as
    `resolve_model` takes them), with an example that works."""
    top_k = arch.get("top_k")
    if arch.get("experts") is None and top_k is None and arch.get("shared_experts") is None:
        return e  # the user set none of them: the model's own values (a config.json) are at fault, in its words
    if e.n_expert == 0:  # MoE settings on a dense model
        said = [f"{MOE_OPTIONS[f]} {arch[k]}" for f, k in (("top_k", "top_k"), ("n_shared_expert", "shared_experts"))
                if f in e.given and arch.get(k) is not None]
        if not said:
            return e
        dense = "--experts 0 makes the model dense" if arch.get("experts") == 0 else "the model is dense"
        return UsageError(f"{' and '.join(said)} describe{'s' if len(said) == 1 else ''} a mixture of experts, but "
                          f"{dense}: add --experts N (e.g. --experts {EXAMPLE_N_EXPERT}) or drop "
                          f"{'it' if len(said) == 1 else 'them'}")
    experts = (f"--experts {e.n_expert}" if arch.get("experts") is not None
               else f"{model_name or 'the model'}'s {e.n_expert} experts")
    example = min(EXAMPLE_TOP_K, e.n_expert)
    if top_k is None:
        return UsageError(f"{experts} needs --top-k (experts per token, 1-{e.n_expert}), e.g. --top-k {example}")
    return UsageError(f"--top-k {top_k} is not between 1 and {e.n_expert} ({experts}); give the experts per token, "
                      f"e.g. --top-k {example}")
