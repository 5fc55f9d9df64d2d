// The distributed context a trainer is handed: this process's rank, the world size, and the
// reductions that cross ranks. SingleProcess is rank 0 of 1 (every reduction is the identity);
// c10d process groups (NCCL, Gloo) implement the same interface for data-parallel training.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace fluxtrain {

class DistContext {
 public:
  virtual ~DistContext() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t world_size() const = 0;
  // In place: every rank ends with the sum over ranks of `t` (same shape and dtype everywhere).
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
  // Rank 0 writes files and logs progress.
  bool is_main() const { return rank() == 0; }
};

class SingleProcess : public DistContext {
 public:
  int64_t rank() const override { return 0; }
  int64_t world_size() const override { return 1; }
  void all_reduce_sum(torch::Tensor&) override {}
};

}  // namespace fluxtrain
