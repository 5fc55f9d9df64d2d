// The FLUX autoencoder against a plain-ATen re-computation from the weight dict, its name map,
// both checkpoint layouts, latent scale and shift, posterior sampling and loading errors.
#include "model/vae.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "fixtures/fixtures.h"
#include "fixtures/vae_fixture.h"
#include "io/safetensors.h"
#include "model/vae_names.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::fixtures::max_abs_diff;
using fluxtrain::testing::error_of;
using fluxtrain::testing::fresh_temp_dir;
using Weights = std::map<std::string, torch::Tensor>;

namespace {

// ---- Reference: BFL's AutoEncoder written out with plain ATen ops in float64, reading the
// weights by name. It shares no code with model/vae*.cpp.

Weights read_weights(const std::string& bfl_file) {
  SafetensorsFile f(bfl_file);
  Weights w;
  for (const auto& name : f.names()) w[name] = f.load(name).to(torch::kDouble);
  return w;
}

bool has(const Weights& w, const std::string& name) {
  return w.count(name) > 0;
}

torch::Tensor conv(const Weights& w, const std::string& p, const torch::Tensor& x,
                   int64_t stride = 1) {
  const auto& weight = w.at(p + ".weight");
  const int64_t pad = stride == 1 ? weight.size(2) / 2 : 0;
  return torch::conv2d(x, weight, w.at(p + ".bias"), {stride, stride}, {pad, pad});
}

// GroupNorm(32, eps 1e-6) by hand: statistics over each group of C/32 channels and all pixels.
torch::Tensor group_norm(const Weights& w, const std::string& p, const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1);
  auto g = x.reshape({B, 32, -1});
  auto mean = g.mean(-1, true);
  auto var = (g - mean).pow(2).mean(-1, true);
  auto y = ((g - mean) / torch::sqrt(var + 1e-6)).reshape(x.sizes());
  return y * w.at(p + ".weight").view({1, C, 1, 1}) + w.at(p + ".bias").view({1, C, 1, 1});
}

torch::Tensor ref_silu(const torch::Tensor& x) {
  return x / (1 + torch::exp(-x));
}

torch::Tensor resnet(const Weights& w, const std::string& p, const torch::Tensor& x) {
  auto h = conv(w, p + ".conv1", ref_silu(group_norm(w, p + ".norm1", x)));
  h = conv(w, p + ".conv2", ref_silu(group_norm(w, p + ".norm2", h)));
  auto skip = has(w, p + ".nin_shortcut.weight") ? conv(w, p + ".nin_shortcut", x) : x;
  return skip + h;
}

torch::Tensor attention(const Weights& w, const std::string& p, const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = group_norm(w, p + ".norm", x);
  auto rows = [&](const torch::Tensor& t) {  // [B, C, H, W] -> [B, H*W, C], row-major pixels
    return t.permute({0, 2, 3, 1}).reshape({B, H * W, C});
  };
  auto q = rows(conv(w, p + ".q", h)), k = rows(conv(w, p + ".k", h)),
       v = rows(conv(w, p + ".v", h));
  auto probs = torch::softmax(torch::matmul(q, k.transpose(1, 2)) / std::sqrt(double(C)), -1);
  auto out = torch::matmul(probs, v).reshape({B, H, W, C}).permute({0, 3, 1, 2});
  return x + conv(w, p + ".proj_out", out);
}

torch::Tensor mid(const Weights& w, const std::string& side, const torch::Tensor& x) {
  auto h = resnet(w, side + ".mid.block_1", x);
  h = attention(w, side + ".mid.attn_1", h);
  return resnet(w, side + ".mid.block_2", h);
}

std::string key(const std::string& prefix, int64_t i, const std::string& rest) {
  return prefix + "." + std::to_string(i) + rest;
}

torch::Tensor ref_encoder(const Weights& w, const torch::Tensor& images) {
  auto h = conv(w, "encoder.conv_in", images.to(torch::kDouble));
  for (int64_t i = 0; has(w, key("encoder.down", i, ".block.0.conv1.weight")); ++i) {
    for (int64_t j = 0; has(w, key(key("encoder.down", i, ".block"), j, ".conv1.weight")); ++j)
      h = resnet(w, key(key("encoder.down", i, ".block"), j, ""), h);
    if (has(w, key("encoder.down", i, ".downsample.conv.weight"))) {
      h = torch::constant_pad_nd(h, {0, 1, 0, 1}, 0);  // right and bottom only
      h = conv(w, key("encoder.down", i, ".downsample.conv"), h, 2);
    }
  }
  h = mid(w, "encoder", h);
  h = conv(w, "encoder.conv_out", ref_silu(group_norm(w, "encoder.norm_out", h)));
  if (has(w, "quant_conv.weight")) h = conv(w, "quant_conv", h);
  return h;
}

