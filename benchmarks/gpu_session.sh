#!/usr/bin/env bash
# Everything issues 3, 5 and 11 still need a CUDA machine for, in one place, most wanted first, so that a session
# cut short (a lent GPU has minutes, not hours) still brings back the parts it finished.
# Run from the repo root with the train extra installed (or PYTHONPATH=$PWD and an image with torch):
#   bash benchmarks/gpu_session.sh next      # what stop 16 left open (issue 11, issue 5, docs/memory.md):
#                                            # GPT-2's LM-head GEMMs at vocabulary 50257 and 50304 (forward,
#                                            # input and weight gradient), each beside the step model's price;
#                                            # eager GPT-2 small with vocabulary 50304 at mb 8/32 (twins of the
#                                            # eager unpadded rows); memory at grad-accum 2 (GPT-2 small, mb 8)
#                                            # beside the estimate; compiled, vocab 50304, mb 64 (issue 5's 45%)
#   bash benchmarks/gpu_session.sh smoke     # flopscalc train on CUDA: bf16, fused AdamW, flash SDPA, resume
#   bash benchmarks/gpu_session.sh trainer   # eager: GPT-2 small at mb 8/16/32, GPT-2 medium..XL at mb 8, each
#                                            # beside the step model's time (issue 11 item 6); then compiled:
#                                            # GPT-2 small, vocab 50304, mb 16/32 (issue 5's MFU target), and
#                                            # unpadded mb 8/16/32
#   bash benchmarks/gpu_session.sh memory    # estimated vs torch.cuda.max_memory_allocated, GPT-2 small..XL
#   bash benchmarks/gpu_session.sh gemm      # GEMM rates of GPT-2's shapes and a copy, beside the GEMM pricing
#   bash benchmarks/gpu_session.sh recompute # eager steps with full/selective recomputation (flopscalc calibrate)
#   bash benchmarks/gpu_session.sh all       # next, smoke, eager trainer, gemm, compiled vocab-50304 trainer,
#                                            # memory (slowest last); not the unpadded compiled sweep nor
#                                            # recompute (both recorded on the H200: run their parts if time is left)
# Time on an H200, each part from gpu_session_h200-sxm_20261128.log (its "=== start/ok" stamps) or, for the parts
# new since, estimated from the nearest recorded one:
#   next ~1.7 min: gemm lm-head ~15 s (a process start and CUDA set-up, ~8 s in the log's smoke runs, plus
#     6 GEMMs x 23 products), eager vocab-50304 mb 8/32 ~20 s (the eager mb 8/16/32 sweep took 22 s), memory
#     accum-2 ~15 s (the 16-point sweep took 173 s), compiled mb 64 ~50 s (compiled vocab-50304 mb 16/32: 76 s)
#   smoke 31 s; trainer eager 22 s + sizes 51 s; gemm ~15 s; compiled vocab-50304 76 s; memory 173 s
#   => all ~7.8 min (next 100 s + 368 s); left out: compiled unpadded ~1.8 min (its mb 8 and 16 took ~70 s before
#   the 420 s limit cut it), recompute ~1.5 min (three calibrate runs, not stamped in the log).
# Results land in benchmarks/results/, one file per part, named with the GPU and the date (one trainer table per
# sweep: _eager, _eager-sizes, _compiled-pad64, _compiled, _eager-pad64, _compiled-pad64-mb64;
# gemm_<gpu>_<date>.json and ..._lm-head.json; memory_cuda_<gpu>_<date>_sweep.md and ..._accum2.md); commit them
# and quote them in README.md. One part failing does not stop the others; the exit status is 1 when any failed.
# DRY_RUN=1 (no GPU needed): the 'next' part's scripts print their planned shapes and the step model's and memory
# estimator's predictions (--dry-run, priced for GPU_ROW, default h200-sxm); the other parts print their commands.
set -uo pipefail
part="${1:-all}"
py="${PYTHON:-python}"
gpu="${GPU_ROW:-}"  # GPU database row, when the CUDA name is not recognised (e.g. GPU_ROW=h100-sxm)
dry="${DRY_RUN:-}"
dry_arg=()
if [[ -n "$dry" ]]; then dry_arg=(--dry-run); gpu="${gpu:-h200-sxm}"; fi
gpu_arg=()
if [[ -n "$gpu" ]]; then gpu_arg=(--gpu "$gpu"); fi
case "$part" in
  next|smoke|trainer|memory|gemm|recompute|all) ;;
  *) echo "error: unknown part '$part'; pass one of next, smoke, trainer, memory, gemm, recompute, all" >&2; exit 2 ;;
