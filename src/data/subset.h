// A part of another dataset: a validation split taken from a training source (a fraction or a
// count, chosen by seed), or the training remainder. Validation subsets give their examples
// timestep indices (position mod 8, MLPerf) so that the validation loss covers t = 0 .. 7/8
// evenly.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace fluxtrain {

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices, bool validation,
                std::string what);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Example get(int64_t index) const override;
  Example sample(int64_t index, uint64_t draw) const override;
  std::string name() const override;
  std::optional<std::vector<std::string>> captions() const override { return base_->captions(); }
  bool wants_shuffle() const override { return base_->wants_shuffle(); }
  int64_t base_index(int64_t index) const { return indices_.at(static_cast<size_t>(index)); }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
  bool validation_;
  std::string what_;
};

// Splits [0, n) into (train, validation) index lists: `spec` is a fraction ("0.1": that share,
// at least 1) or a count ("50"); the validation indices are drawn by `seed` and both lists are
// sorted. "" or "0": no validation. UserError for a spec that leaves no training examples.
std::pair<std::vector<int64_t>, std::vector<int64_t>> split_indices(int64_t n,
                                                                    const std::string& spec,
                                                                    uint64_t seed);

}  // namespace fluxtrain
