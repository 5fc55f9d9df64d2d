// HashedWordConditioner: determinism, word splitting, truncation, padding and the empty prompt.
#include "text/hashed_words.h"

#include <gtest/gtest.h>

#include "core/errors.h"

using namespace fluxtrain;

TEST(HashedWords, ShapesAndDtype) {
  HashedWordConditioner c(16, 8, 6);
  EXPECT_EQ(c.context_dim(), 16);
  EXPECT_EQ(c.vec_dim(), 8);
  EXPECT_EQ(c.max_tokens(), 6);
  EXPECT_EQ(c.name(), "hashed-words");
  auto e = c.encode({"a red circle", "", "blue"}, torch::kCPU);
  EXPECT_EQ(e.txt.sizes(), (std::vector<int64_t>{3, 6, 16}));
  EXPECT_EQ(e.vec.sizes(), (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(e.txt.scalar_type(), torch::kFloat32);
  EXPECT_EQ(e.vec.scalar_type(), torch::kFloat32);
  auto none = c.encode({}, torch::kCPU);
  EXPECT_EQ(none.txt.sizes(), (std::vector<int64_t>{0, 6, 16}));
}

TEST(HashedWords, SplitWords) {
  EXPECT_EQ(HashedWordConditioner::split_words("A red, circle!"),
            (std::vector<std::string>{"a", "red", "circle"}));
  EXPECT_EQ(HashedWordConditioner::split_words("  top-left\tR2D2 "),
            (std::vector<std::string>{"top", "left", "r2d2"}));
  EXPECT_TRUE(HashedWordConditioner::split_words(" ,.!").empty());
}

TEST(HashedWords, DeterministicAcrossInstancesAndSeedDependent) {
  HashedWordConditioner a(32, 12, 8), b(32, 12, 8), other(32, 12, 8, /*seed=*/7);
  auto ea = a.encode({"a green square at the top"}, torch::kCPU);
  auto ea2 = a.encode({"a green square at the top"}, torch::kCPU);  // from the cache
  auto eb = b.encode({"a green square at the top"}, torch::kCPU);
  EXPECT_TRUE(torch::equal(ea.txt, eb.txt));
  EXPECT_TRUE(torch::equal(ea.vec, eb.vec));
  EXPECT_TRUE(torch::equal(ea.txt, ea2.txt));
  auto eo = other.encode({"a green square at the top"}, torch::kCPU);
  EXPECT_FALSE(torch::allclose(ea.txt, eo.txt));
}

TEST(HashedWords, WordVectorsAreUnitRmsDistinctAndInOrder) {
  HashedWordConditioner c(64, 32, 8);
  const std::vector<std::string> words{"red", "green", "blue",   "circle", "square", "triangle",
                                       "top", "left",  "center", "a",      "in",     "the"};
  std::vector<torch::Tensor> vs;
  for (const auto& w : words) {
    auto v = c.token_embedding(w);
    EXPECT_NEAR(v.square().mean().sqrt().item<double>(), 1.0, 1e-5) << w;
    EXPECT_NEAR(c.pooled_embedding(w).square().mean().sqrt().item<double>(), 1.0, 1e-5) << w;
    vs.push_back(v);
  }
  for (size_t i = 0; i < vs.size(); ++i)
    for (size_t k = i + 1; k < vs.size(); ++k) {
      const double cosine = (vs[i] * vs[k]).sum().item<double>() / 64;
      EXPECT_LT(std::abs(cosine), 0.6) << words[i] << " vs " << words[k];
    }
  // Token and pooled vectors are independent draws.
  EXPECT_FALSE(
      torch::allclose(c.token_embedding("red").slice(0, 0, 32), c.pooled_embedding("red")));

  auto e = c.encode({"red circle", "circle red"}, torch::kCPU);
  EXPECT_TRUE(torch::equal(e.txt[0][0], c.token_embedding("red")));
  EXPECT_TRUE(torch::equal(e.txt[0][1], c.token_embedding("circle")));
  EXPECT_TRUE(torch::equal(e.txt[1][0], c.token_embedding("circle")));
  EXPECT_FALSE(torch::equal(e.txt[0], e.txt[1]));    // order matters for txt ...
  EXPECT_TRUE(torch::allclose(e.vec[0], e.vec[1]));  // ... but not for the pooled mean
  auto mean = (c.pooled_embedding("red") + c.pooled_embedding("circle")) / 2;
  EXPECT_TRUE(torch::allclose(e.vec[0], mean));
}

TEST(HashedWords, CaseAndPunctuationInsensitive) {
  HashedWordConditioner c(16, 8, 10);
  auto e = c.encode({"A red, circle!", "a red circle", "a  RED circle."}, torch::kCPU);
  EXPECT_TRUE(torch::equal(e.txt[0], e.txt[1]));
  EXPECT_TRUE(torch::equal(e.vec[0], e.vec[1]));
  EXPECT_TRUE(torch::equal(e.txt[2], e.txt[1]));
}

TEST(HashedWords, TruncatesAndZeroPads) {
  HashedWordConditioner c(16, 8, 3);
  auto e = c.encode({"one two three four five", "one"}, torch::kCPU);
  EXPECT_TRUE(torch::equal(e.txt[0][2], c.token_embedding("three")));
  EXPECT_EQ(e.txt[1].slice(0, 1).abs().sum().item<double>(), 0.0);  // padding
  EXPECT_GT(e.txt[1][0].abs().sum().item<double>(), 0.0);
  // The pooled vector sees every word, including those past max_tokens.
  auto words = HashedWordConditioner::split_words("one two three four five");
  auto mean = torch::zeros({8});
  for (const auto& w : words) mean += c.pooled_embedding(w) / 5;
  EXPECT_TRUE(torch::allclose(e.vec[0], mean, 1e-5, 1e-6));
}

TEST(HashedWords, EmptyPromptIsAllZero) {
  HashedWordConditioner c(16, 8, 4);
  auto e = c.encode({"", " ?! ", "red"}, torch::kCPU);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(e.txt[i].abs().sum().item<double>(), 0.0);
    EXPECT_EQ(e.vec[i].abs().sum().item<double>(), 0.0);
  }
  EXPECT_GT(e.vec[2].abs().sum().item<double>(), 0.0);
}

TEST(HashedWords, BadDimensionsAreUserErrors) {
  try {
    HashedWordConditioner(0, 8, 4);
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "text context_dim 0: expected an integer >= 1");
  }
  EXPECT_THROW(HashedWordConditioner(8, 0, 4), UserError);
  EXPECT_THROW(HashedWordConditioner(8, 8, 0), UserError);
}

TEST(HashedWords, Fnv1a) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
}
