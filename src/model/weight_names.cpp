// FLUX.1 transformer names, BFL <-> diffusers (see weight_names.h).
#include "model/weight_names.h"

#include "core/device.h"
#include "core/errors.h"

namespace fluxtrain {
namespace {

// Where a rule applies: top level, inside double_blocks.N / transformer_blocks.N, or inside
// single_blocks.N / single_transformer_blocks.N.
enum class Scope { kTop, kDouble, kSingle };

struct Rule {
  Scope scope;
  std::string bfl;                     // tail after the block prefix
  std::vector<std::string> diffusers;  // tails after the block prefix (pieces)
  bool swap_halves = false;
};

// The one table. Linear layers contribute a .weight and a .bias rule, QK norms a .scale rule.
const std::vector<Rule>& rules() {
  static const std::vector<Rule> table = [] {
    std::vector<Rule> r;
    auto linear = [&](Scope s, const std::string& bfl, std::vector<std::string> diffusers,
                      bool swap = false) {
      for (const char* param : {".weight", ".bias"}) {
        std::vector<std::string> d;
        for (const auto& name : diffusers) d.push_back(name + param);
        r.push_back({s, bfl + param, d, swap});
      }
    };
    auto norm = [&](Scope s, const std::string& bfl, const std::string& diffusers) {
      r.push_back({s, bfl + ".scale", {diffusers + ".weight"}});
    };
    const Scope top = Scope::kTop, dbl = Scope::kDouble, sgl = Scope::kSingle;
    linear(top, "img_in", {"x_embedder"});
    linear(top, "txt_in", {"context_embedder"});
    for (auto [bfl, diffusers] :
         {std::pair{"time_in", "timestep_embedder"}, std::pair{"vector_in", "text_embedder"},
          std::pair{"guidance_in", "guidance_embedder"}}) {
      const std::string d = std::string("time_text_embed.") + diffusers;
      linear(top, std::string(bfl) + ".in_layer", {d + ".linear_1"});
      linear(top, std::string(bfl) + ".out_layer", {d + ".linear_2"});
    }
    linear(dbl, "img_mod.lin", {"norm1.linear"});
    linear(dbl, "txt_mod.lin", {"norm1_context.linear"});
    linear(dbl, "img_attn.qkv", {"attn.to_q", "attn.to_k", "attn.to_v"});
    linear(dbl, "txt_attn.qkv", {"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"});
    norm(dbl, "img_attn.norm.query_norm", "attn.norm_q");
    norm(dbl, "img_attn.norm.key_norm", "attn.norm_k");
    norm(dbl, "txt_attn.norm.query_norm", "attn.norm_added_q");
    norm(dbl, "txt_attn.norm.key_norm", "attn.norm_added_k");
    linear(dbl, "img_attn.proj", {"attn.to_out.0"});
    linear(dbl, "txt_attn.proj", {"attn.to_add_out"});
    linear(dbl, "img_mlp.0", {"ff.net.0.proj"});
    linear(dbl, "img_mlp.2", {"ff.net.2"});
    linear(dbl, "txt_mlp.0", {"ff_context.net.0.proj"});
    linear(dbl, "txt_mlp.2", {"ff_context.net.2"});
    linear(sgl, "modulation.lin", {"norm.linear"});
    linear(sgl, "linear1", {"attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"});
    norm(sgl, "norm.query_norm", "attn.norm_q");
    norm(sgl, "norm.key_norm", "attn.norm_k");
    linear(sgl, "linear2", {"proj_out"});
    linear(top, "final_layer.linear", {"proj_out"});
    linear(top, "final_layer.adaLN_modulation.1", {"norm_out.linear"}, /*swap=*/true);
    return r;
  }();
  return table;
}

// Block prefixes per scope: {BFL, diffusers}.
const char* prefix(Scope s, bool diffusers) {
  switch (s) {
    case Scope::kDouble:
      return diffusers ? "transformer_blocks." : "double_blocks.";
    case Scope::kSingle:
      return diffusers ? "single_transformer_blocks." : "single_blocks.";
    default:
      return "";
  }
}

// A decimal index without sign or leading zeros; -1 otherwise.
int64_t parse_index(const std::string& s) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

struct Parsed {
  Scope scope = Scope::kTop;
  std::string block;  // "N." inside a block, "" at top level
  std::string tail;
};

// Splits a name into scope, block index and tail; nullopt for a malformed block index.
std::optional<Parsed> parse(const std::string& name, bool diffusers) {
  for (Scope s : {Scope::kSingle, Scope::kDouble}) {
    const std::string p = prefix(s, diffusers);
    if (name.compare(0, p.size(), p) != 0) continue;
    const size_t dot = name.find('.', p.size());
    if (dot == std::string::npos || parse_index(name.substr(p.size(), dot - p.size())) < 0)
      return std::nullopt;
    return Parsed{s, name.substr(p.size(), dot + 1 - p.size()), name.substr(dot + 1)};
  }
  return Parsed{Scope::kTop, "", name};
}

const Rule* rule_for_bfl(const std::string& bfl, Parsed* parsed) {
  auto p = parse(bfl, false);
  if (!p) return nullptr;
  for (const auto& r : rules())
    if (r.scope == p->scope && r.bfl == p->tail) {
      *parsed = *p;
      return &r;
    }
  return nullptr;
}

std::vector<int64_t> with_rows(std::vector<int64_t> shape, int64_t rows) {
  shape[0] = rows;
  return shape;
}

}  // namespace

std::string weight_layout_name(WeightLayout layout) {
  return layout == WeightLayout::kBfl ? "BFL" : "diffusers";
}

std::optional<std::vector<std::string>> flux_bfl_to_diffusers_names(const std::string& bfl) {
  Parsed p;
  const Rule* r = rule_for_bfl(bfl, &p);
  if (!r) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& d : r->diffusers) out.push_back(prefix(p.scope, true) + p.block + d);
  return out;
}

