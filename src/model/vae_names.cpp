// FLUX autoencoder names, BFL <-> diffusers (see vae_names.h).
#include "model/vae_names.h"

#include <utility>
#include <vector>

namespace fluxtrain {
namespace {

using Tokens = std::vector<std::string>;
using Pairs = std::vector<std::pair<const char*, const char*>>;  // {BFL, diffusers}

// Resnet parts and attention parts (diffusers "to_out.0" is two tokens).
const Pairs kResnetParts = {{"norm1", "norm1"},
                            {"conv1", "conv1"},
                            {"norm2", "norm2"},
                            {"conv2", "conv2"},
                            {"nin_shortcut", "conv_shortcut"}};
const Pairs kAttentionParts = {
    {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};

Tokens split(const std::string& name) {
  Tokens out;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    out.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

std::string join(const Tokens& t, size_t from = 0) {
  std::string out;
  for (size_t i = from; i < t.size(); ++i) {
    if (i > from) out += '.';
    out += t[i];
  }
  return out;
}

// A decimal index without sign or leading zeros, below `limit`; -1 otherwise.
int64_t parse_index(const std::string& s, int64_t limit) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v < limit ? v : -1;
}

bool is_param(const std::string& s) {
  return s == "weight" || s == "bias";
}

// Tail `t[from..]` = [part..., weight|bias] mapped through `parts` (BFL -> diffusers when
// `to_diffusers`, else the reverse); nullopt when it is not one of them.
std::optional<std::string> map_part(const Tokens& t, size_t from, const Pairs& parts,
                                    bool to_diffusers) {
  if (t.size() <= from || !is_param(t.back())) return std::nullopt;
  Tokens head(t.begin() + static_cast<std::ptrdiff_t>(from), t.end() - 1);
  const std::string part = join(head);
  for (const auto& [bfl, diffusers] : parts) {
    const char* src = to_diffusers ? bfl : diffusers;
    const char* dst = to_diffusers ? diffusers : bfl;
    if (part == src) return std::string(dst) + "." + t.back();
  }
  return std::nullopt;
}

std::optional<std::string> prefixed(const std::string& prefix,
                                    const std::optional<std::string>& tail) {
  if (!tail) return std::nullopt;
  return prefix + "." + *tail;
}

}  // namespace

std::string vae_layout_name(VaeLayout layout) {
  return layout == VaeLayout::kBfl ? "BFL" : "diffusers";
}

bool vae_is_attention_projection(const std::string& bfl_name) {
  const Tokens t = split(bfl_name);
  return t.size() == 5 && (t[0] == "encoder" || t[0] == "decoder") && t[1] == "mid" &&
         t[2] == "attn_1" && (t[3] == "q" || t[3] == "k" || t[3] == "v" || t[3] == "proj_out") &&
         t[4] == "weight";
}

std::optional<std::string> vae_bfl_to_diffusers(const std::string& name, int64_t num_levels) {
  const Tokens t = split(name);
  if (t.size() == 2 && (t[0] == "quant_conv" || t[0] == "post_quant_conv") && is_param(t[1]))
    return name;
  if (t.size() < 3 || (t[0] != "encoder" && t[0] != "decoder")) return std::nullopt;
  const std::string& side = t[0];
  const bool encoder = side == "encoder";
  if (t.size() == 3 && (t[1] == "conv_in" || t[1] == "conv_out") && is_param(t[2])) return name;
  if (t.size() == 3 && t[1] == "norm_out" && is_param(t[2])) return side + ".conv_norm_out." + t[2];
  if (t[1] == "mid" && t.size() >= 4) {
    if (t[2] == "block_1" || t[2] == "block_2")
      return prefixed(side + ".mid_block.resnets." + (t[2] == "block_1" ? "0" : "1"),
                      map_part(t, 3, kResnetParts, true));
    if (t[2] == "attn_1")
      return prefixed(side + ".mid_block.attentions.0", map_part(t, 3, kAttentionParts, true));
    return std::nullopt;
  }
  const bool down = encoder && t[1] == "down", up = !encoder && t[1] == "up";
  if (!(down || up) || t.size() < 5) return std::nullopt;
  const int64_t level = parse_index(t[2], num_levels);
  if (level < 0) return std::nullopt;
  const std::string blocks = side + (down ? ".down_blocks." : ".up_blocks.") +
                             std::to_string(down ? level : num_levels - 1 - level);
  if (t[3] == "block") {
    if (parse_index(t[4], 1 << 20) < 0) return std::nullopt;
    return prefixed(blocks + ".resnets." + t[4], map_part(t, 5, kResnetParts, true));
  }
  const char* sampler = down ? "downsample" : "upsample";
  if (t[3] == sampler && t.size() == 6 && t[4] == "conv" && is_param(t[5]))
    return blocks + (down ? ".downsamplers.0.conv." : ".upsamplers.0.conv.") + t[5];
  return std::nullopt;
}

std::optional<std::string> vae_diffusers_to_bfl(const std::string& name, int64_t num_levels) {
  const Tokens t = split(name);
  if (t.size() == 2 && (t[0] == "quant_conv" || t[0] == "post_quant_conv") && is_param(t[1]))
    return name;
  if (t.size() < 3 || (t[0] != "encoder" && t[0] != "decoder")) return std::nullopt;
  const std::string& side = t[0];
  const bool encoder = side == "encoder";
  if (t.size() == 3 && (t[1] == "conv_in" || t[1] == "conv_out") && is_param(t[2])) return name;
  if (t.size() == 3 && t[1] == "conv_norm_out" && is_param(t[2])) return side + ".norm_out." + t[2];
  if (t[1] == "mid_block" && t.size() >= 5) {
    if (t[2] == "resnets" && (t[3] == "0" || t[3] == "1"))
      return prefixed(side + ".mid." + (t[3] == "0" ? "block_1" : "block_2"),
                      map_part(t, 4, kResnetParts, false));
    if (t[2] == "attentions" && t[3] == "0")
      return prefixed(side + ".mid.attn_1", map_part(t, 4, kAttentionParts, false));
    return std::nullopt;
  }
  const bool down = encoder && t[1] == "down_blocks", up = !encoder && t[1] == "up_blocks";
  if (!(down || up) || t.size() < 6) return std::nullopt;
  const int64_t index = parse_index(t[2], num_levels);
  if (index < 0) return std::nullopt;
  const std::string level =
      side + (down ? ".down." : ".up.") + std::to_string(down ? index : num_levels - 1 - index);
  if (t[3] == "resnets") {
    if (parse_index(t[4], 1 << 20) < 0) return std::nullopt;
    return prefixed(level + ".block." + t[4], map_part(t, 5, kResnetParts, false));
  }
  const char* samplers = down ? "downsamplers" : "upsamplers";
  if (t[3] == samplers && t.size() == 7 && t[4] == "0" && t[5] == "conv" && is_param(t[6]))
    return level + (down ? ".downsample.conv." : ".upsample.conv.") + t[6];
  return std::nullopt;
}

}  // namespace fluxtrain
