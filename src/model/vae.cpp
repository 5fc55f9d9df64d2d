// The FLUX autoencoder: posterior sampling, scaled latents and loading from BFL or diffusers
// checkpoints (see vae.h; the blocks are in vae_blocks.cpp).
#include "model/vae.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/device.h"
#include "core/errors.h"
#include "core/strings.h"
#include "io/files.h"
#include "io/safetensors.h"

namespace fluxtrain {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Posterior and the raw autoencoder.

VaeEncoding split_moments(const torch::Tensor& moments) {
  TORCH_CHECK(moments.dim() == 4 && moments.size(1) % 2 == 0,
              "split_moments: expected [B, 2z, h, w], got ", moments.sizes());
  auto parts = moments.chunk(2, 1);
  return {parts[0], parts[1].clamp(-30.0, 20.0)};
}

torch::Tensor sample(const VaeEncoding& encoding, at::Generator& generator) {
  auto noise =
      torch::randn(encoding.mean.sizes(), generator, torch::kFloat).to(encoding.mean.device());
  auto std = torch::exp(0.5 * encoding.logvar.to(torch::kFloat));
  return (encoding.mean.to(torch::kFloat) + std * noise).to(encoding.mean.scalar_type());
}

torch::Tensor sample(const VaeEncoding& encoding, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  return sample(encoding, generator);
}

FluxVaeImpl::FluxVaeImpl(const VaeConfig& cfg) : config(cfg) {
  config.validate();
  encoder = register_module("encoder", VaeEncoder(config));
  decoder = register_module("decoder", VaeDecoder(config));
  const int64_t z = config.z_channels;
  if (config.use_quant_conv)
    quant_conv = register_module(
        "quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * z, 2 * z, 1).bias(true)));
  if (config.use_post_quant_conv)
    post_quant_conv = register_module(
        "post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(z, z, 1).bias(true)));
}

torch::Device FluxVaeImpl::device() const {
  return encoder->conv_in->weight.device();
}
torch::ScalarType FluxVaeImpl::dtype() const {
  return encoder->conv_in->weight.scalar_type();
}

torch::Tensor FluxVaeImpl::encode_moments(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config.in_channels,
              "FluxVae::encode: expected images [B, ", config.in_channels, ", H, W], got ",
              images.sizes());
  auto h = encoder(images.to(device(), dtype()));  // [B, 2z, H/f, W/f]
  if (quant_conv) h = vae_conv(h, quant_conv);
  return h;
}

VaeEncoding FluxVaeImpl::encode(const torch::Tensor& images) {
  return split_moments(encode_moments(images));
}

torch::Tensor FluxVaeImpl::decode(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) == config.z_channels,
              "FluxVae::decode: expected latents [B, ", config.z_channels, ", h, w], got ",
              z.sizes());
  auto h = z.to(device(), dtype());
  if (post_quant_conv) h = vae_conv(h, post_quant_conv);
  return decoder(h);  // [B, out, h f, w f]
}

// ---------------------------------------------------------------------------------------------
// Scaled latents.

FluxAutoencoder::FluxAutoencoder(FluxVae vae, std::string source)
    : vae_(std::move(vae)), source_(std::move(source)) {}

static torch::ScalarType result_dtype(const torch::Tensor& input) {
  return input.is_floating_point() ? input.scalar_type() : torch::kFloat;
}

torch::Tensor FluxAutoencoder::encode(const torch::Tensor& images) {
  const auto& c = vae_->config;
  auto mean = vae_->encode(images).mean.to(torch::kFloat);
  return ((mean - c.shift_factor) * c.scale_factor).to(result_dtype(images));
}

torch::Tensor FluxAutoencoder::encode_sample(const torch::Tensor& images,
                                             at::Generator& generator) {
  const auto& c = vae_->config;
  auto z = sample(vae_->encode(images), generator).to(torch::kFloat);
  return ((z - c.shift_factor) * c.scale_factor).to(result_dtype(images));
}

std::pair<torch::Tensor, torch::Tensor> FluxAutoencoder::encode_moments(
    const torch::Tensor& images) {
  auto e = vae_->encode(images);
  return {e.mean, e.logvar};
}

torch::Tensor FluxAutoencoder::latents_from_moments(const torch::Tensor& mean,
                                                    const torch::Tensor& logvar,
                                                    const torch::Tensor& eps) {
  const auto& c = vae_->config;
  auto z = mean.to(torch::kFloat);
  if (eps.defined()) z = z + (0.5 * logvar.to(torch::kFloat)).exp() * eps.to(z.device());
  return (z - c.shift_factor) * c.scale_factor;
}

