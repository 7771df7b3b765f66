"""The training loop: AdamW, gradient accumulation, warm-up + cosine LR, clipping, validation, checkpoints.

Speed settings follow nanoGPT / llm.c: fused AdamW, bf16 autocast with TF32 for the rest of
the fp32 matmuls, ``scaled_dot_product_attention`` (flash kernels on CUDA), optional ``torch.compile``.
Ctrl-C (SIGINT) finishes the current step, saves a checkpoint and returns cleanly; a second Ctrl-C
interrupts at once.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..flops import training_flops_per_token
from ..perf.utilization import model_flops_utilization
from .checkpoint import (
    check_run_settings,
    load_checkpoint,
    rng_state,
    run_settings,
    save_checkpoint,
    set_rng_state,
    shape_of,
)
from .config import TrainConfig, learning_rate_at
from .data import Batches
from .distributed import (
    DistInfo,
    any_rank,
    gradient_sync,
    init_process_group,
    mean_over_ranks,
    pick_device,
    wrap_model,
)
from .model import build_model


@dataclass(frozen=True)
class StepMetrics:
    """What one optimizer step did. ``loss`` is the mean over the global batch (nats / token)."""

    step: int  # optimizer steps done, 1-based
    loss: float
    lr: float
    grad_norm: float  # global norm before clipping
    step_time_s: float
    tokens_per_s: float  # all ranks together
    mfu: float | None  # achieved model FLOP/s over the peak of all devices, when a peak is known
    tokens_seen: int
    val_loss: float | None = None


@dataclass
class TrainResult:
    steps_done: int
    history: list[StepMetrics] = field(default_factory=list)
    interrupted: bool = False
    checkpoint_path: Path | None = None

    @property
    def final_val_loss(self) -> float | None:
        vals = [m.val_loss for m in self.history if m.val_loss is not None]
        return vals[-1] if vals else None


def _bf16_native(device: torch.device) -> bool:
    """bf16 tensor cores (Ampere, sm80, and later); pre-Ampere GPUs only emulate bf16, slowly."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without `including_emulation` reports native support only
        return torch.cuda.is_bf16_supported()


def _tf32_capable(device: torch.device) -> bool:
    """TF32 tensor cores exist from Ampere (compute capability 8.0) on (NVIDIA A100 whitepaper)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto``: bf16 where the GPU has bf16 tensor cores, fp32 elsewhere (CPU bf16 autocast is slower)."""
    if requested != "auto":
        return requested
    if device.type == "cuda" and _bf16_native(device):
        return "bf16"
    return "fp32"


def peak_precision(precision: str, device: torch.device) -> str:
    """The `flopscalc.hardware.Precision` whose peak the matmuls run at (what MFU divides by)."""
    if precision == "bf16":
        return "bf16"
    return "tf32" if _tf32_capable(device) else "fp32"  # TF32 is switched on for fp32 matmuls on Ampere+


