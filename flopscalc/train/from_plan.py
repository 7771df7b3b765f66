"""A plan's JSON as the trainer's settings: `flopscalc train --from-plan plan.json` (issue 16, item 3). Torch-free.

What the plan sets, and where it is read from (`flopscalc plan --json`):

- model shape: ``recommended.model`` (a preset by name, or a GPT-2 block by its fields); checked against the plan's
  own ``n_params``, so a shape rebuilt wrongly is refused rather than trained;
- micro-batch, accumulation, sequence, precision, recomputation, fused attention, data-parallel layout:
  ``recommended.setup``; optimizer steps: ``recommended.n_steps``;
- peak learning rate, schedule (cosine or multistep with its milestones, floor), AdamW betas, weight decay, clip:
  ``hyperparameters`` (DeepSeek LLM sec. 2.3 and 3.1, via `flopscalc.scaling.hyperparams`); warm-up:
  ``hyperparameters.plan_warmup_steps``, the warm-up at the plan's own batch and step count.

What the reference trainer cannot run (8-bit or non-AdamW optimizers, optimizer offload, ZeRO-1/2, fp16 or pure
bf16, more data-parallel GPUs than processes) is refused in one line naming the tool that can, unless the caller
allows a substitute: then the nearest runnable setting is used and each change is one line of ``changes``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError
from ..memory.precision import TRAINER_MEMORY_PRECISION
from ..model import ModelConfig, count_params
from ..model.presets import ALL_PRESETS
from ..textfile import parse_json, read_text
from .config import RECOMPUTES, TrainConfig, model_unsupported

# The block a plan's JSON describes completely by its fields (flopscalc.report.common.model_dict): GPT-2's.
GPT2_FAMILY = "GPT-2 block"
# Plan precisions (flopscalc.memory.precision.MemoryPrecision) -> the trainer's, where it runs them: the inverse
# of memory.precision.TRAINER_MEMORY_PRECISION.
PRECISION_TO_TRAINER = {storage.value: name for name, storage in TRAINER_MEMORY_PRECISION.items()}
# Where the plan's setting can run when the reference trainer cannot (named in the one-line refusal).
OPTIMIZER_TOOLS = {
    "adamw8bit": "bitsandbytes' AdamW8bit (bnb.optim.AdamW8bit)",
    "sgd": "torch.optim.SGD with momentum",
    "adafactor": "torch.optim.Adafactor",
    "lion": "a Lion optimizer (e.g. lion-pytorch)",
}
OFFLOAD_TOOL = "DeepSpeed ZeRO-Offload, offload_optimizer device 'cpu'"
# DeepSpeed's engine runs a 16-bit module, as the plan prices ZeRO (perf.block_ops [20]); torch's
# ZeroRedundancyOptimizer shards the same states under AMP's fp32 weights, an fp32 residual stream the plan does not price
ZERO_TOOLS = {1: "DeepSpeed ZeRO stage 1 (torch's ZeroRedundancyOptimizer keeps AMP's fp32 weights: slower than planned)",
              2: "DeepSpeed ZeRO stage 2"}
PRECISION_TOOLS = {
    "fp16-mixed": "fp16 autocast with a loss scaler (torch.amp.GradScaler; DeepSpeed fp16)",
    "bf16-pure": "a model cast to bf16 with bf16 optimizer state (e.g. torchtitan, Megatron-LM)",
}
WRITE_A_PLAN = "write one with 'flopscalc plan --gpu GPU --days N --json > plan.json'"


@dataclass(frozen=True)
class PlanRun:
    """The run a plan asks for, as the trainer will run it.

    config : the `TrainConfig`; changes : one line per setting that differs from the plan (substitutes and
    overrides); plan_n_params : the plan's parameter count; plan_tokens_per_step : its global batch (tokens);
    plan_gpu : the GPU the plan is for; source : the plan file.
    """

    config: TrainConfig
    changes: tuple[str, ...]
    plan_n_params: int
    plan_tokens_per_step: int
    plan_gpu: str
    source: str

    def settings(self, world_size: int = 1) -> dict:
        """JSON-ready: every setting the trainer runs with, the plan it came from and what was changed."""
        cfg = self.config
        model = {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(cfg.model).items()}
        run = {k: v for k, v in asdict(cfg).items() if k != "model"}
        run["milestones"] = [list(m) for m in cfg.milestones]
        return {
            "plan": self.source, "plan_gpu": self.plan_gpu, "plan_n_params": self.plan_n_params,
            "plan_tokens_per_step": self.plan_tokens_per_step, "model": model,
            "n_params": count_params(cfg.model).total, **run, "n_processes": world_size,
            "tokens_per_step": cfg.tokens_per_micro_batch * cfg.grad_accum * world_size,
            "changes": list(self.changes),
        }


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def read_plan(path: str | Path) -> dict:
    """The JSON of a plan file; a missing, non-JSON or non-plan file is a one-line UsageError."""
    text = read_text(path, "plan file", f"; {WRITE_A_PLAN}")
    try:
        plan = parse_json(text, str(path), "plan file")
    except json.JSONDecodeError as e:
        raise UsageError(f"plan file {path} is not JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                         f"{WRITE_A_PLAN}") from None
    missing = [k for k in ("recommended", "hyperparameters") if not isinstance(plan, dict) or k not in plan]
    if missing:
        raise UsageError(f"plan file {path} is not a flopscalc plan (no {' or '.join(repr(k) for k in missing)}); "
                         f"{WRITE_A_PLAN}")
    if plan["hyperparameters"] is None:
        raise UsageError(f"plan file {path} has no hyperparameters to train with; {WRITE_A_PLAN} (a current "
                         "flopscalc writes them into every plan)")
    return plan


def _field(plan: dict, dotted: str, kind: type | tuple, source: str):
    """``plan['a']['b']...`` of type ``kind``, or a one-line UsageError naming the field."""
    value = plan
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise UsageError(f"plan file {source} has no {dotted!r}; it is not a complete flopscalc plan: "
                             f"{WRITE_A_PLAN}")
        value = value[key]
    numeric = kind in (int, float) or kind == (int, float)
    if (numeric and isinstance(value, bool)) or not isinstance(value, kind):
        expected = getattr(kind, "__name__", "a number")
        raise UsageError(f"plan file {source}: {dotted!r} should be {expected}, got {value!r}; {WRITE_A_PLAN}")
    return value


def plan_model(m: dict, source: str) -> ModelConfig:
    """The plan's model: its preset when it names one, else a GPT-2 block from its fields; the parameter count
    must equal the plan's ``n_params`` (exact: both are `count_params` of the same shape)."""
    g = lambda key, kind: _field(m, key, kind, source)
    name, family, n_params = g("name", str), g("family", str), g("n_params", int)
    if name in ALL_PRESETS:
        cfg = ALL_PRESETS[name].with_(block_size=g("block_size", int), vocab_size=g("vocab_size", int))
    elif family == GPT2_FAMILY:
        n_embd, n_inner = g("n_embd", int), g("n_inner", int)
        cfg = ModelConfig(n_layer=g("n_layer", int), n_head=g("n_head", int), n_embd=n_embd,
                          block_size=g("block_size", int), vocab_size=g("vocab_size", int), bias=g("bias", bool),
                          tie_embeddings=g("tie_embeddings", bool), pos_embedding=True,
                          ffn_dim=None if n_inner == 4 * n_embd else n_inner, name=name or "plan")
    else:
        raise UsageError(f"the plan's model is a {family!r} block with no preset name; its JSON does not carry the "
                         "block's options (norm, MLP, position, biases), so the trainer cannot rebuild it: plan a "
                         "preset (flopscalc plan --model NAME) or a GPT-2-shaped model")
    built = count_params(cfg).total
    if built != n_params:
        raise UsageError(f"the plan's model rebuilt from {source} has {built:,} parameters, the plan says "
                         f"{n_params:,}; the plan was written by another flopscalc or edited: {WRITE_A_PLAN}")
    why = model_unsupported(cfg)
    if why:
        raise UsageError(f"the plan's model cannot be trained here: {why}")
    return cfg


