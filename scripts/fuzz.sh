#!/usr/bin/env bash
# Fuzzes a reader with libFuzzer (clang, ASan + UBSan).
#   scripts/fuzz.sh [TARGET] [SECONDS] [JOBS]   (defaults: safetensors, 60 s, 1 job)
# TARGET is safetensors (the safetensors header parser) or parquet (the parquet reader); a first
# argument that is a number is SECONDS, with the safetensors target, as before.
# Configures build-fuzz/ with clang, builds the fuzzer and its seed writer, writes a seed corpus
# of valid files (from the project's own writers), then fuzzes for SECONDS with the corpus kept in
# build-fuzz/corpus (safetensors) or build-fuzz/corpus-TARGET (grows between runs). Crashes,
# sanitizer reports, leaks, timeouts and non-UserError exceptions stop the run and leave an input
# in build-fuzz/artifacts/ (artifacts-TARGET/ for the others).
# Exit code: 0 when nothing was found.
set -euo pipefail
TARGET=safetensors
if [ $# -gt 0 ] && ! [[ $1 =~ ^[0-9]+$ ]]; then
  TARGET=$1
  shift
fi
case "$TARGET" in
  safetensors) SUFFIX= ;;
  parquet) SUFFIX=-parquet ;;
  *) echo "fuzz.sh: unknown target '$TARGET' (safetensors or parquet)" >&2; exit 2 ;;
esac
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
cmake --build "$BUILD" --target "${TARGET}_fuzz" "${TARGET}_seeds" -j "${BUILD_JOBS:-2}"

SEEDS=$BUILD/seeds$SUFFIX
CORPUS=$BUILD/corpus$SUFFIX
ARTIFACTS=$BUILD/artifacts$SUFFIX
mkdir -p "$SEEDS" "$CORPUS" "$ARTIFACTS"
"$BUILD/${TARGET}_seeds" "$SEEDS" >/dev/null

# detect_leaks stays on; UBSan reports abort (no recovery) so libFuzzer keeps the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# One tensor-math thread: libtorch's pools would otherwise start threads per input.
export OMP_NUM_THREADS=1
args=(-max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=4096 -max_len=65536
      -dict="$ROOT/fuzz/$TARGET.dict" -artifact_prefix="$ARTIFACTS/" -print_final_stats=1)
if [ "$JOBS" -gt 1 ]; then
  args+=(-jobs="$JOBS" -workers="$JOBS")
fi
cd "$BUILD"
exec "$BUILD/${TARGET}_fuzz" "${args[@]}" "$CORPUS" "$SEEDS"
