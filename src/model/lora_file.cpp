// FLUX.1 LoRA files (see lora_file.h).
#include "model/lora_file.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/device.h"
#include "core/errors.h"
#include "core/strings.h"

namespace fluxtrain {
namespace {

const std::string kComfyPrefix = "diffusion_model.";
const std::string kDiffusersPrefix = "transformer.";

torch::Tensor out_tensor(const torch::Tensor& t, torch::ScalarType dtype) {
  return t.detach().to(torch::kCPU, dtype).contiguous();
}

torch::Tensor swap_halves(const torch::Tensor& t) {
  auto h = t.chunk(2, 0);
  return torch::cat({h[1], h[0]}, 0);
}

// Rows of each diffusers piece of a fused layer with `in` inputs and `out` outputs: every piece
// but the last has `in` (= hidden size) rows (weight_names.h).
std::vector<int64_t> piece_rows(int64_t out, int64_t in, size_t n) {
  std::vector<int64_t> rows(n, in);
  rows.back() = out - static_cast<int64_t>(n - 1) * in;
  return rows;
}

std::string number(double v) {
  return fmt::format("{}", v);
}

// The common value of f over the modules, or "mixed".
template <class F>
std::string common(const LoraWeights& w, F f) {
  std::set<std::string> values;
  for (const auto& m : w.modules) values.insert(number(f(m)));
  return values.size() == 1 ? *values.begin() : "mixed";
}

// ---- Reading.

enum class Role { kDown, kUp, kAlpha, kMagnitude };

struct ParsedKey {
  bool diffusers_names = false;  // module is a diffusers module (else BFL)
  std::string module, layout;
  Role role = Role::kDown;
};

struct Found {
  torch::Tensor down, up, alpha, magnitude;
  std::string key;  // one of its keys, for messages
};

struct PeftConfig {
  std::optional<double> lora_alpha;
  std::map<std::string, double> alpha_pattern;
  bool rslora = false;
};

[[noreturn]] void unknown_key(const std::string& origin, const std::string& key) {
  user_error(
      "{}: key '{}' is no FLUX.1 LoRA tensor fluxtrain reads (expected "
      "diffusion_model.<BFL layer>.lora_A.weight, lora_unet_<BFL layer>.lora_down.weight or "
      "transformer.<diffusers layer>.lora_A.weight, with lora_B/lora_up and .alpha)",
      origin, key);
}

// nullopt for a text-encoder tensor.
std::optional<ParsedKey> parse_key(const std::string& origin, const std::string& key) {
  for (const char* te : {"lora_te", "text_encoder.", "text_encoders.", "text_encoder_2."})
    if (starts_with(key, te)) return std::nullopt;
  static const std::vector<std::pair<std::string, Role>> roles = {
      {".lora_A.weight", Role::kDown},
      {".lora_down.weight", Role::kDown},
      {".lora_B.weight", Role::kUp},
      {".lora_up.weight", Role::kUp},
      {".alpha", Role::kAlpha},
      {".lora_magnitude_vector.weight", Role::kMagnitude},
      {".lora_magnitude_vector", Role::kMagnitude}};
  for (const char* unsupported : {".lora_B.bias", ".lora_up.bias", ".diff_b", ".diff",
                                  ".dora_scale", ".hada_w1_a", ".lokr_w1", ".set_weight"})
    if (ends_with(key, unsupported))
      user_error(
          "{}: key '{}': {} tensors are not applied by fluxtrain (it applies LoRA down/up "
          "matrices, alpha and PEFT's DoRA magnitudes)",
          origin, key, std::string(unsupported).substr(1));
  ParsedKey p;
  std::string stem;
  for (const auto& [suffix, role] : roles)
    if (ends_with(key, suffix)) {
      stem = key.substr(0, key.size() - suffix.size());
      p.role = role;
      break;
    }
  if (stem.empty()) unknown_key(origin, key);
  auto bfl = [&](const std::string& m, const char* layout) -> std::optional<ParsedKey> {
    if (!is_flux_linear_module(m)) unknown_key(origin, key);
    p.module = m;
    p.layout = layout;
    return p;
  };
  auto diffusers = [&](const std::string& m, const char* layout) -> std::optional<ParsedKey> {
    if (!bfl_module_of_diffusers(m)) unknown_key(origin, key);
    p.diffusers_names = true;
    p.module = m;
    p.layout = layout;
    return p;
  };
  if (starts_with(stem, kDiffusersPrefix))
    return diffusers(stem.substr(kDiffusersPrefix.size()), "diffusers");
  if (starts_with(stem, kComfyPrefix)) return bfl(stem.substr(kComfyPrefix.size()), "comfyui");
  if (starts_with(stem, "base_model.model."))
    return bfl(stem.substr(std::string("base_model.model.").size()), "comfyui");
  if (starts_with(stem, "lora_unet_")) {
    const std::string rest = stem.substr(std::string("lora_unet_").size());
    if (auto m = bfl_module_from_underscored(rest)) return bfl(*m, "kohya");
    if (auto m = diffusers_module_from_underscored(rest)) return diffusers(*m, "kohya");
    unknown_key(origin, key);
  }
  if (starts_with(stem, "lora_transformer_")) {
    if (auto m = diffusers_module_from_underscored(stem.substr(17))) return diffusers(*m, "kohya");
    unknown_key(origin, key);
  }
  if (is_flux_linear_module(stem)) return bfl(stem, "comfyui");
  if (bfl_module_of_diffusers(stem)) return diffusers(stem, "diffusers");
  unknown_key(origin, key);
}

PeftConfig peft_config(const std::map<std::string, std::string>& metadata,
                       const std::string& origin) {
  PeftConfig c;
  auto it = metadata.find("lora_adapter_metadata");
  if (it == metadata.end()) return c;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const std::exception& e) {
    user_error("{}: metadata lora_adapter_metadata is not JSON ({})", origin, e.what());
  }
  auto get = [&](const std::string& k) -> const nlohmann::json* {
    for (const std::string& name : {kDiffusersPrefix + k, k})
      if (j.is_object() && j.contains(name)) return &j[name];
    return nullptr;
  };
  if (auto a = get("lora_alpha"); a && a->is_number()) c.lora_alpha = a->get<double>();
  if (auto a = get("alpha_pattern"); a && a->is_object())
    for (auto& [k, v] : a->items())
      if (v.is_number()) c.alpha_pattern[k] = v.get<double>();
  if (auto r = get("use_rslora"); r && r->is_boolean()) c.rslora = r->get<bool>();
  return c;
}

// The alpha of a diffusers module's adapter of `rank`: its .alpha tensor, else PEFT's config
// (alpha_pattern entries match the module name or its dotted tail), else the rank (scale 1).
double peft_alpha(const Found& f, const std::string& module, int64_t rank, const PeftConfig& c) {
  if (f.alpha.defined()) return f.alpha.item<double>();
  std::optional<double> alpha = c.lora_alpha;
  for (const auto& [pattern, a] : c.alpha_pattern)
    if (module == pattern || ends_with(module, "." + pattern)) alpha = a;
  if (!alpha) return static_cast<double>(rank);
  // rsLoRA scales by alpha / sqrt(r): the same as alpha * sqrt(r) / r.
  return c.rslora ? *alpha * std::sqrt(static_cast<double>(rank)) : *alpha;
}

LoraModuleWeights checked(const std::string& origin, const std::string& module, const Found& f) {
  if (!f.down.defined() || !f.up.defined())
    user_error("{}: the adapter on '{}' ({}) has no {} matrix", origin, module, f.key,
               f.down.defined() ? "up (lora_B / lora_up)" : "down (lora_A / lora_down)");
  if (f.down.dim() != 2 || f.up.dim() != 2 || f.down.size(0) != f.up.size(1))
    user_error("{}: the adapter on '{}' has down {} and up {}, expected [r, in] and [out, r]",
               origin, module, shape_str(f.down.sizes()), shape_str(f.up.sizes()));
  if (f.alpha.defined() && f.alpha.numel() != 1)
    user_error("{}: the alpha of '{}' has shape {}, expected one value", origin, module,
               shape_str(f.alpha.sizes()));
  if (f.magnitude.defined() && (f.magnitude.numel() != f.up.size(0)))
    user_error("{}: the DoRA magnitude of '{}' has {} values, expected {} (one per output)", origin,
               module, f.magnitude.numel(), f.up.size(0));
  LoraModuleWeights m;
  m.module = module;
  m.down = f.down.to(torch::kFloat);
  m.up = f.up.to(torch::kFloat);
  m.alpha = f.alpha.defined() ? f.alpha.item<double>() : static_cast<double>(m.rank());
  if (f.magnitude.defined()) m.magnitude = f.magnitude.to(torch::kFloat).flatten();
  return m;
}

// One BFL layer's adapter from its diffusers pieces (some may be missing: zero delta there).
LoraModuleWeights fuse_pieces(const std::string& origin, const std::string& module,
                              const std::vector<std::optional<LoraModuleWeights>>& pieces) {
  const size_t n = pieces.size();
  const LoraModuleWeights* first = nullptr;
  bool all = true, dora = false;
  for (const auto& p : pieces) {
    if (!p) {
      all = false;
      continue;
    }
    if (!first) first = &*p;
    dora = dora || p->magnitude.defined();
    if (p->down.size(1) != first->down.size(1))
      user_error("{}: the pieces of '{}' have {} and {} inputs", origin, module,
                 first->down.size(1), p->down.size(1));
  }
  LoraModuleWeights out;
  out.module = module;
  if (n == 1) {
    out = *pieces[0];
    out.module = module;
    if (lora_swaps_halves(module)) {
      out.up = swap_halves(out.up);
      if (out.magnitude.defined()) out.magnitude = swap_halves(out.magnitude);
    }
    return out;
  }
  if (dora) {
    for (const auto& p : pieces)
      if (!p || !p->magnitude.defined())
        user_error(
            "{}: DoRA adapters on only some of the pieces of '{}' (q, k, v{}): fluxtrain applies "
            "DoRA to whole layers",
            origin, module, n == 4 ? ", proj_mlp" : "");
    std::vector<torch::Tensor> mags;
    for (const auto& p : pieces) mags.push_back(p->magnitude);
    out.magnitude = torch::cat(mags, 0);
  }
  const int64_t in = first->down.size(1);
  bool shared = all;
  for (const auto& p : pieces)
    shared = shared && p->rank() == first->rank() && p->scale() == first->scale() &&
             torch::equal(p->down, first->down);
  if (shared) {  // one down matrix for every piece: a fused adapter of the same rank
    std::vector<torch::Tensor> ups;
    for (const auto& p : pieces) ups.push_back(p->up);
    out.down = first->down;
    out.up = torch::cat(ups, 0);
    out.alpha = first->alpha;
    return out;
  }
  // Stacked down matrices (scales folded in) over a block-diagonal up matrix. A missing piece's
  // rows: the hidden size (q, k, v), or 4 x hidden for proj_mlp (FLUX.1's MLP ratio).
  std::vector<int64_t> rows(n), ranks(n, 0);
  int64_t total_rows = 0, total_rank = 0;
  for (size_t i = 0; i < n; ++i) {
    rows[i] = pieces[i] ? pieces[i]->up.size(0) : (i + 1 < n || n == 3 ? in : 4 * in);
    if (pieces[i]) ranks[i] = pieces[i]->rank();
    total_rows += rows[i];
    total_rank += ranks[i];
  }
  std::vector<torch::Tensor> downs;
  out.up = torch::zeros({total_rows, total_rank}, torch::kFloat);
  for (size_t i = 0, r0 = 0, row0 = 0; i < n; row0 += rows[i], r0 += ranks[i], ++i) {
    if (!pieces[i]) continue;
    downs.push_back(pieces[i]->down * pieces[i]->scale());
    out.up.narrow(0, row0, rows[i]).narrow(1, r0, ranks[i]).copy_(pieces[i]->up);
  }
  out.down = torch::cat(downs, 0);
  out.alpha = static_cast<double>(total_rank);
  return out;
}

}  // namespace

