"""What a plan is asked: one frozen, validated `PlanRequest` (the budget, the GPUs, the law, the limits).

The face (`flopscalc plan`, or Python) resolves everything that needs a file first (the GPU from the database, a
saved law by name, a calibration profile) and hands the planner typed objects; the planner does no I/O.
Constructing a request checks it: every malformed or contradictory input is one `UsageError` line, in the order
the planner used to meet them, so ``plan(PlanRequest(...))`` and ``plan(gpu, duration_s, **fields)`` refuse
the same things with the same words. See docs/planner.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..hardware import GpuSpec, Precision
from ..model import ModelConfig, SeqSource, seq_source
from ..model.sequence import GIVEN, PLANNER
from ..scaling.laws import BUILTIN_LAWS, DEFAULT_LAW, ParametricLoss, ScalingLaw
from .budget import DEFAULT_MFU, DEFAULT_PRECISION, DEFAULT_UTILIZATION, ComputeBudget, check_gpu_count_bound
from .options import check_positive

if TYPE_CHECKING:
    from ..calibration import CalibrationProfile

__all__ = ["DEFAULT_SEQ_LEN", "PlanRequest"]

# Training sequence length when none is given and the plan shapes its own models: GPT-2's context (Radford et al.
# 2019, sec. 2.3: 1024 tokens). A fixed model (``model``) trains at its own default, `model.default_train_seq`.
DEFAULT_SEQ_LEN = 1024
DEFAULT_SEQ_SOURCE = "GPT-2's context, Radford et al. 2019, sec. 2.3"
# How each budget is named in the messages, and the budget kind it gives.
_BUDGET_WORDS = {"a time": "time", "a FLOP budget": "flops", "a money budget": "money"}


def _default_law() -> ScalingLaw:
    """The built-in default law (Besiroglu et al. 2024): a constant of the package, no file read."""
    return BUILTIN_LAWS[DEFAULT_LAW]


@dataclass(frozen=True)
class PlanRequest:
    """One question for the planner; every field in base units. Validated on construction (`UsageError`).

    Exactly one budget: ``duration_s``, ``flops`` or ``budget_usd``; or no budget with a fixed model trained on
    fixed ``n_tokens``, or a ``target_loss``.

    Parameters
    ----------
    gpu : GpuSpec
    duration_s : float, optional
        Wall-clock time the GPUs are yours (s). At most one of ``duration_s``, ``flops``, ``budget_usd``.
    flops : float, optional
        Model-FLOP budget (FLOP), instead of a time.
    budget_usd : float, optional
        Money (USD), instead of a time: rents GPUs at ``usd_per_gpu_hour``, or else buys electricity at
        ``usd_per_kwh`` for the GPUs' board power while busy.
    usd_per_gpu_hour, usd_per_kwh : float, optional
        Cloud price (USD per GPU-hour) and electricity price (USD/kWh) for the cost lines.
    n_gpus : int
    precision : Precision or str
        Selects the dense peak rate and the mixed-precision memory policy.
    utilization : float
        Duty cycle in (0, 1]: share of wall-clock time spent training.
    mfu : float, optional
        Stated model FLOPs utilization while busy, without recomputation (default None: the per-operation model
        predicts it per option, or ``calibration``'s profile prices it).
    calibration : CalibrationProfile, optional
        Measured MFU interpolated to each model size (``flopscalc calibrate``).
    law : ScalingLaw
        Scaling law, resolved (default: Besiroglu et al. 2024); a name is the face's to resolve
        (`scaling.io.resolve_law`), since saved laws are files.
    dataset_tokens : float, optional
        Unique tokens available; more training tokens repeat data (Muennighoff et al. 2023).
    max_wall_clock_s : float, optional
        Training must finish within this (s).
    memory_bytes : float, optional
        Memory per GPU to plan for, instead of the database's capacity (bytes).
    seq_len : int, optional
        Training sequence length (tokens). None (the default): a fixed ``model``'s default,
        `model.default_train_seq` (its pretraining length, else its context); `DEFAULT_SEQ_LEN`, 1024, for the
        models the plan shapes, a ``shaped`` model (``--params``) or ``models``. Where it came from:
        ``seq_len_source``.
    models : tuple of ModelConfig, optional
        Evaluate these instead of the shapes around the optimum.
    model : ModelConfig, optional
        Objective "fixed": plan this model only (tokens from the budget, or ``n_tokens``).
    n_tokens : float, optional
        With ``model``: train it on exactly this many tokens; the plan gives time, energy and cost.
    target_loss : float, optional
        Objective "target": the fastest run whose predicted loss reaches this (nats/token).
    explain : bool
        Work out which constraint binds and what relaxing it would buy (a few extra evaluations).
    calibration_any_device : bool
        Apply ``calibration`` even when it was measured on another device than ``gpu`` (refused otherwise);
        the plan then warns that its MFU is borrowed.
    inference_tokens : float, optional
        Tokens the model will serve over its life (count): the shapes centre on the model that minimises training
        plus inference FLOPs (Sardana et al. 2024) and the plan recommends the one nearest it that fits.
    family : str, optional
        The family whose shaping rule and presets give the candidates (`model.FAMILIES`; default GPT-2's).
    arch : dict, optional
        Architecture options for the shaped candidates, named as `model.with_architecture` names them.
    network_gbps : float, optional
        Network between nodes per GPU (Gb/s, the unit NICs are sold in), for the layout search's cluster
        (`layout.cluster_for`, as ``flopscalc step --network-gbps``). Default: by GPU generation
        (`perf.fabric.NETWORK_BYTES_PER_S_BY_ARCH`). Refused on one node, and where the layout search is off (the
        data-parallel setups are priced at the generation's network).
    layout_search : bool, optional
        Give each candidate the fastest parallel layout (TP, PP, CP, EP, ZeRO, micro-batch, recomputation) found and
        priced by the layout engine (`planner.layout`). Default: on more GPUs than one node holds when no efficiency
        is stated (``mfu``, ``calibration``); False keeps the data-parallel setup search at a constant efficiency.
    """

    gpu: GpuSpec
    duration_s: float | None = None  # wall-clock time the GPUs are yours (s)
    flops: float | None = None  # model-FLOP budget (FLOP)
    budget_usd: float | None = None  # money (USD): GPU rent, or else electricity at the board power
    usd_per_gpu_hour: float | None = None  # cloud price (USD per GPU-hour)
    usd_per_kwh: float | None = None  # electricity price (USD/kWh)
    n_gpus: int = 1
    precision: Precision = DEFAULT_PRECISION  # a str is read as a Precision
    utilization: float = DEFAULT_UTILIZATION  # duty cycle in (0, 1]
    mfu: float | None = None  # stated MFU of a step without recomputation; None: the per-operation model
    calibration: CalibrationProfile | None = None
    law: ScalingLaw = field(default_factory=_default_law)  # resolved: built-in, or saved and loaded by the face
    dataset_tokens: float | None = None  # unique tokens available (count)
    max_wall_clock_s: float | None = None  # the run must finish within this (s)
    memory_bytes: float | None = None  # memory per GPU to plan for instead of the database's (bytes)
    seq_len: int | None = None  # training sequence length (tokens); None: the default (see the docstring)
    models: tuple[ModelConfig, ...] | None = None  # evaluate these instead of the shapes around the optimum
    model: ModelConfig | None = None  # objective "fixed": plan this model only
    n_tokens: float | None = None  # with ``model``: train on exactly this many tokens (count)
    target_loss: float | None = None  # objective "target": the fastest run reaching this loss (nats/token)
    explain: bool = True  # work out which constraint binds (a few extra evaluations)
    calibration_any_device: bool = False  # apply ``calibration`` measured on another device
    inference_tokens: float | None = None  # tokens served over the model's life (count)
    family: str | None = None  # the family shaping the candidates (`model.FAMILIES`; default GPT-2's)
    arch: Mapping[str, int | float | str | bool | None] | None = None  # `model.with_architecture` options
    layout_search: bool | None = None  # None: on beyond one node without a stated efficiency
    network_gbps: float | None = None  # network between nodes per GPU (Gb/s); None: by GPU generation
    # ``model`` was shaped by a rule from a parameter count (`--params`), not a preset or a config.json: it trains at
    # `DEFAULT_SEQ_LEN` as the shapes a plan searches do (Llama-family shapes too: 8,192 would fit no 12 GB card)
    shaped: bool = False
    # where seq_len came from; set by __post_init__. An init field only so that `dataclasses.replace` carries it: a
    # default it resolved is then resolved again for the new request's model (not relabelled as given, nor carried to
    # another model); callers leave it out
    seq_len_source: SeqSource | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # normalised spellings, so the fields hold the types they name
        object.__setattr__(self, "precision", Precision(self.precision))
        prior = self.seq_len_source
        if prior is not None and prior.kind != GIVEN and self.seq_len == prior.seq_len:
            object.__setattr__(self, "seq_len", None)  # a default resolved before (`dataclasses.replace`): again
        if self.model is not None and not (self.shaped and self.seq_len is None):  # a fixed model: one rule
            src = seq_source(self.model, self.seq_len)
        elif self.seq_len is None:  # the shapes a plan searches, and a --params shape as they
            src = SeqSource(DEFAULT_SEQ_LEN, PLANNER, DEFAULT_SEQ_SOURCE)
        else:
            src = SeqSource(self.seq_len, GIVEN)
        object.__setattr__(self, "seq_len_source", src)
        object.__setattr__(self, "seq_len", src.seq_len)  # as given, else the default (checked below)
        if self.models is not None:
            object.__setattr__(self, "models", tuple(self.models))
        if not isinstance(self.law, ScalingLaw):
            raise TypeError(f"PlanRequest.law must be a ScalingLaw, got {self.law!r}; the face resolves a name with "
                            "flopscalc.scaling.io.resolve_law")
        self.budget_kind  # noqa: B018 - refuse zero, two or contradictory budgets first
        self._check_values()
        self._check_calibration()
        self._check_network()
        seq_len = self.seq_len
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise UsageError(f"sequence length must be a positive whole number of tokens, got {seq_len!r}")
        if self.inference_tokens is not None:
            self._check_inference()
        if self.fixed and (self.family is not None or any(v is not None for v in (self.arch or {}).values())):
            raise UsageError("--family and architecture options shape the models the plan tries, and --model, "
                             "--config or --params fixes the model: drop --family, or give the options with the "
                             "fixed model")
        if self.budget_kind == "money" and self.usd_per_gpu_hour is None and self.usd_per_kwh is None:
            raise UsageError("a money budget needs a price: --usd-per-gpu-hour (cloud) or --usd-per-kwh "
                             "(electricity at the GPU's board power)")
        if self.budget_kind == "money" and self.usd_per_gpu_hour is not None and self.usd_per_kwh is not None:
            # a cloud GPU-hour price includes the power it draws: buying time at it and paying electricity on top
            # counts power twice (and the budget could only be spent at one of the two prices)
            raise UsageError("--budget-usd is spent at one price: --usd-per-gpu-hour (cloud GPUs, whose hourly "
                             "price already includes power) or --usd-per-kwh (electricity for your own GPUs), not "
                             "both; drop one (without --budget-usd the plan shows both costs side by side)")
        self.nominal_budget  # noqa: B018 - the duty cycle and the stated MFU as a budget checks them

    @property
    def budget_kind(self) -> str:
        """time, flops, money, tokens (a fixed model on fixed tokens) or target; UsageError unless exactly one."""
        given = [k for k, v in (("a time", self.duration_s), ("a FLOP budget", self.flops),
                                ("a money budget", self.budget_usd)) if v is not None]
        if self.n_tokens is not None and self.model is None:
            raise UsageError("--tokens fixes the training tokens of a fixed model: add --model (or --params)")
        if self.n_tokens is not None and self.target_loss is not None:
            raise UsageError("give --tokens (train a fixed model on fixed tokens) or --target-loss, not both")
        if self.n_tokens is not None or self.target_loss is not None:
            if given and self.n_tokens is not None:
                raise UsageError(f"--tokens already fixes the run; drop {' and '.join(given)} (use --max-days to "
                                 "cap time)")
            return "tokens" if self.n_tokens is not None else "target"
        if len(given) != 1:
            raise UsageError("give exactly one budget: a time (--days/--hours/--duration), a FLOP budget (--flops) "
                             "or a money budget (--budget-usd with --usd-per-gpu-hour or --usd-per-kwh); got "
                             + (f"{len(given)} ({' and '.join(given)})" if given else "none")
                             + "; or fix the run with --model and --tokens, or aim for --target-loss")
        return _BUDGET_WORDS[given[0]]

    @property
    def objective(self) -> str:
        """loss (the lowest predicted loss), fixed (one model) or target (the fastest run reaching a loss)."""
        return "target" if self.budget_kind == "target" else ("fixed" if self.model is not None else "loss")

    @property
    def fixed(self) -> bool:
        """The models are given (``model`` or ``models``), not shaped around the law's optimum."""
        return self.model is not None or self.models is not None

    @property
    def stated_mfu(self) -> float:
        """The efficiency a budget starts from: ``mfu``, or `DEFAULT_MFU` until the recommended run gives its own."""
        return self.mfu if self.mfu is not None else DEFAULT_MFU

    @property
    def nominal_budget(self) -> ComputeBudget:
        """One second of the GPUs at the stated efficiency: the rate a FLOP or money budget is converted at."""
        return ComputeBudget(self.gpu, self.n_gpus, 1.0, self.precision, self.utilization, self.stated_mfu)

    def _check_values(self) -> None:
        for what, value in (("the FLOP budget", self.flops), ("the dataset size (unique tokens)", self.dataset_tokens),
                            ("the maximum wall-clock time", self.max_wall_clock_s),
                            ("memory per GPU", self.memory_bytes), ("the electricity price", self.usd_per_kwh),
                            ("the GPU-hour price", self.usd_per_gpu_hour), ("the training tokens", self.n_tokens),
                            ("the target loss", self.target_loss), ("the money budget", self.budget_usd),
                            ("the inference tokens", self.inference_tokens)):
            check_positive(value, what)
        n_gpus = self.n_gpus
        if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
            raise UsageError(f"number of GPUs must be a whole number >= 1, got {n_gpus!r}")
        check_gpu_count_bound(n_gpus)

    def _check_calibration(self) -> None:
        cal = self.calibration
        if self.mfu is not None and cal is not None:
            raise UsageError("give --mfu or --calibration, not both: the profile's measured MFU replaces the stated "
                             "one")
        if self.calibration_any_device and cal is None:
            raise UsageError("--calibration-any-device applies a --calibration profile measured on another device: "
                             "give the profile too, or drop it")
        if cal is not None and not self.calibration_any_device and not cal.measured_on(self.gpu.key):
            where = ("" if cal.gpu_key else " (not a GPU of the database)")
            raise UsageError(f"the calibration profile was measured on {cal.device}{where}, the plan is for "
                             f"{self.gpu.key} ({self.gpu.name}); calibrate on that GPU, drop --calibration, or pass "
                             "--calibration-any-device to apply it anyway")

    def _check_network(self) -> None:
        """A --network-gbps is refused as `step` refuses it (outside `fabric.MIN_NETWORK_GBPS` ..
        `fabric.MAX_NETWORK_GBPS`, or on one node), and where the layout search is off: the plan beyond a node then
        weighs the data-parallel setups alone, at the GPU generation's network. With the layout search on, the
        network prices the layouts and the data-parallel setups weighed beside them alike (`layout.cluster_for`,
        `layout.data_parallel_time_model`)."""
        if self.network_gbps is None:
            return
        from ..perf.fabric import check_network_gbps
        from .speed import option_keeping_layouts_off, uses_layout_search

        check_network_gbps(self.network_gbps, self.n_gpus)
        if not uses_layout_search(self.n_gpus, self.precision, self.mfu, self.calibration, self.layout_search):
            why = (option_keeping_layouts_off(self.mfu, self.calibration, self.layout_search)
                   or f"--precision {self.precision.value}")
            raise UsageError(f"--network-gbps sets the network the layout search prices, and with {why} the plan "
                             "weighs data-parallel setups only, priced on the GPU generation's network, so it would be "
                             "ignored: drop --network-gbps, or drop " + why)

    def _check_inference(self) -> None:
        """Refuse what the inference-aware optimum cannot honour, one line each."""
        if self.dataset_tokens is not None:
            raise UsageError("--inference-tokens cannot be combined with --dataset-tokens: the inference-aware "
                             "optimum (Sardana et al. 2024) has no form for repeated data; drop one of them")
        if not isinstance(self.law.loss_form, ParametricLoss):
            raise UsageError(f"--inference-tokens needs a law with a parametric loss E + A/N^alpha + B/D^beta, and "
                             f"{self.law.name!r} has none; use --law besiroglu2024 or --law chinchilla")
        if self.fixed:
            raise UsageError("--inference-tokens chooses the model size, and --model/--params fixes it: drop "
                             "--model/--params for the life-cycle optimum that trains in this budget, or drop "
                             "--inference-tokens; 'flopscalc scaling optimal --flops C --inference-tokens T' gives "
                             "another optimum, at the loss C buys, training past C")
