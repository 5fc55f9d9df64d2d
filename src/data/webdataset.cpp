// webdataset shards (see webdataset.h).
#include "data/webdataset.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/errors.h"
#include "core/strings.h"
#include "data/image_folder.h"
#include "io/files.h"

namespace fluxtrain {
namespace fs = std::filesystem;

std::vector<std::string> find_shards(const std::string& spec) {
  auto out = files_matching(spec, ".tar", /*recursive=*/false);
  if (out.empty()) user_error("data '{}': no .tar shards there", spec);
  return out;
}

WebDatasetSource::WebDatasetSource(const std::vector<std::string>& shards,
                                   const std::string& caption_column, DataReport& report) {
  for (const auto& path : shards) {
    const size_t s = shards_.size();
    shards_.push_back(std::make_unique<TarReader>(path));
    const TarReader& tar = *shards_.back();
    const std::string shard_name = fs::path(path).filename().string();
    if (!tar.listing().error.empty())
      report.add(shard_name + (tar.listing().bad_member.empty() ? std::string()
                                                                : ":" + tar.listing().bad_member),
                 tar.listing().error + "; the members before it are used");
    // Samples in order of their first member; members of one key are adjacent in webdataset
    // shards, but any order is accepted.
    struct Sample {
      std::vector<TarMember> images;
      std::vector<TarMember> captions;
    };
    std::vector<std::string> order;
    std::map<std::string, Sample> samples;
    for (const auto& m : tar.members()) {
      const std::string where = shard_name + ":" + m.name;
      if (!is_contained_path(m.name)) {
        report.add(where, "the member name escapes the archive (absolute or '..')");
        continue;
      }
      if (has_pickle_extension(m.name)) {
        report.add(where, "a pickled file: never unpickled, not used");
        continue;
      }
      std::string name = m.name;
      while (name.rfind("./", 0) == 0) name = name.substr(2);
      const auto slash = name.find_last_of('/');
      const auto dot = name.find('.', slash == std::string::npos ? 0 : slash + 1);
      if (dot == std::string::npos) continue;  // no extension: not part of a sample
      const std::string key = name.substr(0, dot), ext = name.substr(dot + 1);
      if (!samples.count(key)) order.push_back(key);
      Sample& sample = samples[key];
      if (has_image_extension(m.name))
        sample.images.push_back(m);
      else if (ext == "txt" || ext == "json")
        sample.captions.push_back(m);
    }
    for (const auto& key : order) {
      const Sample& sample = samples[key];
      const std::string where = shard_name + ":" + key;
      if (sample.images.empty()) {
        if (!sample.captions.empty()) report.add(where, "no image in the sample");
        continue;
      }
      std::string caption;
      for (const auto& c : sample.captions) {
        const std::string text = tar.read(c);
        if (c.name.size() > 4 && c.name.compare(c.name.size() - 4, 4, "json") == 0) {
          const auto j = nlohmann::json::parse(text, nullptr, false);
          if (j.is_object()) caption = metadata_caption(j, caption_column);
        } else {
          caption = trim_whitespace(text);
        }
        if (!caption.empty()) break;
      }
      if (caption.empty()) {
        report.add(where, "no caption (no .txt, or .json with text, caption or prompt)");
        continue;
      }
      items_.push_back({where, caption, 1.0});
      where_.push_back({s, sample.images.front()});
    }
  }
}

std::string WebDatasetSource::read_bytes(int64_t i) const {
  const Where& w = where_.at(static_cast<size_t>(i));
  return shards_[w.shard]->read(w.member);
}

std::string WebDatasetSource::name() const {
  return fmt::format("webdataset ({} shards, {} samples)", shards_.size(), items_.size());
}

}  // namespace fluxtrain
