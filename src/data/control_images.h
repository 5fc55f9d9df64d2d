// Control images for ControlNet training, joined to each example of a dataset and transformed
// with its image (the same bucket, crop and flip):
//   canny   the Canny edge map (data/canny.h) of the example's own image, after its transform
//           (white edges on black, the grey map in all three channels: what Canny ControlNets
//           are trained and sampled with);
//   a DIR   a folder beside an image folder holding one control image per training image under
//           the same relative file name (diffusers' conditioning_image beside image); resized to
//           its image's size first when the two differ;
//   column  the dataset's own control image per row (parquet's conditioning_image column:
//           data/parquet_source.h), joined by ImageDataset as it loads the row, resized likewise.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "data/canny.h"
#include "data/dataset.h"
#include "data/transforms.h"

namespace fluxtrain {

struct ControlImageOptions {
  std::string source;     // "canny" or a folder ("" = none)
  std::string image_dir;  // the image folder whose files the control folder mirrors
  CannyOptions canny;
  TransformOptions transform;  // the training images' (so a draw crops and flips alike)
};

// The Canny control image of `image` [3, H, W] in [-1, 1] (BT.601 grey of its 8-bit pixels):
// [3, H, W], 1 on edges and -1 elsewhere.
torch::Tensor canny_control_image(const torch::Tensor& image, const CannyOptions& options);

// `control` uint8 [h, w, 3] resized (bilinear, data/image_resize.h) to height x width unless it
// has that size: a control image made at another size than its training image.
torch::Tensor control_image_at_size(const torch::Tensor& control, int64_t height, int64_t width);

// `inner` with each example's control_image set. UserError (naming the file) for a control image
// that is missing or does not decode; a folder source needs keys that are relative file names
// (an image folder's).
std::shared_ptr<const Dataset> with_control_images(std::shared_ptr<const Dataset> inner,
                                                   const ControlImageOptions& options);

}  // namespace fluxtrain
