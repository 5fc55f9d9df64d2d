// Image headers without decoding (see image_info.h).
#include "io/image_info.h"

#include <cstring>

#include "io/exif.h"

namespace fluxtrain {

namespace {

uint32_t be16(const std::string& b, size_t i) {
  return (static_cast<uint8_t>(b[i]) << 8) | static_cast<uint8_t>(b[i + 1]);
}
uint32_t be32(const std::string& b, size_t i) {
  return (be16(b, i) << 16) | be16(b, i + 2);
}
uint32_t le16(const std::string& b, size_t i) {
  return static_cast<uint8_t>(b[i]) | (static_cast<uint8_t>(b[i + 1]) << 8);
}
uint32_t le24(const std::string& b, size_t i) {
  return le16(b, i) | (static_cast<uint8_t>(b[i + 2]) << 16);
}
uint32_t le32(const std::string& b, size_t i) {
  return le16(b, i) | (le16(b, i + 2) << 16);
}
bool starts(const std::string& b, size_t at, const char* magic, size_t n) {
  return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
}

std::optional<ImageInfo> sized(const char* format, int64_t w, int64_t h) {
  if (w <= 0 || h <= 0) return std::nullopt;
  return ImageInfo{format, w, h};
}

std::optional<ImageInfo> jpeg(const std::string& b) {
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (static_cast<uint8_t>(b[i]) != 0xFF) return std::nullopt;
    const uint8_t marker = static_cast<uint8_t>(b[i + 1]);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      i += 2;  // markers without a length
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) return std::nullopt;  // EOI / SOS before any SOF
    const size_t length = be16(b, i + 2);
    if (length < 2) return std::nullopt;
    const bool sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > b.size()) return std::nullopt;
      int64_t h = be16(b, i + 5), w = be16(b, i + 7);
      const int o = jpeg_exif_orientation(b);
      if (o >= 5 && o <= 8) std::swap(w, h);
      return sized("jpeg", w, h);
    }
    i += 2 + length;
  }
  return std::nullopt;
}

std::optional<ImageInfo> webp(const std::string& b, bool whole_file) {
  // RIFF <size> WEBP, then the first chunk: "VP8 " (lossy), "VP8L" (lossless) or "VP8X".
  if (b.size() < 30) return std::nullopt;
  if (starts(b, 12, "VP8 ", 4)) {
    if (!starts(b, 23, "\x9d\x01\x2a", 3)) return std::nullopt;
    return sized("webp", le16(b, 26) & 0x3FFF, le16(b, 28) & 0x3FFF);
  }
  if (starts(b, 12, "VP8L", 4)) {
    if (static_cast<uint8_t>(b[20]) != 0x2F) return std::nullopt;
    const uint32_t bits = le32(b, 21);
    return sized("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
  }
  if (starts(b, 12, "VP8X", 4)) {
    int64_t w = le24(b, 24) + 1, h = le24(b, 27) + 1;
    // An EXIF chunk (flag bit 3) may rotate the displayed image: walk the chunks to it.
    // The EXIF chunk usually follows the image data: in the first bytes of a file it is often
    // not there yet, and the caller must look at the whole file.
    if (static_cast<uint8_t>(b[20]) & 0x08) {
      size_t i = 12;
      bool found = false;
      while (i + 8 <= b.size()) {
        const size_t n = le32(b, i + 4);
        if (starts(b, i, "EXIF", 4) && i + 8 + n <= b.size()) {
          const int o =
              tiff_orientation(reinterpret_cast<const unsigned char*>(b.data()) + i + 8, n);
          if (o >= 5 && o <= 8) std::swap(w, h);
          found = true;
          break;
        }
        if (n > b.size()) break;
        i += 8 + n + (n & 1);
      }
      if (!found && !whole_file) return std::nullopt;
    }
    return sized("webp", w, h);
  }
  return std::nullopt;
}

}  // namespace

std::optional<ImageInfo> probe_image(const std::string& b, bool whole_file) {
  if (starts(b, 0, "\x89PNG\r\n\x1a\n", 8)) {
    if (b.size() < 24 || !starts(b, 12, "IHDR", 4)) return std::nullopt;
    return sized("png", be32(b, 16), be32(b, 20));
  }
  if (starts(b, 0, "\xFF\xD8", 2)) return jpeg(b);
  if (starts(b, 0, "RIFF", 4) && starts(b, 8, "WEBP", 4)) return webp(b, whole_file);
  if (starts(b, 0, "BM", 2)) {
    if (b.size() < 26) return std::nullopt;
    const uint32_t header = le32(b, 14);
    if (header == 12) return sized("bmp", le16(b, 18), le16(b, 20));  // OS/2 BITMAPCOREHEADER
    const int32_t w = static_cast<int32_t>(le32(b, 18)), h = static_cast<int32_t>(le32(b, 22));
    return sized("bmp", w, h < 0 ? -static_cast<int64_t>(h) : h);  // negative: top-down
  }
  if (starts(b, 0, "GIF87a", 6) || starts(b, 0, "GIF89a", 6)) {
    if (b.size() < 10) return std::nullopt;
    return sized("gif", le16(b, 6), le16(b, 8));
  }
  return std::nullopt;
}

}  // namespace fluxtrain
