// Text-to-image pipeline assembly (see pipeline.h).
#include "sample/pipeline.h"

#include "core/dtype_scope.h"
#include "core/errors.h"
#include "core/rng.h"
#include "model/block_swap.h"
#include "model/flux_weights.h"
#include "model/latents.h"
#include "model/vae.h"
#include "sample/flux_model.h"
#include "sample/model_files.h"
#include "text/cached_conditioner.h"
#include "text/flux_conditioner.h"
#include "text/hashed_words.h"

namespace fluxtrain {

// adaLN-zero initialisation (as in DiT): every modulation and the output projection start at
// zero, so each block starts as the identity and the model predicts zero velocity.
static void zero_init_modulation(FluxImpl& m) {
  torch::NoGradGuard no_grad;
  for (auto& kv : m.named_parameters()) {
    const std::string& n = kv.key();
    if (n.find("mod.lin.") != std::string::npos || n.find("modulation.lin.") != std::string::npos ||
        n.rfind("final_layer.", 0) == 0)
      kv.value().zero_();
  }
}

Pipeline Pipeline::create_encoders(const std::string& preset_name, torch::Device device,
                                   uint64_t seed, bool stand_in_encoders) {
  Pipeline p;
  p.preset = model_preset(preset_name);
  p.device = device;
  const bool built_in =
      p.preset.text_encoder == "hashed-words" && p.preset.autoencoder == "identity";
  if (!built_in && !stand_in_encoders)
    user_error(
        "model '{}' is a preset without weights: give --model a FLUX.1 model path to fine-tune "
        "it, use --model tiny, or --stand_in_encoders for benchmarks",
        preset_name);
  p.text = std::make_shared<HashedWordConditioner>(
      p.preset.flux.context_in_dim, p.preset.flux.vec_in_dim, p.preset.max_text_tokens, seed);
  if (built_in)
    p.autoencoder = std::make_shared<IdentityAutoencoder>(p.preset.ae_factor);
  else
    p.autoencoder =
        std::make_shared<ProjectionAutoencoder>(p.preset.ae_factor, p.preset.latent_channels, seed);
  return p;
}

Pipeline Pipeline::create(const std::string& preset_name, torch::Device device, uint64_t seed,
                          bool zero_init_output, bool stand_in_encoders) {
  Pipeline p = create_encoders(preset_name, device, seed, stand_in_encoders);
  torch::manual_seed(derive_seed(seed, static_cast<uint64_t>(RngStream::kInit)));
  p.transformer = Flux(p.preset.flux);
  if (zero_init_output) zero_init_modulation(*p.transformer);
  p.transformer->to(device);
  return p;
}

Pipeline Pipeline::load(const ModelFiles& files, const PipelineLoadOptions& o) {
  Pipeline p;
  p.device = o.device;
  const FluxWeights weights = inspect_flux_weights(files.transformer);
  const VaeConfig vae_config = read_vae_config(files.vae);
  p.preset = preset_for_weights(weights, vae_config);
  if (o.with_transformer) {
    {
      DefaultDtypeScope dtype_scope(o.transformer_dtype);
      LinearStorageScope storage(o.base_weights);
      p.transformer = Flux(weights.params);
    }
    load_flux_weights(*p.transformer, weights);
    enable_block_swap(*p.transformer, o.blocks_to_swap, o.device);  // before the move: never there
    p.transformer->to(o.device);
  }
  p.autoencoder = load_flux_vae(files.vae, o.device, o.encoder_dtype);
  if (!o.with_text) return p;
  const FluxTextFiles text_files{files.tokenizer, files.text_encoder, files.tokenizer_2,
                                 files.text_encoder_2};
  const int64_t max_tokens = p.preset.max_text_tokens;
  const torch::Device device = o.device;
  const torch::ScalarType dtype = o.encoder_dtype;
  auto load_text = [text_files, max_tokens, device, dtype]() -> std::shared_ptr<TextConditioner> {
    return std::make_shared<FluxTextConditioner>(text_files, max_tokens, device, dtype);
  };
  // One prompt per encoder call: an embedding then does not depend on the prompts batched with
  // it, so a run on raw captions and one on their cache (prepare --batch_size 1) agree bit for bit.
  p.text = std::make_shared<CachedTextConditioner>(load_text(), load_text, dtype, /*batch=*/1);
  if (p.text->context_dim() != p.preset.flux.context_in_dim ||
      p.text->vec_dim() != p.preset.flux.vec_in_dim)
    user_error(
        "the text encoders give {}-wide tokens and a {}-wide pooled vector, but the transformer "
        "in {} expects {} and {}",
        p.text->context_dim(), p.text->vec_dim(), files.transformer, p.preset.flux.context_in_dim,
        p.preset.flux.vec_in_dim);
  return p;
}

void Pipeline::check_resolution(int64_t height, int64_t width) const {
  const int64_t m = 2 * preset.ae_factor;
  if (height <= 0 || width <= 0 || height % m || width % m)
    user_error("resolution {}x{}: height and width must be positive multiples of {} for model '{}'",
               height, width, m, preset.name);
}

int64_t Pipeline::image_tokens(int64_t height, int64_t width) const {
  const int64_t m = 2 * preset.ae_factor;
  return (height / m) * (width / m);
}

torch::Tensor Pipeline::images_to_tokens(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return patchify(autoencoder->encode(images.to(device)));
}

torch::Tensor Pipeline::tokens_to_images(const torch::Tensor& tokens, int64_t height,
                                         int64_t width) {
  torch::NoGradGuard no_grad;
  const int64_t f = preset.ae_factor;
  return autoencoder->decode(unpatchify(tokens.to(torch::kFloat), height / f, width / f))
      .clamp(-1, 1);
}

}  // namespace fluxtrain
