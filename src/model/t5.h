// The T5 encoder (Hugging Face T5EncoderModel; FLUX's text_encoder_2 is T5 v1.1 XXL) with
// Hugging Face's parameter names, and its loader for config.json + model.safetensors or a sharded
// model.safetensors.index.json.
//
// Math, as transformers' modeling_t5.py:
//  - h = shared[input_ids] (no scaling); per block: h += SelfAttention(layer_norm(h)),
//    h += DenseReluDense(layer_norm(h)); out = final_layer_norm(h) (dropout is a no-op: frozen).
//  - T5 layer norm: RMS only, no mean and no bias: x * rsqrt(mean(x^2) + eps) computed in float32,
//    cast back to the weight's dtype when that is fp16/bf16, times weight.
//  - Attention: q, k, v, o without biases, n_heads heads of d_kv, scores q·kᵀ WITHOUT 1/sqrt(d)
//    scaling, plus the relative position bias, softmax in float32, cast back.
//  - Relative position bias: only block 0 has relative_attention_bias [num_buckets, n_heads];
//    every block adds the same bias [1, n_heads, T, T] computed from it (bidirectional buckets,
//    see t5_relative_position_bucket).
//  - Feed-forward: "gated-gelu" (v1.1) = wo(gelu_new(wi_0 x) * wi_1 x), gelu_new being the tanh
//    approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))); "relu" (v1.0) = wo(relu(wi x));
//    other "[gated-]act" forms with act relu, gelu (erf), gelu_new, silu likewise.
//  - fp16 only: hidden states clamped to the finite range after each sub-layer (as HF).
//  - Attention mask: FLUX (HFEmbedder) calls the encoder with attention_mask=None, so by default
//    nothing is masked: padding tokens attend and are attended to. An optional [B, T] mask (1 keep,
//    0 masked) adds (1 - mask) * lowest(dtype) to the scores of masked keys, as HF does.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace fluxtrain {

struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 4096;
  int64_t d_kv = 64;
  int64_t d_ff = 10240;
  int64_t num_layers = 24;
  int64_t num_heads = 64;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  std::string feed_forward_proj = "gated-gelu";
  // Derived from feed_forward_proj as HF's T5Config does ("gated-gelu" -> gelu_new, gated), unless
  // config.json states them.
  std::string dense_act_fn = "gelu_new";
  bool is_gated_act = true;

  // Sets feed_forward_proj and the two derived fields; UserError for a malformed value.
  void set_feed_forward_proj(const std::string& value);
  // UserError naming the field that is not positive or not supported.
  void validate() const;
  // The HF config.json fields (what a T5EncoderModel config.json holds).
  nlohmann::json to_json() const;
  // From a config.json object; missing fields keep their T5 v1.1 XXL defaults, except that
  // d_model, num_heads, d_kv, d_ff and num_layers are required. `name` starts error messages.
  static T5Config from_json(const nlohmann::json& j, const std::string& name);
};

// Reads and validates a Hugging Face T5 config.json, or a directory's (one-line UserError naming
// the file).
T5Config read_t5_config(const std::string& dir_or_file);

// T5's relative position buckets (HF T5Attention._relative_position_bucket).
// relative_position = key position - query position (int64, any shape). Bidirectional: half the
// buckets for each sign (positive distances add num_buckets/2); within a half (n buckets),
// distances below n/2 are their own bucket and larger ones are
// n/2 + trunc(log(d / (n/2)) / log(max_distance / (n/2)) * (n - n/2)), capped at n - 1, computed
// in float32 as HF does. Unidirectional (decoders): only non-positive distances, by -d.
torch::Tensor t5_relative_position_bucket(const torch::Tensor& relative_position,
                                          bool bidirectional, int64_t num_buckets,
                                          int64_t max_distance);

