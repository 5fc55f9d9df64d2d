// An image folder as Hugging Face's imagefolder and kohya's trainers lay it out:
//  - metadata.jsonl (one JSON object per line) or metadata.json (a list of objects, or an object
//    mapping file names to captions) with `file_name` and a caption under `text`, `caption` or
//    `prompt` (the first present; or `caption_column`), file names relative to the folder;
//  - otherwise every image under the folder (recursively, sorted), each captioned by its side-car
//    file (`cat.jpg` + `cat.txt`, kohya's layout);
//  - or one caption for every image (`instance_prompt`, DreamBooth).
// Reported, not used: a listed file that is absent, a file name that escapes the folder (absolute,
// "..", or a symlink pointing out), an image without a caption, a metadata line that does not
// parse, a pickled file (never opened).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/data_report.h"
#include "data/image_source.h"

namespace fluxtrain {

struct ImageFolderOptions {
  std::string caption_column;              // "" = text, caption or prompt
  std::string caption_extension = ".txt";  // side-car captions
  std::string instance_prompt;             // set: the caption of every image
  double loss_weight = 1.0;                // of every image (DreamBooth class images)
};

class ImageFolderSource : public ImageSource {
 public:
  // UserError when `dir` is not a directory; per-image problems go to `report`.
  ImageFolderSource(const std::string& dir, const ImageFolderOptions& options, DataReport& report);
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  const ImageItem& item(int64_t i) const override { return items_.at(static_cast<size_t>(i)); }
  std::string read_bytes(int64_t i) const override;
  std::string read_head(int64_t i, size_t n) const override;
  std::string name() const override;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::string layout_;  // "metadata.jsonl", "metadata.json", "side-car captions", "instance prompt"
  std::vector<ImageItem> items_;
  std::vector<std::string> paths_;  // absolute
};

// The caption in a metadata object: `column` if given, else the first of text, caption, prompt
// that is a non-empty string; "" when there is none.
std::string metadata_caption(const nlohmann::json& row, const std::string& column);

}  // namespace fluxtrain
