"""What a plan says beside its numbers: the assumptions with their sources, the warnings, the tags of the options
table, and the recommended run's hyperparameters and over-training note. Pure functions of the plan's parts."""

from __future__ import annotations

import math

from ..assumption import Assumption
from ..hardware import GpuSpec, Precision
from ..model import count_params
from ..perf.fabric import ALLREDUCE_BUS_EFFICIENCY, GPUS_PER_NODE
from ..perf.offload import HOST_MEMORY_BYTES_PER_S, host_link_bytes_per_s, pcie_generation
from ..perf.op_kinds import MOE_STEP_TIME_NOTE
from ..perf.parallel import low_efficiency_warning
from ..units import GIB, GIGA, format_count, format_duration
from .budget import CHINCHILLA_TOKENS_PER_PARAM, DEFAULT_UTILIZATION, ComputeBudget
from .options import MFU_DENSE_CONVENTION, PLAN_MEMORY_HEADROOM, PlanOption, tools_needed, window_binds
from .search import OPTION_STEPS, _law_n
from .speed import CALIBRATED, PER_OPERATION, held_out_error


def _sequences_per_micro_step(rec: PlanOption, n_gpus: int) -> int:
    """Sequences one micro-batch round takes across the cluster: every data-parallel replica's micro-batch (a
    layout's DP ranks; TP, PP and CP ranks share their replica's sequences), the step's batch a multiple of it."""
    lay = rec.chosen.layout
    return lay.dp * lay.micro_batch if lay is not None else n_gpus * rec.chosen.setup.micro_batch


def _run_notes(rec: PlanOption, law, seq_len: int, n_gpus: int, inference_tokens: float | None):
    """The recommended run's hyperparameters (DeepSeek LLM sec. 3.1), over-training note and, with inference
    tokens, its life-cycle FLOPs against the Chinchilla model of its own loss (Sardana et al. 2024)."""
    from ..scaling.hyperparams import recommend_hyperparameters, warmup_steps_for
    from ..scaling.overtraining import overtraining_note

    if not (0 < rec.n_tokens < math.inf):
        return None, None, None, None
    n_law = _law_n(law, rec.model)
    hp = recommend_hyperparameters(
        rec.model.n_layer, rec.model.n_embd, seq_len, rec.n_tokens, loss_nats=rec.loss,
        planned_batch_tokens=rec.chosen.tokens_per_step if rec.loss is not None else None, schedule="cosine",
        sequences_multiple=_sequences_per_micro_step(rec, n_gpus))
    over = overtraining_note(law, n_law, rec.n_tokens)
    life = None
    if inference_tokens is not None:  # the inference-aware solvers load only then (start-up, issue 18)
        from ..scaling.inference import life_cycle_comparison

        life = life_cycle_comparison(law, n_law, rec.n_tokens, inference_tokens)
    return hp, over, life, warmup_steps_for(rec.n_steps)


def _tags(options, rec, alloc, law, ia=None) -> dict:
    tags: dict[int, list[str]] = {}
    fitting = [i for i, o in enumerate(options) if o.fits]
    if len(options) > 1:
        def dist(i: int, n: float) -> float:
            return abs(math.log(_law_n(law, options[i].model) / n))

        i_opt = min(range(len(options)), key=lambda i: dist(i, alloc.n_params))
        # with inference tokens the shapes centre on the life-cycle optimum: tag Chinchilla's only within the grid
        if ia is None or dist(i_opt, alloc.n_params) <= math.log(2) / 4 * (1 + 1e-9):
            tags.setdefault(i_opt, []).append("optimum")
        if ia is not None:
            tags.setdefault(min(range(len(options)), key=lambda i: dist(i, ia.n_params)), []).append("life-cycle opt")
        if fitting:
            tags.setdefault(fitting[-1], []).append("largest fit")
    tags.setdefault(options.index(rec), []).append("recommended")
    return {i: tuple(v) for i, v in tags.items()}


def _assumptions(budget: ComputeBudget, law, mfu_source: str, seq_len: int, cap: float,
                 stated: float, rec: PlanOption | None = None, family=None, *, time_model: str | None = None,
                 network: tuple[float, str] | None = None) -> tuple[Assumption, ...]:
    """``time_model``: the kind of the plan's `speed.TimeModel` (None: the layout search priced every option);
    ``network``: (bytes/s per GPU, source) of the network between nodes, None on one node (`_network`)."""
    return (_general_assumptions(budget, law, mfu_source, seq_len, cap, stated, rec, time_model, network)
            + _model_assumptions(rec, family, law, seq_len))


