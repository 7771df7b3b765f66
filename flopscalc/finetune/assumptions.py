"""The assumptions a fine-tuning plan states: one row per fact its memory and time models used, nothing else.

Each row is built from the `FinetuneSetup` (method, quantization, adapter dtype, optimizer, paging), the 16-bit
rate the time is priced at (`hardware.training_precision`: bf16, or fp16 on a card without bf16) and the time
model (per-operation or stated); a row for a method or flag that does not apply is left out.

References
----------
[1] Dettmers et al. 2023, "QLoRA", arXiv:2305.14314, sec. 3: NF4 with one absmax per 64 weights; double
    quantization (8-bit constants, one fp32 constant per 256) is defined for NF4's constants; paged optimizers.
[2] Dettmers et al. 2022, "LLM.int8()", arXiv:2208.07339, sec. 3.2: one int8 per weight, one fp32 scale per row.
[3] peft ``get_peft_model(autocast_adapter_dtype=True)`` (fp32 adapters) and ``prepare_model_for_kbit_training``
    (every non-quantized parameter to fp32); artidoro/qlora ``qlora.py`` (LoRA layers, embedding and LM head in
    bf16, norms fp32).
[4] Dettmers et al. 2022b, "8-bit Optimizers via Block-wise Quantization", arXiv:2110.02861, sec. 2.
"""

from __future__ import annotations

from ..assumption import Assumption
from ..flops import Recompute
from ..hardware import GpuSpec, Precision
from ..memory.settings import ADAM8BIT_BLOCK_ELEMENTS, ADAM8BIT_MIN_8BIT_ELEMENTS, Optimizer
from .adapters import DQ_BLOCK, NF4_BLOCK, Method, Quant
from .memory import Compute, FinetuneSetup

PER_OPERATION = "per-operation"
STATED = "stated"


def compute_dtype(setup: FinetuneSetup, precision: Precision) -> str:
    """The dtype the step computes in: the 16-bit rate the plan chose (bf16, or fp16 on a card without bf16), or
    fp32 for an fp32 setup (the CPU check); the same rule `plan._per_operation` prices the ops with."""
    return "fp32" if setup.compute is Compute.fp32 else precision.value


def quant_label(setup: FinetuneSetup) -> str:
    """QLoRA's base format as stored: NF4 with or without double quantization, or int8 (no double quantization:
    it quantizes NF4's block constants [1])."""
    if setup.quant is Quant.int8:
        return "int8"
    return "nf4 + double quantization" if setup.double_quant else "nf4"


def _optimizer(setup: FinetuneSetup, whose: str) -> Assumption:
    if setup.optimizer is Optimizer.adamw8bit:
        return Assumption("optimizer", f"8-bit AdamW on {whose}: m and v one byte each per element plus an fp32 "
                          f"absmax per {ADAM8BIT_BLOCK_ELEMENTS} elements; tensors under "
                          f"{ADAM8BIT_MIN_8BIT_ELEMENTS} elements keep fp32 states",
                          "Dettmers et al. 2022b sec. 2; bitsandbytes min_8bit_size")
    return Assumption("optimizer", f"AdamW on {whose}: m and v in fp32 (8 bytes per element) and a 4-byte step "
                      "per tensor", "Rajbhandari et al. 2020 (ZeRO) sec. 3.1; torch.optim.AdamW")


def _time(precision: Precision, time_model: str, efficiency: float | None) -> Assumption:
    if time_model == PER_OPERATION:
        return Assumption("time", f"per-operation: each op of the step (perf.finetune_ops) priced by perf.step's "
                          f"roofline and GEMM model at the {precision.value} rate; unvalidated against a measured "
                          "fine-tuning run", "docs/performance_model.md")
    return Assumption("time", f"stated: FLOPs / ({precision.value} peak x {efficiency:.0%})",
                      "--efficiency, or budget.DEFAULT_MFU (Llama 3 405B: 38-43% MFU, Dubey et al. 2024, Table 4)")


def _dequantization(setup: FinetuneSetup, half: str, time_model: str, bandwidth_fraction: float | None,
                    has_bandwidth: bool) -> Assumption:
    stored = ("NF4 weight and its constants" if setup.quant is Quant.nf4 else "int8 weight and its row scales")
    passes = "forward" + (", input gradient and recomputed forward" if setup.recompute is Recompute.full else
                          " and input gradient")
    rate = (f"at {bandwidth_fraction:g} of the datasheet bandwidth (the achievable share, perf.device)"
            if time_model == PER_OPERATION else "at the datasheet bandwidth (stated time model)"
            if has_bandwidth else "not priced: the GPU database has no memory bandwidth for this GPU")
    source = "bitsandbytes MatMul4Bit" if setup.quant is Quant.nf4 else (
        "priced as bitsandbytes MatMul4Bit's NF4 dequantization (an assumption for LLM.int8)")
    return Assumption("dequantization", f"stored {stored} read + {half} weight written per {passes}, {rate}", source)


