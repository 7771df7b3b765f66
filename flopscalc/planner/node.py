"""The planner inside one node (2 to `perf.fabric.GPUS_PER_NODE` GPUs): the layouts of those GPUs weighed beside
the data-parallel setup search, where they may pay or where no setup fits (`speed.layouts_inside_node`).

Inside one node ZeRO-3 already shards the weights, gradients and optimizer state over every GPU, as tensor
parallelism would, and TP adds only the activation split, so for a dense model at a short sequence the plan keeps
the data-parallel search alone (its setups have optimizer offload and 8-bit AdamW, which the layout engine does not
model, and `flopscalc train` runs them). Two kinds of model are not covered by that argument (r10 #3):
- an MoE, whose experts can be split over the GPUs instead of all-gathered (expert parallelism): Qwen1.5-MoE-A2.7B
  on 8 H100s at sequence 4,096 ran 148.7k tokens/s on the best data-parallel setup, 191.1k on EP4;
- a sequence from `layout.spec.CP_MIN_SEQ_LEN` tokens, whose activations context parallelism splits and no data
  parallelism does: Qwen2.5-7B at its 131,072-token context fits no data-parallel setup of 8 H100s (the lightest
  needs 231.8 GiB per GPU) and TP1 PP1 DP4 CP2 in 70.2 GiB.
For those models, and for any model no setup fits, the plan also finds the fastest layout of the node
(`planner.layout.choose_layout`, its batch grown as beyond a node) and keeps the faster, in useful tokens per second
(`faster_in_node`). docs/planner.md, "Several nodes: the layout search".
"""

from __future__ import annotations

from ..model import ModelConfig
from .options import GROW_BATCH_KINDS, PlanOption
from .search import _Context, _growth_loss, _option
from .setups import TIE_REL


def layouts_may_pay(cfg: ModelConfig, seq_len: int) -> bool:
    """Whether a layout of one node's GPUs may beat their data-parallel setups, so the plan weighs both: an MoE
    (expert parallelism), or a sequence context parallelism splits (`layout.spec.CP_MIN_SEQ_LEN`, the shortest the
    layout search gives CP; see the module docstring)."""
    from ..layout.spec import CP_MIN_SEQ_LEN  # light: not the search

    return cfg.is_moe or seq_len >= CP_MIN_SEQ_LEN


def useful_tokens_per_s(o: PlanOption) -> float:
    """Tokens per second as worth at GPT-3's batch (`BatchGrowth.token_value`, Kaplan et al. 2020 eq. 5.5): what
    `growth.best_doubling` maximises, so a grown and an ungrown option compare on one scale."""
    return o.speed.tokens_per_s * (1.0 if o.batch is None else o.batch.token_value)


def faster_in_node(setup: PlanOption, layout: PlanOption) -> PlanOption:
    """The faster of a data-parallel option and a layout option of the same model, in useful tokens per second; a
    tie (within `setups.TIE_REL`, far below the step model's error) keeps the data-parallel setup, which
    'flopscalc train' runs."""
    return layout if useful_tokens_per_s(layout) > useful_tokens_per_s(setup) * (1 + TIE_REL) else setup


def _node_cluster(ctx: _Context):
    from ..layout import cluster_for

    return cluster_for(ctx.gpu, ctx.budget.n_gpus)  # one node: no network between nodes to price


def node_layout_option(cfg: ModelConfig, n_params: int, ctx: _Context) -> PlanOption | None:
    """The option of ``cfg``'s fastest layout on the plan's GPUs (`planner.layout.choose_layout`, timed by the layout
    engine), its batch grown within the critical batch as beyond a node (`planner.layout.grow_layout_batch`, layouts
    only: the data-parallel search grows its own); None when no layout fits or the fastest is pure data parallelism
    (`splits_the_model`)."""
    from .layout import choose_layout, grow_layout_batch

    b, cluster = ctx.budget, _node_cluster(ctx)
    found = choose_layout(cfg, cluster, ctx.seq_len, b.precision, ctx.memory_bytes)
    if found is None:
        return None
    chosen, speed = found
    if not splits_the_model(chosen.layout):  # the layout engine's own ranking: TP, PP, CP and EP do not pay here
        return None
    growth = None
    if ctx.kind in GROW_BATCH_KINDS:
        grown = grow_layout_batch(cfg, cluster, ctx.seq_len, b.precision, ctx.memory_bytes, chosen, speed,
                                  _growth_loss(cfg, speed, ctx), layouts_only=True)
        if grown is not None and splits_the_model(grown[0].layout):
            chosen, speed, growth = grown
    return _option(cfg, n_params, ctx, chosen, speed, growth)


def splits_the_model(layout) -> bool:
    """Whether a layout (`layout.spec.Layout`) uses tensor, pipeline, context or expert parallelism: only such a
    layout is taken inside a node. A pure data-parallel layout (TP = PP = CP = EP = 1) is the run the data-parallel
    search prices as `flopscalc train` runs it, eager PyTorch, while the layout engine prices it as Megatron-LM's
    kernels: comparing the two would turn one run into another by its price alone (review r15 #6: Llama-3.1-8B on 8
    H100s at 8,192 tokens, ZeRO-1, is 73.9k tokens/s eager and 79.4k as Megatron-LM 'TP1 PP1 DP8')."""
    return max(layout.tp, layout.pp, layout.cp, layout.ep) > 1


def node_layout_fits(cfg: ModelConfig, ctx: _Context) -> bool:
    """Whether a layout of ``cfg`` on the plan's GPUs fits (`planner.layout.choose_layout`): the no-fit message's
    check where an option kept the layouts out (`speed.layouts_kept_off_by`)."""
    from .layout import choose_layout

    return choose_layout(cfg, _node_cluster(ctx), ctx.seq_len, ctx.budget.precision, ctx.memory_bytes) is not None
