// Batches from a dataset in the order a SampleOrder gives, and the collation of examples into
// batch tensors. The loader's position (global samples consumed) is what a checkpoint records;
// seek() puts a resumed run back exactly where it was. (Worker threads, prefetch and pinned
// memory come with the file-based sources.)
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/sample_order.h"

namespace fluxtrain {

struct Batch {
  torch::Tensor images;  // [B, 3, H, W] float32 in [-1, 1]
  std::vector<std::string> captions;
  torch::Tensor timestep_indices;  // [B] int64 (-1: none)
  torch::Tensor loss_weights;      // [B] float32
  std::vector<int64_t> indices;    // dataset indices
  std::vector<std::string> keys;
  int64_t size() const { return static_cast<int64_t>(captions.size()); }
};

// Examples `indices` of `data` stacked into a batch (all images must have one size).
Batch collate(const Dataset& data, const std::vector<int64_t>& indices);

class Loader {
 public:
  // batch_size: examples per call of next() on this rank.
  Loader(std::shared_ptr<const Dataset> data, SampleOrder order, int64_t batch_size);

  // This rank's next batch; the position advances by batch_size x world.
  Batch next();
  int64_t position() const { return position_; }  // global samples consumed
  void seek(int64_t position);
  int64_t batch_size() const { return batch_size_; }
  // Global samples per next() (batch_size x world).
  int64_t global_batch() const { return batch_size_ * order_.options().world; }
  const Dataset& dataset() const { return *data_; }
  const SampleOrder& order() const { return order_; }

 private:
  std::shared_ptr<const Dataset> data_;
  SampleOrder order_;
  int64_t batch_size_;
  int64_t position_ = 0;
};

}  // namespace fluxtrain
