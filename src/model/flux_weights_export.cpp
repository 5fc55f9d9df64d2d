// FLUX.1 transformer checkpoints: writing a BFL file or a (sharded) diffusers directory, from
// tensors in memory or tensor by tensor from another checkpoint (see flux_weights.h).
#include <filesystem>
#include <functional>

#include "core/device.h"
#include "core/errors.h"
#include "io/files.h"
#include "model/flux_weights.h"

namespace fluxtrain {
namespace fs = std::filesystem;
namespace {

// The BFL tensor of an entry, in its output dtype, and that dtype's element size.
using Source = std::function<torch::Tensor(const FluxWeightEntry&)>;
using ElementSize = std::function<int64_t(const FluxWeightEntry&)>;

std::string clean_path(const std::string& out) {
  fs::path p = fs::path(out).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.string();
}

void write_text_file(const std::string& path, const std::string& text) {
  OutFile f(path);
  f.write(text.data(), text.size());
  f.sync();
  f.close();
}

int64_t write_bfl(const std::string& out, const FluxWeightTable& table, const Source& source) {
  std::error_code ec;
  if (fs::is_directory(out, ec))
    user_error("{}: is a directory (a BFL checkpoint is one .safetensors file)", out);
  const fs::path p(out);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  NamedTensors tensors;
  int64_t bytes = 0;
  for (const auto& e : table.entries()) {
    tensors.emplace_back(e.bfl, source(e));
    bytes += tensors.back().second.numel() * tensors.back().second.element_size();
  }
  // BFL files do not record the RoPE axes: note them when they are not the ones a reader infers.
  std::map<std::string, std::string> metadata;
  const auto& params = table.params();
  if (default_axes_dim(params.hidden_size / params.num_heads) != params.axes_dim) {
    std::string axes;
    for (auto a : params.axes_dim) axes += (axes.empty() ? "" : ",") + std::to_string(a);
    metadata["fluxtrain.axes_dim"] = axes;
  }
  save_safetensors(out, tensors, metadata);
  return bytes;
}

void check_diffusers_can_hold(const FluxParams& p, const std::string& out) {
  if (p.mlp_ratio != 4.0)
    user_error(
        "{}: diffusers' FluxTransformer2DModel has no mlp_ratio setting (always 4), this "
        "model's is {}",
        out, p.mlp_ratio);
  if (!p.qkv_bias)
    user_error("{}: diffusers' FluxTransformer2DModel always has q/k/v biases, this model has none",
               out);
  if (p.theta != 10000.0)
    user_error("{}: diffusers' FluxTransformer2DModel has RoPE theta 10000, this model's is {}",
               out, p.theta);
}

// An existing output directory may only hold a previous diffusers transformer (it is replaced).
void check_replaceable(const std::string& out) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec))
    user_error("{}: exists and is not a directory (a diffusers transformer is a directory)", out);
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name == "config.json" || name == kDiffusersIndex ||
                      (name.rfind("diffusion_pytorch_model", 0) == 0 && name.size() > 12 &&
                       name.substr(name.size() - 12) == ".safetensors");
    if (!ours)
      user_error(
          "{}: exists and holds '{}', which is not part of a diffusers transformer; "
          "refusing to replace it",
          out, name);
  }
}

struct Piece {
  size_t entry, piece;
  int64_t bytes;
};

void write_shards(const std::string& dir, const FluxWeightTable& table, const Source& source,
                  const std::vector<std::vector<Piece>>& shards, nlohmann::json& weight_map) {
  const size_t n = shards.size();
  for (size_t s = 0; s < n; ++s) {
    const std::string file =
        n == 1 ? kDiffusersWeights
               : fmt::format("diffusion_pytorch_model-{:05d}-of-{:05d}.safetensors", s + 1, n);
    NamedTensors tensors;
    size_t cached = SIZE_MAX;
    NamedTensors pieces;  // of entry `cached` (views of its BFL tensor)
    for (const auto& p : shards[s]) {
      if (p.entry != cached) {
        cached = p.entry;
        const auto& e = table.entries()[p.entry];
        pieces = flux_tensor_to_diffusers(e, source(e));
      }
      tensors.push_back(pieces[p.piece]);
      weight_map[tensors.back().first] = file;
    }
    write_safetensors(dir + "/" + file, tensors, {{"format", "pt"}});
  }
}

