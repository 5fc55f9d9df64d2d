// Image I/O with stb (and libwebp for WebP), PNG text chunks and grids (see image.h). The stb
// implementations are compiled here as static functions, so nothing else needs to link libstb.
#include "io/image.h"

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "core/errors.h"
#include "io/exif.h"
#include "io/files.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop
#include <webp/decode.h>

namespace fluxtrain {
namespace {

void check_hwc_uint8(const torch::Tensor& t, const char* what) {
  if (!t.defined() || t.dim() != 3 || t.scalar_type() != torch::kByte)
    throw std::invalid_argument(fmt::format("{}: expected a uint8 [H, W, C] tensor", what));
}

// stb's write callback: the bytes appended to the std::string at ctx.
void append_to_string(void* ctx, void* data, int size) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), size_t(size));
}

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void put_be32(std::string& out, uint32_t v) {
  out.push_back(char(v >> 24));
  out.push_back(char(v >> 16));
  out.push_back(char(v >> 8));
  out.push_back(char(v));
}

// length, type, data, CRC(type + data).
std::string png_chunk(const char* type, const std::string& data) {
  std::string c;
  put_be32(c, uint32_t(data.size()));
  std::string body = std::string(type, 4) + data;
  c += body;
  put_be32(c, png_crc32(body.data(), body.size()));
  return c;
}

bool is_ascii(const std::string& s) {
  for (unsigned char ch : s)
    if (ch >= 0x80) return false;
  return true;
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (ch < 0x80) {
      out.push_back(char(ch));
    } else {
      out.push_back(char(0xc0 | (ch >> 6)));
      out.push_back(char(0x80 | (ch & 0x3f)));
    }
  }
  return out;
}

const std::array<uint8_t, 8> kPngSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

uint32_t read_le32(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

uint32_t read_le24(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16);
}

bool is_webp(const std::string& b) {
  return b.size() >= 12 && b.compare(0, 4, "RIFF") == 0 && b.compare(8, 4, "WEBP") == 0;
}

const char* webp_status(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY:
      return "out of memory";
    case VP8_STATUS_INVALID_PARAM:
      return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR:
      return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
      return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA:
      return "not enough data: truncated?";
    default:
      return "decoder error";
  }
}

// Decodes a still WebP bitstream (a whole RIFF file, or the ALPH/VP8/VP8L chunks of one
// animation frame) to uint8 [H, W, 3].
torch::Tensor decode_webp_still(const unsigned char* p, size_t n, const std::string& name) {
  WebPBitstreamFeatures f;
  VP8StatusCode st = WebPGetFeatures(p, n, &f);
  if (st != VP8_STATUS_OK) user_error("{}: cannot decode WebP image ({})", name, webp_status(st));
  int w = 0, h = 0;
  uint8_t* px = WebPDecodeRGB(p, n, &w, &h);
  if (!px) user_error("{}: cannot decode WebP image (corrupt image data)", name);
  torch::Tensor out = torch::empty({h, w, 3}, torch::kByte);
  std::memcpy(out.data_ptr(), px, size_t(w) * size_t(h) * 3);
  WebPFree(px);
  return out;
}

// WebP: a still image, or the first frame of an animation on a black canvas of the animation's
// size (what PIL's first frame looks like after convert("RGB")). EXIF orientation is applied.
torch::Tensor decode_webp(const std::string& bytes, const std::string& name) {
  auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  WebPBitstreamFeatures f;
  VP8StatusCode st = WebPGetFeatures(p, n, &f);
  if (st != VP8_STATUS_OK) user_error("{}: cannot decode WebP image ({})", name, webp_status(st));
  // The RIFF chunks after "RIFF" <size> "WEBP": the first ANMF frame and the EXIF block.
  const unsigned char* frame = nullptr;
  size_t frame_size = 0;
  int orientation = 0;
  for (size_t at = 12; at + 8 <= n;) {
    const uint32_t size = read_le32(p + at + 4);
    if (size > n - at - 8) break;  // truncated chunk: the decoder reports what matters
    const unsigned char* payload = p + at + 8;
    if (std::memcmp(p + at, "ANMF", 4) == 0 && !frame) {
      frame = payload;
      frame_size = size;
    } else if (std::memcmp(p + at, "EXIF", 4) == 0 && orientation == 0) {
      orientation = tiff_orientation(payload, size);
    }
    at += 8 + size_t(size) + (size & 1);
  }
  torch::Tensor img;
  if (!f.has_animation) {
    img = decode_webp_still(p, n, name);
  } else {
    if (!frame || frame_size < 16)
      user_error("{}: cannot decode WebP image (animation without a complete frame)", name);
    const int64_t x = 2 * int64_t(read_le24(frame)), y = 2 * int64_t(read_le24(frame + 3));
    const int64_t fw = int64_t(read_le24(frame + 6)) + 1, fh = int64_t(read_le24(frame + 9)) + 1;
    torch::Tensor first = decode_webp_still(frame + 16, frame_size - 16, name);
    if (first.size(0) != fh || first.size(1) != fw || x + fw > f.width || y + fh > f.height)
      user_error("{}: cannot decode WebP image (first frame {}x{} at ({}, {}) does not fit {}x{})",
                 name, first.size(1), first.size(0), x, y, f.width, f.height);
    img = torch::zeros({f.height, f.width, 3}, torch::kByte);
    img.narrow(0, y, fh).narrow(1, x, fw).copy_(first);
  }
  return apply_exif_orientation(img, orientation);
}

}  // namespace

