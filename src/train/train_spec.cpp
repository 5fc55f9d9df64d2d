// Assembling a run's parts from its options (see train_spec.h).
#include "train/train_spec.h"

#include "core/dtype_scope.h"
#include "core/errors.h"
#include "core/log.h"
#include "data/shapes.h"
#include "model/flux_weights.h"
#include "sample/model_files.h"
#include "text/cached_conditioner.h"

namespace fluxtrain {

Pipeline build_pipeline(const TrainOptions& o) {
  Pipeline pipe;
  if (o.model_is_path) {
    const ModelFiles files = resolve_model_files(o.model, o.overrides);
    PipelineLoadOptions lo;
    lo.device = o.device;
    lo.transformer_dtype = o.weights;
    lo.encoder_dtype = o.device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
    pipe = Pipeline::load(files, lo);
    log_info("model {}: transformer {} ({}), VAE {}, text {}", o.model, files.transformer,
             pipe.preset.name, files.vae, pipe.text->name());
  } else {
    pipe = Pipeline::create(o.model, o.device, o.seed, o.zero_init, o.stand_in_encoders);
    if (o.weights != torch::kFloat) pipe.transformer->to(o.weights);
    // Built-in encoders are cheap: cached, never released.
    pipe.text = std::make_shared<CachedTextConditioner>(pipe.text, nullptr);
  }
  pipe.transformer->set_activation_checkpointing(o.gradient_checkpointing);
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

std::shared_ptr<const Dataset> build_train_dataset(const TrainOptions& o, int64_t resolution) {
  if (o.dataset == "shapes")
    return std::make_shared<ShapesDataset>("train", resolution, o.seed, o.dataset_size);
  user_error("dataset '{}': expected shapes", o.dataset);
}

std::shared_ptr<const Dataset> build_validation_dataset(const TrainOptions& o, int64_t resolution) {
  if (o.val_samples <= 0) return nullptr;
  if (o.dataset == "shapes")
    return std::make_shared<ShapesDataset>("val", resolution, o.seed, o.val_samples);
  user_error("dataset '{}': expected shapes", o.dataset);
}

std::unique_ptr<TrainedModel> build_trained_model(const TrainOptions& o, Flux transformer) {
  if (o.method == "full")
    return std::make_unique<FullFineTune>(std::move(transformer), o.train_blocks, o.save_frozen);
  user_error("method '{}': expected full", o.method);
}

TrainParts build_train_parts(const TrainOptions& o) {
  TrainParts p;
  p.pipeline = build_pipeline(o);
  p.resolution = o.resolution > 0 ? o.resolution : p.pipeline.preset.default_resolution;
  p.pipeline.check_resolution(p.resolution, p.resolution);
  p.dist = std::make_shared<SingleProcess>();

  auto train_data = build_train_dataset(o, p.resolution);
  p.validation = build_validation_dataset(o, p.resolution);
  // Text known now is encoded once; a real model's T5 and CLIP are then freed.
  std::vector<std::string> known = o.validation_prompts;
  known.emplace_back();
  bool all_known = true;
  for (const Dataset* d : {train_data.get(), p.validation.get()}) {
    if (!d) continue;
    if (auto captions = d->captions())
      known.insert(known.end(), captions->begin(), captions->end());
    else
      all_known = false;
  }
  if (o.dataset == "shapes") {  // the final evaluation samples the held-out captions
    const auto held_out = ShapesDataset::held_out_captions();
    known.insert(known.end(), held_out.begin(), held_out.end());
  }
  auto* text = static_cast<CachedTextConditioner*>(p.pipeline.text.get());
  text->precompute(known);
  if (all_known && o.model_is_path) {
    text->release_encoder();
    log_info("text: {} captions encoded up front; text encoders freed", text->cached());
  }

  SampleOrderOptions order;
  order.shuffle = train_data->wants_shuffle();
  order.seed = o.seed;
  order.rank = p.dist->rank();
  order.world = p.dist->world_size();
  p.data =
      std::make_unique<Loader>(train_data, SampleOrder(train_data->size(), order), o.batch_size);

  p.model = build_trained_model(o, p.pipeline.transformer);
  p.optimizer = std::make_unique<AdamW>(p.model->trainable(), o.adamw);
  if (o.ema_decay > 0) p.ema = std::make_unique<Ema>(p.model->trainable(), o.ema_decay);
  p.schedule = o.schedule;
  return p;
}

}  // namespace fluxtrain
