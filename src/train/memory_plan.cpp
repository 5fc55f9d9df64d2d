// The memory plan (see memory_plan.h).
//
// Activations per token, in units of H (hidden size) elements, counted from the blocks' code
// (model/layers.cpp) as the tensors autograd keeps for backward:
//   double block, per stream token: layer norm input 1 + modulated output 1 (modulate), qkv
//     input 1, the q/k RMS norms' products 4, q k v after the streams' concatenation 3, RoPE's
//     outputs 2, attention output 1, its [B, L, H] copy (proj input) 1, gated proj output 1,
//     second modulate 2, MLP input 1, GELU input 4, second MLP input 4, gated MLP output 1: 27;
//   single block, per token: modulate 2, linear1 input 1 and output 7 (kept whole by the views
//     GELU and the q/k norms take of it), q/k norm products 2, RoPE outputs 2, attention output
//     1 and its copy 1, linear2 input (attention + GELU output) 5, gated output 1 ... less what
//     is shared: 24 in all.
// A LoRA adapter adds its rank-r intermediate per token; on the CPU the attention probabilities
// (heads x L^2, float32) of every block not checkpointed are kept too.
#include "train/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "core/errors.h"
#include "core/log.h"
#include "model/block_swap.h"
#include "model/flux_weights.h"
#include "model/presets.h"
#include "model/vae.h"
#include "sample/flux_model.h"
#include "sample/model_files.h"
#include "train/lora_model.h"

namespace fluxtrain {
namespace {

constexpr double kDoubleBlockPerToken = 27, kSingleBlockPerToken = 24;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double dtype_bytes(torch::ScalarType t) {
  return static_cast<double>(c10::elementSize(t));
}

bool is_linear_weight(const ParamShape& p) {
  return p.shape.size() == 2 && p.name.size() > 7 &&
         p.name.compare(p.name.size() - 7, 7, ".weight") == 0;
}

// The block (0.. depth - 1 double, then the single blocks) a block parameter belongs to, or -1.
int64_t block_of(const std::string& name, const FluxParams& params) {
  if (!is_flux_block_name(name)) return -1;
  const auto first = name.find('.'), second = name.find('.', first + 1);
  const int64_t index = std::stoll(name.substr(first + 1, second - first - 1));
  return name.rfind("single_blocks.", 0) == 0 ? params.depth + index : index;
}

// The trainable tensors' sizes (numel each) and their dtype bytes.
struct Trainable {
  std::vector<int64_t> tensors;
  double bytes_per_value = 4;
  int64_t values() const {
    int64_t n = 0;
    for (auto t : tensors) n += t;
    return n;
  }
};

double optimizer_bytes(const Trainable& t, const AdamWOptions& a) {
  double bytes = 0;
  for (int64_t n : t.tensors) {
    if (a.state_8bit && n >= a.min_8bit_size) {
      const double blocks = std::ceil(static_cast<double>(n) / static_cast<double>(a.block_size));
      bytes += 2.0 * n + 2 * 4.0 * blocks;
    } else {
      bytes += (a.state_8bit ? 8.0 : 2 * dtype_bytes(a.state_dtype)) * static_cast<double>(n);
    }
  }
  return bytes;
}

// Activation bytes of the blocks: `kinds` lists each block (false: double, true: single) with its
// LoRA ranks per token (elements per token beyond the block's own).
struct PlannedBlock {
  bool single = false;
  double extra_per_token = 0;  // LoRA intermediates (elements per sample)
  int64_t index = 0;  // in its stack (the base's or the ControlNet's), double blocks then single
                      // ones: the count checkpointing_every applies to, as FluxImpl counts
};

double activation_bytes(const std::vector<PlannedBlock>& blocks, const TrainOptions& o, int64_t H,
                        int64_t heads, int64_t Li, int64_t Lt, std::string* how,
                        double* largest_block) {
  const double B = static_cast<double>(o.batch_size), L = static_cast<double>(Li + Lt);
  const double cb = dtype_bytes(o.precision);
  const bool cpu = !o.device.is_cuda();
  const double probs = cpu ? static_cast<double>(heads) * L * L * 4.0 : 0.0;
  double kept = 0, largest_full = 0;
  *largest_block = 0;
  int checkpointed = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const double per_token = blocks[i].single ? kSingleBlockPerToken : kDoubleBlockPerToken;
    const double full = B * ((per_token * H * L + blocks[i].extra_per_token) * cb + probs);
    *largest_block = std::max(*largest_block, full);
    const bool ckpt = o.gradient_checkpointing &&
                      blocks[i].index % std::max<int64_t>(1, o.gradient_checkpointing_every) == 0;
    if (ckpt) {
      kept += B * H * L * cb;  // the block's inputs
      largest_full = std::max(largest_full, full);
      ++checkpointed;
    } else {
      kept += full;
    }
  }
  const double final_layer = B * 2.0 * H * static_cast<double>(Li) * cb;
  *how = fmt::format("{} blocks ({} checkpointed), {} tokens x {} batch, {} B per value{}",
                     blocks.size(), checkpointed, Li + Lt, o.batch_size, cb,
                     cpu ? ", attention probabilities kept (CPU math attention)" : "");
  return kept + largest_full + final_layer;
}

}  // namespace

