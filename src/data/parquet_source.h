// Hugging Face `datasets` parquet files as an image source (lambdalabs/pokemon-blip-captions's
// data/train-*.parquet): an `image` column (a struct of `bytes` and `path`, or plain bytes) and a
// caption column (`text` by default; else caption or prompt). Rows are read one row group at a
// time; a row without image bytes (and without a `path` inside the dataset's folder) or without a
// caption is reported; a file that does not open is reported and the others are used. With a
// control column (ControlNet datasets such as fusing/fill50k: `conditioning_image`, stored as the
// image column is) each row's control image comes from it, and a row without one is reported.
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
  std::string control_column;  // "" = none; else every file must have it
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
  bool has_control_images() const override { return !control_column_.empty(); }
  std::string read_control_bytes(int64_t i) const override;

 private:
  struct Where {
    size_t file;
    int row_group;
    int64_t row;
    std::string path;          // the image file, when the row holds a path instead of bytes
    std::string control_path;  // likewise for the control image
  };
  // The bytes of column (0 image, 1 control) at w: from the cache of its last row group.
  std::string column_bytes(const Where& w, int column) const;

  std::vector<ParquetReader> files_;
  std::vector<std::string> bytes_column_;    // per file: "image.bytes" or "image"
  std::vector<std::string> control_column_;  // per file, when there are control images
  std::vector<ImageItem> items_;
  std::vector<Where> where_;
  // Per column, the last row group's bytes, decoded (loaders read rows in bursts of one group).
  struct GroupCache {
    std::pair<size_t, int> key{SIZE_MAX, -1};
    std::shared_ptr<const std::vector<std::optional<std::string>>> rows;
  };
  mutable std::mutex mutex_;
  mutable GroupCache cached_[2];
};

}  // namespace fluxtrain
