// The FLUX ControlNet: zero-initialised it leaves the base output unchanged; residuals land after
// the blocks diffusers' interval rule names; from_transformer copies the first blocks; the forward
// equals a hand-rolled loop over the blocks; the diffusers controlnet/ layout round-trips bit for
// bit and is refused by name when it is a kind we do not run.
#include "model/controlnet.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "io/files.h"
#include "model/flux_call.h"
#include "model/latents.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

namespace {

FluxParams tiny_params(int64_t depth, int64_t single) {
  FluxParams p;
  p.in_channels = p.out_channels = 8;
  p.vec_in_dim = 6;
  p.context_in_dim = 10;
  p.hidden_size = 32;
  p.num_heads = 2;
  p.axes_dim = {4, 6, 6};
  p.depth = depth;
  p.depth_single_blocks = single;
  p.guidance_embed = true;
  return p;
}

FluxInputs tiny_inputs(const FluxParams& p, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t B = 2, h = 4, w = 6;
  return make_flux_inputs(p, torch::randn({B, h * w / 4, p.in_channels}), h, w,
                          torch::randn({B, 5, p.context_in_dim}), torch::randn({B, p.vec_in_dim}),
                          torch::rand({B}), 3.5);
}

void randomise(torch::nn::Module& m, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : m.parameters()) p.copy_(torch::randn_like(p) * 0.1);
}

}  // namespace

TEST(ControlNet, ZeroInitialisedLeavesTheBaseOutputUnchanged) {
  torch::manual_seed(1);
  Flux base(tiny_params(3, 4));
  FluxControlNet net(base->params, 2, 3);
  net->copy_from(*base);
  const FluxInputs in = tiny_inputs(base->params, 2);
  const auto control = torch::randn_like(in.img);
  const ControlNetResiduals r = net->forward(in, control, 1.0);
  ASSERT_EQ(r.double_blocks.size(), 2u);
  ASSERT_EQ(r.single_blocks.size(), 3u);
  for (const auto& t : r.double_blocks) EXPECT_EQ(t.abs().max().item<float>(), 0.0f);
  for (const auto& t : r.single_blocks) EXPECT_EQ(t.abs().max().item<float>(), 0.0f);
  const auto plain = predict_velocity(*base, in, torch::kFloat);
  const auto controlled = predict_velocity(*base, in, torch::kFloat, {net.get(), control, 1.0});
  EXPECT_TRUE(torch::equal(plain, controlled));
}

TEST(ControlNet, CopiesTheEmbeddersAndFirstBlocksOfTheBase) {
  torch::manual_seed(3);
  Flux base(tiny_params(3, 4));
  FluxControlNet net(base->params, 2, 1);
  net->copy_from(*base);
  auto from = base->named_parameters();
  int64_t copied = 0, own = 0;
  for (const auto& item : net->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    if (name.rfind("controlnet_", 0) == 0) {
      EXPECT_EQ(p.abs().max().item<float>(), 0.0f) << name;
      ++own;
      continue;
    }
    ASSERT_NE(from.find(name), nullptr) << name;
    EXPECT_TRUE(torch::equal(p, from[name])) << name;
    ++copied;
  }
  EXPECT_EQ(own, 2 * (2 + 1) + 2);  // weight and bias of 3 projections and the x embedder
  EXPECT_EQ(net->named_parameters().find("double_blocks.2.img_mod.lin.weight"), nullptr);
  EXPECT_EQ(net->named_parameters().find("final_layer.linear.weight"), nullptr);
  EXPECT_GT(copied, 0);
  Flux other(tiny_params(1, 4));
  EXPECT_NE(error_of([&] { net->copy_from(*other); }).find("more than the base"),
            std::string::npos);
}

