// Aspect-ratio buckets: a table of resolutions of about the same pixel count in steps of the
// model's patch size, each image assigned the bucket nearest its aspect ratio (never enlarged by
// more than a set factor to fill it), so that every batch is drawn from one bucket and no image is
// squashed or cropped to a square.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fluxtrain {

struct BucketOptions {
  int64_t resolution = 512;  // buckets hold about resolution^2 pixels
  int64_t step = 16;         // sides are multiples of this (FLUX: 8 px VAE x 2 px patches)
  int64_t min_side = 256, max_side = 1024;
  // The most an image is enlarged to fill its bucket: an image too small for its bucket gets a
  // bucket of the same shape shrunk (in steps) to what it can fill. 1 = never upscale.
  double max_upscale = 1.0;
};

struct Bucket;
// Each entry's bucket as an id that orders buckets by size (width, then height), so that raw
// images and their latent cache number, and so shuffle, the same buckets alike.
std::vector<int64_t> bucket_ids_by_size(const std::vector<Bucket>& buckets);

struct Bucket {
  int64_t width = 0, height = 0;
  bool operator==(const Bucket& o) const { return width == o.width && height == o.height; }
  bool operator!=(const Bucket& o) const { return !(*this == o); }
  bool operator<(const Bucket& o) const {
    return width != o.width ? width < o.width : height < o.height;
  }
  std::string name() const;  // "512x768" (width x height)
};

// Every width from min_side to max_side in steps, with the largest height in steps that keeps
// width x height <= resolution^2 and lies within [min_side, max_side]; sorted by width.
// UserError for a resolution or step that is not a positive multiple of each other, or sides out
// of order.
std::vector<Bucket> make_buckets(const BucketOptions& options);

// The bucket for an image of `width` x `height`: the table's entry nearest in aspect ratio (by
// |log(w/h) - log(bw/bh)|; a tie goes to the larger bucket), shrunk in steps (keeping its shape
// as near as the steps allow, at least one step a side) when filling it would enlarge the image
// by more than max_upscale.
Bucket assign_bucket(const std::vector<Bucket>& table, int64_t width, int64_t height,
                     const BucketOptions& options);

// "512x512: 40, 448x576: 12, ..." (most images first), for the log.
std::string bucket_counts_text(const std::vector<Bucket>& assigned);

}  // namespace fluxtrain