esac
failed=()
step() {  # step NAME COMMAND...: run, time, remember a failure and go on
  local name="$1"; shift
  echo "=== $name: start $(date -u +%H:%M:%S)"
  if [[ -n "$dry" && "$name" != next-* ]]; then echo "=== $name: dry run, not run: $*"; return; fi
  if "$@"; then echo "=== $name: ok $(date -u +%H:%M:%S)"; else echo "=== $name: FAILED ($?)"; failed+=("$name"); fi
}
bench=("$py" benchmarks/bench_trainer.py "${gpu_arg[@]}")
wants() { [[ "$part" == "$1" || "$part" == all ]]; }

if wants next; then
  # issue 11: the unaligned LM head timed directly (the step model's eager price rests on 4 whole-step points)
  step next-gemm-lm-head "$py" benchmarks/bench_gemm_gpu.py --lm-head "${gpu_arg[@]}" "${dry_arg[@]}"
  # issue 11: eager with the vocabulary padded, beside trainer_<gpu>_<date>_eager.md's unpadded mb 8 and 32
  step next-trainer-eager-pad64 "${bench[@]}" --pad-vocab 64 --compile off --micro-batch 8 --micro-batch 32 \
      --label eager-pad64 "${dry_arg[@]}"
  # docs/memory.md: the LM head's fresh gradient beside the accumulated one (grad-accum 2), with its estimate
  step next-memory-accum2 "$py" benchmarks/bench_memory_gpu.py --models gpt2 --micro-batches 8 --grad-accum 2 \
      --label accum2 "${gpu_arg[@]}" "${dry_arg[@]}"
  # issue 5: 45% MFU at GPT-2 124M; mb 64 (~53 GiB estimated eager, 80+ GB cards), compiled, vocabulary 50304
  step next-trainer-compiled-pad64-mb64 "${bench[@]}" --pad-vocab 64 --compile on --micro-batch 64 \
      --label compiled-pad64-mb64 "${dry_arg[@]}"
fi
if wants smoke; then
  rm -f /tmp/flopscalc_smoke.pt
  step smoke-train "$py" -m flopscalc train --synthetic --model gpt2 --micro-batch 8 --steps 30 --warmup-steps 5 \
      --eval-interval 10 --eval-batches 2 --device cuda --checkpoint /tmp/flopscalc_smoke.pt "${gpu_arg[@]}" --json
  # resume on CUDA (the longer --steps stretches the cosine schedule: this checks the CUDA resume path runs;
  # exact continuation is checked on CPU by the test suite)
  step smoke-resume "$py" -m flopscalc train --synthetic --model gpt2 --micro-batch 8 --steps 40 --warmup-steps 5 \
      --eval-interval 10 --eval-batches 2 --device cuda --checkpoint /tmp/flopscalc_smoke.pt --resume \
      "${gpu_arg[@]}" --json
fi
if wants trainer; then
  step trainer-eager "${bench[@]}" --compile off --label eager
  # issue 11 item 6: GPT-2 355M to 1.5B, eager, each beside the per-operation model's step time
  step trainer-eager-sizes "${bench[@]}" --compile off --micro-batch 8 --label eager-sizes \
      --model gpt2-medium --model gpt2-large --model gpt2-xl
fi
if wants gemm; then
  step gemm "$py" benchmarks/bench_gemm_gpu.py "${gpu_arg[@]}"
fi
if wants trainer; then
  # issue 5: >= 45% MFU, timed as nanoGPT and llm.c time it (vocabulary padded to 50304, torch.compile)
  step trainer-compiled-pad64 "${bench[@]}" --pad-vocab 64 --compile on --micro-batch 16 --micro-batch 32 \
      --label compiled-pad64
fi
if wants memory; then
  # --label: a dated file of its own (without it the script writes memory_cuda_<gpu>.md, the recorded H200 sweep
  # tests/test_memory_cuda_recorded.py reads)
  step memory "$py" benchmarks/bench_memory_gpu.py --label sweep "${gpu_arg[@]}"
fi
if [[ "$part" == trainer ]]; then  # not in 'all' (recorded on the H200; ~1.8 min)
  step trainer-compiled "${bench[@]}" --compile on --label compiled
fi
if [[ "$part" == recompute ]]; then  # not in 'all' (recorded on the H200; ~1.5 min)
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
