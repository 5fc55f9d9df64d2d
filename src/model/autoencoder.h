// Image <-> latent interface (the FLUX VAE implements it later) and the identity autoencoder the
// tiny preset uses: pixel space with each f x f block of pixels folded into channels, lossless.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

namespace fluxtrain {

class ImageAutoencoder {
 public:
  virtual ~ImageAutoencoder() = default;
  // images: [B, 3, H, W] in [-1, 1] -> latents [B, C, H/f, W/f] (already scaled for the model).
  virtual torch::Tensor encode(const torch::Tensor& images) = 0;
  virtual torch::Tensor decode(const torch::Tensor& latents) = 0;
  // The posterior before scaling, what a latent cache stores: mean and log-variance
  // [B, C, h, w]. Deterministic autoencoders: the latents and a log-variance of -30 (no noise).
  virtual std::pair<torch::Tensor, torch::Tensor> encode_moments(const torch::Tensor& images) {
    auto z = encode(images);
    return {z, torch::full_like(z, -30.0)};
  }
  // What encode() returns from posterior moments: mean + exp(logvar / 2) eps (the mean when eps
  // is undefined), scaled and shifted for the model. Deterministic autoencoders: the mean, as is.
  virtual torch::Tensor latents_from_moments(const torch::Tensor& mean, const torch::Tensor& logvar,
                                             const torch::Tensor& eps) {
    return mean;
  }
  virtual int64_t latent_channels() const = 0;
  virtual int64_t factor() const = 0;
  virtual std::string name() const = 0;
};

class IdentityAutoencoder : public ImageAutoencoder {
 public:
  explicit IdentityAutoencoder(int64_t factor) : factor_(factor) {}
  torch::Tensor encode(const torch::Tensor& images) override {
    return torch::pixel_unshuffle(images, factor_);
  }
  torch::Tensor decode(const torch::Tensor& latents) override {
    return torch::pixel_shuffle(latents, factor_);
  }
  int64_t latent_channels() const override { return 3 * factor_ * factor_; }
  int64_t factor() const override { return factor_; }
  std::string name() const override { return "identity"; }

 private:
  int64_t factor_;
};

// A stand-in with a real VAE's latent shape (for benchmarks and tests of the 12B presets without
// their weights): each f x f pixel block (3 f^2 values) is projected to `channels` values by a
// fixed random matrix with orthonormal rows; decode applies its transpose.
class ProjectionAutoencoder : public ImageAutoencoder {
 public:
  ProjectionAutoencoder(int64_t factor, int64_t channels, uint64_t seed);
  torch::Tensor encode(const torch::Tensor& images) override;
  torch::Tensor decode(const torch::Tensor& latents) override;
  int64_t latent_channels() const override { return channels_; }
  int64_t factor() const override { return factor_; }
  std::string name() const override { return "stand-in projection"; }

 private:
  int64_t factor_, channels_;
  torch::Tensor projection_;  // [channels, 3 f^2], orthonormal rows
};

}  // namespace fluxtrain
