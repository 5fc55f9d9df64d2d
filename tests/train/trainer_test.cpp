// End to end on the CPU with the tiny preset: the loss falls on the shapes set, a resumed run is
// bit-identical to a straight one, validation follows the MLPerf recipe, checkpoints are kept,
// pruned and checked.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "io/checkpoint.h"
#include "train/train_config.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("fluxtrain_trainer_test_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

Config small_config(const fs::path& out, std::vector<std::string> extra = {}) {
  Config c(train_schema());
  std::vector<std::string> args = {"--output_dir",  out.string(), "--batch_size",   "8",
                                   "--steps",       "6",          "--warmup_steps", "2",
                                   "--val_samples", "16",         "--final_eval",   "none",
                                   "--threads",     "1",          "--log_every",    "100"};
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return c;
}

std::vector<nlohmann::json> read_rows(const fs::path& run, const std::string& type) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == type) rows.push_back(j);
  }
  return rows;
}

}  // namespace

TEST(Trainer, LossFallsOnShapes) {
  auto out = fresh_dir("falls");
  auto r =
      train(small_config(out, {"--steps", "40", "--batch_size", "16", "--lr", "2e-3", "--val_every",
                               "320", "--ckpt_every", "10", "--keep_last", "2"}));
  auto rows = read_rows(r.run_dir, "train");
  ASSERT_EQ(rows.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += rows[i]["loss"].get<double>() / 5;
  for (int i = 35; i < 40; ++i) last += rows[i]["loss"].get<double>() / 5;
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  // Validation every 320 samples (every 20 steps) and at the end; the best checkpoint exists.
  auto vals = read_rows(r.run_dir, "val");
  ASSERT_EQ(vals.size(), 2u);
  EXPECT_EQ(vals[0]["step"], 20);
  EXPECT_EQ(vals[1]["step"], 40);
  ASSERT_TRUE(r.best_val_loss.has_value());
  EXPECT_DOUBLE_EQ(*r.best_val_loss,
                   std::min(vals[0]["val_loss"].get<double>(), vals[1]["val_loss"].get<double>()));
  auto best = load_checkpoint_dir((fs::path(r.run_dir) / "checkpoints" / "best").string());
  EXPECT_DOUBLE_EQ(best.state["best_val_loss"].get<double>(), *r.best_val_loss);
  // keep_last 2: steps 30 and 40 remain.
  auto steps = list_step_checkpoints((fs::path(r.run_dir) / "checkpoints").string());
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].first, 30);
  EXPECT_EQ(steps[1].first, 40);
  // The CSV has a header and one row per step.
  std::ifstream csv(fs::path(r.run_dir) / "metrics.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "step,samples,loss,lr,grad_norm,samples_per_s,step_ms,val_loss");
  EXPECT_TRUE(fs::exists(fs::path(r.run_dir) / "config.yaml"));
}

TEST(Trainer, ResumeIsBitIdentical) {
  // 2N steps straight vs N steps, then resume to 2N: same losses, same weights, bit for bit.
  // Accumulation, caption dropout and a guidance-embedding model exercise every random stream.
  std::vector<std::string> common = {"--grad_accum",
                                     "2",
                                     "--caption_dropout",
                                     "0.3",
                                     "--model",
                                     "tiny-guidance",
                                     "--timestep_sampling",
                                     "flux_shift",
                                     "--val_every",
                                     "24",
                                     "--ckpt_every",
                                     "3"};
  auto out = fresh_dir("resume");
  auto straight_cfg = small_config(out / "a", common);
  auto straight = train(straight_cfg);
  auto half = common;
  half.insert(half.end(), {"--steps", "3"});
  auto first = train(small_config(out / "b", half));
  // A run that crashed after its checkpoint may have written rows past it: resume drops them.
  {
    std::ofstream(fs::path(first.run_dir) / "metrics.jsonl", std::ios::app)
        << "{\"type\":\"train\",\"step\":4,\"loss\":9}\n";
  }
  auto resumed_args = common;
  resumed_args.insert(resumed_args.end(),
                      {"--resume", (fs::path(first.run_dir) / "checkpoints" / "step-3").string()});
  auto resumed = train(small_config(out / "b", resumed_args));
  EXPECT_EQ(resumed.run_dir, first.run_dir);
  EXPECT_EQ(resumed.steps, 6);
  auto a = read_rows(straight.run_dir, "train"), b = read_rows(resumed.run_dir, "train");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["samples"], b[i]["samples"]);
  }
  auto va = read_rows(straight.run_dir, "val"), vb = read_rows(resumed.run_dir, "val");
  ASSERT_EQ(va.size(), vb.size());
  for (size_t i = 0; i < va.size(); ++i)
    EXPECT_EQ(va[i]["val_loss"].get<double>(), vb[i]["val_loss"].get<double>());
  auto ca = load_checkpoint_dir((fs::path(straight.run_dir) / "checkpoints" / "step-6").string());
  auto cb = load_checkpoint_dir((fs::path(resumed.run_dir) / "checkpoints" / "step-6").string());
  for (const std::string file : {"model.safetensors", "optimizer.safetensors"}) {
    const auto& fa = ca.file(file);
    const auto& fb = cb.file(file);
    ASSERT_EQ(fa.names(), fb.names());
    for (const auto& n : fa.names())
      EXPECT_TRUE(torch::equal(fa.load(n), fb.load(n))) << file << " " << n;
  }
  EXPECT_EQ(ca.state["samples_seen"], cb.state["samples_seen"]);
}