// A bias-free linear layer (parameter "weight" [out, in]).
struct T5LinearImpl : torch::nn::Module {
  T5LinearImpl(int64_t in, int64_t out, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
};
TORCH_MODULE(T5Linear);

// RMS norm without mean or bias (parameter "weight").
struct T5LayerNormImpl : torch::nn::Module {
  T5LayerNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(T5LayerNorm);

// A lookup table (parameter "weight" [num, dim]): the token embedding "shared" and the
// relative attention bias.
struct T5EmbeddingImpl : torch::nn::Module {
  T5EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(T5Embedding);

// q, k, v, o and (block 0 only) relative_attention_bias.
struct T5AttentionImpl : torch::nn::Module {
  T5AttentionImpl(const T5Config& cfg, bool has_relative_attention_bias,
                  const torch::TensorOptions& options);
  // The bias every layer adds: [1, n_heads, T, T] in the bias table's dtype.
  torch::Tensor compute_bias(int64_t query_length, int64_t key_length);
  // x: [B, T, d_model], position_bias: [1 or B, n_heads, T, T] -> [B, T, d_model].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& position_bias);
  T5Config cfg;
  T5Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  T5Embedding relative_attention_bias{nullptr};
};
TORCH_MODULE(T5Attention);

// layer.0 of a block: SelfAttention and layer_norm, with the residual.
struct T5LayerSelfAttentionImpl : torch::nn::Module {
  T5LayerSelfAttentionImpl(const T5Config& cfg, bool has_relative_attention_bias,
                           const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& position_bias);
  T5Attention SelfAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerSelfAttention);

// The feed-forward weights: wi_0, wi_1, wo (gated) or wi, wo.
struct T5DenseReluDenseImpl : torch::nn::Module {
  T5DenseReluDenseImpl(const T5Config& cfg, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  std::string act;
  T5Linear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};
};
TORCH_MODULE(T5DenseReluDense);

// layer.1 of a block: DenseReluDense and layer_norm, with the residual.
struct T5LayerFFImpl : torch::nn::Module {
  T5LayerFFImpl(const T5Config& cfg, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  T5DenseReluDense DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerFF);

struct T5BlockImpl : torch::nn::Module {
  T5BlockImpl(const T5Config& cfg, bool has_relative_attention_bias,
              const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& position_bias);
  torch::nn::ModuleList layer{nullptr};  // [T5LayerSelfAttention, T5LayerFF]
  T5LayerSelfAttention self_attention{nullptr};
  T5LayerFF feed_forward{nullptr};
};
TORCH_MODULE(T5Block);

// "encoder.": block.N and final_layer_norm (embed_tokens is "shared", tied, not registered here).
struct T5StackImpl : torch::nn::Module {
  T5StackImpl(const T5Config& cfg, const torch::TensorOptions& options);
  torch::nn::ModuleList block{nullptr};
  T5LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(T5Stack);

// The encoder with HF names: shared.weight, encoder.block.N.layer.{0,1}...,
// encoder.final_layer_norm. Parameters are allocated uninitialized (torch::empty) in `options`'
// dtype and device: nothing is computed or copied until load_t5_encoder fills them, so
// a 4.7B-parameter encoder needs one copy of its weights.
struct T5EncoderImpl : torch::nn::Module {
  explicit T5EncoderImpl(const T5Config& cfg, const torch::TensorOptions& options = {});
  // input_ids: [B, T] int64; attention_mask: optional [B, T] (1 keep, 0 masked; default none, as
  // FLUX) -> last_hidden_state [B, T, d_model] in the parameters' dtype.
  torch::Tensor forward(const torch::Tensor& input_ids,
                        const std::optional<torch::Tensor>& attention_mask = std::nullopt);
  T5Config cfg;
  T5Embedding shared{nullptr};
  T5Stack encoder{nullptr};
};
TORCH_MODULE(T5Encoder);

// Loads a T5 encoder: `path` is a directory with config.json and model.safetensors or
// model.safetensors.index.json (HF text_encoder_2/; a FLUX repository root with text_encoder_2/
// works too), an index file, or one .safetensors file (config.json beside it if present, else the
// T5 v1.1 XXL config). The embedding is read from shared.weight or encoder.embed_tokens.weight
// (tied); decoder.* and lm_head.* tensors are ignored. Every name and shape is checked before
// any data is read; then tensors are read one at a time straight into the parameters (`dtype`,
// `device`). Missing, misshapen or unknown tensors -> one-line UserError naming file and key.
// The returned encoder is in eval mode with requires_grad off.
T5Encoder load_t5_encoder(const std::string& path, torch::Device device = torch::kCPU,
                          torch::ScalarType dtype = torch::kFloat32);

}  // namespace fluxtrain
