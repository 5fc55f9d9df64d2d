// Procedural shapes: captions and their parser, the held-out split, rendering and the dataset.
#include "data/shapes.h"

#include <gtest/gtest.h>

#include <set>

#include "core/errors.h"
#include "core/rng.h"
#include "data/loader.h"
#include "test_util.h"

using namespace fluxtrain;

using fluxtrain::testing::error_of;

TEST(ShapeCaptions, Phrasing) {
  EXPECT_EQ(shape_caption({0, 0, 0}), "a red circle in the top left");
  EXPECT_EQ(shape_caption({2, 1, 4}), "a blue square in the center");
  EXPECT_EQ(shape_caption({1, 2, 7}), "a green triangle at the bottom");
  EXPECT_EQ(shape_caption({3, 0, 1}), "a yellow circle at the top");
  EXPECT_EQ(shape_caption({4, 1, 3}), "a magenta square on the left");
  EXPECT_EQ(shape_caption({5, 2, 5}), "a cyan triangle on the right");
  EXPECT_EQ(shape_caption({5, 2, 8}), "a cyan triangle in the bottom right");
}

TEST(ShapeCaptions, EveryCombinationRoundTrips) {
  std::set<std::string> captions;
  for (const auto& a : all_shape_combinations()) {
    const auto caption = shape_caption(a);
    captions.insert(caption);
    auto parsed = parse_caption(caption);
    ASSERT_TRUE(parsed.has_value()) << caption;
    EXPECT_EQ(*parsed, a) << caption;
    EXPECT_EQ(ShapeAttributes::from_index(a.index()), a);
  }
  EXPECT_EQ(captions.size(), 162u);
}

TEST(ShapeCaptions, ParseIsLenientOnFormOnly) {
  EXPECT_EQ(parse_caption("A Red Circle, in the TOP-LEFT!"), (ShapeAttributes{0, 0, 0}));
  EXPECT_EQ(parse_caption("  a blue square in the centre. "), (ShapeAttributes{2, 1, 4}));
  EXPECT_FALSE(parse_caption("").has_value());
  EXPECT_FALSE(parse_caption("a red circle").has_value());
  EXPECT_FALSE(parse_caption("a purple circle in the center").has_value());
  EXPECT_FALSE(parse_caption("a red circle in the center please").has_value());
  EXPECT_FALSE(parse_caption("a red circle at the top left").has_value());
}

TEST(ShapeSplit, HeldOutCombinationsNeverTrainedButEveryAttributeIs) {
  const auto held = ShapesDataset::held_out_combinations();
  const auto train = ShapesDataset::training_combinations();
  EXPECT_EQ(held.size(), 23u);  // 14% of 162
  EXPECT_EQ(held.size() + train.size(), 162u);
  std::set<int> held_ids, train_ids;
  for (const auto& a : held) held_ids.insert(a.index());
  for (const auto& a : train) train_ids.insert(a.index());
  for (int id : held_ids) EXPECT_EQ(train_ids.count(id), 0u);

  // Every colour, shape and position, and every pair of them, still appears in training.
  std::set<int> colours, shapes, positions;
  std::set<std::pair<int, int>> colour_shape, colour_position, shape_position;
  for (const auto& a : train) {
    colours.insert(a.colour);
    shapes.insert(a.shape);
    positions.insert(a.position);
    colour_shape.insert({a.colour, a.shape});
    colour_position.insert({a.colour, a.position});
    shape_position.insert({a.shape, a.position});
  }
  EXPECT_EQ(colours.size(), 6u);
  EXPECT_EQ(shapes.size(), 3u);
  EXPECT_EQ(positions.size(), 9u);
  EXPECT_EQ(colour_shape.size(), 18u);
  EXPECT_EQ(colour_position.size(), 54u);
  EXPECT_EQ(shape_position.size(), 27u);

  const auto captions = ShapesDataset::held_out_captions();
  ASSERT_EQ(captions.size(), held.size());
  for (size_t i = 0; i < held.size(); ++i) EXPECT_EQ(parse_caption(captions[i]), held[i]);
}

TEST(RenderShape, RangeBackgroundColourAndDeterminism) {
  for (int64_t size : {16, 32, 64}) {
    for (const auto& a : all_shape_combinations()) {
      auto gen = make_generator(3, RngStream::kData, a.index());
      auto img = render_shape(a, size, gen);
      ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, size, size}));
      ASSERT_EQ(img.scalar_type(), torch::kFloat32);
      EXPECT_GE(img.min().item<float>(), -1.0f);
      EXPECT_LE(img.max().item<float>(), 1.0f);
      EXPECT_EQ(img.max().item<float>(), 1.0f);  // some pixel is fully covered
      // Border pixels are background; unlit channels are black everywhere.
      for (int64_t edge : {int64_t{0}, size - 1}) {
        EXPECT_EQ(img.select(1, edge).max().item<float>(), -1.0f) << shape_caption(a);
        EXPECT_EQ(img.select(2, edge).max().item<float>(), -1.0f) << shape_caption(a);
      }
      for (int c = 0; c < 3; ++c) {
        if (kColourRGB[a.colour][c] == 0) {
          EXPECT_EQ(img[c].max().item<float>(), -1.0f);
        }
      }
      auto again = make_generator(3, RngStream::kData, a.index());
      EXPECT_TRUE(torch::equal(img, render_shape(a, size, again)));
    }
  }
  auto g1 = make_generator(1, RngStream::kData, 0), g2 = make_generator(2, RngStream::kData, 0);
  EXPECT_FALSE(torch::equal(render_shape({0, 0, 4}, 32, g1), render_shape({0, 0, 4}, 32, g2)));
  EXPECT_EQ(error_of([&] {
              render_shape({0, 0, 0}, 4, g1);
            }),
            "shapes image_size 4: expected an integer >= 8");
}

