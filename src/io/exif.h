// EXIF orientation: finding tag 0x0112 (TIFF IFD0) in a JPEG's APP1 "Exif" segment or a raw
// EXIF/TIFF block (WebP's EXIF chunk), and turning a decoded uint8 [H, W, C] image the way a
// viewer shows it (as PIL's ImageOps.exif_transpose, which diffusers' scripts call).
// Malformed or missing EXIF is never an error: the image is then used as stored.
#pragma once
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace fluxtrain {

// The orientation (1-8) recorded in a JPEG file's first APP1 Exif segment; 0 when the bytes are
// not a JPEG, there is no Exif segment, or it is malformed, truncated or holds another value.
// Only the markers before the first SOS are walked; every offset is bounds-checked.
int jpeg_exif_orientation(const std::string& jpeg);

// The orientation (1-8) in an EXIF block: a TIFF header ("II*\0" little-endian or "MM\0*"
// big-endian), optionally preceded by "Exif\0\0"; 0 when absent, malformed or out of range.
int tiff_orientation(const unsigned char* data, size_t size);

// uint8 (or any dtype) [H, W, C] as stored -> as displayed for EXIF orientation `o`:
//   1 as is; 2 mirrored left-right; 3 rotated 180; 4 mirrored top-bottom;
//   5 transposed (x <-> y); 6 rotated 90 clockwise; 7 transversed (transpose + 180);
//   8 rotated 90 counter-clockwise. 5-8 give [W, H, C]. Any other value: returned as is.
// The result is contiguous.
torch::Tensor apply_exif_orientation(const torch::Tensor& hwc, int o);

}  // namespace fluxtrain
