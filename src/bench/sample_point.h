// One sampling point of a sweep (mode: sample): full text-to-image generation timed in this
// process, `warmup` generations first, then `measured` ones; latency percentiles and images/s.
// `model` is a preset (random weights, Pipeline) or a FLUX.1 model on disk (real weights,
// FluxModel with every component resident on the device).
#pragma once
#include "bench/results.h"
#include "model/presets.h"

namespace fluxtrain {

// The preset of a sample-mode `model`: the named preset, or the shapes and sampling defaults read
// from a model path's files (UserError when they cannot be read).
ModelPreset sample_model_preset(const std::string& model);

PointResult run_sample_point(const SweepSpec& spec, const SweepPoint& point,
                             const Environment& env);

// Peak resident set of this process since the last reset (VmHWM; Linux). reset_peak_rss()
// returns false where the kernel does not allow it (the peak is then the process's).
bool reset_peak_rss();
int64_t peak_rss_bytes();

}  // namespace fluxtrain
