// Control images for ControlNet training: the Canny control image of a hand-made step; a control
// folder's images cropped and flipped exactly as their training images are, resized to them when
// their size differs; a missing control image is named.
#include "data/control_images.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/image_dataset.h"
#include "data/image_folder.h"
#include "data/parquet_source.h"
#include "fixtures/fixtures.h"
#include "fixtures/parquet_fixture.h"
#include "io/image.h"
#include "test_util.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

namespace {

// A random-looking RGB image (uint8 [h, w, 3]) from `seed`.
torch::Tensor noise_image(int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {h, w, 3}, torch::kInt64).to(torch::kUInt8);
}

// 32 px buckets in steps of 8 (16..64 px), random crops and flips.
ImageDatasetOptions cropping_and_flipping_buckets() {
  ImageDatasetOptions io;
  io.resolution = 32;
  io.bucket.step = 8;
  io.bucket.min_side = 16;
  io.bucket.max_side = 64;
  io.transform.random_crop = io.transform.random_flip = true;
  return io;
}

}  // namespace

TEST(ControlImages, CannyOfAStepIsItsEdgeColumnInThreeChannels) {
  // 8 x 8, columns 0..3 black (-1), 4..7 white (1). Without blur, Sobel's gx is 4 x 255 = 1020 on
  // columns 3 and 4 and 0 elsewhere; non-maximum suppression keeps the last dark column (3); the
  // border rows 0 and 7 are never edges.
  auto image = torch::full({3, 8, 8}, -1.0f);
  image.narrow(2, 4, 4).fill_(1.0f);
  CannyOptions o;
  o.sigma = 0;
  const auto control = canny_control_image(image, o);
  ASSERT_EQ(control.sizes(), (std::vector<int64_t>{3, 8, 8}));
  auto expected = torch::full({8, 8}, -1.0f);
  expected.narrow(0, 1, 6).narrow(1, 3, 1).fill_(1.0f);
  for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(control[c], expected)) << c;
  // Thresholds above the step's magnitude leave no edge.
  o.low_threshold = o.high_threshold = 1021;
  EXPECT_TRUE(torch::equal(canny_control_image(image, o), torch::full({3, 8, 8}, -1.0f)));
}

TEST(ControlImages, AFolderOfControlImagesCropsAndFlipsWithItsImages) {
  TempDir tmp;
  const fs::path images = tmp.path() / "images", controls = tmp.path() / "controls";
  // a.png: the control image is the image itself (so a joined example must have control ==
  // image under any crop and flip); b.png: the control is half the size (resized up first).
  const auto a = noise_image(40, 56, 1), b = noise_image(48, 48, 2);
  fixtures::write_text((images / "a.png").string(), encode_png(a));
  fixtures::write_text((images / "sub/b.png").string(), encode_png(b));
  fixtures::write_text((images / "a.txt").string(), "an a");
  fixtures::write_text((images / "sub/b.txt").string(), "a b");
  fixtures::write_text((controls / "a.png").string(), encode_png(a));
  fixtures::write_text((controls / "sub/b.png").string(), encode_png(noise_image(24, 24, 3)));
  auto report = std::make_shared<DataReport>();
  auto src = std::make_shared<ImageFolderSource>(images.string(), ImageFolderOptions{}, *report);
  const ImageDatasetOptions io = cropping_and_flipping_buckets();
  auto ds = std::make_shared<ImageDataset>(src, io, report);
  ControlImageOptions co;
  co.source = controls.string();
  co.image_dir = images.string();
  co.transform = io.transform;
  auto joined = with_control_images(ds, co);
  ASSERT_EQ(joined->size(), 2);
  int moved = 0;
  for (uint64_t draw = 0; draw < 8; ++draw) {
    const Example ex = joined->sample(0, draw);
    ASSERT_EQ(ex.key, "a.png");
    EXPECT_TRUE(torch::equal(ex.control_image, ex.image)) << "draw " << draw;
    moved += !torch::equal(ex.image, ds->get(0).image);
  }
  EXPECT_GT(moved, 0);  // the draws did crop or flip
  const Example eb = joined->get(1);
  ASSERT_EQ(eb.key, "sub/b.png");
  // By hand: the 24 x 24 control resized to its image's 48 x 48, then fitted to the same bucket
  // as the image (no draw: centred).
  const auto small = noise_image(24, 24, 3);
  const auto resized = control_image_at_size(small, 48, 48);
  const auto expected = fit_to_bucket(resized, Bucket{eb.image.size(2), eb.image.size(1)},
                                      io.transform, std::nullopt);
  EXPECT_TRUE(torch::equal(eb.control_image, expected));
  EXPECT_TRUE(torch::equal(joined->get(1).control_image, eb.control_image));

  // A control image that is not there is named.
  fs::remove(controls / "sub/b.png");
  EXPECT_NE(error_of([&] { joined->get(1); }).find((controls / "sub/b.png").string()),
            std::string::npos);
  co.source = (tmp.path() / "none").string();
  EXPECT_NE(error_of([&] { with_control_images(ds, co); }).find("not a directory"),
            std::string::npos);
  co.source = "canny";
  co.canny.low_threshold = 300;
  EXPECT_NE(error_of([&] { with_control_images(ds, co); }).find("low threshold 300"),
            std::string::npos);
}

