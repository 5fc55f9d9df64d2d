// Per-point figures (see figures.h).
#include "bench/figures.h"

#include <numeric>
#include <stdexcept>

namespace fluxtrain {

PointFigures compute_figures(const FigureInputs& in) {
  if (in.times_ms.empty()) throw std::invalid_argument("no measured times");
  for (double t : in.times_ms)
    if (!(t > 0)) throw std::invalid_argument("a measured time is not positive");
  PointFigures f;
  f.time_ms = summarize(in.times_ms);
  f.images_per_iteration = in.images_per_iteration;
  const double seconds = std::accumulate(in.times_ms.begin(), in.times_ms.end(), 0.0) / 1000.0;
  const double images =
      static_cast<double>(in.images_per_iteration) * static_cast<double>(in.times_ms.size());
  const double devices = static_cast<double>(std::max<int64_t>(1, in.devices));
  f.images_per_s = images / seconds;
  f.images_per_s_per_device = f.images_per_s / devices;
  f.tokens_per_s = f.images_per_s * static_cast<double>(in.tokens_per_image);
  f.model_flops_per_image = in.model_flops_per_image;
  f.model_tflops = in.model_flops_per_image * f.images_per_s_per_device / 1e12;
  if (in.peak_tflops && *in.peak_tflops > 0) {
    f.peak_tflops = in.peak_tflops;
    f.mfu = f.model_tflops / *in.peak_tflops;
  }
  if (in.price_per_hour > 0)  // devices x hours per image x 1,000
    f.cost_per_1k_images = in.price_per_hour * devices / 3600.0 / f.images_per_s * 1000.0;
  return f;
}

nlohmann::json PointFigures::to_json() const {
  auto opt = [](const auto& o) { return o ? nlohmann::json(*o) : nlohmann::json(); };
  return {{"measured", time_ms.count},
          {"images_per_iteration", images_per_iteration},
          {"time_ms",
           {{"mean", time_ms.mean},
            {"p50", time_ms.p50},
            {"p90", time_ms.p90},
            {"p99", time_ms.p99},
            {"min", time_ms.min},
            {"max", time_ms.max}}},
          {"images_per_s", images_per_s},
          {"images_per_s_per_device", images_per_s_per_device},
          {"tokens_per_s", tokens_per_s},
          {"model_flops_per_image", model_flops_per_image},
          {"model_tflops", model_tflops},
          {"peak_tflops", opt(peak_tflops)},
          {"mfu", opt(mfu)},
          {"cost_per_1k_images", opt(cost_per_1k_images)},
          {"peak_memory_bytes", opt(peak_memory_bytes)},
          {"peak_memory_kind", peak_memory_kind},
          {"cuda_peak_reserved_bytes", opt(cuda_peak_reserved_bytes)},
          {"predicted_peak_bytes", opt(predicted_peak_bytes)}};
}

}  // namespace fluxtrain
