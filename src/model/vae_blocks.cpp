// FLUX autoencoder building blocks, encoder and decoder (see vae.h).
#include "core/errors.h"
#include "core/torch_compat.h"
#include "model/vae.h"

namespace fluxtrain {
namespace {

namespace nn = torch::nn;

constexpr int64_t kGroups = 32;
constexpr double kEps = 1e-6;

bool low_precision_on_cpu(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() != torch::kFloat &&
         x.scalar_type() != torch::kDouble;
}

nn::GroupNorm make_norm(int64_t channels) {
  return nn::GroupNorm(nn::GroupNormOptions(kGroups, channels).eps(kEps).affine(true));
}

nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                     int64_t padding = 0) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(true));
}

torch::Tensor swish(const torch::Tensor& x) {
  return x * torch::sigmoid(x);
}

}  // namespace

void VaeConfig::validate() const {
  if (in_channels <= 0 || out_ch <= 0 || z_channels <= 0)
    user_error("VAE config: in_channels {}, out_ch {} and z_channels {} must be positive",
               in_channels, out_ch, z_channels);
  if (ch_mult.empty() || ch_mult.size() > 16)
    user_error("VAE config: ch_mult must have 1 to 16 levels (has {})", ch_mult.size());
  if (num_res_blocks < 1)
    user_error("VAE config: num_res_blocks must be at least 1 (is {})", num_res_blocks);
  if (ch <= 0 || ch % kGroups)
    user_error("VAE config: ch {} must be a positive multiple of {} (GroupNorm groups)", ch,
               kGroups);
  for (size_t i = 0; i < ch_mult.size(); ++i)
    if (ch_mult[i] <= 0) user_error("VAE config: ch_mult[{}] = {} must be positive", i, ch_mult[i]);
  if (!(scale_factor > 0) || !std::isfinite(shift_factor))
    user_error("VAE config: scale_factor {} must be positive and shift_factor {} finite",
               scale_factor, shift_factor);
}

torch::Tensor vae_group_norm(const torch::Tensor& x, nn::GroupNorm& norm) {
  if (low_precision_on_cpu(x))
    return torch::group_norm(x.to(torch::kFloat), kGroups, norm->weight.to(torch::kFloat),
                             norm->bias.to(torch::kFloat), kEps)
        .to(x.scalar_type());
  return torch::group_norm(x, kGroups, norm->weight, norm->bias, kEps);
}

torch::Tensor vae_conv(const torch::Tensor& x, nn::Conv2d& conv) {
  if (!low_precision_on_cpu(x)) return conv(x);
  // Every conv here pads k/2 at stride 1 and 0 at stride 2 (make_conv's callers), so the padding
  // need not be read from the options (a variant type that differs between libtorch versions).
  const int64_t stride = (*conv->options.stride())[0];
  const int64_t pad = stride == 1 ? conv->weight.size(2) / 2 : 0;
  return torch::conv2d(x.to(torch::kFloat), conv->weight.to(torch::kFloat),
                       conv->bias.to(torch::kFloat), {stride, stride}, {pad, pad})
      .to(x.scalar_type());
}

VaeResnetBlockImpl::VaeResnetBlockImpl(int64_t in, int64_t out)
    : in_channels(in), out_channels(out) {
  norm1 = register_module("norm1", make_norm(in));
  conv1 = register_module("conv1", make_conv(in, out, 3, 1, 1));
  norm2 = register_module("norm2", make_norm(out));
  conv2 = register_module("conv2", make_conv(out, out, 3, 1, 1));
  if (in != out) nin_shortcut = register_module("nin_shortcut", make_conv(in, out, 1));
}

torch::Tensor VaeResnetBlockImpl::forward(const torch::Tensor& x) {
  auto h = vae_conv(swish(vae_group_norm(x, norm1)), conv1);
  h = vae_conv(swish(vae_group_norm(h, norm2)), conv2);
  return (nin_shortcut ? vae_conv(x, nin_shortcut) : x) + h;
}

VaeAttnBlockImpl::VaeAttnBlockImpl(int64_t c) {
  norm = register_module("norm", make_norm(c));
  q = register_module("q", make_conv(c, c, 1));
  k = register_module("k", make_conv(c, c, 1));
  v = register_module("v", make_conv(c, c, 1));
  proj_out = register_module("proj_out", make_conv(c, c, 1));
}

torch::Tensor VaeAttnBlockImpl::forward(const torch::Tensor& x) {
  const auto h_ = vae_group_norm(x, norm);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  // b c h w -> b 1 (h w) c
  auto tokens = [&](const torch::Tensor& t) {
    return t.reshape({B, 1, C, H * W}).transpose(2, 3).contiguous();
  };
  auto qt = tokens(vae_conv(h_, q)), kt = tokens(vae_conv(h_, k)), vt = tokens(vae_conv(h_, v));
  torch::Tensor a;
  if (low_precision_on_cpu(x))
    a = compat::scaled_dot_product_attention(qt.to(torch::kFloat), kt.to(torch::kFloat),
                                             vt.to(torch::kFloat))
            .to(x.scalar_type());
  else
    a = compat::scaled_dot_product_attention(qt, kt, vt);  // [B, 1, HW, C], scale 1/sqrt(C)
  a = a.transpose(2, 3).reshape({B, C, H, W});             // b 1 (h w) c -> b c h w
  return x + vae_conv(a, proj_out);
}

