// Batches from a dataset in the order a BatchSampler gives: worker threads load batches ahead
// into a bounded queue (each batch is a pure function of its number, so threads change nothing
// but speed), optionally in pinned host memory for non-blocking copies to a GPU. The position
// (batches drawn, and the samples they held over all ranks) is what a checkpoint records; seek()
// puts a resumed run back exactly where it was.
#pragma once
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/batch_sampler.h"
#include "data/dataset.h"

namespace fluxtrain {

struct Batch {
  torch::Tensor images;          // [B, 3, H, W] float32 in [-1, 1] (undefined for cached latents)
  torch::Tensor control_images;  // [B, 3, H, W] float32 in [-1, 1] (ControlNet runs only)
  torch::Tensor control_latent_mean;  // [B, C, h, w] from a latent cache with control images
  // Cached encodings (a prepared latent cache): posterior mean and log-variance [B, C, h, w],
  // T5 tokens [B, T, ctx] and CLIP vector [B, vec]; undefined otherwise.
  torch::Tensor latent_mean, latent_logvar, txt, vec;
  std::vector<std::string> captions;
  torch::Tensor timestep_indices;  // [B] int64 (-1: none)
  torch::Tensor loss_weights;      // [B] float32
  std::vector<int64_t> indices;    // dataset indices
  std::vector<std::string> keys;
  std::vector<uint64_t> draws;  // each example's training draw (empty outside training batches)
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

// Examples of `data` stacked into a batch (all of one size). With `draws`, example k is
// data.sample(indices[k], draws[k]) (a training draw); without, data.get(indices[k]).
Batch collate(const Dataset& data, const std::vector<int64_t>& indices,
              const std::vector<uint64_t>& draws = {});
// Examples (read for `indices`) stacked into a batch; `dataset_name` is for messages.
Batch stack_examples(std::vector<Example> examples, const std::vector<int64_t>& indices,
                     const std::string& dataset_name);
// `indices` in batches of consecutive examples of one shape, at most `max_batch` each (a
// validation pass over images in several buckets).
std::vector<Batch> collate_runs(const Dataset& data, const std::vector<int64_t>& indices,
                                int64_t max_batch);
// The batch's tensors in page-locked memory (needs a CUDA device; the Loader refuses pin_memory
// without one).
Batch pin_batch(Batch batch);

struct LoaderOptions {
  int64_t workers = 0;      // threads loading ahead (0: load in the calling thread)
  int64_t prefetch = 4;     // batches loaded ahead at most (with workers)
  bool pin_memory = false;  // page-locked batches, for non_blocking copies to CUDA
  uint64_t seed = 0;        // seeds each example's training draw (crop, flip)
  int64_t rank = 0, world = 1;
};

class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> data, std::shared_ptr<const BatchSampler> sampler,
         LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // This rank's next batch; an exception thrown while loading it is rethrown here.
  Batch next();
  int64_t position() const { return position_; }          // batches drawn
  int64_t samples_seen() const { return samples_seen_; }  // their examples over all ranks
  // Continue from batch `position`, `samples_seen` examples in (as a checkpoint recorded them).
  void seek(int64_t position, int64_t samples_seen);
  const Dataset& dataset() const { return *data_; }
  const BatchSampler& sampler() const { return *sampler_; }
  const LoaderOptions& options() const { return options_; }

 private:
  Batch load(int64_t b) const;
  void start_workers();
  void stop_workers();
  void work();

  std::shared_ptr<const Dataset> data_;
  std::shared_ptr<const BatchSampler> sampler_;
  LoaderOptions options_;
  int64_t position_ = 0, samples_seen_ = 0;

  // Workers: each claims the next batch number not yet claimed, while it is fewer than prefetch
  // ahead of the consumer, and files the batch (or the exception) under its number.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
  int64_t next_claim_ = 0;
  std::map<int64_t, Batch> ready_;
  std::map<int64_t, std::exception_ptr> failed_;
};

}  // namespace fluxtrain