TEST(Trainer, GradientCheckpointingTrainsTheSame) {
  // Recomputing each block's activations in backward changes memory, not the math. The only
  // numerical difference is the order in which the blocks' gradient terms for vec are summed
  // (see tests/model/activation_checkpoint_test.cpp), so: the first loss is identical, gradient
  // norms and the second loss agree to rounding. AdamW's first steps move every weight by about
  // lr whatever the gradient's size, so a weight whose gradient is near zero turns rounding into
  // a visible step; weights are compared in fp32 only, where the rounding is far below that (a
  // block with wrong or missing gradients would differ by ~lr = 1e-3). Without zero_init, so
  // that the modulations, and the gradients through vec, are not zero.
  auto out = fresh_dir("checkpointing");
  for (const std::string precision : {"fp32", "bf16"}) {
    // Relative tolerances for step 1 and step 2 (after one update that rounding has moved):
    // measured fp32 5e-9, 5e-9; bf16 7.5e-6, 2e-4.
    const bool fp32 = precision == "fp32";
    const double tol[2] = {fp32 ? 1e-6 : 1e-4, fp32 ? 1e-6 : 1e-3};
    std::vector<std::string> common = {"--steps",     "2",       "--val_samples", "0",
                                       "--precision", precision, "--zero_init",   "false"};
    auto with = common;
    with.push_back("--gradient_checkpointing");
    auto a = train(small_config(out / (precision + "-plain"), common));
    auto b = train(small_config(out / (precision + "-checkpointed"), with));
    auto ra = read_rows(a.run_dir, "train"), rb = read_rows(b.run_dir, "train");
    ASSERT_EQ(ra.size(), 2u);
    ASSERT_EQ(rb.size(), 2u);
    EXPECT_EQ(ra[0]["loss"].get<double>(), rb[0]["loss"].get<double>()) << precision;
    EXPECT_NEAR(ra[1]["loss"].get<double>(), rb[1]["loss"].get<double>(),
                tol[1] * ra[1]["loss"].get<double>())
        << precision;
    for (size_t i = 0; i < 2; ++i) {
      const double gn = ra[i]["grad_norm"].get<double>();
      EXPECT_GT(gn, 0);
      EXPECT_NEAR(gn, rb[i]["grad_norm"].get<double>(), tol[i] * gn) << precision << " step " << i;
    }
    if (!fp32) continue;
    auto ca = load_checkpoint_dir((fs::path(a.run_dir) / "checkpoints" / "step-2").string());
    auto cb = load_checkpoint_dir((fs::path(b.run_dir) / "checkpoints" / "step-2").string());
    const auto& fa = ca.file("model.safetensors");
    const auto& fb = cb.file("model.safetensors");
    ASSERT_EQ(fa.names(), fb.names());
    for (const auto& n : fa.names())  // measured at most 3.1e-7
      EXPECT_LE((fa.load(n) - fb.load(n)).abs().max().item<double>(), 1e-5) << n;
  }
}

TEST(Trainer, Bf16AutocastAndBf16WeightsTrain) {
  auto out = fresh_dir("bf16");
  auto r = train(small_config(out, {"--steps", "3", "--precision", "bf16"}));
  EXPECT_TRUE(std::isfinite(r.last_loss));
  auto w = train(small_config(out, {"--steps", "3", "--precision", "bf16", "--weights", "bf16",
                                    "--optimizer_state", "bf16"}));
  EXPECT_TRUE(std::isfinite(w.last_loss));
  auto ck = load_checkpoint_dir((fs::path(w.run_dir) / "checkpoints" / "step-3").string());
  EXPECT_EQ(ck.file("model.safetensors").info("img_in.weight").dtype, "BF16");
  EXPECT_EQ(ck.file("optimizer.safetensors").info("exp_avg.img_in.weight").dtype, "BF16");
  // bf16 weights with fp32 compute is refused.
  EXPECT_THROW(train(small_config(out, {"--steps", "1", "--weights", "bf16"})), UserError);
}

TEST(Trainer, TargetValidationLossStopsTraining) {
  auto out = fresh_dir("target");
  auto r =
      train(small_config(out, {"--steps", "50", "--val_every", "8", "--target_val_loss", "100"}));
  EXPECT_TRUE(r.reached_target);
  EXPECT_EQ(r.steps, 1);
}

TEST(Trainer, BadResumeAndCorruptCheckpointsAreUserErrors) {
  auto out = fresh_dir("errors");
  auto r = train(small_config(out, {"--steps", "2"}));
  const auto ckpt = fs::path(r.run_dir) / "checkpoints" / "step-2";
  auto message = [&](std::vector<std::string> args) -> std::string {
    try {
      train(small_config(out, args));
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  };
  // Wrong model for the checkpoint.
  EXPECT_NE(message({"--steps", "4", "--model", "tiny-guidance", "--resume", ckpt.string()})
                .find("checkpoint is of model 'tiny', but model is 'tiny-guidance'"),
            std::string::npos);
  // Nothing left to do.
  EXPECT_NE(message({"--steps", "2", "--resume", ckpt.string()}).find("nothing to do"),
            std::string::npos);
  // A truncated model file.
  const auto model = ckpt / "model.safetensors";
  fs::resize_file(model, fs::file_size(model) - 100);
  auto m = message({"--steps", "4", "--resume", ckpt.string()});
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  // Not a checkpoint at all.
  EXPECT_NE(
      message({"--steps", "4", "--resume", out.string()}).find("expected a checkpoint directory"),
      std::string::npos);
}
