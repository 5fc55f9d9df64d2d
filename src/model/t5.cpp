#include "model/t5.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/errors.h"
#include "core/strings.h"
#include "io/files.h"
#include "io/safetensors.h"

namespace fluxtrain {
namespace fs = std::filesystem;

// ---- config ----

void T5Config::set_feed_forward_proj(const std::string& value) {
  // As HF's T5Config: "act" or "gated-act"; "gated-gelu" means gelu_new for backward compatibility.
  const auto dash = value.find('-');
  if (dash == std::string::npos) {
    dense_act_fn = value;
    is_gated_act = false;
  } else if (value.substr(0, dash) == "gated" && value.find('-', dash + 1) == std::string::npos) {
    dense_act_fn = value.substr(dash + 1);
    is_gated_act = true;
  } else {
    user_error(
        "feed_forward_proj '{}' is not valid (expected 'act' or 'gated-act', e.g. "
        "'gated-gelu' or 'relu')",
        value);
  }
  if (value == "gated-gelu") dense_act_fn = "gelu_new";
  feed_forward_proj = value;
}

void T5Config::validate() const {
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", vocab_size}, {"d_model", d_model},    {"d_kv", d_kv}, {"d_ff", d_ff},
      {"num_layers", num_layers}, {"num_heads", num_heads}};
  for (const auto& [name, v] : positive)
    if (v <= 0) user_error("T5 config: {} must be positive, got {}", name, v);
  if (relative_attention_num_buckets < 4)
    user_error("T5 config: relative_attention_num_buckets must be at least 4, got {}",
               relative_attention_num_buckets);
  if (relative_attention_max_distance <= relative_attention_num_buckets / 4)
    user_error("T5 config: relative_attention_max_distance {} must exceed num_buckets / 4 = {}",
               relative_attention_max_distance, relative_attention_num_buckets / 4);
  if (!(layer_norm_epsilon > 0) || !std::isfinite(layer_norm_epsilon))
    user_error("T5 config: layer_norm_epsilon must be positive, got {}", layer_norm_epsilon);
  if (dense_act_fn != "relu" && dense_act_fn != "gelu" && dense_act_fn != "gelu_new" &&
      dense_act_fn != "silu" && dense_act_fn != "swish")
    user_error("T5 config: activation '{}' is not supported (relu, gelu, gelu_new, silu)",
               dense_act_fn);
}

nlohmann::json T5Config::to_json() const {
  return {{"architectures", {"T5EncoderModel"}},
          {"model_type", "t5"},
          {"vocab_size", vocab_size},
          {"d_model", d_model},
          {"d_kv", d_kv},
          {"d_ff", d_ff},
          {"num_layers", num_layers},
          {"num_decoder_layers", num_layers},
          {"num_heads", num_heads},
          {"relative_attention_num_buckets", relative_attention_num_buckets},
          {"relative_attention_max_distance", relative_attention_max_distance},
          {"layer_norm_epsilon", layer_norm_epsilon},
          {"feed_forward_proj", feed_forward_proj},
          {"dense_act_fn", dense_act_fn},
          {"is_gated_act", is_gated_act},
          {"dropout_rate", 0.1},
          {"initializer_factor", 1.0},
          {"is_encoder_decoder", true},
          {"tie_word_embeddings", false},
          {"pad_token_id", 0},
          {"eos_token_id", 1},
          {"decoder_start_token_id", 0},
          {"use_cache", true}};
}

