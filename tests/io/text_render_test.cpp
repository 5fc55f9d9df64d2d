// Text rendering: the font (hand-checked glyphs, every glyph inked and distinct), glyph placement,
// scaling, UTF-8 as '?', fitting with "...", and labelled grids pixel by pixel.
#include "io/text_render.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using namespace fluxtrain;

namespace {

// A mask as rows of '.' and '#', top row first.
std::vector<std::string> rows_of(const torch::Tensor& mask) {
  std::vector<std::string> out;
  auto a = mask.accessor<float, 2>();
  for (int64_t y = 0; y < mask.size(0); ++y) {
    std::string row;
    for (int64_t x = 0; x < mask.size(1); ++x) row.push_back(a[y][x] != 0.0f ? '#' : '.');
    out.push_back(row);
  }
  return out;
}

std::vector<int64_t> shape(const torch::Tensor& t) {
  return t.sizes().vec();
}

// Images whose values are all distinct and strictly inside (-1, 1), so none looks like ink.
torch::Tensor ramp_images(int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t count = n * c * h * w;
  return torch::arange(count, torch::kFloat)
      .div(double(count))
      .mul(1.8)
      .sub(0.9)
      .reshape({n, c, h, w});
}

// The grid layout of text_render.h, written out for the checks below.
struct Layout {
  int64_t n, h, w, cols, pad, strip;
  int64_t row_h() const { return h + strip + pad; }
  int64_t image_y(int64_t k) const { return pad + (k / cols) * row_h(); }
  int64_t image_x(int64_t k) const { return pad + (k % cols) * (w + pad); }
  int64_t strip_y(int64_t r) const { return pad + r * row_h() + h; }
  // The image k covering grid pixel (y, x), or -1.
  int64_t image_at(int64_t y, int64_t x) const {
    for (int64_t k = 0; k < n; ++k)
      if (y >= image_y(k) && y < image_y(k) + h && x >= image_x(k) && x < image_x(k) + w) return k;
    return -1;
  }
};

}  // namespace

TEST(TextRender, HandCheckedGlyphs) {
  EXPECT_EQ(rows_of(render_text("L")),
            (std::vector<std::string>{"#.....", "#.....", "#.....", "#.....", "#.....", "#.....",
                                      "#####.", "......", "......"}));
  EXPECT_EQ(rows_of(render_text("I")),
            (std::vector<std::string>{".###..", "..#...", "..#...", "..#...", "..#...", "..#...",
                                      ".###..", "......", "......"}));
  // Lowercase sits on rows 2-6; g's tail uses the two descender rows.
  EXPECT_EQ(rows_of(render_text("g")),
            (std::vector<std::string>{"......", "......", ".####.", "#...#.", "#...#.", "#...#.",
                                      ".####.", "....#.", ".###.."}));
}

TEST(TextRender, EveryGlyphHasInkAndIsDistinct) {
  EXPECT_EQ(kCellWidth, 6);
  EXPECT_EQ(kCellHeight, 9);
  torch::Tensor space = render_text(" ");
  EXPECT_EQ(shape(space), (std::vector<int64_t>{kCellHeight, kCellWidth}));
  EXPECT_EQ(space.sum().item<float>(), 0.0f);

  std::vector<torch::Tensor> glyphs;
  for (int c = 33; c <= 126; ++c) {
    torch::Tensor g = render_text(std::string(1, char(c)));
    ASSERT_EQ(shape(g), (std::vector<int64_t>{kCellHeight, kCellWidth})) << char(c);
    EXPECT_EQ(g.scalar_type(), torch::kFloat);
    EXPECT_TRUE(g.eq(0).logical_or(g.eq(1)).all().item<bool>()) << char(c);
    EXPECT_GT(g.sum().item<float>(), 0.0f) << char(c);
    // The last column is the gap between characters.
    EXPECT_EQ(g.select(1, kCellWidth - 1).sum().item<float>(), 0.0f) << char(c);
    glyphs.push_back(g);
  }
  for (size_t i = 0; i < glyphs.size(); ++i)
    for (size_t j = i + 1; j < glyphs.size(); ++j)
      EXPECT_FALSE(torch::equal(glyphs[i], glyphs[j])) << char(33 + i) << " and " << char(33 + j);
}