torch::Tensor LoraModuleWeights::delta() const {
  return scale() * torch::matmul(up.to(torch::kFloat), down.to(torch::kFloat));
}

bool LoraWeights::dora() const {
  return std::any_of(modules.begin(), modules.end(),
                     [](const LoraModuleWeights& m) { return m.magnitude.defined(); });
}

const LoraModuleWeights* LoraWeights::find(const std::string& module) const {
  for (const auto& m : modules)
    if (m.module == module) return &m;
  return nullptr;
}

NamedTensors lora_layout_tensors(const LoraWeights& w, LoraLayout layout, torch::ScalarType dtype) {
  NamedTensors out;
  for (const auto& m : w.modules) {
    if (m.magnitude.defined() && layout != LoraLayout::kDiffusers)
      user_error(
          "lora_format {}: DoRA adapters have no {} form (only diffusers/PEFT stores DoRA's "
          "per-output magnitude); use lora_format diffusers",
          lora_layout_name(layout), lora_layout_name(layout));
    const auto alpha = torch::scalar_tensor(m.alpha, torch::kFloat);
    if (layout == LoraLayout::kComfyUI || layout == LoraLayout::kKohya) {
      const bool kohya = layout == LoraLayout::kKohya;
      const std::string base = kohya ? kohya_lora_name(m.module) : kComfyPrefix + m.module;
      out.emplace_back(base + (kohya ? ".lora_down.weight" : ".lora_A.weight"),
                       out_tensor(m.down, dtype));
      out.emplace_back(base + (kohya ? ".lora_up.weight" : ".lora_B.weight"),
                       out_tensor(m.up, dtype));
      out.emplace_back(base + ".alpha", out_tensor(alpha, dtype));
      continue;
    }
    const auto pieces = diffusers_lora_modules(m.module);
    if (pieces.empty()) user_error("LoRA: '{}' is no FLUX linear layer", m.module);
    auto up = m.up.to(torch::kFloat) * m.scale();  // alpha folded in: lora_alpha = r
    auto mag = m.magnitude;
    if (lora_swaps_halves(m.module)) {
      up = swap_halves(up);
      if (mag.defined()) mag = swap_halves(mag);
    }
    const auto rows = piece_rows(up.size(0), m.down.size(1), pieces.size());
    const auto ups = up.split_with_sizes(rows, 0);
    const auto mags = mag.defined() ? mag.split_with_sizes(rows, 0) : std::vector<torch::Tensor>{};
    for (size_t i = 0; i < pieces.size(); ++i) {
      const std::string base = kDiffusersPrefix + pieces[i];
      out.emplace_back(base + ".lora_A.weight", out_tensor(m.down, dtype));
      out.emplace_back(base + ".lora_B.weight", out_tensor(ups[i], dtype));
      if (mag.defined())
        out.emplace_back(base + ".lora_magnitude_vector", out_tensor(mags[i], dtype));
    }
  }
  return out;
}

