// Reading a prepared latent cache (see latent_cache.h).
#include "data/latent_cache.h"

#include <filesystem>
#include <map>

#include "core/errors.h"
#include "data/buckets.h"
#include "io/checksum.h"
#include "io/files.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

template <typename T>
T field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) user_error("{}: no '{}'", where, key);
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    user_error("{}: '{}' has the wrong type ({})", where, key, j.at(key).type_name());
  }
}

// j[key], present and of the JSON type `kind` ("object" or "array").
const nlohmann::json& json_field(const nlohmann::json& j, const char* key, const char* kind,
                                 const std::string& where) {
  if (!j.contains(key)) user_error("{}: no '{}'", where, key);
  const auto& v = j.at(key);
  if (v.type_name() != std::string(kind))
    user_error("{}: '{}' is {}, expected {}", where, key, v.type_name(), kind);
  return v;
}

void check_shard(const fs::path& dir, const nlohmann::json& s, bool verify,
                 const std::string& where, std::vector<std::string>& names) {
  const std::string file = field<std::string>(s, "file", where);
  if (file.find('/') != std::string::npos || file.empty())
    user_error("{}: shard name '{}' is not a plain file name", where, file);
  const fs::path p = dir / file;
  std::error_code ec;
  if (!fs::exists(p, ec)) user_error("{}: shard {} is missing", where, file);
  const auto bytes = field<uint64_t>(s, "bytes", where);
  if (fs::file_size(p, ec) != bytes)
    user_error("{}: shard {} is {} bytes, the manifest says {} (truncated?)", where, file,
               fs::file_size(p, ec), bytes);
  if (verify && hex64(file_xxh64(p.string()).xxh64) != field<std::string>(s, "xxh64", where))
    user_error("{}: shard {} checksum mismatch (corrupt)", where, file);
  names.push_back(file);
}

}  // namespace

bool is_latent_cache(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / "cache.json", ec);
}

LatentCacheManifest read_latent_cache_manifest(const std::string& dir, bool verify) {
  const fs::path root(dir);
  const std::string where = (root / "cache.json").string();
  LatentCacheManifest m;
  m.json = read_json_file(where);
  const auto& j = m.json;
  if (!j.is_object() || j.value("format", "") != kLatentCacheFormat)
    user_error("{}: not a fluxtrain latent cache (format '{}')", where,
               j.is_object() ? j.value("format", "") : "");
  if (j.value("version", 0) != kLatentCacheVersion)
    user_error("{}: cache version {} is not supported (expected {})", where, j.value("version", 0),
               kLatentCacheVersion);
  m.captions = field<std::vector<std::string>>(j, "captions", where);
  m.empty_caption = field<int64_t>(j, "empty_caption", where);
  m.text_shard_size = field<int64_t>(j, "text_shard_size", where);
  for (const auto& s : json_field(j, "latent_shards", "array", where))
    check_shard(root, s, verify, where, m.latent_shards);
  for (const auto& s : json_field(j, "text_shards", "array", where))
    check_shard(root, s, verify, where, m.text_shards);
  if (m.text_shard_size < 1 || static_cast<int64_t>(m.text_shards.size()) * m.text_shard_size <
                                   static_cast<int64_t>(m.captions.size()))
    user_error("{}: {} text shards of {} captions cannot hold its {} captions", where,
               m.text_shards.size(), m.text_shard_size, m.captions.size());
  if (m.empty_caption < 0 || m.empty_caption >= static_cast<int64_t>(m.captions.size()) ||
      !m.captions[static_cast<size_t>(m.empty_caption)].empty())
    user_error("{}: empty_caption {} is not the empty caption", where, m.empty_caption);
  for (const auto& e : json_field(j, "examples", "array", where)) {
    CachedExample x;
    x.key = field<std::string>(e, "key", where);
    x.caption = field<int64_t>(e, "caption", where);
    x.shard = field<int64_t>(e, "shard", where);
    x.width = field<int64_t>(e, "width", where);
    x.height = field<int64_t>(e, "height", where);
    x.validation = field<bool>(e, "validation", where);
    x.timestep_index = field<int64_t>(e, "timestep_index", where);
    x.loss_weight = field<double>(e, "loss_weight", where);
    if (x.caption < 0 || x.caption >= static_cast<int64_t>(m.captions.size()) || x.shard < 0 ||
        x.shard >= static_cast<int64_t>(m.latent_shards.size()))
      user_error("{}: example '{}' names caption {} / shard {} outside the cache", where, x.key,
                 x.caption, x.shard);
    m.examples.push_back(x);
  }
  return m;
}

