// Data points, timed in-process on inputs they write (see data_point.h).
#include "bench/data_point.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "bench/figures.h"
#include "bench/sample_point.h"
#include "bench/stats.h"
#include "bench/train_point.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/latent_cache.h"
#include "data/loader.h"
#include "io/files.h"
#include "io/image.h"
#include "model/presets.h"
#include "train/data_spec.h"
#include "train/prepare.h"

namespace fluxtrain {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

ConfigSchema data_bench_schema() {
  ConfigSchema s;
  s.choice("data", "task", "decode", {"decode", "cache", "prepare"},
           "decode: images decoded, resized and cropped by the training loader; cache: a "
           "prepared latent cache read by the loader; prepare: `fluxtrain prepare` timed whole")
      .string("data", "model", "tiny",
              "the encoders of cache and prepare: a preset (flux-dev and flux-schnell get "
              "weight-free stand-ins of the real shapes) or a FLUX.1 model path")
      .integer("data", "resolution", 512, "side of the square crop in pixels", 16)
      .integer("data", "batch_size", 16, "examples per loader batch", 1)
      .integer("data", "images", 64,
               "images written (and cached); decode and cache: a multiple of batch_size", 1)
      .integer("data", "captions", 0, "distinct captions among them (0 = one per image)", 0)
      .integer("data", "source_width", 1024, "width of the written images", 8, 65535)
      .integer("data", "source_height", 768, "height of the written images", 8, 65535)
      .choice("data", "image_format", "jpg", {"jpg", "png"}, "format of the written images")
      .integer("data", "quality", 90, "JPEG quality", 1, 100)
      .boolean("data", "random_flip", true, "training draws flip at random (decode)")
      .boolean("data", "random_crop", false, "training draws crop at random (decode)")
      .choice("data", "cache_dtype", "bf16", {"bf16", "fp32"}, "dtype the cache stores")
      .boolean("data", "text", true,
               "cache: load each example's T5 sequence and CLIP vector too (else latents only)")
      .integer("run", "workers", 0, "loader threads (0 = in the timing thread)", 0)
      .integer("run", "prefetch", 4, "batches loaded ahead by the workers", 1)
      .boolean("run", "pin_memory", false, "page-locked batches (CUDA builds)")
      .integer("run", "threads", 1, "CPU threads for tensor math (1 = the figure per core)", 0)
      .integer("run", "seed", 0, "seed of the images and the loader", 0);
  return s;
}

namespace {

// `n` photo-like images (smooth colour fields with fine noise, so JPEG sizes are those of
// photographs rather than of flat colour) with captions, as a Hugging Face imagefolder
// (metadata.jsonl).
void write_image_folder(const fs::path& dir, const Config& cfg) {
  fs::create_directories(dir);
  const int64_t n = cfg.i("images"), w = cfg.i("source_width"), h = cfg.i("source_height");
  const int64_t distinct = cfg.i("captions") > 0 ? cfg.i("captions") : n;
  const std::string ext = cfg.s("image_format");
  auto gen = make_generator(static_cast<uint64_t>(cfg.i("seed")), RngStream::kData, 0xB3);
  std::ofstream meta(dir / "metadata.jsonl");
  for (int64_t i = 0; i < n; ++i) {
    auto coarse =
        torch::rand({1, 3, std::max<int64_t>(2, h / 64), std::max<int64_t>(2, w / 64)}, gen);
    auto img =
        torch::nn::functional::interpolate(coarse, torch::nn::functional::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{h, w})
                                                       .mode(torch::kBicubic)
                                                       .align_corners(false))[0];
    img = img + 0.06 * torch::randn({3, h, w}, gen);
    const auto hwc = img.clamp(0, 1).mul(255).round().to(torch::kByte).permute({1, 2, 0});
    const std::string name = fmt::format("{:05d}.{}", i, ext);
    const std::string bytes = ext == "jpg" ? encode_jpeg(hwc.contiguous(), int(cfg.i("quality")))
                                           : encode_png(hwc.contiguous());
    OutFile out((dir / name).string());
    out.write(bytes.data(), bytes.size());
    out.close();
    meta << nlohmann::json{{"file_name", name},
                           {"text", fmt::format("photo number {} of a benchmark", i % distinct)}}
                .dump()
         << "\n";
  }
}

PrepareOptions prepare_options(const Config& cfg, const fs::path& images, const fs::path& out) {
  PrepareOptions o;
  o.model = cfg.s("model");
  o.model_is_path = !is_model_preset(o.model);
  if (o.model_is_path) o.model = fs::absolute(o.model).lexically_normal().string();
  o.stand_in_encoders = !o.model_is_path;
  o.threads = cfg.i("threads");
  o.data.data = images.string();
  o.data.buckets = false;
  o.resolution = cfg.i("resolution");
  o.out = out.string();
  o.dtype = parse_precision(cfg.s("cache_dtype"));
  o.batch_size = cfg.i("batch_size");
  o.seed = static_cast<uint64_t>(cfg.i("seed"));
  return o;
}

// The patch size in pixels of the model (a preset, or read from a model path's files).
int64_t patch_px_of(const Config& cfg) {
  return 2 * sample_model_preset(cfg.s("model")).ae_factor;
}

// Bytes of one batch's tensors (what the loader produced).
int64_t batch_bytes(const Batch& b) {
  int64_t n = 0;
  for (const auto* t : {&b.images, &b.latent_mean, &b.latent_logvar, &b.txt, &b.vec})
    if (t->defined()) n += t->numel() * t->element_size();
  return n;
}

}  // namespace

