// The transformer call shared by training, validation and sampling (see flux_call.h).
#include "model/flux_call.h"

#include "core/autocast.h"
#include "model/controlnet.h"
#include "model/latents.h"

namespace fluxtrain {

FluxInputs make_flux_inputs(const FluxParams& params, const torch::Tensor& tokens,
                            int64_t latent_height, int64_t latent_width, const torch::Tensor& txt,
                            const torch::Tensor& vec, const torch::Tensor& timesteps,
                            double guidance) {
  const int64_t B = tokens.size(0);
  const torch::Device device = tokens.device();
  FluxInputs in;
  in.img = tokens;
  in.img_ids = image_ids(B, latent_height, latent_width, device);
  in.txt = txt;
  in.txt_ids = text_ids(B, txt.size(1), device);
  in.timesteps = timesteps;
  in.y = vec;
  if (params.guidance_embed)
    in.guidance = torch::full({B}, guidance, torch::TensorOptions().device(device));
  return in;
}

namespace {

// Every floating input in `dtype`.
void cast_inputs(FluxInputs& in, torch::ScalarType dtype) {
  auto cast = [&](torch::Tensor& t) {
    if (t.defined() && t.is_floating_point() && t.scalar_type() != dtype) t = t.to(dtype);
  };
  cast(in.img);
  cast(in.txt);
  cast(in.timesteps);
  cast(in.y);
  if (in.guidance) cast(*in.guidance);
  for (auto& r : in.double_block_residuals) cast(r);
  for (auto& r : in.single_block_residuals) cast(r);
}

}  // namespace

torch::Tensor predict_velocity(FluxImpl& transformer, FluxInputs in, torch::ScalarType precision,
                               const ControlInput& control) {
  AutocastScope autocast(transformer.img_in->weight.device().type(), precision);
  if (control.net) {  // in its own weight dtype (float32 while it trains)
    FluxInputs c = in;
    cast_inputs(c, control.net->img_in->weight.scalar_type());
    ControlNetResiduals r = control.net->forward(c, control.latents, control.scale);
    in.double_block_residuals = std::move(r.double_blocks);
    in.single_block_residuals = std::move(r.single_blocks);
  }
  cast_inputs(in, transformer.img_in->weight.scalar_type());
  return transformer.forward(in);
}

}  // namespace fluxtrain
