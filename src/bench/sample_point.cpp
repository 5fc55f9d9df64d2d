// Sampling points, timed in-process (see sample_point.h).
#include "bench/sample_point.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <fstream>
#include <functional>

#include "bench/flops.h"
#include "bench/train_point.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/torch_compat.h"
#include "sample/flux_model.h"
#include "sample/sampler.h"

namespace fluxtrain {

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";  // resets VmHWM to the current resident set
  f.flush();
  return static_cast<bool>(f);
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.substr(6).c_str()) * 1024;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

// Prompts of the built-in shapes vocabulary, cycled to fill a batch.
static std::vector<std::string> bench_prompts(int64_t n) {
  static const std::vector<std::string> base = {
      "a red circle in the top left", "a blue square in the bottom right",
      "a green triangle in the centre", "a yellow circle in the top right"};
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(base[static_cast<size_t>(i) % base.size()]);
  return out;
}

ModelPreset sample_model_preset(const std::string& model) {
  if (!is_sample_model_path(model)) return model_preset(model);
  return FluxModel(resolve_model_files(model), {}).preset();  // reads the files' headers only
}

namespace {

void set_column(PointResult& r, const std::string& key, const std::string& value) {
  for (auto& [k, v] : r.columns)
    if (k == key) v = value;
}

}  // namespace

PointResult run_sample_point(const SweepSpec& spec, const SweepPoint& point,
                             const Environment& env) {
  using Clock = std::chrono::steady_clock;
  PointResult r;
  r.point = point;
  r.columns = resolve_columns(spec, point);
  const Config cfg = point_config(spec, point);
  const std::string model_name = cfg.s("model");
  const bool from_path = is_sample_model_path(model_name);
  const int64_t batch = cfg.i("batch_size");
  ModelPreset preset;
  if (!from_path) {
    preset = model_preset(model_name);
    r.image_tokens = image_tokens_for(preset, std::stoll(r.column("resolution")));
    r.text_tokens = preset.max_text_tokens;
  }
  const auto t_point = Clock::now();
  torch::Device device = torch::kCPU;
  try {
    configure_threads(cfg.i("threads"));
    device = parse_device(cfg.s("device"));
    r.device = device_description(device);
    r.device_name = env.device_name(r.device);
    compat::reset_cuda_memory_peak(device);
    reset_peak_rss();
    const torch::ScalarType precision = parse_precision(cfg.s("precision"));
    const auto prompts = bench_prompts(batch);
    const int64_t warmup = spec.bench.i("warmup"), measured = spec.bench.i("measured");
    int64_t res = 0, steps = 0;
    // The model's sampling defaults `so` with this point's settings applied.
    auto options_for = [&](SampleOptions so) {
      res = cfg.i("resolution") > 0 ? cfg.i("resolution") : preset.default_resolution;
      steps = cfg.i("steps") > 0 ? cfg.i("steps") : preset.sample_steps;
      so.height = so.width = res;
      so.steps = steps;
      if (cfg.f("guidance") >= 0) so.guidance = cfg.f("guidance");
      so.cfg_scale = cfg.f("cfg_scale");
      if (cfg.s("shift") != "auto") so.shift = cfg.s("shift") == "on";
      so.precision = precision;
      so.seed = static_cast<uint64_t>(cfg.i("seed"));
      return so;
    };
    std::vector<double> times;
    // `warmup` generations, then `measured` timed ones; each returns its images on the CPU, so
    // the device work is done when it returns.
    auto time_generations = [&](const std::function<void()>& generate) {
      for (int64_t i = 0; i < warmup + measured; ++i) {
        const auto t0 = Clock::now();
        generate();
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (i >= warmup) times.push_back(ms);
        log_info("  {} {}/{}: {:.1f} ms", i < warmup ? "warm-up" : "run",
                 i < warmup ? i + 1 : i - warmup + 1, i < warmup ? warmup : measured, ms);
      }
    };
    if (cfg.s("weights") != "fp32" && cfg.s("precision") != cfg.s("weights"))
      user_error("weights: bf16 weights need precision bf16");
    if (from_path) {
      // Real weights: text encoders, transformer and VAE, all resident on the device.
      FluxModelOptions mo;
      mo.device = device;
      mo.dtype = parse_precision(cfg.s("weights"));
      mo.keep_loaded = true;
      FluxModel model(resolve_model_files(model_name), mo);
      preset = model.preset();
      const SampleOptions so = options_for(model.default_options());
      model.check_resolution(res, res);
      r.image_tokens = image_tokens_for(preset, res);
      r.text_tokens = preset.max_text_tokens;
      set_column(r, "resolution", std::to_string(res));
      set_column(r, "steps", std::to_string(steps));
      log_info("  model {} ({}, {} parameters): {} steps, {}x{}, {} weights", model_name,
               preset.name, model.transformer_weights().num_params, steps, res, res,
               cfg.s("weights"));
      time_generations([&] { model.generate(prompts, so, batch); });
    } else {
      Pipeline pipe = Pipeline::create(model_name, device, static_cast<uint64_t>(cfg.i("seed")),
                                       /*zero_init_output=*/false, cfg.b("stand_in_encoders"));
      if (cfg.s("weights") != "fp32") pipe.transformer->to(parse_precision(cfg.s("weights")));
      pipe.transformer->eval();
      const SampleOptions so = options_for(default_sample_options(preset));
      pipe.check_resolution(res, res);
      time_generations([&] { generate_images(pipe, prompts, so); });
    }
    FigureInputs in;
    in.times_ms = times;
    in.images_per_iteration = batch;
    in.tokens_per_image = r.image_tokens + r.text_tokens;
    in.model_flops_per_image =
        sampling_flops_per_image(preset, res, steps, cfg.f("cfg_scale") != 1.0);
    in.peak_tflops = spec.bench.f("peak_tflops") > 0
                         ? std::optional<double>(spec.bench.f("peak_tflops"))
                         : datasheet_peak_tflops(r.device_name, cfg.s("precision"));
    in.price_per_hour = spec.bench.f("price_per_hour");
    r.figures = compute_figures(in);
    if (auto peak = compat::cuda_memory_peak(device)) {
      r.figures->peak_memory_bytes = peak->allocated_bytes;
      r.figures->cuda_peak_reserved_bytes = peak->reserved_bytes;
      r.figures->peak_memory_kind = "cuda_allocated";
    } else {
      r.figures->peak_memory_bytes = peak_rss_bytes();
      r.figures->peak_memory_kind = "rss";
    }
    r.status = point_status::kOk;
  } catch (const std::exception&) {
    record_point_exception(r);
  }
  if (r.status != point_status::kOk) compat::reset_cuda_memory_peak(device);  // free what is cached
  r.seconds = std::chrono::duration<double>(Clock::now() - t_point).count();
  return r;
}

}  // namespace fluxtrain
