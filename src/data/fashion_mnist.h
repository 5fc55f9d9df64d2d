// Fashion-MNIST (Zalando's 70,000 28x28 greyscale photos of clothing in 10 classes) as Debian's
// dataset-fashion-mnist installs it: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz under
// /usr/share/datasets/fashion-mnist. Captioned from the class names ("a photo of a sneaker"), so
// the model learns class-conditional generation from text; a real dataset a new user can train on
// without a download.
#pragma once
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace fluxtrain {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// "a photo of a t-shirt", "a photo of trousers", ... "a photo of an ankle boot", by label.
const std::array<const char*, 10>& fashion_mnist_captions();

class FashionMnistDataset : public Dataset {
 public:
  // split: "train" (60,000) or "test" (10,000). Images are enlarged by the largest whole factor
  // that fits `resolution` (bicubic) and centred on black padding: 28 px in 32 is 2 px of border.
  // `validation`: examples carry timestep indices (index mod 8). UserError naming the missing file
  // (with the apt-get line) or a malformed one.
  FashionMnistDataset(const std::string& dir, const std::string& split, int64_t resolution,
                      bool validation = false);
  int64_t size() const override { return count_; }
  Example get(int64_t index) const override;
  std::string name() const override;
  std::optional<std::vector<std::string>> captions() const override;
  int label(int64_t index) const { return labels_.at(static_cast<size_t>(index)); }

 private:
  std::string dir_, split_;
  int64_t resolution_, count_ = 0;
  bool validation_;
  std::vector<uint8_t> pixels_;  // [count, 28, 28]
  std::vector<uint8_t> labels_;
};

}  // namespace fluxtrain
