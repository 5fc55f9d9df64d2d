// Resuming a run as a user does: from its directory alone with its own configuration, changes
// that alter what it computes refused unless --override (and recorded), a corrupt latest
// checkpoint skipped for the newest good one, and a run that died before its first checkpoint.
#include "train/resume.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/log.h"
#include "io/checkpoint.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

namespace {

Config config_of(std::vector<std::string> args) {
  Config c(train_schema());
  parse_args(c, args);
  return c;
}

// A 4-step run with checkpoints at steps 2 and 4 (both kept).
std::string four_step_run(const fs::path& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {
      "--output_dir", out.string(), "--batch_size", "4", "--steps",        "4",
      "--ckpt_every", "2",          "--keep_last",  "0", "--val_samples",  "8",
      "--final_eval", "none",       "--threads",    "1", "--warmup_steps", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return train(config_of(args)).run_dir;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(Resume, ChangesThatAlterTheRunAreRefusedUnlessOverridden) {
  TempDir tmp;
  const fs::path run = four_step_run(tmp.path());
  const std::string step2 = (fs::path(run) / "checkpoints" / "step-2").string();
  // steps reshapes the cosine schedule; lr and model change the computation: each is named.
  auto e = error_of([&] { train(config_of({"--resume", step2, "--steps", "8"})); });
  EXPECT_NE(e.find("steps: 4 -> 8"), std::string::npos) << e;
  EXPECT_NE(e.find("cosine schedule"), std::string::npos) << e;
  EXPECT_NE(e.find("--override"), std::string::npos) << e;
  e = error_of([&] {
    train(config_of({"--resume", step2, "--lr", "0.5", "--model", "tiny-guidance"}));
  });
  EXPECT_NE(e.find("lr: 0.001 -> 0.5"), std::string::npos) << e;
  EXPECT_NE(e.find("model: tiny -> tiny-guidance"), std::string::npos) << e;
  // The same value as saved is no change at all.
  EXPECT_EQ(
      error_of([&] {
        train(config_of({"--resume", step2, "--steps", "4", "--threads", "1", "--log_every", "3"}));
      }),
      "");
  // --override accepts the change and both resumes are on record in config.yaml.
  auto r = train(config_of({"--resume", run, "--steps", "6", "--override"}));
  EXPECT_EQ(r.steps, 6);
  const std::string yaml = read_text(fs::path(run) / "config.yaml");
  EXPECT_NE(yaml.find("step-2 (step 2): changed\n#   log_every: 10 -> 3"), std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find("step-4 (step 4): changed\n#   steps: 4 -> 6"), std::string::npos) << yaml;
  auto last = load_checkpoint_dir((fs::path(run) / "checkpoints" / "step-6").string());
  ASSERT_EQ(last.state["resumes"].size(), 2u);
  EXPECT_EQ(last.state["resumes"][1]["changes"][0], "steps: 4 -> 6");
}

TEST(Resume, StepsOfAConstantScheduleMayGrow) {
  TempDir tmp;
  const fs::path run = four_step_run(tmp.path(), {"--lr_schedule", "constant"});
  auto r = train(config_of({"--resume", run.string(), "--steps", "5"}));
  EXPECT_EQ(r.steps, 5);
}

TEST(Resume, ACorruptLatestCheckpointFallsBackToTheNewestGoodOne) {
  TempDir tmp;
  const fs::path run = four_step_run(tmp.path());
  // Change a byte inside step-4's weights: its checksum no longer matches.
  const fs::path model = run / "checkpoints" / "step-4" / "model.safetensors";
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(model) - 8));
    f.put('\x7f');
  }
  const std::string log_path = tmp / "log.txt";
  TrainResult r;
  {
    LogFileScope log(log_path);
    r = train(config_of({"--resume", run.string(), "--steps", "6", "--override"}));
  }
  EXPECT_EQ(r.steps, 6);
  const std::string log = read_text(log_path);
  EXPECT_NE(log.find("step-4 is unreadable"), std::string::npos) << log;
  EXPECT_NE(log.find("checksum"), std::string::npos) << log;
  EXPECT_NE(log.find("using " + (run / "checkpoints" / "step-2").string()), std::string::npos)
      << log;
  // It continued from step 2: the metrics hold steps 1..6 once each.
  std::ifstream rows(run / "metrics.csv");
  std::string line;
  std::vector<std::string> firsts;
  std::getline(rows, line);
  while (std::getline(rows, line)) firsts.push_back(line.substr(0, line.find(',')));
  EXPECT_EQ(firsts, (std::vector<std::string>{"1", "2", "3", "4", "5", "6"}));
  // (The resumed run wrote a new, good step-4.) Asking for a corrupt checkpoint by name is an
  // error naming it, not a silent fallback.
  const fs::path six = run / "checkpoints" / "step-6" / "model.safetensors";
  fs::resize_file(six, fs::file_size(six) - 8);
  auto e = error_of([&] {
    train(config_of(
        {"--resume", (run / "checkpoints" / "step-6").string(), "--steps", "8", "--override"}));
  });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
}

TEST(Resume, ARunThatDiedBeforeItsFirstCheckpointSaysSo) {
  TempDir tmp;
  const fs::path run = tmp.path() / "runs" / "default" / "20261201-101010";
  fs::create_directories(run);
  std::ofstream(run / "config.yaml") << "steps: 10\n";
  std::ofstream(run / "metrics.jsonl") << "{\"type\":\"train\",\"step\":1,\"loss\":1}\n";
  auto e = error_of([&] { train(config_of({"--resume", run.string()})); });
  EXPECT_NE(e.find("has no checkpoint yet"), std::string::npos) << e;
  EXPECT_NE(e.find("start it again without --resume"), std::string::npos) << e;
}
