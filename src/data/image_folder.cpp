// Image folders with their captions (see image_folder.h).
#include "data/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/errors.h"
#include "core/strings.h"
#include "io/files.h"
#include "io/tar.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

// The file `relative` names inside `root` (canonical), or "" with `why` set when it escapes the
// folder or does not exist.
std::string resolve_inside(const fs::path& root, const std::string& relative, std::string* why) {
  if (!is_contained_path(relative)) {
    *why = "the file name escapes the dataset folder (absolute or '..')";
    return "";
  }
  std::error_code ec;
  const fs::path p = root / relative;
  if (!fs::exists(p, ec)) {
    *why = "listed but absent";
    return "";
  }
  const fs::path real = fs::weakly_canonical(p, ec);
  const std::string r = real.string(), base = root.string() + "/";
  if (ec || r.compare(0, base.size(), base) != 0) {
    *why = "a symbolic link pointing out of the dataset folder";
    return "";
  }
  if (!fs::is_regular_file(real, ec)) {
    *why = "not a regular file";
    return "";
  }
  return r;
}

std::string read_caption_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return trim_whitespace(text);
}

}  // namespace

std::string metadata_caption(const nlohmann::json& row, const std::string& column) {
  auto text_of = [&](const char* key) -> std::string {
    if (!row.contains(key) || !row[key].is_string()) return "";
    return row[key].get<std::string>();
  };
  if (!column.empty()) return text_of(column.c_str());
  for (const char* key : {"text", "caption", "prompt"})
    if (auto t = text_of(key); !t.empty()) return t;
  return "";
}

ImageFolderSource::ImageFolderSource(const std::string& dir, const ImageFolderOptions& o,
                                     DataReport& report) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    user_error("data '{}': not a directory (expected an image folder)", dir);
  const fs::path root = fs::canonical(dir);
  dir_ = root.string();
  auto add = [&](const std::string& path, const std::string& key, std::string caption) {
    if (!o.instance_prompt.empty()) caption = o.instance_prompt;
    if (caption.empty()) {
      report.add(key, "no caption");
      return;
    }
    items_.push_back({key, std::move(caption), o.loss_weight});
    paths_.push_back(path);
  };

  // Every file under the folder, for the side-car layout and for what metadata does not list.
  std::vector<std::string> images;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const std::string rel = it->path().lexically_relative(root).string();
    if (has_pickle_extension(rel)) {
      report.add(rel, "a pickled file: never unpickled, not used");
      continue;
    }
    if (has_image_extension(rel) && !it->is_directory()) images.push_back(rel);
  }
  std::sort(images.begin(), images.end());

  const fs::path jsonl = root / "metadata.jsonl", json = root / "metadata.json";
  std::vector<std::pair<std::string, std::string>> listed;  // (file_name, caption)
  if (fs::exists(jsonl)) {
    layout_ = "metadata.jsonl";
    std::ifstream in(jsonl);
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const auto row = nlohmann::json::parse(line, nullptr, false);
      const std::string where = fmt::format("metadata.jsonl line {}", n);
      if (row.is_discarded() || !row.is_object()) {
        report.add(where, "not a JSON object");
        continue;
      }
      if (!row.contains("file_name") || !row["file_name"].is_string()) {
        report.add(where, "no file_name");
        continue;
      }
      listed.emplace_back(row["file_name"].get<std::string>(),
                          metadata_caption(row, o.caption_column));
    }
  } else if (fs::exists(json)) {
    layout_ = "metadata.json";
    const nlohmann::json doc = read_json_file(json.string());
    if (doc.is_array()) {
      for (size_t n = 0; n < doc.size(); ++n) {
        const auto& row = doc[n];
        if (!row.is_object() || !row.contains("file_name") || !row["file_name"].is_string()) {
          report.add(fmt::format("metadata.json entry {}", n), "no file_name");
          continue;
        }
        listed.emplace_back(row["file_name"].get<std::string>(),
                            metadata_caption(row, o.caption_column));
      }
    } else if (doc.is_object()) {
      for (const auto& [file, value] : doc.items())
        listed.emplace_back(file, value.is_string()   ? value.get<std::string>()
                                  : value.is_object() ? metadata_caption(value, o.caption_column)
                                                      : std::string());
    } else {
      user_error(
          "{}: expected a list of {{\"file_name\", \"text\"}} objects or an object of "
          "file name: caption",
          json.string());
    }
  }

  if (!layout_.empty()) {
    std::set<std::string> seen;
    for (const auto& [file, caption] : listed) {
      std::string why;
      const std::string path = resolve_inside(root, file, &why);
      if (path.empty()) {
        report.add(file, why + " (listed in " + layout_ + ")");
        continue;
      }
      seen.insert(fs::relative(path, root).string());
      add(path, file, caption);
    }
    for (const auto& rel : images)
      if (!seen.count(rel))
        report.add(rel, !o.instance_prompt.empty()
                            ? "not listed in " + layout_ + " (listed images only)"
                            : "no caption (not listed in " + layout_ + ")");
  } else {
    layout_ = o.instance_prompt.empty() ? "side-car captions" : "instance prompt";
    for (const auto& rel : images) {
      std::string why;
      const std::string path = resolve_inside(root, rel, &why);
      if (path.empty()) {
        report.add(rel, why);
        continue;
      }
      fs::path side = fs::path(path).replace_extension(o.caption_extension);
      std::string caption = fs::exists(side) ? read_caption_file(side) : "";
      if (caption.empty() && o.instance_prompt.empty()) {
        report.add(rel, fmt::format("no caption (no {} beside it)",
                                    fs::path(rel).replace_extension(o.caption_extension).string()));
        continue;
      }
      add(path, rel, caption);
    }
  }
}

std::string ImageFolderSource::read_bytes(int64_t i) const {
  return read_file_bytes(paths_.at(static_cast<size_t>(i)));
}

std::string ImageFolderSource::read_head(int64_t i, size_t n) const {
  return read_file_head(paths_.at(static_cast<size_t>(i)), n);
}

std::string ImageFolderSource::name() const {
  return fmt::format("image folder {} ({} images, {})", dir_, items_.size(), layout_);
}

}  // namespace fluxtrain
