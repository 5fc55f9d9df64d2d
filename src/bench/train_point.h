// One training point of a sweep: `fluxtrain train` in a fresh process (so one point's memory
// cannot affect the next), its outcome classified (ok, oom, failed, ...) and its figures read
// from the run's metrics.jsonl and summary.json.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "bench/results.h"
#include "bench/subprocess.h"

namespace fluxtrain {

// The arguments after the binary: train, the point's keys, bench's defaults for keys it leaves
// unset, and steps = warmup + measured with checkpoints, validation and evaluation off, into
// <points_dir>/<point name>/<id>/.
std::vector<std::string> train_point_args(const SweepSpec& spec, const SweepPoint& point,
                                          const std::string& points_dir);

// Runs the point with `binary` (the fluxtrain executable) under <bench_dir>/points/.
PointResult run_train_point(const SweepSpec& spec, const SweepPoint& point, const Environment& env,
                            const std::string& binary, const std::string& bench_dir);

// How an unsuccessful child ended: {status, one-line reason}. Out-of-memory text in its output
// (CUDA or CPU allocator) or a SIGKILL (the kernel's OOM killer) is "oom"; exit code 130 is
// "interrupted"; our time limit is "timeout"; anything else "failed" with its last error line.
std::pair<std::string, std::string> classify_failure(const ProcessOutcome& outcome,
                                                     const std::string& log_text);
// Inside a catch: the in-process point `r` as the exception in flight ends it: a UserError
// "failed" with its message; out-of-memory (a CUDA or CPU allocator's text, std::bad_alloc)
// "oom"; anything else "failed" with its last error line.
void record_point_exception(PointResult& r);
// True when the text reports an out-of-memory error.
bool is_out_of_memory_text(const std::string& text);
// The last line that mentions an error, else the last non-empty line (trimmed, at most 300 chars).
std::string last_error_line(const std::string& log_text);

// step_ms of the rows {"type": "train"} with step > warmup, in step order.
std::vector<double> measured_step_ms(const std::string& metrics_jsonl, int64_t warmup);

}  // namespace fluxtrain
