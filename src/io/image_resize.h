// Resizing and cropping for the data transforms, on float images [..., H, W] (the trainer's
// [C, H, W] in [-1, 1], or a batch [N, C, H, W]). Each axis is resized on its own (separable):
//   - shrinking: area (box) filtering, each output pixel the exact area-weighted mean of the input
//     pixels it covers (OpenCV's INTER_AREA; PIL's BOX gives the same for integer factors but
//     weighs whole pixels by where their centres fall otherwise);
//   - enlarging: bicubic with the Keys kernel a = -0.5 (PIL's BICUBIC; torch's bicubic uses
//     a = -0.75), output pixel i centred at input coordinate (i + 0.5) * in / out - 0.5, edge
//     pixels repeated beyond the border (OpenCV; PIL drops out-of-range taps and renormalises,
//     so the outermost pixel or two differ slightly). Bicubic overshoots a little at sharp edges:
//     values are not clamped;
//   - an axis that keeps its size is copied.
// Accumulation is in double; the result has the input's dtype (float32, float64; other floating
// types are computed in float32) and device (a CUDA tensor is resized on the CPU).
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace fluxtrain {

// [..., H, W] -> [..., height, width]. std::invalid_argument for a non-floating tensor, fewer
// than 2 dimensions, an empty image or a size < 1.
torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width);

// The window [..., top : top + height, left : left + width] (a copy). std::invalid_argument when
// it does not lie inside the image.
torch::Tensor crop_image(const torch::Tensor& image, int64_t top, int64_t left, int64_t height,
                         int64_t width);

// The centred window of height x width: top = round((H - height) / 2), left likewise, rounding
// halves to even as torchvision's CenterCrop does (Python's round). std::invalid_argument when
// the window is larger than the image.
torch::Tensor center_crop(const torch::Tensor& image, int64_t height, int64_t width);

}  // namespace fluxtrain
