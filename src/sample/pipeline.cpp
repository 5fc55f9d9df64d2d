// Text-to-image pipeline assembly (see pipeline.h).
#include "sample/pipeline.h"

#include "core/errors.h"
#include "core/rng.h"
#include "model/latents.h"
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

Pipeline Pipeline::create(const std::string& preset_name, torch::Device device, uint64_t seed,
                          bool zero_init_output, bool stand_in_encoders) {
  Pipeline p;
  p.preset = model_preset(preset_name);
  p.device = device;
  const bool built_in =
      p.preset.text_encoder == "hashed-words" && p.preset.autoencoder == "identity";
  if (!built_in && !stand_in_encoders)
    user_error(
        "model '{}' needs its real text encoders and VAE, and training does not load a model "
        "directory yet (`fluxtrain sample --model PATH` does); use --model tiny (or "
        "--stand_in_encoders for benchmarks)",
        preset_name);
  torch::manual_seed(derive_seed(seed, static_cast<uint64_t>(RngStream::kInit)));
  p.transformer = Flux(p.preset.flux);
  if (zero_init_output) zero_init_modulation(*p.transformer);
  p.transformer->to(device);
  p.text = std::make_shared<HashedWordConditioner>(
      p.preset.flux.context_in_dim, p.preset.flux.vec_in_dim, p.preset.max_text_tokens, seed);
  if (built_in)
    p.autoencoder = std::make_shared<IdentityAutoencoder>(p.preset.ae_factor);
  else
    p.autoencoder =
        std::make_shared<ProjectionAutoencoder>(p.preset.ae_factor, p.preset.latent_channels, seed);
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
