// Control images joined to a dataset's examples (see control_images.h).
#include "data/control_images.h"

#include <filesystem>

#include "core/errors.h"
#include "io/files.h"
#include "io/image.h"
#include "io/image_info.h"
#include "io/image_resize.h"

namespace fluxtrain {
namespace fs = std::filesystem;

torch::Tensor canny_control_image(const torch::Tensor& image, const CannyOptions& options) {
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3, "canny_control_image: expected [3, H, W]");
  const torch::Tensor hwc = to_uint8_hwc(image.detach().to(torch::kCPU)).contiguous();
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1));
  const std::vector<uint8_t> grey = rgb_to_grey(hwc.data_ptr<uint8_t>(), w, h);
  const std::vector<uint8_t> edges = canny_edges(grey.data(), w, h, options);
  auto map = torch::from_blob(const_cast<uint8_t*>(edges.data()), {1, h, w}, torch::kUInt8)
                 .to(torch::kFloat);
  return (map / 127.5 - 1).expand({3, h, w}).contiguous();
}

torch::Tensor control_image_at_size(const torch::Tensor& control, int64_t height, int64_t width) {
  if (control.size(0) == height && control.size(1) == width) return control;
  return resize_image(control.permute({2, 0, 1}).to(torch::kFloat), height, width)
      .round()
      .clamp(0, 255)
      .to(torch::kUInt8)
      .permute({1, 2, 0})
      .contiguous();
}

namespace {

class ControlImageDataset : public Dataset {
 public:
  ControlImageDataset(std::shared_ptr<const Dataset> inner, ControlImageOptions o)
      : inner_(std::move(inner)), o_(std::move(o)) {}
  int64_t size() const override { return inner_->size(); }
  Example get(int64_t index) const override { return join(inner_->get(index), std::nullopt); }
  Example sample(int64_t index, uint64_t draw) const override {
    return join(inner_->sample(index, draw), draw);
  }
  std::string name() const override {
    return fmt::format("{}; control images: {}", inner_->name(), o_.source);
  }
  std::optional<std::vector<std::string>> captions() const override { return inner_->captions(); }
  bool wants_shuffle() const override { return inner_->wants_shuffle(); }

 private:
  Example join(Example ex, std::optional<uint64_t> draw) const {
    if (!ex.image.defined())
      user_error("control_images: {} has no images (a latent cache): train on the image folder",
                 inner_->name());
    if (o_.source == "canny") {
      ex.control_image = canny_control_image(ex.image, o_.canny);
      return ex;
    }
    if (o_.source == "column") {  // joined by the ImageDataset of a source that has them
      if (!ex.control_image.defined())
        user_error("control_images column: {} has no control image for {}", inner_->name(), ex.key);
      return ex;
    }
    const std::string control_path = (fs::path(o_.source) / ex.key).string();
    const std::string image_path = (fs::path(o_.image_dir) / ex.key).string();
    torch::Tensor control = read_image(control_path);  // uint8 [h, w, 3]
    // The original's size from its header (64 KiB; the whole file only when that does not say).
    auto original = probe_image(read_file_head(image_path, 1 << 16), /*whole_file=*/false);
    if (!original) original = probe_image(read_file_bytes(image_path), /*whole_file=*/true);
    if (!original) user_error("{}: cannot read its size", image_path);
    control = control_image_at_size(control, original->height, original->width);
    const Bucket bucket{ex.image.size(2), ex.image.size(1)};
    ex.control_image = fit_to_bucket(control, bucket, o_.transform, draw);
    return ex;
  }

  std::shared_ptr<const Dataset> inner_;
  ControlImageOptions o_;
};

}  // namespace

std::shared_ptr<const Dataset> with_control_images(std::shared_ptr<const Dataset> inner,
                                                   const ControlImageOptions& options) {
  if (options.source.empty() || !inner) return inner;
  if (options.source != "canny" && options.source != "column") {
    std::error_code ec;
    if (!fs::is_directory(options.source, ec))
      user_error(
          "control_images '{}': not a directory (expected canny or a folder of control "
          "images named as the training images)",
          options.source);
    if (options.image_dir.empty() || !fs::is_directory(options.image_dir, ec))
      user_error("control_images '{}': a control folder goes with an image folder `data`",
                 options.source);
  }
  if (options.source == "canny") check_canny_options(options.canny);  // before any example
  return std::make_shared<ControlImageDataset>(std::move(inner), options);
}

}  // namespace fluxtrain
