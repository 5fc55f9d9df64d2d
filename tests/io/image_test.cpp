// Images: exact PNG round trips, text chunks (written, read back, CRCs valid, still decodable),
// conversions to and from [-1, 1], and grid layout pixel by pixel.
#include "io/image.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "tmpdir.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::read_bytes;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

torch::Tensor random_image(int64_t h, int64_t w, int64_t c = 3) {
  return torch::randint(0, 256, {h, w, c}, torch::kInt).to(torch::kByte);
}

uint32_t be32(const std::string& s, size_t at) {
  auto* p = reinterpret_cast<const unsigned char*>(s.data() + at);
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

struct Chunk {
  std::string type, data;
  bool crc_ok;
};

// Walks a PNG's chunks, checking each CRC with png_crc32.
std::vector<Chunk> chunks_of(const std::string& png) {
  std::vector<Chunk> out;
  size_t at = 8;
  while (at + 12 <= png.size()) {
    uint32_t len = be32(png, at);
    Chunk c{png.substr(at + 4, 4), png.substr(at + 8, len), false};
    c.crc_ok = png_crc32(png.data() + at + 4, len + 4) == be32(png, at + 8 + len);
    out.push_back(c);
    at += 12 + len;
  }
  EXPECT_EQ(at, png.size());
  return out;
}

std::string chunk_bytes(const std::string& type, const std::string& data) {
  std::string c(4, '\0');
  for (int i = 0; i < 4; ++i) c[i] = char((data.size() >> (24 - 8 * i)) & 0xff);
  std::string body = type + data;
  uint32_t crc = png_crc32(body.data(), body.size());
  c += body;
  for (int i = 0; i < 4; ++i) c.push_back(char((crc >> (24 - 8 * i)) & 0xff));
  return c;
}

}  // namespace

TEST(Image, Crc32KnownValues) {
  EXPECT_EQ(png_crc32("123456789", 9), 0xCBF43926u);  // the standard check value
  EXPECT_EQ(png_crc32("IEND", 4), 0xAE426082u);       // every PNG ends with this CRC
  EXPECT_EQ(png_crc32("6789", 4, png_crc32("12345", 5)), 0xCBF43926u);  // continued
}

TEST(Image, PngRoundTripsPixelsExactly) {
  TempDir tmp;
  torch::manual_seed(1);
  torch::Tensor img = random_image(7, 5);
  write_png(tmp / "a.png", img);
  torch::Tensor back = read_image(tmp / "a.png");
  EXPECT_EQ(back.sizes().vec(), (std::vector<int64_t>{7, 5, 3}));
  EXPECT_EQ(back.scalar_type(), torch::kByte);
  EXPECT_TRUE(torch::equal(back, img));

  // Grey is replicated to three channels; alpha is dropped.
  torch::Tensor grey = random_image(4, 6, 1);
  write_png(tmp / "g.png", grey);
  EXPECT_TRUE(torch::equal(read_image(tmp / "g.png"), grey.expand({4, 6, 3})));
  torch::Tensor rgba = random_image(3, 3, 4);
  write_png(tmp / "rgba.png", rgba);
  EXPECT_TRUE(torch::equal(read_image(tmp / "rgba.png"), rgba.narrow(2, 0, 3)));

  // A non-contiguous view is written as it looks.
  torch::Tensor flipped = img.flip({1});
  write_png(tmp / "f.png", flipped);
  EXPECT_TRUE(torch::equal(read_image(tmp / "f.png"), flipped));
}

