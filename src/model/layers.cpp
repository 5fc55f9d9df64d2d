// FLUX.1 building blocks (see layers.h).
#include "model/layers.h"

#include <cmath>

#include "core/torch_compat.h"

namespace fluxtrain {
namespace F = torch::nn::functional;

// Norms and RoPE run in float32 at least (float64 stays float64, for gradient checks).
static torch::Tensor at_least_float(const torch::Tensor& x) {
  return x.scalar_type() == torch::kDouble ? x : x.to(torch::kFloat);
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, double max_period,
                                 double time_factor) {
  const int64_t half = dim / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(t.device());
  auto freqs = torch::exp(-std::log(max_period) * torch::arange(0, half, opts) / half);  // [half]
  auto args = (t.to(torch::kFloat) * time_factor).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, -1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return torch::is_floating_point(t) ? emb.to(t.scalar_type()) : emb;
}

torch::Tensor rope(const torch::Tensor& pos, int64_t dim, double theta) {
  TORCH_CHECK(dim % 2 == 0, "rope: axis dim must be even, got ", dim);
  // float64 for the angles, as the reference does, then float32.
  auto opts = torch::TensorOptions().dtype(torch::kDouble).device(pos.device());
  auto scale = torch::arange(0, dim, 2, opts) / static_cast<double>(dim);
  auto omega = 1.0 / torch::pow(theta, scale);                // [dim/2]
  auto angle = pos.to(torch::kDouble).unsqueeze(-1) * omega;  // [B, L, dim/2]
  auto c = torch::cos(angle), s = torch::sin(angle);
  auto out = torch::stack({c, -s, s, c}, -1);  // [B, L, dim/2, 4]
  auto sizes = out.sizes().vec();
  sizes.back() = 2;
  sizes.push_back(2);
  return out.view(sizes).to(torch::kFloat);
}

torch::Tensor rope_nd(const torch::Tensor& ids, const std::vector<int64_t>& axes_dim,
                      double theta) {
  TORCH_CHECK(ids.dim() == 3 && ids.size(2) == static_cast<int64_t>(axes_dim.size()),
              "rope_nd: ids must be [B, L, ", axes_dim.size(), "], got ", ids.sizes());
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < axes_dim.size(); ++i)
    parts.push_back(rope(ids.select(2, static_cast<int64_t>(i)), axes_dim[i], theta));
  return torch::cat(parts, -3).unsqueeze(1);
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& pe) {
  auto sizes = x.sizes().vec();
  auto shape = sizes;
  shape.back() = sizes.back() / 2;
  shape.push_back(1);
  shape.push_back(2);
  auto xf = at_least_float(x).reshape(shape);  // [B, h, L, D/2, 1, 2]
  auto out = pe.select(-1, 0) * xf.select(-1, 0) + pe.select(-1, 1) * xf.select(-1, 1);
  return out.reshape(sizes).to(x.scalar_type());
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& pe) {
  auto qr = apply_rope(q, pe), kr = apply_rope(k, pe);
  auto x = compat::scaled_dot_product_attention(qr, kr, v);  // [B, h, L, D]
  return x.permute({0, 2, 1, 3}).flatten(2);                 // [B, L, h*D]
}

MLPEmbedderImpl::MLPEmbedderImpl(int64_t in_dim, int64_t hidden_dim) {
  in_layer = register_module("in_layer", Linear(in_dim, hidden_dim));
  out_layer = register_module("out_layer", Linear(hidden_dim, hidden_dim));
}

torch::Tensor MLPEmbedderImpl::forward(const torch::Tensor& x) {
  return out_layer(F::silu(in_layer(x)));
}

RMSNormImpl::RMSNormImpl(int64_t dim) {
  scale = register_parameter("scale", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = at_least_float(x);
  auto rrms = torch::rsqrt(xf.pow(2).mean(-1, true) + 1e-6);
  return (xf * rrms).to(x.scalar_type()) * scale;
}

QKNormImpl::QKNormImpl(int64_t dim) {
  query_norm = register_module("query_norm", RMSNorm(dim));
  key_norm = register_module("key_norm", RMSNorm(dim));
}

std::pair<torch::Tensor, torch::Tensor> QKNormImpl::forward(const torch::Tensor& q,
                                                            const torch::Tensor& k,
                                                            const torch::Tensor& v) {
  return {query_norm(q).to(v.scalar_type()), key_norm(k).to(v.scalar_type())};
}

SelfAttentionImpl::SelfAttentionImpl(int64_t dim, int64_t num_heads, bool qkv_bias) {
  qkv = register_module("qkv", Linear(dim, 3 * dim, qkv_bias));
  norm = register_module("norm", QKNorm(dim / num_heads));
  proj = register_module("proj", Linear(dim, dim));
}

ModulationImpl::ModulationImpl(int64_t dim, bool is_double) : multiplier(is_double ? 6 : 3) {
  lin = register_module("lin", Linear(dim, multiplier * dim));
}

std::vector<ModulationOut> ModulationImpl::forward(const torch::Tensor& vec) {
  auto chunks = lin(F::silu(vec)).unsqueeze(1).chunk(multiplier, -1);
  std::vector<ModulationOut> out;
  for (int64_t i = 0; i < multiplier; i += 3)
    out.push_back({chunks[i], chunks[i + 1], chunks[i + 2]});
  return out;
}

static torch::Tensor layer_norm(const torch::Tensor& x) {
  return torch::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6);
}

