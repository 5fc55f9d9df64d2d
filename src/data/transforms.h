// What a decoded image goes through before training: resized to cover its bucket with its aspect
// ratio kept (area when shrinking, bicubic when enlarging: io/image_resize.h), cropped to the
// bucket (centred, or at a random offset), mirrored left to right at random, and mapped to
// [-1, 1]. The random choices come from a seed (the loader's per-sample draw), so a batch is a
// pure function of its position.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>

#include "data/buckets.h"

namespace fluxtrain {

struct TransformOptions {
  bool random_crop = false;  // else centre crop
  bool random_flip = false;  // horizontal, with probability 1/2
};

// uint8 [H, W, 3] -> float [3, bucket.height, bucket.width] in [-1, 1]. `draw` seeds the random
// crop offset and flip; nullopt (validation, caching) means centre crop and no flip.
torch::Tensor fit_to_bucket(const torch::Tensor& hwc, const Bucket& bucket,
                            const TransformOptions& options, std::optional<uint64_t> draw);

// The size an image of height x width is resized to before cropping to `bucket`: the smallest
// that covers it with the image's aspect ratio, rounded to whole pixels (at least the bucket).
std::pair<int64_t, int64_t> cover_size(int64_t height, int64_t width, const Bucket& bucket);

}  // namespace fluxtrain