TEST(TextRender, SizesAndGlyphPlacement) {
  std::string all;
  for (int c = 32; c <= 126; ++c) all.push_back(char(c));
  const std::string text = "Hello, World! " + all;
  torch::Tensor m = render_text(text);
  const int64_t n = int64_t(text.size());
  ASSERT_EQ(shape(m), (std::vector<int64_t>{9, 6 * n}));
  EXPECT_EQ(text_width(text), 6 * n);
  for (int64_t k = 0; k < n; ++k)
    EXPECT_TRUE(torch::equal(m.narrow(1, k * kCellWidth, kCellWidth),
                             render_text(std::string(1, text[size_t(k)]))))
        << "character " << k << " '" << text[size_t(k)] << "'";

  EXPECT_EQ(shape(render_text("")), (std::vector<int64_t>{9, 0}));
  EXPECT_EQ(shape(render_text("", 3)), (std::vector<int64_t>{27, 0}));
  EXPECT_EQ(shape(render_text("abc", 3)), (std::vector<int64_t>{27, 54}));
  EXPECT_EQ(text_width("", 2), 0);
  EXPECT_EQ(text_width("abc", 3), 54);
  EXPECT_THROW(render_text("a", 0), std::invalid_argument);
  EXPECT_THROW(text_width("a", 0), std::invalid_argument);
  EXPECT_THROW(fit_text("a", 10, 0), std::invalid_argument);
}

TEST(TextRender, ScaleIsNearestNeighbourUpscaling) {
  const std::string text = "Ag,|~ 9";
  torch::Tensor small = render_text(text);
  auto sa = small.accessor<float, 2>();
  for (int64_t s : {2, 3}) {
    torch::Tensor big = render_text(text, s);
    ASSERT_EQ(shape(big), (std::vector<int64_t>{9 * s, 6 * 7 * s}));
    auto ba = big.accessor<float, 2>();
    for (int64_t y = 0; y < big.size(0); ++y)
      for (int64_t x = 0; x < big.size(1); ++x)
        ASSERT_EQ(ba[y][x], sa[y / s][x / s]) << "scale " << s << " at " << y << "," << x;
  }
}

TEST(TextRender, NonAsciiIsOneQuestionMarkPerCodePoint) {
  const torch::Tensor q = render_text("?");
  EXPECT_TRUE(torch::equal(render_text("é"), q));  // 2 bytes
  EXPECT_TRUE(torch::equal(render_text("€"), q));  // 3 bytes
  EXPECT_TRUE(torch::equal(render_text("😀"), q));  // 4 bytes
  EXPECT_TRUE(torch::equal(render_text("café ☕", 2), render_text("caf? ?", 2)));
  EXPECT_EQ(text_width("é"), kCellWidth);
  EXPECT_EQ(text_width("naïve ☕"), 7 * kCellWidth);
  // Control characters, stray bytes and a cut-off sequence are '?' too.
  EXPECT_TRUE(torch::equal(render_text("a\nb\tc"), render_text("a?b?c")));
  EXPECT_TRUE(torch::equal(render_text("\xff\x80x"), render_text("??x")));
  EXPECT_TRUE(torch::equal(render_text("x\xe2\x82"), render_text("x?")));
}

TEST(TextRender, FitTextCutsAtTheLimit) {
  const std::string t = "abcdefghij";  // 60 px
  EXPECT_EQ(fit_text(t, 60), t);
  EXPECT_EQ(fit_text(t, 1000), t);
  EXPECT_EQ(fit_text(t, 59), "abcdef...");  // 54 px
  EXPECT_EQ(fit_text(t, 54), "abcdef...");
  EXPECT_EQ(fit_text(t, 53), "abcde...");
  EXPECT_EQ(fit_text(t, 18), "...");
  EXPECT_EQ(fit_text(t, 17), "..");
  EXPECT_EQ(fit_text(t, 5), "");
  EXPECT_EQ(fit_text(t, -3), "");
  EXPECT_EQ(fit_text(t, 120, 2), t);
  EXPECT_EQ(fit_text(t, 119, 2), "abcdef...");
  EXPECT_EQ(fit_text(t, 107, 2), "abcde...");
  EXPECT_EQ(fit_text("", 0), "");
  EXPECT_EQ(fit_text("short", 30), "short");
  // Whole code points only: é is two bytes but one cell.
  EXPECT_EQ(fit_text("ééééé", 30), "ééééé");
  EXPECT_EQ(fit_text("éééééé", 30), "éé...");
  EXPECT_EQ(fit_text("aéééééé", 29), "a...");
  // At every width the result fits, and a cut one could not keep another character.
  for (int64_t px = 0; px <= 70; ++px) {
    const std::string f = fit_text(t, px);
    EXPECT_LE(text_width(f), px) << px;
    if (f != t) {
      EXPECT_GT(text_width(f) + kCellWidth, px) << px;
    }
  }
}

