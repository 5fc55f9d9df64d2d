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

// transformer(inputs) with every floating input cast to the transformer's weight dtype (a no-op
// for fp32 weights; bf16 weights get bf16 inputs, as BFL's and diffusers' pipelines pass them),
// under autocast to `precision` unless it is fp32. Returns the velocity in the weight dtype (or
// the autocast dtype).
torch::Tensor predict_velocity(FluxImpl& transformer, FluxInputs inputs,
                               torch::ScalarType precision);

}  // namespace fluxtrain
