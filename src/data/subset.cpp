// Subsets and validation splits (see subset.h).
#include "data/subset.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/rng.h"

namespace fluxtrain {

SubsetDataset::SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices,
                             bool validation, std::string what)
    : base_(std::move(base)),
      indices_(std::move(indices)),
      validation_(validation),
      what_(std::move(what)) {
  if (indices_.empty()) user_error("{}: the {} split is empty", base_->name(), what_);
}

Example SubsetDataset::get(int64_t index) const {
  Example ex = base_->get(base_index(index));
  if (validation_) ex.timestep_index = index % kValidationTimesteps;
  return ex;
}

Example SubsetDataset::sample(int64_t index, uint64_t draw) const {
  Example ex = base_->sample(base_index(index), draw);
  if (validation_) ex.timestep_index = index % kValidationTimesteps;
  return ex;
}

std::string SubsetDataset::name() const {
  return fmt::format("{} ({} split: {})", base_->name(), what_, indices_.size());
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> split_indices(int64_t n,
                                                                    const std::string& spec,
                                                                    uint64_t seed) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  if (spec.empty() || spec == "0") return {all, {}};
  char* end = nullptr;
  const double v = std::strtod(spec.c_str(), &end);
  if (*end != '\0' || !(v > 0))
    user_error("val_split '{}': expected a fraction (0.1) or a count (50)", spec);
  const bool fraction = spec.find('.') != std::string::npos && v < 1.0;
  const int64_t k = fraction ? std::max<int64_t>(1, std::llround(v * static_cast<double>(n)))
                             : static_cast<int64_t>(v);
  if (!fraction && v != std::floor(v))
    user_error("val_split '{}': a count must be a whole number (or give a fraction below 1)", spec);
  if (k >= n)
    user_error("val_split '{}': {} of the {} examples would leave none to train on", spec, k, n);
  auto gen = make_generator(seed, RngStream::kShuffle, 0x7a11d);
  auto perm = torch::randperm(n, gen, torch::kInt64);
  std::vector<int64_t> val(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + k);
  std::sort(val.begin(), val.end());
  std::vector<int64_t> train;
  std::set_difference(all.begin(), all.end(), val.begin(), val.end(), std::back_inserter(train));
  return {train, val};
}

}  // namespace fluxtrain
