// Fashion-MNIST from Debian's files (skipped where dataset-fashion-mnist is not installed), and
// validation splits of any source.
#include "data/fashion_mnist.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/subset.h"
#include "io/idx.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;

TEST(FashionMnist, ClassCaptionedImagesPaddedToTheResolution) {
  if (!std::filesystem::exists(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << kFashionMnistDir << " is not installed (apt-get install dataset-fashion-mnist)";
  FashionMnistDataset test(kFashionMnistDir, "test", 32, /*validation=*/true);
  ASSERT_EQ(test.size(), 10000);
  const IdxArray raw = read_idx(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz");
  const IdxArray labels = read_idx(std::string(kFashionMnistDir) + "/t10k-labels-idx1-ubyte.gz");
  for (int64_t i : {0, 1, 4999, 9999}) {
    const Example ex = test.get(i);
    ASSERT_EQ(ex.image.sizes(), (std::vector<int64_t>{3, 32, 32}));
    EXPECT_EQ(ex.caption, fashion_mnist_captions()[labels.data[static_cast<size_t>(i)]]);
    EXPECT_EQ(ex.timestep_index, i % 8);
    // A 2 px black border, and the 28 x 28 pixels inside it exactly (v / 127.5 - 1), all three
    // channels alike.
    EXPECT_TRUE(ex.image.narrow(1, 0, 2).eq(-1).all().item<bool>());
    EXPECT_TRUE(ex.image.narrow(2, 30, 2).eq(-1).all().item<bool>());
    const auto want =
        torch::from_blob(const_cast<uint8_t*>(raw.data.data()) + i * 784, {28, 28}, torch::kUInt8)
            .to(torch::kFloat)
            .div(127.5)
            .sub(1.0);
    for (int64_t c = 0; c < 3; ++c)
      EXPECT_TRUE(torch::allclose(ex.image[c].narrow(0, 2, 28).narrow(1, 2, 28), want));
  }
  EXPECT_EQ(test.captions()->size(), 11u);  // ten classes and the empty caption
  EXPECT_EQ(fashion_mnist_captions()[9], std::string("a photo of an ankle boot"));
  // 64 px: enlarged twice (56 px) and padded by 4.
  FashionMnistDataset big(kFashionMnistDir, "test", 64);
  EXPECT_EQ(big.get(0).image.sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ(big.get(0).timestep_index, -1);
  EXPECT_NE(error_of([] {
              FashionMnistDataset("/nonexistent", "train", 32);
            }).find("apt-get install dataset-fashion-mnist"),
            std::string::npos);
}

TEST(ValidationSplit, FractionsAndCountsDrawnBySeed) {
  auto [train, val] = split_indices(100, "0.1", 3);
  EXPECT_EQ(val.size(), 10u);
  EXPECT_EQ(train.size(), 90u);
  EXPECT_TRUE(std::is_sorted(val.begin(), val.end()));
  std::vector<int64_t> both = train;
  both.insert(both.end(), val.begin(), val.end());
  std::sort(both.begin(), both.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(both[static_cast<size_t>(i)], i);
  EXPECT_EQ(split_indices(100, "0.1", 3).second, val);  // the same seed, the same split
  EXPECT_NE(split_indices(100, "0.1", 4).second, val);
  EXPECT_EQ(split_indices(100, "7", 3).second.size(), 7u);
  EXPECT_EQ(split_indices(10, "0.01", 3).second.size(), 1u);  // at least one
  EXPECT_TRUE(split_indices(10, "", 3).second.empty());
  EXPECT_NE(error_of([] { split_indices(10, "10", 0); }).find("would leave none to train on"),
            std::string::npos);
  EXPECT_NE(error_of([] { split_indices(10, "abc", 0); }).find("expected a fraction"),
            std::string::npos);
}
