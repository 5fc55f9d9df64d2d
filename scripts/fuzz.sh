#!/usr/bin/env bash
# Fuzzes the safetensors header parser with libFuzzer (clang, ASan + UBSan).
#   scripts/fuzz.sh [SECONDS] [JOBS]     (defaults: 60 s, 1 job)
# Configures build-fuzz/ with clang, builds the fuzzer and the seed writer, writes a seed corpus
# of valid files (fuzz/corpus/seeds, from the project's own writer), then fuzzes for SECONDS with
# the corpus kept in build-fuzz/corpus (grows between runs). Crashes, sanitizer reports, leaks,
# timeouts and non-UserError exceptions stop the run and leave an input in build-fuzz/artifacts/.
# Exit code: 0 when nothing was found.
set -euo pipefail
SECONDS_TO_RUN=${1:-60}
JOBS=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
CXX_BIN=${FUZZ_CXX:-clang++}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime

command -v "$CXX_BIN" >/dev/null || { echo "fuzz.sh: $CXX_BIN not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$CXX_BIN" -DFLUXTRAIN_FUZZ=ON -DFLUXTRAIN_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD" --target safetensors_fuzz safetensors_seeds -j "${BUILD_JOBS:-2}"

SEEDS=$BUILD/seeds
CORPUS=$BUILD/corpus
ARTIFACTS=$BUILD/artifacts
mkdir -p "$SEEDS" "$CORPUS" "$ARTIFACTS"
"$BUILD/safetensors_seeds" "$SEEDS" >/dev/null

# detect_leaks stays on; UBSan reports abort (no recovery) so libFuzzer keeps the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# One tensor-math thread: libtorch's pools would otherwise start threads per input.
export OMP_NUM_THREADS=1
args=(-max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=4096 -max_len=65536
      -dict="$ROOT/fuzz/safetensors.dict" -artifact_prefix="$ARTIFACTS/" -print_final_stats=1)
if [ "$JOBS" -gt 1 ]; then
  args+=(-jobs="$JOBS" -workers="$JOBS")
fi
cd "$BUILD"
exec "$BUILD/safetensors_fuzz" "${args[@]}" "$CORPUS" "$SEEDS"