torch::Tensor ref_decoder(const Weights& w, const torch::Tensor& z) {
  auto h = z.to(torch::kDouble);
  if (has(w, "post_quant_conv.weight")) h = conv(w, "post_quant_conv", h);
  h = mid(w, "decoder", conv(w, "decoder.conv_in", h));
  int64_t levels = 0;
  while (has(w, key("decoder.up", levels, ".block.0.conv1.weight"))) ++levels;
  for (int64_t i = levels - 1; i >= 0; --i) {
    for (int64_t j = 0; has(w, key(key("decoder.up", i, ".block"), j, ".conv1.weight")); ++j)
      h = resnet(w, key(key("decoder.up", i, ".block"), j, ""), h);
    if (has(w, key("decoder.up", i, ".upsample.conv.weight"))) {
      h = h.repeat_interleave(2, 2).repeat_interleave(2, 3);  // nearest x2
      h = conv(w, key("decoder.up", i, ".upsample.conv"), h);
    }
  }
  return conv(w, "decoder.conv_out", ref_silu(group_norm(w, "decoder.norm_out", h)));
}

// ---- Helpers.

torch::Tensor test_images(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::rand(shape, gen, torch::kFloat) * 2 - 1;
}

NamedTensors bfl_tensors(const VaeConfig& cfg, uint64_t seed) {
  NamedTensors out;
  for (auto& t : fixtures::tiny_vae_tensors(cfg, seed)) out.emplace_back(t.bfl_name, t.bfl_value);
  return out;
}

NamedTensors diffusers_tensors(const VaeConfig& cfg, uint64_t seed) {
  NamedTensors out;
  for (auto& t : fixtures::tiny_vae_tensors(cfg, seed))
    out.emplace_back(t.diffusers_name, t.diffusers_value);
  return out;
}

NamedTensors without(NamedTensors t, const std::string& name) {
  auto it = std::find_if(t.begin(), t.end(), [&](auto& kv) { return kv.first == name; });
  EXPECT_NE(it, t.end()) << name;
  if (it != t.end()) t.erase(it);
  return t;
}

NamedTensors replaced(NamedTensors t, const std::string& name, torch::Tensor value) {
  for (auto& kv : t)
    if (kv.first == name) kv.second = value;
  return t;
}