TEST(LabelledGrid, SizeFollowsTheFormula) {
  EXPECT_EQ(label_text_scale(63, 1000, {"a"}), 1);
  EXPECT_EQ(label_text_scale(64, 1000, {"a"}), 2);
  EXPECT_EQ(label_text_scale(64, 24, {"a", "bc"}), 2);  // 2 cells of 12 px fit 24 px
  EXPECT_EQ(label_text_scale(64, 23, {"a", "bc"}), 1);  // they do not fit 23
  EXPECT_EQ(label_strip_height(1), 11);
  EXPECT_EQ(label_strip_height(2), 22);
  const torch::Tensor small = ramp_images(5, 3, 3, 20);
  // 3 rows of 2: H' = 3 * (3 + 11 + 1) + 1, W' = 2 * (20 + 1) + 1.
  EXPECT_EQ(shape(make_labelled_grid(small, 2, {"a", "b", "c"}, 1)),
            (std::vector<int64_t>{3, 46, 43}));
  EXPECT_EQ(shape(make_labelled_grid(small, 8, {"one row"}, 2)),
            (std::vector<int64_t>{3, 3 + 11 + 2 + 2, 5 * 22 + 2}));
  EXPECT_EQ(shape(make_labelled_grid(small, 1, {"a", "b", "c", "d", "e"}, 0)),
            (std::vector<int64_t>{3, 5 * 14, 20}));
  // Images 64 px high get scale-2 text in a 22 px strip.
  EXPECT_EQ(shape(make_labelled_grid(ramp_images(2, 1, 64, 40), 1, {"a", "b"})),
            (std::vector<int64_t>{1, 2 * (64 + 22 + 2) + 2, 44}));
}

TEST(LabelledGrid, ImagePixelsAreTheInputsAtTheirOffsets) {
  const torch::Tensor imgs = ramp_images(5, 3, 3, 20);
  const torch::Tensor g = make_labelled_grid(imgs, 2, {"top", "middle", "bottom"}, 1, 1.0f);
  // Rows are 3 + 11 + 1 = 15 px apart, columns 21.
  const std::vector<std::pair<int64_t, int64_t>> at = {{1, 1}, {1, 22}, {16, 1}, {16, 22}, {31, 1}};
  for (int64_t k = 0; k < 5; ++k)
    EXPECT_TRUE(torch::equal(g.narrow(1, at[k].first, 3).narrow(2, at[k].second, 20), imgs[k]))
        << "image " << k;
  // The empty fifth cell is pad.
  EXPECT_TRUE(g.narrow(1, 31, 3).narrow(2, 22, 20).eq(1.0f).all().item<bool>());
}

TEST(LabelledGrid, InkOnlyInEachRowsLabelStrip) {
  for (float pad_value : {1.0f, -1.0f, 0.0f, -0.5f}) {
    const float ink = pad_value >= 0 ? -1.0f : 1.0f;  // contrasting with the pad
    const torch::Tensor imgs = ramp_images(5, 3, 3, 20);
    const std::vector<std::string> labels = {"red", "a long caption", "Ag"};
    const std::vector<std::string> shown = {"red", "a l...", "Ag"};  // 41 px: 6 cells
    const torch::Tensor g = make_labelled_grid(imgs, 2, labels, 1, pad_value);
    const Layout L{5, 3, 20, 2, 1, 11};
    ASSERT_EQ(shape(g), (std::vector<int64_t>{3, 46, 43}));
    auto ga = g.accessor<float, 3>();
    for (int64_t r = 0; r < 3; ++r) {
      const torch::Tensor text = render_text(shown[size_t(r)]);
      auto ta = text.accessor<float, 2>();
      int64_t inked = 0;
      for (int64_t y = L.strip_y(r); y < L.strip_y(r) + 11; ++y)
        for (int64_t x = 0; x < 43; ++x) {
          // Text at (strip + 1, pad); the rest of the strip is pad.
          const int64_t ty = y - L.strip_y(r) - 1, tx = x - 1;
          const bool on = ty >= 0 && ty < 9 && tx >= 0 && tx < text.size(1) && ta[ty][tx] != 0;
          inked += on;
          for (int64_t c = 0; c < 3; ++c)
            ASSERT_EQ(ga[c][y][x], on ? ink : pad_value)
                << pad_value << " " << r << " " << y << "," << x;
        }
      EXPECT_GT(inked, 0) << "row " << r;
    }
    // Outside the strips: image pixels or pad, never ink.
    for (int64_t y = 0; y < 46; ++y) {
      const int64_t r = (y - 1) / L.row_h();
      if (y >= 1 && r < 3 && y >= L.strip_y(r) && y < L.strip_y(r) + 11) continue;
      for (int64_t x = 0; x < 43; ++x) {
        const int64_t k = L.image_at(y, x);
        for (int64_t c = 0; c < 3; ++c) {
          if (k >= 0) {
            ASSERT_EQ(ga[c][y][x], imgs[k][c][y - L.image_y(k)][x - L.image_x(k)].item<float>());
          } else {
            ASSERT_EQ(ga[c][y][x], pad_value) << pad_value << " at " << y << "," << x;
          }
        }
      }
    }
  }
}

