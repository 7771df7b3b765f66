"""A parallel layout: how one training step is split over GPUs, and which engine can run it.

Ranks are ordered as Megatron-LM orders them (``megatron/core/parallel_state.py``, default order
"tp-cp-ep-dp-pp"): tensor-parallel ranks are neighbours (inside a node), then context, then data (experts are
sharded over the data x context ranks), pipeline stages outermost.

References
----------
[1] Shoeybi et al. 2019, "Megatron-LM", arXiv:1909.08053, sec. 3 (tensor parallelism: heads and MLP columns).
[2] Korthikanti et al. 2022, arXiv:2205.05198, sec. 4.2.2 (sequence parallelism) and 4.1 (selective recompute).
[3] Narayanan et al. 2021, arXiv:2104.04473, sec. 2.2 (1F1B and the interleaved schedule).
[4] Liu et al. 2023, "Ring Attention with Blockwise Transformers", arXiv:2310.01889 (context parallelism).
[5] Lepikhin et al. 2020, "GShard", arXiv:2006.16668, sec. 2.2 (experts sharded over devices, all-to-all).
[6] Megatron-LM (core 0.12-0.14), ``megatron/core/transformer/transformer_block.py`` ``get_num_layers_to_build``
    (uneven: the first / last stage build their given layers, the middle stages (L - first - last) / (p - 2), which
    must divide; else (L + embedding + loss slots) / p, divisible, less the slot on the end chunks),
    ``transformer_config.py`` ``__post_init__`` (uneven ends > 0, not with the account-for flags; the middle
    remainder divisible by the middle stages) and ``megatron/training/arguments.py`` ``validate_args`` (without
    uneven ends, (L + slots) % p == 0; ``--num-layers-per-virtual-pipeline-stage`` refuses uneven ends: "please use
    --num-virtual-stages-per-pipeline-rank ... when enable uneven pipeline parallelism").
[7] Megatron-LM (core 0.12-0.14), interleaved uneven stages, ``--num-virtual-stages-per-pipeline-rank v`` with
    ``--decoder-first/last-pipeline-num-layers``: ``transformer_config.py`` ``__post_init__`` ("number of layers at
    first stage ... must be divisible by virtual pipeline parallel degree", the same for the last stage and for each
    middle rank's (L - first - last) / (p - 2)) and ``transformer_layer.py`` ``get_transformer_layer_offset`` (each
    of the v chunks of a stage holds its stage's layers / v). Two stages: the middle checks run only where there
    are middle stages (``__post_init__``: "If there are middle PP stages, check ..."), and with the first count
    alone the last stage is the one stage left, taking L - first (``get_transformer_layer_offset``: the stages
    left after the given ends share the rest); with both counts given there is no stage left to share a remainder
    and the offset divides by zero stages, so for PP 2 only ``--decoder-first-pipeline-num-layers`` is given.
[8] torchtitan ``torchtitan/config/job_config.py`` ``Parallelism``: ``pipeline_parallel_schedule`` (default "1F1B";
    "Interleaved1F1B" loops v stages a rank), ``pipeline_parallel_layers_per_stage`` (layers a virtual stage),
    ``pipeline_parallel_first_stage_less_layers`` / ``..._last_stage_less_layers`` (default 1: the embedding and the
    output count as that many layers); ``torchtitan/distributed/pipeline_parallel.py``
    ``generate_llm_fqn_per_model_part`` spreads L + first + last over the stages, equal where they divide, and
    stage s sits on rank s mod p.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import Enum

from ..errors import UsageError
from ..flops import Recompute
from ..model import ModelConfig

# Chunks of the pipeline that may hold no transformer layer: Llama 3 gives the embedding and the output projection +
# loss a chunk each ("the first model chunk on the first stage has only the embedding, and the last model chunk on
# the last stage has only output projection and loss calculation", Dubey et al. 2024 sec. 3.3.2; Megatron-core's
# TransformerConfig account_for_embedding_in_pipeline_split / account_for_loss_in_pipeline_split).
EMBEDDING_AND_LOSS_CHUNKS = 2


def stage_layers(n_layer: int, pp: int, interleave: int) -> int:
    """Layers on the busiest of ``pp`` stages of ``interleave`` chunks each: ceil(L / (p v)) x v."""
    return math.ceil(n_layer / (pp * interleave)) * interleave


def spare_layer_slots(n_layer: int, pp: int, interleave: int) -> int:
    """Layer slots a pipeline leaves empty: p x (layers on the busiest stage) - L (0 without a pipeline)."""
    return pp * stage_layers(n_layer, pp, interleave) - n_layer if pp > 1 else 0


@dataclass(frozen=True)
class PipelineSplit:
    """The transformer layers on each pipeline stage, and the Megatron-LM settings that place them so ([6]).

    Either the embedding and the loss take a layer's slot (``embedding_slot`` / ``loss_slot``: Megatron-LM's
    ``--account-for-embedding-in-pipeline-split`` / ``--account-for-loss-in-pipeline-split``), every chunk holding
    (L + slots) / (p v) layers less the slot it gives up; or the end stages hold ``first_stage_layers`` and
    ``last_stage_layers`` (``--decoder-first-pipeline-num-layers`` / ``--decoder-last-pipeline-num-layers``; with
    interleaving, ``--num-virtual-stages-per-pipeline-rank``, every stage's layers a multiple of v, [7]) and the
    p - 2 stages between share the rest evenly, each stage's chunks equal. Megatron-LM takes no other split
    ([6], [7])."""

    n_layer: int
    pp: int
    interleave: int = 1
    embedding_slot: bool = False
    loss_slot: bool = False
    first_stage_layers: int | None = None
    last_stage_layers: int | None = None

    def __post_init__(self):
        # the engine's invariant: every layer sits on exactly one stage, and none holds more than ceil(L / (p v)) x v
        stages = [sum(self.chunk_layers(r)) for r in range(self.pp)]
        assert sum(stages) == self.n_layer and min(min(self.chunk_layers(r)) for r in range(self.pp)) >= 0, (
            f"pipeline split {self} places {stages} layers, not {self.n_layer}")
        assert max(stages) <= stage_layers(self.n_layer, self.pp, self.interleave), f"{self} is not balanced"

    @property
    def uneven(self) -> bool:
        """The end stages' layers are given (``--decoder-first/last-pipeline-num-layers``)."""
        return self.first_stage_layers is not None

    @property
    def slots_per_chunk(self) -> int:
        """Layer slots a chunk holds in the even form: (layers + embedding and loss slots) / (stages x chunks) [6]."""
        return (self.n_layer + self.embedding_slot + self.loss_slot) // (self.pp * self.interleave)

    def chunk_layers(self, rank: int) -> tuple[int, ...]:
        """Transformer layers in each of the ``interleave`` chunks of stage ``rank`` (0 .. pp - 1), as Megatron-LM's
        ``get_num_layers_to_build`` builds them for this split's settings ([6]; interleaved uneven: a stage's layers
        / v a chunk, ``get_transformer_layer_offset`` [7])."""
        if self.uneven:
            middle = ((self.n_layer - self.first_stage_layers - self.last_stage_layers) // (self.pp - 2)
                      if self.pp > 2 else 0)  # two stages: no middle [7]
            stage = (self.first_stage_layers if rank == 0 else self.last_stage_layers if rank == self.pp - 1
                     else middle)
            return (stage // self.interleave,) * self.interleave
        per_chunk = self.slots_per_chunk
        chunks = [per_chunk] * self.interleave
        if rank == 0:
            chunks[0] -= self.embedding_slot
        if rank == self.pp - 1:
            chunks[-1] -= self.loss_slot
        return tuple(chunks)

    def stage_layers(self, rank: int) -> int:
        """Transformer layers on stage ``rank``, all its chunks."""
        return sum(self.chunk_layers(rank))

    def megatron_flags(self) -> list[str]:
        """The Megatron-LM flags that ask for this split ([6]); none for an even one."""
        if self.uneven:  # interleaved: the form that takes uneven ends [7] (not --num-layers-per-virtual-...)
            # two stages: the first count alone, the last stage taking the rest (both would leave none to share it, [7])
            return ([f"--num-virtual-stages-per-pipeline-rank {self.interleave}"] if self.interleave > 1 else []) + [
                    f"--decoder-first-pipeline-num-layers {self.first_stage_layers}"] + (
                    [f"--decoder-last-pipeline-num-layers {self.last_stage_layers}"] if self.pp > 2 else [])
        return (["--account-for-loss-in-pipeline-split"] if self.loss_slot else []) + (
            ["--account-for-embedding-in-pipeline-split"] if self.embedding_slot else [])


@functools.lru_cache(maxsize=4096)
def pipeline_split(n_layer: int, pp: int, interleave: int = 1) -> PipelineSplit | None:
    """How ``n_layer`` layers go on ``pp`` stages of ``interleave`` chunks, as Megatron-LM takes them, with no stage
    holding more than ceil(L / (p v)) x v layers; None when Megatron-LM has no such split (one with a fuller stage
    gives up the balance p stages are for: it is refused, not priced).

    Where ceil(L / (p v)) layers a chunk leave at most two slots spare, the loss takes the last chunk of the last
    stage's one, then the embedding the first chunk of the first stage's (Dubey et al. 2024 sec. 3.3.2: "we reduce
    one Transformer layer each from the first and the last stages ... the first model chunk on the first stage has
    only the embedding"). With more slots spare, the end stages take fewer layers
    (``--decoder-first/last-pipeline-num-layers``): the p - 2 stages between hold m layers each, the largest m
    whose remainder L - (p - 2) m gives both ends at least one layer and at most ceil(L / (p v)) x v (Megatron-LM
    refuses an end of 0 layers and a remainder the middle stages do not share evenly, [6]); the last stage, which
    carries the LM head and the loss, takes the smaller half (`uneven_ends`). Interleaved, every stage's layers are
    a multiple of v, a v-th in each chunk: Megatron-LM's ``--num-layers-per-virtual-pipeline-stage`` takes no uneven
    ends [6], its ``--num-virtual-stages-per-pipeline-rank`` does [7]."""
    if pp == 1:  # one stage, one chunk (`Layout` refuses --interleave without --pp)
        return PipelineSplit(n_layer, 1, 1)
    spare = spare_layer_slots(n_layer, pp, interleave)
    if spare <= EMBEDDING_AND_LOSS_CHUNKS:
        return PipelineSplit(n_layer, pp, interleave, embedding_slot=spare >= EMBEDDING_AND_LOSS_CHUNKS,
                             loss_slot=spare >= 1)
    ends = uneven_ends(n_layer, pp, interleave)
    if ends is None:
        return None
    return PipelineSplit(n_layer, pp, interleave, first_stage_layers=ends[0], last_stage_layers=ends[1])


def uneven_ends(n_layer: int, pp: int, interleave: int) -> tuple[int, int] | None:
    """The first and last stages' layers of the most balanced uneven split Megatron-LM builds
    (``--decoder-first/last-pipeline-num-layers``, interleaved with ``--num-virtual-stages-per-pipeline-rank``):
    every stage a multiple of ``interleave`` layers [7], both ends at least one chunk's worth [6], the p - 2 stages
    between sharing the rest evenly, the most each holds as large as it can be with no stage over
    ceil(L / (p v)) x v, and the last stage the smaller end; None if there is none. Two stages have no stage
    between: the L layers, a multiple of v, split into the two ends, the first the larger half of the chunks (each
    end then at most ceil(L / (2 v)) x v), given to Megatron-LM as the first count alone ([7])."""
    if pp < 2:
        return None
    per_chunk = math.ceil(n_layer / (pp * interleave))
    for middle in range(per_chunk, 0, -1):  # layers a chunk on the stages between the ends [7]
        ends = n_layer - (pp - 2) * middle * interleave
        if ends > 2 * per_chunk * interleave:
            break
        if ends >= 2 * interleave and ends % interleave == 0:
            chunks = ends // interleave
            return (chunks - chunks // 2) * interleave, chunks // 2 * interleave
    return None


def chunk_layers(n_layer: int, pp: int, interleave: int, rank: int) -> tuple[int, ...]:
    """Transformer layers in each of the ``interleave`` chunks of pipeline stage ``rank`` (0 .. pp - 1), as
    `pipeline_split` places them; a split Megatron-LM does not take is refused (`Layout.check_model` says why)."""
    split = pipeline_split(n_layer, pp, interleave)
    if split is None:
        raise UsageError(f"{n_layer} layers do not split over {pp} pipeline stages x {interleave} chunks as "
                         "Megatron-LM takes them; see `Layout.check_model`")
    return split.chunk_layers(rank)


class Engine(str, Enum):
    """Which framework runs a layout."""

    torchrun_ddp = "flopscalc train (DDP)"
    torchrun_fsdp = "flopscalc train (FSDP)"
    megatron = "Megatron-LM"
    torchtitan = "torchtitan"
    deepspeed = "DeepSpeed"


# Megatron-LM's context parallelism splits each sequence into 2 x CP chunks, two per rank, so causal attention's
# work is balanced (megatron/core/utils.py get_batch_on_this_cp_rank; Megatron-LM context_parallel.rst)
CP_CHUNKS_PER_RANK = 2
# Context parallelism pays a K/V ring every layer; Megatron-LM's guide recommends it for long sequences
# (docs/source/api-guide/context_parallel.rst: "... when sequence length is long (e.g. 8K and beyond)").
CP_MIN_SEQ_LEN = 8192

@dataclass(frozen=True)
class Layout:
    """One way to split a step: degrees of each parallelism, the pipeline schedule, micro-batching, recompute.

    ``n_micro`` is the number of micro-batches each pipeline (each data-parallel replica) runs per optimizer
    step (gradient accumulation when ``pp`` is 1). ``zero_stage`` shards over the data-parallel ranks: 1 is
    Megatron's distributed optimizer, 3 FSDP / ZeRO-3. ``dp_overlap``: the gradient reduction overlaps the
    backward pass (Megatron ``--overlap-grad-reduce``, DDP buckets); the 2021-22 Megatron runs did not.
    ``grad_accum_fusion``: Megatron-LM's weight-gradient GEMM accumulates straight into the main gradient
    (``--gradient-accumulation-fusion``, ``wgrad_gemm_accum_fp32``; on by default in Megatron-LM since 2022);
    without it each micro-batch's 16-bit weight gradient is added to the main gradient by a separate pass (the
    DDP hook ``param.main_grad.add_(param.grad.data)``: Megatron-LM of 2021, the Narayanan et al. runs).
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    interleave: int = 1
    sequence_parallel: bool = False
    zero_stage: int = 0
    micro_batch: int = 1
    n_micro: int = 1
    recompute: Recompute = Recompute.none
    dp_overlap: bool = True
    grad_accum_fusion: bool = True

    def __post_init__(self):
        for name in ("tp", "pp", "dp", "cp", "ep", "interleave", "micro_batch", "n_micro"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise UsageError(f"{name} must be a positive whole number, got {v!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise UsageError(f"ZeRO stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.sequence_parallel and self.tp == 1:
            raise UsageError("sequence parallelism splits what tensor parallelism replicates; it needs --tp > 1")
        if self.interleave > 1 and self.pp == 1:
            raise UsageError("--interleave gives each pipeline stage several model chunks; it needs --pp > 1")
        if self.ep > self.dp * self.cp or (self.dp * self.cp) % self.ep:
            raise UsageError(f"expert parallelism shards experts over the data x context ranks ({self.dp * self.cp}); "
                             f"--ep {self.ep} must divide it")
        if self.zero_stage == 3 and self.pp > 1:
            raise UsageError("ZeRO-3 / FSDP with pipeline parallelism re-gathers every stage's weights per "
                             "micro-batch; use ZeRO 1 (distributed optimizer) with --pp")
        if self.zero_stage > 0 and self.dp * self.cp == 1:
            # ZeRO partitions the model states over the data-parallel ranks [Rajbhandari et al. 2020, sec. 5];
            # Megatron-LM's distributed optimizer shards over data x context ranks, as `search` does (it skips
            # z > 0 where dp * cp == 1). Over one rank it shards nothing; ZeRO-3 would only add gather buffers.
            raise UsageError(f"--zero {self.zero_stage} shards model states over the data x context-parallel ranks, "
                             f"and this layout has one (tp {self.tp} x pp {self.pp} takes all {self.n_gpus} GPUs): "
                             "drop --zero, or give more GPUs than tp x pp x cp so data parallelism gets some")

    @property
    def n_gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    def layers_per_stage(self, n_layer: int) -> int:
        """Layers on the busiest stage: ceil(L / p), rounded up to whole chunks of the interleaved schedule."""
        return stage_layers(n_layer, self.pp, self.interleave)

    def pipeline_split(self, n_layer: int) -> PipelineSplit:
        """The layers of each stage (`pipeline_split`), refused as `check_model` refuses it when Megatron-LM has
        none."""
        split = pipeline_split(n_layer, self.pp, self.interleave)
        if split is None:
            raise UsageError(self._no_split_message(n_layer))
        return split

    def _no_split_message(self, n_layer: int) -> str:
        """Why ``n_layer`` layers have no Megatron-LM split over this pipeline, and the degrees that have one."""
        if self.interleave > 1:
            # Megatron-LM's interleaved splits: equal chunks where only the embedding and the loss may fill a slot a
            # layer leaves (--num-layers-per-virtual-pipeline-stage [6]), or uneven ends with every stage a multiple
            # of v (--num-virtual-stages-per-pipeline-rank [7]); neither puts at most ceil(L / (p v)) x v on a stage
            most = stage_layers(n_layer, self.pp, self.interleave)
            fits = [v for v in range(2, (n_layer + EMBEDDING_AND_LOSS_CHUNKS) // self.pp + 1)
                    if pipeline_split(n_layer, self.pp, v) is not None]
            return (f"{n_layer} layers do not split into {self.pp} stages x {self.interleave} chunks as Megatron-LM "
                    f"takes them with at most {most} layers a stage (equal chunks, where only the embedding and the "
                    f"loss may take a layer's place, or uneven end stages with every stage a multiple of "
                    f"{self.interleave} layers); "
                    + (f"--interleave {', '.join(map(str, fits))} would" if fits else "--interleave 1 would"))
        # the pipeline degrees this many GPUs take at this --tp x --cp (the divisors of n_gpus / (tp x cp))
        room = self.n_gpus // (self.tp * self.cp)
        works = [p for p in range(2, min(room, n_layer) + 1) if room % p == 0 and pipeline_split(n_layer, p, 1)]
        most = stage_layers(n_layer, self.pp, 1)
        return (f"{n_layer} layers do not split over --pp {self.pp} as Megatron-LM takes them with at most "
                f"{most} layers a stage (its uneven split, --decoder-first/last-pipeline-num-layers, needs the stages "
                "between the ends to share the rest evenly); "
                + (f"--pp {', '.join(map(str, works))} would" if works else "--pp 1 (no pipeline) would"))

    @property
    def model_parallel(self) -> int:
        """GPUs that hold one replica of the model (TP x PP x CP)."""
        return self.tp * self.pp * self.cp

    def sequences_per_step(self) -> int:
        """Global batch in sequences."""
        return self.micro_batch * self.n_micro * self.dp

    def check_model(self, cfg: ModelConfig, seq_len: int) -> None:
        """Refuse a layout this model cannot be split by, with the reason and what would divide."""
        if cfg.n_head % self.tp or cfg.kv_heads % self.tp and self.tp % cfg.kv_heads:
            raise UsageError(f"--tp {self.tp} must divide the {cfg.n_head} attention heads (and the {cfg.kv_heads} "
                             "key/value heads, or be a multiple of them) [Shoeybi et al. 2019, sec. 3]")
        if cfg.n_inner % self.tp or (cfg.is_moe and cfg.expert_inner % self.tp):
            raise UsageError(f"--tp {self.tp} must divide the MLP width {cfg.n_inner}")
        if cfg.n_layer < self.pp * self.interleave - EMBEDDING_AND_LOSS_CHUNKS:
            raise UsageError(f"{cfg.n_layer} layers do not fill {self.pp} stages x {self.interleave} chunks; "
                             "pick a smaller --pp x --interleave")
        self.pipeline_split(cfg.n_layer)  # [6] a split Megatron-LM takes, or one line naming the --pp that have one
        if self.interleave > 1 and self.n_micro % self.pp:
            raise UsageError(f"the interleaved schedule needs the micro-batches ({self.n_micro}) to be a multiple of "
                             f"--pp {self.pp} (Megatron-LM)")
        if seq_len % (self.cp * (self.tp if self.sequence_parallel else 1)):
            raise UsageError(f"sequence {seq_len} must split evenly over --cp {self.cp}"
                             + (f" x --tp {self.tp} (sequence parallel)" if self.sequence_parallel else ""))
        if self.cp > 1 and seq_len % (CP_CHUNKS_PER_RANK * self.cp):
            # Megatron-LM get_batch_on_this_cp_rank: the sequence is cut into 2 x CP chunks (rank r takes chunks r and
            # 2CP-1-r, balancing causal attention's work), a view that needs 2 x CP to divide it
            raise UsageError(f"sequence {seq_len} must split into {CP_CHUNKS_PER_RANK * self.cp} equal chunks for --cp "
                             f"{self.cp} (Megatron-LM cuts it into 2 x CP for balance); pick a sequence that is a "
                             f"multiple of {CP_CHUNKS_PER_RANK * self.cp} or a smaller --cp")
        if self.ep > 1:
            if not cfg.is_moe:
                raise UsageError("--ep shards the experts of a mixture of experts; this model has none")
            if cfg.n_expert % self.ep:
                raise UsageError(f"--ep {self.ep} must divide the {cfg.n_expert} experts (try a divisor of "
                                 f"{cfg.n_expert})")

    def engine(self) -> Engine:
        """The engine that runs this layout: `flopscalc train` for plain DDP / FSDP, else Megatron-LM."""
        if self.model_parallel == 1 and self.ep == 1 and self.zero_stage in (0, 3):
            return Engine.torchrun_fsdp if self.zero_stage == 3 else Engine.torchrun_ddp
        return Engine.megatron

    def engine_settings(self, n_layer: int | None = None) -> dict[str, str]:
        """Equivalent settings in Megatron-LM, torchtitan and DeepSpeed (flag names of each project's CLI/config);
        ``n_layer`` (the model's) turns the interleaved schedule's layers per virtual stage into a number."""
        rec = {Recompute.none: "", Recompute.selective: "--recompute-activations",
               Recompute.full: "--recompute-granularity full --recompute-method uniform"}[self.recompute]
        mega = [f"--tensor-model-parallel-size {self.tp}", f"--pipeline-model-parallel-size {self.pp}",
                f"--context-parallel-size {self.cp}", f"--expert-model-parallel-size {self.ep}",
                f"--micro-batch-size {self.micro_batch}", f"--global-batch-size {self.sequences_per_step()}"]
        split = self.pipeline_split(n_layer) if n_layer is not None and self.pp > 1 else None
        if self.interleave > 1 and not (split and split.uneven):  # uneven: --num-virtual-stages-... [7]
            per_chunk = (str(math.ceil(n_layer / (self.pp * self.interleave))) if n_layer is not None
                         else f"<layers / (pp x {self.interleave})>")
            mega.append(f"--num-layers-per-virtual-pipeline-stage {per_chunk}")
        if split is not None:
            # the settings that place each stage's layers as `layout.stage_cost` and `layout.memory` price them [6]
            mega += split.megatron_flags()
        if self.sequence_parallel:
            mega.append("--sequence-parallel")
        if self.zero_stage >= 1:
            mega.append("--use-distributed-optimizer")
        if self.dp_overlap:
            mega.append("--overlap-grad-reduce")
        if not self.grad_accum_fusion:
            mega.append("--no-gradient-accumulation-fusion")
        if rec:
            mega.append(rec)
        titan = [f"parallelism.tensor_parallel_degree={self.tp}", f"parallelism.pipeline_parallel_degree={self.pp}",
                 f"parallelism.context_parallel_degree={self.cp}",
                 f"parallelism.data_parallel_shard_degree={self.dp if self.zero_stage else 1}",
                 f"parallelism.data_parallel_replicate_degree={1 if self.zero_stage else self.dp}",
                 f"activation_checkpoint.mode={'none' if self.recompute is Recompute.none else self.recompute.value}"]
        if self.pp > 1:
            titan += self._torchtitan_pipeline(split)
        if self.ep > 1:
            titan.append(f"parallelism.expert_parallel_degree={self.ep}")
        if self.zero_stage in (1, 2):  # torchtitan shards with FSDP2 only: weights too, as ZeRO-3 does
            titan.append(f"(FSDP shards the weights as well, as ZeRO-3: less memory per GPU and more all-gather "
                         f"traffic than this ZeRO-{self.zero_stage} layout)")
        ds = [f"zero_optimization.stage={self.zero_stage}", f"train_micro_batch_size_per_gpu={self.micro_batch}",
              f"gradient_accumulation_steps={self.n_micro}"]
        if self.model_parallel > 1:
            ds.append(f"Megatron-DeepSpeed: --tensor-model-parallel-size {self.tp} --pipeline-model-parallel-size "
                      f"{self.pp}")
        return {Engine.megatron.value: " ".join(mega), Engine.torchtitan.value: " ".join(titan),
                Engine.deepspeed.value: " ".join(ds)}

    def _torchtitan_pipeline(self, split: PipelineSplit | None) -> list[str]:
        """torchtitan's pipeline settings for this layout ([8]): the schedule, and the split where its options
        express it (equal virtual stages, the first and last a layer fewer for the embedding and the loss); an
        uneven split (ends given) is named as not expressible, so nothing reads as an equivalent that is not."""
        out = [f"parallelism.pipeline_parallel_schedule={'Interleaved1F1B' if self.interleave > 1 else '1F1B'}"]
        if split is None:  # the model's layers not given: the split is not known
            return out
        if split.uneven:
            return out + [(f"(torchtitan's pipeline options split layers into equal virtual stages; this split's "
                           f"uneven ends, {split.stage_layers(0)} and {split.stage_layers(self.pp - 1)} layers, "
                           "need its stages' modules listed by hand)")]
        per_chunk = split.slots_per_chunk
        return out + [f"parallelism.pipeline_parallel_layers_per_stage={per_chunk}",
                      f"parallelism.pipeline_parallel_first_stage_less_layers={int(split.embedding_slot)}",
                      f"parallelism.pipeline_parallel_last_stage_less_layers={int(split.loss_slot)}"]

    def label(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}" + (f"x{self.interleave}" if self.interleave > 1 else ""),
                 f"DP{self.dp}"]
        if self.cp > 1:
            parts.append(f"CP{self.cp}")
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        extra = [f"mb{self.micro_batch}x{self.n_micro}", f"ZeRO{self.zero_stage}", f"rc:{self.recompute.value}"]
        if self.sequence_parallel:
            extra.insert(0, "SP")
        return " ".join(parts) + " " + " ".join(extra)