def finetune_assumptions(setup: FinetuneSetup, gpu: GpuSpec, precision: Precision, *, time_model: str,
                         efficiency: float | None) -> tuple[Assumption, ...]:
    """The rows that apply to ``setup`` on ``gpu`` with its time priced at ``precision`` by ``time_model``
    (``"per-operation"``, or ``"stated"`` at ``efficiency``)."""
    half = compute_dtype(setup, precision)
    mixed = setup.compute is Compute.bf16
    rows = [_time(precision, time_model, efficiency)]
    if setup.method is Method.full:
        rows.append(Assumption(
            "full fine-tuning", f"every weight trained, as pre-training: PyTorch AMP in {half}, fp32 weights (the "
            f"master copy) and gradients, a {half} copy of each matmul weight" if mixed else
            "every weight trained, as pre-training: fp32 weights and gradients, fp32 compute",
            "torch.autocast docs; flopscalc.memory (docs/memory.md)"))
        rows.append(_optimizer(setup, "every parameter"))
    else:
        if setup.method is Method.lora:
            base = f"{half} as loaded (2 bytes per parameter)" if mixed else "fp32 as loaded (4 bytes per parameter)"
            rows.append(Assumption("frozen base", f"{base}; input gradients only, no weight gradients or optimizer "
                                   "state", "peft: the base has requires_grad=False"))
        else:
            if setup.quant is Quant.nf4:
                value = (f"block linears in NF4 (4 bits per weight), one absmax per {NF4_BLOCK} weights, "
                         + (f"double-quantized to 8 bits with one fp32 constant per {DQ_BLOCK}" if setup.double_quant
                            else "fp32"))
                source = "Dettmers et al. 2023 (QLoRA) sec. 3; bitsandbytes quantize_4bit"
            else:
                value = "block linears in int8 (LLM.int8: 1 byte per weight, one fp32 scale per output row)"
                source = "Dettmers et al. 2022 (LLM.int8) sec. 3.2; bitsandbytes Int8Params"
            rows.append(Assumption("frozen base", value + "; input gradients only, no weight gradients or optimizer "
                                   "state", source))
            if setup.bf16_adapters:
                rows.append(Assumption("non-quantized parameters", "embedding and LM head bf16, norms fp32",
                                       "artidoro/qlora qlora.py (QLoRA recipe)"))
            else:
                rows.append(Assumption("non-quantized parameters", "fp32 (embedding, norms, LM head); the LM head is "
                                       f"cast to {half} each forward and the cast kept for its input gradient",
                                       "peft prepare_model_for_kbit_training"))
        if setup.bf16_adapters:
            rows.append(Assumption("adapters", "bf16 weights and gradients", "artidoro/qlora qlora.py casts the LoRA "
                                   "layers to bf16"))
        else:
            rows.append(Assumption("adapters", f"fp32 weights and gradients, cast to {half} under autocast each "
                                   "forward (the casts kept for backward)" if mixed else
                                   "fp32 weights and gradients, fp32 compute",
                                   "peft get_peft_model(autocast_adapter_dtype=True); measured on CPU in "
                                   "tests/test_finetune_peft.py"))
        if setup.method is Method.qlora:
            bandwidth_fraction = None
            if time_model == PER_OPERATION:
                from ..perf.device import device_perf

                bandwidth_fraction = device_perf(gpu).mem_bandwidth_fraction
            rows.append(_dequantization(setup, half, time_model, bandwidth_fraction,
                                        gpu.memory_bandwidth_bytes_per_s is not None))
        rows.append(_optimizer(setup, "the adapters only"))
    if setup.paged:
        rows.append(Assumption("paged optimizer", "optimizer state may move to CPU memory when the GPU runs out; the "
                               "rest must fit", "Dettmers et al. 2023 (QLoRA) sec. 3, Paged Optimizers"))
    rows.append(Assumption("tokens", "dataset x epochs; padded: one example per sequence, padding fraction "
                           "1 - mean / seq", "--packing removes padding"))
    return tuple(rows)
