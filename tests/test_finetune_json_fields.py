"""finetune --json leaves null the settings that do not apply to its method (stop 17).

The CLI refuses --rank/--targets with --method full and --quant/--double-quant without --method qlora, but the JSON
setup block reported the defaults (rank 16, all targets, nf4, double quantization) for every method, a full fine-tune
included: a reader could not tell an applied setting from an unused default.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run


@pytest.mark.parametrize("method, adapters, quantized", [("full", False, False), ("lora", True, False),
                                                         ("qlora", True, True)])
def test_the_setup_block_says_only_what_the_method_uses(capsys, method, adapters, quantized):
    assert run(["finetune", "--model", "llama-3-8b", "--gpu", "4090", "--method", method, "--dataset-tokens", "10M",
                "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["setup"]
    assert (s["rank"] is not None, s["targets"] is not None) == (adapters, adapters)
    assert (s["quant"] is not None, s["double_quant"] is not None) == (quantized, quantized)
    if quantized:  # QLoRA's defaults (Dettmers et al. 2023 sec. 3): NF4 with double quantization
        assert s["quant"] == "nf4" and s["double_quant"] is True