double MemoryPlan::total() const {
  double t = 0;
  for (const auto& p : parts) t += p.bytes;
  return t;
}

double MemoryPlan::part(const std::string& name) const {
  for (const auto& p : parts)
    if (p.name == name) return p.bytes;
  return 0;
}

MemoryPlan plan_training_memory(const TrainOptions& o, const FluxParams& params,
                                int64_t image_tokens, int64_t text_tokens) {
  const int64_t H = params.hidden_size;
  const int64_t Li = image_tokens, Lt = text_tokens;
  const auto shapes = flux_parameter_shapes(params);
  const double wb = dtype_bytes(o.weights);
  const bool quantized = o.base_weights != BaseWeights::kDense;
  MemoryPlan plan;

  // Weights of the transformer; block swap keeps the swapped blocks' linear weights on the host
  // and three swapped blocks' worth on the device (on the CPU host and device memory are one: the
  // swap saves nothing there, and two blocks' copies come on top).
  const BlockSwapSplit split = block_swap_split(params, o.blocks_to_swap);
  auto in_swap = [&](const ParamShape& p) {
    const int64_t b = block_of(p.name, params);
    if (b < 0 || !is_linear_weight(p)) return false;
    return b < params.depth ? b >= params.depth - split.double_blocks
                            : b - params.depth >= params.depth_single_blocks - split.single_blocks;
  };
  auto swapped = [&](const ParamShape& p) { return o.device.is_cuda() && in_swap(p); };
  double base_bytes = 0, host_bytes = 0;
  std::map<int64_t, double> swapped_block_bytes;
  int64_t largest_block_linear = 0, base_values = 0, largest_swapped = 0;
  std::vector<std::string> linear_layers;
  std::map<std::string, std::vector<int64_t>> linear_shape;
  for (const auto& p : shapes) {
    base_values += p.numel();
    if (is_linear_weight(p)) {
      const std::string layer = p.name.substr(0, p.name.size() - 7);
      linear_layers.push_back(layer);
      linear_shape[layer] = p.shape;
    }
    double bytes = wb * static_cast<double>(p.numel());
    if (quantized && is_flux_block_name(p.name) && is_linear_weight(p)) {
      bytes = static_cast<double>(p.numel()) + 4.0 * static_cast<double>(p.shape[0]);
      largest_block_linear = std::max(largest_block_linear, p.numel());
    }
    if (in_swap(p)) {
      swapped_block_bytes[block_of(p.name, params)] += bytes;
      largest_swapped = std::max(largest_swapped, p.numel());
    }
    if (swapped(p))
      host_bytes += bytes;
    else
      base_bytes += bytes;
  }
  std::vector<double> per_block;
  for (const auto& [b, bytes] : swapped_block_bytes) per_block.push_back(bytes);
  std::sort(per_block.rbegin(), per_block.rend());
  // Two blocks held, and on CUDA an evicted one's memory until the compute stream is done with it.
  double swap_window = 0;
  const size_t window = o.device.is_cuda() ? 3 : 2;
  for (size_t k = 0; k < std::min(window, per_block.size()); ++k) swap_window += per_block[k];
  base_bytes += swap_window;

  // What trains.
  Trainable t;
  int64_t host_trained = 0;          // swapped trained weights (method full): updated on the host
  std::vector<PlannedBlock> blocks;  // the base's double then single blocks, then a ControlNet's
  for (int64_t i = 0; i < params.depth; ++i) blocks.push_back({false, 0, i});
  for (int64_t i = 0; i < params.depth_single_blocks; ++i)
    blocks.push_back({true, 0, params.depth + i});
  double extra_bytes = 0;
  std::string what;
  if (o.method == "full") {
    std::vector<std::string> names;
    for (const auto& p : shapes) names.push_back(p.name);
    const auto chosen = select_parameters(names, o.train_blocks);
    std::map<std::string, const ParamShape*> by_name;
    for (const auto& p : shapes) by_name[p.name] = &p;
    for (const auto& n : chosen) {
      const ParamShape& p = *by_name[n];
      // A swapped weight's gradient, moments and EMA are on the host.
      if (swapped(p))
        host_trained += p.numel();
      else
        t.tensors.push_back(p.numel());
    }
    t.bytes_per_value = wb;
    what = o.train_blocks.empty() ? "full fine-tune" : "full fine-tune of train_blocks";
  } else if (o.method == "lora") {
    const int64_t r = o.lora.adapter.rank;
    for (const auto& layer : lora_target_layers(linear_layers, o.lora.targets)) {
      const auto& s = linear_shape[layer];
      t.tensors.push_back(r * s[1]);  // down [r, in]
      t.tensors.push_back(s[0] * r);  // up [out, r]
      if (o.lora.adapter.dora) t.tensors.push_back(s[0]);
      // The rank-r intermediate per token of the layer's stream.
      if (const int64_t b = block_of(layer, params); b >= 0) {
        const bool single = b >= params.depth;
        const bool txt = !single && layer.find(".txt_") != std::string::npos;
        const double tokens = single ? Li + Lt : (txt ? Lt : Li);
        blocks[static_cast<size_t>(b)].extra_per_token += static_cast<double>(r) * tokens;
      }
    }
    what = fmt::format("lora rank {}{}", r, o.lora.adapter.dora ? " (DoRA)" : "");
  } else if (o.method == "controlnet") {
    FluxParams c = params;
    c.depth = o.controlnet.double_blocks;
    c.depth_single_blocks = o.controlnet.single_blocks;
    for (const auto& p : flux_parameter_shapes(c))
      if (p.name.rfind("final_layer.", 0) != 0) t.tensors.push_back(p.numel());
    for (int64_t i = 0; i < c.depth + c.depth_single_blocks; ++i) {
      t.tensors.push_back(H * H);
      t.tensors.push_back(H);
    }
    t.tensors.push_back(H * params.in_channels);
    t.tensors.push_back(H);
    for (int64_t i = 0; i < c.depth; ++i) blocks.push_back({false, 0, i});
    for (int64_t i = 0; i < c.depth_single_blocks; ++i) blocks.push_back({true, 0, c.depth + i});
    what = fmt::format("controlnet {} double + {} single blocks", c.depth, c.depth_single_blocks);
  } else {
    user_error("method '{}': expected full, lora or controlnet", o.method);
  }
  if (o.method != "full") extra_bytes = 4.0 * static_cast<double>(t.values());

  plan.parts.push_back(
      {"weights", base_bytes + extra_bytes,
       fmt::format(
           "{} base values ({}{}){}{}", base_values,
           quantized ? base_weights_name(o.base_weights) + " block linear weights, " : "",
           o.weights == torch::kFloat ? "fp32" : "bf16",
           extra_bytes > 0 ? fmt::format(" + {} trained values in fp32", t.values()) : "",
           split.double_blocks + split.single_blocks > 0
               ? (o.device.is_cuda()
                      ? fmt::format("; block swap: {} blocks' linear weights ({:.2f} GiB) on the "
                                    "host, three blocks' copies ({:.2f} GiB) here",
                                    split.double_blocks + split.single_blocks, host_bytes / kGiB,
                                    swap_window / kGiB)
                      : fmt::format("; block swap: + two blocks' copies ({:.2f} GiB; on the CPU "
                                    "the host is the device)",
                                    swap_window / kGiB))
               : "")});
  const double largest =
      t.tensors.empty()
          ? 0.0
          : static_cast<double>(*std::max_element(t.tensors.begin(), t.tensors.end()));
  plan.parts.push_back(
      {"gradients",
       t.bytes_per_value * (o.optimizer_in_backward ? largest : static_cast<double>(t.values())),
       fmt::format("{}{}",
                   o.optimizer_in_backward
                       ? "the largest trainable tensor's (optimizer_in_backward)"
                       : fmt::format("{} trainable values", format_thousands(t.values())),
                   host_trained > 0 ? fmt::format(" (+ {} swapped values' on the host)",
                                                  format_thousands(host_trained))
                                    : "")});
  plan.parts.push_back({"optimizer", optimizer_bytes(t, o.adamw),
                        o.adamw.state_8bit
                            ? "AdamW, 8-bit moments"
                            : (o.adamw.state_dtype == torch::kFloat ? "AdamW, fp32 moments"
                                                                    : "AdamW, bf16 moments")});
  const bool ema_here = o.ema_decay > 0 && !(o.ema_on_cpu && o.device.is_cuda());
  plan.parts.push_back({"ema", ema_here ? 4.0 * static_cast<double>(t.values()) : 0.0,
                        o.ema_decay > 0 ? (ema_here ? "fp32 copies" : "on the CPU") : "none"});
  std::string how;
  double largest_block = 0;
  const double act = activation_bytes(blocks, o, H, params.num_heads, Li, Lt, &how, &largest_block);
  plan.parts.push_back({"activations", act, how});
  const double L = static_cast<double>(Li + Lt);
  // Backward of a block produces gradients of its saved tensors, of the same sizes, one block at
  // a time.
  double workspace = largest_block;
  std::vector<std::string> ws_how = {"one block's activation gradients in backward"};
  if (!o.device.is_cuda()) {
    workspace += 2.0 * static_cast<double>(o.batch_size * params.num_heads) * L * L * 4.0;
    ws_how.push_back("one block's attention scores and probabilities in forward");
  }
  if (quantized) {  // int8: codes in the compute dtype, times the scales; fp8: int32 indices,
                    // the gather in the compute dtype, times the scales
    const double per_value =
        2 * dtype_bytes(o.precision) + (o.base_weights == BaseWeights::kFp8 ? 4.0 : 0.0);
    workspace += per_value * static_cast<double>(largest_block_linear);
    ws_how.push_back("one dequantized layer");
  }
  if (host_trained > 0) {  // a swapped weight's gradient on the device before it goes to the host
    workspace += wb * static_cast<double>(largest_swapped);
    ws_how.push_back("one swapped layer's weight gradient");
  }
  plan.parts.push_back({"workspace", workspace, fmt::format("{}", fmt::join(ws_how, ", "))});
  plan.setting = fmt::format(
      "{}, {} image + {} text tokens, batch {}, {} compute, {}{}{}{}{}", what, Li, Lt, o.batch_size,
      o.precision == torch::kFloat ? "fp32" : "bf16", o.device.is_cuda() ? "cuda" : "cpu",
      o.gradient_checkpointing
          ? fmt::format(", checkpointing every {}", o.gradient_checkpointing_every)
          : "",
      o.optimizer_in_backward ? ", step in backward" : "",
      quantized ? ", " + base_weights_name(o.base_weights) + " base" : "",
      o.blocks_to_swap > 0 ? fmt::format(", blocks_to_swap {}", o.blocks_to_swap) : "");
  return plan;
}

