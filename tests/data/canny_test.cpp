// Canny edges: steps (vertical, horizontal, diagonal, blurred) against hand-worked Sobel values
// and the NMS tie rule, hysteresis through a weak step joined to a strong one, the Gaussian
// kernel, BT.601 luminance, and the one-line errors.
#include "data/canny.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/errors.h"
#include "test_util.h"

using namespace fluxtrain;

using fluxtrain::testing::error_of;

namespace {

// A w x h grey image with pixel (x, y) = f(x, y).
std::vector<uint8_t> image(int w, int h, const std::function<int(int, int)>& f) {
  std::vector<uint8_t> img(static_cast<size_t>(w) * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img[static_cast<size_t>(y) * w + x] = static_cast<uint8_t>(f(x, y));
  return img;
}

// The edge map as rows of '#' (255) and '.' (0); anything else shows as '?'.
std::vector<std::string> edges(const std::vector<uint8_t>& img, int w, int h,
                               const CannyOptions& o) {
  const auto e = canny_edges(img.data(), w, h, o);
  EXPECT_EQ(e.size(), img.size());
  std::vector<std::string> rows(h, std::string(w, '?'));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint8_t v = e[static_cast<size_t>(y) * w + x];
      rows[y][x] = v == 255 ? '#' : v == 0 ? '.' : '?';
    }
  return rows;
}

CannyOptions options(double low, double high, double sigma) {
  CannyOptions o;
  o.low_threshold = low, o.high_threshold = high, o.sigma = sigma;
  return o;
}

}  // namespace

TEST(Canny, VerticalStepIsOneColumnWideOnTheLastDarkColumn) {
  // Columns 0..3 are 0, 4..7 are 255. gx = sum over the rows above, at and below (weights 1, 2,
  // 1) of I(x+1) - I(x-1): 4 * 255 = 1020 at x = 3 and at x = 4, 0 elsewhere; gy = 0. The tie
  // (3 and 4 both 1020, gradient horizontal) goes to the left one: 1020 > 0 on its left and
  // >= 1020 on its right, while x = 4 is not > its left. Rows 0 and 5 are the border.
  const auto img = image(8, 6, [](int x, int) { return x < 4 ? 0 : 255; });
  const std::vector<std::string> want = {"........", "...#....", "...#....",
                                         "...#....", "...#....", "........"};
  EXPECT_EQ(edges(img, 8, 6, options(100, 200, 0)), want);
  // The magnitude is exactly 1020: still strong at high = 1020, gone just above.
  EXPECT_EQ(edges(img, 8, 6, options(1020, 1020, 0)), want);
  EXPECT_EQ(edges(img, 8, 6, options(1020.01, 1020.01, 0)),
            std::vector<std::string>(6, "........"));
  // The same step the other way round (bright on the left): the edge stays on column 3.
  const auto flipped = image(8, 6, [](int x, int) { return x < 4 ? 255 : 0; });
  EXPECT_EQ(edges(flipped, 8, 6, options(100, 200, 0)), want);
}

TEST(Canny, HorizontalStepIsOneRowWideOnTheLastDarkRow) {
  // Rows 0..3 are 0, 4..7 are 255: gy = 4 * 255 = 1020 on rows 3 and 4; the upper one wins.
  const auto img = image(6, 8, [](int, int y) { return y < 4 ? 0 : 255; });
  const std::vector<std::string> want = {"......", "......", "......", ".####.",
                                         "......", "......", "......", "......"};
  EXPECT_EQ(edges(img, 6, 8, options(100, 200, 0)), want);
  EXPECT_EQ(edges(img, 6, 8, options(1020, 1020, 0)), want);
  EXPECT_EQ(edges(img, 6, 8, options(1021, 1021, 0)), std::vector<std::string>(8, "......"));
}

TEST(Canny, DiagonalStepsCompareAlongTheDiagonal) {
  // I = 255 where s = x + y >= 5. Along the kernel rows, I(t+1) - I(t-1) = 255 iff t is 4 or 5,
  // so gx = gy = 255 * {1, 3, 3, 1} for s = 3, 4, 5, 6 (0 elsewhere): direction 45, compared with
  // (x-1, y-1) and (x+1, y+1), i.e. s - 2 and s + 2. s = 4: 765 > 0 (s = 2), >= 255 (s = 6);
  // s = 5: 765 > 255 (s = 3), >= 0 (s = 7); s = 3 and 6 lose to 765. So both s = 4 and s = 5,
  // a 4-connected staircase. (Comparing left / right instead would keep only s = 4; comparing
  // along the other diagonal, where s is the same, would keep nothing.)
  const auto img = image(7, 7, [](int x, int y) { return x + y >= 5 ? 255 : 0; });
  const std::vector<std::string> want = {".......", "...##..", "..##...", ".##....",
                                         ".#.....", ".......", "......."};
  EXPECT_EQ(edges(img, 7, 7, options(100, 200, 0)), want);
  // Mirrored left-right (gx and gy of opposite signs: direction 135), the edges mirror too.
  const auto mirrored = image(7, 7, [](int x, int y) { return (6 - x) + y >= 5 ? 255 : 0; });
  const std::vector<std::string> want_mirrored = {".......", "..##...", "...##..", "....##.",
                                                  ".....#.", ".......", "......."};
  EXPECT_EQ(edges(mirrored, 7, 7, options(100, 200, 0)), want_mirrored);
}

