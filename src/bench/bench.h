// `fluxtrain bench`: runs every point of a sweep (training points as fresh processes, sampling
// points in this one), records each one's outcome, and writes the outputs after every point
// into <output_dir>/<name>/<id>/.
#pragma once
#include <string>

#include "bench/results.h"

namespace fluxtrain {

struct BenchOptions {
  std::string binary;   // fluxtrain executable for training points ("" = this process's)
  std::string command;  // the command line, recorded in the outputs
};

BenchResults run_bench(const SweepSpec& spec, const BenchOptions& options = {});

// Ctrl-C / SIGTERM: the running point finishes (a training child gets the terminal's Ctrl-C
// itself and stops after its step), the rest are recorded as skipped, and the outputs written.
void install_bench_stop_handlers();

}  // namespace fluxtrain
