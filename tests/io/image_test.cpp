// Images: exact PNG round trips, text chunks (written, read back, CRCs valid, still decodable),
// conversions to and from [-1, 1], and grid layout pixel by pixel; WebP (still, alpha, animated,
// EXIF) written with libwebp's encoder; EXIF orientation on JPEGs written with stb's writer;
// palette, 16-bit, grey and alpha PNGs written byte by byte, all decoded to 8-bit RGB.
#include "io/image.h"

#include <gtest/gtest.h>
#include <webp/encode.h>
#include <zlib.h>

#include <array>
#include <cstring>
#include <filesystem>

#include "io/exif.h"
#include "io/image_info.h"
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

TEST(Image, JpegEncodesCloseToTheOriginal) {
  // A smooth gradient (JPEG's good case) 40 x 24: decoded within a few levels, sized as given.
  auto ramp = torch::arange(40 * 24, torch::kFloat).reshape({24, 40, 1}) / (40 * 24) * 200;
  torch::Tensor img = torch::cat({ramp, 200 - ramp, ramp * 0 + 90}, 2).round().to(torch::kByte);
  for (int q : {75, 95}) {
    const std::string jpg = encode_jpeg(img, q);
    ASSERT_GE(jpg.size(), 4u);
    EXPECT_EQ(static_cast<unsigned char>(jpg[0]), 0xFF);  // SOI
    EXPECT_EQ(static_cast<unsigned char>(jpg[1]), 0xD8);
    torch::Tensor back = decode_image(jpg, "ramp.jpg");
    ASSERT_EQ(back.sizes().vec(), (std::vector<int64_t>{24, 40, 3}));
    const double err = (back.to(torch::kFloat) - img.to(torch::kFloat)).abs().mean().item<double>();
    EXPECT_LT(err, q == 95 ? 1.5 : 3.0) << q;
  }
  EXPECT_LT(encode_jpeg(img, 30).size(), encode_jpeg(img, 95).size());
  EXPECT_THROW(encode_jpeg(random_image(4, 4, 4)), std::invalid_argument);  // no alpha in JPEG
  EXPECT_THROW(encode_jpeg(img, 0), std::invalid_argument);
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

// ---- WebP, EXIF orientation, PNG colour types -------------------------------------------------

namespace {

std::string le(uint32_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
  return s;
}

std::string be(uint32_t v, int bytes) {
  std::string s;
  for (int i = bytes - 1; i >= 0; --i) s.push_back(char((v >> (8 * i)) & 0xff));
  return s;
}

std::string take_webp(uint8_t* out, size_t n) {
  EXPECT_GT(n, 0u);
  std::string s(reinterpret_cast<const char*>(out), n);
  WebPFree(out);
  return s;
}

std::string webp_lossless(const torch::Tensor& hwc) {
  torch::Tensor c = hwc.contiguous();
  uint8_t* out = nullptr;
  const int ch = int(c.size(2));
  size_t n = ch == 4 ? WebPEncodeLosslessRGBA(c.data_ptr<uint8_t>(), int(c.size(1)), int(c.size(0)),
                                              int(c.size(1)) * 4, &out)
                     : WebPEncodeLosslessRGB(c.data_ptr<uint8_t>(), int(c.size(1)), int(c.size(0)),
                                             int(c.size(1)) * 3, &out);
  return take_webp(out, n);
}

std::string webp_lossy(const torch::Tensor& hwc, float quality) {
  torch::Tensor c = hwc.contiguous();
  uint8_t* out = nullptr;
  const int ch = int(c.size(2));
  size_t n = ch == 4 ? WebPEncodeRGBA(c.data_ptr<uint8_t>(), int(c.size(1)), int(c.size(0)),
                                      int(c.size(1)) * 4, quality, &out)
                     : WebPEncodeRGB(c.data_ptr<uint8_t>(), int(c.size(1)), int(c.size(0)),
                                     int(c.size(1)) * 3, quality, &out);
  return take_webp(out, n);
}

std::string riff_chunk(const std::string& fourcc, const std::string& payload) {
  std::string c = fourcc + le(uint32_t(payload.size()), 4) + payload;
  if (payload.size() % 2) c.push_back('\0');
  return c;
}

// The chunks of a RIFF WebP file after "RIFF" <size> "WEBP", each with its header.
std::vector<std::pair<std::string, std::string>> riff_chunks(const std::string& webp) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t at = 12;
  while (at + 8 <= webp.size()) {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= uint32_t(uint8_t(webp[at + 4 + i])) << (8 * i);
    out.emplace_back(webp.substr(at, 4), webp.substr(at, 8 + n + (n & 1)));
    at += 8 + n + (n & 1);
  }
  return out;
}

std::string riff_file(const std::string& chunks) {
  return "RIFF" + le(uint32_t(4 + chunks.size()), 4) + "WEBP" + chunks;
}

// VP8X: flags (0x02 animation, 0x08 EXIF, 0x10 alpha), reserved, canvas width-1, height-1.
std::string vp8x(uint8_t flags, int w, int h) {
  return riff_chunk("VP8X", std::string(1, char(flags)) + std::string(3, '\0') +
                                le(uint32_t(w - 1), 3) + le(uint32_t(h - 1), 3));
}

// An animation frame: offset (even), size, duration, flags, then the frame's own chunks.
std::string anmf(int x, int y, int w, int h, const std::string& frame_chunks) {
  return riff_chunk("ANMF", le(uint32_t(x / 2), 3) + le(uint32_t(y / 2), 3) +
                                le(uint32_t(w - 1), 3) + le(uint32_t(h - 1), 3) + le(100, 3) +
                                std::string(1, '\0') + frame_chunks);
}

// Everything after the RIFF header of a still WebP except VP8X: its ALPH / VP8 / VP8L chunks.
std::string bitstream_chunks(const std::string& webp) {
  std::string s;
  for (const auto& [fourcc, chunk] : riff_chunks(webp))
    if (fourcc != "VP8X") s += chunk;
  return s;
}

// A TIFF block whose IFD0 has a Make entry and then the orientation (SHORT, or LONG if asked).
std::string tiff_block(uint32_t orientation, bool little, bool as_long = false) {
  auto n16 = [&](uint32_t v) { return little ? le(v, 2) : be(v, 2); };
  auto n32 = [&](uint32_t v) { return little ? le(v, 4) : be(v, 4); };
  std::string t = little ? std::string("II*\0", 4) : std::string("MM\0*", 4);
  t += n32(8) + n16(2);
  t += n16(0x010F) + n16(2) + n32(4) + std::string("abc\0", 4);  // Make = "abc"
  t += n16(0x0112) +
       (as_long ? n16(4) + n32(1) + n32(orientation) : n16(3) + n32(1) + n16(orientation) + n16(0));
  return t + n32(0);  // no next IFD
}

std::string app1(const std::string& payload) {
  return "\xFF\xE1" + be(uint32_t(payload.size() + 2), 2) + payload;
}

std::string exif_app1(uint32_t orientation, bool little) {
  return app1(std::string("Exif\0\0", 6) + tiff_block(orientation, little));
}

std::string jpeg_of(const torch::Tensor& hwc) {
  return encode_jpeg(hwc, 95);
}

// out[y][x] for EXIF orientation o, written from the tag's definition (which stored row and
// column land at the top and left), independently of apply_exif_orientation's flips.
torch::Tensor oriented_by_index(const torch::Tensor& in, int o) {
  const int64_t h = in.size(0), w = in.size(1);
  const bool swap = o >= 5 && o <= 8;
  torch::Tensor out = torch::empty({swap ? w : h, swap ? h : w, in.size(2)}, in.options());
  for (int64_t y = 0; y < out.size(0); ++y)
    for (int64_t x = 0; x < out.size(1); ++x) {
      int64_t sy = y, sx = x;
      switch (o) {
        case 2:
          sx = w - 1 - x;
          break;
        case 3:
          sy = h - 1 - y, sx = w - 1 - x;
          break;
        case 4:
          sy = h - 1 - y;
          break;
        case 5:
          sy = x, sx = y;
          break;
        case 6:
          sy = h - 1 - x, sx = y;
          break;  // stored row 0 on the right, column 0 on top
        case 7:
          sy = h - 1 - x, sx = w - 1 - y;
          break;
        case 8:
          sy = x, sx = w - 1 - y;
          break;  // stored row 0 on the left, column 0 at bottom
        default:
          break;
      }
      out[y][x] = in[sy][sx];
    }
  return out;
}

// A PNG written byte by byte: IHDR, optional PLTE / tRNS, one IDAT of zlib(rows with filter 0).
std::string png_file(uint32_t w, uint32_t h, int depth, int colour,
                     const std::vector<std::string>& rows, const std::string& plte = "",
                     const std::string& trns = "") {
  std::string raw;
  for (const auto& r : rows) raw += std::string(1, '\0') + r;
  uLongf zn = compressBound(uLong(raw.size()));
  std::string z(zn, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(z.data()), &zn,
                     reinterpret_cast<const Bytef*>(raw.data()), uLong(raw.size())),
            Z_OK);
  z.resize(zn);
  std::string png = "\x89PNG\r\n\x1a\n";
  png +=
      chunk_bytes("IHDR", be(w, 4) + be(h, 4) + char(depth) + char(colour) + std::string(3, '\0'));
  if (!plte.empty()) png += chunk_bytes("PLTE", plte);
  if (!trns.empty()) png += chunk_bytes("tRNS", trns);
  return png + chunk_bytes("IDAT", z) + chunk_bytes("IEND", "");
}