std::shared_ptr<FluxAutoencoder> load(const std::string& path,
                                      torch::ScalarType dtype = torch::kFloat) {
  return load_flux_vae(path, torch::kCPU, dtype);
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Name map.

TEST(VaeNames, KnownPairsBothWays) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"encoder.conv_in.weight", "encoder.conv_in.weight"},
      {"encoder.down.0.block.0.norm1.weight", "encoder.down_blocks.0.resnets.0.norm1.weight"},
      {"encoder.down.1.block.0.nin_shortcut.bias",
       "encoder.down_blocks.1.resnets.0.conv_shortcut.bias"},
      {"encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight"},
      {"encoder.mid.block_1.conv2.weight", "encoder.mid_block.resnets.0.conv2.weight"},
      {"encoder.mid.block_2.norm1.bias", "encoder.mid_block.resnets.1.norm1.bias"},
      {"encoder.mid.attn_1.norm.weight", "encoder.mid_block.attentions.0.group_norm.weight"},
      {"encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.to_q.weight"},
      {"encoder.mid.attn_1.k.bias", "encoder.mid_block.attentions.0.to_k.bias"},
      {"decoder.mid.attn_1.v.weight", "decoder.mid_block.attentions.0.to_v.weight"},
      {"decoder.mid.attn_1.proj_out.bias", "decoder.mid_block.attentions.0.to_out.0.bias"},
      {"encoder.norm_out.weight", "encoder.conv_norm_out.weight"},
      {"decoder.norm_out.bias", "decoder.conv_norm_out.bias"},
      {"decoder.conv_out.weight", "decoder.conv_out.weight"},
      // Decoder levels are numbered in reverse: BFL up.3 runs first, diffusers up_blocks.0.
      {"decoder.up.3.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"},
      {"decoder.up.3.block.2.conv1.weight", "decoder.up_blocks.0.resnets.2.conv1.weight"},
      {"decoder.up.1.upsample.conv.bias", "decoder.up_blocks.2.upsamplers.0.conv.bias"},
      {"decoder.up.0.block.0.nin_shortcut.weight",
       "decoder.up_blocks.3.resnets.0.conv_shortcut.weight"},
      {"quant_conv.weight", "quant_conv.weight"},
      {"post_quant_conv.bias", "post_quant_conv.bias"},
  };
  for (const auto& [bfl, diffusers] : pairs) {
    EXPECT_EQ(vae_bfl_to_diffusers(bfl, 4).value_or("<none>"), diffusers) << bfl;
    EXPECT_EQ(vae_diffusers_to_bfl(diffusers, 4).value_or("<none>"), bfl) << diffusers;
  }
  // The reversal depends on the level count.
  EXPECT_EQ(vae_bfl_to_diffusers("decoder.up.1.block.0.conv1.weight", 2).value_or(""),
            "decoder.up_blocks.0.resnets.0.conv1.weight");
  for (const char* bad :
       {"encoder.down.4.block.0.norm1.weight", "decoder.up.0.downsample.conv.weight",
        "encoder.mid.attn_1.qkv.weight", "encoder.mid.block_3.conv1.weight",
        "encoder.down.0.block.0.conv3.weight", "vae.encoder.conv_in.weight",
        "encoder.down.01.block.0.conv1.weight", "foo"})
    EXPECT_FALSE(vae_bfl_to_diffusers(bad, 4).has_value()) << bad;
  for (const char* bad : {"decoder.up_blocks.4.resnets.0.conv1.weight",
                          "encoder.down_blocks.0.attentions.0.to_q.weight",
                          "encoder.mid_block.attentions.0.to_out.1.weight",
                          "encoder.mid_block.attentions.0.query.weight", "decoder.norm_out.weight"})
    EXPECT_FALSE(vae_diffusers_to_bfl(bad, 4).has_value()) << bad;
  EXPECT_TRUE(vae_is_attention_projection("decoder.mid.attn_1.proj_out.weight"));
  EXPECT_TRUE(vae_is_attention_projection("encoder.mid.attn_1.q.weight"));
  EXPECT_FALSE(vae_is_attention_projection("encoder.mid.attn_1.q.bias"));
  EXPECT_FALSE(vae_is_attention_projection("encoder.mid.attn_1.norm.weight"));
}

TEST(VaeNames, ModuleNamesMatchBothLayoutsOfTheFixture) {
  // FLUX's structure (4 levels, 2 blocks, attention in the middle) at a small width.
  VaeConfig cfg;
  cfg.ch = 32;
  cfg.ch_mult = {1, 2, 2, 1};
  cfg.use_quant_conv = cfg.use_post_quant_conv = true;
  FluxVae vae(cfg);
  std::map<std::string, std::vector<int64_t>> module_shapes;
  for (const auto& p : vae->named_parameters()) module_shapes[p.key()] = p.value().sizes().vec();
  const auto tensors = fixtures::tiny_vae_tensors(cfg, 1);
  ASSERT_EQ(tensors.size(), module_shapes.size());
  for (const auto& t : tensors) {
    ASSERT_TRUE(module_shapes.count(t.bfl_name)) << t.bfl_name;
    EXPECT_EQ(module_shapes[t.bfl_name], t.bfl_value.sizes().vec()) << t.bfl_name;
    EXPECT_EQ(vae_bfl_to_diffusers(t.bfl_name, 4).value_or(""), t.diffusers_name);
    EXPECT_EQ(vae_diffusers_to_bfl(t.diffusers_name, 4).value_or(""), t.bfl_name);
  }
  // FLUX's real sizes: 83,819,683 parameters (BFL ae.safetensors), no quant convs.
  FluxVae flux(VaeConfig{});
  int64_t n = 0;
  for (const auto& p : flux->parameters()) n += p.numel();
  EXPECT_EQ(n, 83819683);
  EXPECT_EQ(flux->named_parameters().size(), 244u);
}

// ------------------------------------------------------------------------------------------
// Forward passes against the plain-ATen reference.

