// An image's format and displayed size from its first bytes, without decoding it (what bucket
// assignment needs for every image of a dataset up front): PNG (IHDR), JPEG (the first SOFn
// marker, with the EXIF orientation swapping width and height for 5-8), WebP (VP8, VP8L and VP8X
// headers), BMP, GIF. Every read is bounds-checked.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace fluxtrain {

struct ImageInfo {
  std::string format;             // "png", "jpeg", "webp", "bmp", "gif"
  int64_t width = 0, height = 0;  // as displayed (after the EXIF orientation)
};

// nullopt when the bytes are not one of these formats or the header is truncated or malformed
// (callers report the item; decoding would fail the same way). Without `whole_file` (the first
// bytes of a file only), also nullopt when what decides the size may lie further on (a WebP's
// EXIF chunk after its image data): probe the whole file then.
std::optional<ImageInfo> probe_image(const std::string& bytes, bool whole_file);

}  // namespace fluxtrain