torch::Tensor rgb(const std::vector<std::array<int, 3>>& px, int64_t h, int64_t w) {
  torch::Tensor t = torch::empty({h * w, 3}, torch::kByte);
  for (size_t i = 0; i < px.size(); ++i)
    for (int c = 0; c < 3; ++c) t[int64_t(i)][c] = px[i][c];
  return t.reshape({h, w, 3});
}

}  // namespace

TEST(Image, WebpLosslessRoundTripsExactly) {
  TempDir tmp;
  torch::manual_seed(5);
  torch::Tensor img = random_image(7, 5);
  const std::string webp = webp_lossless(img);
  ASSERT_EQ(webp.substr(0, 4), "RIFF");
  EXPECT_TRUE(torch::equal(decode_image(webp, "a.webp"), img));
  write_bytes(tmp / "a.webp", webp);
  torch::Tensor back = read_image(tmp / "a.webp");
  EXPECT_EQ(back.sizes().vec(), (std::vector<int64_t>{7, 5, 3}));
  EXPECT_TRUE(torch::equal(back, img));

  // With alpha: dropped, the colour kept (alpha >= 1 so that the encoder keeps every colour).
  torch::Tensor rgba = random_image(6, 9, 4);
  rgba.narrow(2, 3, 1).clamp_min_(1);
  EXPECT_TRUE(torch::equal(decode_image(webp_lossless(rgba), "rgba.webp"), rgba.narrow(2, 0, 3)));
}