std::map<std::string, std::string> lora_layout_metadata(const LoraWeights& w, LoraLayout layout,
                                                        const LoraDescription& d) {
  const std::string rank = common(w, [](const LoraModuleWeights& m) { return m.rank(); });
  const std::string alpha = common(w, [](const LoraModuleWeights& m) { return m.alpha; });
  std::map<std::string, std::string> md = {{"format", "pt"},
                                           {"fluxtrain.layout", lora_layout_name(layout)},
                                           {"fluxtrain.rank", rank},
                                           {"fluxtrain.alpha", alpha},
                                           {"fluxtrain.targets", d.targets},
                                           {"fluxtrain.modules", std::to_string(w.modules.size())},
                                           {"fluxtrain.use_dora", w.dora() ? "true" : "false"},
                                           {"fluxtrain.dropout", number(d.dropout)},
                                           {"fluxtrain.base_model", d.base_model},
                                           {"fluxtrain.steps", std::to_string(d.steps)},
                                           {"fluxtrain.version", FLUXTRAIN_COMMIT}};
  if (layout != LoraLayout::kDiffusers) {
    md["modelspec.sai_model_spec"] = "1.0.1";
    md["modelspec.architecture"] = d.architecture + "/lora";
    md["modelspec.implementation"] = "https://github.com/black-forest-labs/flux";
    md["modelspec.title"] = "fluxtrain LoRA";
  }
  if (layout == LoraLayout::kKohya) {
    md["ss_network_module"] = "networks.lora_flux";
    md["ss_network_dim"] = rank;
    md["ss_network_alpha"] = alpha;
    md["ss_base_model_version"] = "flux1";
    md["ss_v2"] = "False";
    md["ss_steps"] = std::to_string(d.steps);
    md["ss_network_dropout"] = number(d.dropout);
  }
  if (layout == LoraLayout::kDiffusers) {
    // Ranks by diffusers module; the most common one is r, the others go to rank_pattern.
    std::map<std::string, int64_t> ranks;
    std::map<int64_t, int64_t> count;
    for (const auto& m : w.modules)
      for (const auto& piece : diffusers_lora_modules(m.module)) {
        ranks[piece] = m.rank();
        ++count[m.rank()];
      }
    int64_t r = 0, best = -1;
    for (const auto& [rk, c] : count)
      if (c > best) best = c, r = rk;
    nlohmann::json rank_pattern = nlohmann::json::object(),
                   alpha_pattern = nlohmann::json::object();
    std::vector<std::string> targets;
    for (const auto& [piece, rk] : ranks) {
      targets.push_back(piece);
      if (rk != r) rank_pattern[piece] = rk, alpha_pattern[piece] = rk;
    }
    nlohmann::json cfg = {{"transformer.r", r},
                          {"transformer.lora_alpha", r},
                          {"transformer.target_modules", targets},
                          {"transformer.rank_pattern", rank_pattern},
                          {"transformer.alpha_pattern", alpha_pattern},
                          {"transformer.use_dora", w.dora()},
                          {"transformer.lora_dropout", d.dropout},
                          {"transformer.lora_bias", false},
                          {"transformer.use_rslora", false},
                          {"transformer.init_lora_weights", true}};
    md["lora_adapter_metadata"] = cfg.dump(2);
  }
  return md;
}

