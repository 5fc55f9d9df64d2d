// Latent <-> token layout (see latents.h).
#include "model/latents.h"

namespace fluxtrain {

torch::Tensor patchify(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) % 2 == 0 && x.size(3) % 2 == 0,
              "patchify: expected [B, C, H, W] with even H and W, got ", x.sizes());
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / 2, w = x.size(3) / 2;
  return x.view({B, C, h, 2, w, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({B, h * w, C * 4});
}

torch::Tensor unpatchify(const torch::Tensor& t, int64_t height, int64_t width) {
  const int64_t B = t.size(0), h = height / 2, w = width / 2, C = t.size(2) / 4;
  TORCH_CHECK(t.size(1) == h * w, "unpatchify: ", t.size(1), " tokens for a ", height, "x", width,
              " latent");
  return t.reshape({B, h, w, C, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, height, width});
}

torch::Tensor image_ids(int64_t batch, int64_t height, int64_t width, torch::Device device) {
  const int64_t h = height / 2, w = width / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto ids = torch::zeros({h, w, 3}, opts);
  ids.select(2, 1).add_(torch::arange(h, opts).unsqueeze(1));
  ids.select(2, 2).add_(torch::arange(w, opts).unsqueeze(0));
  return ids.view({1, h * w, 3}).expand({batch, h * w, 3}).contiguous();
}

torch::Tensor text_ids(int64_t batch, int64_t length, torch::Device device) {
  return torch::zeros({batch, length, 3},
                      torch::TensorOptions().dtype(torch::kFloat).device(device));
}

}  // namespace fluxtrain
