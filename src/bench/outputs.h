// Writes a benchmark's three outputs into its directory: runs_summary.csv, results.json and
// report.html, each to a temporary name then renamed, so that a reader never sees a half-written
// file (they are rewritten after every point, so an interrupted sweep keeps what it measured).
#pragma once
#include "bench/results.h"

namespace fluxtrain {

void write_bench_outputs(const BenchResults& results);

}  // namespace fluxtrain
