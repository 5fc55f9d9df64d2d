// CLIP text encoder (Hugging Face CLIPTextModel; FLUX's CLIP-L, openai/clip-vit-large-patch14)
// with Hugging Face's parameter names (text_model.embeddings.token_embedding.weight,
// text_model.encoder.layers.N.self_attn.q_proj.weight, ...), its config.json and its loader.
//
// Forward: token + position embeddings; per layer x += attn(layer_norm1(x)) with a causal mask,
// x += fc2(act(fc1(layer_norm2(x)))); final_layer_norm. FLUX conditions on the pooled output
// (768 wide, `vec`), the final-normed hidden state at each row's end-of-text token; it passes no
// attention mask (padding only follows the end-of-text token, which the causal mask hides from
// it). Shapes: B batch, L tokens, H hidden.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace fluxtrain {

// CLIPTextConfig fields fluxtrain uses. Sizes default to CLIP-L; token ids default to
// transformers' CLIPTextConfig defaults (FLUX's text_encoder/config.json says eos_token_id 2, the
// value from before transformers PR #24773, which selects the legacy pooling rule below).
struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // "quick_gelu" (x * sigmoid(1.702 x)) or "gelu" (erf)
  double layer_norm_eps = 1e-5;
  int64_t bos_token_id = 49406;
  int64_t eos_token_id = 49407;
  int64_t pad_token_id = 1;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// From a config.json object: a CLIPTextConfig, or a full CLIPConfig (its "text_config" is used).
// Missing keys keep the defaults above; a wrong type or value is a one-line UserError naming
// `source` and the key.
ClipTextConfig clip_text_config_from_json(const nlohmann::json& j, const std::string& source);
// Reads and parses a config.json file, or a directory's config.json.
ClipTextConfig read_clip_text_config(const std::string& dir_or_file);
// The config as Hugging Face writes it (architectures, model_type "clip_text_model", ...).
nlohmann::json clip_text_config_to_json(const ClipTextConfig& cfg);

// Where each row is pooled: input_ids [B, L] int64 -> [B] int64. transformers' rule
// (CLIPTextTransformer.forward): eos_token_id == 2 (legacy configs, FLUX's) -> argmax of the ids
// (the end-of-text token has the largest id in CLIP's vocabulary; first maximum); otherwise the
// first position equal to eos_token_id (position 0 for a row without it).
torch::Tensor clip_pooling_positions(const torch::Tensor& input_ids, int64_t eos_token_id);

struct ClipTextOutput {
  torch::Tensor last_hidden_state;  // [B, L, H], after final_layer_norm
  torch::Tensor pooled;             // [B, H] (transformers' pooler_output)
};

// q_proj, k_proj, v_proj, out_proj (all with bias); causal softmax attention, softmax in float32.
struct ClipAttentionImpl : torch::nn::Module {
  ClipAttentionImpl(int64_t hidden_size, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, H] -> [B, L, H]
  int64_t num_heads;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(ClipAttention);

// fc1 -> activation -> fc2.
struct ClipMlpImpl : torch::nn::Module {
  ClipMlpImpl(int64_t hidden_size, int64_t intermediate_size, std::string hidden_act);
  torch::Tensor forward(const torch::Tensor& x);
  std::string hidden_act;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ClipMlp);

// Pre-LN residual block: self_attn (layer_norm1), mlp (layer_norm2).
struct ClipEncoderLayerImpl : torch::nn::Module {
  explicit ClipEncoderLayerImpl(const ClipTextConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  ClipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

struct ClipTextEmbeddingsImpl : torch::nn::Module {
  explicit ClipTextEmbeddingsImpl(const ClipTextConfig& cfg);
  torch::Tensor forward(const torch::Tensor& input_ids);  // [B, L] -> [B, L, H]
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

struct ClipEncoderImpl : torch::nn::Module {
  explicit ClipEncoderImpl(const ClipTextConfig& cfg);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(ClipEncoder);

// transformers' CLIPTextTransformer (registered as "text_model").
struct ClipTextTransformerImpl : torch::nn::Module {
  explicit ClipTextTransformerImpl(const ClipTextConfig& cfg);
  ClipTextOutput forward(const torch::Tensor& input_ids);
  ClipTextConfig config;
  ClipTextEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

// transformers' CLIPTextModel.
struct ClipTextModelImpl : torch::nn::Module {
  explicit ClipTextModelImpl(const ClipTextConfig& cfg);
  // input_ids: [B, L] integer ids, 1 <= L <= max_position_embeddings (else UserError); ids must be
  // in [0, vocab_size).
  ClipTextOutput forward(const torch::Tensor& input_ids);
  const ClipTextConfig& config() const { return text_model->config; }
  ClipTextTransformer text_model{nullptr};
};
TORCH_MODULE(ClipTextModel);

// Copies every parameter of `model` from a safetensors file or a *.safetensors.index.json
// (converted to the parameter's dtype and device). Keys the model does not have
// (text_model.embeddings.position_ids, text_projection.weight, a CLIPModel's vision tower) are
// ignored; a missing key or a wrong shape is a one-line UserError naming the file and the key.
void load_clip_text_weights(ClipTextModelImpl& model, const std::string& weights_path);

// A frozen (eval, no grad) CLIPTextModel from a Hugging Face `text_encoder/` folder (config.json
// with model.safetensors or model.safetensors.index.json), or from a .safetensors /
// .safetensors.index.json file with config.json beside it; weights in `dtype` on `device`.
ClipTextModel load_clip_text(const std::string& dir_or_file, torch::Device device = torch::kCPU,
                             torch::ScalarType dtype = torch::kFloat32);

}  // namespace fluxtrain