TEST(VaeForward, EncoderMatchesPlainAtenReference) {
  const auto dir = fresh_temp_dir("vae_encoder_ref");
  const auto file = (dir / "ae.safetensors").string();
  const auto cfg = fixtures::tiny_vae_config();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, cfg, 11);
  auto ae = load(file);
  auto images = test_images({2, 3, 16, 12}, 5);  // not square: catches H/W mix-ups
  auto moments = ae->vae()->encode_moments(images);
  ASSERT_EQ(moments.sizes(), (std::vector<int64_t>{2, 32, 8, 6}));
  auto want = ref_encoder(read_weights(file), images);
  EXPECT_GT(want.abs().mean().item<double>(), 0.05);  // a meaningful signal
  EXPECT_LT(max_abs_diff(moments, want), 2e-4);
  // encode() = the moments split into (mean, logvar).
  auto enc = ae->vae()->encode(images);
  EXPECT_TRUE(torch::equal(enc.mean, moments.narrow(1, 0, 16)));
  EXPECT_TRUE(torch::equal(enc.logvar, moments.narrow(1, 16, 16)));
}

TEST(VaeForward, DecoderMatchesPlainAtenReference) {
  const auto dir = fresh_temp_dir("vae_decoder_ref");
  const auto file = (dir / "ae.safetensors").string();
  const auto cfg = fixtures::tiny_vae_config();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, cfg, 12);
  auto ae = load(file);
  auto z = test_images({2, 16, 6, 5}, 6);
  auto images = ae->vae()->decode(z);
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{2, 3, 12, 10}));
  auto want = ref_decoder(read_weights(file), z);
  EXPECT_GT(want.abs().mean().item<double>(), 0.05);
  EXPECT_LT(max_abs_diff(images, want), 2e-4);
}

TEST(VaeForward, QuantConvsMatchReferenceInBothLayouts) {
  const auto dir = fresh_temp_dir("vae_quant");
  auto cfg = fixtures::tiny_vae_config();
  cfg.use_quant_conv = cfg.use_post_quant_conv = true;
  const auto file = (dir / "ae.safetensors").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, cfg, 13);
  fixtures::write_tiny_vae((dir / "vae").string(), VaeLayout::kDiffusers, cfg, 13);
  auto bfl = load(file);
  auto diffusers = load((dir / "vae").string());
  ASSERT_TRUE(bfl->vae()->quant_conv && bfl->vae()->post_quant_conv);
  ASSERT_TRUE(diffusers->vae()->quant_conv && diffusers->vae()->post_quant_conv);
  const auto w = read_weights(file);
  auto images = test_images({1, 3, 8, 8}, 7);
  auto z = test_images({1, 16, 4, 4}, 8);
  EXPECT_LT(max_abs_diff(bfl->vae()->encode_moments(images), ref_encoder(w, images)), 2e-4);
  EXPECT_LT(max_abs_diff(bfl->vae()->decode(z), ref_decoder(w, z)), 2e-4);
  EXPECT_TRUE(
      torch::equal(diffusers->vae()->encode_moments(images), bfl->vae()->encode_moments(images)));
  EXPECT_TRUE(torch::equal(diffusers->vae()->decode(z), bfl->vae()->decode(z)));
  // Without them in the checkpoint, the module has none (FLUX's case).
  auto plain_cfg = fixtures::tiny_vae_config();
  fixtures::write_tiny_vae((dir / "plain.safetensors").string(), VaeLayout::kBfl, plain_cfg, 13);
  auto plain = load((dir / "plain.safetensors").string());
  EXPECT_FALSE(plain->vae()->quant_conv);
  EXPECT_FALSE(plain->vae()->post_quant_conv);
}

// ------------------------------------------------------------------------------------------
// Layouts, scale and shift, sampling.