TEST(Image, WebpLossyDecodesCloseToTheOriginal) {
  // A smooth image survives lossy coding at quality 95 within a few levels.
  torch::Tensor yy = torch::arange(32, torch::kFloat).reshape({32, 1, 1});
  torch::Tensor xx = torch::arange(48, torch::kFloat).reshape({1, 48, 1});
  torch::Tensor img = torch::cat({yy * 6 + xx * 0, xx * 5 + yy * 0, (xx + yy) * 3}, 2)
                          .clamp(0, 255)
                          .to(torch::kByte);
  torch::Tensor back = decode_image(webp_lossy(img, 95), "l.webp");
  ASSERT_EQ(back.sizes().vec(), (std::vector<int64_t>{32, 48, 3}));
  EXPECT_LT((back.to(torch::kFloat) - img.to(torch::kFloat)).abs().mean().item<float>(), 3.0f);
}

TEST(Image, WebpAnimationGivesItsFirstFrameOnTheCanvas) {
  torch::manual_seed(6);
  torch::Tensor first = random_image(4, 6), second = random_image(8, 10);
  const std::string anim =
      riff_file(vp8x(0x02, 10, 8) + riff_chunk("ANIM", std::string(4, '\x7f') + le(0, 2)) +
                anmf(2, 4, 6, 4, bitstream_chunks(webp_lossless(first))) +
                anmf(0, 0, 10, 8, bitstream_chunks(webp_lossless(second))));
  torch::Tensor got = decode_image(anim, "anim.webp");
  torch::Tensor want = torch::zeros({8, 10, 3}, torch::kByte);
  want.narrow(0, 4, 4).narrow(1, 2, 6).copy_(first);  // at x = 2, y = 4; black elsewhere
  EXPECT_TRUE(torch::equal(got, want));

  // A lossy frame with alpha: its ALPH and VP8 chunks inside ANMF decode as the still file does.
  torch::Tensor rgba = random_image(6, 8, 4);
  const std::string still = webp_lossy(rgba, 80);
  bool has_alph = false;
  for (const auto& [fourcc, chunk] : riff_chunks(still)) has_alph |= fourcc == "ALPH";
  EXPECT_TRUE(has_alph);
  const std::string lossy_anim =
      riff_file(vp8x(0x12, 8, 6) + riff_chunk("ANIM", std::string(6, '\0')) +
                anmf(0, 0, 8, 6, bitstream_chunks(still)));
  EXPECT_TRUE(torch::equal(decode_image(lossy_anim, "la.webp"), decode_image(still, "s.webp")));

  // A frame that does not fit its canvas.
  const std::string bad = riff_file(vp8x(0x02, 6, 4) + riff_chunk("ANIM", std::string(6, '\0')) +
                                    anmf(2, 0, 6, 4, bitstream_chunks(webp_lossless(first))));
  EXPECT_EQ(error_of([&] { decode_image(bad, "bad.webp"); }),
            "bad.webp: cannot decode WebP image (first frame 6x4 at (2, 0) does not fit 6x4)");
}

