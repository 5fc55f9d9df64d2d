// Model presets (see presets.h). Numbers for flux-dev / flux-schnell are Black Forest Labs'.
#include "model/presets.h"

#include <algorithm>

#include "core/errors.h"

namespace fluxtrain {

static ModelPreset flux_base(const std::string& name, bool guidance) {
  ModelPreset p;
  p.name = name;
  p.flux = FluxParams{};  // the 12B defaults
  p.flux.guidance_embed = guidance;
  p.autoencoder = "flux-vae";
  p.ae_factor = 8;
  p.latent_channels = 16;
  p.text_encoder = "t5+clip";
  p.default_resolution = 1024;
  return p;
}

ModelPreset model_preset(const std::string& name) {
  if (name == "flux-dev") {
    auto p = flux_base(name, true);
    p.max_text_tokens = 512;
    p.sample_steps = 28;
    p.sample_shift = true;
    p.sample_guidance = 3.5;
    return p;
  }
  if (name == "flux-schnell") {
    auto p = flux_base(name, false);
    p.max_text_tokens = 256;
    p.sample_steps = 4;
    p.sample_shift = false;
    p.sample_guidance = 0.0;
    return p;
  }
  if (name == "tiny") {
    // Pixel-space model for CPUs: 32x32 RGB, the identity autoencoder folds 2x2 pixels into 12
    // channels, so a 32x32 image is 8x8 = 64 tokens of 48 channels.
    ModelPreset p;
    p.name = name;
    p.autoencoder = "identity";
    p.ae_factor = 2;
    p.latent_channels = 12;
    p.text_encoder = "hashed-words";
    p.max_text_tokens = 12;
    p.default_resolution = 32;
    p.sample_steps = 20;
    p.sample_shift = false;
    p.sample_guidance = 0.0;
    FluxParams& f = p.flux;
    f.in_channels = f.out_channels = 4 * p.latent_channels;
    f.vec_in_dim = 64;
    f.context_in_dim = 64;
    f.hidden_size = 128;
    f.num_heads = 4;
    f.depth = 2;
    f.depth_single_blocks = 4;
    f.axes_dim = {8, 12, 12};
    f.guidance_embed = false;
    return p;
  }
  if (name == "tiny-guidance") {  // tiny with a guidance input, to exercise the dev code path
    auto p = model_preset("tiny");
    p.name = name;
    p.flux.guidance_embed = true;
    p.sample_guidance = 3.5;
    return p;
  }
  user_error("model '{}': expected one of {}", name, fmt::join(model_preset_names(), ", "));
}

std::vector<std::string> model_preset_names() {
  return {"flux-dev", "flux-schnell", "tiny", "tiny-guidance"};
}

bool is_model_preset(const std::string& name) {
  const auto names = model_preset_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace fluxtrain