class _StopOnSigint:
    """First SIGINT asks the loop to stop at the next step boundary; the second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """One training run of the reference GPT-2 on token arrays (numpy, e.g. memory-mapped files)."""

    def __init__(self, cfg: TrainConfig, train_tokens: np.ndarray, val_tokens: np.ndarray | None = None, *,
                 checkpoint_path: str | Path | None = None, callbacks: list[Callable[[StepMetrics], None]] = (),
                 peak_flop_per_s: float | None = None, dist: DistInfo | None = None,
                 data_names: tuple[str, str] = ("training tokens", "validation tokens")):
        self.cfg, self.dist = cfg, dist or DistInfo()
        self.device = pick_device(cfg.device, self.dist)
        init_process_group(self.dist, self.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.peak_flop_per_s = peak_flop_per_s  # one device, for the precision in `peak_precision`
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.callbacks = list(callbacks)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for fp32 matmuls (Ampere+)
            torch.backends.cudnn.allow_tf32 = True
        self._seed(cfg.seed)
        self.raw_model = build_model(cfg.model, attention=cfg.attention, recompute=cfg.recompute)
        if cfg.lora_rank:  # adapters before DDP/FSDP/compile wrap the module, so they see the final parameters
            from .lora import apply_lora

            apply_lora(self.raw_model, cfg.lora_rank, cfg.lora_scale_alpha, cfg.lora_target_names)
        fsdp = self.dist.enabled and cfg.parallel == "fsdp"
        if not fsdp:  # FSDP moves each block to the GPU as it shards it: the whole model never sits on one GPU
            self.raw_model.to(self.device)
        if cfg.compile and fsdp:
            # FSDP2's hooks are not traceable (dynamo skips the root's forward), so compile each block in
            # place before sharding it, as torchtitan does
            for block in self.raw_model.h:
                block.compile()
        model = wrap_model(self.raw_model, self.dist, self.device, cfg.parallel, self.precision)
        # DDP: compile the wrapped model ("torch.compile(DDP(model))", PyTorch's DDP + compile notes). The raw
        # module keeps its own state-dict keys either way, so checkpoints do not depend on --compile.
        self.model = torch.compile(model) if cfg.compile and not fsdp else model
        self.optimizer = self._make_optimizer()
        vocab = cfg.model.vocab_size
        self.train_batches = Batches(train_tokens, cfg.micro_batch, cfg.seq_len, vocab_size=vocab,
                                     rank=self.dist.rank, world=self.dist.world_size, name=data_names[0])
        self.val_tokens, self.val_name = val_tokens, data_names[1]
        self.step = 0
        self.resume_note: str | None = None  # set by `resume` for a checkpoint without stored settings
        self.model_flops_per_token = training_flops_per_token(cfg.model, cfg.seq_len).model_flops_per_token
        if cfg.lora_rank:  # the FLOPs a LoRA step does: frozen linears skip their weight gradients (finetune.flops)
            from .lora import lora_model_flops_per_token

            self.model_flops_per_token = lora_model_flops_per_token(cfg.model, cfg.seq_len, cfg.lora_rank,
                                                                    cfg.lora_target_names)

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # seeds every CUDA device too

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.raw_model.parameters() if p.requires_grad]
        # decay matrices (and embeddings), not gains and biases (nanoGPT configure_optimizers)
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        # fused: one kernel for the whole update (PyTorch AdamW docs), on CUDA and, since torch 2.4, on CPU, so
        # the CPU tests run a GPU run's optimizer path
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 fused=True)

    def _autocast(self):
        # Kept under FSDP's bf16 policy too: the policy casts whole modules' weights and inputs ("Unlike autocast, this
        # applies mixed precision at the module level, not op level", PyTorch docs, MixedPrecisionPolicy), so autocast
        # still runs layer norm, softmax and the cross-entropy in fp32, as in one process (torch.amp's fp32 op list)
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ steps

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over ``grad_accum`` micro-batches.

        Returns the global mean loss and the gradient norm as device tensors (no host sync here, so a
        benchmark can time steps back to back).
        """
        cfg = self.cfg
        lr = learning_rate_at(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            x, y = self.train_batches.next()
            x, y = self._to_device(x), self._to_device(y)
            with gradient_sync(self.model, micro == cfg.grad_accum - 1):
                # autocast around the forward only (torch.amp docs advise against backward under autocast); the
                # logits are not kept, or they would stay alive through the next micro-batch's forward
                with self._autocast():
                    loss = self.model(x, y)[1]
                (loss / cfg.grad_accum).backward()  # gradients of the mean over all micro-batches
            loss_sum += loss.detach().float()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")  # inf: measure the norm, clip nothing
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        self.optimizer.step()
        self.step += 1
        loss_mean = mean_over_ranks(loss_sum / cfg.grad_accum, self.dist)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2 returns a DTensor
            grad_norm = grad_norm.full_tensor()
        return loss_mean, grad_norm

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean loss over ``eval_batches`` validation micro-batches from the start of the split (nats / token)."""
        if self.val_tokens is None:
            return None
        cfg = self.cfg
        batches = Batches(self.val_tokens, cfg.micro_batch, cfg.seq_len, vocab_size=cfg.model.vocab_size,
                          rank=self.dist.rank, world=self.dist.world_size, name=self.val_name)
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for _ in range(cfg.eval_batches):
            x, y = batches.next()
            with self._autocast():
                loss = self.model(self._to_device(x), self._to_device(y))[1]
            total += loss.float()
        self.model.train()
        return float(mean_over_ranks(total / cfg.eval_batches, self.dist))

    def train(self, stop_after: int | None = None) -> TrainResult:
        """Train to ``max_steps`` (or to step ``stop_after``), then save a checkpoint when a path is set."""
        cfg = self.cfg
        end = cfg.max_steps if stop_after is None else min(stop_after, cfg.max_steps)
        result = TrainResult(steps_done=self.step)
        tokens_per_step = cfg.tokens_per_micro_batch * cfg.grad_accum * self.dist.world_size
        self.model.train()
        with _StopOnSigint() as stop:
            while self.step < end:
                if any_rank(stop.requested, self.dist, self.device):  # all ranks stop at the same step
                    result.interrupted = True
                    break
                t0 = time.perf_counter()
                loss_t, norm_t = self.train_step()
                loss, grad_norm = float(loss_t), float(norm_t)  # waits for the device
                dt = time.perf_counter() - t0
                val = None
                if self.step == cfg.max_steps or (cfg.eval_interval and self.step % cfg.eval_interval == 0):
                    val = self.evaluate()
                tokens_per_s = tokens_per_step / dt
                mfu = None
                if self.peak_flop_per_s:
                    mfu = model_flops_utilization(self.model_flops_per_token, tokens_per_s, self.dist.world_size,
                                                  self.peak_flop_per_s)  # PaLM App. B
                metrics = StepMetrics(self.step, loss, learning_rate_at(cfg, self.step - 1), grad_norm, dt,
                                      tokens_per_s, mfu, self.step * tokens_per_step, val)
                result.history.append(metrics)
                if self.dist.is_main:
                    for callback in self.callbacks:
                        callback(metrics)
                if cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0 and self.step < end:
                    self.save()
            result.interrupted = result.interrupted or stop.requested
        result.steps_done = self.step
        if self.checkpoint_path is not None:
            result.checkpoint_path = self.save()
        return result

    # ------------------------------------------------------------------ checkpoints

    def state_payload(self) -> dict:
        """Everything a resume needs, as tensors and plain containers (see `checkpoint`)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        # full (unsharded) tensors keyed by parameter name, whether one process, DDP or FSDP wrote them,
        # so any of them can resume any other
        opts = StateDictOptions(full_state_dict=True, cpu_offload=self.dist.enabled)
        model_state, optim_state = get_state_dict(self.raw_model, self.optimizer, options=opts)
        return {
            "model_config": shape_of(self.cfg.model),
            "step": self.step,
            "model": model_state,
            "optimizer": optim_state,
            "data": self.train_batches.state_dict(),
            "world_size": self.dist.world_size,
            "rng": rng_state(self.device),
            "lora": self._lora_spec(),
            "run_settings": run_settings(self.cfg),
        }

    def _lora_spec(self) -> dict:
        """The adapters' settings, saved and checked on resume ({} without LoRA). The checkpoint's model state holds
        the frozen base and the adapters both, so a resume restores either exactly."""
        cfg = self.cfg
        if not cfg.lora_rank:
            return {}
        return {"rank": cfg.lora_rank, "alpha": cfg.lora_scale_alpha, "targets": list(cfg.lora_target_names)}

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint (rank 0 writes; every rank takes part in gathering FSDP shards)."""
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            return None
        payload = self.state_payload()
        if self.dist.is_main:
            save_checkpoint(path, payload)
        if self.dist.enabled:
            torch.distributed.barrier()
        return path

    def resume(self, path: str | Path, new_schedule: bool = False) -> int:
        """Load a checkpoint into this trainer (same model shape, LoRA, schedule and batch settings); returns the step
        it continues from. ``new_schedule``: this run's schedule settings may differ from the checkpoint's (see
        `checkpoint.check_run_settings`). ``resume_note`` says what a new schedule changed, or that the checkpoint
        predates stored settings (then unchecked)."""
        ckpt = load_checkpoint(path, expect_model=self.cfg.model)
        if ckpt.get("lora", {}) != self._lora_spec():
            raise UsageError(f"checkpoint {path} was written with LoRA {ckpt.get('lora') or 'off'}, this run has "
                             f"{self._lora_spec() or 'LoRA off'}; pass the same --lora-rank, --lora-alpha and "
                             "--lora-targets, or a fresh --checkpoint path")
        self.resume_note = check_run_settings(path, ckpt, self.cfg, new_schedule, self.dist.world_size)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(self.raw_model, self.optimizer, model_state_dict=ckpt["model"],
                       optim_state_dict=ckpt["optimizer"], options=StateDictOptions(full_state_dict=True))
        self.step = int(ckpt["step"])
        self.train_batches.load_state_dict(ckpt["data"])
        set_rng_state(ckpt["rng"], self.device)
        return self.step