// A hand-rolled pass: the blocks called one by one, the residual after double block i being
// residual i / ceil(D / n) (diffusers' interval_control), the single blocks' on the image part.
TEST(ControlNet, ResidualsFollowTheBlocksDiffusersNames) {
  torch::manual_seed(5);
  Flux base(tiny_params(4, 3));
  base->eval();
  FluxControlNet net(base->params, 2, 2);
  randomise(*net, 6);
  net->eval();
  torch::NoGradGuard no_grad;
  const FluxInputs in = tiny_inputs(base->params, 7);
  const auto control = torch::randn_like(in.img);
  const double scale = 0.7;
  const ControlNetResiduals r = net->forward(in, control, scale);

  // The ControlNet's residuals by hand.
  FluxStreams s = net->embed(in);
  auto img = s.img + net->controlnet_x_embedder(control);
  auto txt = s.txt;
  for (size_t i = 0; i < 2; ++i) {
    std::tie(img, txt) =
        net->double_blocks->ptr<DoubleStreamBlockImpl>(i)->forward(img, txt, s.vec, s.pe);
    auto expected = net->controlnet_blocks->ptr<LinearImpl>(i)->forward(img) * scale;
    EXPECT_LT((r.double_blocks[i] - expected).abs().max().item<float>(), 1e-6) << i;
  }
  auto x = torch::cat({txt, img}, 1);
  const int64_t Lt = txt.size(1), Li = img.size(1);
  for (size_t i = 0; i < 2; ++i) {
    x = net->single_blocks->ptr<SingleStreamBlockImpl>(i)->forward(x, s.vec, s.pe);
    auto expected =
        net->controlnet_single_blocks->ptr<LinearImpl>(i)->forward(x.narrow(1, Lt, Li)) * scale;
    EXPECT_LT((r.single_blocks[i] - expected).abs().max().item<float>(), 1e-6) << i;
  }

  // The base with them: 4 double blocks, 2 residuals -> interval 2: residual 0 after blocks 0
  // and 1, residual 1 after 2 and 3; 3 single blocks, 2 residuals -> interval 2: 0, 0, 1.
  FluxInputs with = in;
  with.double_block_residuals = r.double_blocks;
  with.single_block_residuals = r.single_blocks;
  const auto got = base->forward(with);
  FluxStreams b = base->embed(in);
  img = b.img;
  txt = b.txt;
  const int64_t double_residual[] = {0, 0, 1, 1}, single_residual[] = {0, 0, 1};
  for (size_t i = 0; i < 4; ++i) {
    std::tie(img, txt) =
        base->double_blocks->ptr<DoubleStreamBlockImpl>(i)->forward(img, txt, b.vec, b.pe);
    img = img + r.double_blocks[double_residual[i]];
  }
  x = torch::cat({txt, img}, 1);
  for (size_t i = 0; i < 3; ++i) {
    x = base->single_blocks->ptr<SingleStreamBlockImpl>(i)->forward(x, b.vec, b.pe);
    x = torch::cat({x.narrow(1, 0, Lt), x.narrow(1, Lt, Li) + r.single_blocks[single_residual[i]]},
                   1);
  }
  const auto expected = base->final_layer(x.narrow(1, Lt, Li), b.vec);
  EXPECT_LT((got - expected).abs().max().item<float>(), 1e-5);
  EXPECT_GT((got - base->forward(in)).abs().max().item<float>(), 1e-3);  // the residuals matter
}

TEST(ControlNet, GradientsReachEveryControlNetParameterThroughTheFrozenBase) {
  torch::manual_seed(8);
  Flux base(tiny_params(2, 2));
  for (auto& p : base->parameters()) p.set_requires_grad(false);
  FluxControlNet net(base->params, 1, 1);
  net->copy_from(*base);
  const FluxInputs in = tiny_inputs(base->params, 9);
  const auto control = torch::randn_like(in.img);
  predict_velocity(*base, in, torch::kFloat, {net.get(), control, 1.0}).square().mean().backward();
  // At zero initialisation only the output projections get a gradient (everything before them
  // is multiplied by their zero weights); they are what starts the training.
  for (const auto& item : net->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    const bool projection =
        name.rfind("controlnet_blocks", 0) == 0 || name.rfind("controlnet_single_blocks", 0) == 0;
    ASSERT_TRUE(p.grad().defined()) << name;
    if (projection && name.find(".weight") != std::string::npos)
      EXPECT_GT(p.grad().abs().max().item<float>(), 0.0f) << name;
    if (!projection) EXPECT_EQ(p.grad().abs().max().item<float>(), 0.0f) << name;
  }
}

