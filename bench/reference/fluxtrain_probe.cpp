// A probe of fluxtrain's own C++ for bench/reference/: prints parameter counts and training FLOPs
// per image (the numbers bench/reference/test_formulas.py pins), and with `--dump FILE MODEL` runs
// one float64 forward + backward of a randomly initialised small preset on fixed random inputs and
// writes weights, inputs, output and gradients to a safetensors file, which
// bench/reference/check_against_fluxtrain.py feeds to the plain-PyTorch model.
// Build against a built tree (see check_against_fluxtrain.py's docstring for the command).
#include <cstdio>
#include <string>

#include "bench/flops.h"
#include "io/safetensors.h"
#include "model/flux.h"
#include "model/latents.h"
#include "model/presets.h"

using namespace fluxtrain;

static int print_numbers() {
  for (const char* m : {"flux-dev", "flux-schnell", "tiny", "tiny-guidance"}) {
    const auto p = model_preset(m);
    int64_t n = 0;
    for (const auto& s : flux_parameter_shapes(p.flux)) n += s.numel();
    std::printf("params %s %lld\n", m, static_cast<long long>(n));
    for (int r : {32, 64, 256, 512, 1024})
      if (r % (2 * p.ae_factor) == 0)
        std::printf("train_flops %s %d %.17g\n", m, r, training_flops_per_image(p, r));
  }
  return 0;
}

static int dump(const std::string& path, const std::string& model) {
  const auto preset = model_preset(model);
  torch::manual_seed(1234);
  Flux flux(preset.flux);
  flux->to(torch::kDouble);
  NamedTensors out;
  {
    torch::NoGradGuard no_grad;
    for (auto& kv : flux->named_parameters()) {  // every weight random, norms' scales too
      kv.value().normal_(0.0, 0.08);
      if (kv.key().find("norm.") != std::string::npos) kv.value().add_(1.0);
      out.emplace_back("param." + kv.key(), kv.value().clone());
    }
  }
  const int64_t B = 2, side = 16;  // a 16x16 latent: 64 image tokens
  const auto& f = preset.flux;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto img = torch::randn({B, (side / 2) * (side / 2), f.in_channels}, opts);
  auto txt = torch::randn({B, preset.max_text_tokens, f.context_in_dim}, opts);
  auto y = torch::randn({B, f.vec_in_dim}, opts);
  auto t = torch::rand({B}, opts);
  auto g = torch::full({B}, 3.5, opts);
  auto iids = image_ids(B, side, side, torch::kCPU).to(torch::kDouble);
  auto tids = text_ids(B, preset.max_text_tokens, torch::kCPU).to(torch::kDouble);
  std::optional<torch::Tensor> guidance;
  if (f.guidance_embed) guidance = g;
  auto pred = flux->forward(img, iids, txt, tids, t, y, guidance);
  pred.pow(2).mean().backward();
  for (auto [n, x] : {std::pair<const char*, torch::Tensor>{"in.img", img}, {"in.txt", txt},
                      {"in.y", y}, {"in.t", t}, {"in.guidance", g}, {"in.img_ids", iids},
                      {"in.txt_ids", tids}, {"out.pred", pred.detach()}})
    out.emplace_back(n, x);
  for (auto& kv : flux->named_parameters())
    if (kv.value().grad().defined()) out.emplace_back("grad." + kv.key(), kv.value().grad());
  save_safetensors(path, out, {{"model", model}});
  std::printf("wrote %s (%zu tensors)\n", path.c_str(), out.size());
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--dump") return dump(argv[2], argv[3]);
  return print_numbers();
}