torch::Tensor FluxAutoencoder::decode(const torch::Tensor& latents) {
  const auto& c = vae_->config;
  auto z = latents.to(torch::kFloat) / c.scale_factor + c.shift_factor;
  return vae_->decode(z).to(result_dtype(latents));
}

std::string FluxAutoencoder::name() const {
  return "FLUX VAE (" + source_ + ")";
}

// ---------------------------------------------------------------------------------------------
// Checkpoints.

namespace {

// Where a path's tensors and config are.
struct VaeFiles {
  std::string weights;  // a .safetensors file or a sharded index
  std::string config;   // diffusers config.json, "" when there is none
};

std::string vae_weights_in(const fs::path& dir) {  // diffusers' files, or BFL's ae.safetensors
  const std::string diffusers = diffusers_weights_in(dir.string());
  if (!diffusers.empty() || !is_file(dir / "ae.safetensors")) return diffusers;
  return (dir / "ae.safetensors").string();
}

VaeFiles locate_vae(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    user_error(
        "{}: no such file or directory (expected a FLUX VAE: ae.safetensors or a diffusers "
        "vae/ directory)",
        path);
  if (!fs::is_directory(path, ec)) return {path, ""};
  fs::path dir(path);
  if (vae_weights_in(dir).empty() && fs::is_directory(dir / "vae", ec)) dir /= "vae";
  const std::string weights = vae_weights_in(dir);
  if (weights.empty())
    user_error("{}: no {} or {} in this directory (expected a diffusers vae/ directory)", path,
               kDiffusersWeights, kDiffusersIndex);
  return {weights, is_file(dir / "config.json") ? (dir / "config.json").string() : ""};
}

VaeLayout layout_of(const ShardedSafetensors& st) {
  bool bfl = false;
  for (const auto& name : st.names()) {
    for (const char* marker : {".down_blocks.", ".up_blocks.", ".mid_block.", ".conv_norm_out."})
      if (name.find(marker) != std::string::npos) return VaeLayout::kDiffusers;
    if (starts_with(name, "encoder.") || starts_with(name, "decoder.")) bfl = true;
  }
  if (!bfl)
    user_error(
        "{}: no FLUX autoencoder tensors (expected names like "
        "encoder.down.0.block.0.norm1.weight or "
        "encoder.down_blocks.0.resnets.0.norm1.weight)",
        st.path());
  return VaeLayout::kBfl;
}

// The number of resolution levels a diffusers file's names imply (highest down/up block + 1).
int64_t diffusers_levels(const ShardedSafetensors& st) {
  int64_t levels = 0;
  for (const auto& name : st.names())
    for (const char* prefix : {"encoder.down_blocks.", "decoder.up_blocks."})
      if (starts_with(name, prefix)) {
        const std::string rest = name.substr(std::string(prefix).size());
        const size_t dot = rest.find('.');
        try {
          levels = std::max<int64_t>(levels, std::stoll(rest.substr(0, dot)) + 1);
        } catch (const std::exception&) {
          user_error("{}: tensor '{}' is not part of the FLUX autoencoder", st.path(), name);
        }
      }
  return levels;
}

// An opened checkpoint seen through BFL names.
struct VaeCheckpoint {
  std::string path;  // what the user gave
  VaeFiles files;
  std::unique_ptr<ShardedSafetensors> st;
  VaeLayout layout = VaeLayout::kBfl;
  int64_t levels = 0;                       // diffusers name conversion
  std::map<std::string, std::string> keys;  // BFL name -> name as stored

