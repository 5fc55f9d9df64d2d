// FLUX.1 transformer checkpoints: locating, layout detection, architecture inference and
// loading (see flux_weights.h). Writing is flux_weights_export.cpp.
#include "model/flux_weights.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/device.h"
#include "core/errors.h"
#include "core/strings.h"
#include "io/files.h"
#include "model/presets.h"

namespace fluxtrain {
namespace fs = std::filesystem;
namespace {

const char* kAxesMetadata = "fluxtrain.axes_dim";  // BFL files we write for non-default axes

struct Located {
  std::string weights;  // a .safetensors file or an index
  std::string config;   // diffusers config.json, "" when there is none
};

Located locate(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    user_error(
        "{}: no such file or directory (expected a FLUX transformer: a .safetensors file, a "
        ".safetensors.index.json or a diffusers transformer/ directory)",
        path);
  if (!fs::is_directory(path, ec)) {
    // A diffusers file given directly still has its config beside it.
    const fs::path p(path);
    const bool diffusers_name = starts_with(p.filename().string(), "diffusion_pytorch_model");
    const fs::path config = p.parent_path() / "config.json";
    return {path, diffusers_name && is_file(config) ? config.string() : ""};
  }
  fs::path dir(path);
  if (diffusers_weights_in(dir.string()).empty() && fs::is_directory(dir / "transformer", ec))
    dir /= "transformer";
  const std::string weights = diffusers_weights_in(dir.string());
  if (weights.empty())
    user_error(
        "{}: no {} or {} in this directory (expected a diffusers transformer/ directory or a "
        "pipeline directory holding one)",
        path, kDiffusersWeights, kDiffusersIndex);
  return {weights, is_file(dir / "config.json") ? (dir / "config.json").string() : ""};
}

// An opened checkpoint seen through BFL names.
struct OpenedFlux {
  std::string path;  // as given
  Located loc;
  std::unique_ptr<ShardedSafetensors> st;
  WeightLayout layout = WeightLayout::kBfl;
  std::map<std::string, std::vector<std::string>> pieces;  // BFL name -> stored names ("" absent)

  explicit OpenedFlux(const std::string& p) : path(p), loc(locate(p)) {
    st = std::make_unique<ShardedSafetensors>(loc.weights);
    const bool bfl = st->contains("img_in.weight"), diffusers = st->contains("x_embedder.weight");
    if (bfl && diffusers)
      user_error("{}: holds both img_in.weight (BFL) and x_embedder.weight (diffusers)",
                 st->path());
    if (!bfl && !diffusers)
      user_error(
          "{}: holds no FLUX transformer (expected img_in.weight (BFL layout) or "
          "x_embedder.weight (diffusers layout))",
          st->path());
    layout = bfl ? WeightLayout::kBfl : WeightLayout::kDiffusers;
    for (const auto& name : st->names()) {
      if (layout == WeightLayout::kBfl) {
        if (!flux_bfl_to_diffusers_names(name))
          user_error("{}: tensor '{}' is not part of a FLUX transformer (BFL layout)", file(name),
                     name);
        pieces[name] = {name};
        continue;
      }
      const auto to = flux_diffusers_to_bfl_name(name);
      if (!to)
        user_error("{}: tensor '{}' is not part of a FLUX transformer (diffusers layout)",
                   file(name), name);
      auto& slots = pieces[to->bfl];
      slots.resize(static_cast<size_t>(to->num_pieces));
      slots[static_cast<size_t>(to->piece)] = name;
    }
    for (const auto& [bfl, slots] : pieces)
      for (size_t i = 0; i < slots.size(); ++i)
        if (slots[i].empty())
          user_error("{}: tensor '{}' is missing", st->path(), stored_names(bfl)[i]);
  }