TEST(Image, PngTextChunksReadBack) {
  TempDir tmp;
  torch::Tensor img = random_image(8, 8);
  std::map<std::string, std::string> text = {
      {"prompt", "a red cube on a blue floor, studio light"},
      {"settings", R"({"steps": 4, "guidance": 3.5, "seed": 42})"},
      {"note", "café ☕ — UTF-8"},
      {"empty", ""}};
  write_png(tmp / "t.png", img, text);
  EXPECT_EQ(read_png_text(tmp / "t.png"), text);
  EXPECT_TRUE(torch::equal(read_image(tmp / "t.png"), img));  // still a valid image for stb

  const std::string png = read_bytes(tmp / "t.png");
  std::vector<Chunk> chunks = chunks_of(png);
  ASSERT_GE(chunks.size(), 7u);
  EXPECT_EQ(chunks.front().type, "IHDR");
  EXPECT_EQ(chunks.back().type, "IEND");
  std::vector<std::string> types;
  for (const auto& c : chunks) {
    EXPECT_TRUE(c.crc_ok) << c.type;
    types.push_back(c.type);
  }
  // The text chunks come just before IEND, in key order; only the non-ASCII value is iTXt.
  std::vector<std::string> tail(types.end() - 5, types.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"tEXt", "iTXt", "tEXt", "tEXt", "IEND"}));
  EXPECT_EQ(chunks[chunks.size() - 2].data, std::string("settings\0", 9) + text["settings"]);
  EXPECT_EQ(chunks[chunks.size() - 4].data,
            std::string("note\0\0\0\0\0", 9) + text["note"]);  // flag 0, method 0, "", ""

  EXPECT_EQ(error_of([&] {
              write_png(tmp / "bad.png", img, {{"", "x"}});
            }),
            "PNG text key '': expected 1-79 printable ASCII characters");
  EXPECT_EQ(error_of([&] {
              write_png(tmp / "bad.png", img, {{"naïve", "x"}});
            }),
            "PNG text key 'naïve': expected 1-79 printable ASCII characters");
  EXPECT_EQ(error_of([&] {
              write_png(tmp / "bad.png", img, {{"k", std::string("a\0b", 3)}});
            }),
            "PNG text 'k': the value contains a NUL byte");
  EXPECT_FALSE(fs::exists(tmp / "bad.png"));
}

TEST(Image, ReadsLatin1AndCompressedTextFromOtherWriters) {
  TempDir tmp;
  std::string png = encode_png(random_image(2, 2));
  // tEXt is Latin-1 (0xe9 = é); zTXt holds zlib("compressed caf\xe9 text") made by Python's zlib.
  const unsigned char z[] = {0x78, 0x9c, 0x4b, 0xce, 0xcf, 0x2d, 0x28, 0x4a, 0x2d, 0x2e,
                             0x4e, 0x4d, 0x51, 0x48, 0x4e, 0x4c, 0x7b, 0xa9, 0x50, 0x92,
                             0x5a, 0x51, 0x02, 0x00, 0x56, 0x61, 0x08, 0x4e};
  std::string extra =
      chunk_bytes("tEXt", std::string("Title\0caf\xe9", 10)) +
      chunk_bytes("zTXt", std::string("Comment\0\0", 9) +
                              std::string(reinterpret_cast<const char*>(z), sizeof z));
  png.insert(png.size() - 12, extra);
  write_bytes(tmp / "x.png", png);
  EXPECT_EQ(
      read_png_text(tmp / "x.png"),
      (std::map<std::string, std::string>{{"Title", "café"}, {"Comment", "compressed café text"}}));
}

TEST(Image, BadFilesGiveSpecificErrors) {
  TempDir tmp;
  EXPECT_EQ(error_of([&] { read_image(tmp / "none.png"); }), tmp / "none.png" + ": no such file");
  write_bytes(tmp / "junk.png", "this is not an image at all");
  EXPECT_EQ(error_of([&] { read_image(tmp / "junk.png"); }),
            tmp / "junk.png" + ": cannot decode image (unknown image type)");
  EXPECT_EQ(error_of([&] { read_png_text(tmp / "junk.png"); }),
            tmp / "junk.png" + ": not a PNG file (bad signature)");

  const std::string png = encode_png(random_image(4, 4), {{"prompt", "hello"}});
  const size_t text_at = png.size() - 12 - (12 + 12);  // "prompt\0hello" is 12 bytes
  ASSERT_EQ(png.substr(text_at + 4, 4), "tEXt");
  std::string bad = png;
  bad[text_at + 10] ^= 0x20;  // a letter of the key
  write_bytes(tmp / "crc.png", bad);
  EXPECT_EQ(error_of([&] { read_png_text(tmp / "crc.png"); }),
            fmt::format("{}: PNG chunk 'tEXt' at byte {} has a bad CRC (corrupt)", tmp / "crc.png",
                        text_at));
  write_bytes(tmp / "cut.png", png.substr(0, text_at + 15));
  EXPECT_EQ(
      error_of([&] { read_png_text(tmp / "cut.png"); }),
      fmt::format("{}: PNG chunk 'tEXt' at byte {} runs past the end of the file (truncated?)",
                  tmp / "cut.png", text_at));
  write_bytes(tmp / "noend.png", png.substr(0, png.size() - 12));
  EXPECT_EQ(error_of([&] { read_png_text(tmp / "noend.png"); }),
            fmt::format("{}: PNG ends at byte {} without an IEND chunk (truncated?)",
                        tmp / "noend.png", png.size() - 12));
}