  // The stored name of a BFL name (for messages about tensors that are not there).
  std::string stored_name(const std::string& bfl) const {
    if (layout == VaeLayout::kBfl) return bfl;
    return vae_bfl_to_diffusers(bfl, levels).value_or(bfl);
  }
  bool has(const std::string& bfl) const { return keys.count(bfl) > 0; }
  const std::string& key(const std::string& bfl) const {
    auto it = keys.find(bfl);
    if (it == keys.end()) user_error("{}: tensor '{}' is missing", st->path(), stored_name(bfl));
    return it->second;
  }
  const std::vector<int64_t>& shape(const std::string& bfl) const {
    return st->info(key(bfl)).shape;
  }
  // Size of dimension `d` of a tensor that must have `rank` dimensions.
  int64_t dim(const std::string& bfl, size_t rank, size_t d) const {
    const auto& s = shape(bfl);
    if (s.size() != rank)
      user_error("{}: tensor '{}' has shape {}, expected {} dimensions", st->path(), key(bfl),
                 shape_str(s), rank);
    return s[d];
  }
};

// Reads a diffusers config.json into `cfg` (quant flags: see read_vae_config). Returns which of
// use_quant_conv / use_post_quant_conv it sets.
std::pair<bool, bool> read_diffusers_config(const std::string& path, VaeConfig& cfg) {
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) user_error("{}: expected a JSON object (a diffusers VAE config)", path);
  auto get = [&](const char* key, auto fallback) {
    using T = decltype(fallback);
    if (!j.contains(key) || j[key].is_null()) return fallback;
    try {
      return j[key].get<T>();
    } catch (const nlohmann::json::exception&) {
      user_error("{}: '{}' has the wrong type ({})", path, key, j[key].dump());
    }
  };
  if (!j.contains("block_out_channels"))
    user_error("{}: 'block_out_channels' is missing (a diffusers VAE config)", path);
  const auto blocks = get("block_out_channels", std::vector<int64_t>{});
  if (blocks.empty() || blocks[0] <= 0)
    user_error("{}: 'block_out_channels' must be a non-empty list of positive channel counts",
               path);
  cfg.ch = blocks[0];
  cfg.ch_mult.clear();
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] % cfg.ch)
      user_error("{}: block_out_channels[{}] = {} is not a multiple of block_out_channels[0] = {}",
                 path, i, blocks[i], cfg.ch);
    cfg.ch_mult.push_back(blocks[i] / cfg.ch);
  }
  // Defaults are diffusers' AutoencoderKL defaults.
  cfg.num_res_blocks = get("layers_per_block", int64_t{1});
  cfg.z_channels = get("latent_channels", int64_t{4});
  cfg.in_channels = get("in_channels", int64_t{3});
  cfg.out_ch = get("out_channels", int64_t{3});
  cfg.scale_factor = get("scaling_factor", 0.18215);
  cfg.shift_factor = get("shift_factor", 0.0);
  if (get("norm_num_groups", int64_t{32}) != 32)
    user_error("{}: norm_num_groups {} is not supported (the FLUX autoencoder uses 32)", path,
               j["norm_num_groups"].dump());
  if (get("act_fn", std::string("silu")) != "silu")
    user_error("{}: act_fn {} is not supported (the FLUX autoencoder uses silu)", path,
               j["act_fn"].dump());
  if (!get("mid_block_add_attention", true))
    user_error("{}: mid_block_add_attention false is not supported", path);
  for (const char* key : {"down_block_types", "up_block_types"})
    if (j.contains(key) && get(key, std::vector<std::string>{}).size() != blocks.size())
      user_error("{}: '{}' has {} entries, block_out_channels {}", path, key, j[key].size(),
                 blocks.size());
  const bool has_quant = j.contains("use_quant_conv") && !j["use_quant_conv"].is_null();
  const bool has_post = j.contains("use_post_quant_conv") && !j["use_post_quant_conv"].is_null();
  if (has_quant) cfg.use_quant_conv = get("use_quant_conv", false);
  if (has_post) cfg.use_post_quant_conv = get("use_post_quant_conv", false);
  return {has_quant, has_post};
}

VaeCheckpoint open_checkpoint(const std::string& path) {
  VaeCheckpoint ck;
  ck.path = path;
  ck.files = locate_vae(path);
  ck.st = std::make_unique<ShardedSafetensors>(ck.files.weights);
  ck.layout = layout_of(*ck.st);
  if (ck.layout == VaeLayout::kDiffusers) {
    ck.levels = diffusers_levels(*ck.st);
    if (!ck.files.config.empty()) {  // the config decides the level count when there is one
      VaeConfig cfg;
      read_diffusers_config(ck.files.config, cfg);
      ck.levels = static_cast<int64_t>(cfg.ch_mult.size());
    }
  }
  for (const auto& name : ck.st->names()) {
    std::string bfl = name;
    if (ck.layout == VaeLayout::kDiffusers) {
      auto converted = vae_diffusers_to_bfl(name, ck.levels);
      if (!converted)
        user_error("{}: tensor '{}' is not part of the FLUX autoencoder", ck.st->path(), name);
      bfl = *converted;
    }
    ck.keys.emplace(bfl, name);
  }
  return ck;
}

