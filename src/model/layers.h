// FLUX.1 building blocks, with Black Forest Labs' parameter names: timestep embedding, 3-axis
// RoPE, attention, MLP embedder, QK RMS-norm, modulation, double- and single-stream blocks and the
// final layer. Shapes: B batch, L tokens, H hidden, h heads, D head dim.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "model/linear.h"

namespace fluxtrain {

// Sinusoidal embedding of t (scaled by time_factor) -> [B, dim]; first half cos, second half sin;
// freqs = exp(-ln(max_period) * i / half).
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, double max_period = 10000.0,
                                 double time_factor = 1000.0);

// RoPE rotation matrices for positions along one axis.
// pos: [B, L] -> [B, L, dim/2, 2, 2] float32 with [[cos, -sin], [sin, cos]] at angle pos * w_i,
// w_i = theta^(-2i/dim).
torch::Tensor rope(const torch::Tensor& pos, int64_t dim, double theta);
// ids: [B, L, n_axes] -> [B, 1, L, sum(axes_dim)/2, 2, 2] (axes concatenated).
torch::Tensor rope_nd(const torch::Tensor& ids, const std::vector<int64_t>& axes_dim, double theta);
// Rotates interleaved pairs (x[2i], x[2i+1]) of x: [B, h, L, D] by pe: [B, 1, L, D/2, 2, 2].
// Computed in float32, returned in x's dtype.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& pe);
// RoPE on q and k, then softmax attention; q, k, v: [B, h, L, D] -> [B, L, h*D].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& pe);

// Linear -> SiLU -> Linear (in_layer, out_layer).
struct MLPEmbedderImpl : torch::nn::Module {
  MLPEmbedderImpl(int64_t in_dim, int64_t hidden_dim);
  torch::Tensor forward(const torch::Tensor& x);
  Linear in_layer{nullptr}, out_layer{nullptr};
};
TORCH_MODULE(MLPEmbedder);

// RMS norm with a learnable scale, computed in float32, eps 1e-6 (parameter "scale").
struct RMSNormImpl : torch::nn::Module {
  explicit RMSNormImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor scale;
};
TORCH_MODULE(RMSNorm);

// Per-head RMS norm of queries and keys (query_norm, key_norm); results in v's dtype.
struct QKNormImpl : torch::nn::Module {
  explicit QKNormImpl(int64_t dim);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& v);
  RMSNorm query_norm{nullptr}, key_norm{nullptr};
};
TORCH_MODULE(QKNorm);

// qkv projection, QK norm and output projection (the attention itself is shared, see attention()).
struct SelfAttentionImpl : torch::nn::Module {
  SelfAttentionImpl(int64_t dim, int64_t num_heads, bool qkv_bias);
  Linear qkv{nullptr}, proj{nullptr};
  QKNorm norm{nullptr};
};
TORCH_MODULE(SelfAttention);

struct ModulationOut {
  torch::Tensor shift, scale, gate;  // each [B, 1, H]
};

// lin(silu(vec)) split into (shift, scale, gate) x 2 (double) or x 1 (single).
struct ModulationImpl : torch::nn::Module {
  ModulationImpl(int64_t dim, bool is_double);
  std::vector<ModulationOut> forward(const torch::Tensor& vec);
  int64_t multiplier;
  Linear lin{nullptr};
};
TORCH_MODULE(Modulation);

// x_mod = (1 + scale) * LayerNorm(x) + shift, LayerNorm without affine, eps 1e-6.
torch::Tensor modulate(const torch::Tensor& x, const ModulationOut& m);

// Separate image and text weights, joint attention over [txt, img].
struct DoubleStreamBlockImpl : torch::nn::Module {
  DoubleStreamBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio, bool qkv_bias);
  // img: [B, Li, H], txt: [B, Lt, H], vec: [B, H], pe: [B, 1, Lt+Li, D/2, 2, 2].
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& img,
                                                  const torch::Tensor& txt,
                                                  const torch::Tensor& vec,
                                                  const torch::Tensor& pe);
  int64_t num_heads;
  Modulation img_mod{nullptr}, txt_mod{nullptr};
  SelfAttention img_attn{nullptr}, txt_attn{nullptr};
  torch::nn::Sequential img_mlp{nullptr}, txt_mlp{nullptr};
};
TORCH_MODULE(DoubleStreamBlock);

// linear1: H -> 3H + mlp (qkv and MLP in, in parallel); linear2: H + mlp -> H.
struct SingleStreamBlockImpl : torch::nn::Module {
  SingleStreamBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio);
  // x: [B, L, H] -> [B, L, H].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& vec, const torch::Tensor& pe);
  int64_t hidden_size, num_heads, mlp_hidden_dim;
  Linear linear1{nullptr}, linear2{nullptr};
  QKNorm norm{nullptr};
  Modulation modulation{nullptr};
};
TORCH_MODULE(SingleStreamBlock);

// shift, scale = adaLN_modulation(vec) (BFL order); LayerNorm; Linear(H, out).
struct LastLayerImpl : torch::nn::Module {
  LastLayerImpl(int64_t hidden_size, int64_t out_channels);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& vec);
  Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};
};
TORCH_MODULE(LastLayer);

}  // namespace fluxtrain
