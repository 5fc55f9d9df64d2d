// Epochs, shuffling and rank sharding of sample positions (see sample_order.h).
#include "data/sample_order.h"

#include "core/errors.h"
#include "core/rng.h"

namespace fluxtrain {

SampleOrder::SampleOrder(int64_t dataset_size, SampleOrderOptions options)
    : size_(dataset_size), options_(options) {
  if (size_ < 1) user_error("dataset: it has no examples");
  if (options_.world < 1 || options_.rank < 0 || options_.rank >= options_.world)
    user_error("rank {} of world size {}: expected 0 <= rank < world", options_.rank,
               options_.world);
}

int64_t SampleOrder::index_at(int64_t position) const {
  TORCH_CHECK(position >= 0, "SampleOrder: negative position ", position);
  const int64_t i = position % size_;
  if (!options_.shuffle) return i;
  std::lock_guard<std::mutex> lock(cache_->mutex);
  const int64_t e = epoch(position);
  if (e != cache_->epoch) {
    auto gen = make_generator(options_.seed, RngStream::kShuffle, static_cast<uint64_t>(e));
    auto perm = torch::randperm(size_, gen, torch::kInt64);
    cache_->permutation.assign(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + size_);
    cache_->epoch = e;
  }
  return cache_->permutation[static_cast<size_t>(i)];
}

std::vector<int64_t> SampleOrder::rank_batch(int64_t position, int64_t batch) const {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(batch));
  for (int64_t k = 0; k < batch; ++k)
    out.push_back(index_at(position + k * options_.world + options_.rank));
  return out;
}

}  // namespace fluxtrain
