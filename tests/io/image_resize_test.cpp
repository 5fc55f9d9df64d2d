// Resizing against independent computations: block means, hand-worked area weights and Keys
// cubic values, linear ramps (which cubic convolution reproduces), constants; crops by index.
#include "io/image_resize.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace fluxtrain;

namespace {

std::vector<float> values(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous().to(torch::kFloat);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// Where output pixel o's centre falls in input coordinates (pixel centres at i + 0.5).
double centre(int64_t o, int64_t in, int64_t out) {
  return (o + 0.5) * double(in) / out - 0.5;
}

}  // namespace

TEST(ImageResize, IntegerDownscaleIsBlockMeans) {
  torch::manual_seed(3);
  // Integer-valued pixels, so every sum and quarter is exact in float: equality, not tolerance.
  torch::Tensor x = torch::randint(0, 256, {3, 8, 12}, torch::kFloat);
  torch::Tensor y = resize_image(x, 4, 6);
  ASSERT_EQ(y.sizes().vec(), (std::vector<int64_t>{3, 4, 6}));
  torch::Tensor blocks = x.reshape({3, 4, 2, 6, 2}).sum({2, 4}).div(4.0);
  EXPECT_TRUE(torch::equal(y, blocks));
  // 3x on one axis only; the other is copied.
  torch::Tensor z = resize_image(x.narrow(2, 0, 9), 8, 3);
  EXPECT_TRUE(torch::allclose(z, x.narrow(2, 0, 9).reshape({3, 8, 3, 3}).mean(3), 1e-6, 1e-4));
  // Random floats against avg_pool2d.
  torch::Tensor r = torch::rand({2, 3, 16, 20}) * 2 - 1;
  EXPECT_TRUE(torch::allclose(resize_image(r, 4, 5), torch::avg_pool2d(r, {4, 4}), 1e-6, 1e-6));
}

TEST(ImageResize, NonIntegerAreaWeightsByHand) {
  // 1-D, 3 -> 2: output 0 covers [0, 1.5): pixel 0 whole, half of pixel 1 -> weights 2/3, 1/3;
  // output 1 covers [1.5, 3): 1/3, 2/3.
  torch::Tensor a = torch::tensor({0.0f, 3.0f, 6.0f}).reshape({1, 1, 3});
  EXPECT_EQ(values(resize_image(a, 1, 2)), (std::vector<float>{1.0f, 5.0f}));

  // 2-D, [3, 5] -> [2, 2]: rows as above; columns 5 -> 2 cover [0, 2.5) and [2.5, 5):
  // weights (0.4, 0.4, 0.2, 0, 0) and (0, 0, 0.2, 0.4, 0.4).
  const double wr[2][3] = {{2.0 / 3, 1.0 / 3, 0}, {0, 1.0 / 3, 2.0 / 3}};
  const double wc[2][5] = {{0.4, 0.4, 0.2, 0, 0}, {0, 0, 0.2, 0.4, 0.4}};
  torch::Tensor x = torch::tensor({1.0f, -2.0f, 3.5f, 0.25f, 7.0f,  //
                                   -1.0f, 4.0f, 0.5f, 2.0f, -3.0f,  //
                                   6.0f, 1.5f, -0.75f, 8.0f, 2.5f})
                        .reshape({1, 3, 5});
  torch::Tensor y = resize_image(x, 2, 2);
  auto xa = x.accessor<float, 3>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      double want = 0;
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 5; ++c) want += wr[i][r] * wc[j][c] * xa[0][r][c];
      EXPECT_NEAR(y[0][i][j].item<double>(), want, 1e-6) << i << "," << j;
    }
  // 5 -> 3: output width 5/3; output 1 covers [5/3, 10/3): 1/3 of pixel 1, pixel 2, 1/3 of
  // pixel 3, each over 5/3 -> weights 0.2, 0.6, 0.2.
  torch::Tensor v = torch::tensor({0.0f, 10.0f, 20.0f, 40.0f, 80.0f}).reshape({1, 5});
  std::vector<float> got = values(resize_image(v, 1, 3));
  EXPECT_NEAR(got[0], (0.0 * 1 + 10.0 * (2.0 / 3)) / (5.0 / 3), 1e-5);  // 0 whole, 2/3 of 1
  EXPECT_NEAR(got[1], 0.2 * 10 + 0.6 * 20 + 0.2 * 40, 1e-5);
  EXPECT_NEAR(got[2], (40.0 * (2.0 / 3) + 80.0 * 1) / (5.0 / 3), 1e-5);
}

