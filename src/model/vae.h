// The FLUX.1 autoencoder (Black Forest Labs' AutoEncoder, diffusers' AutoencoderKL with FLUX's
// config): convolutional encoder to a diagonal Gaussian over 16 latent channels at 1/8 of the
// image size, and the decoder back. Modules are registered under BFL `ae.safetensors` names
// (encoder.down.0.block.0.norm1.weight, decoder.up.3.upsample.conv.weight, ...); a diffusers
// vae/ directory is converted on load (model/vae_names.h). Shapes: B batch, C channels,
// f = 2^(len(ch_mult) - 1) the downsampling factor.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/autoencoder.h"
#include "model/vae_names.h"

namespace fluxtrain {

// BFL AutoEncoderParams (defaults: FLUX.1 dev/schnell ae.safetensors).
struct VaeConfig {
  int64_t resolution = 256;  // unused (BFL keeps it; no shape depends on it)
  int64_t in_channels = 3;
  int64_t ch = 128;
  int64_t out_ch = 3;
  std::vector<int64_t> ch_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 16;
  double scale_factor = 0.3611;
  double shift_factor = 0.1159;
  // 1x1 convs after the encoder / before the decoder (SD-style VAEs; FLUX has neither).
  bool use_quant_conv = false;
  bool use_post_quant_conv = false;

