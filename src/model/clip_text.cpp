// CLIP text encoder: config.json, modules, pooling and the Hugging Face folder loader.
#include "model/clip_text.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/device.h"
#include "core/errors.h"
#include "io/files.h"
#include "io/safetensors.h"

namespace fluxtrain {

namespace fs = std::filesystem;
using json = nlohmann::json;

// --- config -------------------------------------------------------------------------------------

ClipTextConfig clip_text_config_from_json(const json& root, const std::string& source) {
  if (!root.is_object()) user_error("{}: expected a JSON object (CLIP text config)", source);
  const json& j = root.contains("text_config") ? root["text_config"] : root;
  if (!j.is_object()) user_error("{}: \"text_config\" must be a JSON object", source);
  ClipTextConfig cfg;
  auto get_int = [&](const char* key, int64_t& dst, int64_t min_value) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < min_value)
      user_error("{}: \"{}\" is {}, expected an integer >= {}", source, key, j[key].dump(),
                 min_value);
    dst = j[key].get<int64_t>();
  };
  get_int("vocab_size", cfg.vocab_size, 1);
  get_int("hidden_size", cfg.hidden_size, 1);
  get_int("intermediate_size", cfg.intermediate_size, 1);
  get_int("num_hidden_layers", cfg.num_hidden_layers, 0);
  get_int("num_attention_heads", cfg.num_attention_heads, 1);
  get_int("max_position_embeddings", cfg.max_position_embeddings, 1);
  get_int("bos_token_id", cfg.bos_token_id, 0);
  get_int("eos_token_id", cfg.eos_token_id, 0);
  get_int("pad_token_id", cfg.pad_token_id, 0);
  if (j.contains("hidden_act")) {
    if (!j["hidden_act"].is_string())
      user_error("{}: \"hidden_act\" is {}, expected a string", source, j["hidden_act"].dump());
    cfg.hidden_act = j["hidden_act"].get<std::string>();
  }
  if (cfg.hidden_act != "quick_gelu" && cfg.hidden_act != "gelu")
    user_error("{}: \"hidden_act\" is '{}', expected 'quick_gelu' or 'gelu'", source,
               cfg.hidden_act);
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number() || j["layer_norm_eps"].get<double>() <= 0)
      user_error("{}: \"layer_norm_eps\" is {}, expected a positive number", source,
                 j["layer_norm_eps"].dump());
    cfg.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  if (cfg.hidden_size % cfg.num_attention_heads != 0)
    user_error("{}: hidden_size {} is not a multiple of num_attention_heads {}", source,
               cfg.hidden_size, cfg.num_attention_heads);
  return cfg;
}

ClipTextConfig read_clip_text_config(const std::string& dir_or_file) {
  const std::string path = std::filesystem::is_directory(dir_or_file)
                               ? (std::filesystem::path(dir_or_file) / "config.json").string()
                               : dir_or_file;
  return clip_text_config_from_json(read_json_file(path), path);
}

json clip_text_config_to_json(const ClipTextConfig& cfg) {
  return json{{"architectures", json::array({"CLIPTextModel"})},
              {"attention_dropout", 0.0},
              {"bos_token_id", cfg.bos_token_id},
              {"dropout", 0.0},
              {"eos_token_id", cfg.eos_token_id},
              {"hidden_act", cfg.hidden_act},
              {"hidden_size", cfg.hidden_size},
              {"initializer_factor", 1.0},
              {"initializer_range", 0.02},
              {"intermediate_size", cfg.intermediate_size},
              {"layer_norm_eps", cfg.layer_norm_eps},
              {"max_position_embeddings", cfg.max_position_embeddings},
              {"model_type", "clip_text_model"},
              {"num_attention_heads", cfg.num_attention_heads},
              {"num_hidden_layers", cfg.num_hidden_layers},
              {"pad_token_id", cfg.pad_token_id},
              {"projection_dim", cfg.hidden_size},
              {"torch_dtype", "float32"},
              {"vocab_size", cfg.vocab_size}};
}

