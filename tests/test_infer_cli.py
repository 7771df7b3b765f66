"""`flopscalc infer`: exit codes, the --json contract, every option moves a computed field, one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import cli

DEFAULTS = {"--gpu": "h100", "--model": "llama-3.1-8b", "--context": "2048", "--batch": "8", "--gen": "64"}


def argv_with(*extra):
    """The base command with ``extra`` options, an option given in ``extra`` replacing its default."""
    base = [x for k, v in DEFAULTS.items() if k not in extra for x in (k, v)]
    return ("infer", *base, *extra)


def infer_json(capsys, *extra):
    code, out, err = cli(capsys, *argv_with(*extra), "--json")
    assert code == 0, err
    return json.loads(out)


def test_json_holds_the_contract_fields_and_they_agree(capsys):
    d = infer_json(capsys)
    for key in ("kv_cache_bytes", "weights_bytes", "prefill_s", "decode_s_per_token", "tokens_per_s", "fits",
                "max_batch", "usd_per_million_tokens"):
        assert key in d
    # Llama 3.1 8B: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 128 KiB per token (GQA), 8 x 2112 tokens
    assert d["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 2
    assert d["kv_cache_bytes"] == d["kv_cache_bytes_per_token"] * 8 * (2048 + 64)
    assert d["weights_bytes"] == 2 * 8_030_261_248  # the published parameter count, 2 bytes each
    assert d["tokens_per_s"] == pytest.approx(8 * 64 / (d["prefill_s"] + 63 * d["decode_s_per_token"]))
    assert d["fits"] is True and d["max_batch"] >= 8
    assert d["usd_per_million_tokens"] is None


def test_table_output(capsys):
    code, out, err = cli(capsys, *argv_with())
    assert code == 0 and err == ""
    for text in ("prefill (time to first token)", "time per output token", "KV cache", "largest batch",
                 "--usd-per-gpu-hour"):
        assert text in out


def test_gpt2_and_context_in_k_units(capsys):
    d = infer_json(capsys, "--model", "gpt2", "--context", "512", "--gen", "256")
    assert d["context"] == 512 and d["kv_cache_bytes_per_token"] == 2 * 12 * 12 * 64 * 2
    assert infer_json(capsys, "--context", "8k")["context"] == 8192


@pytest.mark.parametrize(("extra", "field", "direction"), [
    (("--batch", "32"), "decode_tokens_per_s", +1),
    (("--batch", "32"), "tokens_per_s_per_sequence", -1),
    (("--context", "8192"), "prefill_s", +1),
    (("--context", "8192"), "max_batch", -1),
    (("--gen", "512"), "kv_cache_bytes", +1),
    (("--weights", "fp8"), "decode_s_per_token", -1),
    (("--weights", "int8"), "weights_bytes", -1),
    (("--weights", "int4"), "weights_bytes", -1),
    (("--weights", "int4", "--int4-group", "32"), "weights_bytes", +1),  # more groups, more scales
    (("--kv", "fp8"), "kv_cache_bytes", -1),
    (("--gpu", "a100-80gb"), "decode_s_per_token", +1),
    (("--n-kv-head", "32"), "kv_cache_bytes", +1),
])
def test_every_option_moves_a_computed_field(capsys, extra, field, direction):
    base = infer_json(capsys)
    if "--int4-group" in extra:
        base = infer_json(capsys, "--weights", "int4")
    moved = infer_json(capsys, *extra)
    assert (moved[field] - base[field]) * direction > 0


def test_price_gives_the_cost(capsys):
    d = infer_json(capsys, "--usd-per-gpu-hour", "2.5")
    assert d["usd_per_million_tokens"] == pytest.approx(2.5 / 3600 / d["tokens_per_s"] * 1e6)


def test_config_file_and_too_big_a_batch(capsys, tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
           "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    code, out, err = cli(capsys, "infer", "--gpu", "a100-80gb", "--config", str(path), "--context", "1k", "--json")
    assert code == 0, err
    assert json.loads(out)["kv_cache_bytes_per_token"] == 2 * 4 * 2 * 64 * 2
    big = infer_json(capsys, "--model", "llama-3.1-70b", "--batch", "4")  # 141 GB of bf16 weights on 80 GB
    assert big["fits"] is False and big["max_batch"] == 0


@pytest.mark.parametrize(("extra", "code", "fragment"), [
    (("--context", "lots"), 2, "--context"),
    (("--context", "0"), 2, "--context"),
    (("--batch", "0"), 2, "batch must be a positive"),
    (("--usd-per-gpu-hour", "-3"), 2, "price must be positive"),
    (("--int4-group", "64"), 2, "int4 weights only"),
    (("--int4-group", "128"), 2, "int4 weights only"),
    (("--gpu", "cpu"), 1, "CPUs"),
    (("--gpu", "a100-80gb", "--weights", "fp8"), 1, "FP8"),
    (("--model", "gpt2", "--context", "1000", "--gen", "100"), 2, "learned position"),
    (("--model", "nope-7b"), 2, "unknown model"),
    (("--weights", "int3"), 2, "int3"),
    (("--kv", "int2"), 2, "choose one of bf16, fp16, fp8, int8"),
    (("--gpu", "tpu-v4"), 1, "TPU"),
])
def test_bad_input_is_one_line(capsys, extra, code, fragment):
    got, out, err = cli(capsys, *argv_with(*extra))
    assert got == code
    assert out == "" and err.count("\n") == 1 and fragment in err


def test_missing_context_is_one_line(capsys):
    got, _, err = cli(capsys, "infer", "--gpu", "h100", "--model", "gpt2")
    assert got == 2 and "--context" in err and err.count("\n") == 1


def test_cli_import_stays_light():
    """Importing the CLI (with this command registered) loads no torch, pandas or scipy, nor the inference engine."""
    code = ("import sys, flopscalc.cli; bad = [m for m in ('torch', 'pandas', 'scipy', 'matplotlib', "
            "'flopscalc.perf.inference') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_cli_choices_are_the_engines_formats():
    """The CLI spells the formats without importing the engine at start-up; they must be the engine's."""
    from flopscalc.cli.infer import KV_CHOICES, WEIGHT_CHOICES
    from flopscalc.perf.inference import KvFormat, WeightFormat

    assert WEIGHT_CHOICES == tuple(m.value for m in WeightFormat)
    assert KV_CHOICES == tuple(m.value for m in KvFormat)
