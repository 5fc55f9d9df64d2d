#!/usr/bin/env bash
# On the GPU machine (one call of the device tool): build fluxtrain against the machine's CUDA
# libtorch (from its pip torch), run the test suite there, then benchmark flux-dev training and
# sampling with `fluxtrain bench`. Figures and logs go to $OUT (default out/gpu-check).
#
# The GPU machine has no package registry, so the Debian build dependencies travel with the call:
# run `scripts/gpu-deps.sh` here first (it fills .deps/ with the .deb files), and name `.deps` in
# the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.csv"

# Unpack the carried Debian packages into a private prefix (headers, yaml-cpp, fmt, gtest).
PREFIX=/tmp/fluxtrain-deps
mkdir -p "$PREFIX"
for deb in .deps/*.deb; do dpkg-deb -x "$deb" "$PREFIX"; done
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"

TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee "$OUT/torch.txt"
CUDA_ARCH=$(python3 -c 'import torch;m,n=torch.cuda.get_device_capability();print(f"{m}.{n}")')
export TORCH_CUDA_ARCH_LIST="$CUDA_ARCH"

GEN=("-G" "Unix Makefiles")
command -v ninja >/dev/null && GEN=("-G" "Ninja")
cmake -S . -B build-cuda "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$PREFIX/usr/lib/x86_64-linux-gnu/cmake;$PREFIX/usr/share/cmake" \
  -DCMAKE_CXX_FLAGS="-isystem $PREFIX/usr/include"
cmake --build build-cuda -j "$(nproc)"

(cd build-cuda && ctest --output-on-failure -j 4) | tee "$OUT/ctest.log"

# Benchmarks with `fluxtrain bench` (docs/benchmarks.md): flux-dev full training, random weights,
# stand-in encoders of the real shapes, bf16 compute with bf16 weights and bf16 AdamW moments (the
# memory savers it uses; activation checkpointing is left off to fit the time, no 8-bit AdamW yet), 256 and 512 px,
# several batch sizes, each point a fresh process; then flux-dev 1024x1024 28-step sampling
# latency. 12B full training needs ~89 GiB before activations: the training points fit an H200;
# on an 80 GB H100 they are recorded as oom. Outputs: $OUT/bench-train/<id>/ and
# $OUT/bench-sample/<id>/ (runs_summary.csv, results.json, report.html). Extra flags for either
# sweep (e.g. BENCH_TRAIN_FLAGS="--batch_size 1,2") come from the environment.
build-cuda/fluxtrain bench --config configs/bench/gpu-train.yaml --output_dir "$OUT" \
  --name bench-train ${BENCH_TRAIN_FLAGS:-} || echo "training bench failed (see the log above)"
# Issue 11: LoRA rank 16 on a bf16 / int8 / fp8 base; a ControlNet (2 + 4 blocks) on an int8 base
# with 8-bit AdamW; a full fine-tune with 8-bit AdamW + checkpointing, with and without the step
# inside backward. Each run's summary.json holds its memory plan beside the measured peak.
build-cuda/fluxtrain bench --config configs/bench/gpu-lora.yaml --output_dir "$OUT" \
  --name bench-lora || echo "LoRA bench failed (see the log above)"
build-cuda/fluxtrain bench --config configs/bench/gpu-controlnet.yaml --output_dir "$OUT" \
  --name bench-controlnet || echo "ControlNet bench failed (see the log above)"
build-cuda/fluxtrain bench --config configs/bench/gpu-finetune.yaml --output_dir "$OUT" \
  --name bench-finetune || echo "fine-tune bench failed (see the log above)"
# Block swap: the bf16-base LoRA with 0 / 8 / 18 / 28 blocks kept on the host.
build-cuda/fluxtrain bench --config configs/bench/gpu-block-swap.yaml --output_dir "$OUT" \
  --name bench-block-swap || echo "block swap bench failed (see the log above)"

# Side-by-side reference (docs/benchmarks.md, "Reference: plain PyTorch"): the same training step
# in plain PyTorch (bench/reference/flux_step.py), eager and torch.compile, on this GPU with the
# same shapes and precision, at the best REFERENCE_TOP (default 1) fluxtrain points at
# REFERENCE_RESOLUTION px (default 512; flux-dev 512 px batch 1 if none was measured), then
# fluxtrain's images/s as a ratio to each -> $OUT/reference.md. REFERENCE=0 skips it. Each run is
# time-limited; a run that hits the limit is recorded as "timeout".
if [ "${REFERENCE:-1}" != 0 ]; then
  mkdir -p "$OUT/reference"
  REF_POINTS=$(python3 bench/reference/compare.py --fluxtrain "$OUT/bench-train" \
    --pick "${REFERENCE_TOP:-1}" --model flux-dev --resolution "${REFERENCE_RESOLUTION:-512}" \
    2>/dev/null || true)
  [ -n "$REF_POINTS" ] || REF_POINTS="flux-dev ${REFERENCE_RESOLUTION:-512} 1 bf16 bf16 bf16 false"
  echo "reference points: $REF_POINTS"
  while read -r m r b p w s gc; do
    [ -n "$m" ] || continue
    for mode in eager compile; do
      flag=""; limit=${REFERENCE_EAGER_TIMEOUT_S:-150}
      if [ "$mode" = compile ]; then flag="--compile"; limit=${REFERENCE_COMPILE_TIMEOUT_S:-300}; fi
      [ "$gc" = true ] && flag="$flag --gradient_checkpointing"
      json="$OUT/reference/$m-$r-bs$b-$p-gc$gc-$mode.json"
      rc=0
      timeout "$limit" python3 bench/reference/flux_step.py --model "$m" --resolution "$r" \
        --batch_size "$b" --precision "$p" --weights "$w" --optimizer_state "$s" --warmup 3 \
        --steps 8 $flag --json "$json" </dev/null || rc=$?
      if [ "$rc" = 124 ]; then
        printf '{"model": "%s", "resolution": %s, "batch_size": %s, "precision": "%s", "weights": "%s", "optimizer_state": "%s", "gradient_checkpointing": %s, "mode": "%s", "status": "timeout", "error": "stopped after %s s"}\n' \
          "$m" "$r" "$b" "$p" "$w" "$s" "${gc:-false}" "$mode" "$limit" > "$json"
      fi
      [ "$rc" = 0 ] || echo "reference $m ${r}px bs$b $mode: exit code $rc"
    done
  done <<< "$REF_POINTS"
  python3 bench/reference/compare.py --fluxtrain "$OUT/bench-train" --reference "$OUT/reference" \
    --out "$OUT/reference.md" && cat "$OUT/reference.md" || echo "reference comparison failed"
fi
build-cuda/fluxtrain bench --config configs/bench/gpu-sample.yaml --output_dir "$OUT" \
  --name bench-sample ${BENCH_SAMPLE_FLAGS:-} || echo "sampling bench failed (see the log above)"
# The loader on the GPU machine's cores: cached flux-dev latents (+ T5) with worker threads and
# pinned batches, as a CUDA run loads them.
build-cuda/fluxtrain bench --config configs/bench/data.yaml --task cache --workers 0,4 \
  --pin_memory true --output_dir "$OUT" --name bench-data ${BENCH_DATA_FLAGS:-} ||
  echo "data bench failed (see the log above)"
for f in "$OUT"/bench-*/*/runs_summary.csv; do
  if [ -f "$f" ]; then echo "== $f"; cat "$f"; fi
done | tee "$OUT/summary.txt"