T5Config T5Config::from_json(const nlohmann::json& j, const std::string& name) {
  if (!j.is_object()) user_error("{}: expected a JSON object (a T5 config.json)", name);
  T5Config c;
  const auto get_int = [&](const char* key, int64_t& dst, bool required) {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) user_error("{}: '{}' is missing (a T5 config.json)", name, key);
      return;
    }
    if (!j[key].is_number_integer())
      user_error("{}: '{}' must be an integer, got {}", name, key, j[key].dump());
    dst = j[key].get<int64_t>();
  };
  get_int("d_model", c.d_model, true);
  get_int("num_heads", c.num_heads, true);
  get_int("d_ff", c.d_ff, true);
  get_int("num_layers", c.num_layers, true);
  c.d_kv = 64;  // HF's default
  get_int("d_kv", c.d_kv, false);
  get_int("vocab_size", c.vocab_size, false);
  get_int("relative_attention_num_buckets", c.relative_attention_num_buckets, false);
  get_int("relative_attention_max_distance", c.relative_attention_max_distance, false);
  if (j.contains("layer_norm_epsilon")) {
    if (!j["layer_norm_epsilon"].is_number())
      user_error("{}: 'layer_norm_epsilon' must be a number, got {}", name,
                 j["layer_norm_epsilon"].dump());
    c.layer_norm_epsilon = j["layer_norm_epsilon"].get<double>();
  }
  std::string proj = "relu";  // HF's default when the field is absent (T5 v1.0)
  if (j.contains("feed_forward_proj")) {
    if (!j["feed_forward_proj"].is_string())
      user_error("{}: 'feed_forward_proj' must be a string, got {}", name,
                 j["feed_forward_proj"].dump());
    proj = j["feed_forward_proj"].get<std::string>();
  }
  try {
    c.set_feed_forward_proj(proj);
    // Stated fields override the derived ones (HF sets extra config.json keys last).
    if (j.contains("dense_act_fn") && j["dense_act_fn"].is_string())
      c.dense_act_fn = j["dense_act_fn"].get<std::string>();
    if (j.contains("is_gated_act") && j["is_gated_act"].is_boolean())
      c.is_gated_act = j["is_gated_act"].get<bool>();
    c.validate();
  } catch (const UserError& e) {
    user_error("{}: {}", name, e.what());
  }
  return c;
}

T5Config read_t5_config(const std::string& dir_or_file) {
  const std::string path = std::filesystem::is_directory(dir_or_file)
                               ? (std::filesystem::path(dir_or_file) / "config.json").string()
                               : dir_or_file;
  return T5Config::from_json(read_json_file(path), path);
}

// ---- layers ----

torch::Tensor t5_relative_position_bucket(const torch::Tensor& relative_position,
                                          bool bidirectional, int64_t num_buckets,
                                          int64_t max_distance) {
  // Op for op as HF's T5Attention._relative_position_bucket (float32 log, truncation to int64),
  // so buckets at the exact boundaries (distance 16, 32, 64 for 32 buckets) agree with it.
  auto rp = relative_position.to(torch::kLong);
  auto buckets = torch::zeros_like(rp);
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (rp > 0).to(torch::kLong) * num_buckets;
    rp = rp.abs();
  } else {
    rp = -torch::min(rp, torch::zeros_like(rp));
  }
  const int64_t max_exact = num_buckets / 2;
  const auto is_small = rp < max_exact;
  auto large = (torch::log(rp.to(torch::kFloat) / max_exact) /
                std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                (num_buckets - max_exact))
                   .to(torch::kLong) +
               max_exact;
  large = torch::min(large, torch::full_like(large, num_buckets - 1));
  return buckets + torch::where(is_small, rp, large);
}

T5LinearImpl::T5LinearImpl(int64_t in, int64_t out, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({out, in}, options));
}

torch::Tensor T5LinearImpl::forward(const torch::Tensor& x) {
  return torch::linear(x, weight);
}

T5LayerNormImpl::T5LayerNormImpl(int64_t dim, double eps, const torch::TensorOptions& options)
    : eps(eps) {
  weight = register_parameter("weight", torch::empty({dim}, options));
}

torch::Tensor T5LayerNormImpl::forward(const torch::Tensor& x) {
  const auto variance = x.to(torch::kFloat).pow(2).mean(-1, /*keepdim=*/true);
  auto h = x * torch::rsqrt(variance + eps);  // float32
  if (weight.scalar_type() == torch::kHalf || weight.scalar_type() == torch::kBFloat16)
    h = h.to(weight.scalar_type());
  return weight * h;
}

T5EmbeddingImpl::T5EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({num, dim}, options));
}

