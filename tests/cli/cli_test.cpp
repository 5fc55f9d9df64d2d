// The fluxtrain binary as a user runs it: help, exit codes, one-line errors, info, train + sample.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "io/image.h"
#include "test_util.h"

namespace fs = std::filesystem;

using fluxtrain::testing::run_fluxtrain;

namespace {

using Result = fluxtrain::testing::CommandResult;

fs::path clidir(const std::string& name) {
  return fluxtrain::testing::fresh_temp_dir("cli_" + name);
}

}  // namespace

TEST(Cli, HelpForEveryCommand) {
  for (const std::string cmd : {"train", "sample", "info"}) {
    auto r = run_fluxtrain(cmd + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("usage: fluxtrain " + cmd), std::string::npos) << r.out;
  }
  EXPECT_NE(run_fluxtrain("train --help")
                .out.find("--timestep_sampling uniform|logit_normal|shift|flux_shift"),
            std::string::npos);
  auto r = run_fluxtrain("");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("commands:"), std::string::npos);
}

TEST(Cli, UserErrorsAreOneLineWithExitCode2) {
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"train --learning_rate 1",
       "fluxtrain train: error: --learning_rate: unknown key 'learning_rate'\n"},
      {"train --steps -3",
       "fluxtrain train: error: --steps: bad value '-3' for 'steps': expected a number >= 1\n"},
      {"train --config /nonexistent/x.yaml",
       "fluxtrain train: error: config file '/nonexistent/x.yaml' does not exist\n"},
      {"train --precision fp8",
       "fluxtrain train: error: --precision: bad value 'fp8' for 'precision': expected one of "
       "fp32|bf16\n"},
      {"train --device cuda:0",
       "fluxtrain train: error: device 'cuda:0': this build or machine has no CUDA device (use "
       "--device cpu)\n"},
      {"train --model flux-dev --device cpu",
       "fluxtrain train: error: model 'flux-dev' is a preset without weights: give --model a "
       "FLUX.1 model path to fine-tune it, use --model tiny, or --stand_in_encoders for "
       "benchmarks\n"},
      {"sample --prompt hi",
       "fluxtrain sample: error: give --checkpoint (a checkpoint or run directory) or --model (a "
       "FLUX.1 model), one of them\n"},
      {"sample --prompt hi --checkpoint /tmp --model /tmp",
       "fluxtrain sample: error: give --checkpoint (a checkpoint or run directory) or --model (a "
       "FLUX.1 model), one of them\n"},
      {"sample --prompt hi --model /nonexistent",
       "fluxtrain sample: error: --model '/nonexistent': no such file or directory (a model "
       "directory, a Hugging Face cache entry or a .safetensors file expected)\n"},
      {"sample --checkpoint /nonexistent",
       "fluxtrain sample: error: --checkpoint: '/nonexistent' for 'checkpoint' does not exist\n"},
      {"info --model flux-pro",
       "fluxtrain info: error: --model 'flux-pro': expected a preset (flux-dev, flux-schnell, "
       "tiny, tiny-guidance) or a model directory or .safetensors file\n"},
      {"frobnicate",
       "fluxtrain: unknown command 'frobnicate': expected train, prepare, sample, convert, info or "
       "bench\n"},
  };
  for (const auto& c : cases) {
    auto r = run_fluxtrain(c.args);
    EXPECT_EQ(r.code, 2) << c.args;
    // On a machine with CUDA, --device cuda:0 is valid and fails later for another reason.
    if (c.args.find("cuda") != std::string::npos && torch::cuda::is_available()) continue;
    EXPECT_EQ(r.out.substr(r.out.size() >= c.message.size() ? r.out.size() - c.message.size() : 0),
              c.message)
        << c.args;
  }
  // A bad YAML value names the file and line.
  auto dir = clidir("yaml");
  std::ofstream(dir / "bad.yaml") << "steps: 10\nbatch_size: many\n";
  auto r = run_fluxtrain("train --config " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("bad.yaml (line 2): bad value 'many' for 'batch_size': expected an integer"),
            std::string::npos)
      << r.out;
}

TEST(Cli, InfoCountsTheRealPresetsByShape) {
  auto dev = run_fluxtrain("info --model flux-dev");
  EXPECT_EQ(dev.code, 0);
  EXPECT_NE(dev.out.find("total                         11,901,408,320     11,901,408,320"),
            std::string::npos)
      << dev.out;
  EXPECT_NE(dev.out.find("double_blocks          19"), std::string::npos);
  EXPECT_NE(dev.out.find("BF16"), std::string::npos);
  auto schnell = run_fluxtrain("info --model flux-schnell");
  EXPECT_NE(schnell.out.find("11,891,178,560"), std::string::npos) << schnell.out;
  EXPECT_EQ(schnell.out.find("guidance_in"), std::string::npos);
}

TEST(Cli, TrainThenSampleWritesPngsWithSettings) {
  auto dir = clidir("sample");
  auto t = run_fluxtrain(
      "train --output_dir " + dir.string() +
      " --name cli --steps 3 --batch_size 4 --val_samples 8 --final_eval none --threads 1");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("# resolved config"), std::string::npos);
  fs::path run_dir;
  for (auto& e : fs::directory_iterator(dir / "cli")) run_dir = e.path();
  ASSERT_TRUE(fs::exists(run_dir / "checkpoints" / "step-3" / "manifest.json"));
  auto out = dir / "red.png";
  auto s = run_fluxtrain(
      "sample --checkpoint " + run_dir.string() +
      " --threads 1 --prompt \"a red circle in the top left\" --steps 3 --seed 7 --out " +
      out.string());
  ASSERT_EQ(s.code, 0) << s.out;
  auto img = fluxtrain::read_image(out.string());
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{32, 32, 3}));
  auto text = fluxtrain::read_png_text(out.string());
  EXPECT_EQ(text["prompt"], "a red circle in the top left");
  EXPECT_EQ(text["steps"], "3");
  EXPECT_EQ(text["seed"], "7");
  EXPECT_EQ(text["model"], "tiny");
  // Several prompts from a file and two images each: four numbered files, reproducible by seed.
  std::ofstream(dir / "prompts.txt")
      << "a blue square in the center\n\na green triangle at the bottom\n";
  auto m = run_fluxtrain("sample --checkpoint " + run_dir.string() + " --prompts_file " +
                         (dir / "prompts.txt").string() +
                         " --threads 1 --batch 2 --steps 2 --seed 7 --out " +
                         (dir / "many.png").string());
  ASSERT_EQ(m.code, 0) << m.out;
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(fs::exists(dir / fmt::format("many-{:03d}.png", k))) << k;
  EXPECT_EQ(fluxtrain::read_png_text((dir / "many-002.png").string())["seed"], "8");
  // The same seed and prompt give the same pixels.
  auto again = dir / "red2.png";
  run_fluxtrain("sample --checkpoint " + run_dir.string() +
                " --threads 1 --prompt \"a red circle in the top left\" --steps 3 --seed 7 --out " +
                again.string());
  EXPECT_TRUE(
      torch::equal(fluxtrain::read_image(out.string()), fluxtrain::read_image(again.string())));
}