TEST(Image, WebpExifOrientationIsApplied) {
  torch::manual_seed(7);
  torch::Tensor img = random_image(3, 5);
  const std::string webp = riff_file(vp8x(0x08, 5, 3) + bitstream_chunks(webp_lossless(img)) +
                                     riff_chunk("EXIF", tiff_block(6, true)));
  torch::Tensor got = decode_image(webp, "e.webp");
  EXPECT_TRUE(torch::equal(got, oriented_by_index(img, 6)));
  EXPECT_EQ(got.sizes().vec(), (std::vector<int64_t>{5, 3, 3}));
  // Probing the size for buckets sees the rotation too: 3 wide, 5 high as displayed. Given only
  // the bytes before the EXIF chunk (the first 64 KB of a big file), the probe asks for the whole
  // file instead of answering with the stored 5 x 3.
  const auto info = probe_image(webp, /*whole_file=*/true);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->format, "webp");
  EXPECT_EQ(std::make_pair(info->width, info->height), std::make_pair(int64_t{3}, int64_t{5}));
  const std::string head = webp.substr(0, webp.rfind("EXIF"));
  EXPECT_FALSE(probe_image(head, /*whole_file=*/false).has_value());
}

TEST(Image, BadWebpFiles) {
  torch::Tensor img = random_image(16, 16);
  const std::string webp = webp_lossy(img, 80);
  const std::string prefix = "cut.webp: cannot decode WebP image (";
  for (size_t keep : {size_t(16), size_t(40), webp.size() / 2}) {
    std::string e = error_of([&] { decode_image(webp.substr(0, keep), "cut.webp"); });
    EXPECT_EQ(e.substr(0, prefix.size()), prefix) << keep << ": " << e;
  }
  const std::string junk = riff_file("JUNK" + le(4, 4) + "abcd");
  std::string e = error_of([&] { decode_image(junk, "cut.webp"); });
  EXPECT_EQ(e.substr(0, prefix.size()), prefix) << e;
}

TEST(Image, ExifOrientationFlipsAndTransposes) {
  torch::manual_seed(8);
  torch::Tensor in = random_image(3, 5, 2);
  for (int o = 0; o <= 9; ++o) {
    torch::Tensor got = apply_exif_orientation(in, o);
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(torch::equal(got, oriented_by_index(in, o))) << o;
  }
}