TEST(Canny, FlatImagesHaveNoEdges) {
  const auto img = image(9, 7, [](int, int) { return 128; });
  const std::vector<std::string> none(7, ".........");
  EXPECT_EQ(edges(img, 9, 7, CannyOptions{}), none);
  EXPECT_EQ(edges(img, 9, 7, options(0, 0, 0)), none);  // magnitude 0 never survives NMS
}

TEST(Canny, WeakStepAloneHasNoEdges) {
  // Rows 0..3 are 255, 4..7 are 215: |gy| = 4 * 40 = 160 on rows 3 and 4, between low 100 and
  // high 200, so row 3 survives NMS as weak only and nothing is strong.
  const auto img = image(8, 8, [](int, int y) { return y < 4 ? 255 : 215; });
  EXPECT_EQ(edges(img, 8, 8, options(100, 200, 0)), std::vector<std::string>(8, "........"));
  // It is the threshold that drops it: with high = 160 row 3 is strong.
  const std::vector<std::string> row3 = {"........", "........", "........", ".######.",
                                         "........", "........", "........", "........"};
  EXPECT_EQ(edges(img, 8, 8, options(100, 160, 0)), row3);
}

TEST(Canny, WeakStepJoinedToAStrongStepFollowsThroughHysteresis) {
  // x < 4: 0. x >= 4: 255 on rows 0..3, 215 on rows 4..7. A strong vertical step between columns
  // 3 and 4 (contrast 255 above, 215 below) meets the weak horizontal step of the test above.
  // By hand (gx, gy; NMS direction 0 for all of columns 3 and 4):
  //   rows 1, 2:  (3) 1020, 0 and (4) 1020, 0: tie, column 3 wins.
  //   row 3: (3) 255 + 2*255 + 215 = 980, -40 -> |g|^2 962000; (4) 980, -3*40 -> 974800: 4 wins.
  //   row 4: (3) 255 + 2*215 + 215 = 900, -40 -> 811600; (4) 900, -120 -> 824400: 4 wins.
  //   rows 5, 6:  (3) 860, 0 and (4) 860, 0: tie, column 3 wins.
  // The strong chain (3,1) (3,2) (4,3) (4,4) (3,5) (3,6) is 8-connected. For x >= 5 rows 3 and 4
  // have gx = 0, gy = -160 as before: row 3 survives NMS, weak, and joins (4,3) through (5,3).
  const auto img = image(10, 8, [](int x, int y) { return x < 4 ? 0 : y < 4 ? 255 : 215; });
  const std::vector<std::string> want = {"..........", "...#......", "...#......", "....#####.",
                                         "....#.....", "...#......", "...#......", ".........."};
  EXPECT_EQ(edges(img, 10, 8, options(100, 200, 0)), want);
  // With low above 160 the weak row is not a candidate and only the strong chain is left.
  const std::vector<std::string> strong = {"..........", "...#......", "...#......", "....#.....",
                                           "....#.....", "...#......", "...#......", ".........."};
  EXPECT_EQ(edges(img, 10, 8, options(161, 200, 0)), strong);
  // With high 1000 only (3,1) and (3,2) (1020) are strong; (4,3) (sqrt 974800 ~ 987) is weak and
  // touches them only diagonally, so the whole picture needs 8-connected growth.
  EXPECT_EQ(edges(img, 10, 8, options(100, 1000, 0)), want);
  EXPECT_EQ(edges(img, 10, 8, options(100, 1021, 0)), std::vector<std::string>(8, ".........."));
}

TEST(Canny, BlurredStepStaysOneColumnWide) {
  // 16 x 5, columns 0..7 are 0, 8..15 are 255, sigma 1.4 (radius 5). Normalised weights w0..w5
  // ~ .28498 .22081 .10272 .02869 .00481 .00048; the blurred column x is 255 times the sum of
  // w_k over k >= 8 - x, rounded: columns 3..12 = 0 1 9 35 91 164 220 246 254 255 (the two halves
  // mirror). gx = 4 (B(x+1) - B(x-1)) = 4, 36, 136, 328, 516, 516, 328, 136, 36, 4 for x = 3..12:
  // one tie at the top, which column 7 wins.
  const auto img = image(16, 5, [](int x, int) { return x < 8 ? 0 : 255; });
  const std::string mid = ".......#........", blank(16, '.');
  const std::vector<std::string> want = {blank, mid, mid, mid, blank};
  EXPECT_EQ(edges(img, 16, 5, CannyOptions{}), want);
  // The magnitude is exactly 516 (from the 8-bit blur; unrounded it would be 515.90).
  EXPECT_EQ(edges(img, 16, 5, options(516, 516, 1.4)), want);
  EXPECT_EQ(edges(img, 16, 5, options(516.01, 516.01, 1.4)), std::vector<std::string>(5, blank));
  // Transposed (a horizontal step, blurred down the columns): row 7 by the same numbers.
  const auto tall = image(5, 16, [](int, int y) { return y < 8 ? 0 : 255; });
  std::vector<std::string> want_tall(16, ".....");
  want_tall[7] = ".###.";
  EXPECT_EQ(edges(tall, 5, 16, CannyOptions{}), want_tall);
  EXPECT_EQ(edges(tall, 5, 16, options(516, 516, 1.4)), want_tall);
  EXPECT_EQ(edges(tall, 5, 16, options(516.01, 516.01, 1.4)),
            std::vector<std::string>(16, "....."));
}

