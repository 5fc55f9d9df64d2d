// Batching and collation (see loader.h).
#include "data/loader.h"

#include "core/device.h"
#include "core/errors.h"

namespace fluxtrain {

Batch collate(const Dataset& data, const std::vector<int64_t>& indices) {
  Batch b;
  std::vector<torch::Tensor> images;
  std::vector<int64_t> timesteps;
  std::vector<float> weights;
  for (int64_t index : indices) {
    Example ex = data.get(index);
    if (!images.empty() && ex.image.sizes() != images.front().sizes())
      throw std::invalid_argument(
          fmt::format("collate: {} example {} is {}, but the batch's first is {}", data.name(),
                      index, shape_str(ex.image.sizes()), shape_str(images.front().sizes())));
    images.push_back(ex.image);
    b.captions.push_back(std::move(ex.caption));
    b.keys.push_back(std::move(ex.key));
    timesteps.push_back(ex.timestep_index);
    weights.push_back(static_cast<float>(ex.loss_weight));
  }
  TORCH_CHECK(!images.empty(), "collate: no indices");
  b.images = torch::stack(images);                               // [B, 3, H, W]
  b.timestep_indices = torch::tensor(timesteps, torch::kInt64);  // [B]
  b.loss_weights = torch::tensor(weights, torch::kFloat);        // [B]
  b.indices = indices;
  return b;
}

Loader::Loader(std::shared_ptr<const Dataset> data, SampleOrder order, int64_t batch_size)
    : data_(std::move(data)), order_(std::move(order)), batch_size_(batch_size) {
  if (batch_size_ < 1) user_error("batch_size {}: expected at least 1", batch_size_);
}

Batch Loader::next() {
  Batch b = collate(*data_, order_.rank_batch(position_, batch_size_));
  position_ += global_batch();
  return b;
}

void Loader::seek(int64_t position) {
  if (position < 0) user_error("data position {}: expected >= 0", position);
  position_ = position;
}

}  // namespace fluxtrain