std::optional<FluxPieceOf> flux_diffusers_to_bfl_name(const std::string& diffusers) {
  auto p = parse(diffusers, true);
  if (!p) return std::nullopt;
  for (const auto& r : rules()) {
    if (r.scope != p->scope) continue;
    for (size_t i = 0; i < r.diffusers.size(); ++i)
      if (r.diffusers[i] == p->tail)
        return FluxPieceOf{prefix(p->scope, false) + p->block + r.bfl, static_cast<int>(i),
                           static_cast<int>(r.diffusers.size())};
  }
  return std::nullopt;
}

std::vector<int64_t> FluxWeightEntry::piece_shape(size_t i) const {
  return with_rows(shape, rows.at(i));
}

FluxWeightTable::FluxWeightTable(const FluxParams& params) : params_(params) {
  for (const auto& s : flux_parameter_shapes(params)) {
    Parsed p;
    const Rule* r = rule_for_bfl(s.name, &p);
    TORCH_CHECK(r != nullptr && !s.shape.empty(), "FluxWeightTable: no rule for ", s.name);
    FluxWeightEntry e;
    e.bfl = s.name;
    e.shape = s.shape;
    e.swap_halves = r->swap_halves;
    const int64_t n = static_cast<int64_t>(r->diffusers.size());
    for (int64_t i = 0; i < n; ++i) {
      e.diffusers.push_back(prefix(p.scope, true) + p.block + r->diffusers[i]);
      e.rows.push_back(i + 1 < n ? params.hidden_size : s.shape[0] - (n - 1) * params.hidden_size);
    }
    TORCH_CHECK(e.rows.back() > 0, "FluxWeightTable: bad split of ", s.name);
    bfl_index_.emplace(e.bfl, entries_.size());
    for (size_t i = 0; i < e.diffusers.size(); ++i)
      diffusers_index_.emplace(e.diffusers[i], std::make_pair(entries_.size(), i));
    entries_.push_back(std::move(e));
  }
}

const FluxWeightEntry* FluxWeightTable::by_bfl(const std::string& bfl) const {
  auto it = bfl_index_.find(bfl);
  return it == bfl_index_.end() ? nullptr : &entries_[it->second];
}

const FluxWeightEntry* FluxWeightTable::by_diffusers(const std::string& diffusers,
                                                     size_t* piece) const {
  auto it = diffusers_index_.find(diffusers);
  if (it == diffusers_index_.end()) return nullptr;
  if (piece) *piece = it->second.second;
  return &entries_[it->second.first];
}