TEST(ImageResize, BicubicHandWorkedValues) {
  // [0, 1] -> 4 pixels: centres x = -0.25, 0.25, 0.75, 1.25. Keys (a = -0.5):
  // k(0.25) = 0.8671875, k(0.75) = 0.2265625, k(1.25) = -0.0703125, k(1.75) = -0.0234375.
  // Output 0 (x = -0.25): taps -2..1 clamp to 0, 0, 0, 1 -> value of pixel 1 times k(1.25).
  // Output 1 (x = 0.25): taps -1..2 -> 0, 0, 1, 1 -> k(0.75) + k(1.75) = 0.203125.
  // Outputs 2 and 3 mirror them: 1 - 0.203125, 1 + 0.0703125.
  torch::Tensor a = torch::tensor({0.0f, 1.0f}).reshape({1, 2});
  EXPECT_EQ(values(resize_image(a, 1, 4)),
            (std::vector<float>{-0.0703125f, 0.203125f, 0.796875f, 1.0703125f}));
  // Along the height too: the same numbers in a column.
  EXPECT_EQ(values(resize_image(a.reshape({2, 1}), 4, 1)),
            (std::vector<float>{-0.0703125f, 0.203125f, 0.796875f, 1.0703125f}));
  // A single spike, 3 -> 6: centres x = (o + 0.5) / 2 - 0.5 = -0.25, 0.25, ..., 2.25. The
  // spike at pixel 1 weighs k(x - 1): k(1.25), k(0.75), k(0.25), k(0.25), k(0.75), k(1.25).
  torch::Tensor s = torch::tensor({0.0f, 1.0f, 0.0f}).reshape({1, 3});
  EXPECT_EQ(values(resize_image(s, 1, 6)),
            (std::vector<float>{-0.0703125f, 0.2265625f, 0.8671875f, 0.8671875f, 0.2265625f,
                                -0.0703125f}));
}

TEST(ImageResize, BicubicReproducesALinearRampInTheInterior) {
  const int64_t in = 9, out = 23;
  torch::Tensor ramp = (torch::arange(in, torch::kDouble) * 0.3 - 1.0).reshape({1, 1, in});
  torch::Tensor y = resize_image(ramp.expand({2, 5, in}), 5, out);  // height kept (copied)
  ASSERT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, 5, out}));
  ASSERT_EQ(y.scalar_type(), torch::kDouble);
  int checked = 0;
  for (int64_t o = 0; o < out; ++o) {
    const double x = centre(o, in, out);
    if (std::floor(x) - 1 < 0 || std::floor(x) + 2 > in - 1) continue;  // taps past an edge
    ++checked;
    for (int64_t r = 0; r < 5; ++r) EXPECT_NEAR(y[1][r][o].item<double>(), x * 0.3 - 1.0, 1e-12);
  }
  EXPECT_EQ(checked, 15);  // outputs 4..18: every one whose four taps lie inside
  // The same along the height of a float image: and 2-D, a plane a*y + b*x + c.
  torch::Tensor yy = torch::arange(7, torch::kFloat).reshape({7, 1});
  torch::Tensor xx = torch::arange(6, torch::kFloat).reshape({1, 6});
  torch::Tensor plane = (yy * 0.5 - xx * 0.25 + 2.0).reshape({1, 7, 6});
  torch::Tensor p = resize_image(plane, 16, 13);
  int inside = 0;
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 13; ++j) {
      const double cy = centre(i, 7, 16), cx = centre(j, 6, 13);
      if (std::floor(cy) < 1 || std::floor(cy) + 2 > 6 || std::floor(cx) < 1 ||
          std::floor(cx) + 2 > 5)
        continue;
      ++inside;
      EXPECT_NEAR(p[0][i][j].item<float>(), cy * 0.5 - cx * 0.25 + 2.0, 1e-5) << i << "," << j;
    }
  EXPECT_EQ(inside, 70);  // rows 3..12 x columns 3..9
}

