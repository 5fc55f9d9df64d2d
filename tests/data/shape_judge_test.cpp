// Shape judge: recovers every combination from clean, blurred and noisy renders, and scores.
#include "data/shape_judge.h"

#include <gtest/gtest.h>

#include "core/rng.h"
#include "data/loader.h"
#include "data/shape_test_util.h"

using namespace fluxtrain;

namespace {

enum class Degrade { kNone, kBlur, kNoise, kBlurNoise, kStrongBlur };

torch::Tensor degrade(const torch::Tensor& img, Degrade how, uint64_t seed) {
  switch (how) {
    case Degrade::kNone:
      return img;
    case Degrade::kBlur:
      return test_util::gaussian_blur(img, 0.6);
    case Degrade::kNoise:
      return test_util::add_noise(img, 0.1, seed);
    case Degrade::kBlurNoise:
      return test_util::add_noise(test_util::gaussian_blur(img, 0.6), 0.1, seed);
    case Degrade::kStrongBlur:
      return test_util::gaussian_blur(img, 1.0);
  }
  return img;
}

// Judges every combination rendered with `seeds` jitter seeds; returns the number judged wrong
// and reports each.
int count_wrong(int64_t size, Degrade how, int seeds) {
  int wrong = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    for (const auto& a : all_shape_combinations()) {
      auto gen = make_generator(seed, RngStream::kData, a.index());
      auto img = degrade(render_shape(a, size, gen), how, seed * 1000 + a.index());
      auto j = judge_shape(img);
      if (!j.matches(a)) {
        ++wrong;
        ADD_FAILURE() << "S=" << size << " seed " << seed << " '" << shape_caption(a)
                      << "' judged found=" << j.found << " colour " << j.colour << " shape "
                      << j.shape << " position " << j.position << " (fill " << j.fill << ", skew "
                      << j.skew << ")";
      }
    }
  }
  return wrong;
}

}  // namespace

TEST(ShapeJudge, ExactOnEveryCombinationAt32And64) {
  for (int64_t size : {32, 64}) EXPECT_EQ(count_wrong(size, Degrade::kNone, 4), 0) << size;
}

TEST(ShapeJudge, ExactUnderMildBlurAndNoise) {
  for (int64_t size : {32, 64}) {
    EXPECT_EQ(count_wrong(size, Degrade::kBlur, 3), 0) << size;
    EXPECT_EQ(count_wrong(size, Degrade::kNoise, 3), 0) << size;
    EXPECT_EQ(count_wrong(size, Degrade::kBlurNoise, 3), 0) << size;
  }
  EXPECT_EQ(count_wrong(32, Degrade::kStrongBlur, 3), 0);
}

TEST(ShapeJudge, MostlyRightAt16) {
  // 16 px shapes are 3.5-5 px across: colour and position stay exact, shape nearly so.
  int wrong_shape = 0, total = 0;
  for (int seed = 0; seed < 4; ++seed) {
    for (const auto& a : all_shape_combinations()) {
      auto gen = make_generator(seed, RngStream::kData, a.index());
      auto j = judge_shape(render_shape(a, 16, gen));
      ASSERT_TRUE(j.found);
      EXPECT_EQ(j.colour, a.colour);
      EXPECT_EQ(j.position, a.position);
      wrong_shape += j.shape != a.shape;
      ++total;
    }
  }
  EXPECT_LE(wrong_shape, total / 50);  // >= 98%
}

TEST(ShapeJudge, BackgroundIsNotFound) {
  auto black = torch::full({3, 32, 32}, -1.0f);
  EXPECT_FALSE(judge_shape(black).found);
  EXPECT_EQ(judge_shape(black).colour, -1);
  EXPECT_FALSE(judge_shape(torch::zeros({3, 32, 32})).found);
  EXPECT_FALSE(judge_shape(test_util::add_noise(black, 0.1, 1)).found);
  EXPECT_THROW(judge_shape(torch::zeros({32, 32})), std::invalid_argument);
  EXPECT_THROW(judge_shape(torch::zeros({3, 16, 32})), std::invalid_argument);
}

TEST(ShapeJudge, IgnoresSpecksAndDimOrGreyBackgrounds) {
  auto gen = make_generator(0, RngStream::kData, 0);
  const ShapeAttributes a{3, 2, 6};  // a yellow triangle in the bottom left
  auto img = render_shape(a, 32, gen);
  auto specked = img.clone();
  specked.select(1, 2).select(1, 29).fill_(1.0f);  // a white dot in the top right
  EXPECT_TRUE(judge_shape(specked).matches(a));
  // A dim shape on a lifted background: (img + 1) * 0.3 + (-0.8).
  EXPECT_TRUE(judge_shape(img.add(1).mul(0.3).sub(0.8)).matches(a));
  // Float64 input and a batch element view are fine.
  EXPECT_TRUE(judge_shape(img.to(torch::kFloat64)).matches(a));
}

TEST(ShapeJudge, ScoreSamples) {
  ShapesDataset ds("val", 32, 0, 4);
  std::vector<ShapeAttributes> wanted;
  std::vector<torch::Tensor> drawn;
  for (int64_t i = 0; i < 4; ++i) {
    auto ex = ds.shape_example(i);
    wanted.push_back(ex.attrs);
    drawn.push_back(ex.image);
  }
  wanted[1].colour = (wanted[1].colour + 1) % kNumColours;        // colour wrong
  wanted[2].position = (wanted[2].position + 1) % kNumPositions;  // position wrong
  auto images = torch::stack(drawn);
  images[3].fill_(-1.0f);  // nothing drawn
  auto score = score_samples(images, wanted);
  EXPECT_EQ(score.count, 4);
  EXPECT_DOUBLE_EQ(score.found, 0.75);
  EXPECT_DOUBLE_EQ(score.colour, 0.5);
  EXPECT_DOUBLE_EQ(score.position, 0.5);
  EXPECT_DOUBLE_EQ(score.shape, 0.75);
  EXPECT_DOUBLE_EQ(score.all, 0.25);
  ASSERT_EQ(score.judgements.size(), 4u);
  EXPECT_FALSE(score.judgements[3].found);
  auto json = score.to_json();
  EXPECT_EQ(json["count"], 4);
  EXPECT_DOUBLE_EQ(json["colour"].get<double>(), 0.5);
  EXPECT_THROW(score_samples(images, {wanted[0]}), std::invalid_argument);
}

TEST(ShapeJudge, DatasetExamplesJudgeAsCaptioned) {
  for (const char* split : {"train", "val"}) {
    ShapesDataset ds(split, 32, 11, 300);
    std::vector<int64_t> indices(300);
    for (int64_t i = 0; i < 300; ++i) indices[i] = i;
    auto batch = collate(ds, indices);
    std::vector<ShapeAttributes> wanted;
    for (const auto& c : batch.captions) wanted.push_back(*parse_caption(c));
    auto score = score_samples(batch.images, wanted);
    EXPECT_DOUBLE_EQ(score.all, 1.0) << split;
  }
}
