// Aspect-ratio buckets: the table (hand-worked for a small spec), nearest-aspect assignment, the
// no-upscale rule, the log text, and the one-line errors.
#include "data/buckets.h"

#include <gtest/gtest.h>

#include "core/errors.h"
#include "test_util.h"

using namespace fluxtrain;

TEST(Buckets, TableHoldsAboutTheSamePixelsInSteps) {
  BucketOptions o;
  o.resolution = 64;
  o.step = 16;
  o.min_side = 32;
  o.max_side = 128;
  // 64^2 = 4096: widths 32..128 by 16 with the largest height <= 4096 / w in steps of 16.
  // 32 -> 128, 48 -> 80 (85.3), 64 -> 64, 80 -> 48 (51.2), 96 -> 32 (42.7), 112 -> 32 (36.6),
  // 128 -> 32.
  const std::vector<Bucket> want = {{32, 128}, {48, 80},  {64, 64}, {80, 48},
                                    {96, 32},  {112, 32}, {128, 32}};
  EXPECT_EQ(make_buckets(o), want);
  for (const auto& b : make_buckets(o)) {
    EXPECT_LE(b.width * b.height, 64 * 64);
    EXPECT_EQ(b.width % 16, 0);
    EXPECT_EQ(b.height % 16, 0);
  }
  EXPECT_EQ(Bucket({48, 80}).name(), "48x80");
  // The defaults around 512 contain the square and stay within 256..1024.
  const auto defaults = make_buckets(BucketOptions{});
  EXPECT_NE(std::find(defaults.begin(), defaults.end(), Bucket{512, 512}), defaults.end());
  EXPECT_EQ(defaults.front(), (Bucket{256, 1024}));
  EXPECT_EQ(defaults.back(), (Bucket{1024, 256}));
}

TEST(Buckets, ImagesGoToTheNearestAspectAndAreNotEnlargedBeyondTheLimit) {
  BucketOptions o;
  o.resolution = 64;
  o.step = 16;
  o.min_side = 32;
  o.max_side = 128;
  const auto table = make_buckets(o);
  EXPECT_EQ(assign_bucket(table, 640, 640, o), (Bucket{64, 64}));
  EXPECT_EQ(assign_bucket(table, 300, 500, o), (Bucket{48, 80}));    // 0.6 vs 48/80 = 0.6
  EXPECT_EQ(assign_bucket(table, 1000, 250, o), (Bucket{128, 32}));  // 4:1
  EXPECT_EQ(assign_bucket(table, 220, 100, o), (Bucket{80, 48}));    // 2.2: nearer 5:3 than 3:1
  // A 40 x 40 image would be enlarged 1.6x to fill 64 x 64: with max_upscale 1 it gets 32 x 32
  // (the largest square in steps it fills), with 2 it gets 64 x 64.
  EXPECT_EQ(assign_bucket(table, 40, 40, o), (Bucket{32, 32}));
  o.max_upscale = 2.0;
  EXPECT_EQ(assign_bucket(table, 40, 40, o), (Bucket{64, 64}));
  // Never below one step a side.
  o.max_upscale = 1.0;
  EXPECT_EQ(assign_bucket(table, 5, 5, o), (Bucket{16, 16}));
  EXPECT_EQ(bucket_counts_text({{64, 64}, {48, 80}, {64, 64}}), "64x64: 2, 48x80: 1");
}

TEST(Buckets, IdsOrderBucketsBySize) {
  // Width, then height: 16x64 < 32x32 < 40x24, whatever order the images come in.
  EXPECT_EQ(bucket_ids_by_size({{40, 24}, {32, 32}, {40, 24}, {16, 64}}),
            (std::vector<int64_t>{2, 1, 2, 0}));
  EXPECT_TRUE(bucket_ids_by_size({}).empty());
}

TEST(Buckets, BadSpecsAreOneLineErrors) {
  using fluxtrain::testing::error_of;
  BucketOptions o;
  o.resolution = 500;
  EXPECT_EQ(error_of([&] { make_buckets(o); }),
            "buckets: resolution 500 must be a positive multiple of the step 16");
  o.resolution = 512;
  o.min_side = 1024;
  EXPECT_EQ(error_of([&] { make_buckets(o); }),
            "buckets: expected step 16 <= min side 1024 <= resolution 512 <= max side 1024");
  o.min_side = 256;
  o.max_upscale = 0.5;
  EXPECT_EQ(error_of([&] { make_buckets(o); }), "buckets: max_upscale 0.5 must be >= 1");
}
