// Autoencoders without weights (see autoencoder.h).
#include "model/autoencoder.h"

#include "core/rng.h"

namespace fluxtrain {

ProjectionAutoencoder::ProjectionAutoencoder(int64_t factor, int64_t channels, uint64_t seed)
    : factor_(factor), channels_(channels) {
  auto gen = make_generator(seed, RngStream::kInit, 0xAE);
  auto m = torch::randn({3 * factor * factor, channels}, gen);
  projection_ = std::get<0>(torch::linalg_qr(m)).t().contiguous();  // [channels, 3 f^2]
}

torch::Tensor ProjectionAutoencoder::encode(const torch::Tensor& images) {
  auto x = torch::pixel_unshuffle(images, factor_);  // [B, 3f^2, h, w]
  return torch::einsum("ck,bkhw->bchw", {projection_.to(x.device(), x.scalar_type()), x});
}

torch::Tensor ProjectionAutoencoder::decode(const torch::Tensor& latents) {
  auto x = torch::einsum("ck,bchw->bkhw",
                         {projection_.to(latents.device(), latents.scalar_type()), latents});
  return torch::pixel_shuffle(x, factor_);
}

}  // namespace fluxtrain
