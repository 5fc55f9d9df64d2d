#!/usr/bin/env bash
# On the GPU machine (one call of the device tool): build fluxtrain against the machine's CUDA
# libtorch (from its pip torch), run the test suite there, then time flux-dev training steps at
# 256 px. Figures and logs go to $OUT (default out/gpu-check).
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

# flux-dev, random weights, stand-in encoders of the real shapes, 256 px (256 image + 512 text
# tokens), bf16 weights and compute, bf16 AdamW moments (fp32 moments do not fit next to 12B
# bf16 weights and gradients on one GPU).
for bs in 1 2 4; do
  build-cuda/fluxtrain train --model flux-dev --stand_in_encoders --device cuda --precision bf16 \
    --weights bf16 --optimizer_state bf16 --resolution 256 --batch_size $bs --steps 6 \
    --warmup_steps 0 --lr 1e-5 --val_samples 0 --final_eval none --ckpt_every 1000000 \
    --save_best false --output_dir "$OUT/runs" --name "flux-dev-256-bs$bs" --log_every 1 \
    2>&1 | tee "$OUT/flux-dev-256-bs$bs.log" || echo "batch $bs failed (see log)"
done
# Step time: median of steps 3..6 from metrics.csv (steps 1-2 are warm-up).
for f in "$OUT"/runs/flux-dev-256-bs*/*/metrics.csv; do
  echo "$f: $(awk -F, 'NR>3{print $7}' "$f" | sort -n | awk '{a[NR]=$1} END{print "median step ms", a[int((NR+1)/2)]}')"
done | tee "$OUT/summary.txt"
