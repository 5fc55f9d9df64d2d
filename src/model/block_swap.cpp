// Block swap (see block_swap.h).
#include "model/block_swap.h"

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <optional>

#include "core/errors.h"
#include "core/log.h"
#include "core/torch_compat.h"
#include "model/flux.h"
#include "model/linear.h"

namespace fluxtrain {

BlockSwapSplit block_swap_split(const FluxParams& params, int64_t n) {
  const int64_t limit = max_blocks_to_swap(params);
  if (n < 0 || n > limit)
    user_error(
        "blocks_to_swap {}: expected 0 to {} for this model ({} double and {} single blocks; N "
        "swaps the last N / 2 double blocks and 2 x (N - N / 2) single blocks)",
        n, limit, params.depth, params.depth_single_blocks);
  return {n / 2, 2 * (n - n / 2)};
}

int64_t max_blocks_to_swap(const FluxParams& params) {
  // The largest N with N / 2 <= depth and 2 x (N - N / 2) <= depth_single_blocks.
  int64_t n = 0;
  while ((n + 1) / 2 <= params.depth && 2 * ((n + 1) - (n + 1) / 2) <= params.depth_single_blocks)
    ++n;
  return n;
}

namespace {

// The host tensors a swapped layer's weights live in: {weight} or {codes, scale}.
std::vector<torch::Tensor> host_tensors(const LinearImpl& layer) {
  if (layer.quantized) return {layer.quantized->codes, layer.quantized->scale};
  return {layer.weight};
}

// Bytes of `t`'s values, rounded up to 64 (each tensor's place in a block's host buffer).
int64_t aligned_bytes(const torch::Tensor& t) {
  const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
  return (n + 63) / 64 * 64;
}

struct Version {
  const void* data = nullptr;
  int64_t version = 0;
  bool operator==(const Version& o) const { return data == o.data && version == o.version; }
};
Version version_of(const torch::Tensor& t) {
  return {t.data_ptr(), t._version()};
}

}  // namespace

struct BlockSwap::Resident {
  size_t block = 0;
  std::vector<std::vector<torch::Tensor>> tensors;  // per layer, on the device
  std::vector<std::vector<Version>> versions;       // per layer, of the host tensors copied
  uint64_t last_use = 0;
  std::optional<c10::Event> copied;  // CUDA: recorded on the side stream after the copies
  bool waited = false;               // the compute stream waits for `copied` (once)
};

struct BlockSwap::Streams {
  c10::impl::VirtualGuardImpl impl{c10::DeviceType::CUDA};
  c10::Stream side;
  explicit Streams(const torch::Device& d) : side(impl.getStreamFromGlobalPool(d, false)) {}
};

BlockSwap::BlockSwap(std::vector<std::vector<LinearImpl*>> blocks, torch::Device device)
    : blocks_(std::move(blocks)), device_(device) {
  if (device_.is_cuda()) {
    if (device_.index() < 0)  // "cuda": the current device, where the model's tensors go
      device_ = c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getDevice();
    streams_ = std::make_unique<Streams>(device_);
  }
  torch::NoGradGuard no_grad;
  // Each block's weights move into one host buffer of their own (views into it), page-locked in
  // place on CUDA: one registration per block, no power-of-two rounding.
  for (const auto& layers : blocks_) {
    int64_t bytes = 0;
    for (LinearImpl* layer : layers) {
      TORCH_CHECK(!layer->quantized || layer->quantized->codes.defined(),
                  "block swap: 8-bit weight not loaded");
      for (const auto& t : host_tensors(*layer)) bytes += aligned_bytes(t);
    }
    auto buffer = torch::empty({bytes}, torch::kUInt8);
    int64_t offset = 0;
    auto place = [&](const torch::Tensor& t) {
      auto view = buffer.narrow(0, offset, t.numel() * static_cast<int64_t>(t.element_size()))
                      .view(t.scalar_type())
                      .view(t.sizes());
      view.copy_(t);
      offset += aligned_bytes(t);
      return view;
    };
    for (LinearImpl* layer : layers) {
      if (layer->quantized) {
        layer->quantized->codes = place(layer->quantized->codes);
        layer->quantized->scale = place(layer->quantized->scale);
      } else {
        layer->weight.set_data(place(layer->weight));
      }
    }
    if (device_.is_cuda()) {
      if (compat::register_host_memory(buffer.data_ptr(), bytes))
        registered_.push_back(buffer.data_ptr());
      else if (registered_.empty() && buffers_.empty())  // (said once)
        log_warn(
            "block swap: the driver would not page-lock {:.1f} MiB of host memory; the "
            "swapped blocks copy synchronously",
            static_cast<double>(bytes) / double(1 << 20));
    }
    host_bytes_ += bytes;
    buffers_.push_back(std::move(buffer));
  }
}

BlockSwap::~BlockSwap() {
  for (void* p : registered_) compat::unregister_host_memory(p);
}

bool BlockSwap::layer_current(const Resident& r, size_t layer) const {
  const auto host = host_tensors(*blocks_[r.block][layer]);
  const auto& v = r.versions[layer];
  if (host.size() != v.size()) return false;
  for (size_t k = 0; k < host.size(); ++k)
    if (!(v[k] == version_of(host[k]))) return false;
  return true;
}

void BlockSwap::copy_layer(Resident& r, size_t layer) {
  std::vector<torch::Tensor> copies;
  std::vector<Version> versions;
  for (const auto& t : host_tensors(*blocks_[r.block][layer])) {
    versions.push_back(version_of(t));
    copies.push_back(t.to(device_, t.scalar_type(), /*non_blocking=*/streams_ != nullptr,
                          /*copy=*/true));
  }
  r.tensors[layer] = std::move(copies);
  r.versions[layer] = std::move(versions);
}

void BlockSwap::evict_for(size_t keep) {
  while (resident_.size() >= 2) {
    auto victim = resident_.end();
    for (auto it = resident_.begin(); it != resident_.end(); ++it)
      if ((*it)->block != running_ && (*it)->block != keep &&
          (victim == resident_.end() || (*it)->last_use < (*victim)->last_use))
        victim = it;
    TORCH_CHECK(victim != resident_.end(), "block swap: no block to evict");
    // On CUDA the copies were marked as used by the compute stream when they became current
    // (record_stream), so the allocator reuses their memory only after that work is done.
    resident_.erase(victim);
  }
}

BlockSwap::Resident& BlockSwap::fetch(size_t block) {
  for (auto& r : resident_)
    if (r->block == block) return *r;  // (stale layers are copied again as they are used)
  evict_for(block);
  auto r = std::make_unique<Resident>();
  r->block = block;
  r->tensors.resize(blocks_[block].size());
  r->versions.resize(blocks_[block].size());
  torch::NoGradGuard no_grad;
  std::optional<c10::StreamGuard> on_side;
  if (streams_) on_side.emplace(streams_->side);
  for (size_t l = 0; l < blocks_[block].size(); ++l) copy_layer(*r, l);
  if (streams_) {
    r->copied.emplace(c10::DeviceType::CUDA);
    r->copied->record(streams_->side);
  }
  ++copies_;
  resident_.push_back(std::move(r));
  most_resident_ = std::max<int64_t>(most_resident_, static_cast<int64_t>(resident_.size()));
  return *resident_.back();
}

void BlockSwap::prefetch_after(size_t block) {
  const auto next = static_cast<int64_t>(block) + direction_;
  if (next < 0 || next >= static_cast<int64_t>(blocks_.size())) return;
  fetch(static_cast<size_t>(next));
}

const std::vector<torch::Tensor>& BlockSwap::weights(size_t block, size_t layer) {
  TORCH_CHECK(block < blocks_.size() && layer < blocks_[block].size(), "block swap: no layer ",
              layer, " in block ", block);
  const bool new_block = block != running_;
  running_ = block;
  Resident* r = &fetch(block);
  r->last_use = ++clock_;
  if (streams_ && !r->waited) {
    const c10::Stream compute = streams_->impl.getStream(device_);
    r->copied->block(compute);
    for (auto& copies : r->tensors)
      for (auto& t : copies) t.record_stream(compute);
    r->waited = true;
  }
  if (new_block) prefetch_after(block);  // (never evicts the running block: r stays valid)
  if (!layer_current(*r, layer)) {
    // The host weight changed since the copy (an optimizer step, a checkpoint load): this layer
    // alone is copied again, on the compute stream (ordered before its use). The layers of a
    // block that the step inside backward has updated are not used again in that backward.
    torch::NoGradGuard no_grad;
    copy_layer(*r, layer);
    ++refreshes_;
  }
  return r->tensors[layer];
}

void BlockSwap::expect(int direction) {
  direction_ = direction < 0 ? -1 : 1;
  if (blocks_.empty()) return;
  // A new pass: its first block (the last one going backward, the first going forward) is
  // copied now if it is not on the device, and its first use prefetches the next.
  running_ = SIZE_MAX;
  fetch(direction_ < 0 ? blocks_.size() - 1 : 0);
}

void BlockSwap::release_all() {
  resident_.clear();
  running_ = SIZE_MAX;
}

std::shared_ptr<BlockSwap> enable_block_swap(FluxImpl& model, int64_t n, torch::Device device) {
  const BlockSwapSplit split = block_swap_split(model.params, n);
  if (n == 0) return nullptr;
  TORCH_CHECK(!model.block_swap, "block swap is on already");
  std::vector<std::vector<LinearImpl*>> blocks;
  auto add = [&](torch::nn::ModuleList& list, int64_t from) {
    for (auto i = static_cast<size_t>(from); i < list->size(); ++i) {
      std::vector<LinearImpl*> layers;
      for (const auto& [name, layer] : flux_linear_layers(*list[i])) layers.push_back(layer);
      blocks.push_back(std::move(layers));
    }
  };
  add(model.double_blocks, model.params.depth - split.double_blocks);
  add(model.single_blocks, model.params.depth_single_blocks - split.single_blocks);
  auto swap = std::make_shared<BlockSwap>(blocks, device);
  for (size_t b = 0; b < blocks.size(); ++b)
    for (size_t l = 0; l < blocks[b].size(); ++l)
      blocks[b][l]->swap = std::make_shared<SwapSlot>(SwapSlot{swap, b, l});
  model.block_swap = swap;
  return swap;
}

namespace {

// The swapped layer's weight [out, in] on the device in `dtype`.
torch::Tensor device_weight(const LinearImpl& layer, torch::ScalarType dtype) {
  const SwapSlot& slot = *layer.swap;
  const auto& t = slot.swap->weights(slot.block, slot.layer);
  if (layer.quantized) return QuantizedWeight{layer.quantized->kind, t[0], t[1]}.dequantize(dtype);
  return t[0].to(dtype);
}

// The forward product as the resident layer computes it: a dense layer calls linear on its
// weight's copy in the stored dtype and lets autocast (when on) cast it, as it casts the
// resident weight (autocast's CPU linear is not linear on pre-cast operands: it rounds
// differently); an 8-bit layer computes as quantized_linear does.
torch::Tensor forward_product(const torch::Tensor& x, const LinearImpl& layer,
                              const torch::Tensor& bias) {
  if (!layer.quantized) {
    const SwapSlot& slot = *layer.swap;
    return torch::nn::functional::linear(x, slot.swap->weights(slot.block, slot.layer)[0], bias);
  }
  const auto dt = linear_compute_dtype(x);
  return torch::nn::functional::linear(x.to(dt), device_weight(layer, dt),
                                       bias.defined() ? bias.to(dt) : bias);
}

// at::linear's own arithmetic (addmm on [N, in] for a 2-d input or a contiguous 3-d one with a
// bias, else matmul + bias), and in backward the formulas autograd applies to it, so that a
// swapped layer computes bit for bit what the resident layer does.
// `x` as linear receives it, cast to `dt` (a cast keeps the strides of a dense tensor and makes
// any other contiguous).
bool linear_uses_addmm(const torch::Tensor& x, torch::ScalarType dt, bool has_bias) {
  const bool contiguous =
      x.is_contiguous() || (x.scalar_type() != dt && !x.is_non_overlapping_and_dense());
  return has_bias && (x.dim() == 2 || (x.dim() == 3 && contiguous));
}

struct SwappedLinearFunction : torch::autograd::Function<SwappedLinearFunction> {
  // `host_weight` (an empty tensor for 8-bit layers) is an input so that a trained weight
  // receives its gradient; `bias_or_empty` is the device bias or [0]. `layer` is the
  // LinearImpl's address: the model outlives the graphs built on it.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& host_weight, const torch::Tensor& bias_or_empty,
                               int64_t layer_address) {
    const auto& layer = *reinterpret_cast<const LinearImpl*>(layer_address);
    const torch::Tensor bias = bias_or_empty.numel() > 0 ? bias_or_empty : torch::Tensor();
    const auto dt = linear_compute_dtype(x);
    const bool weight_grad = host_weight.numel() > 0 && host_weight.requires_grad();
    ctx->saved_data["layer"] = layer_address;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    ctx->saved_data["addmm"] = linear_uses_addmm(x, dt, bias.defined());
    ctx->saved_data["weight_grad"] = weight_grad;
    ctx->saved_data["bias_grad"] = bias.defined() && bias.requires_grad();
    if (bias.defined()) ctx->saved_data["bias_dtype"] = static_cast<int64_t>(bias.scalar_type());
    if (weight_grad) {
      ctx->saved_data["weight_dtype"] = static_cast<int64_t>(host_weight.scalar_type());
      ctx->save_for_backward({x.to(dt)});
    }
    return forward_product(x, layer, bias);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto& layer = *reinterpret_cast<const LinearImpl*>(ctx->saved_data["layer"].toInt());
    const auto& g = grads[0];  // [..., out]
    const auto g2 = g.reshape({-1, g.size(-1)});
    const auto x_sizes = ctx->saved_data["x_sizes"].toIntVector();
    const auto w = device_weight(layer, g.scalar_type());  // [out, in]
    auto gx = g2.mm(w).view(x_sizes).to(
        static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt()));
    torch::Tensor gw, gb;
    if (ctx->saved_data["weight_grad"].toBool()) {
      const auto x2 = ctx->get_saved_variables()[0].reshape({-1, x_sizes.back()});
      gw = g2.t()
               .mm(x2)
               .to(static_cast<torch::ScalarType>(ctx->saved_data["weight_dtype"].toInt()))
               .to(layer.weight.device());
    }
    if (ctx->saved_data["bias_grad"].toBool()) {
      std::vector<int64_t> leading(static_cast<size_t>(g.dim() - 1));
      for (size_t d = 0; d < leading.size(); ++d) leading[d] = static_cast<int64_t>(d);
      gb = (ctx->saved_data["addmm"].toBool() ? g2.sum(0)
            : g.dim() == 1                    ? g
                                              : g.sum(leading))
               .to(static_cast<torch::ScalarType>(ctx->saved_data["bias_dtype"].toInt()));
    }
    return {gx, gw, gb, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor swapped_linear(const torch::Tensor& x, const LinearImpl& layer) {
  const torch::Tensor& bias = layer.bias;
  const bool weight_grad = !layer.quantized && layer.weight.requires_grad();
  const bool bias_grad = bias.defined() && bias.requires_grad();
  if (!torch::GradMode::is_enabled() || !(x.requires_grad() || weight_grad || bias_grad))
    return forward_product(x, layer, bias);
  return SwappedLinearFunction::apply(x, layer.quantized ? torch::empty({0}) : layer.weight,
                                      bias.defined() ? bias : torch::empty({0}, x.options()),
                                      static_cast<int64_t>(reinterpret_cast<intptr_t>(&layer)));
}

torch::Tensor swapped_dense_weight(const LinearImpl& layer) {
  torch::NoGradGuard no_grad;
  return device_weight(layer, torch::kFloat);
}

}  // namespace fluxtrain
