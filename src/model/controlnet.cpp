// FLUX ControlNet (see controlnet.h).
#include "model/controlnet.h"

#include <filesystem>
#include <map>
#include <set>

#include "core/device.h"
#include "core/errors.h"
#include "io/files.h"
#include "model/weight_names.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

FluxParams controlnet_params(FluxParams p, int64_t num_double, int64_t num_single) {
  if (num_double < 0 || num_single < 0 || num_double + num_single == 0)
    user_error(
        "controlnet: needs at least one block (controlnet_double_blocks {}, "
        "controlnet_single_blocks {})",
        num_double, num_single);
  p.depth = num_double;
  p.depth_single_blocks = num_single;
  return p;
}

void zero_parameters(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.zero_();
}

bool is_controlnet_own(const std::string& name) {
  return name.rfind("controlnet_", 0) == 0;
}

// The table of the copied parts (the transformer's table without the final layer).
std::vector<const FluxWeightEntry*> copied_entries(const FluxWeightTable& table) {
  std::vector<const FluxWeightEntry*> out;
  for (const auto& e : table.entries())
    if (e.bfl.rfind("final_layer.", 0) != 0) out.push_back(&e);
  return out;
}

// Every tensor of a ControlNet of `p` under diffusers' names, with its shape.
std::vector<std::pair<std::string, std::vector<int64_t>>> controlnet_diffusers_shapes(
    const FluxParams& p) {
  const FluxWeightTable table(p);
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const FluxWeightEntry* e : copied_entries(table))
    for (size_t i = 0; i < e->diffusers.size(); ++i)
      out.push_back({e->diffusers[i], e->piece_shape(i)});
  const int64_t H = p.hidden_size;
  auto linear = [&](const std::string& name, int64_t in) {
    out.push_back({name + ".weight", {H, in}});
    out.push_back({name + ".bias", {H}});
  };
  for (int64_t i = 0; i < p.depth; ++i) linear(fmt::format("controlnet_blocks.{}", i), H);
  for (int64_t i = 0; i < p.depth_single_blocks; ++i)
    linear(fmt::format("controlnet_single_blocks.{}", i), H);
  linear("controlnet_x_embedder", p.in_channels);
  return out;
}

// The weights file of a controlnet/ directory: the shard index when there is one.

}  // namespace