std::string FluxWeightTable::describe() const {
  const auto& p = params_;
  return fmt::format(
      "hidden {}, {} heads, {} double + {} single blocks, mlp ratio {}, qkv bias {}, guidance "
      "input {}",
      p.hidden_size, p.num_heads, p.depth, p.depth_single_blocks, p.mlp_ratio,
      p.qkv_bias ? "yes" : "no", p.guidance_embed ? "yes" : "no");
}

NamedTensors flux_tensor_to_diffusers(const FluxWeightEntry& e, const torch::Tensor& bfl) {
  if (bfl.sizes() != c10::IntArrayRef(e.shape))
    user_error("tensor '{}' has shape {}, expected {}", e.bfl, shape_str(bfl.sizes()),
               shape_str(e.shape));
  torch::Tensor t = bfl;
  if (e.swap_halves) {
    const int64_t h = e.shape[0] / 2;
    t = torch::cat({bfl.narrow(0, h, h), bfl.narrow(0, 0, h)}, 0);
  }
  NamedTensors out;
  int64_t offset = 0;
  for (size_t i = 0; i < e.diffusers.size(); ++i) {
    out.emplace_back(e.diffusers[i], e.diffusers.size() == 1 ? t : t.narrow(0, offset, e.rows[i]));
    offset += e.rows[i];
  }
  return out;
}

torch::Tensor flux_tensor_from_diffusers(const FluxWeightEntry& e,
                                         const std::vector<torch::Tensor>& pieces) {
  TORCH_CHECK(pieces.size() == e.diffusers.size(), "flux_tensor_from_diffusers: ", e.bfl, " has ",
              e.diffusers.size(), " pieces, got ", pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i)
    if (pieces[i].sizes() != c10::IntArrayRef(e.piece_shape(i)))
      user_error("tensor '{}' has shape {}, expected {}", e.diffusers[i],
                 shape_str(pieces[i].sizes()), shape_str(e.piece_shape(i)));
  torch::Tensor t = pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0);
  if (e.swap_halves) {
    const int64_t h = e.shape[0] / 2;
    t = torch::cat({t.narrow(0, h, h), t.narrow(0, 0, h)}, 0);
  }
  return t;
}

NamedTensors bfl_to_diffusers(const NamedTensors& bfl, const FluxParams& params) {
  const FluxWeightTable table(params);
  std::vector<const torch::Tensor*> found(table.entries().size(), nullptr);
  for (const auto& [name, t] : bfl) {
    const FluxWeightEntry* e = table.by_bfl(name);
    if (!e)
      user_error("BFL weights: tensor '{}' is not part of a FLUX transformer with {}", name,
                 table.describe());
    const size_t i = static_cast<size_t>(e - table.entries().data());
    if (found[i]) user_error("BFL weights: tensor '{}' appears twice", name);
    found[i] = &t;
  }
  NamedTensors out;
  for (size_t i = 0; i < found.size(); ++i) {
    const auto& e = table.entries()[i];
    if (!found[i]) user_error("BFL weights: tensor '{}' is missing", e.bfl);
    for (auto& piece : flux_tensor_to_diffusers(e, *found[i])) out.push_back(std::move(piece));
  }
  return out;
}

NamedTensors diffusers_to_bfl(const NamedTensors& diffusers, const FluxParams& params) {
  const FluxWeightTable table(params);
  std::vector<std::vector<torch::Tensor>> found(table.entries().size());
  for (size_t i = 0; i < found.size(); ++i) found[i].resize(table.entries()[i].diffusers.size());
  for (const auto& [name, t] : diffusers) {
    size_t piece = 0;
    const FluxWeightEntry* e = table.by_diffusers(name, &piece);
    if (!e)
      user_error("diffusers weights: tensor '{}' is not part of a FLUX transformer with {}", name,
                 table.describe());
    auto& slot = found[static_cast<size_t>(e - table.entries().data())][piece];
    if (slot.defined()) user_error("diffusers weights: tensor '{}' appears twice", name);
    slot = t;
  }
  NamedTensors out;
  for (size_t i = 0; i < found.size(); ++i) {
    const auto& e = table.entries()[i];
    for (size_t k = 0; k < found[i].size(); ++k)
      if (!found[i][k].defined())
        user_error("diffusers weights: tensor '{}' is missing", e.diffusers[k]);
    out.emplace_back(e.bfl, flux_tensor_from_diffusers(e, found[i]));
  }
  return out;
}

}  // namespace fluxtrain