VaeDownsampleImpl::VaeDownsampleImpl(int64_t c) {
  conv = register_module("conv", make_conv(c, c, 3, 2, 0));
}

torch::Tensor VaeDownsampleImpl::forward(const torch::Tensor& x) {
  return vae_conv(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0), conv);  // (left, right, top, bottom)
}

VaeUpsampleImpl::VaeUpsampleImpl(int64_t c) {
  conv = register_module("conv", make_conv(c, c, 3, 1, 1));
}

torch::Tensor VaeUpsampleImpl::forward(const torch::Tensor& x) {
  return vae_conv(torch::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}), conv);
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t c) {
  block_1 = register_module("block_1", VaeResnetBlock(c, c));
  attn_1 = register_module("attn_1", VaeAttnBlock(c));
  block_2 = register_module("block_2", VaeResnetBlock(c, c));
}

torch::Tensor VaeMidBlockImpl::forward(const torch::Tensor& x) {
  return block_2(attn_1(block_1(x)));
}

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& cfg) {
  cfg.validate();
  const int64_t levels = static_cast<int64_t>(cfg.ch_mult.size());
  conv_in = register_module("conv_in", make_conv(cfg.in_channels, cfg.ch, 3, 1, 1));
  down = register_module("down", nn::ModuleList());
  int64_t block_in = cfg.ch;
  for (int64_t i = 0; i < levels; ++i) {
    auto level = VaeLevel();
    level->block = level->register_module("block", nn::ModuleList());
    const int64_t block_out = cfg.ch * cfg.ch_mult[i];
    for (int64_t j = 0; j < cfg.num_res_blocks; ++j) {
      level->block->push_back(VaeResnetBlock(block_in, block_out));
      block_in = block_out;
    }
    if (i != levels - 1)
      level->downsample = level->register_module("downsample", VaeDownsample(block_in));
    down->push_back(level);
  }
  mid = register_module("mid", VaeMidBlock(block_in));
  norm_out = register_module("norm_out", make_norm(block_in));
  conv_out = register_module("conv_out", make_conv(block_in, 2 * cfg.z_channels, 3, 1, 1));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& x) {
  auto h = vae_conv(x, conv_in);
  for (size_t i = 0; i < down->size(); ++i) {
    auto level = down->ptr<VaeLevelImpl>(i);
    for (size_t j = 0; j < level->block->size(); ++j)
      h = level->block->ptr<VaeResnetBlockImpl>(j)->forward(h);
    if (level->downsample) h = level->downsample(h);
  }
  h = mid(h);
  return vae_conv(swish(vae_group_norm(h, norm_out)), conv_out);
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& cfg) {
  cfg.validate();
  const int64_t levels = static_cast<int64_t>(cfg.ch_mult.size());
  int64_t block_in = cfg.ch * cfg.ch_mult[levels - 1];
  conv_in = register_module("conv_in", make_conv(cfg.z_channels, block_in, 3, 1, 1));
  mid = register_module("mid", VaeMidBlock(block_in));
  // Built from the highest level down (channel flow), stored by level index (up.0 ... up.n-1).
  std::vector<VaeLevel> built(levels, nullptr);
  for (int64_t i = levels - 1; i >= 0; --i) {
    auto level = VaeLevel();
    level->block = level->register_module("block", nn::ModuleList());
    const int64_t block_out = cfg.ch * cfg.ch_mult[i];
    for (int64_t j = 0; j < cfg.num_res_blocks + 1; ++j) {
      level->block->push_back(VaeResnetBlock(block_in, block_out));
      block_in = block_out;
    }
    if (i != 0) level->upsample = level->register_module("upsample", VaeUpsample(block_in));
    built[i] = level;
  }
  up = register_module("up", nn::ModuleList());
  for (auto& level : built) up->push_back(level);
  norm_out = register_module("norm_out", make_norm(block_in));
  conv_out = register_module("conv_out", make_conv(block_in, cfg.out_ch, 3, 1, 1));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  auto h = mid(vae_conv(z, conv_in));
  for (int64_t i = static_cast<int64_t>(up->size()) - 1; i >= 0; --i) {
    auto level = up->ptr<VaeLevelImpl>(i);
    for (size_t j = 0; j < level->block->size(); ++j)
      h = level->block->ptr<VaeResnetBlockImpl>(j)->forward(h);
    if (level->upsample) h = level->upsample(h);
  }
  return vae_conv(swish(vae_group_norm(h, norm_out)), conv_out);
}

}  // namespace fluxtrain