TEST(VaeLoad, BflFileAndDiffusersDirectoryGiveIdenticalOutputs) {
  const auto dir = fresh_temp_dir("vae_layouts");
  auto cfg = fixtures::tiny_vae_config();
  cfg.ch_mult = {1, 2, 2};  // three levels: the reversed up-block order matters
  const auto file = (dir / "ae.safetensors").string();
  const auto vae_dir = (dir / "pipeline" / "vae").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, cfg, 21);
  fixtures::write_tiny_vae(vae_dir, VaeLayout::kDiffusers, cfg, 21);
  EXPECT_EQ(detect_vae_layout(file), VaeLayout::kBfl);
  EXPECT_EQ(detect_vae_layout(vae_dir), VaeLayout::kDiffusers);
  auto bfl = load(file);
  auto diffusers = load(vae_dir);
  auto pipeline = load((dir / "pipeline").string());  // a pipeline directory finds vae/
  auto images = test_images({2, 3, 16, 16}, 9);
  auto latents = bfl->encode(images);
  ASSERT_EQ(latents.sizes(), (std::vector<int64_t>{2, 16, 4, 4}));
  EXPECT_TRUE(torch::equal(diffusers->encode(images), latents));
  EXPECT_TRUE(torch::equal(pipeline->encode(images), latents));
  auto decoded = bfl->decode(latents);
  EXPECT_TRUE(torch::equal(diffusers->decode(latents), decoded));
  // And the parameters themselves, attention projections reshaped from Linear to 1x1 conv.
  auto a = bfl->vae()->named_parameters(), b = diffusers->vae()->named_parameters();
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  // Loaded frozen, in eval mode.
  for (const auto& p : a) EXPECT_FALSE(p.value().requires_grad()) << p.key();
  EXPECT_FALSE(bfl->vae()->is_training());
}