TEST(Image, FloatConversionsRoundTripEveryValue) {
  // Every uint8 value, laid out as [H=16, W=16, 3] with distinct channels.
  torch::Tensor v = torch::arange(256, torch::kInt).reshape({16, 16, 1});
  torch::Tensor hwc = torch::cat({v, (v + 85) % 256, (v + 170) % 256}, 2).to(torch::kByte);
  torch::Tensor chw = to_float_chw(hwc);
  ASSERT_EQ(chw.sizes().vec(), (std::vector<int64_t>{3, 16, 16}));
  ASSERT_EQ(chw.scalar_type(), torch::kFloat);
  auto h = hwc.accessor<uint8_t, 3>();
  auto f = chw.accessor<float, 3>();
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x)
      for (int c = 0; c < 3; ++c) {
        double want = h[y][x][c] / 127.5 - 1.0;
        EXPECT_NEAR(f[c][y][x], want, 1.2e-7) << y << "," << x << "," << c;  // float rounding
      }
  EXPECT_EQ(chw.min().item<float>(), -1.0f);
  EXPECT_EQ(chw.max().item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(to_uint8_hwc(chw), hwc));

  // Clamped and rounded to nearest; NaN is treated as 0 (mid grey).
  torch::Tensor odd = torch::tensor({-3.0f, 1.5f, 0.0f, 129.0f / 127.5f - 1.0f,
                                     -1.0f + 0.4f / 127.5f, -1.0f + 0.6f / 127.5f, std::nanf("")})
                          .reshape({1, 1, 7})
                          .expand({3, 1, 7});
  torch::Tensor u = to_uint8_hwc(odd);
  ASSERT_EQ(u.sizes().vec(), (std::vector<int64_t>{1, 7, 3}));
  std::vector<int> got;
  for (int i = 0; i < 7; ++i) got.push_back(u[0][i][1].item<int>());
  EXPECT_EQ(got, (std::vector<int>{0, 255, 128, 129, 0, 1, 128}));  // 127.5 rounds to even 128
}

TEST(Image, GridLayoutPixelByPixel) {
  const int64_t n = 5, c = 3, h = 2, w = 3, nrow = 2, pad = 1;
  // Image k, channel ch, pixel (y, x) holds a value unique to all four.
  torch::Tensor imgs = torch::arange(n * c * h * w, torch::kFloat).reshape({n, c, h, w});
  torch::Tensor g = make_grid(imgs, nrow, pad, -0.5f);
  const int64_t rows = 3, cols = 2;
  ASSERT_EQ(g.sizes().vec(),
            (std::vector<int64_t>{c, rows * (h + pad) + pad, cols * (w + pad) + pad}));
  auto ga = g.accessor<float, 3>();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t yy = 0; yy < g.size(1); ++yy)
      for (int64_t xx = 0; xx < g.size(2); ++xx) {
        // Which cell, and where inside it? Offsets below `pad` within a cell are border.
        int64_t r = yy / (h + pad), oy = yy % (h + pad) - pad;
        int64_t col = xx / (w + pad), ox = xx % (w + pad) - pad;
        int64_t k = r * nrow + col;
        float want = -0.5f;
        if (oy >= 0 && ox >= 0 && r < rows && col < cols && k < n)
          want = float(((k * c + ch) * h + oy) * w + ox);
        ASSERT_EQ(ga[ch][yy][xx], want) << ch << "," << yy << "," << xx;
      }
  // One image per row; more columns than images.
  EXPECT_EQ(make_grid(imgs, 1, 0).sizes().vec(), (std::vector<int64_t>{3, 5 * h, w}));
  EXPECT_EQ(make_grid(imgs, 8, 2).sizes().vec(), (std::vector<int64_t>{3, h + 4, 5 * (w + 2) + 2}));
  EXPECT_TRUE(torch::equal(make_grid(imgs, 1, 0).narrow(1, 2 * h, h), imgs[2]));
}
