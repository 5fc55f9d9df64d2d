// Caching text embeddings (same rows as the encoder, each prompt encoded once, encoders released
// and reloaded on a miss) and the warning for prompts longer than an encoder takes.
#include "text/cached_conditioner.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/log.h"
#include "test_util.h"
#include "text/hashed_words.h"
#include "text/truncation_warning.h"

using namespace fluxtrain;
using fluxtrain::testing::TempDir;

namespace {

// Counts the prompts it encodes.
class Counting : public HashedWordConditioner {
 public:
  Counting() : HashedWordConditioner(8, 4, 5, 3) {}
  TextEmbeddings encode(const std::vector<std::string>& prompts, torch::Device d) override {
    encoded += static_cast<int>(prompts.size());
    return HashedWordConditioner::encode(prompts, d);
  }
  int encoded = 0;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(CachedTextConditioner, SameRowsAsTheEncoderEachPromptEncodedOnce) {
  auto inner = std::make_shared<Counting>();
  HashedWordConditioner reference(8, 4, 5, 3);
  int reloads = 0;
  CachedTextConditioner cached(inner, [&]() -> std::shared_ptr<TextConditioner> {
    ++reloads;
    return std::make_shared<HashedWordConditioner>(8, 4, 5, 3);
  });
  EXPECT_EQ(cached.max_tokens(), 5);
  EXPECT_EQ(cached.context_dim(), 8);
  cached.precompute({"a red circle", "", "a red circle", "a blue square"});
  EXPECT_EQ(inner->encoded, 3);
  const std::vector<std::string> batch = {"a blue square", "", "a red circle", "a blue square"};
  const auto got = cached.encode(batch, torch::kCPU);
  const auto want = reference.encode(batch, torch::kCPU);
  EXPECT_TRUE(torch::equal(got.txt, want.txt));
  EXPECT_TRUE(torch::equal(got.vec, want.vec));
  EXPECT_EQ(inner->encoded, 3);  // all hits
  // Released: cached prompts need nothing; a new one reloads the encoder (with a warning).
  cached.release_encoder();
  EXPECT_FALSE(cached.encoder_loaded());
  cached.encode({"a red circle"}, torch::kCPU);
  EXPECT_EQ(reloads, 0);
  TempDir tmp;
  {
    LogFileScope log(tmp / "log.txt");
    const auto fresh = cached.encode({"a green triangle"}, torch::kCPU);
    EXPECT_TRUE(torch::equal(fresh.txt, reference.encode({"a green triangle"}, torch::kCPU).txt));
  }
  EXPECT_EQ(reloads, 1);
  EXPECT_NE(read_text(tmp / "log.txt").find("not encoded up front (e.g. 'a green triangle')"),
            std::string::npos);
  // Without a reload function the encoder stays.
  CachedTextConditioner kept(std::make_shared<Counting>(), nullptr);
  kept.release_encoder();
  EXPECT_TRUE(kept.encoder_loaded());
}

TEST(CachedTextConditioner, PromptsMetOnTheWayAreRememberedOnlyWithinTheirBudget) {
  // Room for two prompts met through encode(): the third and fourth are encoded every time they
  // come, with the same rows; precompute() keeps its prompts regardless of the budget.
  auto inner = std::make_shared<Counting>();
  HashedWordConditioner reference(8, 4, 5, 3);
  CachedTextConditioner cached(inner, {});
  EXPECT_EQ(cached.bytes_per_prompt(), (5 * 8 + 4) * 4);  // float32 txt [5, 8] and vec [4]
  cached.set_transient_limit(2 * cached.bytes_per_prompt());
  const std::vector<std::string> prompts = {"one", "two", "three", "four"};
  for (int round = 0; round < 2; ++round)
    for (const auto& p : prompts) {
      const auto got = cached.encode({p}, torch::kCPU);
      EXPECT_TRUE(torch::equal(got.txt, reference.encode({p}, torch::kCPU).txt)) << p;
    }
  EXPECT_EQ(cached.cached(), 2u);
  EXPECT_EQ(inner->encoded, 4 + 2);  // "three" and "four" again in the second round
  cached.precompute({"five", "six", "seven"});
  EXPECT_EQ(cached.cached(), 5u);
}

TEST(TruncationWarning, LongPromptsAreCutWithAWarningSayingHowMuch) {
  TempDir tmp;
  HashedWordConditioner words(8, 4, 5, 3);
  {
    LogFileScope log(tmp / "log.txt");
    // Seven words into five tokens, twice: one warning.
    words.encode({"one two three four five six seven", "short"}, torch::kCPU);
    words.encode({"one two three four five six seven"}, torch::kCPU);
    EXPECT_FALSE(warn_if_truncated("T5", "fits", 3, 511, "T5 tokens"));
    EXPECT_TRUE(warn_if_truncated("T5", "long", 600, 511, "T5 tokens"));
  }
  const std::string log = read_text(tmp / "log.txt");
  EXPECT_NE(log.find("prompt 'one two three four five six seven' is 7 words; the hashed-word "
                     "encoder takes 5: the last 2 are cut ('six seven'"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("is 7 words"), log.rfind("is 7 words"));  // once
  EXPECT_EQ(log.find("'short'"), std::string::npos);
  EXPECT_NE(log.find("prompt 'long' is 600 T5 tokens; T5 takes 511: the last 89 are cut"),
            std::string::npos)
      << log;
}
