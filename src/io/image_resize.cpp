// Separable area / bicubic resizing and crops (see image_resize.h). Each axis gets a table of
// taps (input index, weight) per output index; the two passes apply them, in whichever order
// does less work.
#include "io/image_resize.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace fluxtrain {
namespace {

// For output index o: input indices idx[o * taps + k] with weights w[o * taps + k].
struct Taps {
  int64_t taps = 0;
  std::vector<int64_t> idx;
  std::vector<double> w;
};

// Area weights for shrinking in -> out (in > out). Output pixel o covers input [o s, (o + 1) s)
// with s = in / out; input pixel j covers [j, j + 1). In units of 1 / out both ends are
// integers, so the overlaps are exact and each weight is overlap / in.
Taps area_taps(int64_t in, int64_t out) {
  Taps t;
  t.taps = (in + out - 1) / out + 1;
  t.idx.assign(size_t(out * t.taps), 0);
  t.w.assign(size_t(out * t.taps), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t lo = o * in, hi = (o + 1) * in;  // in units of 1 / out
    int64_t k = 0;
    for (int64_t j = lo / out; j * out < hi; ++j, ++k) {
      const int64_t overlap = std::min((j + 1) * out, hi) - std::max(j * out, lo);
      t.idx[size_t(o * t.taps + k)] = j;
      t.w[size_t(o * t.taps + k)] = double(overlap) / double(in);
    }
  }
  return t;
}

// Keys' cubic convolution kernel with a = -0.5.
double keys(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x <= 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
  return 0.0;
}

// Bicubic weights for enlarging in -> out (in < out): centre x = (o + 0.5) in / out - 0.5,
// taps floor(x) - 1 .. floor(x) + 2, indices clamped to [0, in - 1].
Taps bicubic_taps(int64_t in, int64_t out) {
  Taps t;
  t.taps = 4;
  t.idx.resize(size_t(out * 4));
  t.w.resize(size_t(out * 4));
  for (int64_t o = 0; o < out; ++o) {
    const double x = (double(o) + 0.5) * double(in) / double(out) - 0.5;
    const double f = std::floor(x);
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t j = int64_t(f) - 1 + k;
      t.idx[size_t(o * 4 + k)] = std::min(std::max(j, int64_t(0)), in - 1);
      t.w[size_t(o * 4 + k)] = keys(x - double(j));
    }
  }
  return t;
}

Taps taps_for(int64_t in, int64_t out) {
  return out < in ? area_taps(in, out) : bicubic_taps(in, out);
}

// Along the last axis: src [rows, in] -> dst [rows, out].
template <typename T>
void resize_rows(const T* src, T* dst, int64_t rows, int64_t in, int64_t out, const Taps& t) {
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* s = src + r * in;
      T* d = dst + r * out;
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0.0;
        const int64_t* idx = t.idx.data() + o * t.taps;
        const double* w = t.w.data() + o * t.taps;
        for (int64_t k = 0; k < t.taps; ++k) acc += w[k] * double(s[idx[k]]);
        d[o] = T(acc);
      }
    }
  });
}

// Along the middle axis: src [planes, in, cols] -> dst [planes, out, cols].
template <typename T>
void resize_cols(const T* src, T* dst, int64_t planes, int64_t in, int64_t out, int64_t cols,
                 const Taps& t) {
  at::parallel_for(0, planes * out, 4, [&](int64_t i0, int64_t i1) {
    std::vector<double> acc(static_cast<size_t>(cols));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t p = i / out, o = i % out;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < t.taps; ++k) {
        const double w = t.w[size_t(o * t.taps + k)];
        if (w == 0.0) continue;
        const T* s = src + (p * in + t.idx[size_t(o * t.taps + k)]) * cols;
        for (int64_t c = 0; c < cols; ++c) acc[size_t(c)] += w * double(s[c]);
      }
      T* d = dst + (p * out + o) * cols;
      for (int64_t c = 0; c < cols; ++c) d[c] = T(acc[size_t(c)]);
    }
  });
}