torch::Tensor T5EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

T5AttentionImpl::T5AttentionImpl(const T5Config& cfg, bool has_relative_attention_bias,
                                 const torch::TensorOptions& options)
    : cfg(cfg) {
  const int64_t inner = cfg.num_heads * cfg.d_kv;
  q = register_module("q", T5Linear(cfg.d_model, inner, options));
  k = register_module("k", T5Linear(cfg.d_model, inner, options));
  v = register_module("v", T5Linear(cfg.d_model, inner, options));
  o = register_module("o", T5Linear(inner, cfg.d_model, options));
  if (has_relative_attention_bias)
    relative_attention_bias =
        register_module("relative_attention_bias",
                        T5Embedding(cfg.relative_attention_num_buckets, cfg.num_heads, options));
}

torch::Tensor T5AttentionImpl::compute_bias(int64_t query_length, int64_t key_length) {
  TORCH_CHECK(relative_attention_bias, "T5Attention: this layer has no relative_attention_bias");
  const auto opts =
      torch::TensorOptions().dtype(torch::kLong).device(relative_attention_bias->weight.device());
  const auto context = torch::arange(query_length, opts).unsqueeze(1);  // [Tq, 1]
  const auto memory = torch::arange(key_length, opts).unsqueeze(0);     // [1, Tk]
  const auto buckets = t5_relative_position_bucket(
      memory - context, /*bidirectional=*/true, cfg.relative_attention_num_buckets,
      cfg.relative_attention_max_distance);                                 // [Tq, Tk]
  return relative_attention_bias(buckets).permute({2, 0, 1}).unsqueeze(0);  // [1, h, Tq, Tk]
}

torch::Tensor T5AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& position_bias) {
  const int64_t B = x.size(0), h = cfg.num_heads, d = cfg.d_kv;
  const auto heads = [&](const torch::Tensor& t) {
    return t.view({B, -1, h, d}).transpose(1, 2);  // [B, h, T, d]
  };
  const auto qs = heads(q(x)), ks = heads(k(x)), vs = heads(v(x));
  auto scores = torch::matmul(qs, ks.transpose(3, 2));  // [B, h, T, T], no 1/sqrt(d)
  scores += position_bias;
  const auto weights = torch::softmax(scores.to(torch::kFloat), -1).to(scores.scalar_type());
  const auto out = torch::matmul(weights, vs).transpose(1, 2).contiguous().view({B, -1, h * d});
  return o(out);  // [B, T, d_model]
}

namespace {
// HF clamps fp16 hidden states after each sub-layer so that inf never propagates.
torch::Tensor clamp_fp16(const torch::Tensor& x) {
  if (x.scalar_type() != torch::kHalf) return x;
  const double max = 65504.0;
  const double bound = torch::isinf(x).any().item<bool>() ? max - 1000.0 : max;
  return torch::clamp(x, -bound, bound);
}

torch::Tensor activation(const std::string& act, const torch::Tensor& x) {
  if (act == "relu") return torch::relu(x);
  if (act == "gelu") return torch::gelu(x);
  if (act == "silu" || act == "swish") return torch::silu(x);
  // gelu_new, written out as HF's NewGELUActivation.
  return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3.0))));
}
}  // namespace

T5LayerSelfAttentionImpl::T5LayerSelfAttentionImpl(const T5Config& cfg,
                                                   bool has_relative_attention_bias,
                                                   const torch::TensorOptions& options) {
  SelfAttention =
      register_module("SelfAttention", T5Attention(cfg, has_relative_attention_bias, options));
  layer_norm =
      register_module("layer_norm", T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon, options));
}

torch::Tensor T5LayerSelfAttentionImpl::forward(const torch::Tensor& x,
                                                const torch::Tensor& position_bias) {
  return x + SelfAttention(layer_norm(x), position_bias);
}

