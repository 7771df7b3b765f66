"""`TrainConfig`: every setting of a training run, validated on construction, and the LR schedule.

Torch-free, so the CLI can validate options before paying torch's import. Defaults follow GPT-3's
125M recipe (Brown et al. 2020, Table 2.1 and App. B) as nanoGPT uses it for GPT-2 small.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

from ..errors import UsageError
from ..model import ModelConfig, Position
from ..scaling.hyperparams import Schedule, schedule_multiplier

# Peak learning rate of GPT-3 Small, 125M parameters (Brown et al. 2020, Table 2.1: 6.0e-4).
DEFAULT_LR = 6e-4
# Cosine decay "down to 10% of its value" (Brown et al. 2020, App. B).
DEFAULT_MIN_LR_RATIO = 0.1
# Adam beta1 = 0.9, beta2 = 0.95, eps = 1e-8 (Brown et al. 2020, App. B).
DEFAULT_BETAS = (0.9, 0.95)
DEFAULT_EPS = 1e-8
# Weight decay 0.1 (Brown et al. 2020, App. B), on matrices only as nanoGPT does (not gains/biases).
DEFAULT_WEIGHT_DECAY = 0.1
# Clip the global gradient norm at 1.0 (Brown et al. 2020, App. B).
DEFAULT_GRAD_CLIP = 1.0
# nanoGPT's seed; any fixed value makes runs repeatable.
DEFAULT_SEED = 1337

# Intra-op threads per process when training on a CPU, unless asked otherwise: one. On this project's shared 2-core
# test machine two threads made tiny-model training 9-29x slower than one (issue 18, measured while other work ran):
# threads that wait for a busy core stall every op, and a tiny model's ops are too short to gain from a second core.
# One thread is also the only count that gives the same step time on any machine, so a CPU calibration reproduces.
DEFAULT_CPU_THREADS = 1

# `flopscalc train`'s run length and warm-up when not given: 100 warm-up steps of 1,000, a tenth of the run.
DEFAULT_MAX_STEPS = 1000
DEFAULT_WARMUP_STEPS = 100
_SHARE = Fraction(DEFAULT_WARMUP_STEPS, DEFAULT_MAX_STEPS)  # the rule a short run's default warm-up is cut by
_SHARE_WORDS = {(1, 2): "half", (1, 4): "a quarter", (1, 5): "a fifth", (1, 10): "a tenth", (1, 20): "a twentieth"}
# How a warm-up cut from the default reads in every message (`warmup_for_run`, the checkpoint's resume checks).
DEFAULT_WARMUP_WORDS = f"the default: {_SHARE_WORDS.get((_SHARE.numerator, _SHARE.denominator), _SHARE)} of --steps"

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL_MODES = ("ddp", "fsdp")
ATTENTIONS = ("sdpa", "math")
RECOMPUTES = ("none", "selective", "full")
SCHEDULES = tuple(s.value for s in Schedule)


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Parameters (units)
    ------------------
    model : ModelConfig
    micro_batch : sequences per device per forward pass (count)
    seq_len : tokens per sequence (count; at most ``model.block_size`` with learned positions, any length with RoPE or
        no positions, where ``block_size`` is only the trained context)
    grad_accum : micro-batches accumulated per optimizer step (count)
    max_steps : optimizer steps of the whole run (count); the schedule ends here
    learning_rate : peak learning rate; min_lr_ratio: floor of the cosine as a fraction of it
    warmup_steps : linear warm-up length (steps)
    schedule : cosine | multistep, the decay after warm-up (`flopscalc.scaling.hyperparams.schedule_multiplier`)
    milestones : multistep only: ((fraction of the steps, multiplier of the peak), ...), fractions increasing,
        e.g. DeepSeek LLM's ((0.8, 0.316), (0.9, 0.1)) (sec. 2.3)
    weight_decay, beta1, beta2, eps : AdamW hyper-parameters
    grad_clip : global gradient-norm clip (0 turns clipping off)
    eval_interval : steps between validation passes (0: only at the end); eval_batches per pass
    checkpoint_interval : steps between checkpoints (0: only at the end and on Ctrl-C)
    device : auto | cpu | cuda;  precision : auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile : wrap the model in ``torch.compile``;  parallel : ddp | fsdp when several processes run
    lora_rank : LoRA rank r (0: train every weight); lora_alpha : the adapters' scale alpha (alpha / r multiplies
        B A x; default r); lora_targets : comma list of q, k, v, o, gate, up, down or all-linear (default)
        (`flopscalc.train.lora`)
    """

    model: ModelConfig
    micro_batch: int = 8
    seq_len: int = 1024
    grad_accum: int = 1
    max_steps: int = DEFAULT_MAX_STEPS
    learning_rate: float = DEFAULT_LR
    min_lr_ratio: float = DEFAULT_MIN_LR_RATIO
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    schedule: str = Schedule.cosine.value
    milestones: tuple = ()
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    beta1: float = DEFAULT_BETAS[0]
    beta2: float = DEFAULT_BETAS[1]
    eps: float = DEFAULT_EPS
    grad_clip: float = DEFAULT_GRAD_CLIP
    eval_interval: int = 250
    eval_batches: int = 20
    checkpoint_interval: int = 0
    seed: int = DEFAULT_SEED
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    attention: str = "sdpa"
    recompute: str = "none"
    parallel: str = "ddp"
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: str | None = None

    def __post_init__(self) -> None:
        positive = ("micro_batch", "seq_len", "grad_accum", "max_steps", "eval_batches")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{'--steps' if name == 'max_steps' else _opt(name)} must be a positive integer, "
                                 f"got {value!r}")
        for name in ("warmup_steps", "eval_interval", "checkpoint_interval", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{_opt(name)} must be a whole number >= 0, got {value!r}")
        why = model_unsupported(self.model)
        if why:
            raise UsageError(why)
        if self.model.seq_limited_by_context and self.seq_len > self.model.block_size:  # RoPE/ALiBi/none: no limit
            raise UsageError(f"--seq {self.seq_len} is longer than the model's block_size "
                             f"{self.model.block_size}, the rows of its learned position table; pass a shorter "
                             "--seq or a larger --block-size")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise UsageError(f"--lr must be a positive number, got {self.learning_rate!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UsageError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{_opt(name)} must be a number >= 0, got {value!r}")
        _check_schedule(self.schedule, self.milestones)
        for name, choices in (("device", DEVICES), ("precision", PRECISIONS), ("parallel", PARALLEL_MODES),
                              ("attention", ATTENTIONS), ("recompute", RECOMPUTES)):
            if getattr(self, name) not in choices:
                raise UsageError(f"--{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        _check_lora(self)

    @property
    def tokens_per_micro_batch(self) -> int:
        """Tokens one device processes per forward pass."""
        return self.micro_batch * self.seq_len

    @property
    def lora_scale_alpha(self) -> float:
        """LoRA's alpha: as given, else the rank (scale 1; peft's defaults r = alpha = 8; Hu et al. 2021, sec. 4.1
        set alpha to the first r tried and did not tune it)."""
        return float(self.lora_rank if self.lora_alpha is None else self.lora_alpha)

    @property
    def lora_target_names(self) -> tuple[str, ...]:
        """The targeted linears in block order (`flopscalc.finetune.adapters.TARGETS`); () without LoRA."""
        if not self.lora_rank:
            return ()
        from ..finetune.adapters import ALL_LINEAR, parse_targets

        names = parse_targets(ALL_LINEAR if self.lora_targets is None else self.lora_targets, "--lora-targets")
        return tuple(t for t in names if t != "gate" or self.model.mlp.n_matrices == 3)


def model_unsupported(model: ModelConfig) -> str | None:
    """Why the reference modules (`flopscalc.train.model`) cannot build ``model``, in one line; None when they can."""
    if model.is_moe:
        return ("the reference trainer has no mixture-of-experts block; flops, memory and plan model it "
                "(--experts), bench and train need a dense model")
    if model.pos is Position.alibi:
        return "the reference trainer has no ALiBi attention bias; use --pos rope, learned or none for bench and train"
    if model.pos is Position.rope and model.head_dim % 2:
        return (f"RoPE rotates pairs of features, so the head width must be even, got {model.head_dim}; "
                "change --n-embd or --n-head (or use --pos learned)")
    return None


def _check_lora(cfg: TrainConfig) -> None:
    """Refuse LoRA settings the trainer cannot run or whose FLOPs are not modelled (one line each)."""
    from ..finetune.adapters import ALL_LINEAR, parse_targets

    rank = cfg.lora_rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise UsageError(f"--lora-rank must be a whole number >= 0 (0: no LoRA), got {rank!r}; try --lora-rank 8")
    if not rank:
        given = [o for o, v in (("--lora-alpha", cfg.lora_alpha), ("--lora-targets", cfg.lora_targets))
                 if v is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to LoRA; give "
                             "--lora-rank too (e.g. --lora-rank 8)")
        return
    if cfg.lora_alpha is not None and not (math.isfinite(cfg.lora_alpha) and cfg.lora_alpha > 0):
        raise UsageError(f"--lora-alpha must be a positive number, got {cfg.lora_alpha!r}; try --lora-alpha {rank}")
    text = ALL_LINEAR if cfg.lora_targets is None else cfg.lora_targets
    named = parse_targets(text, "--lora-targets")  # all-linear skips a gate the MLP lacks; a named gate is refused
    if "gate" in named and text.strip().lower() != ALL_LINEAR and cfg.model.mlp.n_matrices != 3:
        raise UsageError(f"{cfg.model.name or 'this model'} has a 2-matrix MLP with no gate projection; drop 'gate' "
                         "from --lora-targets")
    if cfg.model.parallel_block or cfg.model.qk_norm.value != "none":
        raise UsageError("LoRA FLOPs are modelled for sequential blocks without q/k norm (flopscalc.finetune); "
                         "train this model without --lora-rank, or use a Llama, Mistral, Qwen2 or GPT-2 shape")


def _check_schedule(schedule: str, milestones: tuple) -> None:
    """Refuse a schedule the trainer cannot run, or milestones that contradict it (one line each)."""
    if schedule not in SCHEDULES:
        raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == Schedule.cosine.value:
        if milestones:
            raise UsageError("milestones belong to the multistep schedule; the cosine schedule has none")
        return
    if not milestones:
        raise UsageError("the multistep schedule needs its milestones ((fraction of the steps, multiplier), ...), "
                         "e.g. DeepSeek LLM's ((0.8, 0.316), (0.9, 0.1))")
    last = 0.0
    for m in milestones:
        ok = isinstance(m, tuple) and len(m) == 2 and all(isinstance(v, (int, float)) for v in m)
        if not (ok and last < m[0] < 1 and 0 < m[1] <= 1):
            raise UsageError(f"multistep milestones must be (fraction in (0, 1), increasing; multiplier in (0, 1]) "
                             f"pairs, got {milestones!r}")
        last = m[0]


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def learning_rate_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): the peak times the schedule's multiplier.

    Linear warm-up, then half a cosine to ``min_lr_ratio`` x peak at ``max_steps`` (Loshchilov & Hutter 2017, SGDR
    eq. 5; GPT-3 App. B; Hoffmann et al. 2022 App. B) or DeepSeek LLM's multi-step (sec. 2.3): one formula, the
    planner's `schedule_multiplier`, so a plan and the run it starts follow the same curve. A pure function of the
    step, so resuming at a step resumes the schedule exactly.
    """
    return cfg.learning_rate * schedule_multiplier(step, cfg.max_steps, cfg.warmup_steps, cfg.min_lr_ratio,
                                                   cfg.schedule, cfg.milestones)


def warmup_for_run(warmup_steps: int, max_steps: int, given: bool) -> tuple[int, str | None]:
    """The warm-up a run of ``max_steps`` uses, and a note when it is not the one asked for.

    The learning rate climbs to its peak over the warm-up ((step + 1) / warmup_steps, `schedule_multiplier`), so a
    warm-up of the whole run or longer never decays and, when longer, never reaches the peak. An explicit
    ``--warmup-steps`` (``given``) that long is refused; the default (`DEFAULT_WARMUP_STEPS`), written for the
    default run length, is cut to the same share of a shorter run (`DEFAULT_WARMUP_STEPS` / `DEFAULT_MAX_STEPS`)
    and the note says so. Checked before ``max_steps`` is known to be valid, so non-integers pass through.
    """
    if not isinstance(warmup_steps, int) or not isinstance(max_steps, int) or max_steps < 1 or warmup_steps < max_steps:
        return warmup_steps, None
    if given:
        raise UsageError(f"--warmup-steps {warmup_steps} is not shorter than --steps {max_steps}: the learning rate "
                         f"would {'never reach' if warmup_steps > max_steps else 'reach'} --lr "
                         f"{'' if warmup_steps > max_steps else 'only at the last step '}and never decay; give "
                         f"--warmup-steps below {max_steps} (0: none), or more --steps")
    cut = max_steps * DEFAULT_WARMUP_STEPS // DEFAULT_MAX_STEPS
    instead = (f"warming up over {cut} step{'s' if cut != 1 else ''} instead ({DEFAULT_WARMUP_WORDS})" if cut
               else f"no warm-up instead ({DEFAULT_WARMUP_WORDS}: under one step)")
    return cut, (f"the default warm-up of {DEFAULT_WARMUP_STEPS} steps is not shorter than --steps {max_steps}: "
                 f"{instead} (--warmup-steps to choose)")


@dataclass(frozen=True)
class ThreadChoice:
    """Intra-op threads a benchmark or run uses, why, and how busy the machine was when it started.

    n_threads : threads torch is set to (count); reason : why that count; n_cores : the logical CPUs this process may
    use; load_avg_1min : the 1-minute load average at the start (runnable processes); oversubscribed : load above
    cores.
    """

    n_threads: int
    reason: str
    n_cores: int
    load_avg_1min: float

    @property
    def oversubscribed(self) -> bool:
        """More runnable work than cores when we started: timings will be slower than on an idle machine."""
        return self.load_avg_1min > self.n_cores

    def note(self, used: int | None = None) -> str:
        """One line for a profile or report: the count torch used, the reason, and the load."""
        used = self.n_threads if used is None else used
        text = f"CPU threads: torch used {used} intra-op thread{'s' if used != 1 else ''} ({self.reason})"
        if self.oversubscribed:
            return (text + f"; the machine was oversubscribed at the start (load average {self.load_avg_1min:.2f} "
                    f"on {self.n_cores} cores): timings are slower than on an idle machine")
        return text + f"; load average {self.load_avg_1min:.2f} on {self.n_cores} cores at the start"


def usable_cores() -> int:
    """Logical CPUs this process may run on: its affinity mask (``os.sched_getaffinity``, Linux), else
    ``os.cpu_count()`` where the platform has no affinity call; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(requested: int | None, n_cores: int | None = None) -> int:
    """``requested`` (--threads) when it is a whole number from 1 to the cores this process may use (`usable_cores`);
    a UsageError otherwise. torch.set_num_threads takes any count: 100,000 crashed the process (SIGSEGV, no message)
    and 1,000 on 2 cores ran a one-layer benchmark for over a minute (review r4), so a count above the cores is
    refused, before torch is imported. Returns the core count it checked against."""
    cores = n_cores if n_cores is not None else usable_cores()
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise UsageError(f"--threads must be a positive integer, got {requested!r}; 1 is the reproducible choice")
    if requested is not None and requested > cores:
        raise UsageError(f"--threads {requested} is more than the {cores} CPU core{'s' if cores != 1 else ''} this "
                         f"process may use; give 1 to {cores} (1 is the reproducible choice)")
    return cores


def choose_threads(requested: int | None, device_type: str, n_cores: int | None = None,
                   load_avg_1min: float | None = None) -> ThreadChoice | None:
    """The intra-op thread count for a run on ``device_type`` ("cpu" or "cuda"): ``requested`` when given (1 to the
    usable cores, `check_threads`), else ``DEFAULT_CPU_THREADS`` on a CPU; None on a GPU with nothing requested
    (torch's default is left alone)."""
    cores = check_threads(requested, n_cores)
    load = load_avg_1min if load_avg_1min is not None else (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
    if requested is not None:
        return ThreadChoice(requested, "as requested", cores, load)
    if device_type != "cpu":
        return None
    return ThreadChoice(DEFAULT_CPU_THREADS, "the default on a CPU: one per process, reproducible on a shared "
                        "machine; --threads N for more", cores, load)
