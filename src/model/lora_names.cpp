// LoRA layout names (see lora_names.h).
#include "model/lora_names.h"

#include <map>
#include <regex>

#include "core/errors.h"
#include "model/weight_names.h"

namespace fluxtrain {
namespace {

const std::string kWeight = ".weight";

std::string underscored(std::string s) {
  for (auto& c : s)
    if (c == '.') c = '_';
  return s;
}

std::string strip_weight(const std::string& name) {
  return name.substr(0, name.size() - kWeight.size());
}

// Underscored -> dotted module names of one architecture-free table: the linear layers of a
// model with one block of each kind and every embedder, block indices replaced by N.
struct UnderscoreTable {
  // (scope prefix) -> underscored tail -> dotted tail; scope "" is the top level.
  std::map<std::string, std::map<std::string, std::string>> bfl, diffusers;
};

const UnderscoreTable& underscore_table() {
  static const UnderscoreTable table = [] {
    FluxParams p;
    p.hidden_size = 64;
    p.num_heads = 2;
    p.axes_dim = {4, 14, 14};
    p.depth = 1;
    p.depth_single_blocks = 1;
    p.guidance_embed = true;
    UnderscoreTable t;
    auto add = [](std::map<std::string, std::map<std::string, std::string>>& m,
                  const std::string& module) {
      for (const char* scope : {"double_blocks.0.", "single_blocks.0.", "transformer_blocks.0.",
                                "single_transformer_blocks.0."}) {
        const std::string s(scope);
        if (module.rfind(s, 0) == 0) {
          const std::string tail = module.substr(s.size());
          m[s.substr(0, s.find('.'))][underscored(tail)] = tail;
          return;
        }
      }
      m[""][underscored(module)] = module;
    };
    const FluxWeightTable weights(p);  // (a named object: entries() refers into it)
    for (const auto& e : weights.entries()) {
      if (e.shape.size() != 2 || e.bfl.size() < kWeight.size() ||
          e.bfl.compare(e.bfl.size() - kWeight.size(), kWeight.size(), kWeight) != 0)
        continue;
      add(t.bfl, strip_weight(e.bfl));
      for (const auto& d : e.diffusers) add(t.diffusers, strip_weight(d));
    }
    return t;
  }();
  return table;
}

std::optional<std::string> from_underscored(
    const std::map<std::string, std::map<std::string, std::string>>& table,
    const std::string& name) {
  static const std::regex block(
      R"(^(double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)_([0-9]+)_(.+)$)");
  std::smatch m;
  std::string scope, tail = name, index;
  if (std::regex_match(name, m, block)) {
    scope = m[1];
    index = m[2];
    tail = m[3];
  }
  auto s = table.find(scope);
  if (s == table.end()) return std::nullopt;
  auto t = s->second.find(tail);
  if (t == s->second.end()) return std::nullopt;
  return scope.empty() ? t->second : scope + "." + index + "." + t->second;
}

}  // namespace

// Each layout's name and the file a checkpoint holds for it.
struct LayoutNames {
  LoraLayout layout;
  const char *name, *file;
};
constexpr LayoutNames kLayouts[] = {
    {LoraLayout::kComfyUI, "comfyui", "lora_comfyui.safetensors"},
    {LoraLayout::kDiffusers, "diffusers", "pytorch_lora_weights.safetensors"},
    {LoraLayout::kKohya, "kohya", "lora_kohya.safetensors"}};

const LayoutNames& names_of(LoraLayout layout) {
  for (const auto& l : kLayouts)
    if (l.layout == layout) return l;
  return kLayouts[0];  // (every enumerator is in the table)
}

std::string lora_layout_name(LoraLayout layout) {
  return names_of(layout).name;
}

std::vector<LoraLayout> parse_lora_formats(const std::string& value) {
  std::vector<LoraLayout> out;
  auto add = [&](LoraLayout l) {
    for (auto x : out)
      if (x == l) return;
    out.push_back(l);
  };
  size_t start = 0;
  while (start <= value.size()) {
    size_t end = value.find(',', start);
    if (end == std::string::npos) end = value.size();
    const std::string v = value.substr(start, end - start);
    const LayoutNames* named = nullptr;
    for (const auto& l : kLayouts)
      if (v == l.name) named = &l;
    if (v == "all") {
      for (const auto& l : kLayouts) add(l.layout);
    } else if (named) {
      add(named->layout);
    } else {
      user_error("lora_format: '{}' (expected comfyui, diffusers, kohya or all, comma-separated)",
                 v);
    }
    start = end + 1;
  }
  return out;
}

std::string lora_file_name(LoraLayout layout) {
  return names_of(layout).file;
}

std::string kohya_lora_name(const std::string& bfl_module) {
  return "lora_unet_" + underscored(bfl_module);
}

std::optional<std::string> bfl_module_from_underscored(const std::string& name) {
  return from_underscored(underscore_table().bfl, name);
}

std::optional<std::string> diffusers_module_from_underscored(const std::string& name) {
  return from_underscored(underscore_table().diffusers, name);
}

bool is_flux_linear_module(const std::string& bfl_module) {
  return bfl_module_from_underscored(underscored(bfl_module)) == bfl_module;
}

std::vector<std::string> diffusers_lora_modules(const std::string& bfl_module) {
  std::vector<std::string> out;
  if (auto names = flux_bfl_to_diffusers_names(bfl_module + kWeight))
    for (const auto& n : *names) out.push_back(strip_weight(n));
  return out;
}

std::optional<LoraPieceOf> bfl_module_of_diffusers(const std::string& diffusers_module) {
  auto p = flux_diffusers_to_bfl_name(diffusers_module + kWeight);
  if (!p || p->bfl.size() < kWeight.size() ||
      p->bfl.compare(p->bfl.size() - kWeight.size(), kWeight.size(), kWeight) != 0)
    return std::nullopt;
  return LoraPieceOf{strip_weight(p->bfl), p->piece, p->num_pieces};
}

bool lora_swaps_halves(const std::string& bfl_module) {
  return bfl_module == "final_layer.adaLN_modulation.1";
}

bool is_flux_embedder_or_final(const std::string& m) {
  return m.rfind("double_blocks.", 0) != 0 && m.rfind("single_blocks.", 0) != 0;
}

}  // namespace fluxtrain