def _network(n_gpus: int, gpu: GpuSpec, cluster=None) -> tuple[float, str] | None:
    """(bytes/s per GPU, source) of the network between nodes a plan on ``n_gpus`` crosses: the layout search's
    ``cluster`` (`layout.cluster_for`, --network-gbps), else the data-parallel model's (`fabric.gpu_fabric`); None
    when the GPUs fit one node."""
    from ..perf.fabric import network_bytes_per_s, network_source

    if n_gpus <= GPUS_PER_NODE:
        return None
    if cluster is not None:
        return cluster.network_bytes_per_s, cluster.network_source
    return network_bytes_per_s(gpu), network_source(gpu)


def _kernels_assumption(rec: PlanOption | None, time_model: str | None) -> Assumption | None:
    """The kernels the step model that priced the recommended run assumes: eager PyTorch's for the per-operation
    model (and a layout `flopscalc train` runs, priced term by term alike), Megatron-LM's for a layout only it runs;
    none for a constant efficiency (--mfu, a profile's measured MFU), which prices no kernel."""
    lay = None if rec is None or rec.chosen is None else rec.chosen.layout
    if lay is not None and lay.engine().value.startswith("Megatron"):
        from ..layout.stage_cost import MEGATRON_SUSTAINED_FRACTION

        return Assumption(
            "kernels", "Megatron-LM's: a 16-bit module (no fp32 residual stream, no autocast casts), fused kernels, "
            "GEMM shapes padded as the vocabulary is (--make-vocab-size-divisible-by 128), the GEMMs at sustained "
            f"fraction {MEGATRON_SUSTAINED_FRACTION:g}",
            "flopscalc.layout.stage_cost: the fraction fitted on Narayanan et al. 2021 Table 1; on Korthikanti et al. "
            "2022 Table 5, held out, mean error 2.8%, worst 6.4% (docs/parallelism.md)")
    if lay is None and time_model not in (PER_OPERATION, CALIBRATED):
        return None
    return Assumption(
        "kernels", "eager PyTorch, not compiled: unpadded GEMM shapes (the vocabulary's at the GPU's unaligned rate, "
        "where one is recorded); an fp32 residual stream under AMP (ZeRO 0, no offload), 16-bit with DeepSpeed's "
        "module (ZeRO, offload)",
        "flopscalc.perf (block_ops [20]; data/gpu_perf.csv misaligned_gemm_tflops); on an H200 it predicted the "
        "trainer 3-18% too fast (docs/performance_model.md)")


def _model_assumptions(rec: PlanOption | None, family, law, seq_len: int | None = None) -> tuple[Assumption, ...]:
    """The family shaped (when not GPT-2's), a sliding window's FLOPs and, for a mixture of experts, which N the law
    is given."""
    out = []
    if rec is not None and seq_len is not None and window_binds(rec.model, seq_len):
        out.append(Assumption(
            "attention FLOPs (sliding window)",
            f"the causal pairs of the {rec.model.attn_window:,}-token window, not the dense {seq_len:,} x {seq_len:,}",
            "every kernel the plan prices skips the pairs outside the window (perf.step, layout.time; Jiang et al. "
            "2023 sec. 2); 'flopscalc flops --causal' counts the same"))
    if family is not None and family.key != "gpt2":
        out.append(Assumption("model family", f"{family.key}: shapes by its rule, and its presets",
                              family.family.source))
    if rec is not None and rec.model.is_moe:
        pc = count_params(rec.model)
        embeddings = law.n_counts_embeddings is not False
        out.append(Assumption(
            "scaling-law N (mixture of experts)",
            f"active parameters{'' if embeddings else ', non-embedding'}: "
            f"{format_count(pc.active if embeddings else pc.active_non_embedding)} of {format_count(pc.total)}",
            "the parameters a token uses, which set its FLOPs (count_params .active / .active_non_embedding); "
            f"{law.name} was fitted on dense models and is not validated for mixtures of experts"))
    return tuple(out)