TEST(ShapesDataset, BadArgumentsAreUserErrors) {
  EXPECT_EQ(error_of([] { ShapesDataset("test", 32, 0, 10); }),
            "shapes split 'test': expected train or val");
  EXPECT_EQ(error_of([] { ShapesDataset("train", 32, 0, 0); }),
            "shapes dataset size 0: expected an integer >= 1");
  EXPECT_THROW(ShapesDataset("val", 2, 0, 10), UserError);
  ShapesDataset ds("train", 32, 0, 10);
  EXPECT_THROW(ds.get(10), std::out_of_range);
  EXPECT_THROW(ds.get(-1), std::out_of_range);
}

TEST(ShapesDataset, DeterministicByIndex) {
  ShapesDataset a("train", 32, 7, 1000), b("train", 32, 7, 1000), other("train", 32, 8, 1000);
  ShapesDataset val("val", 32, 7, 1000);
  for (int64_t i : {0, 1, 57, 138, 139, 999}) {
    auto x = a.shape_example(i), y = b.shape_example(i);
    EXPECT_TRUE(torch::equal(x.image, y.image));
    EXPECT_EQ(x.caption, y.caption);
    EXPECT_EQ(x.attrs, y.attrs);
  }
  int differs = 0, differs_val = 0;
  for (int64_t i = 0; i < 20; ++i) {
    differs += !torch::equal(a.get(i).image, other.get(i).image);
    differs_val += !torch::equal(a.get(i).image, val.get(i).image);
  }
  EXPECT_GE(differs, 19);
  EXPECT_EQ(differs_val, 20);
}

TEST(ShapesDataset, TrainPassesVisitEveryTrainingCombinationOnce) {
  const auto train = ShapesDataset::training_combinations();
  const auto n = static_cast<int64_t>(train.size());
  ShapesDataset ds("train", 16, 1, 3 * n);
  std::vector<ShapeAttributes> first_pass;
  for (int64_t pass = 0; pass < 3; ++pass) {
    std::set<int> seen;
    for (int64_t i = pass * n; i < (pass + 1) * n; ++i) {
      auto ex = ds.shape_example(i);
      EXPECT_FALSE(is_held_out(ex.attrs));
      EXPECT_EQ(parse_caption(ex.caption), ex.attrs);
      EXPECT_EQ(ex.timestep_index, i % 8);
      seen.insert(ex.attrs.index());
      if (pass == 0) first_pass.push_back(ex.attrs);
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), n);
  }
  // A random order, different from the canonical one and from the next pass.
  EXPECT_NE(first_pass, train);
  int same = 0;
  for (int64_t i = 0; i < n; ++i) same += ds.shape_example(n + i).attrs == first_pass[i];
  EXPECT_LT(same, n / 4);
}

TEST(ShapesDataset, ValCyclesThroughHeldOutCombinations) {
  const auto held = ShapesDataset::held_out_combinations();
  ShapesDataset ds("val", 32, 0, 64);
  EXPECT_EQ(ds.combinations(), held);
  for (int64_t i = 0; i < ds.size(); ++i) {
    auto ex = ds.shape_example(i);
    EXPECT_EQ(ex.attrs, held[i % held.size()]);
    EXPECT_TRUE(is_held_out(ex.attrs));
    EXPECT_EQ(ex.timestep_index, i % 8);
  }
}

TEST(ShapesDataset, IsADatasetOfImagesAndCaptions) {
  ShapesDataset train("train", 32, 5, 100), val("val", 32, 5, 16);
  for (int64_t i : {3, 9, 42}) {
    const Example ex = train.get(i);
    const ShapeExample shape = train.shape_example(i);
    EXPECT_TRUE(torch::equal(ex.image, shape.image));
    EXPECT_EQ(ex.caption, shape.caption);
    EXPECT_EQ(ex.timestep_index, -1);  // training examples have no fixed timestep
    EXPECT_EQ(ex.loss_weight, 1.0);
    EXPECT_EQ(ex.key, fmt::format("shapes/train/{}", i));
  }
  for (int64_t i = 0; i < val.size(); ++i) EXPECT_EQ(val.get(i).timestep_index, i % 8);
  // The captions it can yield: its split's combinations and the empty one.
  const auto captions = *val.captions();
  EXPECT_EQ(captions.size(), ShapesDataset::held_out_combinations().size() + 1);
  EXPECT_EQ(captions.back(), "");
  EXPECT_EQ(captions.front(), shape_caption(ShapesDataset::held_out_combinations().front()));
  EXPECT_FALSE(train.wants_shuffle());
  // Collated: stacked in the order asked for.
  auto batch = collate(train, {3, 9, 42});
  ASSERT_EQ(batch.images.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(batch.images[1], train.get(9).image));
  EXPECT_EQ(batch.captions[2], train.get(42).caption);
  EXPECT_EQ(batch.timestep_indices.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(batch.loss_weights, torch::ones({3})));
  EXPECT_EQ(batch.indices, (std::vector<int64_t>{3, 9, 42}));
}
