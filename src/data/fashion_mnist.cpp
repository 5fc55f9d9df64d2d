// Fashion-MNIST from Debian's IDX files (see fashion_mnist.h).
#include "data/fashion_mnist.h"

#include <filesystem>

#include "core/errors.h"
#include "io/idx.h"
#include "io/image_resize.h"

namespace fluxtrain {
namespace fs = std::filesystem;

const std::array<const char*, 10>& fashion_mnist_captions() {
  static const std::array<const char*, 10> c = {
      "a photo of a t-shirt",    "a photo of trousers",  "a photo of a pullover",
      "a photo of a dress",      "a photo of a coat",    "a photo of a sandal",
      "a photo of a shirt",      "a photo of a sneaker", "a photo of a bag",
      "a photo of an ankle boot"};
  return c;
}

FashionMnistDataset::FashionMnistDataset(const std::string& dir, const std::string& split,
                                         int64_t resolution, bool validation)
    : dir_(dir), split_(split), resolution_(resolution), validation_(validation) {
  if (split != "train" && split != "test")
    user_error("fashion-mnist split '{}': expected train or test", split);
  if (resolution < 28) user_error("fashion-mnist: resolution {} is below 28 px", resolution);
  const std::string stem = split == "train" ? "train" : "t10k";
  auto file = [&](const std::string& kind) {
    for (const std::string ext : {".gz", ""}) {
      const fs::path p = fs::path(dir) / (stem + "-" + kind + ext);
      if (fs::exists(p)) return p.string();
    }
    user_error(
        "fashion-mnist: {}/{}-{}.gz is missing (apt-get install dataset-fashion-mnist, or give "
        "its folder as data: fashion-mnist:/path)",
        dir, stem, kind);
  };
  const IdxArray images = read_idx(file("images-idx3-ubyte"));
  const IdxArray labels = read_idx(file("labels-idx1-ubyte"));
  if (images.shape.size() != 3 || images.shape[1] != 28 || images.shape[2] != 28)
    user_error("fashion-mnist: {} images are not [N, 28, 28]", split);
  if (labels.shape.size() != 1 || labels.shape[0] != images.shape[0])
    user_error("fashion-mnist: {} has {} labels for {} images", split,
               labels.shape.empty() ? 0 : labels.shape[0], images.shape[0]);
  for (uint8_t l : labels.data)
    if (l > 9) user_error("fashion-mnist: {} has a label {} outside 0..9", split, int(l));
  count_ = images.shape[0];
  pixels_ = images.data;
  labels_ = labels.data;
}

Example FashionMnistDataset::get(int64_t index) const {
  if (index < 0 || index >= count_)
    throw std::out_of_range(fmt::format("fashion-mnist index {} not in [0, {})", index, count_));
  auto grey = torch::from_blob(const_cast<uint8_t*>(pixels_.data()) + index * 28 * 28, {1, 28, 28},
                               torch::kUInt8)
                  .to(torch::kFloat)
                  .div(127.5)
                  .sub(1.0);  // [1, 28, 28] in [-1, 1]
  const int64_t factor = resolution_ / 28, side = 28 * factor;
  if (factor > 1) grey = resize_image(grey, side, side).clamp(-1, 1);
  auto image = torch::full({3, resolution_, resolution_}, -1.0f);
  const int64_t off = (resolution_ - side) / 2;
  image.narrow(1, off, side).narrow(2, off, side).copy_(grey.expand({3, side, side}));
  Example ex;
  ex.image = image;
  ex.caption = fashion_mnist_captions()[labels_[static_cast<size_t>(index)]];
  ex.timestep_index = validation_ ? index % kValidationTimesteps : -1;
  ex.key = fmt::format("fashion-mnist/{}/{}", split_, index);
  return ex;
}

std::string FashionMnistDataset::name() const {
  return fmt::format("fashion-mnist ({}, {} images, {} px)", split_, count_, resolution_);
}

std::optional<std::vector<std::string>> FashionMnistDataset::captions() const {
  std::vector<std::string> out(fashion_mnist_captions().begin(), fashion_mnist_captions().end());
  out.emplace_back();
  return out;
}

}  // namespace fluxtrain