TEST(Image, ExifOrientationIsFoundBoundsChecked) {
  for (bool little : {true, false})
    for (uint32_t o = 1; o <= 8; ++o) {
      const std::string t = tiff_block(o, little);
      auto* p = reinterpret_cast<const unsigned char*>(t.data());
      EXPECT_EQ(tiff_orientation(p, t.size()), int(o)) << little;
      const std::string e = std::string("Exif\0\0", 6) + tiff_block(o, little, true);  // LONG
      EXPECT_EQ(tiff_orientation(reinterpret_cast<const unsigned char*>(e.data()), e.size()),
                int(o));
    }
  auto orient = [](const std::string& t) {
    return tiff_orientation(reinterpret_cast<const unsigned char*>(t.data()), t.size());
  };
  EXPECT_EQ(orient(tiff_block(9, true)), 0);  // not an orientation
  EXPECT_EQ(orient(tiff_block(0, false)), 0);
  const std::string t = tiff_block(6, false);
  for (size_t n = 0; n < 34; ++n) EXPECT_EQ(orient(t.substr(0, n)), 0) << n;  // cut short
  EXPECT_EQ(orient(t.substr(0, 34)), 6);  // the IFD entry is complete at 8 + 2 + 24 bytes
  std::string far = t;
  far.replace(4, 4, be(0xfffffff0u, 4));  // IFD0 offset past the end
  EXPECT_EQ(orient(far), 0);
  std::string many = t;
  many.replace(8, 2, be(0xffff, 2));   // more entries than there are bytes
  EXPECT_EQ(orient(many), 6);          // found before the count runs out
  many.replace(22, 2, be(0x0110, 2));  // ... and when it is not there, no overrun
  EXPECT_EQ(orient(many), 0);
  EXPECT_EQ(orient("IIxx" + t.substr(4)), 0);  // bad magic

  // In a JPEG: only before the scan, the first Exif APP1 (an XMP APP1 before it is skipped).
  const std::string jpeg = jpeg_of(random_image(8, 8));
  auto with = [&](const std::string& segs) { return jpeg.substr(0, 2) + segs + jpeg.substr(2); };
  EXPECT_EQ(jpeg_exif_orientation(jpeg), 0);
  EXPECT_EQ(jpeg_exif_orientation(with(exif_app1(3, true))), 3);
  EXPECT_EQ(jpeg_exif_orientation(with(app1(std::string("http://ns.adobe.com/xap/1.0/\0<x/>", 33)) +
                                       exif_app1(8, false) + exif_app1(2, false))),
            8);
  EXPECT_EQ(jpeg_exif_orientation("not a jpeg"), 0);
  std::string overrun = with(exif_app1(6, true));
  overrun[4] = char(0xff);  // segment length past the end of the file
  overrun = overrun.substr(0, 60);
  EXPECT_EQ(jpeg_exif_orientation(overrun), 0);
  // After the start of scan it is not looked for.
  const size_t sos = jpeg.find("\xFF\xDA");
  ASSERT_NE(sos, std::string::npos);
  EXPECT_EQ(jpeg_exif_orientation(jpeg.substr(0, sos + 2) + exif_app1(6, true)), 0);
}

TEST(Image, JpegExifOrientationRotatesThePixels) {
  // 8 x 16 (landscape as stored): red top-left quarter, the rest blue.
  torch::Tensor img = torch::zeros({8, 16, 3}, torch::kByte);
  img.select(2, 2).fill_(255);
  img.narrow(0, 0, 4).narrow(1, 0, 8).select(2, 0).fill_(255);
  img.narrow(0, 0, 4).narrow(1, 0, 8).select(2, 2).fill_(0);
  const std::string jpeg = jpeg_of(img);
  torch::Tensor plain = decode_image(jpeg, "p.jpg");
  ASSERT_EQ(plain.sizes().vec(), (std::vector<int64_t>{8, 16, 3}));
  auto with = [&](const std::string& seg) { return jpeg.substr(0, 2) + seg + jpeg.substr(2); };
  auto is_red = [](const torch::Tensor& t, int64_t y, int64_t x) {
    return t[y][x][0].item<int>() > 200 && t[y][x][2].item<int>() < 60;
  };

  // 6: shown rotated 90 degrees clockwise, [16, 8]; the red quarter is now top right.
  torch::Tensor r6 = decode_image(with(exif_app1(6, false)), "r6.jpg");
  ASSERT_EQ(r6.sizes().vec(), (std::vector<int64_t>{16, 8, 3}));
  EXPECT_TRUE(torch::equal(r6, oriented_by_index(plain, 6)));
  EXPECT_TRUE(is_red(r6, 2, 6));
  EXPECT_FALSE(is_red(r6, 2, 1));
  // 3: rotated 180, red bottom right; little-endian EXIF this time. From a file too.
  TempDir tmp;
  write_bytes(tmp / "r3.jpg", with(exif_app1(3, true)));
  torch::Tensor r3 = read_image(tmp / "r3.jpg");
  ASSERT_EQ(r3.sizes().vec(), (std::vector<int64_t>{8, 16, 3}));
  EXPECT_TRUE(torch::equal(r3, plain.flip({0, 1})));
  EXPECT_TRUE(is_red(r3, 6, 13));
  // 8: counter-clockwise, red bottom left.
  torch::Tensor r8 = decode_image(with(exif_app1(8, true)), "r8.jpg");
  EXPECT_TRUE(torch::equal(r8, oriented_by_index(plain, 8)));
  EXPECT_TRUE(is_red(r8, 13, 1));
  // 1, an out-of-range value and malformed EXIF leave the image as stored.
  EXPECT_TRUE(torch::equal(decode_image(with(exif_app1(1, true)), "r1.jpg"), plain));
  EXPECT_TRUE(torch::equal(decode_image(with(exif_app1(12, true)), "r12.jpg"), plain));
  EXPECT_TRUE(
      torch::equal(decode_image(with(app1(std::string("Exif\0\0MM\0*", 10))), "m.jpg"), plain));
}

