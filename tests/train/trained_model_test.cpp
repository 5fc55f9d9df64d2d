// The `full` method as a model part: which parameters train (name patterns), that frozen ones
// get no gradient, and what a checkpoint saves and restores.
#include "train/trained_model.h"

#include <gtest/gtest.h>

#include "model/presets.h"
#include "model/weights.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

TEST(TrainedModel, PatternsSelectNamesAndDottedPrefixes) {
  const std::vector<std::string> names = {"img_in.weight",
                                          "double_blocks.1.img_attn.qkv.weight",
                                          "double_blocks.10.txt_mlp.0.bias",
                                          "double_blocks.2.img_mod.lin.weight",
                                          "single_blocks.0.linear1.weight",
                                          "final_layer.linear.weight"};
  EXPECT_EQ(select_parameters(names, {}), names);
  EXPECT_EQ(select_parameters(names, {"double_blocks.1"}),
            (std::vector<std::string>{"double_blocks.1.img_attn.qkv.weight"}));
  EXPECT_EQ(select_parameters(names, {"double_blocks.1*"}),
            (std::vector<std::string>{"double_blocks.1.img_attn.qkv.weight",
                                      "double_blocks.10.txt_mlp.0.bias"}));
  EXPECT_EQ(select_parameters(names, {"*.img_*", "final_layer"}),
            (std::vector<std::string>{"double_blocks.1.img_attn.qkv.weight",
                                      "double_blocks.2.img_mod.lin.weight",
                                      "final_layer.linear.weight"}));
  EXPECT_EQ(select_parameters(names, {"single_blocks.[0-3]", "img_in.weight"}),
            (std::vector<std::string>{"img_in.weight", "single_blocks.0.linear1.weight"}));
  // A prefix is a whole dotted part: "double_blocks.1" does not select double_blocks.10.
  EXPECT_NE(error_of([&] {
              select_parameters(names, {"double_blocks.3"});
            }).find("train_blocks: pattern 'double_blocks.3' selects no parameter"),
            std::string::npos);
  EXPECT_NE(error_of([&] { select_parameters(names, {"double_block"}); }), "");
}

TEST(TrainedModel, FrozenParametersGetNoGradientAndCheckpointsHoldTheTrainedOnes) {
  torch::manual_seed(1);
  Flux flux(model_preset("tiny").flux);
  FullFineTune all(flux, {}, false);
  EXPECT_TRUE(all.saves_complete_model());
  EXPECT_EQ(all.trainable().size(), flux->named_parameters().size());
  EXPECT_EQ(all.describe().rfind("full: all 2,304,560 parameters train", 0), 0u) << all.describe();

  FullFineTune part(flux, {"single_blocks.3", "final_layer"}, false);
  EXPECT_FALSE(part.saves_complete_model());
  for (const auto& kv : flux->named_parameters()) {
    const bool trains =
        kv.key().rfind("single_blocks.3.", 0) == 0 || kv.key().rfind("final_layer.", 0) == 0;
    EXPECT_EQ(kv.value().requires_grad(), trains) << kv.key();
  }
  const auto saved = part.checkpoint_tensors();
  ASSERT_EQ(saved.size(), part.trainable().size());
  EXPECT_EQ(saved.front().first, "single_blocks.3.linear1.weight");
  EXPECT_NE(part.describe().find("the rest frozen"), std::string::npos) << part.describe();
  int64_t saved_numel = 0;
  for (const auto& [name, t] : saved) saved_numel += t.numel();
  EXPECT_EQ(part.trainable_parameters(), saved_numel);
  // save_frozen: complete checkpoints, same trainable set.
  FullFineTune frozen_too(flux, {"single_blocks.3", "final_layer"}, true);
  EXPECT_TRUE(frozen_too.saves_complete_model());
  EXPECT_EQ(frozen_too.checkpoint_tensors().size(), flux->named_parameters().size());
}

TEST(TrainedModel, PartialCheckpointsLoadOntoTheBaseAndRefuseAnotherSelection) {
  TempDir tmp;
  torch::manual_seed(1);
  Flux base(model_preset("tiny").flux);
  FullFineTune part(base, {"single_blocks.3"}, false);
  NamedTensors changed;
  for (auto& [name, t] : part.checkpoint_tensors()) changed.emplace_back(name, t + 1);
  save_safetensors(tmp / "model.safetensors", changed);
  const SafetensorsFile file(tmp / "model.safetensors");
  NamedTensors before;
  for (auto& [name, t] : module_tensors(*base)) before.emplace_back(name, t.clone());
  part.load_checkpoint(file);
  const auto after = module_tensors(*base);
  for (size_t i = 0; i < before.size(); ++i) {
    const bool trained = before[i].first.rfind("single_blocks.3.", 0) == 0;
    EXPECT_EQ(torch::equal(before[i].second + (trained ? 1 : 0), after[i].second), true)
        << before[i].first;
  }
  Flux other(model_preset("tiny").flux);
  FullFineTune wider(other, {"single_blocks.[23]"}, false);
  EXPECT_NE(error_of([&] { wider.load_checkpoint(file); }).find("has no tensor 'single_blocks.2"),
            std::string::npos);
  FullFineTune narrower(other, {"final_layer"}, false);
  EXPECT_NE(error_of([&] { narrower.load_checkpoint(file); }).find("which this run does not train"),
            std::string::npos);
}
