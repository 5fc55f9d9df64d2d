// Which example comes at each point of training: a global stream of sample positions
// p = 0, 1, 2, ... over epochs (epoch p / N of a dataset of N examples), each epoch a permutation
// of the dataset drawn from (seed, epoch) or index order, shared out between ranks the way
// torch's DistributedSampler does it (rank r takes every world-th position). The position is the
// whole resume state: a run resumed at position p continues exactly, mid-epoch included.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace fluxtrain {

struct SampleOrderOptions {
  bool shuffle = true;  // a new permutation every epoch; false: index order
  uint64_t seed = 0;
  int64_t rank = 0, world = 1;
};

class SampleOrder {
 public:
  // Throws UserError for an empty dataset or a rank outside [0, world).
  SampleOrder(int64_t dataset_size, SampleOrderOptions options);

  int64_t dataset_size() const { return size_; }
  const SampleOrderOptions& options() const { return options_; }
  int64_t epoch(int64_t position) const { return position / size_; }
  // The dataset index at global position `position` (>= 0).
  int64_t index_at(int64_t position) const;
  // This rank's part of the global batch of batch x world samples that starts at `position`:
  // positions position + k world + rank for k = 0 .. batch - 1, as dataset indices.
  std::vector<int64_t> rank_batch(int64_t position, int64_t batch) const;

 private:
  int64_t size_;
  SampleOrderOptions options_;
  struct Cache {  // the current epoch's permutation (shared by copies; loader threads read it)
    std::mutex mutex;
    int64_t epoch = -1;
    std::vector<int64_t> permutation;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace fluxtrain
