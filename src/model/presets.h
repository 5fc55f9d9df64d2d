// Named model presets: flux-dev, flux-schnell (also MLPerf) and tiny (CPU tests, default job).
// A preset is the transformer's shape plus what the pipeline around it needs.
#pragma once
#include <string>
#include <vector>

#include "model/flux.h"

namespace fluxtrain {

struct ModelPreset {
  std::string name;
  FluxParams flux;
  std::string autoencoder;  // "identity" (pixel space, tiny) or "flux-vae"
  int64_t ae_factor = 8;    // pixels per latent pixel
  int64_t latent_channels = 16;
  std::string text_encoder;  // "hashed-words" (built in) or "t5+clip"
  int64_t max_text_tokens = 512;
  int64_t default_resolution = 1024;
  // Sampling defaults.
  int64_t sample_steps = 28;
  bool sample_shift = true;
  double sample_guidance = 3.5;
  // Training default for the guidance input of guidance-distilled models.
  double train_guidance = 1.0;
};

// Throws UserError listing the known presets for an unknown name.
ModelPreset model_preset(const std::string& name);
std::vector<std::string> model_preset_names();
// True when `name` is one of model_preset_names().
bool is_model_preset(const std::string& name);

}  // namespace fluxtrain
