// Image sources in common (see image_source.h).
#include "data/image_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "core/errors.h"

namespace fluxtrain {

std::string ImageSource::read_control_bytes(int64_t i) const {
  user_error("{}: has no control images ({})", name(), item(i).key);
}

namespace {

std::string lower_extension(const std::string& name) {
  const auto slash = name.find_last_of('/');
  const auto dot = name.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = name.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

}  // namespace

bool has_image_extension(const std::string& name) {
  const std::string e = lower_extension(name);
  return e == ".jpg" || e == ".jpeg" || e == ".png" || e == ".webp" || e == ".bmp";
}

bool has_pickle_extension(const std::string& name) {
  const std::string e = lower_extension(name);
  return e == ".pt" || e == ".pth" || e == ".ckpt" || e == ".pkl" || e == ".pickle" || e == ".bin";
}

ConcatSource::ConcatSource(std::vector<std::shared_ptr<ImageSource>> parts)
    : parts_(std::move(parts)) {
  for (const auto& p : parts_) {
    starts_.push_back(total_);
    total_ += p->size();
  }
}

std::pair<const ImageSource*, int64_t> ConcatSource::locate(int64_t i) const {
  if (i < 0 || i >= total_) throw std::out_of_range(fmt::format("{} index {}", name(), i));
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), i) - 1;
  const size_t k = static_cast<size_t>(it - starts_.begin());
  return {parts_[k].get(), i - *it};
}

const ImageItem& ConcatSource::item(int64_t i) const {
  auto [part, j] = locate(i);
  return part->item(j);
}

std::string ConcatSource::read_bytes(int64_t i) const {
  auto [part, j] = locate(i);
  return part->read_bytes(j);
}

std::string ConcatSource::name() const {
  std::string out;
  for (const auto& p : parts_) out += (out.empty() ? "" : " + ") + p->name();
  return out;
}

}  // namespace fluxtrain