// x contiguous [B, H, W] on the CPU -> [B, height, width].
template <typename T>
torch::Tensor resize_planes(const torch::Tensor& x, int64_t height, int64_t width) {
  const int64_t h = x.size(1), w = x.size(2);
  const Taps th = taps_for(h, height), tw = taps_for(w, width);
  auto along_w = [&](const torch::Tensor& in) {  // [B, H', w] -> [B, H', width]
    torch::Tensor out = torch::empty({in.size(0), in.size(1), width}, in.options());
    resize_rows<T>(in.data_ptr<T>(), out.data_ptr<T>(), in.size(0) * in.size(1), w, width, tw);
    return out;
  };
  auto along_h = [&](const torch::Tensor& in) {  // [B, h, W'] -> [B, height, W']
    torch::Tensor out = torch::empty({in.size(0), height, in.size(2)}, in.options());
    resize_cols<T>(in.data_ptr<T>(), out.data_ptr<T>(), in.size(0), h, height, in.size(2), th);
    return out;
  };
  if (w == width) return h == height ? x.clone() : along_h(x);
  if (h == height) return along_w(x);
  // Multiply-adds of each order: width first, then height; or the other way round.
  const double w_first = double(h) * width * tw.taps + double(height) * width * th.taps;
  const double h_first = double(height) * w * th.taps + double(height) * width * tw.taps;
  return w_first <= h_first ? along_h(along_w(x)) : along_w(along_h(x));
}

}  // namespace

torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width) {
  if (!image.defined() || !image.is_floating_point() || image.dim() < 2)
    throw std::invalid_argument("resize_image: expected a floating-point image [..., H, W]");
  if (image.size(-1) < 1 || image.size(-2) < 1 || image.numel() == 0)
    throw std::invalid_argument("resize_image: the image is empty");
  if (height < 1 || width < 1)
    throw std::invalid_argument(
        fmt::format("resize_image: bad output size {}x{} (height x width)", height, width));
  const auto dtype = image.scalar_type();
  const auto work = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  std::vector<int64_t> lead(image.sizes().begin(), image.sizes().end() - 2);
  const int64_t h = image.size(-2), w = image.size(-1);
  torch::Tensor x = image.detach().to(torch::kCPU, work).contiguous().reshape({-1, h, w});
  torch::Tensor y = work == torch::kDouble ? resize_planes<double>(x, height, width)
                                           : resize_planes<float>(x, height, width);
  lead.push_back(height);
  lead.push_back(width);
  return y.reshape(lead).to(image.device(), dtype);
}

torch::Tensor crop_image(const torch::Tensor& image, int64_t top, int64_t left, int64_t height,
                         int64_t width) {
  if (!image.defined() || image.dim() < 2)
    throw std::invalid_argument("crop_image: expected an image [..., H, W]");
  const int64_t h = image.size(-2), w = image.size(-1);
  if (top < 0 || left < 0 || height < 1 || width < 1 || top + height > h || left + width > w)
    throw std::invalid_argument(
        fmt::format("crop_image: window {}x{} at ({}, {}) is not inside the {}x{} image "
                    "(height x width, at top, left)",
                    height, width, top, left, h, w));
  return image.narrow(-2, top, height).narrow(-1, left, width).clone();
}

torch::Tensor center_crop(const torch::Tensor& image, int64_t height, int64_t width) {
  if (!image.defined() || image.dim() < 2)
    throw std::invalid_argument("center_crop: expected an image [..., H, W]");
  // round(d / 2) with halves to even: d even -> d / 2; d odd -> k or k + 1 (k = d / 2), even.
  auto offset = [](int64_t d) {
    const int64_t k = d / 2;
    return (d % 2 != 0 && k % 2 != 0) ? k + 1 : k;
  };
  const int64_t h = image.size(-2), w = image.size(-1);
  if (height > h || width > w)
    throw std::invalid_argument(fmt::format(
        "center_crop: window {}x{} is larger than the {}x{} image", height, width, h, w));
  return crop_image(image, offset(h - height), offset(w - width), height, width);
}

}  // namespace fluxtrain