def _general_assumptions(budget: ComputeBudget, law, mfu_source: str, seq_len: int, cap: float,
                         stated: float, rec: PlanOption | None = None, time_model: str | None = None,
                         network: tuple[float, str] | None = None) -> tuple[Assumption, ...]:
    from ..perf.fabric import NETWORK_BUS_EFFICIENCY, network_gbps

    gpu = budget.gpu
    kernels = _kernels_assumption(rec, time_model)
    fits = rec is not None and rec.speed is not None
    convention = (rec.mfu_convention if fits else MFU_DENSE_CONVENTION)
    causal = (f"; 'flopscalc step' counts the causal pairs: MFU {rec.mfu_causal:.2f} for the recommended run"
              if fits and rec.mfu_conventions_differ else "")
    return (
        Assumption("peak rate", f"{budget.precision.value}, dense",
                   f"data/gpu_specs.csv row {gpu.key}: {gpu.source.split(';')[0]} "
                   f"(all sources: flopscalc gpus show {gpu.key})"),
        Assumption("utilization (duty cycle)", f"{budget.utilization:g}",
                   "default: Llama 3 paper sec. 3.3.4 (>90% effective training time)"
                   if budget.utilization == DEFAULT_UTILIZATION else "given"),
        Assumption("hardware efficiency", ("per option" if stated is None else f"{stated:g}")
                   + " = MFU of a step without recompute", mfu_source),
        *((kernels,) if kernels is not None else ()),
        Assumption("MFU, HFU", f"per option: model (MFU) or hardware (HFU) FLOPs / (peak x step time), {convention}"
                   + causal,
                   ("recomputation runs at the hardware efficiency, so MFU = HFU x model/hardware FLOPs; "
                    if stated is not None else "") + "Korthikanti et al. 2022 sec. 5; PaLM App. B"),
        Assumption("FLOPs per token", f"exact matmul count at sequence {seq_len}, forward + 2x backward",
                   "flopscalc.flops (matches PyTorch FlopCounterMode); PaLM App. B convention"),
        Assumption("scaling law", law.name, f"{law.source}; {law.flop_convention}"),
        Assumption("tokens per step", "0.5M (<1B params), 1M (<4B), 2M (<50B), 3.1M"
                   + ("; doubled within the critical batch to hide communication" if budget.n_gpus > 1 else ""),
                   "GPT-3 (Brown et al. 2020), Table 2.1" + ("; Kaplan et al. 2020 eq. 5.3 (critical batch, WebText2 "
                                                             "nats) and 5.5 (token cost)" if budget.n_gpus > 1 else "")),
        Assumption("memory", f"{cap / GIB:.1f} GiB per GPU, {PLAN_MEMORY_HEADROOM:.0%} kept free; "
                   "the fastest setup that fits",
                   "flopscalc.memory (validated against measured bytes; docs/memory.md)"),
        Assumption("communication",
                   f"ring all-reduce at {ALLREDUCE_BUS_EFFICIENCY:g} of link bandwidth, overlapped with backward",
                   "flopscalc.perf.parallel: Patarasuk & Yuan 2009; ZeRO sec. 7.2; nccl-tests #149"),
        *((Assumption("network between nodes", f"{network_gbps(network[0]):g} Gb/s per GPU",
                      f"{network[1]}; {NETWORK_BUS_EFFICIENCY:g} of it achieved (nccl-tests #290)"),)
          if network is not None else ()),
        Assumption("optimizer offload", f"PCIe {pcie_generation(gpu)}.0 x16 at {host_link_bytes_per_s(gpu) / GIGA:g} "
                   f"GB/s, host memory {HOST_MEMORY_BYTES_PER_S / GIGA:g} GB/s, not overlapped",
                   "flopscalc.perf.offload: Ren et al. 2021 Fig. 5; measured PCIe 4.0 (bam #54); DDR5-4800 x2 (JESD79-5)"),
        Assumption("compute-optimal data (presets table)", f"{CHINCHILLA_TOKENS_PER_PARAM:g} tokens per parameter",
                   "Hoffmann et al. 2022, Table 3"),
    )