TEST(ImageResize, ConstantStaysConstant) {
  torch::Tensor c = torch::full({3, 11, 7}, 0.37f);
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{
           {5, 3}, {23, 19}, {4, 20}, {11, 7}, {1, 1}, {3, 7}, {30, 2}}) {
    torch::Tensor y = resize_image(c, h, w);
    ASSERT_EQ(y.sizes().vec(), (std::vector<int64_t>{3, h, w}));
    EXPECT_TRUE(torch::allclose(y, torch::full({3, h, w}, 0.37f), 0, 1e-6)) << h << "x" << w;
  }
}

TEST(ImageResize, SizesDtypesAndCopies) {
  torch::Tensor x = torch::rand({2, 3, 10, 14});
  EXPECT_EQ(resize_image(x, 5, 28).sizes().vec(), (std::vector<int64_t>{2, 3, 5, 28}));
  EXPECT_EQ(resize_image(x[0][0], 1, 1).sizes().vec(), (std::vector<int64_t>{1, 1}));
  // 1x1 is the mean of the whole image.
  EXPECT_NEAR(resize_image(x[0][0], 1, 1).item<float>(), x[0][0].mean().item<float>(), 1e-6);
  // The same size is a copy, not a view.
  torch::Tensor same = resize_image(x, 10, 14);
  EXPECT_TRUE(torch::equal(same, x));
  same.fill_(0);
  EXPECT_GT(x.abs().sum().item<float>(), 0);
  // Non-contiguous input is read as it looks; half precision comes back as half.
  torch::Tensor t = x[0].transpose(1, 2);  // [3, 14, 10]
  EXPECT_TRUE(torch::allclose(resize_image(t, 7, 5), resize_image(t.contiguous(), 7, 5)));
  EXPECT_EQ(resize_image(x.to(torch::kHalf), 4, 4).scalar_type(), torch::kHalf);
  EXPECT_THROW(resize_image(torch::zeros({3, 4, 4}, torch::kByte), 2, 2), std::invalid_argument);
  EXPECT_THROW(resize_image(x, 0, 3), std::invalid_argument);
  EXPECT_THROW(resize_image(torch::zeros({5}), 2, 2), std::invalid_argument);
  EXPECT_THROW(resize_image(torch::zeros({3, 0, 4}), 2, 2), std::invalid_argument);
}

TEST(ImageResize, Crops) {
  torch::Tensor x = torch::arange(3 * 6 * 9, torch::kFloat).reshape({3, 6, 9});
  torch::Tensor c = crop_image(x, 1, 2, 4, 5);
  ASSERT_EQ(c.sizes().vec(), (std::vector<int64_t>{3, 4, 5}));
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 5; ++j)
        ASSERT_EQ(c[ch][i][j].item<float>(), float((ch * 6 + i + 1) * 9 + j + 2));
  EXPECT_THROW(crop_image(x, 3, 0, 4, 9), std::invalid_argument);
  EXPECT_THROW(crop_image(x, 0, -1, 2, 2), std::invalid_argument);

  // Centre offsets as torchvision: round((H - h) / 2) with halves to even.
  auto top_left = [&](int64_t h, int64_t w) {
    torch::Tensor k = center_crop(x, h, w);
    const float v = k[0][0][0].item<float>();  // = top * 9 + left
    return std::make_pair(int64_t(v) / 9, int64_t(v) % 9);
  };
  EXPECT_EQ(top_left(4, 5), std::make_pair(int64_t(1), int64_t(2)));  // 2/2 = 1, 4/2 = 2
  EXPECT_EQ(top_left(5, 8), std::make_pair(int64_t(0), int64_t(0)));  // 0.5 -> 0, 0.5 -> 0
  EXPECT_EQ(top_left(3, 6), std::make_pair(int64_t(2), int64_t(2)));  // 1.5 -> 2, 1.5 -> 2
  EXPECT_EQ(top_left(6, 4), std::make_pair(int64_t(0), int64_t(2)));  // 0, 2.5 -> 2
  EXPECT_EQ(top_left(6, 2), std::make_pair(int64_t(0), int64_t(4)));  // 3.5 -> 4
  EXPECT_TRUE(torch::equal(center_crop(x, 6, 9), x));
  EXPECT_THROW(center_crop(x, 7, 9), std::invalid_argument);
}