TEST(ControlImages, AParquetConditioningImageColumnCropsAndFlipsWithItsImages) {
  // fusing/fill50k's layout: image, conditioning_image (both {bytes, path} structs), text. Row 0's
  // control is its image itself; row 1's is half the size (resized up first); row 2 has none
  // (reported and left out).
  TempDir tmp;
  const auto a = noise_image(40, 56, 1), b = noise_image(48, 48, 2), small = noise_image(24, 24, 3);
  auto table = fixtures::hf_image_text_table(
      {{false, encode_png(a), std::nullopt, std::string("an a")},
       {false, encode_png(b), std::nullopt, std::string("a b")},
       {false, encode_png(b), std::nullopt, std::string("no control")}});
  using fixtures::ParquetCell;
  fixtures::ParquetFixtureColumn cb{
      "conditioning_image.bytes", fixtures::ParquetType::kBytes, true, {}};
  fixtures::ParquetFixtureColumn cp{
      "conditioning_image.path", fixtures::ParquetType::kString, true, {}};
  cb.cells = {ParquetCell{encode_png(a)}, ParquetCell{encode_png(small)}, ParquetCell{}};
  cp.cells = {ParquetCell{}, ParquetCell{}, ParquetCell{}};
  table.columns.insert(table.columns.begin() + 2, {cb, cp});
  table.structs.push_back({"conditioning_image", true, {}});
  const std::string file = (tmp.path() / "train-00000-of-00001.parquet").string();
  fixtures::write_parquet_fixture(file, table);

  auto report = std::make_shared<DataReport>();
  ParquetSourceOptions po;
  po.control_column = "conditioning_image";
  auto src = std::make_shared<ParquetSource>(std::vector<std::string>{file}, po, *report);
  ASSERT_EQ(src->size(), 2);
  EXPECT_TRUE(src->has_control_images());
  EXPECT_EQ(src->read_control_bytes(1), encode_png(small));
  const auto problems = report->problems();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].item, "train-00000-of-00001.parquet row 2");
  EXPECT_EQ(problems[0].reason, "no conditioning_image bytes");

  const ImageDatasetOptions io = cropping_and_flipping_buckets();
  auto ds = std::make_shared<ImageDataset>(src, io, report);
  ControlImageOptions co;
  co.source = "column";
  co.transform = io.transform;
  auto joined = with_control_images(ds, co);
  int moved = 0;
  for (uint64_t draw = 0; draw < 8; ++draw) {
    const Example ex = joined->sample(0, draw);
    EXPECT_TRUE(torch::equal(ex.control_image, ex.image)) << "draw " << draw;
    moved += !torch::equal(ex.image, ds->get(0).image);
  }
  EXPECT_GT(moved, 0);
  const Example eb = joined->get(1);
  const auto expected =
      fit_to_bucket(control_image_at_size(small, 48, 48),
                    Bucket{eb.image.size(2), eb.image.size(1)}, io.transform, std::nullopt);
  EXPECT_TRUE(torch::equal(eb.control_image, expected));

  // Without the column the source says so; a control column that is not there is named.
  auto plain = std::make_shared<ImageDataset>(
      std::make_shared<ParquetSource>(std::vector<std::string>{file}, ParquetSourceOptions{},
                                      *report),
      io, report);
  EXPECT_NE(error_of([&] {
              with_control_images(plain, co)->get(0);
            }).find("has no control image for train-00000-of-00001.parquet row 0"),
            std::string::npos);
  po.control_column = "hint";
  EXPECT_NE(error_of([&] {
              ParquetSource(std::vector<std::string>{file}, po, *report);
            }).find("no control image column 'hint'"),
            std::string::npos);
}
