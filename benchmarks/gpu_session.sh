#!/usr/bin/env bash
# Everything issue 5 (and issue 3's GPU check) still needs a CUDA machine for, in one place.
# Run from the repo root with the train extra installed; each part fits in a few minutes on one H100:
#   bash benchmarks/gpu_session.sh smoke     # flopscalc train on CUDA: bf16, fused AdamW, flash SDPA, pinned copies
#   bash benchmarks/gpu_session.sh trainer   # MFU sweep: GPT-2 small, seq 1024, mb 8/16/32, compile off/on;
#                                            # GPT-2 medium..XL at mb 8; each beside the step model's time
#   bash benchmarks/gpu_session.sh memory    # estimated vs torch.cuda.max_memory_allocated, GPT-2 small..XL
#   bash benchmarks/gpu_session.sh all
# Results land in benchmarks/results/; commit them and quote them in README.md.
set -euo pipefail
part="${1:-all}"
py="${PYTHON:-python}"
gpu="${GPU_ROW:-}"  # GPU database row, when the CUDA name is not recognised (e.g. GPU_ROW=h100-sxm)
gpu_arg=()
if [[ -n "$gpu" ]]; then gpu_arg=(--gpu "$gpu"); fi

if [[ "$part" == smoke || "$part" == all ]]; then
  "$py" -m flopscalc train --synthetic --model gpt2 --micro-batch 8 --steps 30 --warmup-steps 5 \
      --eval-interval 10 --eval-batches 2 --device cuda --checkpoint /tmp/flopscalc_smoke.pt "${gpu_arg[@]}" --json
  # resume on CUDA (the longer --steps stretches the cosine schedule: this checks the CUDA resume path runs;
  # exact continuation is checked on CPU by the test suite)
  "$py" -m flopscalc train --synthetic --model gpt2 --micro-batch 8 --steps 40 --warmup-steps 5 \
      --eval-interval 10 --eval-batches 2 --device cuda --checkpoint /tmp/flopscalc_smoke.pt --resume \
      "${gpu_arg[@]}" --json
fi
if [[ "$part" == trainer || "$part" == all ]]; then
  "$py" benchmarks/bench_trainer.py "${gpu_arg[@]}"
  "$py" benchmarks/bench_trainer.py "${gpu_arg[@]}" --pad-vocab 64 --compile on --micro-batch 16 --micro-batch 32
  # issue 11 item 6: GPT-2 124M to 1.5B, eager, each beside the per-operation model's step time (the table's
  # "step time (predicted)" and "error" columns)
  "$py" benchmarks/bench_trainer.py "${gpu_arg[@]}" --compile off --micro-batch 8 \
      --model gpt2-medium --model gpt2-large --model gpt2-xl
fi
if [[ "$part" == memory || "$part" == all ]]; then
  "$py" benchmarks/bench_memory_gpu.py
fi