TEST(Canny, TinyImagesAreAllBorder) {
  const auto img = image(2, 3, [](int x, int) { return x == 0 ? 0 : 255; });
  EXPECT_EQ(canny_edges(img.data(), 2, 3, options(0, 0, 0)), std::vector<uint8_t>(6, 0));
}

TEST(Canny, GaussianKernelWeights) {
  EXPECT_EQ(gaussian_kernel(0), std::vector<double>{1.0});
  // sigma 0.5: radius ceil(1.5) = 2, weights exp(-2 k^2): 1, e^-2, e^-8, over their sum.
  const double sum = 1 + 2 * std::exp(-2.0) + 2 * std::exp(-8.0);  // 1.2713415
  const auto k = gaussian_kernel(0.5);
  ASSERT_EQ(k.size(), 5u);
  EXPECT_NEAR(k[2], 1 / sum, 1e-12);  // 0.786570
  EXPECT_NEAR(k[1], std::exp(-2.0) / sum, 1e-12);
  EXPECT_NEAR(k[3], std::exp(-2.0) / sum, 1e-12);  // 0.106450
  EXPECT_NEAR(k[0], std::exp(-8.0) / sum, 1e-12);
  EXPECT_NEAR(k[4], std::exp(-8.0) / sum, 1e-12);  // 0.000264
  EXPECT_NEAR(k[2], 0.786570, 1e-6);
  EXPECT_NEAR(k[1], 0.106450, 1e-6);
  // sigma 1: radius 3, 7 weights; sigma 1.4 (the default): radius ceil(4.2) = 5, 11 weights.
  const auto k1 = gaussian_kernel(1);
  ASSERT_EQ(k1.size(), 7u);
  EXPECT_NEAR(k1[3 + 3] / k1[3], std::exp(-4.5), 1e-12);
  EXPECT_EQ(gaussian_kernel(1.4).size(), 11u);
  double total = 0;
  for (double v : gaussian_kernel(1.4)) total += v;
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(Canny, RgbToGreyIsBt601Rounded) {
  // 0.299 R + 0.587 G + 0.114 B: red 76.245 -> 76, green 149.685 -> 150, blue 29.07 -> 29,
  // white 255, (10, 20, 30): 2.99 + 11.74 + 3.42 = 18.15 -> 18, (100, 150, 200): 29.9 + 88.05 +
  // 22.8 = 140.75 -> 141.
  const std::vector<uint8_t> rgb = {255, 0,   0,   0,  255, 0,  0,   0,   255,
                                    255, 255, 255, 10, 20,  30, 100, 150, 200};
  const std::vector<uint8_t> want = {76, 150, 29, 255, 18, 141};
  EXPECT_EQ(rgb_to_grey(rgb.data(), 3, 2), want);
}

TEST(Canny, BadOptionsNameTheValue) {
  const auto img = image(4, 4, [](int, int) { return 0; });
  auto run = [&](double low, double high, double sigma) {
    return error_of([&] { canny_edges(img.data(), 4, 4, options(low, high, sigma)); });
  };
  EXPECT_EQ(run(300, 200, 0), "canny: low threshold 300 is above the high threshold 200");
  EXPECT_EQ(run(-1, 200, 0), "canny: low threshold -1 must be >= 0");
  EXPECT_EQ(run(100, std::numeric_limits<double>::quiet_NaN(), 0),
            "canny: high threshold nan must be >= 0");
  EXPECT_EQ(run(100, 200, -0.5), "canny: sigma -0.5 must be in [0, 100] (0 = no blur)");
  EXPECT_EQ(run(100, 200, 1000), "canny: sigma 1000 must be in [0, 100] (0 = no blur)");
  EXPECT_EQ(error_of([] { gaussian_kernel(-2); }),
            "canny: sigma -2 must be in [0, 100] (0 = no blur)");
  EXPECT_EQ(run(200, 200, 0), "");  // low == high is fine
  // A null or empty image is a bug in the caller, not bad input.
  EXPECT_THROW(canny_edges(nullptr, 4, 4, CannyOptions{}), std::invalid_argument);
  EXPECT_THROW(canny_edges(img.data(), 0, 4, CannyOptions{}), std::invalid_argument);
  EXPECT_THROW(rgb_to_grey(img.data(), 4, -1), std::invalid_argument);
}