PointResult run_data_point(const SweepSpec& spec, const SweepPoint& point, const Environment& env,
                           const std::string& bench_dir) {
  PointResult r;
  r.point = point;
  r.columns = resolve_columns(spec, point);
  r.device = "cpu";
  r.device_name = env.device_name("cpu");
  const auto t_point = Clock::now();
  const fs::path work = fs::path(bench_dir) / "points" / point.name;
  try {
    const Config cfg = point_config(spec, point);
    configure_threads(cfg.i("threads"));
    const std::string task = cfg.s("task");
    if (task != "prepare" && cfg.i("images") % cfg.i("batch_size") != 0)
      user_error("images {}: a multiple of batch_size {} (every timed batch full)", cfg.i("images"),
                 cfg.i("batch_size"));
    const int64_t warmup = spec.bench.i("warmup"), measured = spec.bench.i("measured");
    fs::remove_all(work);
    const fs::path images = work / "images";
    write_image_folder(images, cfg);
    reset_peak_rss();
    std::vector<double> times;
    int64_t per_iteration = 0, bytes = 0;
    auto timed = [&](int64_t i, const std::function<void()>& f) {
      const auto t0 = Clock::now();
      f();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (i >= warmup) times.push_back(ms);
    };
    if (task == "prepare") {
      per_iteration = cfg.i("images");
      for (int64_t i = 0; i < warmup + measured; ++i) {
        const fs::path out = work / fmt::format("cache-{}", i);
        timed(i, [&] { prepare_cache(prepare_options(cfg, images, out)); });
        fs::remove_all(out);
        log_info("  prepare {}/{}: {:.1f} ms", i + 1, warmup + measured,
                 i >= warmup ? times.back() : 0.0);
      }
    } else {
      DataOptions d;
      d.data = images.string();
      d.buckets = false;
      d.transform.random_flip = cfg.b("random_flip");
      d.transform.random_crop = cfg.b("random_crop");
      TrainData data;
      if (task == "cache") {
        const fs::path cache = work / "cache";
        prepare_cache(prepare_options(cfg, images, cache));
        auto cached = std::make_shared<LatentCacheDataset>(cache.string(), false, cfg.b("text"));
        data.sampler = std::make_shared<BucketBatches>(
            cached->bucket_ids(), cfg.i("batch_size"),
            SampleOrderOptions{true, static_cast<uint64_t>(cfg.i("seed")), 0, 1});
        data.train = cached;
        data.describe = cached->name() + (cfg.b("text") ? "" : ", latents only");
      } else {
        data = build_train_data(d, cfg.i("resolution"), patch_px_of(cfg),
                                static_cast<uint64_t>(cfg.i("seed")), cfg.i("batch_size"), 0, 0, 1);
      }
      log_info("  {}", data.describe);
      if (data.train->size() != cfg.i("images"))
        user_error("images {}: only {} of them usable (see the data report above)", cfg.i("images"),
                   data.train->size());
      LoaderOptions lo;
      lo.workers = cfg.i("workers");
      lo.prefetch = cfg.i("prefetch");
      lo.pin_memory = cfg.b("pin_memory");
      lo.seed = static_cast<uint64_t>(cfg.i("seed"));
      Loader loader(data.train, data.sampler, lo);
      per_iteration = cfg.i("batch_size");
      for (int64_t i = 0; i < warmup + measured; ++i)
        timed(i, [&] {
          const Batch b = loader.next();
          if (b.size() != per_iteration)
            throw std::runtime_error(
                fmt::format("batch {} holds {} examples, expected {}", i, b.size(), per_iteration));
          bytes = batch_bytes(b);
        });
      log_info("  {} batches of {} ({:.2f} MiB each): p50 {:.2f} ms", measured, per_iteration,
               static_cast<double>(bytes) / (1 << 20), summarize(times).p50);
    }
    FigureInputs in;
    in.times_ms = times;
    in.images_per_iteration = per_iteration;
    r.figures = compute_figures(in);
    r.figures->peak_memory_bytes = peak_rss_bytes();
    r.figures->peak_memory_kind = "rss";
    r.status = point_status::kOk;
  } catch (const std::exception&) {
    record_point_exception(r);
  }
  std::error_code ec;
  fs::remove_all(work, ec);  // the inputs are regenerated from the seed; keep the bench small
  r.seconds = std::chrono::duration<double>(Clock::now() - t_point).count();
  return r;
}

}  // namespace fluxtrain