FluxControlNetImpl::FluxControlNetImpl(const FluxParams& base, int64_t num_double,
                                       int64_t num_single)
    : FluxImpl(controlnet_params(base, num_double, num_single), /*with_final_layer=*/false) {
  const int64_t H = params.hidden_size;
  controlnet_blocks = register_module("controlnet_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_double; ++i) controlnet_blocks->push_back(Linear(H, H));
  controlnet_single_blocks = register_module("controlnet_single_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_single; ++i) controlnet_single_blocks->push_back(Linear(H, H));
  controlnet_x_embedder = register_module("controlnet_x_embedder", Linear(params.in_channels, H));
  zero_parameters(*controlnet_blocks);
  zero_parameters(*controlnet_single_blocks);
  zero_parameters(*controlnet_x_embedder);
}

void check_controlnet_fits(const FluxParams& c, const FluxParams& b, const std::string& origin) {
  auto field = [&](const char* name, int64_t a, int64_t want) {
    if (a != want) user_error("{}: {} {}, the base transformer has {}", origin, name, a, want);
  };
  field("hidden_size", c.hidden_size, b.hidden_size);
  field("num_heads", c.num_heads, b.num_heads);
  field("in_channels", c.in_channels, b.in_channels);
  field("context_in_dim (joint_attention_dim)", c.context_in_dim, b.context_in_dim);
  field("vec_in_dim (pooled_projection_dim)", c.vec_in_dim, b.vec_in_dim);
  field("guidance input (guidance_embeds)", c.guidance_embed, b.guidance_embed);
  if (c.depth > b.depth || c.depth_single_blocks > b.depth_single_blocks)
    user_error("{}: {} double + {} single blocks, more than the base transformer's {} + {}", origin,
               c.depth, c.depth_single_blocks, b.depth, b.depth_single_blocks);
}

void FluxControlNetImpl::copy_from(FluxImpl& base) {
  check_controlnet_fits(params, base.params, "controlnet");
  torch::NoGradGuard no_grad;
  auto from = base.named_parameters();
  std::map<std::string, LinearImpl*> quantized;  // an 8-bit base: copy the dequantized weights
  for (const auto& [name, layer] : flux_linear_layers(base))
    if (layer->is_quantized()) quantized[name + ".weight"] = layer;
  for (auto& item : named_parameters()) {
    if (is_controlnet_own(item.key())) continue;
    if (auto q = quantized.find(item.key()); q != quantized.end()) {
      item.value().copy_(q->second->dense_weight());
      continue;
    }
    const torch::Tensor* src = from.find(item.key());
    TORCH_CHECK(src, "controlnet: base transformer has no ", item.key());
    item.value().copy_(*src);
  }
}

ControlNetResiduals FluxControlNetImpl::forward(const FluxInputs& in, const torch::Tensor& control,
                                                double scale) {
  TORCH_CHECK(control.sizes() == in.img.sizes(),
              "controlnet: control latents must be shaped as the image tokens");
  FluxStreams s = embed(in);
  s.img = s.img + controlnet_x_embedder(control.to(s.img.scalar_type()));
  ControlNetResiduals out;
  run_blocks(std::move(s), [&](bool single, size_t i, const torch::Tensor& img) {
    auto& projections = single ? controlnet_single_blocks : controlnet_blocks;
    auto residual = projections->ptr<LinearImpl>(i)->forward(img);
    (single ? out.single_blocks : out.double_blocks).push_back(residual * scale);
    return img;
  });
  return out;
}

nlohmann::json controlnet_diffusers_config(const FluxParams& p) {
  return {{"_class_name", "FluxControlNetModel"},
          {"_diffusers_version", "0.32.0"},
          {"attention_head_dim", p.hidden_size / p.num_heads},
          {"axes_dims_rope", p.axes_dim},
          {"conditioning_embedding_channels", nullptr},
          {"guidance_embeds", p.guidance_embed},
          {"in_channels", p.in_channels},
          {"joint_attention_dim", p.context_in_dim},
          {"num_attention_heads", p.num_heads},
          {"num_layers", p.depth},
          {"num_mode", nullptr},
          {"num_single_layers", p.depth_single_blocks},
          {"patch_size", 1},
          {"pooled_projection_dim", p.vec_in_dim}};
}

NamedTensors controlnet_to_diffusers(FluxControlNetImpl& net, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const FluxWeightTable table(net.params);
  auto params = net.named_parameters();
  NamedTensors out;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    out.push_back({name, t.detach().to(torch::kCPU, dtype).contiguous()});
  };
  for (const FluxWeightEntry* e : copied_entries(table))
    for (auto& [name, piece] : flux_tensor_to_diffusers(*e, params[e->bfl])) add(name, piece);
  for (auto& item : params)
    if (is_controlnet_own(item.key())) add(item.key(), item.value());
  return out;
}

void save_controlnet(FluxControlNetImpl& net, const std::string& dir, torch::ScalarType dtype) {
  fs::create_directories(dir);
  save_safetensors((fs::path(dir) / kDiffusersWeights).string(),
                   controlnet_to_diffusers(net, dtype));
  write_file_atomically((fs::path(dir) / "config.json").string(),
                        controlnet_diffusers_config(net.params).dump(2) + "\n");
}

ControlNetFiles inspect_controlnet(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const nlohmann::json c = read_json_file(config_path);
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!c.contains(key) || c[key].is_null())
      user_error("{}: has no \"{}\" (expected a diffusers FluxControlNetModel config)", config_path,
                 key);
    return c[key];
  };
  ControlNetFiles f;
  f.dir = dir;
  FluxParams& p = f.params;
  try {  // (a field of the wrong JSON type is named by the catch below)
    if (c.value("_class_name", std::string()) != "FluxControlNetModel")
      user_error("{}: _class_name is {}, expected \"FluxControlNetModel\"", config_path,
                 c.contains("_class_name") ? c["_class_name"].dump() : "missing");
    if (c.contains("num_mode") && !c["num_mode"].is_null())
      user_error("{}: num_mode {}: union ControlNets are not supported", config_path,
                 c["num_mode"].dump());
    if (c.contains("conditioning_embedding_channels") &&
        !c["conditioning_embedding_channels"].is_null())
      user_error(
          "{}: conditioning_embedding_channels {}: XLabs-style ControlNets (pixel-space "
          "input_hint_block) are not supported",
          config_path, c["conditioning_embedding_channels"].dump());
    if (c.value("patch_size", 1) != 1)
      user_error("{}: patch_size {}, expected 1", config_path, c["patch_size"].dump());
    const int64_t head_dim = field("attention_head_dim").get<int64_t>();
    p.num_heads = field("num_attention_heads").get<int64_t>();
    p.hidden_size = head_dim * p.num_heads;
    p.in_channels = p.out_channels = field("in_channels").get<int64_t>();
    p.context_in_dim = field("joint_attention_dim").get<int64_t>();
    p.vec_in_dim = field("pooled_projection_dim").get<int64_t>();
    p.depth = field("num_layers").get<int64_t>();
    p.depth_single_blocks = field("num_single_layers").get<int64_t>();
    p.guidance_embed = c.value("guidance_embeds", false);
    if (c.contains("axes_dims_rope")) p.axes_dim = c["axes_dims_rope"].get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    user_error("{}: {}", config_path, json_reason(e));
  }
  try {
    p.validate();
  } catch (const UserError& e) {
    user_error("{}: {}", config_path, e.what());
  }
  // The tensors must be exactly the ones this config implies.
  f.weights = diffusers_weights_in(dir);
  if (f.weights.empty())
    user_error("{}: no {} or {} beside its config.json", dir, kDiffusersWeights, kDiffusersIndex);
  const ShardedSafetensors weights(f.weights);
  std::set<std::string> expected;
  for (const auto& [name, shape] : controlnet_diffusers_shapes(p)) {
    expected.insert(name);
    if (!weights.contains(name))
      user_error("{}: has no tensor '{}' (config.json: {} double + {} single blocks)",
                 weights.path(), name, p.depth, p.depth_single_blocks);
    if (weights.info(name).shape != shape)
      user_error("{}: tensor '{}' has shape {}, expected {}", weights.path(), name,
                 shape_str(weights.info(name).shape), shape_str(shape));
  }
  for (const auto& name : weights.names())
    if (!expected.count(name))
      user_error("{}: unexpected tensor '{}' (not part of a FluxControlNetModel of config.json)",
                 weights.path(), name);
  return f;
}

void load_controlnet(FluxControlNetImpl& net, const ControlNetFiles& files) {
  const ShardedSafetensors weights(files.weights);
  const FluxWeightTable table(net.params);
  auto params = net.named_parameters();
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, c10::IntArrayRef shape, const torch::Tensor& like) {
    if (!weights.contains(name)) user_error("{}: has no tensor '{}'", weights.path(), name);
    auto t = weights.load(name, like.scalar_type(), like.device());
    if (t.sizes() != shape)
      user_error("{}: tensor '{}' has shape {}, expected {}", weights.path(), name,
                 shape_str(t.sizes()), shape_str(shape));
    return t;
  };
  for (const FluxWeightEntry* e : copied_entries(table)) {
    torch::Tensor& p = params[e->bfl];
    std::vector<torch::Tensor> pieces;
    for (size_t i = 0; i < e->diffusers.size(); ++i)
      pieces.push_back(load(e->diffusers[i], e->piece_shape(i), p));
    p.copy_(flux_tensor_from_diffusers(*e, pieces));
  }
  for (auto& item : params)
    if (is_controlnet_own(item.key()))
      item.value().copy_(load(item.key(), item.value().sizes(), item.value()));
}

}  // namespace fluxtrain
