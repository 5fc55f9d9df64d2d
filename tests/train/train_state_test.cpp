// TrainState through a manifest and back, and the MLPerf validation loss accumulated per
// timestep index.
#include "train/train_state.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "train/validation_loss.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;

TEST(TrainState, RoundTripsThroughJson) {
  TrainState s;
  s.step = 12;
  s.samples_seen = 384;
  s.optimizer_steps = 12;
  s.next_val_samples = 512;
  s.best_val_loss = 0.25;
  s.model = "/models/FLUX.1-dev";
  s.method = "full";
  s.train_blocks = {"double_blocks.1*", "final_layer"};
  s.complete_model = false;
  s.seed = 9;
  s.resolution = 512;
  s.sampling = {28, 512, 768, 4.0, 3.5, true};
  s.config_yaml = "steps: 20\n";
  s.resumes = {{"2026-12-01 10:00:00", "/runs/x/checkpoints/step-6", 6, {"steps: 10 -> 20"}}};
  s.fluxtrain_commit = "abc";
  const TrainState back = TrainState::from_json(nlohmann::json::parse(s.to_json().dump()), "ck");
  EXPECT_EQ(back.to_json(), s.to_json());
  EXPECT_FALSE(back.val_loss.has_value());
  EXPECT_EQ(*back.best_val_loss, 0.25);
  EXPECT_EQ(back.sampling.width, 768);
  EXPECT_EQ(back.resumes.at(0).changes.at(0), "steps: 10 -> 20");
  // A missing or mistyped field names the checkpoint and the key.
  auto j = s.to_json();
  j.erase("samples_seen");
  EXPECT_NE(error_of([&] {
              TrainState::from_json(j, "ck");
            }).find("checkpoint 'ck': manifest state has no 'samples_seen'"),
            std::string::npos);
  j = s.to_json();
  j["step"] = "twelve";
  EXPECT_EQ(error_of([&] { TrainState::from_json(j, "ck"); }),
            "checkpoint 'ck': manifest state 'step' has the wrong type (string)");
}

TEST(ValidationLoss, MeanOfPerTimestepMeans) {
  ValidationLoss v(4);
  // Index 0: 1, 3 (mean 2); index 2: 6 (mean 6); index 3: 0.5, 1.5, 1 (mean 1); index 1: none.
  v.add(torch::tensor({1.f, 6.f, 0.5f}), torch::tensor({0, 2, 3}, torch::kLong));
  v.add(torch::tensor({3.0, 1.5, 1.0}, torch::kDouble), torch::tensor({0, 3, 3}, torch::kLong));
  EXPECT_DOUBLE_EQ(v.value(), (2.0 + 6.0 + 1.0) / 3.0);
  EXPECT_TRUE(torch::equal(v.counts(), torch::tensor({2.0, 0.0, 1.0, 3.0}, torch::kDouble)));
  // A reduction over ranks that doubles every sum and count leaves the means unchanged.
  struct TwoRanks : DistContext {
    int64_t rank() const override { return 0; }
    int64_t world_size() const override { return 2; }
    void all_reduce_sum(torch::Tensor& t) override { t.mul_(2); }
  } two;
  v.all_reduce(two);
  EXPECT_DOUBLE_EQ(v.value(), 3.0);
  EXPECT_DOUBLE_EQ(ValidationLoss().value(), 0.0);
  EXPECT_THROW(v.add(torch::ones({1}), torch::tensor({4}, torch::kLong)), c10::Error);
}