  // The file holding a stored tensor (the shard for a sharded checkpoint).
  std::string file(const std::string& stored) const { return st->shard_for(stored).path(); }
  bool has(const std::string& bfl) const { return pieces.count(bfl) > 0; }
  // The names a BFL tensor has (or would have) in this layout.
  std::vector<std::string> stored_names(const std::string& bfl) const {
    if (layout == WeightLayout::kBfl) return {bfl};
    return flux_bfl_to_diffusers_names(bfl).value_or(std::vector<std::string>{bfl});
  }
  std::string stored_name(const std::string& bfl) const {
    const auto names = stored_names(bfl);
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : "' + '") + n;
    return out;
  }
  // The BFL shape of a present tensor of rank `rank` (pieces summed along dim 0).
  std::vector<int64_t> shape(const std::string& bfl, size_t rank) const {
    auto it = pieces.find(bfl);
    if (it == pieces.end()) user_error("{}: tensor '{}' is missing", st->path(), stored_name(bfl));
    std::vector<int64_t> out;
    for (const auto& name : it->second) {
      const auto& s = st->info(name).shape;
      if (s.size() != rank ||
          (!out.empty() && !std::equal(s.begin() + 1, s.end(), out.begin() + 1)))
        user_error("{}: tensor '{}' has shape {}, expected {} dimensions{}", file(name), name,
                   shape_str(s), rank, out.empty() ? "" : " like the other pieces");
      if (out.empty())
        out = s;
      else
        out[0] += s[0];
    }
    return out;
  }
};

int64_t json_int(const nlohmann::json& j, const std::string& config, const char* key) {
  if (!j[key].is_number_integer())
    user_error("{}: '{}' is {}, expected an integer", config, key, j[key].dump());
  return j[key].get<int64_t>();
}

// Checks diffusers' config.json against the inferred params; sets axes_dim from axes_dims_rope.
void check_config(const std::string& config, FluxParams& p, const std::string& weights_path,
                  bool* axes_set) {
  nlohmann::json j = read_json_file(config);
  if (!j.is_object())
    user_error("{}: expected a JSON object (a diffusers transformer config)", config);
  if (j.contains("_class_name") && j["_class_name"] != "FluxTransformer2DModel")
    user_error("{}: '_class_name' is {}, expected \"FluxTransformer2DModel\"", config,
               j["_class_name"].dump());
  auto agree = [&](const char* key, int64_t actual, const std::string& from) {
    if (!j.contains(key) || j[key].is_null()) return;
    const int64_t v = json_int(j, config, key);
    if (v != actual)
      user_error("{}: '{}' is {}, but the tensors in {} have {} ({})", config, key, v, weights_path,
                 actual, from);
  };
  const int64_t head_dim = p.hidden_size / p.num_heads;
  agree("num_layers", p.depth, "transformer_blocks");
  agree("num_single_layers", p.depth_single_blocks, "single_transformer_blocks");
  agree("attention_head_dim", head_dim, "attn.norm_q.weight");
  agree("num_attention_heads", p.num_heads, "x_embedder.weight rows / attention head dim");
  agree("joint_attention_dim", p.context_in_dim, "context_embedder.weight");
  agree("pooled_projection_dim", p.vec_in_dim, "time_text_embed.text_embedder.linear_1.weight");
  agree("in_channels", p.in_channels, "x_embedder.weight");
  agree("out_channels", p.out_channels, "proj_out.weight");
  agree("patch_size", 1, "FLUX patchifies outside the transformer");
  if ((!j.contains("out_channels") || j["out_channels"].is_null()) &&
      p.out_channels != p.in_channels)
    user_error("{}: 'out_channels' is null (= in_channels {}), but proj_out.weight in {} has {}",
               config, p.in_channels, weights_path, p.out_channels);
  if (j.contains("guidance_embeds") && !j["guidance_embeds"].is_null()) {
    if (!j["guidance_embeds"].is_boolean())
      user_error("{}: 'guidance_embeds' is {}, expected true or false", config,
                 j["guidance_embeds"].dump());
    if (j["guidance_embeds"].get<bool>() != p.guidance_embed)
      user_error("{}: 'guidance_embeds' is {}, but {} {} time_text_embed.guidance_embedder", config,
                 j["guidance_embeds"].dump(), weights_path, p.guidance_embed ? "has" : "has no");
  }
  if (j.contains("axes_dims_rope") && !j["axes_dims_rope"].is_null()) {
    std::vector<int64_t> axes;
    try {
      axes = j["axes_dims_rope"].get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception&) {
      user_error("{}: 'axes_dims_rope' is {}, expected a list of integers", config,
                 j["axes_dims_rope"].dump());
    }
    int64_t sum = 0;
    for (auto a : axes) sum += a;
    if (sum != head_dim)
      user_error("{}: 'axes_dims_rope' {} sums to {}, but the attention head dim is {}", config,
                 j["axes_dims_rope"].dump(), sum, head_dim);
    p.axes_dim = axes;
    *axes_set = true;
  }
}

std::vector<int64_t> parse_axes(const std::string& text, const std::string& file) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      user_error("{}: metadata '{}' is '{}', expected comma-separated integers", file,
                 kAxesMetadata, text);
    }
  }
  return out;
}

