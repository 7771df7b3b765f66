"""`flopscalc train` under torchrun, counting the bytes FSDP2 puts on the wire (tests/test_train_ddp.py).

Usage: ``torchrun ... tests/fsdp_wire_probe.py OUT.json -- <flopscalc train arguments>``. Each rank wraps the two
collectives FSDP2 calls (`torch.distributed.all_gather_single` for the parameters, `reduce_scatter_single` for the
gradients; torch.distributed.fsdp._fully_shard._fsdp_collectives) and writes, per collective, the dtypes and the
input bytes it saw to ``OUT.json`` with ``.rankN`` before the suffix.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import torch.distributed as dist

from flopscalc.cli import run


def main(argv: list[str]) -> int:
    out, train_args = Path(argv[0]), argv[argv.index("--") + 1:]
    seen: dict[str, dict] = defaultdict(lambda: {"dtypes": set(), "input_bytes": 0, "n_calls": 0})

    def counted(name, collective, input_key):
        def call(*args, **kwargs):
            tensor = kwargs[input_key] if input_key in kwargs else args[1]  # (output, input, ...) either way
            entry = seen[name]
            entry["dtypes"].add(str(tensor.dtype).removeprefix("torch."))
            entry["input_bytes"] += tensor.numel() * tensor.element_size()
            entry["n_calls"] += 1
            return collective(*args, **kwargs)
        return call

    dist.all_gather_single = counted("all_gather", dist.all_gather_single, "input_tensor")
    dist.reduce_scatter_single = counted("reduce_scatter", dist.reduce_scatter_single, "input")
    code = run(["train", *train_args])
    rank = os.environ.get("RANK", "0")
    report = {k: {**v, "dtypes": sorted(v["dtypes"])} for k, v in seen.items()}
    out.with_suffix(f".rank{rank}{out.suffix}").write_text(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
