// Canny edge detection on 8-bit grey images (Gaussian blur, Sobel, non-maximum suppression,
// hysteresis), as ControlNet training uses to make control images; plain C++, no libtorch.
#pragma once
#include <cstdint>
#include <vector>

namespace fluxtrain {

struct CannyOptions {
  // Hysteresis thresholds on the L2 Sobel gradient magnitude sqrt(gx^2 + gy^2) of the 0..255
  // image (OpenCV's Canny with L2gradient: up to 4 * 255 * sqrt(2) ~ 1442). A pixel that survives
  // non-maximum suppression is strong at >= high_threshold and weak at >= low_threshold.
  double low_threshold = 100;
  double high_threshold = 200;
  double sigma = 1.4;  // std dev in pixels of the Gaussian blur before Sobel; 0 = no blur
};

// The normalised 1-D Gaussian kernel for `sigma` (pixels): 2r + 1 weights exp(-k^2 / (2 sigma^2))
// for k = -r..r, r = ceil(3 sigma), divided by their sum. sigma 0 gives {1}. UserError for a
// sigma that is negative, not finite, or above 100.
std::vector<double> gaussian_kernel(double sigma);

// Edge map of a grey image (row-major, width * height bytes): 255 on edges, 0 elsewhere.
//  1. Separable Gaussian blur (border replicate), rounded back to 8 bits as OpenCV's blur of an
//     8-bit image is, so the gradients below are exact integers and NMS ties are exact.
//  2. Sobel 3x3 gx, gy (border replicate), y pointing down; magnitude L2.
//  3. Direction quantised to 0 (|gy| < tan 22.5 |gx|), 90 (|gy| > tan 67.5 |gx|), else 45 when
//     gx, gy have the same sign (neighbours up-left / down-right), 135 otherwise (up-right /
//     down-left).
//  4. Non-maximum suppression. Tie rule: a pixel survives if its magnitude is > that of its
//     neighbour along the direction that comes first in row-major order and >= that of the one
//     that comes after. So of two equal maxima on a clean step the first (left / upper) wins and
//     the edge is one pixel wide, on the last pixel before the step (as OpenCV does for 0 and 90).
//  5. Hysteresis: 8-connected flood fill (explicit stack) from strong pixels through weak ones.
// Border rule: the pixels on the outer 1-pixel frame of the image are never edges (their
// magnitudes are still computed, by replication, and serve as neighbours in NMS); an image
// narrower or shorter than 3 pixels has no edges.
// UserError for thresholds negative, not finite, or low > high, and for a bad sigma (see
// gaussian_kernel); std::invalid_argument for a null image or a side < 1.
std::vector<uint8_t> canny_edges(const uint8_t* grey, int width, int height,
                                 const CannyOptions& options);
// The same UserErrors for the options alone (checked before any image is read).
void check_canny_options(const CannyOptions& options);

// Interleaved 8-bit RGB (width * height * 3 bytes) -> luminance by ITU-R BT.601,
// 0.299 R + 0.587 G + 0.114 B, rounded to nearest (halves up; exact, in integers).
// std::invalid_argument for a null image or a side < 1.
std::vector<uint8_t> rgb_to_grey(const uint8_t* rgb, int width, int height);

}  // namespace fluxtrain
