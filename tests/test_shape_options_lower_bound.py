"""A shape option below one is refused in the option's own name (stop 17).

`flopscalc flops --n-layer 0 ...` said "model n_layer must be a positive integer, got 0": the engine's field name, not
an option the command line has. The shape options now say it as the option ("--n-layer 0 is too small: give --n-layer
from 1 to ..."), one line, exit 2; --n-kv-head keeps the model's own wording (which counts divide the heads).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import refused

LLAMA_JSON = str(Path(__file__).resolve().parents[1] / "data" / "configs" / "llama-3.1-8b.json")

SHAPE = {"--n-layer": "2", "--n-head": "2", "--n-embd": "64"}


@pytest.mark.parametrize("option", sorted(SHAPE))
@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_shape_below_one_names_the_option(capsys, option, value):
    argv = [x for k, v in SHAPE.items() for x in (k, value if k == option else v)]
    line = refused(capsys, "flops", *argv, "--tokens", "1e9")
    assert f"{option} {value} is too small" in line and f"give {option} from 1 to" in line
    assert "n_layer" not in line and "n_head" not in line and "n_embd" not in line


@pytest.mark.parametrize("option", ["--ffn", "--vocab"])
def test_the_architecture_widths_too(capsys, option):
    line = refused(capsys, "memory", "--model", "gpt2", option, "0", "--gpu", "h100")
    assert f"{option} 0 is too small" in line and "ffn_dim" not in line and "vocab_size" not in line


def test_kv_heads_keep_the_models_wording(capsys):
    line = refused(capsys, "memory", "--config", LLAMA_JSON, "--n-kv-head", "0", "--gpu", "h100")
    assert "divides the model's 32 heads" in line