T5DenseReluDenseImpl::T5DenseReluDenseImpl(const T5Config& cfg, const torch::TensorOptions& options)
    : act(cfg.dense_act_fn) {
  if (cfg.is_gated_act) {
    wi_0 = register_module("wi_0", T5Linear(cfg.d_model, cfg.d_ff, options));
    wi_1 = register_module("wi_1", T5Linear(cfg.d_model, cfg.d_ff, options));
  } else {
    wi = register_module("wi", T5Linear(cfg.d_model, cfg.d_ff, options));
  }
  wo = register_module("wo", T5Linear(cfg.d_ff, cfg.d_model, options));
}

torch::Tensor T5DenseReluDenseImpl::forward(const torch::Tensor& x) {
  auto h = wi ? activation(act, wi(x)) : activation(act, wi_0(x)) * wi_1(x);  // [B, T, d_ff]
  if (h.scalar_type() != wo->weight.scalar_type()) h = h.to(wo->weight.scalar_type());
  return wo(h);
}

T5LayerFFImpl::T5LayerFFImpl(const T5Config& cfg, const torch::TensorOptions& options) {
  DenseReluDense = register_module("DenseReluDense", T5DenseReluDense(cfg, options));
  layer_norm =
      register_module("layer_norm", T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon, options));
}

torch::Tensor T5LayerFFImpl::forward(const torch::Tensor& x) {
  return x + DenseReluDense(layer_norm(x));
}

T5BlockImpl::T5BlockImpl(const T5Config& cfg, bool has_relative_attention_bias,
                         const torch::TensorOptions& options) {
  self_attention = T5LayerSelfAttention(cfg, has_relative_attention_bias, options);
  feed_forward = T5LayerFF(cfg, options);
  layer = register_module("layer", torch::nn::ModuleList(self_attention, feed_forward));
}

torch::Tensor T5BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& position_bias) {
  auto h = clamp_fp16(self_attention(x, position_bias));
  return clamp_fp16(feed_forward(h));
}

T5StackImpl::T5StackImpl(const T5Config& cfg, const torch::TensorOptions& options) {
  block = register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_layers; ++i) block->push_back(T5Block(cfg, i == 0, options));
  final_layer_norm = register_module("final_layer_norm",
                                     T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon, options));
}

T5EncoderImpl::T5EncoderImpl(const T5Config& config, const torch::TensorOptions& options)
    : cfg(config) {
  cfg.validate();
  shared = register_module("shared", T5Embedding(cfg.vocab_size, cfg.d_model, options));
  encoder = register_module("encoder", T5Stack(cfg, options));
}

torch::Tensor T5EncoderImpl::forward(const torch::Tensor& input_ids,
                                     const std::optional<torch::Tensor>& attention_mask) {
  TORCH_CHECK(input_ids.dim() == 2, "T5Encoder: input_ids must be [B, T], got ", input_ids.sizes());
  const int64_t T = input_ids.size(1);
  auto h = shared(input_ids.to(shared->weight.device()));  // [B, T, d_model]
  auto first = encoder->block[0]->as<T5BlockImpl>();
  auto position_bias = first->self_attention->SelfAttention->compute_bias(T, T);  // [1, h, T, T]
  if (attention_mask) {
    TORCH_CHECK(attention_mask->sizes() == input_ids.sizes(),
                "T5Encoder: attention_mask must be [B, T] like input_ids, got ",
                attention_mask->sizes());
    const auto dtype = shared->weight.scalar_type();
    const auto m = attention_mask->to(h.device()).to(dtype).unsqueeze(1).unsqueeze(1);
    const double lowest = dtype == torch::kBFloat16 ? -3.3895313892515355e38
                          : dtype == torch::kHalf   ? -65504.0
                          : dtype == torch::kDouble ? std::numeric_limits<double>::lowest()
                                                    : std::numeric_limits<float>::lowest();
    position_bias = position_bias + (1.0 - m) * lowest;  // [B, h, T, T]
  }
  for (const auto& blk : *encoder->block) h = blk->as<T5BlockImpl>()->forward(h, position_bias);
  return encoder->final_layer_norm(h);
}

// ---- loading ----

