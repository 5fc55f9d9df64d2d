// Sample order and loading: epochs of seeded permutations, index order for procedural data,
// rank sharding that covers every sample exactly once per epoch, and exact resume from a
// position (mid-epoch included).
#include "data/sample_order.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/errors.h"
#include "data/batch_sampler.h"
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
  auto sampler = std::make_shared<SequentialBatches>(SampleOrder(7, {true, 5, 0, 1}), 3);
  Loader straight(data, sampler, {});
  std::vector<std::vector<std::string>> captions;
  for (int k = 0; k < 5; ++k) captions.push_back(straight.next().captions);  // 15: into epoch 3
  EXPECT_EQ(straight.position(), 5);
  EXPECT_EQ(straight.samples_seen(), 15);
  EXPECT_EQ(sampler->batches_per_epoch(), 3);  // ceil(7 / 3)
  // A loader resumed at batch 2 (6 samples in, mid-epoch) gives batches 2.. exactly, with or
  // without worker threads loading ahead.
  for (int64_t workers : {0, 1, 3}) {
    LoaderOptions lo;
    lo.workers = workers;
    lo.prefetch = 2;
    Loader resumed(data, sampler, lo);
    resumed.seek(2, 6);
    for (int k = 2; k < 5; ++k) EXPECT_EQ(resumed.next().captions, captions[k]) << k;
    EXPECT_EQ(resumed.samples_seen(), 15);
  }
  // Collation: images stacked in order, captions, weights and no timestep indices.
  Batch b = collate(*data, {4, 1});
  EXPECT_TRUE(torch::equal(b.images.flatten(), torch::tensor({4.f, 1.f})));
  EXPECT_EQ(b.captions, (std::vector<std::string>{"4", "1"}));
  EXPECT_TRUE(torch::equal(b.loss_weights, torch::tensor({1.f, 0.5f})));
  EXPECT_TRUE(torch::equal(b.timestep_indices, torch::tensor({-1, -1}, torch::kInt64)));
  EXPECT_FALSE(b.latent_mean.defined());
  EXPECT_EQ(b.size(), 2);
}

TEST(Loader, WorkersComputeWithOneThreadAndLeaveTheCallersAlone) {
  // Each example's caption is the intra-op thread count of the thread that loaded it.
  class ThreadCount : public Numbers {
   public:
    ThreadCount() : Numbers(4) {}
    Example get(int64_t i) const override {
      Example ex = Numbers::get(i);
      ex.caption = std::to_string(at::get_num_threads());
      return ex;
    }
  };
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  auto data = std::make_shared<ThreadCount>();
  auto sampler = std::make_shared<SequentialBatches>(SampleOrder(4, {true, 1, 0, 1}), 2);
  LoaderOptions lo;
  lo.workers = 2;
  {
    Loader loader(data, sampler, lo);
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(loader.next().captions, (std::vector<std::string>{"1", "1"})) << k;
    EXPECT_EQ(at::get_num_threads(), 2);  // the trainer's thread keeps its threads
  }
  Loader inline_loader(data, sampler, {});  // no workers: loaded in this thread
  EXPECT_EQ(inline_loader.next().captions, (std::vector<std::string>{"2", "2"}));
  EXPECT_EQ(at::get_num_threads(), 2);
  at::set_num_threads(before);
}

TEST(Loader, AFailedBatchIsRethrownAtItsTurnAndLoadingGoesOn) {
  // Example 5 throws: batch 1 ([3, 4, 5]) fails when it is asked for, not before.
  class Faulty : public Numbers {
   public:
    Faulty() : Numbers(9) {}
    Example get(int64_t i) const override {
      if (i == 5) throw std::runtime_error("example 5 is broken");
      return Numbers::get(i);
    }
  };
  auto sampler = std::make_shared<SequentialBatches>(SampleOrder(9, {false, 0, 0, 1}), 3);
  for (int64_t workers : {0, 2}) {
    LoaderOptions lo;
    lo.workers = workers;
    Loader loader(std::make_shared<Faulty>(), sampler, lo);
    EXPECT_EQ(loader.next().captions, (std::vector<std::string>{"0", "1", "2"}));
    try {  // the example's own error, whichever thread loaded it
      loader.next();
      ADD_FAILURE() << "batch 1 loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "example 5 is broken");
    }
    EXPECT_EQ(loader.next().captions, (std::vector<std::string>{"6", "7", "8"}));
  }
}

TEST(BucketBatches, EachBatchFromOneBucketEveryExampleOncePerEpoch) {
  // 10 examples in buckets 0 (6 of them) and 7 (4): batches of 4 -> [4, 2] + [4] = 3 batches.
  const std::vector<int64_t> bucket_of = {0, 7, 0, 0, 7, 0, 7, 0, 0, 7};
  for (int64_t world : {1, 2}) {
    std::map<int64_t, int> seen;
    for (int64_t rank = 0; rank < world; ++rank) {
      BucketBatches s(bucket_of, 4, {true, 11, rank, world});
      EXPECT_EQ(s.batches_per_epoch(), world == 1 ? 3 : 2);  // padded to 4 batches for 2 ranks
      for (int64_t b = 0; b < s.batches_per_epoch(); ++b) {
        const auto batch = s.batch(b);
        ASSERT_FALSE(batch.empty());
        for (int64_t i : batch) {
          EXPECT_EQ(bucket_of[i], bucket_of[batch[0]]) << "a batch mixes buckets";
          ++seen[i];
        }
      }
    }
    ASSERT_EQ(seen.size(), 10u);
    int total = 0;
    for (const auto& [i, n] : seen) total += n;
    // Every example once; with 2 ranks the epoch's 3 batches are padded to 4 with its first one,
    // whose examples are seen twice.
    const auto first = BucketBatches(bucket_of, 4, {true, 11, 0, 1}).epoch_batches(0)[0];
    EXPECT_EQ(total, world == 1 ? 10 : 10 + static_cast<int>(first.size()));
    for (const auto& [i, n] : seen) {
      const bool padded = world == 2 && std::find(first.begin(), first.end(), i) != first.end();
      EXPECT_EQ(n, padded ? 2 : 1) << i;
    }
  }
  // Deterministic per epoch, different between epochs, and global_samples adds the ranks' sizes.
  BucketBatches a(bucket_of, 4, {true, 11, 0, 1}), b(bucket_of, 4, {true, 11, 0, 1});
  EXPECT_EQ(a.batch(4), b.batch(4));
  EXPECT_NE(a.epoch_batches(0), a.epoch_batches(1));
  int64_t epoch_samples = 0;
  for (int64_t k = 0; k < 3; ++k) epoch_samples += a.global_samples(k);
  EXPECT_EQ(epoch_samples, 10);
  BucketBatches plain(bucket_of, 4, {false, 0, 0, 1});
  EXPECT_EQ(plain.epoch_batches(0),
            (std::vector<std::vector<int64_t>>{{0, 2, 3, 5}, {7, 8}, {1, 4, 6, 9}}));
}
