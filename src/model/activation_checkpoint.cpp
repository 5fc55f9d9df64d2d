// Reentrant activation checkpointing (see activation_checkpoint.h).
#include "model/activation_checkpoint.h"

#include <algorithm>
#include <mutex>
#include <optional>

#include "core/torch_compat.h"

namespace fluxtrain {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autocast on/off and dtype for the two device types fluxtrain computes on.
struct AutocastState {
  bool cpu_enabled = false, cuda_enabled = false;
  at::ScalarType cpu_dtype = at::kBFloat16, cuda_dtype = at::kHalf;

  static AutocastState current() {
    AutocastState s;
    s.cpu_enabled = compat::autocast_enabled(c10::DeviceType::CPU);
    s.cpu_dtype = compat::autocast_dtype(c10::DeviceType::CPU);
    s.cuda_enabled = compat::autocast_enabled(c10::DeviceType::CUDA);
    s.cuda_dtype = compat::autocast_dtype(c10::DeviceType::CUDA);
    return s;
  }
  void apply() const {
    compat::set_autocast(c10::DeviceType::CPU, cpu_enabled, cpu_dtype);
    compat::set_autocast(c10::DeviceType::CUDA, cuda_enabled, cuda_dtype);
  }
  bool operator==(const AutocastState& o) const {
    return cpu_enabled == o.cpu_enabled && cuda_enabled == o.cuda_enabled &&
           cpu_dtype == o.cpu_dtype && cuda_dtype == o.cuda_dtype;
  }
  bool any() const { return cpu_enabled || cuda_enabled; }
};

// Puts the autocast state forward ran under in place for the recomputation and restores the
// previous one afterwards. Weight casts the recomputation cached would go stale at the next
// optimizer step, so the cache is cleared (as AutocastScope does) unless an enclosing autocast
// region is still on.
class AutocastStateGuard {
 public:
  explicit AutocastStateGuard(const AutocastState& want)
      : before_(AutocastState::current()), want_(want) {
    if (!(want_ == before_)) want_.apply();
  }
  ~AutocastStateGuard() {
    if (!(want_ == before_)) before_.apply();
    if (want_.any() && !before_.any()) compat::clear_autocast_cache();
  }
  AutocastStateGuard(const AutocastStateGuard&) = delete;
  AutocastStateGuard& operator=(const AutocastStateGuard&) = delete;

 private:
  AutocastState before_, want_;
};

// What backward needs besides the saved inputs, kept in the context as a capsule.
struct CheckpointState : torch::CustomClassHolder {
  CheckpointedFn fn;
  size_t num_inputs = 0;  // fn's inputs (a trailing placeholder input is not passed to fn)
  AutocastState autocast;
  // The default generator of the inputs' device as forward found it, put back for the
  // recomputation (dropout inside fn draws the same masks twice; torch's preserve_rng_state).
  std::optional<c10::Device> rng_device;
  torch::Tensor rng_state;
};

c10::Device inputs_device(at::TensorList inputs) {
  for (const auto& t : inputs)
    if (t.defined()) return t.device();
  return c10::Device(c10::kCPU);
}

torch::Tensor generator_state(c10::Device device) {
  auto gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(c10::Device device, const torch::Tensor& state) {
  auto gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// Runs fn with the generator of `device` set to `state`, then restores the state it had.
std::vector<torch::Tensor> with_generator_state(
    c10::Device device, const torch::Tensor& state,
    const std::function<std::vector<torch::Tensor>()>& fn) {
  const auto now = generator_state(device);
  set_generator_state(device, state);
  try {
    auto out = fn();
    set_generator_state(device, now);
    return out;
  } catch (...) {
    set_generator_state(device, now);
    throw;
  }
}

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs,
                               c10::intrusive_ptr<CheckpointState> state) {
    torch::NoGradGuard no_grad;  // (apply() already runs forward without grad)
    state->autocast = AutocastState::current();
    state->rng_device = inputs_device(inputs);
    state->rng_state = generator_state(*state->rng_device);
    ctx->save_for_backward(inputs.vec());
    std::vector<torch::Tensor> fn_inputs(inputs.begin(), inputs.begin() + state->num_inputs);
    auto outputs = state->fn(fn_inputs);
    for (const auto& o : outputs)
      TORCH_CHECK(o.defined(), "activation_checkpoint: the function returned an undefined tensor");
    ctx->saved_data["state"] = c10::IValue::make_capsule(std::move(state));
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto capsule = ctx->saved_data["state"].toCapsule();
    const auto& state = static_cast<const CheckpointState&>(*capsule);
    const auto saved = ctx->get_saved_variables();
    // Detached inputs: leaves of the recomputed graph that collect the input gradients.
    std::vector<torch::Tensor> inputs;
    for (size_t i = 0; i < state.num_inputs; ++i) {
      auto x = saved[i].detach();
      if (saved[i].requires_grad()) x.requires_grad_(true);
      inputs.push_back(std::move(x));
    }
    std::vector<torch::Tensor> outputs;
    {
      // The same ops on the same values as forward, with the same random numbers.
      torch::AutoGradMode grad_on(true);
      AutocastStateGuard autocast(state.autocast);
      outputs = with_generator_state(*state.rng_device, state.rng_state,
                                     [&] { return state.fn(inputs); });
    }
    TORCH_CHECK(outputs.size() == grad_outputs.size(),
                "activation_checkpoint: the recomputation returned ", outputs.size(),
                " tensors, forward returned ", grad_outputs.size());
    std::vector<torch::Tensor> roots, grads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (outputs[i].requires_grad() && grad_outputs[i].defined()) {
        roots.push_back(outputs[i]);
        grads.push_back(grad_outputs[i]);
      }
    }
    // Accumulates into the parameters' .grad (as an uncheckpointed backward would) and into the
    // detached inputs' .grad.
    if (!roots.empty()) torch::autograd::backward(roots, grads);
    variable_list result(saved.size() + 1);  // every tensor input, then the state argument
    for (size_t i = 0; i < state.num_inputs; ++i)
      if (inputs[i].requires_grad()) result[i] = inputs[i].grad();
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> activation_checkpoint(const CheckpointedFn& fn,
                                                 const std::vector<torch::Tensor>& inputs) {
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = fn;
  state->num_inputs = inputs.size();
  std::vector<torch::Tensor> args = inputs;
  // With no input requiring grad the node would not be recorded and the parameters inside fn
  // would get no gradient (reentrant checkpointing's known trap): a placeholder input that
  // requires grad keeps the node in the graph.
  if (std::none_of(inputs.begin(), inputs.end(),
                   [](const torch::Tensor& t) { return t.defined() && t.requires_grad(); }))
    args.push_back(torch::empty({0}, torch::requires_grad()));
  return CheckpointFunction::apply(at::TensorList(args), std::move(state));
}

}  // namespace fluxtrain
