// Assembling a run's parts from its options (see train_spec.h).
#include "train/train_spec.h"

#include <filesystem>

#include "core/dtype_scope.h"
#include "core/errors.h"
#include "core/log.h"
#include "data/latent_cache.h"
#include "data/shapes.h"
#include "io/files.h"
#include "model/block_swap.h"
#include "model/flux_weights.h"
#include "sample/model_files.h"
#include "text/cached_conditioner.h"
#include "train/class_images.h"
#include "train/prompt_samples.h"

namespace fluxtrain {

namespace {

// The cache's record of an encoder against the run's file: "" when they agree.
std::string encoder_difference(const nlohmann::json& recorded, const char* key,
                               const std::string& file) {
  if (!recorded.contains(key)) return "";
  const std::string now = component_fingerprint(file);
  const std::string was = recorded[key].is_string() ? recorded[key].get<std::string>() : "?";
  return was == now ? "" : fmt::format("{}: the cache has {}, this run {}", key, was, now);
}

// A run on a latent cache uses the cache's text encodings: T5 and CLIP are never loaded. The
// cache must come from this model's encoders and the run's transform settings.
void use_latent_cache(Pipeline& pipe, const TrainOptions& o, const ModelFiles* files) {
  const LatentCacheManifest m = read_latent_cache_manifest(o.data.data, false);
  try {  // fields read_latent_cache_manifest does not check: a hand-edited or older cache.json
    const auto& j = m.json;
    std::vector<std::string> diffs;
    if (files) {
      const auto& enc = j.at("encoders");
      for (const auto& [key, file] : std::vector<std::pair<const char*, std::string>>{
               {"vae", files->vae},
               {"text_encoder", files->text_encoder},
               {"text_encoder_2", files->text_encoder_2},
               {"tokenizer", files->tokenizer},
               {"tokenizer_2", files->tokenizer_2}})
        if (auto d = encoder_difference(enc, key, file); !d.empty()) diffs.push_back(d);
    } else if (j.at("encoders").value("model", "") != o.model) {
      diffs.push_back(fmt::format("model: the cache was encoded for {}, this run is {}",
                                  j.at("encoders").value("model", ""), o.model));
    }
    const int64_t res = j.at("transform").at("resolution").get<int64_t>();
    if (o.resolution > 0 && o.resolution != res)
      diffs.push_back(fmt::format("resolution: the cache has {}, this run {}", res, o.resolution));
    if (j.at("vae").at("latent_channels").get<int64_t>() * 4 != pipe.preset.flux.in_channels)
      diffs.push_back(fmt::format("latent channels: the cache has {}, the transformer takes {}",
                                  j.at("vae").at("latent_channels").get<int64_t>(),
                                  pipe.preset.flux.in_channels / 4));
    if (!diffs.empty()) {
      std::string all;
      for (const auto& d : diffs) all += (all.empty() ? "" : "; ") + d;
      user_error(
          "data '{}': the cache does not match this run ({}); prepare it again for this model "
          "and these settings",
          o.data.data, all);
    }
    const auto& t = j.at("text");
    auto text = std::make_shared<CachedTextConditioner>(
        t.at("context_dim").get<int64_t>(), t.at("vec_dim").get<int64_t>(),
        t.at("max_tokens").get<int64_t>(), "cached " + t.at("name").get<std::string>(),
        "training from a latent cache does not load T5 or CLIP: prepare the cache with "
        "--validation_prompts");
    // What the trainer asks the conditioner for: the empty caption (caption dropout), the
    // validation prompts, and a small caption set's every caption (the final grid per caption).
    // Training batches bring their own encodings, so a large cache's text stays on disk.
    LatentCacheDataset train(o.data.data, false, /*with_text=*/false);
    std::vector<std::string> wanted = {""};
    for (const auto& p : o.validation_prompts) wanted.push_back(p);
    if (m.captions.size() <= kMaxEvaluationCaptions + 1)
      wanted.insert(wanted.end(), m.captions.begin(), m.captions.end());
    for (const auto& caption : wanted)
      if (auto e = train.text_of(caption); e && !text->has(caption))
        text->insert(caption, e->first, e->second);
    pipe.text = text;
  } catch (const nlohmann::json::exception& e) {
    user_error("{}/cache.json: {}", o.data.data, json_reason(e));
  }
}

}  // namespace

Pipeline build_pipeline(const TrainOptions& o) {
  Pipeline pipe;
  const bool cache = detect_data_format(o.data) == "cache";
  if (o.model_is_path) {
    const ModelFiles files = resolve_model_files(o.model, o.overrides);
    PipelineLoadOptions lo;
    lo.device = o.device;
    lo.transformer_dtype = o.weights;
    lo.encoder_dtype = o.device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
    lo.with_text = !cache;
    lo.base_weights = o.base_weights;
    lo.blocks_to_swap = o.blocks_to_swap;
    pipe = Pipeline::load(files, lo);
    if (cache) use_latent_cache(pipe, o, &files);
    log_info("model {}: transformer {} ({}), VAE {}, text {}", o.model, files.transformer,
             pipe.preset.name, files.vae, pipe.text->name());
  } else {
    pipe = Pipeline::create(o.model, o.device, o.seed, o.zero_init, o.stand_in_encoders);
    if (o.weights != torch::kFloat) pipe.transformer->to(o.weights);
    // Built-in encoders are cheap: cached, never released.
    pipe.text = std::make_shared<CachedTextConditioner>(pipe.text, nullptr);
    if (cache) use_latent_cache(pipe, o, nullptr);
  }
  pipe.transformer->set_activation_checkpointing(o.gradient_checkpointing,
                                                 o.gradient_checkpointing_every);
  if (o.base_weights != BaseWeights::kDense) {
    // A preset's random weights are quantised here; a model path's were read into 8 bits.
    const int64_t bytes = quantize_block_weights(*pipe.transformer, o.base_weights);
    log_info("base weights: the blocks' linear layers in {} ({:.1f} MiB of linear weights)",
             base_weights_name(o.base_weights), static_cast<double>(bytes) / double(1 << 20));
  }
  // A model path's swap was set up as it loaded; a preset's (built on the device) starts here.
  if (o.blocks_to_swap > 0 && !pipe.transformer->block_swap)
    enable_block_swap(*pipe.transformer, o.blocks_to_swap, o.device);
  if (const auto& swap = pipe.transformer->block_swap)
    log_info("block swap: {} blocks' linear weights ({:.1f} MiB) in host memory, streamed to {}",
             swap->blocks(), static_cast<double>(swap->host_bytes()) / double(1 << 20),
             o.device.str());
  return pipe;
}

Flux build_transformer(const TrainOptions& o) {
  if (!o.model_is_path) {
    Flux t = Pipeline::create(o.model, o.device, o.seed, o.zero_init, /*stand_in_encoders=*/true)
                 .transformer;
    if (o.weights != torch::kFloat) t->to(o.weights);
    return t;
  }
  const ModelFiles files = resolve_model_files(o.model, o.overrides, /*need_text=*/false,
                                               /*need_vae=*/false);
  const FluxWeights weights = inspect_flux_weights(files.transformer);
  Flux t{nullptr};
  {
    DefaultDtypeScope dtype_scope(o.weights);
    t = Flux(weights.params);
  }
  load_flux_weights(*t, weights);
  t->to(o.device);
  return t;
}

std::unique_ptr<TrainedModel> build_trained_model(const TrainOptions& o, Flux transformer) {
  if (o.method == "full")
    return std::make_unique<FullFineTune>(std::move(transformer), o.train_blocks, o.save_frozen);
  if (o.method == "controlnet")
    return std::make_unique<ControlNetFineTune>(std::move(transformer), o.controlnet);
  if (o.method != "lora") user_error("method '{}': expected full, lora or controlnet", o.method);
  LoraOptions l = o.lora;
  l.seed = o.seed;
  const std::string preset = flux_preset_of(transformer->params);
  l.description.base_model = o.model;
  l.description.architecture = preset == "flux-dev"       ? "flux-1-dev"
                               : preset == "flux-schnell" ? "flux-1-schnell"
                                                          : "flux-1";
  l.description.targets = l.init_from.empty() ? fmt::format("{}", fmt::join(l.targets, ","))
                                              : "lora_init " + l.init_from;
  l.description.dropout = l.adapter.dropout;
  auto model = std::make_unique<LoraFineTune>(std::move(transformer), l);
  for (const auto& w : lora_layout_gaps(model->layers(), l.formats)) log_warn("{}", w);
  return model;
}

TrainParts build_train_parts(const TrainOptions& o) {
  TrainParts p;
  p.pipeline = build_pipeline(o);
  p.resolution = o.resolution > 0 ? o.resolution : p.pipeline.preset.default_resolution;
  p.pipeline.check_resolution(p.resolution, p.resolution);
  p.dist = std::make_shared<SingleProcess>();
  if (o.data.num_class_images > 0)
    ensure_class_images(
        p.pipeline, {o.data.class_data, o.data.class_prompt, o.data.num_class_images, p.resolution,
                     o.sample_steps, o.seed});

  TrainData data =
      build_train_data(o.data, p.resolution, 2 * p.pipeline.preset.ae_factor, o.seed, o.batch_size,
                       o.val_samples, p.dist->rank(), p.dist->world_size());
  p.validation = data.validation;
  p.report = data.report;
  p.data_format = data.format;
  log_info("data: {}", data.describe);
  // Text known now is encoded once; a real model's T5 and CLIP are then freed.
  // A cache's batches bring their own encodings (use_latent_cache kept what else is asked for);
  // other data's captions are encoded up front when they are a known set that fits in
  // kUpFrontTextBytes, else as batches arrive.
  auto* text = static_cast<CachedTextConditioner*>(p.pipeline.text.get());
  std::vector<std::string> known = o.validation_prompts;
  known.emplace_back();
  std::vector<std::string> captions;
  bool all_known = data.format != "cache";
  for (const Dataset* d : {data.train.get(), p.validation.get()}) {
    if (!d || data.format == "cache") continue;
    if (auto c = d->captions())
      captions.insert(captions.end(), c->begin(), c->end());
    else
      all_known = false;
  }
  if (static_cast<int64_t>(captions.size()) * text->bytes_per_prompt() > kUpFrontTextBytes) {
    log_info("text: {} captions would take {:.1f} GiB encoded: encoded as batches arrive instead",
             captions.size(),
             static_cast<double>(captions.size()) * static_cast<double>(text->bytes_per_prompt()) /
                 (1 << 30));
    all_known = false;
  } else {
    known.insert(known.end(), captions.begin(), captions.end());
  }
  if (data.format == "shapes") {  // the final evaluation samples the held-out captions
    const auto held_out = ShapesDataset::held_out_captions();
    known.insert(known.end(), held_out.begin(), held_out.end());
  }
  text->precompute(known);
  if (all_known && o.model_is_path && text->encoder_loaded()) {
    text->release_encoder();
    log_info("text: {} captions encoded up front; text encoders freed", text->cached());
  }
  if (o.model_is_path && data.format != "cache" && data.format != "shapes")
    log_info(
        "images are VAE-encoded as batches arrive; `fluxtrain prepare` would encode them "
        "once");
  if (!all_known && o.model_is_path && text->encoder_loaded()) {
    log_info(
        "text: captions are encoded as batches arrive (T5 and CLIP stay loaded); "
        "`fluxtrain prepare` would encode them once");
  }

  LoaderOptions lo;
  lo.workers = o.data.workers;
  lo.prefetch = o.data.prefetch;
  lo.pin_memory = o.device.is_cuda();
  lo.seed = o.seed;
  lo.rank = p.dist->rank();
  lo.world = p.dist->world_size();
  p.data = std::make_unique<Loader>(data.train, data.sampler, lo);

  p.model = build_trained_model(o, p.pipeline.transformer);
  p.optimizer = std::make_unique<AdamW>(p.model->trainable(), o.adamw);
  if (o.ema_decay > 0)
    p.ema = std::make_unique<Ema>(p.model->trainable(), o.ema_decay, o.ema_on_cpu);
  p.schedule = o.schedule;
  return p;
}

}  // namespace fluxtrain
