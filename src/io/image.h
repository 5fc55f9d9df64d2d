// Image I/O with stb and libwebp: decode to uint8 HWC, conversions to and from the model's
// [-1, 1] CHW floats, PNG writing with text chunks (prompt, settings) and reading them back, image
// grids.
#pragma once
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace fluxtrain {

// Decodes a PNG/JPEG/WebP/BMP/TGA/GIF(first frame)/PSD/HDR/PNM file to uint8 [H, W, 3] as
// PIL's convert("RGB") does (which diffusers' and kohya's scripts call), after
// ImageOps.exif_transpose (which diffusers' DreamBooth/LoRA scripts call), whatever is stored:
//   - greyscale (any bit depth) is replicated to R = G = B; palette images are expanded;
//   - alpha (RGBA, grey + alpha, a palette's tRNS) is dropped, not composited: the stored
//     colour of a transparent pixel is kept;
//   - 16-bit samples keep their high byte (v >> 8); PIL clips 16-bit greyscale to 255 instead;
//   - JPEG: the EXIF orientation (APP1 Exif, IFD0 tag 0x0112) is applied, so a portrait photo
//     stored sideways with orientation 6 comes out [W, H, 3] upright (see exif.h); malformed
//     EXIF is ignored. CMYK/YCCK JPEGs are converted by stb;
//   - WebP (libwebp): lossy and lossless, still images and the first frame of an animation
//     (placed on a black canvas of the animation's size); its EXIF chunk's orientation too.
// UserError naming the file if it is missing or cannot be decoded.
torch::Tensor read_image(const std::string& path);
// The same from bytes in memory; `name` is used in errors (e.g. "shard-0001.tar:img/12.jpg").
torch::Tensor decode_image(const std::string& bytes, const std::string& name);

// uint8 [H, W, 3] -> float [3, H, W] in [-1, 1] (v / 127.5 - 1).
torch::Tensor to_float_chw(const torch::Tensor& hwc);
// float [3, H, W] in [-1, 1] -> uint8 [H, W, 3], clamped and rounded; NaN becomes 0 (grey).
torch::Tensor to_uint8_hwc(const torch::Tensor& chw);

// PNG bytes of uint8 [H, W, C] (C = 1, 3 or 4) with one text chunk per entry of `text`: tEXt
// when the value is ASCII, iTXt (UTF-8) otherwise. Keys must be 1-79 printable ASCII characters.
std::string encode_png(const torch::Tensor& hwc,
                       const std::map<std::string, std::string>& text = {});
// Baseline JPEG bytes of uint8 [H, W, C], C = 1 or 3, at quality 1..100 (stb: 4:2:0 chroma at
// quality <= 90, 4:4:4 above).
std::string encode_jpeg(const torch::Tensor& hwc, int quality = 90);
// encode_png written to `path` (UserError naming the file if it cannot be written).
void write_png(const std::string& path, const torch::Tensor& hwc,
               const std::map<std::string, std::string>& text = {});
// The text chunks of a PNG file (tEXt as Latin-1 converted to UTF-8, zTXt, iTXt), key -> value.
// UserError if it is not a PNG, is truncated, or a text chunk has a bad CRC.
std::map<std::string, std::string> read_png_text(const std::string& path);

// CRC-32 as used by PNG chunks and zlib (polynomial 0xEDB88320).
uint32_t png_crc32(const void* data, size_t n, uint32_t crc = 0);

// Tiles float [N, C, H, W] images into one [C, H', W'] image, `nrow` images per row (like
// torchvision.utils.make_grid): H' = rows * (H + pad) + pad, W' = min(nrow, N) * (W + pad) + pad,
// image k at row k / nrow, column k % nrow; borders and empty cells are `pad_value`.
torch::Tensor make_grid(const torch::Tensor& images, int64_t nrow, int64_t pad = 2,
                        float pad_value = 1.0f);

}  // namespace fluxtrain