TEST(VaeAutoencoder, AppliesFluxScaleAndShift) {
  const auto dir = fresh_temp_dir("vae_scale");
  const auto file = (dir / "ae.safetensors").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, fixtures::tiny_vae_config(), 31);
  auto ae = load(file);
  EXPECT_EQ(ae->latent_channels(), 16);
  EXPECT_EQ(ae->factor(), 2);
  EXPECT_NE(ae->name().find("ae.safetensors"), std::string::npos);
  EXPECT_DOUBLE_EQ(ae->config().scale_factor, 0.3611);
  EXPECT_DOUBLE_EQ(ae->config().shift_factor, 0.1159);
  auto images = test_images({1, 3, 8, 12}, 10);
  auto mean = ae->vae()->encode(images).mean;
  auto latents = ae->encode(images);
  EXPECT_TRUE(torch::allclose(latents, (mean - 0.1159) * 0.3611, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(ae->encode(images), latents));  // deterministic: the posterior mean
  auto decoded = ae->decode(latents);
  auto want = ae->vae()->decode(latents / 0.3611 + 0.1159);
  EXPECT_TRUE(torch::allclose(decoded, want, 1e-5, 1e-5));
  // Encode -> decode through the wrapper = the raw path with the scale and shift by hand.
  EXPECT_TRUE(torch::allclose(decoded, ae->vae()->decode(mean), 1e-4, 1e-4));
  // encode_sample: the sampled posterior, scaled the same way.
  auto g1 = at::detail::createCPUGenerator(3), g2 = at::detail::createCPUGenerator(3);
  auto sampled = ae->encode_sample(images, g1);
  auto raw = sample(ae->vae()->encode(images), g2);
  EXPECT_TRUE(torch::allclose(sampled, (raw - 0.1159) * 0.3611, 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(sampled, latents, 1e-3, 1e-3));
}

TEST(VaeAutoencoder, DiffusersConfigScaleAndShiftAreUsed) {
  const auto dir = fresh_temp_dir("vae_config_scale");
  auto cfg = fixtures::tiny_vae_config();
  cfg.scale_factor = 0.5;
  cfg.shift_factor = -0.25;
  fixtures::write_tiny_vae((dir / "vae").string(), VaeLayout::kDiffusers, cfg, 32);
  auto ae = load((dir / "vae").string());
  EXPECT_DOUBLE_EQ(ae->config().scale_factor, 0.5);
  EXPECT_DOUBLE_EQ(ae->config().shift_factor, -0.25);
  auto images = test_images({1, 3, 8, 8}, 11);
  auto mean = ae->vae()->encode(images).mean;
  EXPECT_TRUE(torch::allclose(ae->encode(images), (mean + 0.25) * 0.5, 1e-6, 1e-6));
  auto z = test_images({1, 16, 4, 4}, 12);
  EXPECT_TRUE(torch::allclose(ae->decode(z), ae->vae()->decode(z / 0.5 - 0.25), 1e-5, 1e-5));
}

TEST(VaeSample, MeanPlusStdTimesNoiseWithAFixedGenerator) {
  auto g = at::detail::createCPUGenerator(99);
  VaeEncoding enc{torch::randn({2, 4, 3, 5}, g), torch::randn({2, 4, 3, 5}, g)};
  auto gen = at::detail::createCPUGenerator(7);
  auto s = sample(enc, gen);
  auto ref_gen = at::detail::createCPUGenerator(7);
  auto noise = torch::randn({2, 4, 3, 5}, ref_gen);
  EXPECT_TRUE(torch::allclose(s, enc.mean + torch::exp(0.5 * enc.logvar) * noise, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(sample(enc, uint64_t{7}), s));
  EXPECT_FALSE(torch::allclose(sample(enc, uint64_t{8}), s));
  // A following draw from the same generator gives new noise.
  EXPECT_FALSE(torch::allclose(sample(enc, gen), s));
  // bf16 in, bf16 out.
  VaeEncoding half{enc.mean.to(torch::kBFloat16), enc.logvar.to(torch::kBFloat16)};
  EXPECT_EQ(sample(half, uint64_t{7}).scalar_type(), torch::kBFloat16);
}

TEST(VaeSample, LogvarIsClampedToMinus30And20) {
  auto moments = torch::zeros({1, 4, 1, 3});
  moments.index_put_({0, 2}, torch::tensor({{50.f, -50.f, 1.5f}}));
  moments.index_put_({0, 0}, torch::tensor({{0.5f, 0.25f, -1.f}}));
  auto enc = split_moments(moments);
  EXPECT_TRUE(torch::equal(enc.mean, moments.narrow(1, 0, 2)));
  EXPECT_TRUE(torch::equal(enc.logvar[0][0][0], torch::tensor({20.f, -30.f, 1.5f})));
  // Through the model: a huge logvar bias is clamped.
  const auto dir = fresh_temp_dir("vae_clamp");
  const auto file = (dir / "ae.safetensors").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, fixtures::tiny_vae_config(), 33);
  auto ae = load(file);
  {
    torch::NoGradGuard no_grad;
    ae->vae()->encoder->conv_out->bias.narrow(0, 16, 16).fill_(1e4);
  }
  auto out = ae->vae()->encode(test_images({1, 3, 8, 8}, 13));
  EXPECT_TRUE(torch::equal(out.logvar, torch::full_like(out.logvar, 20.f)));
}

// ------------------------------------------------------------------------------------------
// Config and shapes.

TEST(VaeConfig, InferredFromBflShapesAndReadFromDiffusersConfig) {
  const auto dir = fresh_temp_dir("vae_infer");
  VaeConfig cfg;
  cfg.in_channels = 4;
  cfg.ch = 32;
  cfg.ch_mult = {1, 3, 2};
  cfg.num_res_blocks = 2;
  cfg.z_channels = 8;
  cfg.out_ch = 5;
  cfg.use_post_quant_conv = true;
  const auto file = (dir / "ae.safetensors").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, cfg, 41);
  auto got = read_vae_config(file);
  EXPECT_EQ(got.in_channels, 4);
  EXPECT_EQ(got.ch, 32);
  EXPECT_EQ(got.ch_mult, (std::vector<int64_t>{1, 3, 2}));
  EXPECT_EQ(got.num_res_blocks, 2);
  EXPECT_EQ(got.z_channels, 8);
  EXPECT_EQ(got.out_ch, 5);
  EXPECT_FALSE(got.use_quant_conv);
  EXPECT_TRUE(got.use_post_quant_conv);
  EXPECT_DOUBLE_EQ(got.scale_factor, 0.3611);  // FLUX's, a BFL file has no config
  EXPECT_DOUBLE_EQ(got.shift_factor, 0.1159);
  EXPECT_EQ(load(file)->vae()->decode(torch::zeros({1, 8, 2, 3})).sizes(),
            (std::vector<int64_t>{1, 5, 8, 12}));

  // A diffusers directory: config.json decides (block_out_channels -> ch x ch_mult, ...).
  cfg.scale_factor = 0.7;
  cfg.shift_factor = 0.05;
  const auto vae_dir = (dir / "vae").string();
  fixtures::write_tiny_vae(vae_dir, VaeLayout::kDiffusers, cfg, 41);
  auto d = read_vae_config(vae_dir);
  EXPECT_EQ(d.ch, 32);
  EXPECT_EQ(d.ch_mult, (std::vector<int64_t>{1, 3, 2}));
  EXPECT_EQ(d.num_res_blocks, 2);
  EXPECT_EQ(d.z_channels, 8);
  EXPECT_EQ(d.in_channels, 4);
  EXPECT_EQ(d.out_ch, 5);
  EXPECT_DOUBLE_EQ(d.scale_factor, 0.7);
  EXPECT_DOUBLE_EQ(d.shift_factor, 0.05);
  EXPECT_TRUE(d.use_post_quant_conv);
  // Without the quant flags in config.json, the tensors decide.
  auto json = fixtures::tiny_vae_diffusers_config(cfg);
  json.erase("use_quant_conv");
  json.erase("use_post_quant_conv");
  fixtures::write_json(vae_dir + "/config.json", json);
  EXPECT_TRUE(read_vae_config(vae_dir).use_post_quant_conv);
  EXPECT_FALSE(read_vae_config(vae_dir).use_quant_conv);
  // The default config is FLUX.1's.
  VaeConfig flux;
  EXPECT_EQ(flux.ch, 128);
  EXPECT_EQ(flux.ch_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(flux.z_channels, 16);
  EXPECT_EQ(flux.factor(), 8);
}

TEST(VaeShape, LatentsAreOneEighthWithFourLevels) {
  const auto dir = fresh_temp_dir("vae_shape");
  auto cfg = fixtures::tiny_vae_config();
  cfg.ch_mult = {1, 1, 1, 1};
  const auto file = (dir / "ae.safetensors").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, cfg, 51);
  auto ae = load(file);
  EXPECT_EQ(ae->factor(), 8);
  auto latents = ae->encode(test_images({1, 3, 32, 24}, 14));
  EXPECT_EQ(latents.sizes(), (std::vector<int64_t>{1, 16, 4, 3}));
  EXPECT_EQ(ae->decode(latents).sizes(), (std::vector<int64_t>{1, 3, 32, 24}));
}

