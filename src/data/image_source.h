// Where a dataset's images and captions come from, before any decoding: a list of items, each
// with its caption, its loss weight and a way to read its encoded bytes. Image folders (with
// metadata.jsonl/json, side-car .txt captions or one prompt for all), webdataset tar shards and
// Hugging Face parquet files are sources; DreamBooth joins an instance and a class source.
// Sources are built once (listing files, reading captions); what cannot be used is reported to
// the run's DataReport when the source is built, not dropped.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fluxtrain {

struct ImageItem {
  std::string key;  // for reports: "imgs/cat.jpg", "shard-000.tar:cat01", "train.parquet row 7"
  std::string caption;
  double loss_weight = 1.0;
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  virtual const ImageItem& item(int64_t i) const = 0;
  // The encoded image (PNG, JPEG, WebP, BMP). UserError naming the item when it cannot be read.
  // Safe to call from several threads.
  virtual std::string read_bytes(int64_t i) const = 0;
  // The first `n` bytes or more (headers, for the image size); default: read_bytes(i).
  virtual std::string read_head(int64_t i, size_t n) const { return read_bytes(i); }
  virtual std::string name() const = 0;  // "image folder /data/art (120 images)"
  // ControlNet datasets that hold a control image per row (diffusers' conditioning_image
  // column): whether this source has them, and item i's encoded control image.
  virtual bool has_control_images() const { return false; }
  virtual std::string read_control_bytes(int64_t i) const;
};

// Several sources one after the other (DreamBooth: instance images, then class images).
class ConcatSource : public ImageSource {
 public:
  explicit ConcatSource(std::vector<std::shared_ptr<ImageSource>> parts);
  int64_t size() const override { return total_; }
  const ImageItem& item(int64_t i) const override;
  std::string read_bytes(int64_t i) const override;
  std::string name() const override;

 private:
  std::pair<const ImageSource*, int64_t> locate(int64_t i) const;
  std::vector<std::shared_ptr<ImageSource>> parts_;
  std::vector<int64_t> starts_;
  int64_t total_ = 0;
};

// The file name extensions taken as images: .jpg .jpeg .png .webp .bmp (any case).
bool has_image_extension(const std::string& name);
// Pickled files (.pt, .pth, .ckpt, .pkl, .pickle, .bin): never opened, listed when found.
bool has_pickle_extension(const std::string& name);

}  // namespace fluxtrain
