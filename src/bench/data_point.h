// One data point of a sweep (mode: data), timed in this process on inputs it writes itself:
//   task decode:  an image folder of `images` JPEG (or PNG) files of source_width x source_height,
//                 read through the training loader: decode, resize (area), crop to `resolution`,
//                 flip, to [-1, 1], batched (the raw-image path of `fluxtrain train`);
//   task cache:   those images prepared into a latent cache with `model`'s encoders (untimed),
//                 then read through the loader (latent moments and text encodings per sample);
//   task prepare: `fluxtrain prepare` of the folder into a fresh cache, timed whole.
// decode and cache time `warmup` then `measured` batches from the loader (epochs repeat; the
// files are in the page cache after the first); prepare times `warmup` then `measured` whole
// prepares. images/s per point; with threads 1 and workers 0 it is the figure per core.
#pragma once
#include "bench/results.h"
#include "core/config.h"

namespace fluxtrain {

// The run keys of data mode.
ConfigSchema data_bench_schema();

PointResult run_data_point(const SweepSpec& spec, const SweepPoint& point, const Environment& env,
                           const std::string& bench_dir);

}  // namespace fluxtrain
