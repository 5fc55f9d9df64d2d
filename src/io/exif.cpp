// EXIF orientation (see exif.h).
#include "io/exif.h"

#include <cstring>

namespace fluxtrain {
namespace {

struct TiffReader {
  const unsigned char* p;
  size_t n;
  bool little;
  // Each reader returns false (and leaves `v` alone) when the bytes are not all there.
  bool u16(size_t at, uint32_t& v) const {
    if (at > n || n - at < 2) return false;
    v = little ? uint32_t(p[at]) | (uint32_t(p[at + 1]) << 8)
               : (uint32_t(p[at]) << 8) | uint32_t(p[at + 1]);
    return true;
  }
  bool u32(size_t at, uint32_t& v) const {
    if (at > n || n - at < 4) return false;
    v = little ? uint32_t(p[at]) | (uint32_t(p[at + 1]) << 8) | (uint32_t(p[at + 2]) << 16) |
                     (uint32_t(p[at + 3]) << 24)
               : (uint32_t(p[at]) << 24) | (uint32_t(p[at + 1]) << 16) |
                     (uint32_t(p[at + 2]) << 8) | uint32_t(p[at + 3]);
    return true;
  }
};

}  // namespace

int tiff_orientation(const unsigned char* data, size_t size) {
  if (size >= 6 && std::memcmp(data, "Exif\0\0", 6) == 0) {
    data += 6;
    size -= 6;
  }
  if (size < 8) return 0;
  TiffReader r{data, size, false};
  if (std::memcmp(data, "II", 2) == 0) {
    r.little = true;
  } else if (std::memcmp(data, "MM", 2) != 0) {
    return 0;
  }
  uint32_t magic = 0, ifd = 0, count = 0;
  if (!r.u16(2, magic) || magic != 42 || !r.u32(4, ifd) || !r.u16(ifd, count)) return 0;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t entry = size_t(ifd) + 2 + 12 * size_t(i);
    uint32_t tag = 0, type = 0, n = 0, value = 0;
    if (!r.u16(entry, tag) || !r.u16(entry + 2, type) || !r.u32(entry + 4, n)) return 0;
    if (entry + 12 > size) return 0;
    if (tag != 0x0112) continue;
    if (n < 1) return 0;
    if (type == 3) {  // SHORT, as the standard says
      r.u16(entry + 8, value);
    } else if (type == 4) {  // LONG, written by a few tools
      r.u32(entry + 8, value);
    } else {
      return 0;
    }
    return value >= 1 && value <= 8 ? int(value) : 0;
  }
  return 0;
}

int jpeg_exif_orientation(const std::string& jpeg) {
  auto* p = reinterpret_cast<const unsigned char*>(jpeg.data());
  const size_t n = jpeg.size();
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return 0;
  size_t at = 2;
  while (at + 4 <= n) {
    if (p[at] != 0xFF) return 0;  // not a marker: malformed
    const unsigned char m = p[at + 1];
    if (m == 0xFF) {  // fill byte before a marker
      ++at;
      continue;
    }
    if (m == 0xDA || m == 0xD9) return 0;         // start of scan / end of image: no Exif before it
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {  // markers without a length
      at += 2;
      continue;
    }
    const size_t len = (size_t(p[at + 2]) << 8) | p[at + 3];  // includes its own 2 bytes
    if (len < 2 || len > n - at - 2) return 0;
    const unsigned char* seg = p + at + 4;
    const size_t seg_size = len - 2;
    if (m == 0xE1 && seg_size >= 6 && std::memcmp(seg, "Exif\0\0", 6) == 0)
      return tiff_orientation(seg, seg_size);  // the first Exif segment decides
    at += 2 + len;
  }
  return 0;
}

torch::Tensor apply_exif_orientation(const torch::Tensor& hwc, int o) {
  torch::Tensor out;
  switch (o) {
    case 2:
      out = hwc.flip({1});
      break;
    case 3:
      out = hwc.flip({0, 1});
      break;
    case 4:
      out = hwc.flip({0});
      break;
    case 5:
      out = hwc.transpose(0, 1);
      break;
    case 6:
      out = hwc.transpose(0, 1).flip({1});
      break;  // out[y][x] = in[H-1-x][y]
    case 7:
      out = hwc.transpose(0, 1).flip({0, 1});
      break;
    case 8:
      out = hwc.transpose(0, 1).flip({0});
      break;  // out[y][x] = in[x][W-1-y]
    default:
      out = hwc;
      break;
  }
  return out.contiguous();
}

}  // namespace fluxtrain
