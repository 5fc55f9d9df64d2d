// Images as a dataset, with buckets and transforms (see image_dataset.h).
#include "data/image_dataset.h"

#include <map>
#include <set>

#include "core/errors.h"
#include "core/log.h"
#include "data/control_images.h"
#include "io/image.h"
#include "io/image_info.h"

namespace fluxtrain {

ImageDataset::ImageDataset(std::shared_ptr<const ImageSource> source, ImageDatasetOptions o,
                           std::shared_ptr<DataReport> report)
    : source_(std::move(source)), options_(std::move(o)), report_(std::move(report)) {
  options_.bucket.resolution = options_.resolution;
  const std::vector<Bucket> table =
      options_.buckets ? make_buckets(options_.bucket)
                       : std::vector<Bucket>{{options_.resolution, options_.resolution}};
  BucketOptions square = options_.bucket;
  square.max_upscale = 1e9;  // without buckets every image is made the one square
  for (int64_t i = 0; i < source_->size(); ++i) {
    const ImageItem& item = source_->item(i);
    std::optional<ImageInfo> info;
    try {
      info = probe_image(source_->read_head(i, 1 << 16), /*whole_file=*/false);
      if (!info) info = probe_image(source_->read_bytes(i), true);  // past the first 64 KB
    } catch (const UserError& e) {
      report_->add(item.key, e.what());
      continue;
    }
    if (!info) {
      report_->add(item.key, "cannot decode (not a PNG, JPEG, WebP, BMP or GIF image)");
      continue;
    }
    if (info->width * info->height > kMaxImagePixels) {
      report_->add(item.key, fmt::format("too large to decode ({}x{}: over {} megapixels)",
                                         info->width, info->height, kMaxImagePixels / 1000000));
      continue;
    }
    items_.push_back(i);
    buckets_.push_back(assign_bucket(table, info->width, info->height,
                                     options_.buckets ? options_.bucket : square));
  }
  if (items_.empty())
    user_error("{}: no usable images ({} reported)", source_->name(), report_->count());
  std::map<Bucket, size_t> group;
  member_slot_.resize(items_.size());
  bucket_group_.resize(items_.size());
  for (size_t k = 0; k < items_.size(); ++k) {
    auto [it, fresh] = group.emplace(buckets_[k], members_.size());
    if (fresh) members_.emplace_back();
    bucket_group_[k] = it->second;
    member_slot_[k] = members_[it->second].size();
    members_[it->second].push_back(static_cast<int64_t>(k));
  }
}

std::vector<int64_t> ImageDataset::bucket_ids() const {
  return bucket_ids_by_size(buckets_);
}

Example ImageDataset::load(int64_t index, std::optional<uint64_t> draw) const {
  if (index < 0 || index >= size())
    throw std::out_of_range(fmt::format("{} index {} not in [0, {})", name(), index, size()));
  const auto& group = members_[bucket_group_[static_cast<size_t>(index)]];
  const size_t start = member_slot_[static_cast<size_t>(index)];
  for (size_t tries = 0; tries < group.size(); ++tries) {
    const int64_t k = group[(start + tries) % group.size()];
    const int64_t i = items_[static_cast<size_t>(k)];
    const ImageItem& item = source_->item(i);
    try {
      const torch::Tensor hwc = decode_image(source_->read_bytes(i), item.key);
      Example ex;
      ex.image = fit_to_bucket(hwc, buckets_[static_cast<size_t>(k)], options_.transform, draw);
      ex.caption = item.caption;
      ex.loss_weight = item.loss_weight;
      ex.key = item.key;
      if (source_->has_control_images()) {  // the same size, bucket, crop and flip
        const torch::Tensor control =
            decode_image(source_->read_control_bytes(i), item.key + " (control image)");
        ex.control_image =
            fit_to_bucket(control_image_at_size(control, hwc.size(0), hwc.size(1)),
                          buckets_[static_cast<size_t>(k)], options_.transform, draw);
      }
      return ex;
    } catch (const UserError& e) {
      report_->add(item.key, e.what());  // strict: rethrows
    }
  }
  user_error("{}: no image of bucket {} decodes", name(),
             buckets_[static_cast<size_t>(index)].name());
}

Example ImageDataset::get(int64_t index) const {
  return load(index, std::nullopt);
}

Example ImageDataset::sample(int64_t index, uint64_t draw) const {
  return load(index, draw);
}

std::string ImageDataset::name() const {
  return fmt::format("{}, {} px{}", source_->name(), options_.resolution,
                     options_.buckets ? fmt::format(", {} buckets", members_.size()) : "");
}

std::optional<std::vector<std::string>> ImageDataset::captions() const {
  std::set<std::string> distinct;
  for (int64_t i : items_) {
    distinct.insert(source_->item(i).caption);
    if (distinct.size() > 4096) return std::nullopt;
  }
  distinct.insert("");
  return std::vector<std::string>(distinct.begin(), distinct.end());
}

}  // namespace fluxtrain
