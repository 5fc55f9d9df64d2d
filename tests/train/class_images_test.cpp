// DreamBooth prior preservation: the class images a folder lacks are generated with the base
// model, deterministically per image number, resumably; a DreamBooth run with them trains.
#include "train/class_images.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixtures/fixtures.h"
#include "io/image.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/train_spec.h"
#include "train/trainer.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fluxtrain::testing::TempDir;

namespace {

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_solid_png(const fs::path& p, int r, int g, int b) {
  auto img = torch::empty({32, 32, 3}, torch::kUInt8);
  img.select(2, 0).fill_(r);
  img.select(2, 1).fill_(g);
  img.select(2, 2).fill_(b);
  write_png(p.string(), img);
}

}  // namespace

TEST(ClassImages, GeneratesWhatTheFolderLacksDeterministicallyAndResumably) {
  TempDir tmp;
  const fs::path dir = tmp / "class";
  fs::create_directories(dir / "sub");
  write_solid_png(dir / "sub" / "mine.png", 10, 20, 30);  // a user's own class image counts
  Config c(train_schema());
  parse_args(c, {"--threads", "1"});
  Pipeline pipe = build_pipeline(TrainOptions::from_config(c));
  const ClassImageOptions o{dir.string(), "a photo of a dog", 3, 32, 2, 7};
  EXPECT_EQ(ensure_class_images(pipe, o), 2);
  EXPECT_EQ(count_class_images(dir.string()), 3);
  ASSERT_TRUE(fs::exists(dir / "class-000000.png"));
  ASSERT_TRUE(fs::exists(dir / "class-000001.png"));
  const auto image = read_image((dir / "class-000001.png").string());
  EXPECT_EQ(image.size(1), 32);
  EXPECT_EQ(read_png_text((dir / "class-000001.png").string())["prompt"], "a photo of a dog");
  EXPECT_NE(bytes_of(dir / "class-000000.png"), bytes_of(dir / "class-000001.png"));
  EXPECT_EQ(ensure_class_images(pipe, o), 0);  // complete: nothing to do
  // An interrupted generation (image 0 lost) resumes: the same image comes back, bit for bit.
  const std::string first = bytes_of(dir / "class-000000.png");
  fs::remove(dir / "class-000000.png");
  EXPECT_EQ(ensure_class_images(pipe, o), 1);
  EXPECT_EQ(bytes_of(dir / "class-000000.png"), first);
  EXPECT_EQ(count_class_images((tmp.path() / "none").string()), 0);
}

TEST(ClassImages, ADreamBoothRunGeneratesItsClassImagesAndLowersItsLoss) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "instance");
  const int colours[4][3] = {{200, 30, 30}, {190, 40, 20}, {210, 20, 40}, {180, 50, 30}};
  for (int i = 0; i < 4; ++i)
    write_solid_png(tmp.path() / "instance" / fmt::format("{}.png", i), colours[i][0], colours[i][1],
                    colours[i][2]);
  Config c(train_schema());
  parse_args(c, {"--data",
                 (tmp.path() / "instance").string(),
                 "--instance_prompt",
                 "a photo of sks toy",
                 "--class_data",
                 (tmp.path() / "class").string(),
                 "--class_prompt",
                 "a photo of a toy",
                 "--num_class_images",
                 "4",
                 "--sample_steps",
                 "2",
                 "--output_dir",
                 (tmp.path() / "runs").string(),
                 "--steps",
                 "12",
                 "--batch_size",
                 "4",
                 "--lr",
                 "2e-3",
                 "--lr_schedule",
                 "constant",
                 "--warmup_steps",
                 "0",
                 "--val_samples",
                 "0",
                 "--final_eval",
                 "none",
                 "--threads",
                 "1",
                 "--log_every",
                 "100"});
  auto r = train(c);
  EXPECT_EQ(count_class_images((tmp.path() / "class").string()), 4);
  const auto losses = fixtures::train_losses(r.run_dir);
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT((losses[9] + losses[10] + losses[11]) / 3,
            0.9 * (losses[0] + losses[1] + losses[2]) / 3);
  // DreamBooth with LoRA: the same data (the class folder is complete now), adapters only.
  Config lora = c;
  parse_args(lora, {"--method", "lora", "--lora_targets", "all", "--lr", "1e-2"});
  auto lr = train(lora);
  const auto ll = fixtures::train_losses(lr.run_dir);
  ASSERT_EQ(ll.size(), 12u);
  EXPECT_LT((ll[9] + ll[10] + ll[11]) / 3, 0.9 * (ll[0] + ll[1] + ll[2]) / 3);
  EXPECT_EQ(count_class_images((tmp.path() / "class").string()), 4);
  // Errors name what is missing.
  Config bad(train_schema());
  parse_args(bad, {"--data", (tmp.path() / "instance").string(), "--num_class_images", "3"});
  EXPECT_EQ(fluxtrain::testing::error_of([&] { TrainOptions::from_config(bad); }),
            "num_class_images 3: give class_data, the folder to hold the class images");
}
