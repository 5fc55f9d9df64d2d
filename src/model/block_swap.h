// Block swap (kohya's `blocks_to_swap`): the linear weights of the last transformer blocks live
// in host memory (one buffer per block, page-locked in place on CUDA) and each block's weights are
// copied to the device just before the block runs, on a side stream, while the block before it
// computes. At most two swapped blocks are held on the device at a time (the one running and the
// one being copied; an evicted block's memory is reused once the compute stream is done with it, so
// the memory plan counts three), so a card holds the resident blocks plus two or three. Backward
// walks the blocks in reverse and streams them again (with activation checkpointing the
// recomputation reuses the copy its backward then needs).
//
// What moves: the weights of the blocks' fluxtrain Linear layers (dense or 8-bit codes and
// scales: 99.9 % of a block's bytes). Biases, norm scales and LoRA adapters stay on the device.
// The copies are never kept for backward: the swapped layer's autograd function saves its input
// and asks for the weights again in backward. A trained swapped weight (method full) keeps its
// gradient, optimizer moments and EMA on the host: its gradient is computed on the device,
// copied to the host weight's .grad, and AdamW updates it there (ZeRO-Offload's arrangement);
// a layer whose host weight changed since its copy (each copy records the host tensors'
// versions) is copied again when it is next used.
//
// Which blocks (kohya's split: one double block weighs about two single blocks): N swaps the
// last N / 2 double blocks and the last 2 x (N - N / 2) single blocks.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fluxtrain {

struct FluxParams;
struct FluxImpl;
struct LinearImpl;

struct BlockSwapSplit {
  int64_t double_blocks = 0, single_blocks = 0;
};
// N's double and single blocks for `params`; UserError naming N and the limit when the model has
// fewer blocks than N asks for, or when N < 0.
BlockSwapSplit block_swap_split(const FluxParams& params, int64_t blocks_to_swap);
// The largest N the model allows.
int64_t max_blocks_to_swap(const FluxParams& params);

class BlockSwap {
 public:
  // `blocks`: each swapped block's linear layers, in execution order. The layers' weights move
  // into host memory (a buffer per block, page-locked when `device` is CUDA).
  BlockSwap(std::vector<std::vector<LinearImpl*>> blocks, torch::Device device);
  ~BlockSwap();
  BlockSwap(const BlockSwap&) = delete;
  BlockSwap& operator=(const BlockSwap&) = delete;

  // The device copies of block `block`'s layer `layer`: {weight} for a dense layer, {codes,
  // scale} for an 8-bit one. Waits for the block's copy (made now if it was not prefetched) and
  // starts the copy of the next swapped block in the current direction.
  const std::vector<torch::Tensor>& weights(size_t block, size_t layer);
  // The direction the blocks run in next: +1 forward, -1 backward (the trainer says so before
  // backward and before each forward); the next block that way is prefetched now.
  void expect(int direction);

  torch::Device device() const { return device_; }
  size_t blocks() const { return blocks_.size(); }
  int64_t host_bytes() const { return host_bytes_; }
  // Bookkeeping, for tests and logs: copies made (whole blocks), single layers copied again
  // because their host weights changed, the most blocks on the device at once.
  int64_t copies() const { return copies_; }
  int64_t refreshes() const { return refreshes_; }
  int64_t most_resident() const { return most_resident_; }
  // Every copy on the device dropped (tests; the next use copies again).
  void release_all();

 private:
  struct Resident;
  Resident& fetch(size_t block);  // resident or copied now (on the side stream on CUDA)
  bool layer_current(const Resident& r, size_t layer) const;
  void copy_layer(Resident& r, size_t layer);  // on the current stream
  void evict_for(size_t keep);
  void prefetch_after(size_t block);

  std::vector<std::vector<LinearImpl*>> blocks_;
  torch::Device device_;
  std::vector<std::unique_ptr<Resident>> resident_;  // at most 2
  size_t running_ = SIZE_MAX;
  int direction_ = 1;
  uint64_t clock_ = 0;
  int64_t host_bytes_ = 0, copies_ = 0, refreshes_ = 0, most_resident_ = 0;
  std::vector<torch::Tensor> buffers_;  // per block: its weights' host memory
  std::vector<void*> registered_;       // buffers page-locked with cudaHostRegister
  struct Streams;
  std::unique_ptr<Streams> streams_;  // CUDA only
};

// Where a swapped Linear's weights are: its block's index in the swap and its own in the block.
struct SwapSlot {
  std::shared_ptr<BlockSwap> swap;
  size_t block = 0, layer = 0;
};

// Turns on block swap for `model`'s last blocks (block_swap_split) with weights copied to
// `device`; the model's other tensors stay where they are and move with Module::to as usual,
// the swapped weights stay on the host. Returns the swap (also in model.block_swap); null for 0.
// Call before moving a large model to the device, so that its swapped weights never go there.
std::shared_ptr<BlockSwap> enable_block_swap(FluxImpl& model, int64_t blocks_to_swap,
                                             torch::Device device);

// x [..., in] -> x W^T + b for a swapped layer: W from the swap's device copy, in the dtype x
// computes in (autocast's when on), b (undefined without a bias) on the device. Under grad,
// backward fetches W again; a host weight that requires grad receives x's product with the
// output gradient, on the host.
torch::Tensor swapped_linear(const torch::Tensor& x, const LinearImpl& layer);

// The layer's weight [out, in] as float32 on the swap's device (DoRA's norm, merges).
torch::Tensor swapped_dense_weight(const LinearImpl& layer);

}  // namespace fluxtrain
