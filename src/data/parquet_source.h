// Hugging Face `datasets` parquet files as an image source (lambdalabs/pokemon-blip-captions's
// data/train-*.parquet): an `image` column (a struct of `bytes` and `path`, or plain bytes) and a
// caption column (`text` by default; else caption or prompt). Rows are read one row group at a
// time; a row without image bytes (and without a `path` inside the dataset's folder) or without a
// caption is reported; a file that does not open is reported and the others are used.
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "data/data_report.h"
#include "data/image_source.h"
#include "io/parquet.h"

namespace fluxtrain {

struct ParquetSourceOptions {
  std::string image_column = "image";
  std::string caption_column;  // "" = text, caption or prompt (the first present)
};

// The parquet files `spec` names: a .parquet file, a directory (its *.parquet files under it,
// sorted, recursively: a datasets repository keeps them in data/), or a glob in the last path
// component. UserError when it names none.
std::vector<std::string> find_parquet_files(const std::string& spec);

class ParquetSource : public ImageSource {
 public:
  ParquetSource(const std::vector<std::string>& files, const ParquetSourceOptions& options,
                DataReport& report);
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  const ImageItem& item(int64_t i) const override { return items_.at(static_cast<size_t>(i)); }
  std::string read_bytes(int64_t i) const override;
  std::string name() const override;

 private:
  struct Where {
    size_t file;
    int row_group;
    int64_t row;
    std::string path;  // the image file, when the row holds a path instead of bytes
  };
  std::vector<ParquetReader> files_;
  std::vector<std::string> bytes_column_;  // per file: "image.bytes" or "image"
  std::vector<ImageItem> items_;
  std::vector<Where> where_;
  // The last row group's image bytes, decoded (loaders read rows in bursts of one group).
  mutable std::mutex mutex_;
  mutable std::pair<size_t, int> cached_key_{SIZE_MAX, -1};
  mutable std::shared_ptr<const std::vector<std::optional<std::string>>> cached_;
};

}  // namespace fluxtrain
