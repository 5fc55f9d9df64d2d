// `fluxtrain prepare`: a source encoded once with a model's VAE and text encoders into a latent
// cache (data/latent_cache.h) that training reads without loading any encoder. Images are taken
// as validation and caching see them (centre crop, no flip) at their bucket sizes; each image's
// posterior mean and log-variance are stored, and each distinct caption's T5 sequence and CLIP
// vector (the empty caption and the validation prompts included). Shards are written one at a
// time, atomically, each marked done with its size and checksum, so an interrupted prepare
// resumes where it stopped; cache.json is written last. A validation split gets timestep indices
// 0..7 in equal numbers (MLPerf). With control_images each example's control image is encoded
// too (its posterior mean, "control.<i>"), and cache.json's "control" says from what.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/data_report.h"
#include "sample/model_files.h"
#include "train/data_spec.h"

namespace fluxtrain {

ConfigSchema prepare_schema();

struct PrepareOptions {
  std::string model;
  bool model_is_path = false;
  ModelFileOverrides overrides;
  bool stand_in_encoders = false;  // a flux-dev/schnell preset: weight-free stand-ins
  torch::Device device = torch::kCPU;
  int64_t threads = 0;
  DataOptions data;
  int64_t resolution = 0;
  std::string out;
  torch::ScalarType dtype = torch::kBFloat16;  // of the stored latents and encodings
  int64_t batch_size = 8, shard_size = 256, text_shard_size = 64;
  uint64_t seed = 0;
  std::vector<std::string> validation_prompts;

  static PrepareOptions from_config(const Config& config);
};

struct PrepareResult {
  std::string dir;
  int64_t train = 0, validation = 0, captions = 0;
  int64_t shards_written = 0, shards_skipped = 0;
  double seconds = 0, images_per_s = 0;
  std::shared_ptr<DataReport> report;
};

PrepareResult prepare_cache(const PrepareOptions& options);

}  // namespace fluxtrain