std::string format_memory_plan(const MemoryPlan& plan) {
  std::string out = "memory plan: " + plan.setting + "\n";
  for (const auto& p : plan.parts)
    out += fmt::format("  {:<12} {:9.3f} GiB  {}\n", p.name, p.bytes / kGiB, p.how);
  out += fmt::format("  {:<12} {:9.3f} GiB  predicted peak\n", "total", plan.total() / kGiB);
  return out;
}

std::vector<std::string> fit_memory_budget(TrainOptions& o, const FluxParams& params,
                                           int64_t image_tokens, int64_t text_tokens,
                                           double budget_bytes,
                                           const std::vector<std::string>& explicitly_set) {
  auto given = [&](const std::string& k) {
    return std::find(explicitly_set.begin(), explicitly_set.end(), k) != explicitly_set.end();
  };
  std::vector<std::string> turned_on;
  auto fits = [&] {
    return plan_training_memory(o, params, image_tokens, text_tokens).total() <= budget_bytes;
  };
  struct Saver {
    std::string key;
    bool applies;
    std::function<void()> apply;
  };
  const bool frozen_base = o.method != "full";
  const std::vector<Saver> savers = {
      {"gradient_checkpointing", !o.gradient_checkpointing,
       [&] {
         o.gradient_checkpointing = true;
         o.gradient_checkpointing_every = 1;
       }},
      {"optimizer_state", !o.adamw.state_8bit, [&] { o.adamw.state_8bit = true; }},
      {"base_weights", frozen_base && o.base_weights == BaseWeights::kDense,
       [&] { o.base_weights = BaseWeights::kInt8; }},
      {"optimizer_in_backward", !o.optimizer_in_backward && o.grad_accum == 1,
       [&] { o.optimizer_in_backward = true; }},
  };
  for (const auto& s : savers) {
    if (fits()) break;
    if (!s.applies || given(s.key)) continue;
    const TrainOptions before = o;
    const double was = plan_training_memory(o, params, image_tokens, text_tokens).total();
    s.apply();
    if (plan_training_memory(o, params, image_tokens, text_tokens).total() > 0.999 * was) {
      o = before;  // saves (next to) nothing here (8-bit moments of a small LoRA): left off
      continue;
    }
    turned_on.push_back(s.key);
  }
  // Last, block swap: the fewest blocks that fit (each costs transfer time every step).
  if (!fits() && !given("blocks_to_swap") && o.blocks_to_swap == 0) {
    const int64_t most = max_blocks_to_swap(params);
    for (int64_t n = 1; n <= most; ++n) {
      o.blocks_to_swap = n;
      if (fits()) break;
    }
    if (fits())
      turned_on.push_back("blocks_to_swap");
    else
      o.blocks_to_swap = 0;
  }
  if (!fits())
    user_error(
        "memory_budget_gb {:.1f}: the plan needs {:.2f} GiB even with {} (set by you or "
        "here); lower batch_size or resolution, or train fewer parameters",
        budget_bytes / kGiB,
        plan_training_memory(o, params, image_tokens, text_tokens).total() / kGiB,
        turned_on.empty() ? std::string("the savers as given")
                          : fmt::format("{}", fmt::join(turned_on, ", ")));
  return turned_on;
}

