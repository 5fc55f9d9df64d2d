// Encoding a dataset into a latent cache (see prepare.h).
#include "train/prepare.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "data/latent_cache.h"
#include "data/loader.h"
#include "data/subset.h"
#include "io/checksum.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "model/presets.h"
#include "model/vae.h"
#include "sample/pipeline.h"
#include "text/cached_conditioner.h"
#include "train/class_images.h"

namespace fluxtrain {
namespace fs = std::filesystem;

ConfigSchema prepare_schema() {
  ConfigSchema s;
  s.string("model", "model", "tiny",
           "the model whose VAE and text encoders encode the data: a FLUX.1 model path (or a "
           "preset with built-in encoders)");
  add_model_file_keys(s, "model", "with a model path");
  s.boolean("model", "stand_in_encoders", false,
            "flux-dev/schnell presets: weight-free encoder stand-ins of the real shapes (for "
            "benchmarks; the latents mean nothing)")
      .string("run", "out", "",
              "the cache folder to write (resumed when it holds an unfinished one)")
      .string("run", "device", "auto", "auto | cpu | cuda | cuda:N")
      .integer("run", "threads", 0, "CPU threads for tensor math (0 = all cores)", 0)
      .integer("run", "seed", 0, "seed of the validation split", 0)
      .integer("data", "resolution", 0, "image side in pixels (0 = the model's default)", 0)
      .choice("cache", "cache_dtype", "bf16", {"bf16", "fp32"},
              "dtype of the stored latents and text encodings")
      .integer("cache", "batch_size", 8, "images per VAE call and captions per text call", 1)
      .integer("cache", "shard_size", 256, "examples per latents shard", 1)
      .list("cache", "validation_prompts",
            "prompts the training run will sample (encoded into the cache too)");
  add_data_keys(s);
  return s;
}

PrepareOptions PrepareOptions::from_config(const Config& c) {
  PrepareOptions o;
  o.model = c.s("model");
  o.model_is_path = !is_model_preset(o.model);
  if (o.model_is_path) {
    if (!looks_like_model_path(o.model))
      user_error("model '{}': expected a FLUX.1 model path or a preset ({})", o.model,
                 fmt::join(model_preset_names(), ", "));
    o.model = fs::absolute(o.model).lexically_normal().string();
  }
  o.overrides = model_file_overrides(c);
  o.stand_in_encoders = c.b("stand_in_encoders");
  o.device = parse_device(c.s("device"));
  o.threads = c.i("threads");
  o.data = DataOptions::from_config(c);
  if (o.data.num_class_images > count_class_images(o.data.class_data))
    user_error(
        "num_class_images {}: class_data {} holds {}; prepare does not generate class images "
        "(it loads no transformer): run `fluxtrain train` with them first, or lower it",
        o.data.num_class_images, o.data.class_data, count_class_images(o.data.class_data));
  o.resolution = c.i("resolution");
  o.out = c.s("out");
  if (o.out.empty()) user_error("--out: the cache folder to write");
  o.dtype = parse_precision(c.s("cache_dtype"));
  o.batch_size = c.i("batch_size");
  o.shard_size = c.i("shard_size");
  o.seed = static_cast<uint64_t>(c.i("seed"));
  o.validation_prompts = c.list("validation_prompts");
  return o;
}

namespace {

using Clock = std::chrono::steady_clock;

struct Plan {
  std::vector<int64_t> order;     // dataset indices, training examples then validation ones
  std::vector<bool> validation;   // per position in order
  std::vector<int64_t> timestep;  // per position
};

// The train/validation split: validation gets a multiple of 8 examples so that the timestep
// indices 0..7 come in equal numbers.
Plan make_plan(int64_t n, const std::string& val_split, uint64_t seed) {
  auto [train, val] = split_indices(n, val_split, seed);
  if (!val.empty()) {
    const size_t keep = val.size() >= 8 ? val.size() / 8 * 8 : 0;
    if (keep != val.size())
      log_warn(
          "val_split: {} validation examples rounded down to {} (timestep indices 0..7 in "
          "equal numbers); the rest train",
          val.size(), keep);
    train.insert(train.end(), val.begin() + static_cast<int64_t>(keep), val.end());
    val.resize(keep);
    std::sort(train.begin(), train.end());
  }
  Plan p;
  for (int64_t i : train) {
    p.order.push_back(i);
    p.validation.push_back(false);
    p.timestep.push_back(-1);
  }
  for (size_t k = 0; k < val.size(); ++k) {
    p.order.push_back(val[k]);
    p.validation.push_back(true);
    p.timestep.push_back(static_cast<int64_t>(k) % kValidationTimesteps);
  }
  return p;
}

nlohmann::json shard_entry(const fs::path& path) {
  const FileDigest d = file_xxh64(path.string());
  return {{"file", path.filename().string()}, {"bytes", d.bytes}, {"xxh64", hex64(d.xxh64)}};
}

// A shard counts as done when its .done record matches the file.
bool shard_done(const fs::path& shard) {
  const fs::path done = fs::path(shard.string() + ".done");
  std::error_code ec;
  if (!fs::exists(done, ec) || !fs::exists(shard, ec)) return false;
  nlohmann::json j = nlohmann::json::parse(std::ifstream(done), nullptr, false);
  return !j.is_discarded() && j == shard_entry(shard);
}

void mark_done(const fs::path& shard) {
  write_file_atomically(shard.string() + ".done", shard_entry(shard).dump() + "\n");
}

}  // namespace

PrepareResult prepare_cache(const PrepareOptions& o) {
  const auto t0 = Clock::now();
  configure_threads(o.threads);
  PrepareResult r;
  r.dir = fs::absolute(o.out).lexically_normal().string();
  r.report = std::make_shared<DataReport>(o.data.strict);
  const fs::path dir(r.dir);
  if (is_latent_cache(r.dir))
    user_error("--out '{}': already a finished cache (delete it to prepare again)", r.dir);

  // The encoders: a real model's VAE and T5 + CLIP, or a preset's built-in ones.
  Pipeline pipe;
  nlohmann::json encoders;
  if (o.model_is_path) {
    const ModelFiles files = resolve_model_files(o.model, o.overrides);
    PipelineLoadOptions lo;
    lo.device = o.device;
    lo.encoder_dtype = o.device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
    lo.with_transformer = false;
    pipe = Pipeline::load(files, lo);
    encoders = {{"model", o.model},
                {"vae", component_fingerprint(files.vae)},
                {"text_encoder", component_fingerprint(files.text_encoder)},
                {"text_encoder_2", component_fingerprint(files.text_encoder_2)},
                {"tokenizer", component_fingerprint(files.tokenizer)},
                {"tokenizer_2", component_fingerprint(files.tokenizer_2)}};
  } else {
    pipe = Pipeline::create_encoders(o.model, o.device, o.seed, o.stand_in_encoders);
    encoders = {{"model", o.model}, {"text", pipe.text->name()}, {"vae", pipe.autoencoder->name()}};
  }
  const int64_t resolution = o.resolution > 0 ? o.resolution : pipe.preset.default_resolution;
  std::string format;
  auto data = build_source_dataset(o.data, resolution, 2 * pipe.preset.ae_factor, o.seed, r.report,
                                   &format);
  // ControlNet data: each example's control image, encoded beside its image.
  if (!o.data.control.source.empty())
    data = with_control_images(data, control_image_options(o.data, format));
  const Plan plan = make_plan(data->size(), o.data.val_split, o.seed);
  const int64_t n = static_cast<int64_t>(plan.order.size());

  // What the cache is made of; a resumed prepare must ask for the same.
  nlohmann::json transform = {{"resolution", resolution},
                              {"buckets", o.data.buckets},
                              {"bucket_step", o.data.bucket_step},
                              {"bucket_min_side", o.data.bucket_min_side},
                              {"bucket_max_side", o.data.bucket_max_side},
                              {"max_upscale", o.data.max_upscale},
                              {"crop", "centre"},
                              {"flip", false}};
  nlohmann::json settings = {{"encoders", encoders},
                             {"transform", transform},
                             {"source", {{"data", o.data.data}, {"format", format}}},
                             {"val_split", o.data.val_split},
                             {"control", control_images_settings(o.data)},
                             {"seed", o.seed},
                             {"dtype", precision_name(o.dtype)},
                             {"shard_size", o.shard_size},
                             {"text_shard_size", o.text_shard_size},
                             {"examples", n}};
  fs::create_directories(dir);
  const fs::path plan_file = dir / "plan.json";
  if (fs::exists(plan_file)) {
    const auto before = nlohmann::json::parse(std::ifstream(plan_file), nullptr, false);
    if (before != settings)
      user_error(
          "--out '{}': holds an unfinished cache prepared with other settings ({}); use "
          "another folder or delete it",
          r.dir, before.is_discarded() ? std::string("unreadable plan.json") : before.dump());
    log_info("resuming the unfinished cache in {}", r.dir);
  } else {
    write_file_atomically(plan_file.string(), settings.dump(2) + "\n");
  }

  // Captions: every distinct one, the empty one and the validation prompts.
  std::vector<std::string> captions;
  std::map<std::string, int64_t> caption_id;
  auto caption_of = [&](const std::string& c) {
    auto [it, fresh] = caption_id.emplace(c, static_cast<int64_t>(captions.size()));
    if (fresh) captions.push_back(c);
    return it->second;
  };
  caption_of("");
  for (const auto& p : o.validation_prompts) caption_of(p);
  // Example metadata comes from the dataset itself (its deterministic view): read each once now
  // would decode every image twice, so the keys and captions are read as the shards are encoded
  // and collected here.
  std::vector<nlohmann::json> examples(static_cast<size_t>(n));
  std::vector<std::string> latent_files;
  const int64_t shards = (n + o.shard_size - 1) / o.shard_size;
  int64_t done_images = 0;
  auto last_progress = Clock::now() - std::chrono::hours(1);
  for (int64_t s = 0; s < shards; ++s) {
    const fs::path shard = dir / fmt::format("latents-{:05d}.safetensors", s);
    latent_files.push_back(shard.filename().string());
    const int64_t begin = s * o.shard_size, end = std::min(n, begin + o.shard_size);
    const fs::path meta = fs::path(shard.string() + ".examples.json");
    if (shard_done(shard) && fs::exists(meta)) {
      const auto saved = nlohmann::json::parse(std::ifstream(meta), nullptr, false);
      if (!saved.is_discarded() && saved.is_array() &&
          saved.size() == static_cast<size_t>(end - begin)) {
        for (int64_t k = begin; k < end; ++k) {
          auto e = saved[static_cast<size_t>(k - begin)];
          e["caption"] = caption_of(e.at("caption_text").get<std::string>());
          examples[static_cast<size_t>(k)] = e;
        }
        ++r.shards_skipped;
        done_images += end - begin;
        continue;
      }
    }
    NamedTensors tensors;
    nlohmann::json shard_examples = nlohmann::json::array();
    std::vector<int64_t> indices(plan.order.begin() + begin, plan.order.begin() + end);
    torch::NoGradGuard no_grad;
    int64_t k = begin;
    for (const Batch& b : collate_runs(*data, indices, o.batch_size)) {
      auto [mean, logvar] = pipe.autoencoder->encode_moments(b.images.to(o.device));
      mean = mean.to(torch::kCPU, o.dtype);
      logvar = logvar.to(torch::kCPU, o.dtype);
      torch::Tensor control;  // the control images' posterior means (what training takes)
      if (b.control_images.defined())
        control = pipe.autoencoder->encode_moments(b.control_images.to(o.device))
                      .first.to(torch::kCPU, o.dtype);
      for (int64_t j = 0; j < b.size(); ++j, ++k) {
        tensors.emplace_back(fmt::format("mean.{}", k), mean[j].contiguous());
        tensors.emplace_back(fmt::format("logvar.{}", k), logvar[j].contiguous());
        if (control.defined())
          tensors.emplace_back(fmt::format("control.{}", k), control[j].contiguous());
        nlohmann::json e = {
            {"key", b.keys[static_cast<size_t>(j)]},
            {"caption_text", b.captions[static_cast<size_t>(j)]},
            {"shard", s},
            {"width", b.images.size(3)},
            {"height", b.images.size(2)},
            {"validation", static_cast<bool>(plan.validation[static_cast<size_t>(k)])},
            {"timestep_index", plan.timestep[static_cast<size_t>(k)]},
            {"loss_weight", b.loss_weights[j].item<double>()}};
        shard_examples.push_back(e);
        e["caption"] = caption_of(b.captions[static_cast<size_t>(j)]);
        examples[static_cast<size_t>(k)] = e;
      }
      done_images += b.size();
      const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (Clock::now() - last_progress > std::chrono::milliseconds(stderr_is_tty() ? 200 : 10000) ||
          done_images == n) {
        last_progress = Clock::now();
        const double rate = static_cast<double>(done_images) / std::max(sec, 1e-9);
        progress_line(fmt::format("prepare: {}/{} images | {:.1f} images/s | elapsed {} | ETA {}",
                                  done_images, n, rate, format_duration(sec),
                                  format_duration(static_cast<double>(n - done_images) / rate)),
                      done_images == n);
      }
    }
    save_safetensors(shard.string(), tensors, {{"format", kLatentCacheFormat}});
    write_file_atomically(meta.string(), shard_examples.dump() + "\n");
    mark_done(shard);
    ++r.shards_written;
  }

  // Text: every caption, in shards of text_shard_size.
  std::vector<std::string> text_files;
  for (int64_t t = 0; t * o.text_shard_size < static_cast<int64_t>(captions.size()); ++t) {
    const fs::path shard = dir / fmt::format("text-{:05d}.safetensors", t);
    text_files.push_back(shard.filename().string());
    const int64_t begin = t * o.text_shard_size,
                  end = std::min<int64_t>(static_cast<int64_t>(captions.size()),
                                          begin + o.text_shard_size);
    NamedTensors tensors;
    for (int64_t c = begin; c < end; c += o.batch_size) {
      std::vector<std::string> part(captions.begin() + c,
                                    captions.begin() + std::min(end, c + o.batch_size));
      const TextEmbeddings e = pipe.text->encode(part, torch::kCPU);
      for (size_t j = 0; j < part.size(); ++j) {
        tensors.emplace_back(fmt::format("txt.{}", c + static_cast<int64_t>(j)),
                             e.txt[static_cast<int64_t>(j)].to(o.dtype).contiguous());
        tensors.emplace_back(fmt::format("vec.{}", c + static_cast<int64_t>(j)),
                             e.vec[static_cast<int64_t>(j)].to(o.dtype).contiguous());
      }
    }
    save_safetensors(shard.string(), tensors, {{"format", kLatentCacheFormat}});
  }

  // The manifest, last.
  nlohmann::json manifest = settings;
  manifest["format"] = kLatentCacheFormat;
  manifest["version"] = kLatentCacheVersion;
  manifest["captions"] = captions;
  manifest["empty_caption"] = 0;
  std::map<std::string, int64_t> buckets;
  nlohmann::json list = nlohmann::json::array();
  for (auto& e : examples) {
    e.erase("caption_text");
    (e.at("validation").get<bool>() ? r.validation : r.train) += 1;
    ++buckets[fmt::format("{}x{}", e.at("width").get<int64_t>(), e.at("height").get<int64_t>())];
    list.push_back(e);
  }
  manifest["examples"] = list;
  manifest["counts"] = {
      {"train", r.train}, {"validation", r.validation}, {"captions", captions.size()}};
  manifest["buckets"] = buckets;
  double scale = 1.0, shift = 0.0;
  if (auto* vae = dynamic_cast<FluxAutoencoder*>(pipe.autoencoder.get()))
    scale = vae->config().scale_factor, shift = vae->config().shift_factor;
  manifest["vae"] = {{"scaling_factor", scale},
                     {"shift_factor", shift},
                     {"latent_channels", pipe.autoencoder->latent_channels()},
                     {"factor", pipe.autoencoder->factor()},
                     {"name", pipe.autoencoder->name()}};
  manifest["text"] = {{"name", pipe.text->name()},
                      {"max_tokens", pipe.text->max_tokens()},
                      {"context_dim", pipe.text->context_dim()},
                      {"vec_dim", pipe.text->vec_dim()}};
  manifest["latent_shards"] = nlohmann::json::array();
  for (const auto& f : latent_files) manifest["latent_shards"].push_back(shard_entry(dir / f));
  manifest["text_shards"] = nlohmann::json::array();
  for (const auto& f : text_files) manifest["text_shards"].push_back(shard_entry(dir / f));
  manifest["report"] = r.report->to_json();
  write_file_atomically((dir / "data_report.json").string(), r.report->to_json().dump(2) + "\n");
  write_file_atomically((dir / "cache.json").string(), manifest.dump(1) + "\n");
  r.captions = static_cast<int64_t>(captions.size());
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.images_per_s = static_cast<double>(n) / std::max(r.seconds, 1e-9);
  r.report->log("prepare");
  return r;
}

}  // namespace fluxtrain
