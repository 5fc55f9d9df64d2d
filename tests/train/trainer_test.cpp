// End to end on the CPU with the tiny preset: the loss falls on the shapes set, a resumed run is
// bit-identical to a straight one, validation follows the MLPerf recipe, checkpoints are kept,
// pruned and checked.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "fixtures/fixtures.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "test_util.h"
#include "train/train_config.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

namespace {

using fluxtrain::testing::TempDir;

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

}  // namespace

TEST(Trainer, LossFallsOnShapes) {
  TempDir out;
  auto r = train(
      small_config(out.path(), {"--steps", "40", "--batch_size", "16", "--lr", "2e-3",
                                "--val_every", "20", "--ckpt_every", "10", "--keep_last", "2"}));
  auto rows = fixtures::metrics_rows(r.run_dir, "train");
  ASSERT_EQ(rows.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += rows[i]["loss"].get<double>() / 5;
  for (int i = 35; i < 40; ++i) last += rows[i]["loss"].get<double>() / 5;
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  // Validation every 20 steps and at the end; the best checkpoint exists.
  auto vals = fixtures::metrics_rows(r.run_dir, "val");
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
  // The console log is in the run directory too.
  std::ifstream log(fs::path(r.run_dir) / "train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("# resolved config"), std::string::npos);
  EXPECT_NE(text.find("step 40/40 | loss"), std::string::npos);
  EXPECT_NE(text.find("validation loss"), std::string::npos);
  EXPECT_TRUE(fs::exists(fs::path(r.run_dir) / "loss.svg"));  // the loss curve, at the end
}

TEST(Trainer, AFewCaptionsGetAFinalGridOfSamplesPerCaption) {
  // An image folder with two captions: final_eval auto samples each caption 3 times into
  // samples/captions.png (one captioned row per caption) and records it in eval.json.
  TempDir out;
  const fs::path images = out.path() / "images";
  fs::create_directories(images);
  for (int i = 0; i < 4; ++i) {
    auto hwc = torch::full({32, 32, 3}, i % 2 ? 200 : 30, torch::kUInt8);
    write_png((images / fmt::format("{}.png", i)).string(), hwc);
    std::ofstream(images / fmt::format("{}.txt", i)) << (i % 2 ? "a bright square" : "a dark one");
  }
  auto r = train(small_config(
      out.path(), {"--data", images.string(), "--steps", "2", "--batch_size", "2", "--final_eval",
                   "auto", "--eval_images_per_caption", "3", "--sample_steps", "2"}));
  const fs::path grid = fs::path(r.run_dir) / "samples" / "captions.png";
  ASSERT_TRUE(fs::exists(grid));
  const auto img = read_image(grid.string());
  // Three 32 px images a row, enlarged 3x so that a row is at least 256 px wide (2 px padding),
  // and two rows, each with a caption strip under it.
  EXPECT_EQ(img.size(1), 3 * (96 + 2) + 2);
  EXPECT_GT(img.size(0), 2 * (96 + 2) + 2);
  const auto eval = nlohmann::json::parse(std::ifstream(fs::path(r.run_dir) / "samples/eval.json"));
  EXPECT_EQ(eval["captions"], (std::vector<std::string>{"a bright square", "a dark one"}));
  EXPECT_EQ(eval["images_per_caption"], 3);
  // The shapes judge only knows the built-in shapes.
  EXPECT_EQ(
      fluxtrain::testing::error_of([&] {
        train(small_config(out.path(), {"--data", images.string(), "--final_eval", "shapes"}));
      }),
      "final_eval shapes: the data is imagefolder, not the built-in shapes");
}

TEST(Trainer, ValidationEverySamplesCountsSamples) {
  // MLPerf counts samples: every 48 samples at batch 16 is every 3 steps; with grad_accum 2
  // (32 samples a step) validation falls due at steps 2 (64 >= 48), 3 (96) and 5 (160 >= 144).
  TempDir out;
  auto r = train(small_config(out.path(), {"--steps", "5", "--batch_size", "16", "--grad_accum",
                                           "2", "--val_every_samples", "48"}));
  std::vector<int64_t> steps;
  for (const auto& v : fixtures::metrics_rows(r.run_dir, "val"))
    steps.push_back(v["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{2, 3, 5}));
  // Both intervals at once is refused.
  EXPECT_NE(fluxtrain::testing::error_of([&] {
              train(small_config(out.path(), {"--val_every", "2", "--val_every_samples", "48"}));
            }).find("give one validation interval"),
            std::string::npos);
}

TEST(Trainer, ValidationEveryEpochsFollowsTheData) {
  // 32 shapes at batch 8 are 4 batches an epoch: every 2 epochs is after steps 8 and 16, and the
  // last step (18) validates too. Each validation row says how many epochs the run has seen.
  TempDir out;
  auto r = train(small_config(
      out.path(), {"--steps", "18", "--dataset_size", "32", "--val_every_epochs", "2"}));
  std::vector<int64_t> steps;
  std::vector<double> epochs;
  for (const auto& v : fixtures::metrics_rows(r.run_dir, "val")) {
    steps.push_back(v["step"].get<int64_t>());
    epochs.push_back(v["epoch"].get<double>());
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{8, 16, 18}));
  EXPECT_EQ(epochs, (std::vector<double>{2.0, 4.0, 4.5}));
  EXPECT_NE(fluxtrain::testing::error_of([&] {
              train(small_config(out.path(), {"--val_every", "2", "--val_every_epochs", "1"}));
            }).find("give one validation interval"),
            std::string::npos);
}

TEST(Trainer, ResumeIsBitIdentical) {
  // 6 steps straight vs a run that died after its step-3 checkpoint, resumed from its run
  // directory alone (its own configuration): same losses, same weights, bit for bit.
  // Accumulation, caption dropout, EMA and a guidance-embedding model exercise every random
  // stream and every file of the checkpoint.
  std::vector<std::string> common = {"--grad_accum",
                                     "2",
                                     "--caption_dropout",
                                     "0.3",
                                     "--model",
                                     "tiny-guidance",
                                     "--timestep_sampling",
                                     "flux_shift",
                                     "--val_every",
                                     "2",
                                     "--ckpt_every",
                                     "3",
                                     "--keep_last",
                                     "0",
                                     "--ema_decay",
                                     "0.9"};
  TempDir out;
  auto straight = train(small_config(out.path() / "a", common));
  auto first = train(small_config(out.path() / "b", common));
  // Make it a run that died after step 3: the step-6 checkpoint never happened, and rows past
  // the checkpoint were written before the end.
  const fs::path run_b = first.run_dir;
  fs::remove_all(run_b / "checkpoints" / "step-6");
  {
    std::ofstream(run_b / "metrics.jsonl", std::ios::app)
        << "{\"type\":\"train\",\"step\":7,\"loss\":9}\n";
  }
  Config resume_only(train_schema());
  parse_args(resume_only, {"--resume", run_b.string()});
  auto resumed = train(resume_only);
  EXPECT_EQ(resumed.run_dir, first.run_dir);
  EXPECT_EQ(resumed.steps, 6);
  auto a = fixtures::metrics_rows(straight.run_dir, "train"),
       b = fixtures::metrics_rows(resumed.run_dir, "train");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["samples"], b[i]["samples"]);
  }
  auto va = fixtures::metrics_rows(straight.run_dir, "val"),
       vb = fixtures::metrics_rows(resumed.run_dir, "val");
  ASSERT_EQ(va.size(), vb.size());
  for (size_t i = 0; i < va.size(); ++i)
    EXPECT_EQ(va[i]["val_loss"].get<double>(), vb[i]["val_loss"].get<double>());
  auto ca = load_checkpoint_dir((fs::path(straight.run_dir) / "checkpoints" / "step-6").string());
  auto cb = load_checkpoint_dir((fs::path(resumed.run_dir) / "checkpoints" / "step-6").string());
  for (const std::string file : {"model.safetensors", "optimizer.safetensors", "ema.safetensors"}) {
    const auto& fa = ca.file(file);
    const auto& fb = cb.file(file);
    ASSERT_EQ(fa.names(), fb.names());
    for (const auto& n : fa.names())
      EXPECT_TRUE(torch::equal(fa.load(n), fb.load(n))) << file << " " << n;
  }
  EXPECT_EQ(ca.state["samples_seen"], cb.state["samples_seen"]);
  // The resume is on record: in the checkpoint's state and in config.yaml, which still holds the
  // run's original configuration.
  ASSERT_EQ(cb.state["resumes"].size(), 1u);
  EXPECT_EQ(cb.state["resumes"][0]["step"], 3);
  std::ifstream cfg(run_b / "config.yaml");
  const std::string yaml((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
  EXPECT_NE(yaml.find("# resumed "), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("step-3 (step 3): no changes"), std::string::npos) << yaml;
  Config reread(train_schema());
  reread.load_yaml_string(yaml, "config.yaml");
  EXPECT_EQ(reread.s("model"), "tiny-guidance");
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
  TempDir tmp;
  const fs::path out = tmp.path();
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
    auto ra = fixtures::metrics_rows(a.run_dir, "train"),
         rb = fixtures::metrics_rows(b.run_dir, "train");
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
  TempDir tmp;
  const fs::path out = tmp.path();
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
  TempDir tmp;
  auto r = train(
      small_config(tmp.path(), {"--steps", "50", "--val_every", "1", "--target_val_loss", "100"}));
  EXPECT_TRUE(r.reached_target);
  EXPECT_EQ(r.steps, 1);
}

TEST(Trainer, BadResumeAndCorruptCheckpointsAreUserErrors) {
  TempDir tmp;
  const fs::path out = tmp.path();
  auto r = train(small_config(out, {"--steps", "2"}));
  const auto ckpt = fs::path(r.run_dir) / "checkpoints" / "step-2";
  auto message = [&](std::vector<std::string> args) {
    return fluxtrain::testing::error_of([&] { train(small_config(out, args)); });
  };
  // Nothing left to do.
  EXPECT_NE(message({"--steps", "2", "--resume", ckpt.string()}).find("nothing to do"),
            std::string::npos);
  // A truncated model file, asked for by name: an error naming it (no fallback).
  const auto model = ckpt / "model.safetensors";
  fs::resize_file(model, fs::file_size(model) - 100);
  auto m = message({"--resume", ckpt.string()});
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  // Not a checkpoint at all.
  EXPECT_NE(message({"--resume", out.string()}).find("expected a checkpoint directory"),
            std::string::npos);
}

TEST(Trainer, MemorySaversCombineAndResumeBitIdentically) {
  // 8-bit AdamW, every second block checkpointed, accumulation and an EMA kept on the CPU, all at
  // once: the run resumes bit for bit from its 8-bit optimizer state.
  const std::vector<std::string> savers = {"--optimizer_state",
                                           "int8",
                                           "--gradient_checkpointing",
                                           "true",
                                           "--gradient_checkpointing_every",
                                           "2",
                                           "--grad_accum",
                                           "2",
                                           "--ema_decay",
                                           "0.9",
                                           "--ema_on_cpu",
                                           "true",
                                           "--ckpt_every",
                                           "3",
                                           "--keep_last",
                                           "0"};
  TempDir out;
  auto straight = train(small_config(out.path() / "a", savers));
  auto first = train(small_config(out.path() / "b", savers));
  fs::remove_all(fs::path(first.run_dir) / "checkpoints" / "step-6");
  Config resume_only(train_schema());
  parse_args(resume_only, {"--resume", first.run_dir});
  auto resumed = train(resume_only);
  EXPECT_EQ(fixtures::train_losses(straight.run_dir), fixtures::train_losses(resumed.run_dir));
  const fs::path ca = fs::path(straight.run_dir) / "checkpoints" / "step-6";
  EXPECT_EQ(fixtures::checkpoint_differences(
                ca.string(), (fs::path(resumed.run_dir) / "checkpoints" / "step-6").string(),
                {"model.safetensors", "optimizer.safetensors", "ema.safetensors"}),
            std::vector<std::string>{});
  int quantised = 0;
  const auto checkpoint = load_checkpoint_dir(ca.string());  // (named: names() refers into it)
  for (const auto& n : checkpoint.file("optimizer.safetensors").names())
    quantised += n.size() > 3 && n.compare(n.size() - 3, 3, ".q8") == 0;
  EXPECT_GT(quantised, 10);  // the large tensors' moments are 8-bit
  const auto losses = fixtures::train_losses(straight.run_dir);
  EXPECT_LT(losses.back(), losses.front());
}

TEST(Trainer, RunSummaryHasThroughputCostValidationsAndTheBestCheckpoint) {
  TempDir out;
  auto r = train(
      small_config(out.path(), {"--val_every", "2", "--ckpt_every", "2",
                                "--checkpoints_total_limit", "1", "--price_per_hour", "2.5"}));
  std::ifstream in(fs::path(r.run_dir) / "summary.json");
  const auto s = nlohmann::json::parse(in);
  const auto rows = fixtures::metrics_rows(r.run_dir, "train");
  ASSERT_EQ(rows.size(), 6u);
  double step_ms = 0;
  for (const auto& row : rows) step_ms += row["step_ms"].get<double>();
  EXPECT_NEAR(s["mean_step_ms"].get<double>(), step_ms / 6, 1e-6 * step_ms);
  EXPECT_NEAR(s["images_per_s"].get<double>(), 48.0 / (step_ms / 1000.0),
              1e-6 * s["images_per_s"].get<double>());
  EXPECT_LE(s["training_seconds"].get<double>(), s["seconds"].get<double>());
  EXPECT_DOUBLE_EQ(s["device_hours"].get<double>(), s["seconds"].get<double>() / 3600.0);
  EXPECT_DOUBLE_EQ(s["cost"].get<double>(), 2.5 * s["device_hours"].get<double>());
  // Validation at steps 2, 4, 6 with their epochs; the best of them is checkpoints/best.
  const auto vals = fixtures::metrics_rows(r.run_dir, "val");
  ASSERT_EQ(s["validation"].size(), vals.size());
  ASSERT_EQ(vals.size(), 3u);
  size_t best = 0;
  for (size_t i = 0; i < vals.size(); ++i) {
    EXPECT_EQ(s["validation"][i]["step"], vals[i]["step"]);
    EXPECT_EQ(s["validation"][i]["val_loss"], vals[i]["val_loss"]);
    EXPECT_EQ(s["validation"][i]["epoch"], vals[i]["epoch"]);
    if (vals[i]["val_loss"].get<double>() < vals[best]["val_loss"].get<double>()) best = i;
  }
  EXPECT_EQ(s["best_checkpoint"]["step"], vals[best]["step"]);
  EXPECT_EQ(load_checkpoint_dir(s["best_checkpoint"]["dir"].get<std::string>()).state["step"],
            vals[best]["step"]);
  // checkpoints_total_limit 1 (diffusers' name for keep_last): one step checkpoint is left.
  EXPECT_EQ(list_step_checkpoints((fs::path(r.run_dir) / "checkpoints").string()).size(), 1u);
}
