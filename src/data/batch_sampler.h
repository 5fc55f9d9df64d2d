// Which examples make each batch. The loader's position is b, the number of batches every rank
// has drawn; a batch sampler maps (b, rank) to dataset indices, a pure function of the seed, so
// a run resumed at position b continues exactly (mid-epoch included) and ranks never coordinate.
//  - SequentialBatches: fixed-size examples in SampleOrder's global stream (epochs, seeded
//    permutations, rank r takes every world-th position).
//  - BucketBatches: examples of several sizes, each batch from one aspect-ratio bucket: per epoch
//    each bucket's examples are shuffled and cut into batches (a bucket's last batch may be
//    smaller), the batches are shuffled together, padded to a multiple of the world size with the
//    epoch's first batches, and dealt out: rank r takes batch b * world + r of the epoch's list.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "data/sample_order.h"

namespace fluxtrain {

class BatchSampler {
 public:
  virtual ~BatchSampler() = default;
  // This rank's batch number b (b = 0, 1, 2, ... over the whole run) as dataset indices.
  virtual std::vector<int64_t> batch(int64_t b) const = 0;
  // Examples in batch number b over all ranks (what "samples seen" counts).
  virtual int64_t global_samples(int64_t b) const = 0;
  // Batches each rank draws per epoch.
  virtual int64_t batches_per_epoch() const = 0;
  int64_t epoch(int64_t b) const { return b / batches_per_epoch(); }
};

class SequentialBatches : public BatchSampler {
 public:
  SequentialBatches(SampleOrder order, int64_t batch_size);
  std::vector<int64_t> batch(int64_t b) const override;
  int64_t global_samples(int64_t) const override;
  // ceil(dataset size / (batch x world)): an epoch ends inside the batch that crosses it.
  int64_t batches_per_epoch() const override;
  const SampleOrder& order() const { return order_; }

 private:
  SampleOrder order_;
  int64_t batch_size_;
};

class BucketBatches : public BatchSampler {
 public:
  // bucket_of[i]: the bucket id of dataset index i (any integers). UserError for no examples or
  // a rank outside [0, world).
  BucketBatches(std::vector<int64_t> bucket_of, int64_t batch_size, SampleOrderOptions options);
  std::vector<int64_t> batch(int64_t b) const override;
  int64_t global_samples(int64_t b) const override;
  int64_t batches_per_epoch() const override { return per_rank_; }
  // The epoch's batches over all ranks, in dealing order (before padding): for tests and logs.
  std::vector<std::vector<int64_t>> epoch_batches(int64_t epoch) const;

 private:
  const std::vector<std::vector<int64_t>>& plan(int64_t epoch) const;  // padded, cached

  std::vector<std::vector<int64_t>> buckets_;  // dataset indices per bucket, ascending
  int64_t batch_size_;
  SampleOrderOptions options_;
  int64_t per_rank_ = 0;
  // The plans of the two latest epochs asked for (at an epoch's end the trainer still counts the
  // old epoch's samples while workers draw from the new one).
  struct Cache {
    std::mutex mutex;
    std::map<int64_t, std::vector<std::vector<int64_t>>> plans;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace fluxtrain
