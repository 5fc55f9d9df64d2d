// FLUX.1 transformer (see flux.h).
#include "model/flux.h"

#include <numeric>

#include "core/errors.h"
#include "model/activation_checkpoint.h"

namespace fluxtrain {

void FluxParams::validate() const {
  if (hidden_size <= 0 || num_heads <= 0 || hidden_size % num_heads != 0)
    user_error("model: hidden_size {} must be a positive multiple of num_heads {}", hidden_size,
               num_heads);
  const int64_t head_dim = hidden_size / num_heads;
  const int64_t axes = std::accumulate(axes_dim.begin(), axes_dim.end(), int64_t{0});
  if (axes != head_dim)
    user_error("model: axes_dim must sum to the head dim {} (hidden_size / num_heads), sums to {}",
               head_dim, axes);
  for (auto a : axes_dim)
    if (a <= 0 || a % 2)
      user_error("model: every axes_dim entry must be even and positive, got {}", a);
  if (in_channels <= 0 || out_channels <= 0 || vec_in_dim <= 0 || context_in_dim <= 0 ||
      depth < 0 || depth_single_blocks < 0 || depth + depth_single_blocks == 0)
    user_error("model: channel sizes must be positive and there must be at least one block");
}

FluxImpl::FluxImpl(const FluxParams& p, bool with_final_layer) : params(p) {
  p.validate();
  const int64_t H = p.hidden_size;
  {
    LinearStorageScope dense(BaseWeights::kDense);  // (8-bit storage is for the blocks)
    img_in = register_module("img_in", Linear(p.in_channels, H));
    time_in = register_module("time_in", MLPEmbedder(256, H));
    vector_in = register_module("vector_in", MLPEmbedder(p.vec_in_dim, H));
    if (p.guidance_embed) guidance_in = register_module("guidance_in", MLPEmbedder(256, H));
    txt_in = register_module("txt_in", Linear(p.context_in_dim, H));
  }
  double_blocks = register_module("double_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < p.depth; ++i)
    double_blocks->push_back(DoubleStreamBlock(H, p.num_heads, p.mlp_ratio, p.qkv_bias));
  single_blocks = register_module("single_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < p.depth_single_blocks; ++i)
    single_blocks->push_back(SingleStreamBlock(H, p.num_heads, p.mlp_ratio));
  if (with_final_layer) {
    LinearStorageScope dense(BaseWeights::kDense);
    final_layer = register_module("final_layer", LastLayer(H, p.out_channels));
  }
}

namespace {

// Which residual follows block i of `blocks` when `n` residuals are given: i / ceil(blocks / n),
// diffusers' interval_control.
const torch::Tensor* control_residual(const std::vector<torch::Tensor>& residuals, size_t i,
                                      size_t blocks) {
  if (residuals.empty()) return nullptr;
  const size_t interval = (blocks + residuals.size() - 1) / residuals.size();
  return &residuals[i / interval];
}

}  // namespace

FluxStreams FluxImpl::embed(const FluxInputs& in) {
  TORCH_CHECK(in.img.dim() == 3 && in.txt.dim() == 3, "Flux: img and txt must be [B, L, C]");
  FluxStreams s;
  s.img = img_in(in.img);                                  // [B, Li, H]
  s.vec = time_in(timestep_embedding(in.timesteps, 256));  // [B, H]
  if (params.guidance_embed) {
    TORCH_CHECK(in.guidance.has_value(), "Flux: this model embeds guidance; pass a guidance value");
    s.vec = s.vec + guidance_in(timestep_embedding(*in.guidance, 256));
  }
  s.vec = s.vec + vector_in(in.y);
  s.txt = txt_in(in.txt);  // [B, Lt, H]
  s.pe = rope_nd(torch::cat({in.txt_ids, in.img_ids}, 1), params.axes_dim, params.theta);
  return s;
}

torch::Tensor FluxImpl::run_blocks(FluxStreams s, const AfterBlock& after_block) {
  const bool checkpoint =
      activation_checkpointing_ && is_training() && torch::GradMode::is_enabled();
  torch::Tensor img = s.img, txt = s.txt;
  const torch::Tensor vec = s.vec, pe = s.pe;
  for (size_t i = 0; i < double_blocks->size(); ++i) {
    auto block = double_blocks->ptr<DoubleStreamBlockImpl>(i);
    if (checkpoint && static_cast<int64_t>(i) % checkpoint_every_ == 0) {
      auto r = activation_checkpoint(
          [block](const std::vector<torch::Tensor>& x) -> std::vector<torch::Tensor> {
            auto out = block->forward(x[0], x[1], x[2], x[3]);
            return {out.first, out.second};
          },
          {img, txt, vec, pe});
      img = r[0];
      txt = r[1];
    } else {
      std::tie(img, txt) = block->forward(img, txt, vec, pe);
    }
    if (after_block) img = after_block(false, i, img);
  }
  const int64_t Lt = txt.size(1), Li = img.size(1);
  auto x = torch::cat({txt, img}, 1);  // [B, Lt+Li, H]
  for (size_t i = 0; i < single_blocks->size(); ++i) {
    auto block = single_blocks->ptr<SingleStreamBlockImpl>(i);
    if (checkpoint && static_cast<int64_t>(i + double_blocks->size()) % checkpoint_every_ == 0)
      x = activation_checkpoint(
          [block](const std::vector<torch::Tensor>& v) -> std::vector<torch::Tensor> {
            return {block->forward(v[0], v[1], v[2])};
          },
          {x, vec, pe})[0];
    else
      x = block->forward(x, vec, pe);
    if (after_block) {
      auto image_part = x.narrow(1, Lt, Li);
      auto changed = after_block(true, i, image_part);
      if (!changed.is_same(image_part)) x = torch::cat({x.narrow(1, 0, Lt), changed}, 1);
    }
  }
  return x.narrow(1, Lt, Li);
}

torch::Tensor FluxImpl::forward(const FluxInputs& in) {
  TORCH_CHECK(in.double_block_residuals.size() <= double_blocks->size() &&
                  in.single_block_residuals.size() <= single_blocks->size(),
              "Flux: more control residuals than blocks");
  TORCH_CHECK(!final_layer.is_empty(), "Flux: this stack has no final layer (a ControlNet)");
  FluxStreams s = embed(in);
  const torch::Tensor vec = s.vec;
  AfterBlock add_residuals;
  if (!in.double_block_residuals.empty() || !in.single_block_residuals.empty())
    add_residuals = [&](bool single, size_t i, const torch::Tensor& img) {
      const auto& residuals = single ? in.single_block_residuals : in.double_block_residuals;
      const size_t blocks = single ? single_blocks->size() : double_blocks->size();
      const torch::Tensor* r = control_residual(residuals, i, blocks);
      return r ? img + *r : img;
    };
  auto img = run_blocks(std::move(s), add_residuals);
  return final_layer(img, vec);  // [B, Li, out_channels]
}

int64_t ParamShape::numel() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

std::vector<ParamShape> flux_parameter_shapes(const FluxParams& p) {
  p.validate();
  const int64_t H = p.hidden_size, D = H / p.num_heads;
  const auto mlp = static_cast<int64_t>(H * p.mlp_ratio);
  std::vector<ParamShape> out;
  auto linear = [&](const std::string& name, int64_t in, int64_t o, bool bias = true) {
    out.push_back({name + ".weight", {o, in}});
    if (bias) out.push_back({name + ".bias", {o}});
  };
  auto embedder = [&](const std::string& name, int64_t in) {
    linear(name + ".in_layer", in, H);
    linear(name + ".out_layer", H, H);
  };
  auto qknorm = [&](const std::string& name) {
    out.push_back({name + ".query_norm.scale", {D}});
    out.push_back({name + ".key_norm.scale", {D}});
  };
  linear("img_in", p.in_channels, H);
  embedder("time_in", 256);
  embedder("vector_in", p.vec_in_dim);
  if (p.guidance_embed) embedder("guidance_in", 256);
  linear("txt_in", p.context_in_dim, H);
  for (int64_t i = 0; i < p.depth; ++i) {
    for (std::string s : {"img", "txt"}) {
      const std::string b = fmt::format("double_blocks.{}.{}_", i, s);
      linear(b + "mod.lin", H, 6 * H);
      linear(b + "attn.qkv", H, 3 * H, p.qkv_bias);
      qknorm(b + "attn.norm");
      linear(b + "attn.proj", H, H);
      linear(b + "mlp.0", H, mlp);
      linear(b + "mlp.2", mlp, H);
    }
  }
  for (int64_t i = 0; i < p.depth_single_blocks; ++i) {
    const std::string b = fmt::format("single_blocks.{}.", i);
    linear(b + "linear1", H, 3 * H + mlp);
    linear(b + "linear2", H + mlp, H);
    qknorm(b + "norm");
    linear(b + "modulation.lin", H, 3 * H);
  }
  linear("final_layer.linear", H, p.out_channels);
  linear("final_layer.adaLN_modulation.1", H, 2 * H);
  return out;
}

double flux_forward_flops(const FluxParams& p, int64_t image_tokens, int64_t text_tokens) {
  const double H = static_cast<double>(p.hidden_size), mlp = H * p.mlp_ratio;
  const double Li = static_cast<double>(image_tokens), Lt = static_cast<double>(text_tokens);
  const double L = Li + Lt;
  // Per-token linear weights (multiply-adds) by which tokens they touch.
  const double double_block_per_stream = 3 * H * H + H * H + 2 * H * mlp;  // qkv, proj, mlp
  const double single_block = H * (3 * H + mlp) + (H + mlp) * H;
  double macs = 0;
  macs += Li * p.in_channels * H + Lt * p.context_in_dim * H;  // img_in, txt_in
  macs += p.depth * (L * double_block_per_stream);             // both streams
  macs += p.depth_single_blocks * (L * single_block);
  macs += Li * H * p.out_channels;  // final linear
  // Modulation and embedders act once per sample, not per token.
  macs += p.depth * 2 * 6 * H * H + p.depth_single_blocks * 3 * H * H + 2 * H * H;
  macs += (256 * H + H * H) * (p.guidance_embed ? 2 : 1) + p.vec_in_dim * H + H * H;
  double flops = 2 * macs;
  // Attention: QK^T and PV, 2 x L^2 x H multiply-adds per block.
  flops += (p.depth + p.depth_single_blocks) * 4.0 * L * L * H;
  return flops;
}

}  // namespace fluxtrain