LatentCacheDataset::LatentCacheDataset(const std::string& dir, bool validation_split,
                                       bool with_text)
    : dir_(dir), validation_(validation_split), with_text_(with_text) {
  manifest_ = std::make_shared<const LatentCacheManifest>(read_latent_cache_manifest(dir, false));
  has_control_ = !manifest_->json.value("control", nlohmann::json(nullptr)).is_null();
  for (size_t i = 0; i < manifest_->examples.size(); ++i)
    if (manifest_->examples[i].validation == validation_split)
      examples_.push_back(static_cast<int64_t>(i));
  for (const auto& f : manifest_->latent_shards)
    latents_.push_back(std::make_shared<SafetensorsFile>((fs::path(dir) / f).string()));
  for (const auto& f : manifest_->text_shards)
    text_.push_back(std::make_shared<SafetensorsFile>((fs::path(dir) / f).string()));
  for (size_t c = 0; c < manifest_->captions.size(); ++c)
    caption_ids_.emplace(manifest_->captions[c], static_cast<int64_t>(c));
}

Example LatentCacheDataset::get(int64_t index) const {
  if (index < 0 || index >= size())
    throw std::out_of_range(fmt::format("{} index {} not in [0, {})", name(), index, size()));
  const int64_t i = examples_[static_cast<size_t>(index)];
  const CachedExample& x = manifest_->examples[static_cast<size_t>(i)];
  const SafetensorsFile& shard = *latents_[static_cast<size_t>(x.shard)];
  Example ex;
  ex.latent_mean = shard.load(fmt::format("mean.{}", i));
  ex.latent_logvar = shard.load(fmt::format("logvar.{}", i));
  if (has_control_) ex.control_latent_mean = shard.load(fmt::format("control.{}", i));
  if (with_text_) {
    auto text = text_by_id(x.caption);
    ex.txt = text.first;
    ex.vec = text.second;
  }
  ex.caption = manifest_->captions[static_cast<size_t>(x.caption)];
  ex.timestep_index = validation_ ? x.timestep_index : -1;
  ex.loss_weight = x.loss_weight;
  ex.key = x.key;
  return ex;
}

std::optional<std::pair<torch::Tensor, torch::Tensor>> LatentCacheDataset::text_of(
    const std::string& caption) const {
  const auto it = caption_ids_.find(caption);
  if (it == caption_ids_.end()) return std::nullopt;
  return text_by_id(it->second);
}

std::pair<torch::Tensor, torch::Tensor> LatentCacheDataset::text_by_id(int64_t id) const {
  const SafetensorsFile& f = *text_[static_cast<size_t>(id / manifest_->text_shard_size)];
  return std::make_pair(f.load(fmt::format("txt.{}", id)), f.load(fmt::format("vec.{}", id)));
}

std::string LatentCacheDataset::name() const {
  return fmt::format("latent cache {} ({}: {} examples)", dir_,
                     validation_ ? "validation" : "train", examples_.size());
}

std::optional<std::vector<std::string>> LatentCacheDataset::captions() const {
  return manifest_->captions;
}

std::vector<int64_t> LatentCacheDataset::bucket_ids() const {
  std::vector<Bucket> sizes;
  for (int64_t i : examples_) {
    const auto& x = manifest_->examples[static_cast<size_t>(i)];
    sizes.push_back({x.width, x.height});
  }
  return bucket_ids_by_size(sizes);
}

}  // namespace fluxtrain
