// Hugging Face parquet files as an image source (see parquet_source.h).
#include "data/parquet_source.h"

#include <algorithm>
#include <filesystem>

#include "core/errors.h"
#include "io/files.h"
#include "io/tar.h"

namespace fluxtrain {
namespace fs = std::filesystem;

std::vector<std::string> find_parquet_files(const std::string& spec) {
  auto out = files_matching(spec, ".parquet", /*recursive=*/true);
  if (out.empty()) user_error("data '{}': no .parquet files there", spec);
  return out;
}

ParquetSource::ParquetSource(const std::vector<std::string>& files, const ParquetSourceOptions& o,
                             DataReport& report) {
  for (const auto& path : files) {
    const std::string file_name = fs::path(path).filename().string();
    std::optional<ParquetReader> reader;
    try {
      reader.emplace(path);
    } catch (const UserError& e) {
      report.add(file_name, e.what());
      continue;
    }
    std::string caption_col = o.caption_column;
    if (caption_col.empty())
      for (const char* c : {"text", "caption", "prompt"})
        if (reader->has_column(c)) {
          caption_col = c;
          break;
        }
    std::string names;
    for (const auto& c : reader->columns()) names += (names.empty() ? "" : ", ") + c.path;
    if (caption_col.empty() || !reader->has_column(caption_col))
      user_error(
          "{}: no caption column {} (its columns: {})", path,
          o.caption_column.empty() ? "text, caption or prompt" : "'" + o.caption_column + "'",
          names);
    const std::string bytes_col =
        reader->has_column(o.image_column + ".bytes") ? o.image_column + ".bytes" : o.image_column;
    if (!reader->has_column(bytes_col))
      user_error("{}: no image column '{}' (its columns: {})", path, o.image_column, names);
    const std::string path_col = o.image_column + ".path";
    const bool has_paths = reader->has_column(path_col);
    std::string control_col;
    bool control_paths = false;
    if (!o.control_column.empty()) {
      control_col = reader->has_column(o.control_column + ".bytes") ? o.control_column + ".bytes"
                                                                    : o.control_column;
      if (!reader->has_column(control_col))
        user_error("{}: no control image column '{}' (conditioning_image_column; its columns: {})",
                   path, o.control_column, names);
      control_paths = reader->has_column(o.control_column + ".path");
    }
    const size_t f = files_.size();
    // A row's file for an image column without bytes when it holds a path instead (datasets
    // keeps a path for images it did not embed), or why it cannot be used.
    auto file_of = [&](const std::string& label, const std::optional<std::string>& rel,
                       std::string* out) -> std::optional<std::string> {
      if (!rel || rel->empty()) return fmt::format("no {} bytes", label);
      if (!is_contained_path(*rel))
        return fmt::format("{} path '{}' escapes the dataset folder", label, *rel);
      *out = (fs::path(path).parent_path() / *rel).string();
      if (!fs::exists(*out)) return fmt::format("{} path '{}' is absent", label, *rel);
      return std::nullopt;
    };
    for (int g = 0; g < reader->num_row_groups(); ++g) {
      std::vector<std::optional<std::string>> captions, images, paths, controls, cpaths;
      try {
        captions = reader->read_strings(g, caption_col);
        images = reader->read_strings(g, bytes_col);
        if (has_paths) paths = reader->read_strings(g, path_col);
        if (!control_col.empty()) controls = reader->read_strings(g, control_col);
        if (control_paths) cpaths = reader->read_strings(g, o.control_column + ".path");
      } catch (const UserError& e) {
        report.add(fmt::format("{} row group {}", file_name, g), e.what());
        continue;
      }
      int64_t first_row = 0;
      for (int k = 0; k < g; ++k) first_row += reader->row_group_rows(k);
      for (size_t r = 0; r < captions.size(); ++r) {
        const std::string key =
            fmt::format("{} row {}", file_name, first_row + static_cast<int64_t>(r));
        Where w{f, g, static_cast<int64_t>(r), "", ""};
        if (!images[r] || images[r]->empty()) {
          if (auto why = file_of("image", has_paths ? paths[r] : std::nullopt, &w.path)) {
            report.add(key, *why);
            continue;
          }
        }
        if (!control_col.empty() && (!controls[r] || controls[r]->empty())) {
          if (auto why = file_of(o.control_column, control_paths ? cpaths[r] : std::nullopt,
                                 &w.control_path)) {
            report.add(key, *why);
            continue;
          }
        }
        if (!captions[r] || captions[r]->empty()) {
          report.add(key, "no caption");
          continue;
        }
        items_.push_back({key, *captions[r], 1.0});
        where_.push_back(std::move(w));
      }
    }
    files_.push_back(std::move(*reader));
    bytes_column_.push_back(bytes_col);
    control_column_.push_back(control_col);
  }
  if (o.control_column.empty()) control_column_.clear();
}

std::string ParquetSource::column_bytes(const Where& w, int column) const {
  std::shared_ptr<const std::vector<std::optional<std::string>>> group;
  GroupCache& cache = cached_[column];
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache.key == std::make_pair(w.file, w.row_group)) group = cache.rows;
  }
  if (!group) {
    const std::string& name = column == 0 ? bytes_column_[w.file] : control_column_[w.file];
    group = std::make_shared<const std::vector<std::optional<std::string>>>(
        files_[w.file].read_strings(w.row_group, name));
    std::lock_guard<std::mutex> lock(mutex_);
    cache.key = {w.file, w.row_group};
    cache.rows = group;
  }
  return group->at(static_cast<size_t>(w.row)).value_or(std::string());
}

std::string ParquetSource::read_bytes(int64_t i) const {
  const Where& w = where_.at(static_cast<size_t>(i));
  return w.path.empty() ? column_bytes(w, 0) : read_file_bytes(w.path);
}

std::string ParquetSource::read_control_bytes(int64_t i) const {
  if (control_column_.empty()) return ImageSource::read_control_bytes(i);
  const Where& w = where_.at(static_cast<size_t>(i));
  return w.control_path.empty() ? column_bytes(w, 1) : read_file_bytes(w.control_path);
}

std::string ParquetSource::name() const {
  return fmt::format("parquet ({} files, {} rows)", files_.size(), items_.size());
}

}  // namespace fluxtrain