void write_lora_file(const std::string& path, const LoraWeights& w, LoraLayout layout,
                     const LoraDescription& d, torch::ScalarType dtype) {
  save_safetensors(path, lora_layout_tensors(w, layout, dtype), lora_layout_metadata(w, layout, d));
}

LoraWeights lora_from_tensors(const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata,
                              const std::string& origin) {
  LoraWeights w;
  w.origin = origin;
  w.metadata = metadata;
  std::map<std::string, Found> bfl, diffusers;
  std::vector<std::string> order;  // BFL modules in the order first met
  std::set<std::string> layouts;
  for (const auto& [key, t] : tensors) {
    const auto p = parse_key(origin, key);
    if (!p) {
      ++w.text_encoder_tensors;
      continue;
    }
    layouts.insert(p->layout);
    Found& f = (p->diffusers_names ? diffusers : bfl)[p->module];
    torch::Tensor* slot = p->role == Role::kDown    ? &f.down
                          : p->role == Role::kUp    ? &f.up
                          : p->role == Role::kAlpha ? &f.alpha
                                                    : &f.magnitude;
    if (slot->defined())
      user_error("{}: key '{}' sets a tensor of '{}' that another key ({}) already set", origin,
                 key, p->module, f.key);
    *slot = t;
    if (f.key.empty()) f.key = key;
    const std::string module =
        p->diffusers_names ? bfl_module_of_diffusers(p->module)->bfl_module : p->module;
    if (std::find(order.begin(), order.end(), module) == order.end()) order.push_back(module);
  }
  w.layouts.assign(layouts.begin(), layouts.end());
  const PeftConfig peft = peft_config(metadata, origin);
  std::map<std::string, std::vector<std::optional<LoraModuleWeights>>> pieces;
  for (const auto& [module, f] : diffusers) {
    auto m = checked(origin, module, f);
    m.alpha = peft_alpha(f, module, m.rank(), peft);
    const auto of = *bfl_module_of_diffusers(module);
    auto& v = pieces[of.bfl_module];
    v.resize(of.num_pieces);
    v[of.piece] = std::move(m);
  }
  for (const auto& module : order) {
    auto b = bfl.find(module);
    auto d = pieces.find(module);
    if (b != bfl.end() && d != pieces.end())
      user_error("{}: adapters on '{}' in both BFL names ({}) and diffusers names", origin, module,
                 b->second.key);
    w.modules.push_back(b != bfl.end() ? checked(origin, module, b->second)
                                       : fuse_pieces(origin, module, d->second));
  }
  if (w.modules.empty())
    user_error("{}: holds no FLUX.1 transformer LoRA tensors ({} text-encoder tensors)", origin,
               w.text_encoder_tensors);
  return w;
}