uint32_t png_crc32(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

torch::Tensor decode_image(const std::string& bytes, const std::string& name) {
  if (bytes.size() > size_t(std::numeric_limits<int>::max()))
    user_error("{}: image file too large ({} bytes)", name, bytes.size());
  if (is_webp(bytes)) return decode_webp(bytes, name);
  int w = 0, h = 0, c = 0;
  unsigned char* px = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                            int(bytes.size()), &w, &h, &c, 3);
  if (!px) user_error("{}: cannot decode image ({})", name, stbi_failure_reason());
  torch::Tensor out = torch::empty({h, w, 3}, torch::kByte);
  std::memcpy(out.data_ptr(), px, size_t(w) * size_t(h) * 3);
  stbi_image_free(px);
  if (bytes.size() >= 2 && uint8_t(bytes[0]) == 0xFF && uint8_t(bytes[1]) == 0xD8)
    return apply_exif_orientation(out, jpeg_exif_orientation(bytes));  // a JPEG
  return out;
}

torch::Tensor read_image(const std::string& path) {
  return decode_image(read_file_bytes(path), path);
}

torch::Tensor to_float_chw(const torch::Tensor& hwc) {
  check_hwc_uint8(hwc, "to_float_chw");
  if (hwc.size(2) != 3) throw std::invalid_argument("to_float_chw: expected 3 channels");
  return hwc.permute({2, 0, 1}).to(torch::kFloat).div(127.5).sub(1.0).contiguous();
}

torch::Tensor to_uint8_hwc(const torch::Tensor& chw) {
  if (!chw.defined() || chw.dim() != 3 || chw.size(0) != 3 || !chw.is_floating_point())
    throw std::invalid_argument("to_uint8_hwc: expected a float [3, H, W] tensor");
  torch::Tensor x = chw.detach().to(torch::kCPU, torch::kFloat).nan_to_num(0.0, 1.0, -1.0);
  x = x.clamp(-1.0, 1.0).add(1.0).mul(127.5).round();
  return x.to(torch::kByte).permute({1, 2, 0}).contiguous();
}

std::string encode_png(const torch::Tensor& hwc, const std::map<std::string, std::string>& text) {
  check_hwc_uint8(hwc, "encode_png");
  const int64_t h = hwc.size(0), w = hwc.size(1), c = hwc.size(2);
  if (c != 1 && c != 3 && c != 4)
    throw std::invalid_argument(fmt::format("encode_png: {} channels (expected 1, 3 or 4)", c));
  if (h <= 0 || w <= 0 || h > (1 << 24) || w > (1 << 24))
    throw std::invalid_argument(fmt::format("encode_png: bad image size {}x{}", w, h));
  std::string chunks;
  for (const auto& [key, value] : text) {
    bool ok = !key.empty() && key.size() <= 79 && key.front() != ' ' && key.back() != ' ' &&
              key.find("  ") == std::string::npos;
    for (unsigned char ch : key) ok &= ch >= 32 && ch <= 126;
    if (!ok) user_error("PNG text key '{}': expected 1-79 printable ASCII characters", key);
    if (value.find('\0') != std::string::npos)
      user_error("PNG text '{}': the value contains a NUL byte", key);
    if (is_ascii(value)) {
      chunks += png_chunk("tEXt", key + '\0' + value);
    } else {  // keyword, NUL, compression flag 0, method 0, empty language and translated key
      chunks += png_chunk("iTXt", key + std::string("\0\0\0\0\0", 5) + value);
    }
  }
  torch::Tensor img = hwc.contiguous();
  std::string png;
  if (!stbi_write_png_to_func(append_to_string, &png, int(w), int(h), int(c), img.data_ptr(),
                              int(w * c)))
    throw std::runtime_error("encode_png: stb failed to encode the image");
  // stb ends the file with the 12-byte IEND chunk; the text goes just before it.
  if (png.size() < 8 + 12 || png.compare(png.size() - 8, 4, "IEND") != 0)
    throw std::runtime_error("encode_png: stb output does not end with IEND");
  png.insert(png.size() - 12, chunks);
  return png;
}

