// Aspect-ratio buckets (see buckets.h).
#include "data/buckets.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/errors.h"

namespace fluxtrain {

std::string Bucket::name() const {
  return fmt::format("{}x{}", width, height);
}

std::vector<Bucket> make_buckets(const BucketOptions& o) {
  if (o.step < 1 || o.resolution < o.step || o.resolution % o.step)
    user_error("buckets: resolution {} must be a positive multiple of the step {}", o.resolution,
               o.step);
  if (o.min_side < o.step || o.min_side > o.resolution || o.max_side < o.resolution)
    user_error("buckets: expected step {} <= min side {} <= resolution {} <= max side {}", o.step,
               o.min_side, o.resolution, o.max_side);
  if (!(o.max_upscale >= 1.0)) user_error("buckets: max_upscale {} must be >= 1", o.max_upscale);
  const int64_t area = o.resolution * o.resolution;
  const int64_t lo = (o.min_side + o.step - 1) / o.step * o.step, hi = o.max_side / o.step * o.step;
  std::vector<Bucket> out;
  for (int64_t w = lo; w <= hi; w += o.step) {
    const int64_t h = std::min(hi, area / w / o.step * o.step);
    if (h >= lo) out.push_back({w, h});
  }
  return out;
}

Bucket assign_bucket(const std::vector<Bucket>& table, int64_t width, int64_t height,
                     const BucketOptions& o) {
  if (table.empty()) throw std::invalid_argument("assign_bucket: empty bucket table");
  if (width < 1 || height < 1) throw std::invalid_argument("assign_bucket: empty image");
  const double aspect = std::log(static_cast<double>(width) / static_cast<double>(height));
  const Bucket* best = nullptr;
  double best_d = 0;
  for (const auto& b : table) {
    const double d =
        std::abs(aspect - std::log(static_cast<double>(b.width) / static_cast<double>(b.height)));
    if (!best || d < best_d - 1e-12 ||
        (d < best_d + 1e-12 && b.width * b.height > best->width * best->height))
      best = &b, best_d = d;
  }
  Bucket b = *best;
  const double cover = std::max(static_cast<double>(b.width) / static_cast<double>(width),
                                static_cast<double>(b.height) / static_cast<double>(height));
  if (cover > o.max_upscale) {
    const double shrink = o.max_upscale / cover;
    auto side = [&](int64_t s) {
      return std::max<int64_t>(
          o.step,
          static_cast<int64_t>(std::floor(static_cast<double>(s) * shrink / o.step)) * o.step);
    };
    b = {side(b.width), side(b.height)};
  }
  return b;
}

std::string bucket_counts_text(const std::vector<Bucket>& assigned) {
  std::map<Bucket, int64_t> counts;
  for (const auto& b : assigned) ++counts[b];
  std::vector<std::pair<Bucket, int64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out;
  for (const auto& [b, n] : sorted)
    out += fmt::format("{}{}: {}", out.empty() ? "" : ", ", b.name(), n);
  return out;
}

std::vector<int64_t> bucket_ids_by_size(const std::vector<Bucket>& buckets) {
  std::map<Bucket, int64_t> ids;
  for (const auto& b : buckets) ids.emplace(b, 0);
  int64_t next = 0;
  for (auto& [b, id] : ids) id = next++;
  std::vector<int64_t> out;
  out.reserve(buckets.size());
  for (const auto& b : buckets) out.push_back(ids.at(b));
  return out;
}

}  // namespace fluxtrain
