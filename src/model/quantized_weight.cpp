// 8-bit frozen weights (see quantized_weight.h).
#include "model/quantized_weight.h"

#include "core/errors.h"
#include "core/torch_compat.h"
#include "io/safetensors.h"

namespace fluxtrain {

BaseWeights parse_base_weights(const std::string& name) {
  if (name == "dense") return BaseWeights::kDense;
  if (name == "int8") return BaseWeights::kInt8;
  if (name == "fp8") return BaseWeights::kFp8;
  user_error("base_weights '{}': expected dense, int8 or fp8", name);
}

std::string base_weights_name(BaseWeights kind) {
  return kind == BaseWeights::kInt8 ? "int8" : kind == BaseWeights::kFp8 ? "fp8" : "dense";
}

torch::Tensor fp8_e4m3_values(torch::Device device) {
  std::vector<float> v(256);
  for (int b = 0; b < 256; ++b) v[static_cast<size_t>(b)] = decode_fp8("F8_E4M3", uint8_t(b));
  return torch::tensor(v).to(device);
}

namespace {

constexpr double kInt8Max = 127, kFp8Max = 448;

// The codes of |x| (x >= 0, at most 448) as the nearest positive E4M3FN value: the positive
// values of codes 0..126 increase with the code, so the code is the count of midpoints between
// consecutive values below x (a tie goes to the smaller magnitude).
torch::Tensor fp8_positive_codes(const torch::Tensor& ax) {
  static const torch::Tensor midpoints = [] {
    auto v = fp8_e4m3_values(torch::kCPU).narrow(0, 0, 127);
    return ((v.narrow(0, 0, 126) + v.narrow(0, 1, 126)) / 2).contiguous();
  }();
  return torch::bucketize(ax, midpoints.to(ax.device()), /*out_int32=*/true);
}

}  // namespace

QuantizedWeight QuantizedWeight::quantize(const torch::Tensor& w_in, BaseWeights kind) {
  TORCH_CHECK(w_in.dim() == 2, "QuantizedWeight: expected a [out, in] weight");
  TORCH_CHECK(kind != BaseWeights::kDense, "QuantizedWeight: kind must be int8 or fp8");
  torch::NoGradGuard no_grad;
  const auto w = w_in.detach().to(torch::kFloat);
  const double qmax = kind == BaseWeights::kInt8 ? kInt8Max : kFp8Max;
  auto amax = w.abs().amax({1}, /*keepdim=*/true);                           // [out, 1]
  auto scale = torch::where(amax > 0, amax / qmax, torch::ones_like(amax));  // zero rows: 1
  QuantizedWeight q;
  q.kind = kind;
  q.scale = scale;
  auto x = w / scale;  // in [-qmax, qmax]
  if (kind == BaseWeights::kInt8) {
    q.codes = x.round().clamp(-kInt8Max, kInt8Max).to(torch::kInt8);
  } else {
    auto code = fp8_positive_codes(x.abs().clamp_max(kFp8Max));
    q.codes = torch::where(x < 0, code + 128, code).to(torch::kUInt8);
  }
  return q;
}

torch::Tensor QuantizedWeight::dequantize(torch::ScalarType dtype) const {
  torch::Tensor v;
  if (kind == BaseWeights::kInt8) {
    v = codes.to(dtype);
  } else {
    // The 256 values in `dtype` on the codes' device (rebuilt when either changes): the gather
    // gives the compute dtype directly, with no float32 copy of the weight in between (the
    // same values: casting the table or the gathered values rounds each value alike).
    static thread_local torch::Tensor table;
    if (!table.defined() || table.device() != codes.device() || table.scalar_type() != dtype)
      table = fp8_e4m3_values(codes.device()).to(dtype);
    v = table.index_select(0, codes.flatten().to(torch::kInt)).view(codes.sizes());
  }
  return v * scale.to(dtype);
}

void QuantizedWeight::to(torch::Device device) {
  codes = codes.to(device);
  scale = scale.to(device);
}

int64_t QuantizedWeight::bytes() const {
  return codes.numel() * static_cast<int64_t>(codes.element_size()) +
         scale.numel() * static_cast<int64_t>(scale.element_size());
}

torch::ScalarType linear_compute_dtype(const torch::Tensor& x) {
  const auto device = x.device().type();
  return compat::autocast_enabled(device) ? compat::autocast_dtype(device) : x.scalar_type();
}

namespace {

struct QuantizedLinearFunction : torch::autograd::Function<QuantizedLinearFunction> {
  // `bias` is always a defined tensor here (libtorch 1.13's apply() needs every tensor argument
  // defined): an empty one [0] when the layer has none.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& codes, const torch::Tensor& scale,
                               const torch::Tensor& bias_or_empty, int64_t kind) {
    const torch::Tensor bias = bias_or_empty.numel() > 0 ? bias_or_empty : torch::Tensor();
    QuantizedWeight w{static_cast<BaseWeights>(kind), codes, scale};
    const auto dt = linear_compute_dtype(x);
    ctx->saved_data["codes"] = codes;  // (resident anyway: no copy)
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["bias_grad"] = bias.defined() && bias.requires_grad();
    if (bias.defined()) ctx->saved_data["bias_dtype"] = static_cast<int64_t>(bias.scalar_type());
    return torch::nn::functional::linear(x.to(dt), w.dequantize(dt),
                                         bias.defined() ? bias.to(dt) : bias);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto& g = grads[0];  // [..., out]
    QuantizedWeight w{static_cast<BaseWeights>(ctx->saved_data["kind"].toInt()),
                      ctx->saved_data["codes"].toTensor(), ctx->saved_data["scale"].toTensor()};
    const auto x_dtype = static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    auto gx = torch::matmul(g, w.dequantize(g.scalar_type())).to(x_dtype);  // [..., in]
    torch::Tensor gb;
    if (ctx->saved_data["bias_grad"].toBool())
      gb = g.reshape({-1, g.size(-1)})
               .sum(0)
               .to(static_cast<torch::ScalarType>(ctx->saved_data["bias_dtype"].toInt()));
    return {gx, torch::Tensor(), torch::Tensor(), gb, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& w,
                               const torch::Tensor& bias) {
  if (!torch::GradMode::is_enabled() ||
      !(x.requires_grad() || (bias.defined() && bias.requires_grad()))) {
    const auto dt = linear_compute_dtype(x);
    return torch::nn::functional::linear(x.to(dt), w.dequantize(dt),
                                         bias.defined() ? bias.to(dt) : bias);
  }
  return QuantizedLinearFunction::apply(x, w.codes, w.scale,
                                        bias.defined() ? bias : torch::empty({0}, x.options()),
                                        static_cast<int64_t>(w.kind));
}

}  // namespace fluxtrain
