// A prepared latent cache (`fluxtrain prepare`): a folder of safetensors shards with the VAE
// posterior of every image (mean and log-variance, unscaled, so each epoch can draw a new sample
// as MLPerf does) and the T5 sequence and CLIP vector of every distinct caption (the empty one
// included, for caption dropout), described by cache.json: counts, buckets, shapes, dtypes,
// checksums, the encoder files used and the transform settings. Reading it never loads an
// encoder.
//
//   cache.json                   written last: its presence means the cache is complete
//   latents-00000.safetensors    "mean.<i>", "logvar.<i>" for examples i of shard 0 ([C, h, w]);
//                                with control images (cache.json "control"), "control.<i>":
//                                the control image's posterior mean
//   text-00000.safetensors       "txt.<c>" [T, ctx], "vec.<c>" [vec] for captions c of shard 0
//   *.done                       a finished shard's size and XXH64 (an interrupted prepare
//                                skips these when it resumes)
#pragma once
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/dataset.h"
#include "io/safetensors.h"

namespace fluxtrain {

constexpr const char* kLatentCacheFormat = "fluxtrain-latent-cache";
constexpr int kLatentCacheVersion = 1;

struct CachedExample {
  std::string key;
  int64_t caption = 0;            // index into the captions
  int64_t shard = 0;              // latents shard
  int64_t width = 0, height = 0;  // image size (pixels) the latents came from
  bool validation = false;
  int64_t timestep_index = -1;  // validation examples: 0..7 in equal numbers
  double loss_weight = 1.0;
};

struct LatentCacheManifest {
  nlohmann::json json;  // the whole cache.json
  std::vector<CachedExample> examples;
  std::vector<std::string> captions;
  int64_t empty_caption = -1;
  int64_t text_shard_size = 0;
  std::vector<std::string> latent_shards, text_shards;  // file names
};

// True when `dir` holds a cache.json.
bool is_latent_cache(const std::string& dir);
// Reads and checks cache.json (format, version, fields, every shard's size and, when asked, its
// XXH64). UserError naming the cache and what is wrong.
LatentCacheManifest read_latent_cache_manifest(const std::string& dir, bool verify_checksums);

// The cached examples of one split as a dataset: latents and text encodings per example, read
// from the memory-mapped shards in the dtype the cache stores (the trainer converts on the
// device, so a bf16 cache moves half the bytes through the loader). Without `with_text` the
// examples carry no txt/vec (the loader's figure for latents alone).
class LatentCacheDataset : public Dataset {
 public:
  LatentCacheDataset(const std::string& dir, bool validation_split, bool with_text = true);
  int64_t size() const override { return static_cast<int64_t>(examples_.size()); }
  Example get(int64_t index) const override;
  std::string name() const override;
  std::optional<std::vector<std::string>> captions() const override;
  const LatentCacheManifest& manifest() const { return *manifest_; }
  // Bucket id per index (examples of one latent size share one), for the batch sampler.
  std::vector<int64_t> bucket_ids() const;
  // The cached encodings of a caption by text ([T, ctx], [vec] in the stored dtype), e.g. the
  // empty one for caption dropout; nullopt when the cache does not hold it.
  std::optional<std::pair<torch::Tensor, torch::Tensor>> text_of(const std::string& caption) const;

 private:
  std::pair<torch::Tensor, torch::Tensor> text_by_id(int64_t caption) const;

  std::string dir_;
  bool validation_, with_text_, has_control_ = false;
  std::shared_ptr<const LatentCacheManifest> manifest_;
  std::vector<int64_t> examples_;  // indices into manifest_->examples
  std::vector<std::shared_ptr<SafetensorsFile>> latents_, text_;
  std::unordered_map<std::string, int64_t> caption_ids_;  // caption text -> index
};

}  // namespace fluxtrain