TEST(LabelledGrid, EmptyLabelLeavesABlankStrip) {
  const torch::Tensor imgs = ramp_images(4, 3, 5, 10);
  const torch::Tensor g = make_labelled_grid(imgs, 2, {"", "x"}, 2, 1.0f);
  // Row r's strip starts at 2 + r * (5 + 11 + 2) + 5.
  EXPECT_TRUE(g.narrow(1, 7, 11).eq(1.0f).all().item<bool>());
  EXPECT_TRUE(g.narrow(1, 25, 11).eq(-1.0f).any().item<bool>());
  EXPECT_TRUE(torch::equal(make_labelled_grid(imgs, 4, {""}), make_labelled_grid(imgs, 4, {" "})));
}

TEST(LabelledGrid, BigImagesGetScaleTwoLabelsWhenTheyFitElseScaleOneCut) {
  const torch::Tensor imgs = ramp_images(2, 3, 64, 64);
  // W' = 2 * 66 + 2 = 134, so 130 px of text: "a red" (60 px at scale 2) fits.
  const torch::Tensor g = make_labelled_grid(imgs, 2, {"a red"}, 2, 1.0f);
  ASSERT_EQ(shape(g), (std::vector<int64_t>{3, 64 + 22 + 2 + 2, 134}));
  const torch::Tensor strip = g.narrow(1, 66, 22);  // [C, 22, 134]
  torch::Tensor want = torch::ones({22, 134});
  want.narrow(0, 2, 18).narrow(1, 2, 60).sub_(render_text("a red", 2).mul(2));  // ink -1
  for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(strip[c], want)) << c;
  EXPECT_TRUE(torch::equal(g.narrow(1, 2, 64).narrow(2, 68, 64), imgs[1]));
  // A caption too long for scale 2: scale 1, cut to the 130 px (21 cells of 6 px).
  const torch::Tensor l = make_labelled_grid(imgs, 2, {"a red circle in the top left"}, 2, 1.0f);
  ASSERT_EQ(shape(l), (std::vector<int64_t>{3, 64 + 11 + 2 + 2, 134}));
  torch::Tensor want1 = torch::ones({11, 134});
  want1.narrow(0, 1, 9).narrow(1, 2, 126).sub_(render_text("a red circle in th...", 1).mul(2));
  for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(l.narrow(1, 66, 11)[c], want1)) << c;
}

TEST(LabelledGrid, RejectsBadArguments) {
  const torch::Tensor imgs = ramp_images(5, 3, 3, 4);
  try {
    make_labelled_grid(imgs, 2, {"a", "b"});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "make_labelled_grid: 2 labels for 3 rows of images (one per row)");
  }
  EXPECT_THROW(make_labelled_grid(imgs, 2, {"a", "b", "c", "d"}), std::invalid_argument);
  EXPECT_THROW(make_labelled_grid(imgs, 5, {}), std::invalid_argument);
  EXPECT_THROW(make_labelled_grid(imgs, 0, {"a"}), std::invalid_argument);
  EXPECT_THROW(make_labelled_grid(imgs, 2, {"a", "b", "c"}, -1), std::invalid_argument);
  EXPECT_THROW(make_labelled_grid(imgs[0], 1, {"a"}), std::invalid_argument);
  EXPECT_THROW(make_labelled_grid(imgs.narrow(0, 0, 0), 1, {}), std::invalid_argument);
}