TEST(VaeDtype, Bf16ComputesCloseToFp32) {
  const auto dir = fresh_temp_dir("vae_bf16");
  const auto file = (dir / "ae.safetensors").string();
  fixtures::write_tiny_vae(file, VaeLayout::kBfl, fixtures::tiny_vae_config(), 61);
  auto fp32 = load(file);
  auto bf16 = load(file, torch::kBFloat16);
  {  // the same weights, rounded to bf16, so that what differs is the arithmetic
    torch::NoGradGuard no_grad;
    for (auto& p : fp32->vae()->parameters()) p.copy_(p.to(torch::kBFloat16));
  }
  EXPECT_EQ(bf16->vae()->dtype(), torch::kBFloat16);
  for (const auto& p : bf16->vae()->parameters()) ASSERT_EQ(p.scalar_type(), torch::kBFloat16);
  auto images = test_images({1, 3, 8, 8}, 15);
  auto a = fp32->encode(images), b = bf16->encode(images);
  EXPECT_EQ(b.scalar_type(), torch::kFloat);  // the input's dtype
  auto rel = [](const torch::Tensor& x, const torch::Tensor& y) {
    return ((x - y).norm() / y.norm()).item<double>();
  };
  // bf16 rounding of every activation: ~1%; bf16 accumulation inside the convolutions (libtorch
  // 1.13's CPU kernels without vae_conv's upcast) gives ~5%.
  EXPECT_LT(rel(b, a), 0.025);
  EXPECT_EQ(bf16->vae()->encode(images).mean.scalar_type(), torch::kBFloat16);
  auto z = test_images({1, 16, 4, 4}, 16);
  EXPECT_LT(rel(bf16->decode(z), fp32->decode(z)), 0.025);
}

// ------------------------------------------------------------------------------------------
// Malformed checkpoints: one line naming the file and the tensor.

