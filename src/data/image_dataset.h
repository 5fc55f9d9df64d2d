// Images from a source (folder, shards, parquet) as a Dataset: each usable item's size read from
// its header up front, assigned an aspect-ratio bucket (or the one square of `resolution` when
// buckets are off), decoded and transformed when asked for. An item whose header does not read is
// reported and left out; one that fails to decode later is reported and replaced by the next item
// of its bucket that decodes, so a batch keeps its size and the order stays deterministic.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/buckets.h"
#include "data/data_report.h"
#include "data/dataset.h"
#include "data/image_source.h"
#include "data/transforms.h"

namespace fluxtrain {

// Larger images are reported rather than decoded (a file made to exhaust memory).
constexpr int64_t kMaxImagePixels = 100'000'000;

struct ImageDatasetOptions {
  int64_t resolution = 512;
  bool buckets = true;         // aspect-ratio buckets (else every image centre-cropped square)
  BucketOptions bucket;        // its resolution is `resolution`
  TransformOptions transform;  // training draws only (sample())
};

class ImageDataset : public Dataset {
 public:
  ImageDataset(std::shared_ptr<const ImageSource> source, ImageDatasetOptions options,
               std::shared_ptr<DataReport> report);
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  Example get(int64_t index) const override;
  Example sample(int64_t index, uint64_t draw) const override;
  std::string name() const override;
  // The distinct captions when there are at most 4096 (DreamBooth's two prompts, a small folder).
  std::optional<std::vector<std::string>> captions() const override;

  // The bucket of each index, and the table's distinct buckets in use (for the batch sampler and
  // the log).
  const Bucket& bucket(int64_t index) const { return buckets_.at(static_cast<size_t>(index)); }
  std::vector<int64_t> bucket_ids() const;
  std::string bucket_summary() const { return bucket_counts_text(buckets_); }
  const ImageSource& source() const { return *source_; }

 private:
  Example load(int64_t index, std::optional<uint64_t> draw) const;

  std::shared_ptr<const ImageSource> source_;
  ImageDatasetOptions options_;
  std::shared_ptr<DataReport> report_;
  std::vector<int64_t> items_;  // source item of each index
  std::vector<Bucket> buckets_;
  std::vector<std::vector<int64_t>> members_;  // indices per distinct bucket
  std::vector<size_t> member_slot_;            // where each index sits in members_
  std::vector<size_t> bucket_group_;           // which members_ list each index is in
};

}  // namespace fluxtrain
