// Sample order and loading: epochs of seeded permutations, index order for procedural data,
// rank sharding that covers every sample exactly once per epoch, and exact resume from a
// position (mid-epoch included).
#include "data/sample_order.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/errors.h"
#include "data/loader.h"
#include "test_util.h"

using namespace fluxtrain;

namespace {

// Example i is a 1x1x1 image holding i, captioned "i".
class Numbers : public Dataset {
 public:
  explicit Numbers(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  Example get(int64_t i) const override {
    if (i < 0 || i >= n_) throw std::out_of_range("Numbers");
    Example e;
    e.image = torch::full({1, 1, 1}, static_cast<float>(i));
    e.caption = std::to_string(i);
    e.loss_weight = i % 2 ? 0.5 : 1.0;
    return e;
  }
  std::string name() const override { return "numbers"; }

 private:
  int64_t n_;
};

}  // namespace

TEST(SampleOrder, EachEpochIsAPermutationDrawnFromTheSeed) {
  const int64_t n = 10;
  SampleOrder a(n, {true, 7, 0, 1}), b(n, {true, 7, 0, 1}), other(n, {true, 8, 0, 1});
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> order;
    for (int64_t i = 0; i < n; ++i) order.push_back(a.index_at(e * n + i));
    std::set<int64_t> distinct(order.begin(), order.end());
    EXPECT_EQ(distinct.size(), static_cast<size_t>(n)) << "epoch " << e;
    EXPECT_EQ(*distinct.begin(), 0);
    EXPECT_EQ(*distinct.rbegin(), n - 1);
    epochs.push_back(order);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  // A pure function of (seed, position): another instance, queried out of order, agrees.
  for (int64_t p : {25, 3, 17, 0, 29}) EXPECT_EQ(b.index_at(p), a.index_at(p)) << p;
  int same = 0;
  for (int64_t i = 0; i < n; ++i) same += other.index_at(i) == a.index_at(i);
  EXPECT_LT(same, n);
  // Without shuffling: index order, epoch after epoch.
  SampleOrder plain(n, {false, 7, 0, 1});
  for (int64_t p = 0; p < 25; ++p) EXPECT_EQ(plain.index_at(p), p % n);
  EXPECT_EQ(plain.epoch(25), 2);
}

TEST(SampleOrder, RanksTogetherTakeEverySampleOncePerEpoch) {
  // 4 ranks, 3 samples each per step, 24 samples: 2 steps make one epoch over all ranks.
  const int64_t n = 24, world = 4, batch = 3;
  for (bool shuffle : {false, true}) {
    std::map<int64_t, int> seen;
    for (int64_t step = 0; step < 4; ++step) {
      std::set<int64_t> this_step;
      for (int64_t rank = 0; rank < world; ++rank) {
        SampleOrder order(n, {shuffle, 3, rank, world});
        for (int64_t i : order.rank_batch(step * batch * world, batch)) {
          ++seen[i];
          EXPECT_TRUE(this_step.insert(i).second) << "a sample twice in one global batch";
        }
      }
    }
    ASSERT_EQ(seen.size(), static_cast<size_t>(n)) << shuffle;
    for (const auto& [i, count] : seen) EXPECT_EQ(count, 2) << i;  // two epochs, once each
  }
  // Rank r takes positions p + k world + r, as torch's DistributedSampler strides an epoch.
  SampleOrder r1(n, {false, 0, 1, world});
  EXPECT_EQ(r1.rank_batch(0, batch), (std::vector<int64_t>{1, 5, 9}));
  EXPECT_EQ(r1.rank_batch(12, batch), (std::vector<int64_t>{13, 17, 21}));
  EXPECT_NE(fluxtrain::testing::error_of([] {
              SampleOrder(5, {true, 0, 4, 4});
            }).find("rank 4"),
            std::string::npos);
  EXPECT_NE(fluxtrain::testing::error_of([] { SampleOrder(0, {}); }).find("no examples"),
            std::string::npos);
}

TEST(Loader, BatchesFollowTheOrderAndResumeExactlyMidEpoch) {
  auto data = std::make_shared<Numbers>(7);
  Loader straight(data, SampleOrder(7, {true, 5, 0, 1}), 3);
  std::vector<std::vector<std::string>> captions;
  for (int k = 0; k < 5; ++k) captions.push_back(straight.next().captions);  // 15: into epoch 3
  EXPECT_EQ(straight.position(), 15);
  // A loader resumed at position 6 (mid-epoch) gives batches 3.. exactly.
  Loader resumed(data, SampleOrder(7, {true, 5, 0, 1}), 3);
  resumed.seek(6);
  for (int k = 2; k < 5; ++k) EXPECT_EQ(resumed.next().captions, captions[k]) << k;
  // Collation: images stacked in order, captions, weights and no timestep indices.
  Batch b = collate(*data, {4, 1});
  EXPECT_TRUE(torch::equal(b.images.flatten(), torch::tensor({4.f, 1.f})));
  EXPECT_EQ(b.captions, (std::vector<std::string>{"4", "1"}));
  EXPECT_TRUE(torch::equal(b.loss_weights, torch::tensor({1.f, 0.5f})));
  EXPECT_TRUE(torch::equal(b.timestep_indices, torch::tensor({-1, -1}, torch::kInt64)));
  EXPECT_EQ(b.size(), 2);
}
