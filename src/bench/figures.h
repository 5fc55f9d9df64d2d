// The figures of one benchmark point from its measured times: images/s (per device), step time
// or latency percentiles, tokens/s, model TFLOP/s, MFU and cost per 1,000 images.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench/stats.h"

namespace fluxtrain {

struct FigureInputs {
  std::vector<double> times_ms;       // one per measured step (train) or generation (sample)
  int64_t images_per_iteration = 1;   // batch_size x grad_accum (train), batch_size (sample)
  int64_t tokens_per_image = 0;       // image + text tokens the transformer sees per image
  double model_flops_per_image = 0;   // flops.h
  std::optional<double> peak_tflops;  // of one device
  double price_per_hour = 0;          // of one device
  int64_t devices = 1;
};

struct PointFigures {
  TimingSummary time_ms;  // step time (train) or latency of one generation (sample)
  int64_t images_per_iteration = 1;
  double images_per_s = 0;             // all devices
  double images_per_s_per_device = 0;  // FPS per GPU, as seed 000 reports it
  double tokens_per_s = 0;
  double model_flops_per_image = 0;
  double model_tflops = 0;  // achieved model TFLOP/s per device
  std::optional<double> peak_tflops, mfu;
  std::optional<double> cost_per_1k_images;
  // Peak memory: the CUDA caching allocator's allocated peak on a GPU, the process's peak
  // resident set on a CPU.
  std::optional<int64_t> peak_memory_bytes;
  std::string peak_memory_kind;  // "cuda_allocated" | "rss"
  std::optional<int64_t> cuda_peak_reserved_bytes;
  std::optional<int64_t> predicted_peak_bytes;  // the run's memory plan (train/memory_plan.h)

  nlohmann::json to_json() const;
};

// Throws std::invalid_argument when times_ms is empty or not positive.
PointFigures compute_figures(const FigureInputs& in);

}  // namespace fluxtrain