def plan_run(plan: dict, source: str, *, device: str = "auto", cuda_available: bool = False, world_size: int = 1,
             allow_substitute: bool = False, micro_batch: int | None = None, grad_accum: int | None = None,
             **run_options) -> PlanRun:
    """The `TrainConfig` a plan asks for (see the module docstring), or a one-line UsageError.

    Parameters
    ----------
    plan : the plan's JSON (`read_plan`); source : the file, for messages.
    device : auto | cpu | cuda; cuda_available : whether this machine has a CUDA GPU; world_size : processes
        (torchrun's WORLD_SIZE, 1 without it).
    allow_substitute : run the nearest runnable setting where the trainer cannot run the plan's, naming each change.
    micro_batch, grad_accum : explicit overrides (sequences, micro-batches); the learning rate and schedule stay
        the plan's and each change is named.
    run_options : TrainConfig fields the plan does not set (eval_interval, eval_batches, seed, compile, ...).
    """
    rec, hp = _field(plan, "recommended", dict, source), _field(plan, "hyperparameters", dict, source)
    s = _field(rec, "setup", dict, source)
    get = lambda d, key, kind: _field(d, key, kind, source)
    model = plan_model(get(rec, "model", dict), source)
    plan_gpu = plan.get("gpu_name") or plan.get("gpu") or "a GPU"
    n_gpus, zero, offload = get(s, "n_gpus", int), get(s, "zero_stage", int), get(s, "offload_optimizer", bool)
    plan_micro, plan_accum, seq = get(s, "micro_batch", int), get(s, "grad_accum", int), get(s, "seq_len", int)
    plan_tokens = get(s, "tokens_per_step", int)
    if plan_micro * plan_accum * seq * n_gpus != plan_tokens:
        raise UsageError(f"the plan's layout runs {plan_tokens:,} tokens per step, not micro-batch x accumulation x "
                         f"sequence x GPUs = {plan_micro * plan_accum * seq * n_gpus:,}: a parallel layout the "
                         "reference trainer does not run (it runs data parallelism only)")
    precision, optimizer = get(s, "precision", str), get(s, "optimizer", str)
    recompute = get(s, "recompute", str)
    if recompute not in RECOMPUTES:
        raise UsageError(f"the plan recomputes {recompute!r}; the trainer runs {', '.join(RECOMPUTES)}")

    gaps: list[tuple[str, str, str]] = []  # (what the plan needs, the tool that runs it, the substitute)
    if optimizer != "adamw":
        gaps.append((f"the {optimizer} optimizer", OPTIMIZER_TOOLS.get(optimizer, "another trainer"),
                     f"optimizer {optimizer} -> AdamW (fp32 state, 8 bytes per parameter)"))
    if offload:
        gaps.append(("the optimizer offloaded to CPU memory", OFFLOAD_TOOL,
                     ("optimizer offload -> none: the state stays on the device (the plan offloaded it because it "
                     "did not fit: expect out-of-memory on the plan's GPU)")))
    if zero in ZERO_TOOLS:
        gaps.append((f"ZeRO stage {zero}", ZERO_TOOLS[zero],
                     f"ZeRO stage {zero} -> FSDP (ZeRO-3): the same updates, with parameters sharded too"))
    elif zero not in (0, 3):
        raise UsageError(f"the plan's ZeRO stage {zero} is not 0-3; {WRITE_A_PLAN}")
    on_cpu = device == "cpu"
    if not on_cpu and precision not in PRECISION_TO_TRAINER:
        gaps.append((f"{precision} precision", PRECISION_TOOLS.get(precision, "another trainer"),
                     f"precision {precision} -> bf16 autocast with fp32 weights"))
    accum = plan_accum
    if n_gpus != world_size:
        scaled = plan_accum * n_gpus / world_size
        if scaled != int(scaled):
            raise UsageError(f"the plan runs on {n_gpus} GPUs and this is {world_size} process(es), which cannot "
                             f"keep its batch: launch with torchrun --nproc-per-node {n_gpus}")
        accum = int(scaled)
        gpus, procs = _plural(n_gpus, "GPU", "GPUs"), _plural(world_size, "process", "processes")
        gaps.append((f"{gpus} in data parallel, where this run has {procs}",
                     f"torchrun --nproc-per-node {n_gpus} flopscalc train --from-plan ...",
                     (f"{gpus} -> {procs}: gradient accumulation {plan_accum} -> {accum}, the same "
                      f"{plan_tokens:,} tokens per step")))
    if gaps and not allow_substitute:
        need = "; ".join(f"{what} (run it with {tool})" for what, tool, _ in gaps)
        raise UsageError(f"the plan needs what the reference trainer cannot run: {need}; use that tool, or pass "
                         "--allow-substitute to run the nearest setup the trainer can (each change is listed)")
    changes = [sub for _, _, sub in gaps]
    if not on_cpu and not cuda_available:
        raise UsageError(f"the plan is for {plan_gpu} and this machine has no CUDA GPU; pass --device cpu to run "
                         "it on the CPU (fp32, slow for anything but a tiny plan)")
    if on_cpu:
        run_precision = "fp32"
        if precision != "fp32":
            changes.append(f"precision {precision} -> fp32 on the CPU (--device cpu; the plan's is for {plan_gpu})")
    else:
        run_precision = PRECISION_TO_TRAINER.get(precision, "bf16")
    parallel = "fsdp" if (zero in ZERO_TOOLS or zero == 3) else "ddp"
    if micro_batch is not None and micro_batch != plan_micro:
        changes.append(f"micro-batch {plan_micro} -> {micro_batch} (--micro-batch)")
    if grad_accum is not None and grad_accum != accum:
        changes.append(f"gradient accumulation {accum} -> {grad_accum} (--grad-accum)")
    micro = plan_micro if micro_batch is None else micro_batch
    accum = accum if grad_accum is None else grad_accum
    tokens = micro * accum * seq * world_size
    if tokens != plan_tokens:
        changes.append(f"tokens per step {plan_tokens:,} -> {tokens:,}; the learning rate and schedule stay the "
                       "plan's")
    betas = get(hp, "adam_betas", list)
    if len(betas) != 2:
        raise UsageError(f"plan file {source}: 'hyperparameters.adam_betas' should be two numbers, got {betas!r}")
    milestones = tuple(tuple(m) for m in get(hp, "milestones", list))
    config = TrainConfig(
        model=model, micro_batch=micro, seq_len=seq, grad_accum=accum, max_steps=get(rec, "n_steps", int),
        learning_rate=get(hp, "learning_rate", (int, float)), min_lr_ratio=get(hp, "min_lr_ratio", (int, float)),
        warmup_steps=get(hp, "plan_warmup_steps", int), schedule=get(hp, "schedule", str), milestones=milestones,
        weight_decay=get(hp, "weight_decay", (int, float)), beta1=betas[0], beta2=betas[1],
        grad_clip=get(hp, "grad_clip", (int, float)), device=device, precision=run_precision,
        attention="sdpa" if get(s, "flash", bool) else "math", recompute=recompute, parallel=parallel,
        **run_options)
    return PlanRun(config, tuple(changes), get(rec["model"], "n_params", int), plan_tokens, plan_gpu, source)