// Block count from the names, and the check that there is no gap.
int64_t count_blocks(const OpenedFlux& ck, const std::string& prefix) {
  std::set<int64_t> seen;
  for (const auto& [bfl, _] : ck.pieces)
    if (starts_with(bfl, prefix)) seen.insert(std::stoll(bfl.substr(prefix.size())));
  const int64_t n = seen.empty() ? 0 : *seen.rbegin() + 1;
  for (int64_t i = 0; i < n; ++i)
    if (!seen.count(i)) {
      const std::string block = fmt::format("{}{}", prefix, i);
      const std::string stored = ck.stored_name(
          block + (prefix == "double_blocks." ? ".img_mod.lin.weight" : ".modulation.lin.weight"));
      user_error("{}: block {} has no tensors (a gap: blocks go up to index {})", ck.st->path(),
                 stored.substr(0, stored.find('.', stored.find('.') + 1)), n - 1);
    }
  return n;
}

FluxParams infer_params(const OpenedFlux& ck, const std::optional<std::vector<int64_t>>& axes) {
  FluxParams p;
  const auto img_in = ck.shape("img_in.weight", 2);
  p.hidden_size = img_in[0];
  p.in_channels = img_in[1];
  p.context_in_dim = ck.shape("txt_in.weight", 2)[1];
  p.vec_in_dim = ck.shape("vector_in.in_layer.weight", 2)[1];
  p.depth = count_blocks(ck, "double_blocks.");
  p.depth_single_blocks = count_blocks(ck, "single_blocks.");
  if (p.depth + p.depth_single_blocks == 0)
    user_error("{}: no transformer blocks (expected {} or {})", ck.st->path(),
               ck.stored_name("double_blocks.0.img_mod.lin.weight"),
               ck.stored_name("single_blocks.0.modulation.lin.weight"));
  const std::string qnorm = p.depth > 0 ? "double_blocks.0.img_attn.norm.query_norm.scale"
                                        : "single_blocks.0.norm.query_norm.scale";
  const int64_t head_dim = ck.shape(qnorm, 1)[0];
  if (head_dim <= 0 || p.hidden_size % head_dim != 0)
    user_error(
        "{}: tensor '{}' has {} entries (the head dim), which does not divide the hidden "
        "size {} ({})",
        ck.file(ck.stored_names(qnorm)[0]), ck.stored_name(qnorm), head_dim, p.hidden_size,
        ck.stored_name("img_in.weight"));
  p.num_heads = p.hidden_size / head_dim;
  const std::string mlp_name =
      p.depth > 0 ? "double_blocks.0.img_mlp.0.weight" : "single_blocks.0.linear1.weight";
  const int64_t mlp = ck.shape(mlp_name, 2)[0] - (p.depth > 0 ? 0 : 3 * p.hidden_size);
  p.mlp_ratio = static_cast<double>(mlp) / static_cast<double>(p.hidden_size);
  if (mlp <= 0 || static_cast<int64_t>(p.hidden_size * p.mlp_ratio) != mlp)
    user_error(
        "{}: tensor '{}' implies an MLP width of {}, not a usable multiple of the hidden "
        "size {}",
        ck.st->path(), ck.stored_name(mlp_name), mlp, p.hidden_size);
  p.qkv_bias = p.depth == 0 || ck.has("double_blocks.0.img_attn.qkv.bias");
  p.guidance_embed = ck.has("guidance_in.in_layer.weight") || ck.has("guidance_in.in_layer.bias") ||
                     ck.has("guidance_in.out_layer.weight") || ck.has("guidance_in.out_layer.bias");
  p.out_channels = ck.shape("final_layer.linear.weight", 2)[0];

  bool axes_set = false;
  if (ck.layout == WeightLayout::kDiffusers && !ck.loc.config.empty())
    check_config(ck.loc.config, p, ck.st->path(), &axes_set);
  if (axes) {
    p.axes_dim = *axes;
    axes_set = true;
  }
  const auto& meta = ck.st->metadata();
  if (!axes_set && meta.count(kAxesMetadata)) {
    p.axes_dim = parse_axes(meta.at(kAxesMetadata), ck.st->path());
    axes_set = true;
  }
  if (!axes_set) {
    const auto def = default_axes_dim(head_dim);
    if (!def)
      user_error(
          "{}: head dim {} has no standard RoPE axes split; give the axes (diffusers "
          "config.json 'axes_dims_rope')",
          ck.st->path(), head_dim);
    p.axes_dim = *def;
  }
  try {
    p.validate();
  } catch (const UserError& e) {
    user_error("{}: {}", ck.st->path(), e.what());
  }
  return p;
}