torch::Tensor modulate(const torch::Tensor& x, const ModulationOut& m) {
  return (1 + m.scale) * layer_norm(x) + m.shift;
}

// [B, L, 3*h*D] -> q, k, v each [B, h, L, D].
static std::vector<torch::Tensor> split_qkv(const torch::Tensor& qkv, int64_t num_heads) {
  const int64_t B = qkv.size(0), L = qkv.size(1), D = qkv.size(2) / (3 * num_heads);
  auto x = qkv.view({B, L, 3, num_heads, D}).permute({2, 0, 3, 1, 4});
  return {x[0], x[1], x[2]};
}

static torch::nn::Sequential make_mlp(int64_t hidden, int64_t mlp_hidden) {
  return torch::nn::Sequential(Linear(hidden, mlp_hidden),
                               torch::nn::GELU(torch::nn::GELUOptions().approximate("tanh")),
                               Linear(mlp_hidden, hidden));
}

DoubleStreamBlockImpl::DoubleStreamBlockImpl(int64_t hidden_size, int64_t heads, double mlp_ratio,
                                             bool qkv_bias)
    : num_heads(heads) {
  const auto mlp_hidden = static_cast<int64_t>(hidden_size * mlp_ratio);
  img_mod = register_module("img_mod", Modulation(hidden_size, true));
  img_attn = register_module("img_attn", SelfAttention(hidden_size, heads, qkv_bias));
  img_mlp = register_module("img_mlp", make_mlp(hidden_size, mlp_hidden));
  txt_mod = register_module("txt_mod", Modulation(hidden_size, true));
  txt_attn = register_module("txt_attn", SelfAttention(hidden_size, heads, qkv_bias));
  txt_mlp = register_module("txt_mlp", make_mlp(hidden_size, mlp_hidden));
}

std::pair<torch::Tensor, torch::Tensor> DoubleStreamBlockImpl::forward(const torch::Tensor& img,
                                                                       const torch::Tensor& txt,
                                                                       const torch::Tensor& vec,
                                                                       const torch::Tensor& pe) {
  auto img_m = img_mod(vec), txt_m = txt_mod(vec);
  auto iq = split_qkv(img_attn->qkv(modulate(img, img_m[0])), num_heads);
  auto tq = split_qkv(txt_attn->qkv(modulate(txt, txt_m[0])), num_heads);
  auto [img_q, img_k] = img_attn->norm(iq[0], iq[1], iq[2]);
  auto [txt_q, txt_k] = txt_attn->norm(tq[0], tq[1], tq[2]);
  auto q = torch::cat({txt_q, img_q}, 2), k = torch::cat({txt_k, img_k}, 2);
  auto v = torch::cat({tq[2], iq[2]}, 2);
  auto attn = attention(q, k, v, pe);  // [B, Lt+Li, H]
  const int64_t Lt = txt.size(1);
  auto txt_a = attn.narrow(1, 0, Lt), img_a = attn.narrow(1, Lt, attn.size(1) - Lt);
  auto img_out = img + img_m[0].gate * img_attn->proj(img_a);
  img_out = img_out + img_m[1].gate * img_mlp->forward(modulate(img_out, img_m[1]));
  auto txt_out = txt + txt_m[0].gate * txt_attn->proj(txt_a);
  txt_out = txt_out + txt_m[1].gate * txt_mlp->forward(modulate(txt_out, txt_m[1]));
  return {img_out, txt_out};
}

SingleStreamBlockImpl::SingleStreamBlockImpl(int64_t hidden, int64_t heads, double mlp_ratio)
    : hidden_size(hidden),
      num_heads(heads),
      mlp_hidden_dim(static_cast<int64_t>(hidden * mlp_ratio)) {
  linear1 = register_module("linear1", Linear(hidden, 3 * hidden + mlp_hidden_dim));
  linear2 = register_module("linear2", Linear(hidden + mlp_hidden_dim, hidden));
  norm = register_module("norm", QKNorm(hidden / heads));
  modulation = register_module("modulation", Modulation(hidden, false));
}

torch::Tensor SingleStreamBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& vec,
                                             const torch::Tensor& pe) {
  auto mod = modulation(vec)[0];
  auto parts = linear1(modulate(x, mod)).split_with_sizes({3 * hidden_size, mlp_hidden_dim}, -1);
  auto qkv = split_qkv(parts[0], num_heads);
  auto [q, k] = norm(qkv[0], qkv[1], qkv[2]);
  auto attn = attention(q, k, qkv[2], pe);
  auto out = linear2(torch::cat({attn, torch::gelu(parts[1], "tanh")}, 2));
  return x + mod.gate * out;
}

LastLayerImpl::LastLayerImpl(int64_t hidden_size, int64_t out_channels) {
  linear = register_module("linear", Linear(hidden_size, out_channels));
  adaLN_modulation = register_module(
      "adaLN_modulation",
      torch::nn::Sequential(torch::nn::SiLU(), Linear(hidden_size, 2 * hidden_size)));
}

torch::Tensor LastLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& vec) {
  auto mod = adaLN_modulation->forward(vec).chunk(2, 1);
  auto shift = mod[0].unsqueeze(1), scale = mod[1].unsqueeze(1);
  return linear((1 + scale) * layer_norm(x) + shift);
}

}  // namespace fluxtrain