// --- pooling ------------------------------------------------------------------------------------

torch::Tensor clip_pooling_positions(const torch::Tensor& input_ids, int64_t eos_token_id) {
  TORCH_CHECK(input_ids.dim() == 2, "clip_pooling_positions: input_ids must be [B, L]");
  // argmax returns the first maximal index (documented for torch.argmax).
  if (eos_token_id == 2) return input_ids.to(torch::kInt64).argmax(-1);
  return input_ids.eq(eos_token_id).to(torch::kInt32).argmax(-1);
}

// --- modules ------------------------------------------------------------------------------------

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden_size, int64_t num_heads)
    : num_heads(num_heads) {
  q_proj = register_module("q_proj", torch::nn::Linear(hidden_size, hidden_size));
  k_proj = register_module("k_proj", torch::nn::Linear(hidden_size, hidden_size));
  v_proj = register_module("v_proj", torch::nn::Linear(hidden_size, hidden_size));
  out_proj = register_module("out_proj", torch::nn::Linear(hidden_size, hidden_size));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), D = H / num_heads;
  auto heads = [&](const torch::Tensor& t) {
    return t.view({B, L, num_heads, D}).transpose(1, 2);  // [B, h, L, D]
  };
  const auto q = heads(q_proj->forward(x)), k = heads(k_proj->forward(x)),
             v = heads(v_proj->forward(x));
  auto scores = torch::matmul(q, k.transpose(-2, -1)).to(torch::kFloat32) /
                std::sqrt(static_cast<double>(D));  // [B, h, L, L]
  const auto future = torch::ones({L, L}, torch::dtype(torch::kBool).device(x.device())).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  const auto probs = torch::softmax(scores, -1).to(v.scalar_type());
  const auto out = torch::matmul(probs, v).transpose(1, 2).reshape({B, L, H});  // [B, L, H]
  return out_proj->forward(out);
}

ClipMlpImpl::ClipMlpImpl(int64_t hidden_size, int64_t intermediate_size, std::string act)
    : hidden_act(std::move(act)) {
  fc1 = register_module("fc1", torch::nn::Linear(hidden_size, intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(intermediate_size, hidden_size));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  auto h = fc1->forward(x);
  if (hidden_act == "quick_gelu") {
    h = h * torch::sigmoid(1.702 * h);
  } else if (hidden_act == "gelu") {
    h = torch::gelu(h);  // exact (erf)
  } else {
    user_error("CLIP text encoder: unsupported hidden_act '{}'", hidden_act);
  }
  return fc2->forward(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& cfg) {
  auto ln = [&] {
    return torch::nn::LayerNorm(
        torch::nn::LayerNormOptions({cfg.hidden_size}).eps(cfg.layer_norm_eps));
  };
  self_attn = register_module("self_attn", ClipAttention(cfg.hidden_size, cfg.num_attention_heads));
  layer_norm1 = register_module("layer_norm1", ln());
  mlp = register_module("mlp", ClipMlp(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act));
  layer_norm2 = register_module("layer_norm2", ln());
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn->forward(layer_norm1->forward(x));
  return h + mlp->forward(layer_norm2->forward(h));
}

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextConfig& cfg) {
  token_embedding =
      register_module("token_embedding", torch::nn::Embedding(cfg.vocab_size, cfg.hidden_size));
  position_embedding = register_module(
      "position_embedding", torch::nn::Embedding(cfg.max_position_embeddings, cfg.hidden_size));
}

torch::Tensor ClipTextEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const int64_t L = input_ids.size(1);
  const auto positions = torch::arange(L, torch::dtype(torch::kInt64).device(input_ids.device()));
  return token_embedding->forward(input_ids) + position_embedding->forward(positions).unsqueeze(0);
}

