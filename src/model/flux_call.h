// The one way training, validation and sampling call the FLUX transformer: inputs built from
// latent tokens, text embeddings, timesteps and guidance (position ids derived here), and the
// call itself under the run's precision.
#pragma once
#include <torch/torch.h>

#include <optional>

#include "model/flux.h"

namespace fluxtrain {

// Inputs for `tokens` [B, Li, C] of a latent `latent_height` x `latent_width` (latent pixels,
// two per token side), text `txt` [B, Lt, ctx] and `vec` [B, vec], `timesteps` [B]. `guidance`
// is filled only for models with a guidance input (value per sample; ignored otherwise).
FluxInputs make_flux_inputs(const FluxParams& params, const torch::Tensor& tokens,
                            int64_t latent_height, int64_t latent_width, const torch::Tensor& txt,
                            const torch::Tensor& vec, const torch::Tensor& timesteps,
                            double guidance);

struct FluxControlNetImpl;
// A ControlNet's part in a call: its residuals, from the control latents, go into the call.
struct ControlInput {
  FluxControlNetImpl* net = nullptr;  // null: no control
  torch::Tensor latents;              // [B, Li, in_channels], packed as the image tokens
  double scale = 1.0;                 // diffusers' controlnet_conditioning_scale
};

// transformer(inputs) with every floating input cast to the transformer's weight dtype (a no-op
// for fp32 weights; bf16 weights get bf16 inputs, as BFL's and diffusers' pipelines pass them),
// under autocast to `precision` unless it is fp32. Returns the velocity in the weight dtype (or
// the autocast dtype). With `control.net`, the ControlNet runs first (on the same inputs, under
// the same autocast) and its residuals join the inputs.
torch::Tensor predict_velocity(FluxImpl& transformer, FluxInputs inputs,
                               torch::ScalarType precision, const ControlInput& control = {});

}  // namespace fluxtrain
