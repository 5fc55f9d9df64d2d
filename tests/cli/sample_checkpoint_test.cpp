// `fluxtrain sample --checkpoint` as a new user meets it: the settings the run's own evaluation
// used are the defaults, a resolution the model cannot make is refused, an empty prompt samples
// unconditionally, a long prompt is cut with a warning, progress is shown, and the evaluation
// grid carries its captions.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/image.h"
#include "io/text_render.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fluxtrain;
using fluxtrain::testing::run_fluxtrain;
using fluxtrain::testing::TempDir;

namespace {

TEST(SampleCheckpoint, DefaultsAreWhatTheRunsEvaluationUsed) {
  TempDir tmp;
  auto t = run_fluxtrain("train --output_dir " + (tmp / "runs") +
                         " --steps 2 --batch_size 4 --resolution 16 --val_samples 0 --threads 1"
                         " --sample_steps 3 --cfg_scale 2.5 --eval_images_per_caption 1");
  ASSERT_EQ(t.code, 0) << t.out;
  fs::path run;
  for (const auto& e : fs::directory_iterator(tmp.path() / "runs" / "default")) run = e.path();

  // The held-out grid: one captioned row per caption, 2 px pad, 96 px cells (16 px x 6).
  const auto grid = read_image((run / "samples" / "heldout.png").string());
  // Captions do not fit 96 px at scale 2: scale-1 strips.
  const int64_t cell = 96, strip = label_strip_height(1), rows = 23;
  EXPECT_EQ(grid.size(0), rows * (cell + strip + 2) + 2);
  EXPECT_EQ(grid.size(1), cell + 4);
  // Text (dark on the grey pad) in the first row's label strip.
  const auto first_strip = grid.narrow(0, 2 + cell, strip).to(torch::kInt);
  EXPECT_LT(first_strip.min().item<int>(), 60);

  auto r = run_fluxtrain("sample --checkpoint " + run.string() +
                         " --prompt \"a red circle in the top left\" --threads 1 --out " +
                         (tmp / "a.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  auto text = read_png_text(tmp / "a.png");
  EXPECT_EQ(text["steps"], "3");
  EXPECT_EQ(text["cfg_scale"], "2.5");
  EXPECT_EQ(text["size"], "16x16");
  EXPECT_NE(r.out.find("sampling 1 image(s): step 3/3"), std::string::npos) << r.out;
  // Flags still win.
  r = run_fluxtrain("sample --checkpoint " + run.string() +
                    " --prompt hi --steps 2 --cfg_scale 1 --height 24 --threads 1 --out " +
                    (tmp / "b.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  text = read_png_text(tmp / "b.png");
  EXPECT_EQ(text["steps"], "2");
  EXPECT_EQ(text["cfg_scale"], "1");
  EXPECT_EQ(text["size"], "16x24");

  // A resolution the model cannot make.
  r = run_fluxtrain("sample --checkpoint " + run.string() + " --prompt hi --height 18");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("resolution 18x16: height and width must be positive multiples of 4"),
            std::string::npos)
      << r.out;
  // An empty prompt samples unconditionally.
  r = run_fluxtrain("sample --checkpoint " + run.string() + " --prompt \"\" --threads 1 --out " +
                    (tmp / "empty.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("sampling unconditionally"), std::string::npos) << r.out;
  EXPECT_EQ(read_png_text(tmp / "empty.png")["prompt"], "");
  // A prompt longer than the encoder takes (the tiny model's 12 words) is cut, with a warning.
  r = run_fluxtrain("sample --checkpoint " + run.string() +
                    " --prompt \"a red circle in the top left and a blue square at the bottom "
                    "right\" --threads 1 --out " +
                    (tmp / "long.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("is 15 words; the hashed-word encoder takes 12: the last 3 are cut "
                       "('the bottom right'"),
            std::string::npos)
      << r.out;
}

}  // namespace
