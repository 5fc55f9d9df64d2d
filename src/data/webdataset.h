// webdataset tar shards as an image source, read in order without unpacking: members group into
// samples by key ("<dir>/<key>.<ext>", the key ending at the first '.' of the last name), each
// sample an image (jpg, jpeg, png, webp, bmp) and a caption (txt, or json with text, caption or
// prompt, or `caption_column`). Reported, not used: a sample without an image or a caption, a
// member whose name escapes the archive, a pickled member, what follows a truncated or corrupt
// header (the members before it are used).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/data_report.h"
#include "data/image_source.h"
#include "io/tar.h"

namespace fluxtrain {

// The shards `spec` names: a .tar file, a directory (its *.tar files, sorted), or a glob in the
// last path component ("data/shard-*.tar"). UserError when it names none.
std::vector<std::string> find_shards(const std::string& spec);

class WebDatasetSource : public ImageSource {
 public:
  WebDatasetSource(const std::vector<std::string>& shards, const std::string& caption_column,
                   DataReport& report);
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  const ImageItem& item(int64_t i) const override { return items_.at(static_cast<size_t>(i)); }
  std::string read_bytes(int64_t i) const override;
  std::string name() const override;

 private:
  struct Where {
    size_t shard;
    TarMember member;
  };
  std::vector<std::unique_ptr<TarReader>> shards_;
  std::vector<ImageItem> items_;
  std::vector<Where> where_;
};

}  // namespace fluxtrain