VaeConfig infer_config(const VaeCheckpoint& ck) {
  VaeConfig cfg;  // FLUX scale and shift (a BFL file carries no config)
  cfg.ch = ck.dim("encoder.conv_in.weight", 4, 0);
  cfg.in_channels = ck.dim("encoder.conv_in.weight", 4, 1);
  cfg.ch_mult.clear();
  for (int64_t i = 0;; ++i) {
    const std::string conv1 = fmt::format("encoder.down.{}.block.0.conv1.weight", i);
    if (i > 0 && !ck.has(conv1)) break;
    const int64_t out = ck.dim(conv1, 4, 0);
    if (cfg.ch <= 0 || out % cfg.ch)
      user_error(
          "{}: tensor '{}' has {} output channels, not a multiple of ch = {} "
          "(encoder.conv_in)",
          ck.st->path(), ck.key(conv1), out, cfg.ch);
    cfg.ch_mult.push_back(out / cfg.ch);
  }
  cfg.num_res_blocks = 0;
  while (ck.has(fmt::format("encoder.down.0.block.{}.conv1.weight", cfg.num_res_blocks)))
    ++cfg.num_res_blocks;
  cfg.z_channels = ck.dim("decoder.conv_in.weight", 4, 1);
  cfg.out_ch = ck.dim("decoder.conv_out.weight", 4, 0);
  cfg.use_quant_conv = ck.has("quant_conv.weight");
  cfg.use_post_quant_conv = ck.has("post_quant_conv.weight");
  return cfg;
}

// The checkpoint's config, validated (errors name the config file or the weights file).
VaeConfig config_of(const VaeCheckpoint& ck) {
  VaeConfig cfg;
  if (ck.files.config.empty()) {
    cfg = infer_config(ck);
  } else {
    const auto [has_quant, has_post] = read_diffusers_config(ck.files.config, cfg);
    if (!has_quant) cfg.use_quant_conv = ck.has("quant_conv.weight");
    if (!has_post) cfg.use_post_quant_conv = ck.has("post_quant_conv.weight");
  }
  try {
    cfg.validate();
  } catch (const UserError& e) {
    user_error("{}: {}", ck.files.config.empty() ? ck.st->path() : ck.files.config, e.what());
  }
  return cfg;
}

}  // namespace

VaeLayout detect_vae_layout(const std::string& path) {
  const auto files = locate_vae(path);
  return layout_of(ShardedSafetensors(files.weights));
}

VaeConfig read_vae_config(const std::string& path) {
  return config_of(open_checkpoint(path));
}

std::shared_ptr<FluxAutoencoder> load_flux_vae(const std::string& path, torch::Device device,
                                               torch::ScalarType dtype) {
  const auto ck = open_checkpoint(path);
  const auto cfg = config_of(ck);
  FluxVae vae(cfg);
  vae->to(device, dtype);

  // Check every name and shape before reading any data.
  std::set<std::string> used;
  std::vector<std::pair<std::string, torch::Tensor>> targets;  // stored name, parameter
  for (auto& p : vae->named_parameters()) {
    const std::string& bfl = p.key();
    const std::string& key = ck.key(bfl);  // UserError when missing
    const auto& stored = ck.st->info(key).shape;
    const auto want = p.value().sizes();
    bool ok = c10::IntArrayRef(stored) == want;
    if (!ok && vae_is_attention_projection(bfl) && ck.layout == VaeLayout::kDiffusers)
      ok = c10::IntArrayRef(stored) == want.slice(0, 2);  // Linear [C, C] for a 1x1 conv
    if (!ok) {
      const auto expected = vae_is_attention_projection(bfl) && ck.layout == VaeLayout::kDiffusers
                                ? shape_str(want.slice(0, 2))
                                : shape_str(want);
      user_error("{}: tensor '{}' has shape {}, the autoencoder expects {}",
                 ck.st->shard_for(key).path(), key, shape_str(stored), expected);
    }
    used.insert(key);
    targets.emplace_back(key, p.value());
  }
  for (const auto& name : ck.st->names())
    if (!used.count(name))
      user_error(
          "{}: tensor '{}' is not part of the FLUX autoencoder (ch {}, {} levels, {} "
          "blocks per level)",
          ck.st->path(), name, cfg.ch, cfg.ch_mult.size(), cfg.num_res_blocks);

  {
    torch::NoGradGuard no_grad;
    for (auto& [key, param] : targets)
      param.copy_(ck.st->load(key, dtype, device).reshape(param.sizes()));
  }
  for (auto& p : vae->parameters()) p.set_requires_grad(false);
  vae->eval();
  return std::make_shared<FluxAutoencoder>(vae, path);
}

}  // namespace fluxtrain