// Every stored tensor against the table: present, the right shape, nothing extra.
void check_tensors(const OpenedFlux& ck, const FluxWeightTable& table) {
  std::set<std::string> used;
  for (const auto& e : table.entries()) {
    const auto it = ck.pieces.find(e.bfl);
    if (it == ck.pieces.end())
      user_error("{}: tensor '{}' is missing (a FLUX transformer with {})", ck.st->path(),
                 ck.stored_name(e.bfl), table.describe());
    const size_t n = ck.layout == WeightLayout::kBfl ? 1 : e.diffusers.size();
    for (size_t i = 0; i < n; ++i) {
      const std::string& name = it->second[i];
      const auto& shape = ck.st->info(name).shape;
      const auto want = ck.layout == WeightLayout::kBfl ? e.shape : e.piece_shape(i);
      if (shape != want)
        user_error("{}: tensor '{}' has shape {}, expected {} (a FLUX transformer with {})",
                   ck.file(name), name, shape_str(shape), shape_str(want), table.describe());
    }
    used.insert(e.bfl);
  }
  for (const auto& [bfl, names] : ck.pieces)
    if (!used.count(bfl))
      user_error("{}: tensor '{}' is not part of a FLUX transformer with {}", ck.file(names[0]),
                 names[0], table.describe());
}

FluxWeights inspect(const std::string& path, const std::optional<std::vector<int64_t>>& axes) {
  OpenedFlux ck(path);
  FluxWeights w;
  w.path = path;
  w.files = ck.st->shard_paths();
  w.layout = ck.layout;
  w.params = infer_params(ck, axes);
  check_tensors(ck, FluxWeightTable(w.params));
  w.preset = flux_preset_of(w.params);
  std::map<std::string, int64_t> by_dtype;
  for (const auto& name : ck.st->names()) {
    const auto& info = ck.st->info(name);
    w.num_params += info.numel();
    by_dtype[info.dtype] += info.numel();
  }
  std::string most;
  for (const auto& [dtype, n] : by_dtype)
    if (most.empty() || n > by_dtype[most]) most = dtype;
  w.stored_dtype = safetensors_load_dtype(most);
  return w;
}

bool same_params(const FluxParams& a, const FluxParams& b) {
  return a.in_channels == b.in_channels && a.out_channels == b.out_channels &&
         a.vec_in_dim == b.vec_in_dim && a.context_in_dim == b.context_in_dim &&
         a.hidden_size == b.hidden_size && a.mlp_ratio == b.mlp_ratio &&
         a.num_heads == b.num_heads && a.depth == b.depth &&
         a.depth_single_blocks == b.depth_single_blocks && a.axes_dim == b.axes_dim &&
         a.theta == b.theta && a.qkv_bias == b.qkv_bias && a.guidance_embed == b.guidance_embed;
}

}  // namespace

std::optional<std::vector<int64_t>> default_axes_dim(int64_t head_dim) {
  if (head_dim == 128) return std::vector<int64_t>{16, 56, 56};
  if (head_dim <= 0 || head_dim % 16 != 0) return std::nullopt;
  const int64_t a = head_dim / 8, b = 7 * head_dim / 16;
  if (a % 2 || b % 2) return std::nullopt;
  return std::vector<int64_t>{a, b, b};
}

std::string flux_preset_of(const FluxParams& params) {
  for (const char* name : {"flux-dev", "flux-schnell"})
    if (same_params(params, model_preset(name).flux)) return name;
  return "custom";
}