int64_t write_diffusers(const std::string& out_arg, const FluxWeightTable& table,
                        const Source& source, const ElementSize& element_size,
                        int64_t max_shard_bytes) {
  const std::string out = clean_path(out_arg);
  check_diffusers_can_hold(table.params(), out);
  check_replaceable(out);
  if (max_shard_bytes <= 0) user_error("{}: the shard size must be positive", out);
  // Plan: pieces in table order, a new shard when the next one would overflow the current.
  std::vector<std::vector<Piece>> shards(1);
  int64_t in_shard = 0, total = 0;
  for (size_t i = 0; i < table.entries().size(); ++i) {
    const auto& e = table.entries()[i];
    for (size_t k = 0; k < e.diffusers.size(); ++k) {
      int64_t numel = 1;
      for (auto d : e.piece_shape(k)) numel *= d;
      const int64_t bytes = numel * element_size(e);
      if (!shards.back().empty() && in_shard + bytes > max_shard_bytes) {
        shards.emplace_back();
        in_shard = 0;
      }
      shards.back().push_back({i, k, bytes});
      in_shard += bytes;
      total += bytes;
    }
  }
  const fs::path target(out);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = out + ".tmp-" + unique_suffix();
  try {
    fs::create_directories(tmp);
    nlohmann::json weight_map = nlohmann::json::object();
    write_shards(tmp, table, source, shards, weight_map);
    if (shards.size() > 1) {
      const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                    {"weight_map", weight_map}};
      write_text_file(tmp + "/" + kDiffusersIndex, index.dump(2) + "\n");
    }
    write_text_file(tmp + "/config.json", flux_diffusers_config(table.params()).dump(2) + "\n");
    fsync_dir(tmp);
    // Replace: the old directory goes aside first and is removed once the new one is in place.
    std::string aside;
    if (fs::exists(out)) {
      aside = out + ".old-" + unique_suffix();
      fs::rename(out, aside);
    }
    fs::rename(tmp, out);
    fsync_dir(parent_dir(out));
    if (!aside.empty()) fs::remove_all(aside);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp);
    user_error("{}: cannot write ({})", out, e.what());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return total;
}

int64_t write_layout(const std::string& out, WeightLayout layout, const FluxWeightTable& table,
                     const Source& source, const ElementSize& element_size,
                     int64_t max_shard_bytes) {
  if (layout == WeightLayout::kBfl) return write_bfl(out, table, source);
  return write_diffusers(out, table, source, element_size, max_shard_bytes);
}

}  // namespace

nlohmann::json flux_diffusers_config(const FluxParams& p) {
  return {{"_class_name", "FluxTransformer2DModel"},
          {"_diffusers_version", "0.30.0"},
          {"attention_head_dim", p.hidden_size / p.num_heads},
          {"axes_dims_rope", p.axes_dim},
          {"guidance_embeds", p.guidance_embed},
          {"in_channels", p.in_channels},
          {"joint_attention_dim", p.context_in_dim},
          {"num_attention_heads", p.num_heads},
          {"num_layers", p.depth},
          {"num_single_layers", p.depth_single_blocks},
          {"out_channels", p.out_channels == p.in_channels ? nlohmann::json(nullptr)
                                                           : nlohmann::json(p.out_channels)},
          {"patch_size", 1},
          {"pooled_projection_dim", p.vec_in_dim}};
}

void export_flux_weights(const NamedTensors& bfl, const FluxParams& params, const std::string& out,
                         WeightLayout layout, int64_t max_shard_bytes) {
  const FluxWeightTable table(params);
  std::vector<const torch::Tensor*> found(table.entries().size(), nullptr);
  for (const auto& [name, t] : bfl) {
    const FluxWeightEntry* e = table.by_bfl(name);
    if (!e)
      user_error("{}: tensor '{}' is not part of a FLUX transformer with {}", out, name,
                 table.describe());
    if (t.sizes() != c10::IntArrayRef(e->shape))
      user_error("{}: tensor '{}' has shape {}, expected {}", out, name, shape_str(t.sizes()),
                 shape_str(e->shape));
    const auto*& slot = found[static_cast<size_t>(e - table.entries().data())];
    if (slot) user_error("{}: tensor '{}' is given twice", out, name);
    slot = &t;
  }
  for (size_t i = 0; i < found.size(); ++i)
    if (!found[i]) user_error("{}: tensor '{}' is missing", out, table.entries()[i].bfl);
  auto index = [&](const FluxWeightEntry& e) {
    return static_cast<size_t>(&e - table.entries().data());
  };
  write_layout(
      out, layout, table, [&](const FluxWeightEntry& e) { return *found[index(e)]; },
      [&](const FluxWeightEntry& e) { return int64_t(found[index(e)]->element_size()); },
      max_shard_bytes);
}

int64_t convert_flux_weights(const FluxWeights& src, const std::string& out, WeightLayout layout,
                             std::optional<torch::ScalarType> dtype, int64_t max_shard_bytes) {
  FluxWeightsReader reader(src);
  return write_layout(
      out, layout, reader.table(), [&](const FluxWeightEntry& e) { return reader.read(e, dtype); },
      [&](const FluxWeightEntry& e) {
        return int64_t(c10::elementSize(dtype ? *dtype : reader.stored_dtype(e)));
      },
      max_shard_bytes);
}

}  // namespace fluxtrain