def _warnings(rec: PlanOption, budget: ComputeBudget, memory_bytes, calibration, mfu, law=None,
              time_model=None, data_bound: str | None = None) -> list[str]:
    out = []
    if law is not None and 0 < rec.n_tokens < math.inf:  # the law far outside its runs, or above a uniform guess
        from ..scaling.allocate import predict_loss
        from ..scaling.validity import range_warnings

        n_law = _law_n(law, rec.model)
        out.extend(predict_loss(law, n_law, rec.n_tokens, rec.unique_tokens).warnings if law.has_loss
                   else range_warnings(law, n_law, rec.n_tokens, unique_tokens=rec.unique_tokens))
    bubble_s = getattr(rec.speed, "bubble_s", 0.0)  # a layout's pipeline bubble waits as communication does
    low = low_efficiency_warning(rec.speed.compute_s, rec.speed.comm, bubble_s=bubble_s)  # flopscalc.perf.parallel
    if low and rec.batch is not None:  # the batch has already grown as far as it pays
        g = rec.batch
        low += (f" (the batch already grew from {format_count(g.default_tokens_per_step)} to "
                f"{format_count(g.tokens_per_step)} tokens per step: "
                + ("the critical batch allows no more)" if g.reason == "critical batch size" else
                   "more would cost more in token value than it hides)"))
    stalled = _critical_batch_bubble_warning(rec, bubble_s)
    if stalled:
        out.append(stalled)
    if low:
        out.append(low)
    s = rec.chosen.setup
    if s.offload_optimizer:
        off = rec.speed.offload
        out.append(f"optimizer offload adds {off.total_s:.2g} s to each {format_duration(rec.speed.step_s)} step "
                   f"({off.total_s / rec.speed.step_s:.1%}; gradients and weights over PCIe, the optimizer step on "
                   "the CPU): a host slower than assumed makes it longer")
    needs = () if rec.chosen.layout is not None else tools_needed(s)
    if rec.chosen.layout is not None and rec.chosen.layout.engine().value.startswith("Megatron"):
        out.append(f"'flopscalc train' cannot run this layout ({rec.chosen.layout.label()}): it runs DDP and FSDP "
                   "only; run it with Megatron-LM (or the torchtitan / DeepSpeed settings the plan names)")
    if needs:
        out.append(f"'flopscalc train' cannot run this setup as it stands: it needs {' and '.join(needs)}; the "
                   "reference trainer runs AdamW with fp32 or bf16 autocast, recomputation, DDP and FSDP")
    if budget.precision is Precision.fp8:
        out.append("fp8: memory is modelled as bf16 mixed precision (fp8 weights/activations not modelled)")
    if rec.epochs is not None and rec.epochs > 1:
        out.append(f"the recommended run repeats the dataset {rec.epochs:.1f} times; the loss counts repeated "
                   "tokens as worth less (Muennighoff et al. 2023)")
    if data_bound is not None:  # the shortest run within a tolerance of a data-bound loss (`databound.shorter_run`)
        out.append(data_bound)
    kind = getattr(time_model, "kind", None)
    if kind == PER_OPERATION:
        median, worst, runs = held_out_error(budget.gpu)
        out.append(f"the step times are predicted by the per-operation model, not measured on this GPU (held-out "
                   f"error on {runs}: median {median:.1%}, worst {worst:.1%}): "
                   "run 'flopscalc calibrate' and pass --calibration to fit it to yours")
    elif calibration is None and mfu is None and rec.chosen.layout is None:
        out.append("the hardware efficiency (MFU of a step without recomputation) is a stated default, not measured "
                   "on this GPU: run 'flopscalc calibrate' and pass --calibration to use your own")
    if memory_bytes is not None:
        out.append(f"memory per GPU set to {memory_bytes / GIB:.1f} GiB instead of the database's "
                   f"{budget.gpu.memory_bytes / GIB:.1f} GiB")
    return out


# Above this share of the step in pipeline bubble, with the batch stopped at the critical batch, a plan says the GPUs
# outrun the batch: 1F1B's bubble (p-1)/(m v) (Narayanan et al. 2021, sec. 2.2) at a quarter of the step means each
# pipeline runs fewer than ~3 (p-1)/v micro-batches, where Narayanan et al. 2021 (sec. 3.3, Fig. 12) advise m >> p;
# the threshold is our judgement, not a published figure.
LARGE_BUBBLE_SHARE = 0.25


def _critical_batch_bubble_warning(rec: PlanOption, bubble_s: float) -> str | None:
    """One line when a layout's pipeline bubble is a large share of the step (`LARGE_BUBBLE_SHARE`) because the
    batch stopped growing at the critical batch: too few micro-batches per pipeline for its stages."""
    lay, g = rec.chosen.layout, rec.batch
    if lay is None or g is None or g.reason != "critical batch size" or not bubble_s > 0:
        return None
    share = bubble_s / rec.speed.step_s
    if share <= LARGE_BUBBLE_SHARE:
        return None
    chunks = f" of {lay.interleave} chunks" if lay.interleave > 1 else ""
    n_seq = lay.sequences_per_step()
    return (f"{lay.n_gpus:,} GPUs outrun the critical batch ({format_count(g.critical_tokens)} tokens, Kaplan et al. "
            f"2020 eq. 5.3): {n_seq:,} sequences per step give each of the {lay.dp:,} data-parallel pipelines "
            f"{lay.n_micro} micro-batches for {lay.pp} stages{chunks}; the pipeline bubble is {share:.0%} of the "
            f"step (MFU {rec.speed.mfu:.2f}); on fewer GPUs each pipeline would run more micro-batches")


