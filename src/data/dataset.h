// The dataset interface every training source implements (as libtorch's Dataset::get(index)):
// an indexable, finite collection of examples, each an image (or, once cached, its latents and
// text encodings) with its caption. Which example comes when, in which epoch and on which rank is
// the SampleOrder's business (data/sample_order.h); batching is the Loader's (data/loader.h).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fluxtrain {

// MLPerf validation: sample i of a validation set has timestep index i mod 8, scored at t = i / 8.
constexpr int64_t kValidationTimesteps = 8;

struct Example {
  torch::Tensor image;  // [3, H, W] float32 in [-1, 1] (undefined for cached latents)
  // The ControlNet's control image for `image`, [3, H, W] float32 in [-1, 1], transformed with it
  // (data/control_images.h); undefined when the run has none.
  torch::Tensor control_image;
  // From a latent cache (`fluxtrain prepare`), in the dtype it stores: the VAE posterior's mean
  // and log-variance [C, h, w], the T5 tokens [T, ctx] and CLIP vector [vec] of the caption;
  // undefined otherwise.
  torch::Tensor latent_mean, latent_logvar, txt, vec;
  // From a latent cache prepared with control images: the control image's posterior mean
  // [C, h, w] (what a ControlNet run encodes control images to); undefined otherwise.
  torch::Tensor control_latent_mean;
  std::string caption;
  // MLPerf validation: the fixed timestep index 0..7 of this sample (t = index / 8); -1 for
  // training examples.
  int64_t timestep_index = -1;
  double loss_weight = 1.0;  // per-sample weight of the loss (DreamBooth class images)
  std::string key;           // where it came from ("shapes/train/17", a file name), for reports
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // index in [0, size()); std::out_of_range otherwise. Must be safe to call from several threads.
  // Deterministic: validation and caching read examples this way.
  virtual Example get(int64_t index) const = 0;
  // A training draw of the example: random augmentation (crop offset, flip) seeded by `draw`
  // (the loader derives it from the run's seed and the sample's position). Default: get(index).
  virtual Example sample(int64_t index, uint64_t draw) const { return get(index); }
  virtual std::string name() const = 0;  // for logs: "shapes (train, 1000000 examples)"
  // Every caption this dataset can yield, when that is a small known set: the text encoders can
  // then encode each once and be freed. nullopt when captions are open-ended.
  virtual std::optional<std::vector<std::string>> captions() const { return std::nullopt; }
  // False for sources whose order is already random (procedural data): the sampler keeps index
  // order instead of shuffling.
  virtual bool wants_shuffle() const { return true; }
};

}  // namespace fluxtrain