TEST(Image, PaletteSixteenBitGreyAndAlphaPngsBecomeRgb) {
  // 8-bit palette with transparency (tRNS): the palette colours, alpha dropped.
  const std::string plte = std::string(
      "\xff\x00\x00"
      "\x00\xff\x00"
      "\x00\x00\xff"
      "\x10\x20\x30",
      12);
  const std::string pal =
      png_file(3, 2, 8, 3, {std::string("\x00\x01\x02", 3), std::string("\x03\x03\x00", 3)}, plte,
               std::string("\x00\x80", 2));
  EXPECT_TRUE(torch::equal(
      decode_image(pal, "pal.png"),
      rgb({{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {16, 32, 48}, {16, 32, 48}, {255, 0, 0}}, 2, 3)));
  // 2-bit palette, 5 pixels a row (indices 3 2 1 0 3 packed MSB first: 11 10 01 00 | 11 000000).
  const std::string pal2 = png_file(5, 1, 2, 3, {std::string("\xe4\xc0", 2)}, plte);
  EXPECT_TRUE(
      torch::equal(decode_image(pal2, "pal2.png"),
                   rgb({{16, 32, 48}, {0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {16, 32, 48}}, 1, 5)));
  // 16-bit greyscale: the high byte, replicated.
  const std::string g16 = png_file(2, 1, 16, 0, {std::string("\x12\x34\xff\x01", 4)});
  EXPECT_TRUE(
      torch::equal(decode_image(g16, "g16.png"), rgb({{0x12, 0x12, 0x12}, {255, 255, 255}}, 1, 2)));
  // 16-bit RGBA: the high bytes of R, G, B.
  const std::string c16 =
      png_file(1, 1, 16, 6, {std::string("\xa1\x01\xb2\x02\xc3\x03\x00\x00", 8)});
  EXPECT_TRUE(torch::equal(decode_image(c16, "c16.png"), rgb({{0xa1, 0xb2, 0xc3}}, 1, 1)));
  // 8-bit grey + alpha: grey replicated, alpha dropped (even where fully transparent).
  const std::string ga = png_file(2, 1, 8, 4, {std::string("\x40\x00\x90\xff", 4)});
  EXPECT_TRUE(torch::equal(decode_image(ga, "ga.png"), rgb({{64, 64, 64}, {144, 144, 144}}, 1, 2)));
  // 1-bit greyscale: black and white.
  const std::string g1 = png_file(3, 1, 1, 0, {std::string("\xa0", 1)});  // 1 0 1
  EXPECT_TRUE(torch::equal(decode_image(g1, "g1.png"),
                           rgb({{255, 255, 255}, {0, 0, 0}, {255, 255, 255}}, 1, 3)));
  // A greyscale JPEG: replicated.
  const std::string gj = encode_jpeg(torch::full({8, 8, 1}, 77, torch::kByte), 95);
  torch::Tensor gd = decode_image(gj, "g.jpg");
  ASSERT_EQ(gd.sizes().vec(), (std::vector<int64_t>{8, 8, 3}));
  EXPECT_TRUE(torch::equal(gd.select(2, 0), gd.select(2, 1)));
  EXPECT_TRUE(torch::equal(gd.select(2, 0), gd.select(2, 2)));
  EXPECT_NEAR(gd.to(torch::kFloat).mean().item<float>(), 77.0f, 2.0f);
}
