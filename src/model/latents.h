// Latent <-> token layout: 2x2 patches, position ids for RoPE, FLUX's latent scale and shift.
#pragma once
#include <torch/torch.h>

namespace fluxtrain {

constexpr double kFluxLatentScale = 0.3611;
constexpr double kFluxLatentShift = 0.1159;

// b c (h 2) (w 2) -> b (h w) (c 2 2):  [B, C, H, W] -> [B, (H/2)(W/2), 4C].
torch::Tensor patchify(const torch::Tensor& latents);
// Inverse of patchify for a latent of height h and width w (in latent pixels).
torch::Tensor unpatchify(const torch::Tensor& tokens, int64_t height, int64_t width);
// Position ids (0, row, col) for each patch of a [height, width] latent -> [B, (h/2)(w/2), 3].
torch::Tensor image_ids(int64_t batch, int64_t height, int64_t width, torch::Device device);
// All-zero ids for text tokens -> [B, length, 3].
torch::Tensor text_ids(int64_t batch, int64_t length, torch::Device device);

}  // namespace fluxtrain