TEST(ControlNet, DiffusersLayoutRoundTripsBitForBit) {
  TempDir tmp;
  torch::manual_seed(10);
  FluxControlNet net(tiny_params(2, 3), 2, 3);
  randomise(*net, 11);
  const std::string dir = tmp / "controlnet";
  save_controlnet(*net, dir, torch::kFloat);
  const auto config = read_json_file(dir + "/config.json");
  EXPECT_EQ(config["_class_name"], "FluxControlNetModel");
  EXPECT_EQ(config["num_layers"], 2);
  EXPECT_EQ(config["num_single_layers"], 3);
  EXPECT_EQ(config["attention_head_dim"], 16);
  EXPECT_EQ(config["num_attention_heads"], 2);
  EXPECT_EQ(config["joint_attention_dim"], 10);
  EXPECT_EQ(config["pooled_projection_dim"], 6);
  EXPECT_EQ(config["guidance_embeds"], true);
  EXPECT_TRUE(config["num_mode"].is_null());
  SafetensorsFile file(dir + "/diffusion_pytorch_model.safetensors");
  for (const char* name :
       {"x_embedder.weight", "controlnet_x_embedder.weight", "controlnet_blocks.1.bias",
        "controlnet_single_blocks.2.weight", "transformer_blocks.1.attn.to_q.weight",
        "transformer_blocks.0.attn.add_k_proj.bias", "single_transformer_blocks.2.proj_mlp.weight",
        "time_text_embed.guidance_embedder.linear_1.weight", "context_embedder.weight"})
    EXPECT_TRUE(file.contains(name)) << name;
  for (const auto& n : file.names())
    EXPECT_TRUE(n.find("norm_out") == std::string::npos && n.rfind("proj_out", 0) != 0 &&
                n.find("final_layer") == std::string::npos)
        << n;
  // to_q is the first H rows of the fused qkv; proj_mlp the rows after q, k, v of linear1.
  auto params = net->named_parameters();
  EXPECT_TRUE(torch::equal(file.load("transformer_blocks.1.attn.to_q.weight"),
                           params["double_blocks.1.img_attn.qkv.weight"].narrow(0, 0, 32)));
  EXPECT_TRUE(torch::equal(file.load("single_transformer_blocks.2.proj_mlp.weight"),
                           params["single_blocks.2.linear1.weight"].narrow(0, 96, 128)));

  const ControlNetFiles files = inspect_controlnet(dir);
  EXPECT_EQ(files.params.depth, 2);
  EXPECT_EQ(files.params.depth_single_blocks, 3);
  EXPECT_EQ(files.params.hidden_size, 32);
  FluxControlNet back(files.params, files.params.depth, files.params.depth_single_blocks);
  load_controlnet(*back, files);
  auto loaded = back->named_parameters();
  ASSERT_EQ(loaded.size(), params.size());
  for (const auto& item : params)
    EXPECT_TRUE(torch::equal(loaded[item.key()], item.value())) << item.key();
}

TEST(ControlNet, RefusesWhatItDoesNotRunByName) {
  TempDir tmp;
  FluxControlNet net(tiny_params(1, 1), 1, 1);
  const std::string dir = tmp / "controlnet";
  save_controlnet(*net, dir, torch::kFloat);
  auto config = read_json_file(dir + "/config.json");
  auto with = [&](const std::string& key, const nlohmann::json& value) {
    auto c = config;
    c[key] = value;
    write_file_atomically(dir + "/config.json", c.dump());
    return error_of([&] { inspect_controlnet(dir); });
  };
  EXPECT_NE(with("num_mode", 10).find("num_mode 10: union ControlNets"), std::string::npos);
  EXPECT_NE(with("conditioning_embedding_channels", 16).find("XLabs"), std::string::npos);
  EXPECT_NE(with("_class_name", "ControlNetModel").find("expected \"FluxControlNetModel\""),
            std::string::npos);
  FluxParams other = tiny_params(1, 1);
  other.guidance_embed = false;
  EXPECT_EQ(error_of([&] { check_controlnet_fits(tiny_params(1, 1), other, "--controlnet 'x'"); }),
            "--controlnet 'x': guidance input (guidance_embeds) 1, the base transformer has 0");
  EXPECT_NE(with("num_layers", 2).find("has no tensor 'transformer_blocks.1."), std::string::npos);
  write_file_atomically(dir + "/config.json", config.dump());
  // An extra tensor in the weights file is named.
  NamedTensors tensors;
  SafetensorsFile file(dir + "/diffusion_pytorch_model.safetensors");
  for (const auto& n : file.names()) tensors.push_back({n, file.load(n)});
  tensors.push_back({"controlnet_mode_embedder.weight", torch::zeros({10, 32})});
  save_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors);
  EXPECT_NE(error_of([&] {
              inspect_controlnet(dir);
            }).find("unexpected tensor 'controlnet_mode_embedder.weight'"),
            std::string::npos);
}
