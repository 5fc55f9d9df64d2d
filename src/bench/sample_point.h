// One sampling point of a sweep (mode: sample): full text-to-image generation timed in this
// process, `warmup` generations first, then `measured` ones; latency percentiles and images/s.
#pragma once
#include "bench/results.h"

namespace fluxtrain {

PointResult run_sample_point(const SweepSpec& spec, const SweepPoint& point,
                             const Environment& env);

// Peak resident set of this process since the last reset (VmHWM; Linux). reset_peak_rss()
// returns false where the kernel does not allow it (the peak is then the process's).
bool reset_peak_rss();
int64_t peak_rss_bytes();

}  // namespace fluxtrain