def _family_warnings(family, skipped: tuple[float, ...], rec: PlanOption, law) -> tuple[str, ...]:
    """Sizes around the optimum the family's rule could not shape, and the MoE caveat on the law's N."""
    out = []
    if family is not None and skipped:
        base = family.base
        out.append(f"{len(skipped)} of the sizes around the optimum ({format_count(min(skipped))}-"
                   f"{format_count(max(skipped))} parameters) were skipped: no {family.key}-shaped model that small "
                   f"(vocabulary {base.vocab_size:,}, heads of {family.family.head_dim}); the plan weighs "
                   + ("the family's smallest shape and its presets" if len(skipped) == len(OPTION_STEPS)
                      else "the others"))
    if rec.model.is_moe:
        out.append(f"mixture of experts: the loss puts the active parameters ({format_count(_law_n(law, rec.model))}) "
                   f"into {law.name}, a law fitted on dense models; it is not validated for MoE")
        out.append(MOE_STEP_TIME_NOTE)  # the time as much as the loss: the line `step` prints too
    return tuple(out)


def _layout_search_skipped(n_gpus: int, mfu, calibration, precision: Precision, model=None,
                           seq_len: int | None = None) -> str | None:
    """Why a plan weighed data-parallel setups only, when the user did not ask for that (`speed.uses_layout_search`:
    --mfu, --calibration, or a peak the layout engine does not price): beyond one node always; inside one (2 to
    `GPUS_PER_NODE` GPUs) where the node's layouts may pay for ``model`` at ``seq_len`` (`node.layouts_may_pay`: an
    MoE, or a sequence context parallelism splits), which the plan weighs without those options (review r15 #4)."""
    if n_gpus <= 1:
        return None
    if n_gpus <= GPUS_PER_NODE:
        from .node import layouts_may_pay  # here: node imports the search
        from .speed import layouts_inside_node

        if layouts_inside_node(n_gpus, precision, mfu, calibration, None):
            return None  # the plan weighed them
        if model is None or seq_len is None or not layouts_may_pay(model, seq_len):
            return None
    why = ("--mfu states one efficiency, which the layout engine does not take" if mfu is not None else
           "--calibration fits one device's step, which the layout engine does not read" if calibration is not None
           else f"the layout engine prices bf16 or fp16 matmuls, not {Precision(precision).value}")
    return (f"only data-parallel setups (ZeRO, offload, recomputation) were weighed on these {n_gpus:,} GPUs: {why}; "
            "tensor, pipeline, context and expert parallelism are not in this plan ('flopscalc step --search' ranks "
            "them; --no-layout-search says you meant it)")


def _calibration_warnings(calibration, gpu: GpuSpec, options, rec: PlanOption) -> tuple[str, ...]:
    """A profile from another device (allowed only by --calibration-any-device), or far from the planned sizes."""
    if calibration is None:
        return ()
    # here: the module imports numpy, and most plans have no profile
    from ..calibration import PROFILE_SIZE_FACTOR

    out = []
    if not calibration.measured_on(gpu.key):
        out.append(f"CALIBRATION FROM ANOTHER DEVICE: the profile was measured on {calibration.device}, the plan is "
                   f"for {gpu.name}; its MFU says little about this GPU, so every time and token count here is a "
                   "guess (--calibration-any-device)")
    lo, hi = calibration.n_params_range()
    far = [o for o in options if o.fits and calibration.size_outside(o.n_params) > PROFILE_SIZE_FACTOR]
    if far:
        worst = max(far, key=lambda o: calibration.size_outside(o.n_params))
        out.append(f"{len(far)} of the planned models lie more than {PROFILE_SIZE_FACTOR:g}x outside the profiled "
                   f"sizes ({format_count(lo)}-{format_count(hi)} parameters)"
                   + (", the recommended one among them" if rec in far else "")
                   + f", up to {calibration.size_outside(worst.n_params):.0f}x ({format_count(worst.n_params)}): "
                   "their MFU is the nearest measurement held constant; calibrate nearer these sizes")
    return tuple(out)