  int64_t factor() const { return int64_t{1} << (ch_mult.size() - 1); }
  // UserError naming the field: channels must be multiples of 32 (GroupNorm groups), at least one
  // level and one block, positive channel counts.
  void validate() const;
};

// GroupNorm(32, C, eps 1e-6) with weight and bias. On CPU a bf16/fp16 input is normalised in
// float32 (returned in its dtype); CUDA kernels accumulate in float32 already.
torch::Tensor vae_group_norm(const torch::Tensor& x, torch::nn::GroupNorm& norm);
// conv(x). On CPU a bf16/fp16 convolution runs in float32 and is rounded back (libtorch 1.13's
// CPU kernels accumulate bf16 convolutions in bf16: ~3% error per 3x3 conv); on CUDA, as is.
torch::Tensor vae_conv(const torch::Tensor& x, torch::nn::Conv2d& conv);

// norm1, swish, conv1 (3x3), norm2, swish, conv2 (3x3); x (through nin_shortcut, a 1x1 conv,
// when the channel count changes) + h.
struct VaeResnetBlockImpl : torch::nn::Module {
  VaeResnetBlockImpl(int64_t in_channels, int64_t out_channels);
  torch::Tensor forward(const torch::Tensor& x);  // [B, in, H, W] -> [B, out, H, W]
  int64_t in_channels, out_channels;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};
TORCH_MODULE(VaeResnetBlock);

// x + proj_out(attention(q, k, v)) with q, k, v 1x1 convs of norm(x): one head over the H*W
// positions, scale 1/sqrt(C). On CPU a bf16/fp16 input attends in float32.
struct VaeAttnBlockImpl : torch::nn::Module {
  explicit VaeAttnBlockImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, C, H, W]
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(VaeAttnBlock);

// Zero padding of one row at the bottom and one column at the right, then a 3x3 conv, stride 2:
// [B, C, H, W] -> [B, C, floor((H - 2) / 2) + 1, ...] (H/2 for even H).
struct VaeDownsampleImpl : torch::nn::Module {
  explicit VaeDownsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(VaeDownsample);

// Nearest-neighbour x2, then a 3x3 conv: [B, C, H, W] -> [B, C, 2H, 2W].
struct VaeUpsampleImpl : torch::nn::Module {
  explicit VaeUpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(VaeUpsample);

// block_1, attn_1, block_2 at the lowest resolution.
struct VaeMidBlockImpl : torch::nn::Module {
  explicit VaeMidBlockImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  VaeResnetBlock block_1{nullptr}, block_2{nullptr};
  VaeAttnBlock attn_1{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// One resolution level: `block` (resnet blocks) and, except at one end, a `downsample` (encoder)
// or an `upsample` (decoder).
struct VaeLevelImpl : torch::nn::Module {
  torch::nn::ModuleList block{nullptr};
  VaeDownsample downsample{nullptr};
  VaeUpsample upsample{nullptr};
};
TORCH_MODULE(VaeLevel);

// conv_in; down.I (num_res_blocks blocks, downsample on all but the last level); mid; norm_out,
// swish, conv_out to 2 * z_channels (mean, logvar).
struct VaeEncoderImpl : torch::nn::Module {
  explicit VaeEncoderImpl(const VaeConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // [B, in, H, W] -> [B, 2z, H/f, W/f]
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};
  VaeMidBlock mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

// conv_in from z_channels; mid; up.I (num_res_blocks + 1 blocks, upsample on all but level 0)
// run from the highest level down to 0; norm_out, swish, conv_out.
struct VaeDecoderImpl : torch::nn::Module {
  explicit VaeDecoderImpl(const VaeConfig& config);
  torch::Tensor forward(const torch::Tensor& z);  // [B, z, h, w] -> [B, out, h f, w f]
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  VaeMidBlock mid{nullptr};
  torch::nn::ModuleList up{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

// The posterior: mean and log-variance, each [B, z, H/f, W/f], logvar clamped to [-30, 20]
// (as diffusers' DiagonalGaussianDistribution does).
struct VaeEncoding {
  torch::Tensor mean, logvar;
};
// Splits encoder moments [B, 2z, h, w] into (mean, clamped logvar).
VaeEncoding split_moments(const torch::Tensor& moments);
// mean + exp(0.5 logvar) * noise, noise ~ N(0, 1) drawn in float32 on the CPU from `generator`
// (a CPU generator) then moved to mean's device; the result has mean's dtype.
torch::Tensor sample(const VaeEncoding& encoding, at::Generator& generator);
// The same with a CPU generator seeded with `seed` (at::detail::createCPUGenerator(seed)).
torch::Tensor sample(const VaeEncoding& encoding, uint64_t seed);

// The raw autoencoder (no latent scale or shift): BFL's Encoder + Decoder (+ optional
// quant_conv / post_quant_conv). Computes in its parameters' dtype and device; inputs are cast.
struct FluxVaeImpl : torch::nn::Module {
  explicit FluxVaeImpl(const VaeConfig& config);
  // images [B, in, H, W] in [-1, 1] -> moments [B, 2z, H/f, W/f] (mean channels, then logvar).
  torch::Tensor encode_moments(const torch::Tensor& images);
  // encode_moments split into (mean, clamped logvar).
  VaeEncoding encode(const torch::Tensor& images);
  // z [B, z, h, w] (unscaled) -> images [B, out, h f, w f].
  torch::Tensor decode(const torch::Tensor& z);
  torch::Device device() const;
  torch::ScalarType dtype() const;

  VaeConfig config;
  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(FluxVae);

// The FLUX VAE as the trainer and sampler see it: latents scaled for the transformer.
// encode() is deterministic: it returns the posterior mean, (mean - shift_factor) *
// scale_factor, so that cached latents and validation do not depend on a noise draw (BFL's
// AutoEncoder.encode samples; diffusers' training scripts mostly sample too — use encode_sample
// for that). Results are returned in the input's floating dtype; the scale and shift are applied
// in float32.
class FluxAutoencoder : public ImageAutoencoder {
 public:
  FluxAutoencoder(FluxVae vae, std::string source);
  // images [B, 3, H, W] in [-1, 1] -> (mean - shift) * scale, [B, z, H/f, W/f].
  torch::Tensor encode(const torch::Tensor& images) override;
  // (sample(posterior, generator) - shift) * scale.
  torch::Tensor encode_sample(const torch::Tensor& images, at::Generator& generator);
  // latents -> vae.decode(latents / scale + shift), images in about [-1, 1] (not clamped).
  torch::Tensor decode(const torch::Tensor& latents) override;
  // The raw posterior (mean, clamped log-variance), in the VAE's dtype.
  std::pair<torch::Tensor, torch::Tensor> encode_moments(const torch::Tensor& images) override;
  // ((mean [+ exp(logvar / 2) eps]) - shift) * scale in float32: encode() is this of the mean.
  torch::Tensor latents_from_moments(const torch::Tensor& mean, const torch::Tensor& logvar,
                                     const torch::Tensor& eps) override;
  int64_t latent_channels() const override { return vae_->config.z_channels; }
  int64_t factor() const override { return vae_->config.factor(); }
  std::string name() const override;  // "FLUX VAE (<source>)"
  const VaeConfig& config() const { return vae_->config; }
  FluxVae& vae() { return vae_; }
  const std::string& source() const { return source_; }

 private:
  FluxVae vae_;
  std::string source_;
};

// The layout of a VAE checkpoint path: a directory is diffusers (vae/ or its parent pipeline
// directory); a file is judged by its tensor names (diffusers names: down_blocks, mid_block...).
// UserError when the path does not exist or holds no autoencoder tensors.
VaeLayout detect_vae_layout(const std::string& path);

// The config a checkpoint implies without building anything: a diffusers directory's
// config.json (block_out_channels -> ch x ch_mult, layers_per_block, latent_channels,
// in/out_channels, scaling_factor, shift_factor, use_quant_conv, use_post_quant_conv; missing
// quant flags follow the file's tensors), otherwise inferred from tensor shapes with FLUX's
// scale 0.3611 and shift 0.1159 (a BFL file has no config).
VaeConfig read_vae_config(const std::string& path);

// Loads a FLUX autoencoder from a BFL ae.safetensors file or a diffusers vae/ directory (or a
// pipeline directory with vae/), frozen (requires_grad false) in eval mode on `device` with
// parameters in `dtype` (fp32 or bf16 usually). Missing, unexpected and wrong-shaped tensors
// are one-line UserErrors naming the file and the tensor as stored.
std::shared_ptr<FluxAutoencoder> load_flux_vae(const std::string& path, torch::Device device,
                                               torch::ScalarType dtype);

}  // namespace fluxtrain
