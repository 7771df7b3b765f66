"""`flopscalc flops`: FLOPs of training a model on N tokens (imported only when `flops` runs; see `cli.COMMANDS`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..flops import Recompute
from .common import (
    BiasOpt,
    ExpertsOpt,
    FfnOpt,
    GradAccumOpt,
    JsonOpt,
    KvHeadOpt,
    MicroBatchOpt,
    MlpOpt,
    ModelConfigOpt,
    NEmbdOpt,
    NHeadOpt,
    NLayerOpt,
    NormOpt,
    ParamsOpt,
    PosOpt,
    PresetOpt,
    RecomputeOpt,
    SeqOpt,
    SharedExpertsOpt,
    TieOpt,
    TopKOpt,
    VocabOpt,
    model_from_options,
)
from .output import emit, with_warnings


def flops(
    tokens: Annotated[str, typer.Option(help="Training tokens, e.g. 300B, 10B, 2.5e10.")],
    model: PresetOpt = None,
    params: ParamsOpt = None,
    n_layer: NLayerOpt = None,
    n_head: NHeadOpt = None,
    n_embd: NEmbdOpt = None,
    config: ModelConfigOpt = None,
    vocab: VocabOpt = None, n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None,
    norm: NormOpt = None, pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
    experts: ExpertsOpt = None, top_k: TopKOpt = None, shared_experts: SharedExpertsOpt = None,
    seq: SeqOpt = None,
    micro_batch: MicroBatchOpt = 1,
    grad_accum: GradAccumOpt = 1,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="Data-parallel GPUs.")] = 1,
    recompute: RecomputeOpt = Recompute.none,
    causal: Annotated[bool, typer.Option(
        "--causal/--dense", help="Count only unmasked query-key pairs (--causal) or the full T x T (--dense).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """FLOPs of training a model on N tokens: per component, per token/step/run, in every convention."""
    from ..errors import UsageError
    from ..flops import summarize
    from ..memory.settings import check_gpu_count_bound
    from ..model.sequence import past_context, past_context_warning
    from ..report.flops import flops_dict, flops_report, whole_tokens
    from ..units import parse_count

    n_tokens = parse_count(tokens, what="--tokens", kind="tokens")
    if not whole_tokens(n_tokens):  # a run trains on whole tokens; 2.5 tokens has no step count to show
        raise UsageError(f"--tokens must be a whole number of tokens, got {tokens} ({n_tokens:,.10g} tokens); "
                         f"e.g. --tokens {max(1, round(n_tokens))}")
    check_gpu_count_bound(n_gpus)  # the bound plan/memory/step hold --n-gpus to (1e20 GPUs printed a run)
    cfg = model_from_options(model, params, n_layer, n_head, n_embd, config, vocab, n_kv_head, ffn, mlp, norm, pos,
                             bias, tie, experts, top_k, shared_experts)
    s = summarize(cfg, round(n_tokens), seq_len=seq, micro_batch=micro_batch,
                  grad_accum=grad_accum, n_gpus=n_gpus, recompute=recompute, causal=causal)
    past = past_context_warning(s.seq_len, cfg.block_size, priced="FLOPs are counted") if past_context(cfg, s.seq_len) else None
    emit(*with_warnings(flops_report(s), flops_dict(s), [past]), as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("flops")(flops)