TEST(VaeLoad, MalformedCheckpointsNameFileAndTensor) {
  const auto dir = fresh_temp_dir("vae_errors");
  const auto cfg = fixtures::tiny_vae_config();
  auto expect_error = [&](const std::string& path, const std::vector<std::string>& parts) {
    const auto msg = error_of([&] { load(path); });
    ASSERT_FALSE(msg.empty()) << path;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };
  auto bfl = [&](const std::string& name, const NamedTensors& t) {
    const auto p = (dir / name).string();
    save_safetensors(p, t);
    return p;
  };
  auto diffusers = [&](const std::string& name, const NamedTensors& t) {
    const auto d = dir / name;
    std::filesystem::create_directories(d);
    fixtures::write_json((d / "config.json").string(), fixtures::tiny_vae_diffusers_config(cfg));
    save_safetensors((d / "diffusion_pytorch_model.safetensors").string(), t);
    return d.string();
  };
  const auto b = bfl_tensors(cfg, 71);
  const auto d = diffusers_tensors(cfg, 71);

  // BFL file: missing, unexpected, wrong shape, missing what config inference needs.
  auto p = bfl("missing.safetensors", without(b, "encoder.mid.attn_1.q.bias"));
  expect_error(p, {p, "'encoder.mid.attn_1.q.bias'", "missing"});
  auto extra = b;
  extra.emplace_back("encoder.mid.attn_1.extra.weight", torch::zeros({2}));
  p = bfl("extra.safetensors", extra);
  expect_error(p, {p, "'encoder.mid.attn_1.extra.weight'", "not part"});
  p = bfl("shape.safetensors", replaced(b, "decoder.conv_out.weight", torch::zeros({3, 32, 1, 1})));
  expect_error(p, {p, "'decoder.conv_out.weight'", "[3, 32, 1, 1]", "[3, 32, 3, 3]"});
  p = bfl("no_conv_in.safetensors", without(b, "encoder.conv_in.weight"));
  expect_error(p, {p, "'encoder.conv_in.weight'", "missing"});
  p = bfl("no_decoder_in.safetensors", without(b, "decoder.conv_in.weight"));
  expect_error(p, {p, "'decoder.conv_in.weight'", "missing"});
  p = bfl("not_vae.safetensors", {{"double_blocks.0.img_attn.qkv.weight", torch::zeros({2})}});
  expect_error(p, {p, "no FLUX autoencoder tensors"});
  // A level whose first conv is not a multiple of ch.
  p = bfl("odd_mult.safetensors",
          replaced(b, "encoder.down.1.block.0.conv1.weight", torch::zeros({48, 32, 3, 3})));
  expect_error(p, {p, "'encoder.down.1.block.0.conv1.weight'"});

  // Diffusers directory: errors name the tensors as diffusers stores them.
  p = diffusers("d_missing", without(d, "decoder.up_blocks.0.upsamplers.0.conv.weight"));
  expect_error(p, {"d_missing/diffusion_pytorch_model.safetensors",
                   "'decoder.up_blocks.0.upsamplers.0.conv.weight'", "missing"});
  p = diffusers("d_attention",
                replaced(d, "encoder.mid_block.attentions.0.to_k.weight", torch::zeros({64, 32})));
  expect_error(p, {"'encoder.mid_block.attentions.0.to_k.weight'", "[64, 32]", "[64, 64]"});
  auto d_extra = d;
  d_extra.emplace_back("encoder.down_blocks.0.attentions.0.to_q.weight", torch::zeros({2}));
  p = diffusers("d_extra", d_extra);
  expect_error(p, {"d_extra/diffusion_pytorch_model.safetensors",
                   "'encoder.down_blocks.0.attentions.0.to_q.weight'", "not part"});
  // config.json that disagrees with the tensors: a shape error naming a tensor.
  p = diffusers("d_config", d);
  auto json = fixtures::tiny_vae_diffusers_config(cfg);
  json["block_out_channels"] = {32, 96};
  fixtures::write_json(p + "/config.json", json);
  expect_error(p, {"diffusion_pytorch_model.safetensors", "has shape", "expects"});
  json = fixtures::tiny_vae_diffusers_config(cfg);
  json["norm_num_groups"] = 16;
  fixtures::write_json(p + "/config.json", json);
  expect_error(p, {"config.json", "norm_num_groups"});
  json = fixtures::tiny_vae_diffusers_config(cfg);
  json["block_out_channels"] = {48, 96};
  fixtures::write_json(p + "/config.json", json);
  expect_error(p, {"config.json", "ch 48"});
  json.erase("block_out_channels");
  fixtures::write_json(p + "/config.json", json);
  expect_error(p, {"config.json", "'block_out_channels'"});
  json = fixtures::tiny_vae_diffusers_config(cfg);
  json["layers_per_block"] = "two";
  fixtures::write_json(p + "/config.json", json);
  expect_error(p, {"config.json", "'layers_per_block'"});
  fixtures::write_text(p + "/config.json", "{\"block_out_channels\": [32, ");
  expect_error(p, {"config.json", "not valid JSON"});

  // Paths.
  expect_error((dir / "nowhere").string(), {"nowhere", "no such file"});
  std::filesystem::create_directories(dir / "empty");
  expect_error((dir / "empty").string(), {"empty", "diffusion_pytorch_model.safetensors"});
}
