// Batch samplers (see batch_sampler.h).
#include "data/batch_sampler.h"

#include <map>

#include "core/errors.h"
#include "core/rng.h"

namespace fluxtrain {

SequentialBatches::SequentialBatches(SampleOrder order, int64_t batch_size)
    : order_(std::move(order)), batch_size_(batch_size) {
  if (batch_size_ < 1) user_error("batch_size {}: expected at least 1", batch_size_);
}

std::vector<int64_t> SequentialBatches::batch(int64_t b) const {
  return order_.rank_batch(b * batch_size_ * order_.options().world, batch_size_);
}

int64_t SequentialBatches::global_samples(int64_t) const {
  return batch_size_ * order_.options().world;
}

int64_t SequentialBatches::batches_per_epoch() const {
  const int64_t global = batch_size_ * order_.options().world;
  return (order_.dataset_size() + global - 1) / global;
}

BucketBatches::BucketBatches(std::vector<int64_t> bucket_of, int64_t batch_size,
                             SampleOrderOptions options)
    : batch_size_(batch_size), options_(options) {
  if (bucket_of.empty()) user_error("dataset: it has no examples");
  if (batch_size_ < 1) user_error("batch_size {}: expected at least 1", batch_size_);
  if (options_.world < 1 || options_.rank < 0 || options_.rank >= options_.world)
    user_error("rank {} of world size {}: expected 0 <= rank < world", options_.rank,
               options_.world);
  std::map<int64_t, std::vector<int64_t>> by_bucket;
  for (size_t i = 0; i < bucket_of.size(); ++i)
    by_bucket[bucket_of[i]].push_back(static_cast<int64_t>(i));
  int64_t batches = 0;
  for (auto& [id, indices] : by_bucket) {
    batches += (static_cast<int64_t>(indices.size()) + batch_size_ - 1) / batch_size_;
    buckets_.push_back(std::move(indices));
  }
  per_rank_ = (batches + options_.world - 1) / options_.world;
}

std::vector<std::vector<int64_t>> BucketBatches::epoch_batches(int64_t epoch) const {
  std::vector<std::vector<int64_t>> out;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    std::vector<int64_t> order = buckets_[k];
    if (options_.shuffle) {
      auto gen = make_generator(options_.seed, RngStream::kShuffle,
                                derive_seed(static_cast<uint64_t>(epoch), k + 1));
      auto perm = torch::randperm(static_cast<int64_t>(order.size()), gen, torch::kInt64);
      const int64_t* p = perm.data_ptr<int64_t>();
      std::vector<int64_t> shuffled;
      for (int64_t i = 0; i < perm.numel(); ++i)
        shuffled.push_back(order[static_cast<size_t>(p[i])]);
      order = std::move(shuffled);
    }
    for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size_))
      out.emplace_back(
          order.begin() + start,
          order.begin() + std::min(order.size(), start + static_cast<size_t>(batch_size_)));
  }
  if (options_.shuffle) {
    auto gen = make_generator(options_.seed, RngStream::kShuffle,
                              derive_seed(static_cast<uint64_t>(epoch), 0));
    auto perm = torch::randperm(static_cast<int64_t>(out.size()), gen, torch::kInt64);
    const int64_t* p = perm.data_ptr<int64_t>();
    std::vector<std::vector<int64_t>> shuffled;
    for (int64_t i = 0; i < perm.numel(); ++i)
      shuffled.push_back(std::move(out[static_cast<size_t>(p[i])]));
    out = std::move(shuffled);
  }
  return out;
}

const std::vector<std::vector<int64_t>>& BucketBatches::plan(int64_t epoch) const {
  // Callers hold cache_->mutex.
  auto& plans = cache_->plans;
  if (auto it = plans.find(epoch); it != plans.end()) return it->second;
  auto batches = epoch_batches(epoch);
  const size_t real = batches.size();
  for (size_t i = 0; batches.size() < static_cast<size_t>(per_rank_ * options_.world); ++i)
    batches.push_back(batches[i % real]);
  if (plans.size() >= 2) plans.erase(plans.begin());  // the oldest
  return plans.emplace(epoch, std::move(batches)).first->second;
}

std::vector<int64_t> BucketBatches::batch(int64_t b) const {
  TORCH_CHECK(b >= 0, "BucketBatches: negative batch number ", b);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  const auto& batches = plan(b / per_rank_);
  return batches[static_cast<size_t>((b % per_rank_) * options_.world + options_.rank)];
}

int64_t BucketBatches::global_samples(int64_t b) const {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  const auto& batches = plan(b / per_rank_);
  int64_t n = 0;
  for (int64_t r = 0; r < options_.world; ++r)
    n += static_cast<int64_t>(
        batches[static_cast<size_t>((b % per_rank_) * options_.world + r)].size());
  return n;
}

}  // namespace fluxtrain