LoraWeights read_lora_file(const std::string& path) {
  SafetensorsFile file(path);
  NamedTensors tensors;
  for (const auto& n : file.names()) tensors.emplace_back(n, file.load(n));
  return lora_from_tensors(tensors, file.metadata(), path);
}

std::vector<std::string> lora_layout_gaps(const std::vector<std::string>& modules,
                                          const std::vector<LoraLayout>& layouts) {
  auto has = [&](LoraLayout l) {
    return std::find(layouts.begin(), layouts.end(), l) != layouts.end();
  };
  std::vector<std::string> out;
  if (has(LoraLayout::kDiffusers)) return out;  // diffusers and ComfyUI load it whole
  if (!has(LoraLayout::kKohya)) {
    out.push_back(
        "lora_format comfyui: diffusers loads nothing from this layout (BFL names with "
        "lora_A/lora_B; it has no converter for them): add diffusers or kohya to lora_format "
        "for a file diffusers loads");
    return out;
  }
  std::vector<std::string> dropped;
  for (const auto& m : modules)
    if (is_flux_embedder_or_final(m)) dropped.push_back(m);
  if (!dropped.empty())
    out.push_back(fmt::format(
        "lora_format kohya: diffusers' kohya converter drops the adapters on {} without an error "
        "(ComfyUI loads them): add diffusers to lora_format for a file diffusers loads whole",
        fmt::join(dropped, ", ")));
  return out;
}

}  // namespace fluxtrain