namespace {

struct T5Files {
  std::string weights;  // model.safetensors, an index, or a single file
  std::string config;   // "" -> T5 v1.1 XXL defaults
};

T5Files locate_t5(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    user_error(
        "{}: no such file or directory (expected a T5 encoder: a text_encoder_2/ folder with "
        "config.json and model.safetensors)",
        path);
  if (!fs::is_directory(path, ec)) {
    const fs::path beside = fs::path(path).parent_path() / "config.json";
    return {path, is_file(beside) ? beside.string() : ""};
  }
  const auto weights_in = [](const fs::path& dir) -> std::string {
    for (const char* name : {"model.safetensors.index.json", "model.safetensors"})
      if (is_file(dir / name)) return (dir / name).string();
    return "";
  };
  fs::path dir(path);
  if (weights_in(dir).empty() && fs::is_directory(dir / "text_encoder_2", ec))
    dir /= "text_encoder_2";
  const std::string weights = weights_in(dir);
  if (weights.empty())
    user_error(
        "{}: no model.safetensors or model.safetensors.index.json in this directory "
        "(expected a Hugging Face text_encoder_2/ folder)",
        path);
  if (!is_file(dir / "config.json"))
    user_error("{}: no config.json beside {} (expected a Hugging Face T5 config)", dir.string(),
               fs::path(weights).filename().string());
  return {weights, (dir / "config.json").string()};
}

}  // namespace

T5Encoder load_t5_encoder(const std::string& path, torch::Device device, torch::ScalarType dtype) {
  const T5Files files = locate_t5(path);
  const T5Config cfg = files.config.empty() ? T5Config{} : read_t5_config(files.config);
  const ShardedSafetensors st(files.weights);
  T5Encoder enc(cfg, torch::TensorOptions().dtype(dtype).device(device));
  const auto describe = [&] {
    return fmt::format("d_model {}, {} layers, {} heads of {}, d_ff {}, vocab {}{}", cfg.d_model,
                       cfg.num_layers, cfg.num_heads, cfg.d_kv, cfg.d_ff, cfg.vocab_size,
                       files.config.empty() ? " (T5 v1.1 XXL defaults: no config.json)" : "");
  };

  // Every name and shape first, so a bad file fails before anything is read.
  std::set<std::string> used;
  std::vector<std::pair<std::string, torch::Tensor>> targets;  // stored key, parameter
  for (auto& p : enc->named_parameters()) {
    std::string key = p.key();
    if (key == "shared.weight" && !st.contains(key) && st.contains("encoder.embed_tokens.weight"))
      key = "encoder.embed_tokens.weight";
    if (!st.contains(key))
      user_error("{}: tensor '{}' is missing (a T5 encoder with {})", st.path(), key, describe());
    const auto& stored = st.info(key).shape;
    if (c10::IntArrayRef(stored) != p.value().sizes())
      user_error("{}: tensor '{}' has shape {}, the T5 encoder expects {} ({})",
                 st.shard_for(key).path(), key, shape_str(stored), shape_str(p.value().sizes()),
                 describe());
    used.insert(key);
    targets.emplace_back(key, p.value());
  }
  for (const auto& name : st.names()) {
    if (used.count(name) || starts_with(name, "decoder.") || starts_with(name, "lm_head."))
      continue;
    if (name == "encoder.embed_tokens.weight") {  // tied copy of shared.weight
      if (c10::IntArrayRef(st.info(name).shape) != enc->shared->weight.sizes())
        user_error("{}: tensor '{}' has shape {}, the T5 encoder expects {} ({})",
                   st.shard_for(name).path(), name, shape_str(st.info(name).shape),
                   shape_str(enc->shared->weight.sizes()), describe());
      continue;
    }
    user_error("{}: tensor '{}' is not part of the T5 encoder ({})", st.path(), name, describe());
  }

  {
    torch::NoGradGuard no_grad;
    for (auto& [key, param] : targets) param.copy_(st.load(key));  // one tensor at a time
  }
  for (auto& p : enc->parameters()) p.set_requires_grad(false);
  enc->eval();
  return enc;
}

}  // namespace fluxtrain
