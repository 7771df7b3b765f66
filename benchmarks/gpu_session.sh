#!/usr/bin/env bash
# Everything issues 3, 5 and 11 still need a CUDA machine for, in one place, cheapest and most wanted first, so
# that a session cut short (a lent GPU has minutes, not hours) still brings back the parts it finished.
# Run from the repo root with the train extra installed (or PYTHONPATH=$PWD and an image with torch):
#   bash benchmarks/gpu_session.sh smoke     # flopscalc train on CUDA: bf16, fused AdamW, flash SDPA, resume
#   bash benchmarks/gpu_session.sh trainer   # eager: GPT-2 small at mb 8/16/32, GPT-2 medium..XL at mb 8, each
#                                            # beside the step model's time (issue 11 item 6); then compiled:
#                                            # GPT-2 small, vocab 50304, mb 16/32 (issue 5's MFU target), and
#                                            # unpadded mb 8/16/32
#   bash benchmarks/gpu_session.sh memory    # estimated vs torch.cuda.max_memory_allocated, GPT-2 small..XL
#   bash benchmarks/gpu_session.sh gemm      # GEMM rates of GPT-2's shapes and a copy, beside the GEMM pricing
#   bash benchmarks/gpu_session.sh recompute # eager steps with full/selective recomputation (flopscalc calibrate)
#   bash benchmarks/gpu_session.sh all       # smoke, eager trainer, memory, compiled trainer (slowest last), then
#                                            # gemm and recompute
# On a 2026-11 H200 'all' took about 7 min, gemm and recompute 2 more (gpu_session_h200-sxm_20261128.log).
# Results land in benchmarks/results/ (one trainer table per sweep: _eager, _eager-sizes, _compiled-pad64,
# _compiled); commit them and quote them in README.md. One part failing does not stop the others; the exit
# status is 1 when any failed.
set -uo pipefail
part="${1:-all}"
py="${PYTHON:-python}"
gpu="${GPU_ROW:-}"  # GPU database row, when the CUDA name is not recognised (e.g. GPU_ROW=h100-sxm)
gpu_arg=()
if [[ -n "$gpu" ]]; then gpu_arg=(--gpu "$gpu"); fi
failed=()
step() {  # step NAME COMMAND...: run, time, remember a failure and go on
  local name="$1"; shift
  echo "=== $name: start $(date -u +%H:%M:%S)"
  if "$@"; then echo "=== $name: ok $(date -u +%H:%M:%S)"; else echo "=== $name: FAILED ($?)"; failed+=("$name"); fi
}
bench=("$py" benchmarks/bench_trainer.py "${gpu_arg[@]}")

if [[ "$part" == smoke || "$part" == all ]]; then
  rm -f /tmp/flopscalc_smoke.pt
  step smoke-train "$py" -m flopscalc train --synthetic --model gpt2 --micro-batch 8 --steps 30 --warmup-steps 5 \
      --eval-interval 10 --eval-batches 2 --device cuda --checkpoint /tmp/flopscalc_smoke.pt "${gpu_arg[@]}" --json
  # resume on CUDA (the longer --steps stretches the cosine schedule: this checks the CUDA resume path runs;
  # exact continuation is checked on CPU by the test suite)
  step smoke-resume "$py" -m flopscalc train --synthetic --model gpt2 --micro-batch 8 --steps 40 --warmup-steps 5 \
      --eval-interval 10 --eval-batches 2 --device cuda --checkpoint /tmp/flopscalc_smoke.pt --resume \
      "${gpu_arg[@]}" --json
fi
if [[ "$part" == trainer || "$part" == all ]]; then
  step trainer-eager "${bench[@]}" --compile off --label eager
  # issue 11 item 6: GPT-2 355M to 1.5B, eager, each beside the per-operation model's step time
  step trainer-eager-sizes "${bench[@]}" --compile off --micro-batch 8 --label eager-sizes \
      --model gpt2-medium --model gpt2-large --model gpt2-xl
fi
if [[ "$part" == memory || "$part" == all ]]; then
  step memory "$py" benchmarks/bench_memory_gpu.py
fi
if [[ "$part" == trainer || "$part" == all ]]; then
  # issue 5: >= 45% MFU, timed as nanoGPT and llm.c time it (vocabulary padded to 50304, torch.compile)
  step trainer-compiled-pad64 "${bench[@]}" --pad-vocab 64 --compile on --micro-batch 16 --micro-batch 32 \
      --label compiled-pad64
  step trainer-compiled "${bench[@]}" --compile on --label compiled
fi
if [[ "$part" == gemm || "$part" == all ]]; then
  step gemm "$py" benchmarks/bench_gemm_gpu.py
fi
if [[ "$part" == recompute || "$part" == all ]]; then
  stamp=$(date -u +%Y%m%d)
  for spec in "gpt2-xl full 8" "gpt2-xl selective 8" "gpt2 full 16"; do
    set -- $spec
    out="benchmarks/results/calibration_gpu_${stamp}_recompute-$2-$1.json"
    step "recompute-$2-$1" "$py" -m flopscalc calibrate --device cuda --model "$1" --recompute "$2" --micro-batch "$3" \
        --compile off --warmup-steps 5 --steps 10 --out "$out" --replace "${gpu_arg[@]}"
  done
fi
if (( ${#failed[@]} )); then echo "failed: ${failed[*]}"; exit 1; fi
echo "all parts ran"
