"""The training sequence of a fixed model when none is given: one rule for every training command.

`flops`, `memory`, `step`, `plan --model/--config`, `hyperparams`, `train`, `bench` and `calibrate` train a model
at ``--seq`` tokens per sequence, or else at `default_train_seq`: the length the model was pretrained at where its
source states one (a preset's ``train_seq``, `presets.PRETRAIN_SEQ`), else its context ``block_size`` (a config.json
states only the context, ``max_position_embeddings``). Llama 3.1's context is 131,072 tokens, but it was pretrained
at 8,192 (Dubey et al. 2024, sec. 3.4.1) before a long-context phase: a plan of pretraining it runs at 8,192.
`infer` is about the context and never reads this. A plan that shapes its own models keeps
`planner.request.DEFAULT_SEQ_LEN`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig

__all__ = ["SeqSource", "default_train_seq", "past_context", "past_context_warning", "seq_source"]

# What `SeqSource.kind` says: --seq, the model's pretraining length, its context, or the planner's default for the
# models it shapes itself (`planner.request.DEFAULT_SEQ_LEN`).
GIVEN, PRETRAINING, CONTEXT, PLANNER = "given", "pretraining", "context", "planner default"

# The sequence a no-fit message suggests for a model at its context, at most (`plan`'s and `memory`'s): our judgement,
# the pretraining length of Llama 3 and Mistral 7B (`presets.PRETRAIN_SEQ`), the longest of the dense presets.
HINT_SEQ_MAX = 8192


def default_train_seq(cfg: ModelConfig) -> int:
    """Tokens per training sequence of ``cfg`` when no ``--seq`` is given: its pretraining length
    (``cfg.train_seq``) where a source states one shorter than the context, else the context ``cfg.block_size``."""
    return cfg.train_seq if cfg.train_seq is not None else cfg.block_size


@dataclass(frozen=True)
class SeqSource:
    """Where a training sequence length came from.

    kind : str
        ``given`` (``--seq``), ``pretraining`` (the model's stated pretraining length), ``context`` (its context,
        no pretraining length being known) or ``planner default`` (a plan shaping its own models).
    citation : str
        The source of a pretraining length (paper and section); empty otherwise.
    """

    seq_len: int
    kind: str
    citation: str = ""
    model_name: str = ""
    context: int = 0

    @property
    def label(self) -> str:
        """One string for ``--json``'s ``seq_len_source``: ``--seq``, ``pretraining (<source>)``, ``context`` or
        ``planner default (<source>)``."""
        if self.kind == GIVEN:
            return "--seq"
        return f"{self.kind} ({self.citation})" if self.citation else self.kind

    @property
    def note(self) -> str:
        """What a report prints after the sequence, once: empty for a given ``--seq`` and for the planner's default
        (the plan's setup line prints the length; ``--json``'s ``seq_len_source`` names where it came from)."""
        if self.kind in (GIVEN, PLANNER):
            return ""
        if self.kind == PRETRAINING:
            context = f"; context {self.context}" if self.context != self.seq_len else ""
            return f" ({self.model_name}'s pretraining length, {self.citation}{context}; --seq to change)"
        return " (the model's context: a config.json or a shape states no pretraining length; --seq to change)"


def seq_source(cfg: ModelConfig, seq_len: int | None) -> SeqSource:
    """Where the training sequence of ``cfg`` comes from when ``--seq`` is ``seq_len`` (None: not given)."""
    if seq_len is not None:
        return SeqSource(seq_len, GIVEN, context=cfg.block_size)
    from .presets import PRETRAIN_SEQ_SOURCES

    seq = default_train_seq(cfg)
    stated = PRETRAIN_SEQ_SOURCES.get(cfg)  # the preset itself, not a model named like one
    if stated is not None:  # a preset's default is its stated length (`presets.PRESETS`: train_seq from PRETRAIN_SEQ)
        return SeqSource(seq, PRETRAINING, stated[2], stated[0], cfg.block_size)
    if cfg.train_seq is not None:  # a config.json's rope_scaling (`hf_config`), a changed preset's, or a user's
        return SeqSource(seq, PRETRAINING, "as its config states (train_seq: a config.json's "
                         "original_max_position_embeddings, the context before RoPE scaling, or the preset's it was "
                         "changed from)", cfg.name, cfg.block_size)
    return SeqSource(seq, CONTEXT, context=cfg.block_size)


def past_context(cfg: ModelConfig, seq_len: int) -> bool:
    """Whether ``seq_len`` runs past the context ``cfg`` was trained at, where the model takes it (RoPE, ALiBi or no
    positions; a learned position table refuses it instead, `ModelConfig.seq_limited_by_context`)."""
    return seq_len > cfg.block_size and not cfg.seq_limited_by_context


def past_context_warning(seq_tokens: int, trained_context: int, time_priced: bool = True,
                         priced: str | None = None) -> str:
    """The warning for a sequence longer than the context a (RoPE, ALiBi, ...) model was trained at, one line for
    every command that prices one: ``priced`` says what the command still gives (default: "time and memory are
    priced", or "memory is priced" where ``time_priced`` is False: a setup that does not fit, and `memory`; `flops`:
    "FLOPs are counted"; `plan`: time, memory and the law's loss)."""
    if priced is None:
        priced = ("time and memory are" if time_priced else "memory is") + " priced"
    return (f"{seq_tokens:,} tokens per sequence is past the trained context ({trained_context:,}): {priced}, but "
            "the model was not trained to read that far, and its quality there is not predicted")