std::vector<std::string> apply_memory_budget(Config& cfg) {
  const double budget = cfg.f("memory_budget_gb") * kGiB;
  TrainOptions o = TrainOptions::from_config(cfg);
  ModelPreset preset;
  if (is_model_preset(o.model)) {
    preset = model_preset(o.model);
  } else {  // the model's own shapes, text length and VAE factor, from the files' headers
    const ModelFiles files =
        resolve_model_files(o.model, o.overrides, /*need_text=*/false, /*need_vae=*/true);
    preset =
        preset_for_weights(inspect_flux_weights(files.transformer), read_vae_config(files.vae));
  }
  const FluxParams& params = preset.flux;
  const int64_t text_tokens = preset.max_text_tokens;
  if (o.resolution <= 0) o.resolution = preset.default_resolution;
  const int64_t side = o.resolution / (2 * preset.ae_factor);
  const int64_t image_tokens = side * side;
  std::vector<std::string> given;
  for (const char* k : {"gradient_checkpointing", "optimizer_state", "base_weights",
                        "optimizer_in_backward", "blocks_to_swap"})
    if (cfg.is_set(k)) given.push_back(k);
  const auto on = fit_memory_budget(o, params, image_tokens, text_tokens, budget, given);
  for (const auto& k : on) {
    const std::string value = k == "optimizer_state"  ? "int8"
                              : k == "base_weights"   ? "int8"
                              : k == "blocks_to_swap" ? std::to_string(o.blocks_to_swap)
                                                      : "true";
    cfg.set(k, value, "memory_budget_gb");
  }
  std::vector<std::string> described = on;
  for (auto& k : described)
    if (k == "blocks_to_swap") k = fmt::format("blocks_to_swap {}", o.blocks_to_swap);
  log_info("memory_budget_gb {:g}: {}", cfg.f("memory_budget_gb"),
           on.empty() ? std::string("fits as configured")
                      : fmt::format("turned on {}", fmt::join(described, ", ")));
  log_block(format_memory_plan(plan_training_memory(o, params, image_tokens, text_tokens)));
  return on;
}

}  // namespace fluxtrain