FluxWeights inspect_flux_weights(const std::string& path) {
  return inspect(path, std::nullopt);
}

FluxWeights inspect_flux_weights(const std::string& path, const std::vector<int64_t>& axes_dim) {
  return inspect(path, axes_dim);
}

struct FluxWeightsReader::Impl {
  explicit Impl(const FluxWeights& w) : ck(w.path), table(w.params) {
    if (ck.layout != w.layout)
      user_error("{}: now holds the {} layout, was inspected as {}", w.path,
                 weight_layout_name(ck.layout), weight_layout_name(w.layout));
    check_tensors(ck, table);
  }
  OpenedFlux ck;
  FluxWeightTable table;
};

FluxWeightsReader::FluxWeightsReader(const FluxWeights& weights)
    : impl_(std::make_unique<Impl>(weights)) {}
FluxWeightsReader::~FluxWeightsReader() = default;

const FluxWeightTable& FluxWeightsReader::table() const {
  return impl_->table;
}

torch::Tensor FluxWeightsReader::read(const FluxWeightEntry& entry,
                                      std::optional<torch::ScalarType> dtype,
                                      torch::Device device) const {
  const auto& ck = impl_->ck;
  const auto& names = ck.pieces.at(entry.bfl);
  if (!dtype) dtype = stored_dtype(entry);
  if (ck.layout == WeightLayout::kBfl) return ck.st->load(names[0], dtype, device);
  std::vector<torch::Tensor> pieces;
  for (const auto& name : names) pieces.push_back(ck.st->load(name, dtype, device));
  return flux_tensor_from_diffusers(entry, pieces);
}

torch::ScalarType FluxWeightsReader::stored_dtype(const FluxWeightEntry& entry) const {
  const auto& ck = impl_->ck;
  return safetensors_load_dtype(ck.st->info(ck.pieces.at(entry.bfl)[0]).dtype);
}

void load_flux_weights(FluxImpl& model, const FluxWeights& weights) {
  FluxWeightsReader reader(weights);
  const auto& table = reader.table();
  torch::NoGradGuard no_grad;
  // Layers waiting for 8-bit weights (built in a LinearStorageScope): each tensor is read in
  // float32 and quantized, one at a time, never the whole model at once.
  std::map<std::string, LinearImpl*> waiting;
  for (const auto& [name, layer] : flux_linear_layers(model))
    if (layer->quantized && !layer->quantized->codes.defined()) waiting[name + ".weight"] = layer;
  size_t count = 0;
  for (auto& kv : model.named_parameters()) {
    const FluxWeightEntry* e = table.by_bfl(kv.key());
    auto& param = kv.value();
    if (auto w = waiting.find(kv.key()); e && w != waiting.end()) {
      LinearImpl& layer = *w->second;
      const std::vector<int64_t> shape = {layer.out_features, layer.in_features};
      if (c10::IntArrayRef(shape) != c10::IntArrayRef(e->shape))
        user_error(
            "{}: the model's parameter '{}' {} does not fit the checkpoint ({}); build the "
            "model with the checkpoint's params",
            weights.path, kv.key(), shape_str(shape), table.describe());
      layer.set_quantized(QuantizedWeight::quantize(reader.read(*e, torch::kFloat, layer.device()),
                                                    layer.quantized->kind));
      ++count;
      continue;
    }
    if (!e || param.sizes() != c10::IntArrayRef(e->shape))
      user_error(
          "{}: the model's parameter '{}' {} does not fit the checkpoint ({}); build the "
          "model with the checkpoint's params",
          weights.path, kv.key(), shape_str(param.sizes()), table.describe());
    param.copy_(reader.read(*e, param.scalar_type(), param.device()));
    ++count;
  }
  if (count != table.entries().size())
    user_error("{}: the model has {} parameters, the checkpoint {} ({})", weights.path, count,
               table.entries().size(), table.describe());
}

NamedTensors read_flux_tensors_bfl(const FluxWeights& weights, torch::ScalarType dtype) {
  FluxWeightsReader reader(weights);
  NamedTensors out;
  for (const auto& e : reader.table().entries()) out.emplace_back(e.bfl, reader.read(e, dtype));
  return out;
}

}  // namespace fluxtrain