ClipEncoderImpl::ClipEncoderImpl(const ClipTextConfig& cfg) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(ClipEncoderLayer(cfg));
}

torch::Tensor ClipEncoderImpl::forward(torch::Tensor x) {
  for (const auto& layer : *layers) x = layer->as<ClipEncoderLayerImpl>()->forward(x);
  return x;
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextConfig& cfg) : config(cfg) {
  embeddings = register_module("embeddings", ClipTextEmbeddings(cfg));
  encoder = register_module("encoder", ClipEncoder(cfg));
  final_layer_norm = register_module(
      "final_layer_norm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.hidden_size}).eps(cfg.layer_norm_eps)));
}

ClipTextOutput ClipTextTransformerImpl::forward(const torch::Tensor& input_ids) {
  if (input_ids.dim() != 2 || input_ids.size(1) < 1 ||
      input_ids.size(1) > config.max_position_embeddings)
    user_error("CLIP text encoder: input ids of shape {}, expected [B, L] with 1 <= L <= {}",
               shape_str(input_ids.sizes()), config.max_position_embeddings);
  const auto ids = input_ids.to(torch::kInt64);
  auto x = encoder->forward(embeddings->forward(ids));  // [B, L, H]
  x = final_layer_norm->forward(x);
  const auto rows = torch::arange(ids.size(0), torch::dtype(torch::kInt64).device(x.device()));
  const auto cols = clip_pooling_positions(ids, config.eos_token_id).to(x.device());
  return {x, x.index({rows, cols})};
}

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& cfg) {
  text_model = register_module("text_model", ClipTextTransformer(cfg));
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& input_ids) {
  return text_model->forward(input_ids);
}

// --- loading ------------------------------------------------------------------------------------

void load_clip_text_weights(ClipTextModelImpl& model, const std::string& weights_path) {
  const ShardedSafetensors file(weights_path);
  torch::NoGradGuard no_grad;
  for (auto& kv : model.named_parameters()) {
    const std::string& name = kv.key();
    torch::Tensor& dst = kv.value();
    if (!file.contains(name))
      user_error("{}: tensor '{}' is missing (CLIP text encoder)", weights_path, name);
    const auto& info = file.info(name);
    if (c10::IntArrayRef(info.shape) != dst.sizes())
      user_error("{}: tensor '{}' has shape {}, the CLIP text encoder config expects {}",
                 file.shard_for(name).path(), name, shape_str(info.shape), shape_str(dst.sizes()));
    dst.copy_(file.load(name, dst.scalar_type(), dst.device()));
  }
}

ClipTextModel load_clip_text(const std::string& dir_or_file, torch::Device device,
                             torch::ScalarType dtype) {
  const fs::path p(dir_or_file);
  std::string config_path, weights_path;
  if (fs::is_directory(p)) {
    config_path = (p / "config.json").string();
    if (fs::exists(p / "model.safetensors")) {
      weights_path = (p / "model.safetensors").string();
    } else if (fs::exists(p / "model.safetensors.index.json")) {
      weights_path = (p / "model.safetensors.index.json").string();
    } else {
      user_error("{}: no model.safetensors or model.safetensors.index.json (CLIP text encoder)",
                 dir_or_file);
    }
  } else if (fs::exists(p)) {
    weights_path = p.string();
    config_path = (p.parent_path() / "config.json").string();
  } else {
    user_error("{}: no such file or directory (CLIP text encoder)", dir_or_file);
  }
  if (!fs::exists(config_path))
    user_error("{}: missing (the CLIP text encoder's config.json)", config_path);
  const ClipTextConfig cfg = read_clip_text_config(config_path);
  ClipTextModel model(cfg);
  model->to(device, dtype);
  load_clip_text_weights(*model, weights_path);
  model->eval();
  for (auto& param : model->parameters()) param.set_requires_grad(false);
  return model;
}

}  // namespace fluxtrain