std::string encode_jpeg(const torch::Tensor& hwc, int quality) {
  check_hwc_uint8(hwc, "encode_jpeg");
  const int64_t h = hwc.size(0), w = hwc.size(1), c = hwc.size(2);
  if (c != 1 && c != 3)
    throw std::invalid_argument(fmt::format("encode_jpeg: {} channels (expected 1 or 3)", c));
  if (h <= 0 || w <= 0 || h > 65535 || w > 65535)
    throw std::invalid_argument(fmt::format("encode_jpeg: bad image size {}x{}", w, h));
  if (quality < 1 || quality > 100)
    throw std::invalid_argument(fmt::format("encode_jpeg: quality {} not in 1..100", quality));
  torch::Tensor img = hwc.contiguous();
  std::string jpg;
  if (!stbi_write_jpg_to_func(append_to_string, &jpg, int(w), int(h), int(c), img.data_ptr(),
                              quality))
    throw std::runtime_error("encode_jpeg: stb failed to encode the image");
  return jpg;
}

void write_png(const std::string& path, const torch::Tensor& hwc,
               const std::map<std::string, std::string>& text) {
  std::string png = encode_png(hwc, text);
  OutFile out(path);
  out.write(png.data(), png.size());
  out.close();
}

std::map<std::string, std::string> read_png_text(const std::string& path) {
  const std::string bytes = read_file_bytes(path);
  auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 8 || std::memcmp(p, kPngSignature.data(), 8) != 0)
    user_error("{}: not a PNG file (bad signature)", path);
  std::map<std::string, std::string> out;
  size_t at = 8;
  while (true) {
    if (at + 12 > n)
      user_error("{}: PNG ends at byte {} without an IEND chunk (truncated?)", path, at);
    const uint32_t len = read_be32(p + at);
    const std::string type(bytes, at + 4, 4);
    if (uint64_t(len) + 12 > n - at)
      user_error("{}: PNG chunk '{}' at byte {} runs past the end of the file (truncated?)", path,
                 type, at);
    if (type == "IEND") break;
    const bool is_text = type == "tEXt" || type == "iTXt" || type == "zTXt";
    if (is_text) {
      const uint32_t stored = read_be32(p + at + 8 + len);
      if (png_crc32(p + at + 4, len + 4) != stored)
        user_error("{}: PNG chunk '{}' at byte {} has a bad CRC (corrupt)", path, type, at);
      const std::string data(bytes, at + 8, len);
      const size_t nul = data.find('\0');
      if (nul == std::string::npos || nul == 0)
        user_error("{}: PNG chunk '{}' at byte {} has no keyword", path, type, at);
      const std::string key = latin1_to_utf8(data.substr(0, nul));
      auto inflate = [&](const std::string& z) {
        int got = 0;
        char* raw = stbi_zlib_decode_malloc(z.data(), int(z.size()), &got);
        if (!raw) user_error("{}: PNG chunk '{}' at byte {}: bad compressed text", path, type, at);
        std::string s(raw, size_t(got));
        STBI_FREE(raw);
        return s;
      };
      if (type == "tEXt") {
        out[key] = latin1_to_utf8(data.substr(nul + 1));
      } else if (type == "zTXt") {
        if (data.size() < nul + 2)
          user_error("{}: PNG chunk 'zTXt' at byte {} is too short", path, at);
        out[key] = latin1_to_utf8(inflate(data.substr(nul + 2)));
      } else {  // iTXt: key 0 flag method lang 0 translated-key 0 text
        size_t q = nul + 3;
        size_t lang_end = q <= data.size() ? data.find('\0', q) : std::string::npos;
        size_t tkey_end =
            lang_end == std::string::npos ? std::string::npos : data.find('\0', lang_end + 1);
        if (tkey_end == std::string::npos)
          user_error("{}: PNG chunk 'iTXt' at byte {} is malformed", path, at);
        std::string value = data.substr(tkey_end + 1);
        out[key] = data[nul + 1] ? inflate(value) : value;
      }
    }
    at += 12 + size_t(len);
  }
  return out;
}

torch::Tensor make_grid(const torch::Tensor& images, int64_t nrow, int64_t pad, float pad_value) {
  if (!images.defined() || images.dim() != 4 || images.size(0) == 0)
    throw std::invalid_argument("make_grid: expected images [N, C, H, W] with N >= 1");
  if (nrow < 1 || pad < 0) throw std::invalid_argument("make_grid: nrow must be >= 1, pad >= 0");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = std::min(nrow, n);
  const int64_t rows = (n + cols - 1) / cols;
  torch::Tensor grid =
      torch::full({c, rows * (h + pad) + pad, cols * (w + pad) + pad}, pad_value, images.options());
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y = (k / cols) * (h + pad) + pad, x = (k % cols) * (w + pad) + pad;
    grid.narrow(1, y, h).narrow(2, x, w).copy_(images[k]);
  }
  return grid;
}

}  // namespace fluxtrain
